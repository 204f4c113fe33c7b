"""The comparison's kept work (comparison_store).

Sources: the closed form of SGD on f(x) = x² from x0 = 1, f(x_t) = (1 - 2r)^(2t) (problems.simple),
the values each test writes itself, and a file the published results hold.
"""

import json
import os

import numpy as np
import pytest

import problems
from learning_to_learn import comparison_store
from learning_to_learn import evaluation

from conftest import ROOT

GRID = (0.01, 0.1)
NUM_STEPS = 5


def _closed_form(rate, num_steps=NUM_STEPS):
  return (1.0 - 2.0 * rate) ** (2.0 * np.arange(num_steps + 1))


def _tuning(num_tuning_epochs):
  return {"problem": "simple", "seed": 0, "num_tuning_epochs": num_tuning_epochs,
          "grid": list(GRID)}


def _testing(num_test_epochs):
  return {"problem": "simple", "seed": 0, "num_test_epochs": num_test_epochs,
          "num_steps": NUM_STEPS}


def _compare(store, stages=None):
  progress = None if stages is None else lambda stage, done, total: stages.append(stage)
  return evaluation.compare(problems.simple(), None, baselines=("sgd",), num_tuning_epochs=1,
                            num_test_epochs=2, num_steps=NUM_STEPS, grid=GRID, unroll_length=5,
                            jit_compile=False, store=store, progress=progress)


# The sweep goes past the grid's edge (0.1) while the edge is best: 0.1 √10 wins, 1.0 loses.
BEST = min((0.01, 0.1, 0.1 * np.sqrt(10.0), 1.0), key=lambda r: _closed_form(r)[-1])


def test_each_setting_keeps_its_own_record_and_a_rerun_reuses_it(tmp_path):
  first = comparison_store.Store(str(tmp_path), _tuning(1), _testing(2))
  losses, rates = _compare(first)
  assert rates["sgd"] == pytest.approx(BEST)
  np.testing.assert_allclose(losses["sgd"], [_closed_form(BEST)] * 2, rtol=1e-4, atol=1e-7)
  # Other settings: a record of their own beside the first.
  _compare(comparison_store.Store(str(tmp_path), _tuning(3), _testing(4)))
  with open(tmp_path / "tuning.json") as f:
    kept = json.load(f)
  assert kept["settings"] == _tuning(3)  # the record used last on top
  assert [r["settings"] for r in kept["other_settings"]] == [_tuning(1)]
  assert len(comparison_store.read_run_records(str(tmp_path / "baseline_runs.npz"))) == 2
  # The first settings again: nothing tuned or run again, the same results.
  again = comparison_store.Store(str(tmp_path), _tuning(1), _testing(2))
  assert again.tuned == {"sgd": rates["sgd"]} and not again.warnings
  stages = []
  losses_again, rates_again = _compare(again, stages)
  assert rates_again == rates and not [s for s in stages if s.startswith("tuning")]
  np.testing.assert_array_equal(losses_again["sgd"], losses["sgd"])


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_runs_file_is_set_aside_and_its_runs_made_again(tmp_path, damage):
  path = str(tmp_path / "baseline_runs.npz")
  comparison_store.write_test_runs(path, _testing(2), {"sgd": (BEST, np.ones((2, 6)))})
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2] if damage == "truncated" else b"")
  store = comparison_store.Store(str(tmp_path), _tuning(1), _testing(2))
  assert len(store.warnings) == 1 and path in store.warnings[0], store.warnings
  assert store.tested == {} and os.path.exists(path + ".damaged") and not os.path.exists(path)
  losses, _ = _compare(store)
  np.testing.assert_allclose(losses["sgd"], [_closed_form(BEST)] * 2, rtol=1e-4, atol=1e-7)
  kept = comparison_store.read_test_runs(path, _testing(2))
  np.testing.assert_array_equal(kept["sgd"][1], losses["sgd"])


@pytest.mark.parametrize("text", ['{"settings": {"seed"', "[1, 2]\n", ""])
def test_a_damaged_tuning_file_is_set_aside_and_tuning_done_again(tmp_path, text):
  path = str(tmp_path / "tuning.json")
  with open(path, "w") as f:
    f.write(text)
  store = comparison_store.Store(str(tmp_path), _tuning(1), _testing(2))
  assert len(store.warnings) == 1 and f"{path} cannot be read" in store.warnings[0]
  assert store.tuned == {} and store.scored == {}
  with open(path + ".damaged") as f:
    assert f.read() == text  # kept for inspection, as it was
  _, rates = _compare(store)
  assert comparison_store.read_tuned_rates(path, _tuning(1)) == rates


def test_nan_scores_and_runs_are_measured_again_never_trusted(tmp_path):
  # A NaN score at 0.1 (the true best of the grid), a fake score at 0.01, and kept test runs at
  # the best rate that hold NaN.
  with open(tmp_path / "tuning.json", "w") as f:
    f.write(json.dumps({"settings": _tuning(1), "rates": {"adam": float("nan")},
                        "scores": {"sgd": {"0.01": 0.5, "0.1": float("nan")}}}))
  comparison_store.write_test_runs(str(tmp_path / "baseline_runs.npz"), _testing(2),
                                   {"sgd": (BEST, np.full((2, 6), np.nan))})
  store = comparison_store.Store(str(tmp_path), _tuning(1), _testing(2))
  assert store.scored == {"sgd": {0.01: 0.5}} and store.tuned == {} and store.tested == {}
  assert len(store.warnings) == 3, store.warnings  # the rate, the score, the runs
  losses, rates = _compare(store)
  assert rates["sgd"] == pytest.approx(BEST)
  assert store.scored["sgd"][0.1] == pytest.approx(_closed_form(0.1)[-1], rel=1e-4)
  assert store.scored["sgd"][0.01] == 0.5  # a number that was kept is not measured again
  np.testing.assert_allclose(losses["sgd"], [_closed_form(BEST)] * 2, rtol=1e-4, atol=1e-7)


def test_runs_kept_in_the_earlier_one_record_layout_read_back(tmp_path):
  path = str(tmp_path / "baseline_runs.npz")
  runs = np.arange(12, dtype=np.float32).reshape(2, 6) + 1
  np.savez(path, __settings__=json.dumps(_testing(2)), __rates__=json.dumps({"sgd": 0.1}),
           sgd=runs)
  back = comparison_store.read_test_runs(path, _testing(2))
  assert back["sgd"][0] == 0.1
  np.testing.assert_array_equal(back["sgd"][1], runs)
  # Writing another record keeps that one.
  comparison_store.write_test_runs(path, _testing(3), {"sgd": (0.2, runs[:1])})
  np.testing.assert_array_equal(comparison_store.read_test_runs(path, _testing(2))["sgd"][1], runs)
  # A published file, written in that layout, still reads as one record of its comparison.
  published = os.path.join(ROOT, "results", "cifar10", "baseline_runs.npz")
  (settings, tested), = comparison_store.read_run_records(published).values()
  with open(os.path.join(ROOT, "results", "cifar10", "summary.json")) as f:
    summary = json.load(f)
  assert settings["num_test_epochs"] == summary["num_test_epochs"]
  assert {name: rate for name, (rate, _) in tested.items()} == {
      name: summary["learning_rates"][name] for name in tested}
