"""Tests for results_summary.py: summary.json written and read back, old files included."""

import json
import math
import os

import pytest

from learning_to_learn import results_summary

from conftest import ROOT

SUMMARY = {"problem": "quadratic", "split": "train", "labels": [0, 1], "data": "no data",
           "path": "quadratic", "settings": "reference", "seed": 0, "num_test_epochs": 3,
           "optimizer": {"cw": {"net": "CoordinateWiseDeepLSTM", "net_options": {"scale": 0.01}}},
           "num_tuning_epochs": 2, "num_steps": 10, "learning_rates": {"adam": 0.1},
           "seconds": 1.5,
           "final_loss": {"L2L": {"10": {"mean": 0.5, "ci95": 0.1}},
                          "adam": {"10": {"mean": 0.7, "ci95": 0.2}}},
           "paired_difference": {"adam": {"10": {"mean": -0.2, "ci95": 0.05}}}}


def test_round_trip_adds_the_version(tmp_path):
  path = str(tmp_path / "summary.json")
  results_summary.write(path, SUMMARY)
  with open(path) as f:
    written = json.load(f)
  assert written == dict(SUMMARY, version=results_summary.VERSION)
  assert written["version"] == 1
  assert results_summary.read(path) == written
  assert os.listdir(tmp_path) == ["summary.json"]  # no partial file left


def test_non_finite_losses_are_written_as_null(tmp_path):
  path = str(tmp_path / "summary.json")
  results_summary.write(path, dict(SUMMARY, final_loss={"adam": {"10": {
      "mean": float("nan"), "ci95": float("inf")}}}))
  with open(path) as f:
    text = f.read()
  assert "NaN" not in text and "Infinity" not in text
  assert results_summary.read(path)["final_loss"] == {"adam": {"10": {"mean": None, "ci95": None}}}


def test_a_file_without_version_reads_as_version_0_with_defaults(tmp_path):
  old = {k: v for k, v in SUMMARY.items()
         if k not in ("labels", "optimizer", "paired_difference")}
  path = tmp_path / "summary.json"
  path.write_text(json.dumps(old, indent=2))
  summary = results_summary.read(str(path))
  assert summary == dict(old, version=0, labels=None, optimizer={}, paired_difference={})


def test_the_published_summaries_read():
  path = os.path.join(ROOT, "results", "quadratic", "summary.json")
  with open(path) as f:
    raw = json.load(f)
  assert "version" not in raw
  summary = results_summary.read(path)
  assert summary["version"] == 0
  assert summary["final_loss"] == raw["final_loss"]


def test_a_newer_version_is_refused(tmp_path):
  path = tmp_path / "summary.json"
  path.write_text(json.dumps(dict(SUMMARY, version=results_summary.VERSION + 1)))
  with pytest.raises(ValueError, match="version 2; this code reads versions up to 1"):
    results_summary.read(str(path))


def test_a_failed_write_leaves_the_previous_file(tmp_path):
  path = str(tmp_path / "summary.json")
  results_summary.write(path, SUMMARY)
  with pytest.raises(TypeError):
    results_summary.write(path, dict(SUMMARY, seconds=object()))  # not JSON
  assert results_summary.read(path)["seconds"] == 1.5
  assert os.listdir(tmp_path) == ["summary.json"]


def test_finite_or_none_replaces_every_non_finite_float_in_a_nest():
  value = {"a": [1.0, math.inf, (math.nan, 2)], "b": {"c": -math.inf, "d": "text"}}
  assert results_summary.finite_or_none(value) == {"a": [1.0, None, [None, 2]],
                                                   "b": {"c": None, "d": "text"}}
