"""scripts/experiments.py, the one list of published experiments, against what it names."""

import os
import re
import shlex
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))

import experiments  # noqa: E402  pylint: disable=g-import-not-at-top


def test_every_experiment_runs_a_shipped_optimizer_the_readme_describes():
  with open(os.path.join(ROOT, "learning_to_learn", "pretrained", "README.md")) as f:
    sections = set(re.findall(r"^## (\S+)$", f.read(), re.M))
  for experiment in experiments.EXPERIMENTS:
    path = experiment.flags["path"]
    assert path in sections, f"{experiment.name}: no section for {path} in pretrained/README.md"
    assert os.path.isdir(os.path.join(ROOT, "learning_to_learn", "pretrained", path))


def test_names_are_unique_and_reused_baselines_come_first():
  names = [e.name for e in experiments.EXPERIMENTS]
  assert len(set(names)) == len(names)
  for i, experiment in enumerate(experiments.EXPERIMENTS):
    reused = experiment.flags.get("baselines_dir")
    if reused is not None:
      assert reused.startswith("results/") and reused[len("results/"):] in names[:i]


def test_commands_need_no_quoting_for_the_shell_script():
  for experiment in experiments.EXPERIMENTS:
    words = experiments.command(experiment)
    assert all(shlex.quote(w) == w for w in words), words
    assert words[:3] == ["python", "evaluate.py", "--compare"]
    assert words[-1] == f"--output_dir=results/{experiment.name}"
