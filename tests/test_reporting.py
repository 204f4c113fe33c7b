"""reporting: the statistics lines and the comparison table against values worked out by hand."""

import math

import numpy as np

from learning_to_learn import reporting


def test_log_error_text_is_log10_or_says_why_not():
  assert reporting.log_error_text(1e-3) == "-3.00"
  assert reporting.log_error_text(250.0) == "2.40"  # log10(250) = 2.398
  assert reporting.log_error_text(0.0) == "-inf (the loss is exactly 0)"
  assert reporting.log_error_text(-0.5) == "undefined (mean loss -0.5 is negative)"
  assert reporting.log_error_text(math.nan).startswith("nan (non-finite loss: ")


def test_stats_lines_are_the_means_over_the_epochs():
  # Mean error 0.04 / 4 = 0.01 (log10 = -2), mean time 10 s / 4 = 2.5 s.
  assert reporting.stats_lines("Epoch 4", 0.04, 10.0, 4) == [
      "Epoch 4", "Log Mean Final Error: -2.00", "Mean epoch time: 2.50 s"]


def test_comparison_table_rows_and_a_diverged_column():
  losses = {"adam": np.array([[1.0, 2.0], [1.0, 2.0]]),  # no spread: an interval of 0
            "L2L": np.array([[1.0, np.nan], [1.0, 4.0]])}
  table = reporting.comparison_table(losses, {"adam": 0.001}, steps=[0, 1]).splitlines()
  assert table == [
      "| optimizer | learning rate | loss at step 0 | loss at step 1 |",
      "|---|---|---|---|",
      "| adam | 0.001 | 1 ± 0 | 2 ± 0 |",
      "| L2L | learned | 1 ± 0 | diverged (1 of 2 runs non-finite) |"]
