"""Which trained optimizer a name means: a user's directory is never hidden by a shipped name.

Sources: the weights each test writes itself (a zero update rule has final loss = initial loss),
and the shipped file read directly.
"""

import os
import re

import numpy as np
import pytest

from learning_to_learn import evaluation
from learning_to_learn import keras as l2l_keras
from learning_to_learn import optimizer_files
from learning_to_learn import seeds as seeds_lib

from conftest import ROOT, run_cli

SHIPPED = os.path.join(optimizer_files.SHIPPED_DIR, "quadratic", "cw.npz")


def _own_quadratic(directory, bias):
  """The shipped quadratic optimizer with its output layer set to w = 0, b = bias, in directory."""
  with np.load(SHIPPED) as data:
    arrays = {key: data[key] for key in data.files}
  arrays["linear/w"] = np.zeros_like(arrays["linear/w"])
  arrays["linear/b"] = np.full_like(arrays["linear/b"], bias)
  os.makedirs(directory)
  np.savez(os.path.join(directory, "cw.npz"), **arrays)


def test_a_users_directory_wins_over_the_shipped_name(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _own_quadratic("quadratic", 0.5)
  # resolve is what evaluate.py --path and train.py --init_path go through.
  assert optimizer_files.resolve("quadratic") == "quadratic"
  weights = optimizer_files.read_weights(optimizer_files.path_for("quadratic", "cw"))
  np.testing.assert_array_equal(weights["linear"]["b"], [0.5])
  config = l2l_keras.LearnedOptimizer("quadratic").get_config()
  assert config["network"]["weights"]["linear/b"] == [0.5]
  with np.load(SHIPPED) as data:
    assert not np.all(data["linear/b"] == 0.5)  # the shipped one is another rule


def test_a_shipped_name_with_no_directory_beside_it_is_the_shipped_one(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert optimizer_files.resolve("quadratic") == os.path.dirname(SHIPPED)


def test_a_same_named_directory_without_an_optimizer_is_refused_with_both_names(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs(os.path.join("quadratic", "checkpoints"))  # a train.py run before its first save
  with pytest.raises(ValueError, match="both a shipped optimizer") as error:
    optimizer_files.resolve("quadratic")
  assert os.path.dirname(SHIPPED) in str(error.value) and "./quadratic" in str(error.value)
  with pytest.raises(ValueError, match=r"^checkpoint='quadratic' is both"):
    l2l_keras.LearnedOptimizer("quadratic")
  assert optimizer_files.resolve("./quadratic") == "./quadratic"  # the explicit name works


def test_a_same_named_file_that_is_no_network_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with open("mnist", "w") as f:
    f.write("notes\n")
  with pytest.raises(ValueError, match="both a shipped optimizer and the file"):
    l2l_keras.LearnedOptimizer("mnist")


def test_evaluate_cli_runs_the_users_optimizer_of_a_shipped_name(tmp_path):
  # Output layer zero: the update is always zero, so every run ends at its initial loss, which the
  # shipped optimizer lowers by orders of magnitude.
  _own_quadratic(str(tmp_path / "quadratic"), 0.0)
  result = run_cli(os.path.join(ROOT, "evaluate.py"), "--problem=quadratic",
                   "--path=quadratic", "--num_epochs=2", "--num_steps=20", "--nojit_compile",
                   cwd=str(tmp_path), timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  printed = float(re.search(r"Log Mean Final Error: (-?[\d.]+)", result.stderr).group(1))
  from learning_to_learn import configs  # pylint: disable=import-outside-toplevel
  problem, _, _ = configs.get_config("quadratic")
  seeds = seeds_lib.epoch_seeds(0, 2, seeds_lib.TEST)
  initial = evaluation.Evaluator(problem, evaluation.baseline_config("sgd", 1e-3),
                                 jit_compile=False).run(seeds, 1)[:, 0]
  assert printed == pytest.approx(np.log10(initial.mean()), abs=0.011)
