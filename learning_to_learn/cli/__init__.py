"""The command-line tools, `l2l-train` and `l2l-evaluate` once installed.

The tools' code is in `cli/train.py` and `cli/evaluate.py`; these entry points import it only
after TensorFlow has loaded quietly (see `quiet`), since TensorFlow writes its start-up lines as it
loads.
"""

import importlib

from absl import app

from learning_to_learn.cli import quiet


def _run(module_name):
  quiet.import_tensorflow()
  command = importlib.import_module(module_name)

  def main(argv):
    quiet.configure_logging()
    return command.main(argv)

  app.run(main)


def train_main():
  """Entry point of `l2l-train` and of the top-level train.py."""
  _run("learning_to_learn.cli.train")


def evaluate_main():
  """Entry point of `l2l-evaluate` and of the top-level evaluate.py."""
  _run("learning_to_learn.cli.evaluate")
