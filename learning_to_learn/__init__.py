"""Learning to learn by gradient descent by gradient descent, in TensorFlow 2 and Sonnet 2.

Submodules load on first use (`learning_to_learn.meta`, or `from learning_to_learn import meta`),
so that importing the package does not import TensorFlow: the command-line tools must set
TensorFlow's log level before it loads.
"""

import importlib

_SUBMODULES = ("atomic", "augment", "baselines", "checkpoints", "comparison_store", "configs",
               "datasets", "distribute", "errors", "evaluation", "keras", "keras_problems", "meta",
               "networks", "optimizer_files", "preprocess", "problem_files", "problems",
               "reporting", "results_summary", "seeds", "task_family", "training",
               "transfer_suite", "unroll")


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
