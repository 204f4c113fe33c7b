"""Meta-training and evaluation speed on CIFAR-10, to size the runs of the paper's Fig. 7.

Usage: python bench/cifar.py [--data_dir=DIR] [--problems=cifar,cifar-multi] [--epochs=3]
                             [--labels=cifar5] [--quick]

The reference's network (3 conv layers of 16 channels, fc 32, batch norm, minibatches of 128) on
the full train split (data_batch_1..4, 40,000 images; fewer with --labels), run as train.py and
evaluate.py run it: T = 20, 100 optimizee steps per epoch (5 meta-steps). Figures are medians over
the timed epochs, after one warm-up epoch that traces, with min..max:
- meta-training seconds per epoch, and optimizee steps/s (TensorFlow's kernels, train.py's
  default), and the hours 1,000 such epochs take;
- evaluation steps/s of the learned optimizer and of Adam (what evaluate.py --compare's
  learning-rate tuning runs, 4 baselines x 9 or more rates), each under XLA and under
  TensorFlow's kernels (--nojit_compile); evaluate.py's default (`meta.eval_jit_compile`) is the
  latter here for every rule, the network being convolutional.
It reports; it never fails on a slow machine.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from learning_to_learn import configs  # noqa: E402
from learning_to_learn import evaluation  # noqa: E402
from learning_to_learn import meta  # noqa: E402
from learning_to_learn import seeds as seeds_lib  # noqa: E402

UNROLL_LENGTH = 20  # T, the reference's
NUM_STEPS = 100  # optimizee steps per epoch, the reference's
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10")


def timed_epochs(run_epoch, num_epochs):
  """Seconds per epoch: (median, min, max) over num_epochs, after one warm-up (tracing) epoch."""
  run_epoch(0)
  times = []
  for epoch in range(1, num_epochs + 1):
    start = time.perf_counter()
    run_epoch(epoch)
    times.append(time.perf_counter() - start)
  return float(np.median(times)), float(np.min(times)), float(np.max(times))


def rate_line(label, seconds):
  """Seconds per epoch and optimizee steps/s; min..max are those of the timed epochs."""
  median, fastest, slowest = seconds
  return (f"{label}: {median:.2f} s/epoch ({fastest:.2f}..{slowest:.2f}), "
          f"{NUM_STEPS / median:.1f} steps/s")


def meta_training(problem, net_config, net_assignments, num_epochs):
  """Seconds per meta-training epoch, as train.py's run_epoch spends them."""
  trainer = meta.MetaOptimizer(**net_config).meta_minimize(
      problem, UNROLL_LENGTH, learning_rate=0.001, net_assignments=net_assignments)

  def run_epoch(epoch):
    epoch_seed = seeds_lib.training_epoch(0, epoch)
    trainer.reset(seeds_lib.initial_seed(epoch_seed))
    for unroll in range(NUM_STEPS // UNROLL_LENGTH):
      result = trainer.train_unroll(seeds_lib.unroll_seed(epoch_seed, unroll))
    float(result.final_loss)  # waits for the last meta-step

  return timed_epochs(run_epoch, num_epochs)


def evaluating(problem, net_config, net_assignments, num_epochs, jit_compile):
  """Seconds per evaluation epoch of one rule, through the Evaluator evaluate.py uses."""
  evaluator = evaluation.Evaluator(problem, net_config, net_assignments,
                                   unroll_length=UNROLL_LENGTH, jit_compile=jit_compile)
  test_seeds = seeds_lib.epoch_seeds(0, num_epochs + 1, seeds_lib.TEST)  # the warm-up's and more
  return timed_epochs(lambda epoch: evaluator.run_epoch(test_seeds[epoch], NUM_STEPS), num_epochs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR,
                      help="the CIFAR-10 binary batches (default: ../shared/data/cifar10)")
  parser.add_argument("--problems", default="cifar,cifar-multi")
  parser.add_argument("--epochs", type=int, default=3, help="timed epochs per figure")
  parser.add_argument("--labels", default=None, help="a label subset, as train.py's --labels")
  parser.add_argument("--quick", action="store_true", help="one timed epoch per figure")
  args = parser.parse_args()
  num_epochs = 1 if args.quick else args.epochs
  labels = configs.parse_labels(args.labels.split(",") if args.labels else None)
  print(f"Machine: {os.cpu_count()} CPUs, TensorFlow {tf.__version__}; T = {UNROLL_LENGTH}, "
        f"{NUM_STEPS} steps per epoch, medians of {num_epochs} epoch(s) after a warm-up one")
  for name in args.problems.split(","):
    tf.random.set_seed(0)
    problem, net_config, net_assignments = configs.get_config(
        name, data_dir=args.data_dir, split="train", labels=labels)
    params, _ = problem.init(seeds_lib.make_seed(0))
    num_coords = sum(int(np.prod(p.shape)) for p in params.values())
    print(f"{name}: {len(problem.dataset.labels)} images, {problem.dataset.num_classes} classes, "
          f"{num_coords} coordinates, {len(net_config)} learned network(s)")
    seconds = meta_training(problem, net_config, net_assignments, num_epochs)
    print("  " + rate_line("meta-training (TensorFlow kernels)", seconds)
          + f"; {seconds[0] * 1000 / 3600:.1f} h per 1,000 epochs")
    rules = {"learned optimizer": (net_config, net_assignments),
             "Adam": (evaluation.baseline_config("adam", 0.01), None)}
    for jit_compile, kernels in ((True, "XLA"), (False, "TensorFlow kernels")):
      for rule, (config, assignments) in rules.items():
        seconds = evaluating(problem, config, assignments, num_epochs, jit_compile)
        print("  " + rate_line(f"evaluation, {rule} ({kernels})", seconds))
    del problem  # its 40,000 images, before the next problem loads its own


if __name__ == "__main__":
  main()
