"""scripts/rescale_optimizer.py: the same rule with every update multiplied by new/old scale."""

import os
import sys

import numpy as np
import pytest

from learning_to_learn import optimizer_files

from conftest import ROOT, rule_updates, run_python

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import rescale_optimizer  # noqa: E402


def test_updates_scale_by_the_ratio_of_the_scales(tmp_path):
  path = rescale_optimizer.rescale("mnist", 0.03, str(tmp_path / "start"))
  rescaled, shipped = optimizer_files.load(path), optimizer_files.load(
      optimizer_files.single_net_file("mnist"))
  assert rescaled.get_config()["scale"] == 0.03 and shipped.get_config()["scale"] == 0.1
  rng = np.random.default_rng(0)
  gradients = [rng.normal(size=(6, 5)).astype(np.float32) for _ in range(4)]
  # The output layer is linear in the scale and the state never sees the output: each update of
  # the rescaled rule is 0.3 times the shipped one's, step after step.
  for a, b in zip(rule_updates(rescaled, gradients), rule_updates(shipped, gradients)):
    np.testing.assert_allclose(a, 0.3 * b, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "fast"])
def test_a_bad_scale_is_one_error_line(scale, tmp_path):
  result = run_python("scripts/rescale_optimizer.py", "mnist", scale, str(tmp_path / "out"))
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip() == (f"rescale_optimizer.py: error: SCALE={scale} must be a "
                                   "positive number.")


def test_normalize_and_adaptation_are_written(tmp_path):
  path = rescale_optimizer.rescale("mnist", 0.003, str(tmp_path / "start"), 0.02, True)
  loaded = optimizer_files.load(path)
  assert loaded.normalize_output is True and loaded.scale_adaptation == 0.02
  again = rescale_optimizer.rescale(path.rsplit("/", 1)[0], 0.005, str(tmp_path / "again"))
  assert optimizer_files.load(again).normalize_output is True  # SOURCE's own choice kept


@pytest.mark.parametrize("extra,message", [
    (("0.02", "normalise"), "'normalise' after ADAPTATION must be the word normalize or signal."),
    (("0.05", "signal", "100"), "START=100 must be a number in [1/32, 32]."),
    (("0.05,1", "signal"), "ADAPTATION=0.05,1: BETA must be in [0, 1).")],
    ids=["bad_word", "start_out_of_range", "averaging_out_of_range"])
def test_a_bad_argument_after_the_scale_is_one_error_line(tmp_path, extra, message):
  result = run_python("scripts/rescale_optimizer.py", "mnist", "0.016", str(tmp_path / "out"),
                      *extra)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip() == f"rescale_optimizer.py: error: {message}"


def test_signal_writes_a_normalized_signal_scaled_rule(tmp_path):
  result = run_python("scripts/rescale_optimizer.py", "mnist", "0.02", str(tmp_path / "out"),
                      "0.05", "signal", "0.125")
  assert result.returncode == 0, result.stderr
  loaded = optimizer_files.load(str(tmp_path / "out" / "cw.npz"))
  assert (loaded.scale, loaded.scale_adaptation, loaded.normalize_output, loaded.signal_scaled,
          loaded.initial_multiplier) == (0.02, 0.05, True, True, 0.125)


def test_rate_and_averaging_are_written(tmp_path):
  result = run_python("scripts/rescale_optimizer.py", "mnist", "0.016", str(tmp_path / "out"),
                      "0.05,0.97", "signal")
  assert result.returncode == 0, result.stderr
  loaded = optimizer_files.load(str(tmp_path / "out" / "cw.npz"))
  assert (loaded.scale_adaptation, loaded.adaptation_averaging, loaded.signal_scaled) == (
      0.05, 0.97, True)
