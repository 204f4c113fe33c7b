"""The command-line tools, `l2l-train` and `l2l-evaluate` once installed.

The tools' code is in `cli/train.py` and `cli/evaluate.py`; these entry points import it only
after the console is set up, because TensorFlow prints its start-up lines as it loads.
"""

from absl import app


def train_main():
  """Entry point of `l2l-train` and of the top-level train.py."""
  from learning_to_learn.cli import train as command  # pylint: disable=import-outside-toplevel
  app.run(command.main)


def evaluate_main():
  """Entry point of `l2l-evaluate` and of the top-level evaluate.py."""
  from learning_to_learn.cli import evaluate as command  # pylint: disable=import-outside-toplevel
  app.run(command.main)
