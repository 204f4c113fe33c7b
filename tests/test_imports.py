"""The package's layers: every module imports only modules of lower layers, so there is no cycle.

Read from the source (imports inside functions included), not from what Python has loaded.
"""

import ast
import glob
import os

import pytest

from conftest import ROOT

# Lowest first. A module may import modules of the layers below its own, never of its own or above.
LAYERS = (
    # Tools with no knowledge of learned optimizers.
    ("atomic", "console", "errors", "locking", "stopping", "limits", "distribute", "seeds"),
    # The vocabulary of optimizees and rules, and the pure unroll.
    ("datasets", "preprocess", "baselines", "instances", "unroll", "problem_files", "cells",
     "step_size"),
    ("fused_lstm",),  # the cell as one C++ op, timed against the plain one
    ("networks",),  # the learned rules
    ("optimizer_files",),  # their file format, and the shipped optimizers
    ("problems", "comparison_store", "results_summary"),  # optimizees; the comparison's files
    ("keras_problems", "augment", "meta"),  # Keras optimizees, rescaling; meta-training
    ("task_family", "transfer_suite", "evaluation", "checkpoints",
     "configs", "pes"),  # configs: the named experiments; pes: meta-steps without backprop
    ("reporting", "keras"),
    ("training",),  # the meta-training loop
    ("cli.quiet",),
    ("cli", "cli.train", "cli.evaluate"),
)


def _module_name(path):
  relative = os.path.relpath(path, os.path.join(ROOT, "learning_to_learn"))[:-len(".py")]
  name = relative.replace(os.sep, ".")
  return name[:-len(".__init__")] if name.endswith("__init__") else name


def _imports(path):
  """The package's modules that `path` imports, by their names under learning_to_learn."""
  with open(path) as f:
    tree = ast.parse(f.read())
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
        "learning_to_learn"):
      base = node.module[len("learning_to_learn"):].lstrip(".")
      names = [f"{base}.{a.name}".lstrip(".") for a in node.names]
      names = [n if _known(n) else base for n in names]
    elif isinstance(node, ast.Import):
      names = [a.name[len("learning_to_learn."):] for a in node.names
               if a.name.startswith("learning_to_learn.")]
    found.update(n for n in names if n)
  return found


def _known(name):
  return any(name in layer for layer in LAYERS)


def _modules():
  paths = glob.glob(os.path.join(ROOT, "learning_to_learn", "**", "*.py"), recursive=True)
  return {_module_name(p): p for p in paths if _module_name(p)}  # not the package itself


def test_every_module_has_a_layer():
  unplaced = sorted(set(_modules()) - {m for layer in LAYERS for m in layer})
  assert not unplaced, f"give these modules a layer in LAYERS: {unplaced}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_point_down(module):
  level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
  upward = sorted(m for m in _imports(_modules()[module])
                  if m != module and level.get(m, -1) >= level[module])
  assert not upward, f"{module} (layer {level[module]}) imports {upward} of its layer or above"


def test_the_check_finds_a_cycle(tmp_path):
  """The rule above would fail on the cycle networks <-> optimizer_files that once was."""
  level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
  cycle = {"networks": {"optimizer_files"}, "optimizer_files": {"networks"}}
  upward = [(a, b) for a, deps in cycle.items() for b in deps if level[b] >= level[a]]
  assert upward == [("networks", "optimizer_files")]
  source = tmp_path / "networks.py"
  source.write_text("def load():\n  from learning_to_learn import optimizer_files\n")
  assert _imports(str(source)) == {"optimizer_files"}
