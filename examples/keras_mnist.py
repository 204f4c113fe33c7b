"""Trains the paper's MNIST MLP with a learned optimizer and with Adam through plain Keras.

Usage:
  python examples/keras_mnist.py --checkpoint=runs/mnist [--steps=1000] [--plot=keras_mnist.png]

The model is the paper's optimizee (784-20-10, sigmoid, batch 128, weights N(0, 0.01^2) as the
reference initializes them, so the learned optimizer meets the problem it was meta-trained on).
Both optimizers start from the same weights and see the same minibatches. Prints the loss on the
whole training split after 100 and 1,000 steps (and after the last step), and writes a plot of the
minibatch losses on a log scale.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from learning_to_learn import datasets  # noqa: E402
from learning_to_learn import keras as l2l_keras  # noqa: E402

REPORT_STEPS = (100, 1000)


def make_model(seed):
  """The paper's MNIST MLP as a Keras model, weights N(0, 0.01^2) as in the reference."""
  init = lambda i: keras.initializers.RandomNormal(stddev=0.01, seed=seed + i)
  return keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Flatten(),
      keras.layers.Dense(20, activation="sigmoid", kernel_initializer=init(0),
                         bias_initializer=init(1)),
      keras.layers.Dense(10, kernel_initializer=init(2), bias_initializer=init(3)),
  ])


def train(model, optimizer, data, batches):
  """One train_on_batch per batch of indices.

  Returns:
    (minibatch losses, each before its step's update; step -> loss on the whole split, at
    REPORT_STEPS and after the last step), the latter to compare optimizers without batch noise.
  """
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  minibatch_losses, full_losses = [], {}
  for step, indices in enumerate(batches, start=1):
    minibatch_losses.append(float(model.train_on_batch(data.images[indices],
                                                       data.labels[indices])))
    if step in REPORT_STEPS or step == len(batches):
      full_losses[step] = float(model.evaluate(data.images, data.labels, batch_size=1000,
                                               verbose=0))
  return minibatch_losses, full_losses


def plot(curves, path, title):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")  # no display needed
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axes = plt.subplots(figsize=(6, 4))
  for name, losses in curves.items():
    axes.plot(np.arange(1, len(losses) + 1), losses, label=name, linewidth=1)
  axes.set_yscale("log")
  axes.set_xlabel("step")
  axes.set_ylabel("minibatch loss")
  axes.set_title(title)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default="mnist",
                      help="a shipped optimizer's name, a train.py --save_path directory, or an "
                           ".npz file written by optimizer_files.save (default: mnist)")
  parser.add_argument("--steps", type=int, default=1000, help="training steps (default: 1000)")
  parser.add_argument("--adam_learning_rate", type=float, default=0.01,
                      help="Adam's learning rate (default: 0.01)")
  parser.add_argument("--learning_rate", type=float, default=1.0,
                      help="multiplier of the learned optimizer's update (default: 1.0, the "
                           "trained rule)")
  parser.add_argument("--batch_size", type=int, default=128, help="minibatch size (default: 128)")
  parser.add_argument("--seed", type=int, default=0, help="weights and minibatches (default: 0)")
  parser.add_argument("--data_dir", default=None, help="where MNIST is (see datasets.load_mnist)")
  parser.add_argument("--plot", default="keras_mnist.png", help="the PNG to write")
  args = parser.parse_args(argv)
  if args.steps <= 0:
    parser.error(f"--steps={args.steps} must be positive; the paper's plots use 100 to 1000.")
  if args.batch_size <= 0:
    parser.error(f"--batch_size={args.batch_size} must be positive (paper: 128).")
  if not args.adam_learning_rate > 0:
    parser.error(f"--adam_learning_rate={args.adam_learning_rate} must be positive.")
  return args


def main(argv=None):
  args = parse_args(argv)
  try:
    learned = l2l_keras.LearnedOptimizer(args.checkpoint, learning_rate=args.learning_rate)
    data = datasets.load_mnist(args.data_dir, "train")
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"MNIST: {data.source}, {len(data.labels)} images")
  rng = np.random.default_rng(args.seed)
  # Drawn with replacement, as problems.py draws the meta-training minibatches.
  batches = [rng.integers(0, len(data.labels), args.batch_size) for _ in range(args.steps)]

  runs = {}
  for name, optimizer in (("learned", learned),
                          (f"Adam {args.adam_learning_rate:g}",
                           keras.optimizers.Adam(args.adam_learning_rate))):
    runs[name] = train(make_model(args.seed), optimizer, data, batches)

  steps = sorted(next(iter(runs.values()))[1])
  print("training-split loss after".ljust(28) + "".join(f"{s:>10,d}" for s in steps) + " steps")
  for name, (_, full_losses) in runs.items():
    print(f"  {name}".ljust(28) + "".join(f"{full_losses[s]:10.4f}" for s in steps))
  plot({name: curve for name, (curve, _) in runs.items()}, args.plot,
       f"MNIST MLP, batch {args.batch_size}: learned optimizer vs Adam")
  print(f"plot: {args.plot}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
