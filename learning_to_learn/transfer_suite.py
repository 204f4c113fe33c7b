"""A held-out suite of Keras models: does a learned optimizer work on models it never saw?

Each `Model` is a frozen record of one optimizee that played no part in meta-training or selection:
none is one of task_family's drawn tasks, and each has something none of them has (a width above
256, four hidden layers, more conv channels than 8/16, another input size, an autoencoder, an
embedding and a recurrent layer). The image models train on the datasets' "valid" splits, which the
family's training tasks never read; the synthetic ones on data drawn from seeds the family does not
use, from teachers unlike its own.

`train` runs one model with one optimizer through plain `model.fit`, from given initial weights
and a minibatch order fixed by the seed, so that every optimizer meets the same start and the same
batches. `summarize` turns a table of finished runs into the suite's verdict: tuned Adam and tuned
SGD with momentum (the rate of lowest mean final loss, chosen on the runs themselves, which favours
the baselines), ratios to tuned Adam, and divergence and stall flags.

The final loss is the model's loss on all of the data it trains on (the whole valid split, or the
whole synthetic set), computed after the last step in batches of EVAL_BATCH without updates; the
initial loss is the same at the initial weights. A run stalls when final > STALL_FRACTION x
initial; it diverges when any minibatch loss or the final loss is not finite (final = inf).
"""

import dataclasses
import math
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import datasets

BATCH_SIZE = 128
STEPS = 1000
LONG_STEPS = 5000
SEEDS = (0, 1, 2, 3, 4)
EVAL_BATCH = 2000
STALL_FRACTION = 0.9
# Curves are kept as means over blocks of this many steps: a tenth of the size, and the smoothing
# a minibatch loss needs before it is plotted anyway.
CURVE_BLOCK = 10
# Steps that trace and warm caches; wall time per step is measured after them.
WARMUP_STEPS = 20
# Rates spaced 0.75 decades apart, so that 1e-3 is Adam's middle rate ("Adam at 1e-3").
ADAM_RATES = tuple(10.0 ** e for e in (-4.5, -3.75, -3.0, -2.25, -1.5))
SGDM_RATES = tuple(10.0 ** e for e in (-3.0, -2.25, -1.5, -0.75, 0.0))
SGDM_MOMENTUM = 0.9
DEFAULT_ADAM_RATE = 1e-3
# Seeds of the synthetic data: the family's tasks use seed * 1000 + index for seeds 0 and 1.
REGRESSION_SEED, SEQUENCE_SEED = 7001, 7002


@dataclasses.dataclass(frozen=True)
class Model:
  """One held-out optimizee: what it is, how it is built, and what it trains on."""
  name: str
  description: str
  build: Callable  # () -> keras.Model, weights from Keras's global seed
  dataset: str  # "mnist", "fashion_mnist", "cifar10", "regression" or "sequences"
  split: str  # "valid" for the image sets; the synthetic sets have one
  loss: str  # "crossentropy" (sparse, from logits) or "mse"
  batch_size: int = BATCH_SIZE
  steps: tuple = (STEPS,)
  target: str = "labels"  # "labels", or "inputs" for an autoencoder


def _dense_stack(inputs, widths, activation):
  layers = [keras.Input(inputs)]
  if len(inputs) > 1:
    layers.append(keras.layers.Flatten())
  layers += [keras.layers.Dense(w, activation=activation) for w in widths[:-1]]
  return layers + [keras.layers.Dense(widths[-1])]


def _mlp(inputs, widths, activation, name):
  return lambda: keras.Sequential(_dense_stack(inputs, widths, activation), name=name)


def _conv(inputs, channels, hidden, padding, name):
  def build():
    layers = [keras.Input(inputs)]
    for c in channels:
      layers += [keras.layers.Conv2D(c, 3, padding=padding, activation="relu"),
                 keras.layers.MaxPooling2D()]
    layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    return keras.Sequential(layers + [keras.layers.Dense(10)], name=name)
  return build


def _autoencoder():
  return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                           keras.layers.Dense(64, activation="relu"),
                           keras.layers.Dense(784, activation="sigmoid")], name="autoencoder")


SEQUENCE_LENGTH, VOCABULARY, SEQUENCE_CLASSES = 16, 32, 4


def _recurrent():
  return keras.Sequential([keras.Input((SEQUENCE_LENGTH,), dtype="int32"),
                           keras.layers.Embedding(VOCABULARY, 16), keras.layers.GRU(32),
                           keras.layers.Dense(SEQUENCE_CLASSES)], name="embedding_gru")


MODELS = (
    Model("mnist-sigmoid-512", "MLP 784-512-10, sigmoid: wider than any of the family's",
          _mlp((28, 28, 1), (512, 10), "sigmoid", "sigmoid_512"), "mnist", "valid",
          "crossentropy"),
    Model("fmnist-relu-4x128", "MLP 784-128-128-128-128-10, ReLU: deeper than any of the family's",
          _mlp((28, 28, 1), (128, 128, 128, 128, 10), "relu", "relu_4x128"), "fashion_mnist",
          "valid", "crossentropy"),
    Model("mnist-relu-128-64", "MLP 784-128-64-10, ReLU: the common Keras MNIST model",
          _mlp((28, 28, 1), (128, 64, 10), "relu", "relu_128_64"), "mnist", "valid",
          "crossentropy", steps=(STEPS, LONG_STEPS)),
    Model("mnist-conv-16-32", "conv 3x3 16 and 32 channels (same padding) with max pooling, "
          "then straight to 10 outputs", _conv((28, 28, 1), (16, 32), (), "same", "conv_16_32"),
          "mnist", "valid", "crossentropy"),
    Model("cifar-conv-16-32", "conv 3x3 16 and 32 channels (valid padding) with max pooling, "
          "then 32 hidden units, ReLU", _conv((32, 32, 3), (16, 32), (32,), "valid",
                                              "cifar_conv"),
          "cifar10", "valid", "crossentropy", steps=(STEPS, LONG_STEPS)),
    Model("regression-tanh", "MLP 64-96-96-2, tanh, MSE on a ReLU teacher's two outputs",
          _mlp((64,), (96, 96, 2), "tanh", "regression_tanh"), "regression", "all", "mse"),
    Model("mnist-autoencoder", "autoencoder 784-64-784 (ReLU code, sigmoid output), MSE on "
          "the pixels", _autoencoder, "mnist", "valid", "mse", target="inputs"),
    Model("sequences-gru", f"Embedding({VOCABULARY}, 16), GRU(32), 4 outputs: the most frequent "
          "token class (token mod 4) of 16 tokens", _recurrent, "sequences", "all",
          "crossentropy"),
)
BY_NAME = {m.name: m for m in MODELS}


def _regression_data():
  """8,192 points in 64 dimensions; targets of a random ReLU teacher (16 units, 2 outputs)."""
  rng = np.random.default_rng(REGRESSION_SEED)
  w1 = rng.normal(size=(64, 16)) / np.sqrt(64)
  w2 = rng.normal(size=(16, 2)) / np.sqrt(16 / 2)  # ReLU halves the variance: targets of scale 1
  x = rng.normal(size=(8192, 64))
  y = np.maximum(x @ w1, 0) @ w2 + 0.05 * rng.normal(size=(8192, 2))
  return x.astype(np.float32), y.astype(np.float32)


def sequence_labels(tokens):
  """The most frequent class (token mod 4) of each row of `tokens`; ties go to the lower class."""
  counts = np.stack([(tokens % SEQUENCE_CLASSES == c).sum(axis=1)
                     for c in range(SEQUENCE_CLASSES)], axis=1)
  return np.argmax(counts, axis=1).astype(np.int32)


def _sequence_data():
  tokens = np.random.default_rng(SEQUENCE_SEED).integers(
      0, VOCABULARY, size=(8192, SEQUENCE_LENGTH)).astype(np.int32)
  return tokens, sequence_labels(tokens)


def _image_dir(data_dir, name):
  if data_dir is None:
    return None
  directory = os.path.join(data_dir, name)
  if name == "fashion_mnist" and not os.path.isdir(directory):
    return None  # Debian's dataset-fashion-mnist
  return directory


def load_data(model, data_dir=None, limit=None):
  """(x, y, source) of `model`: NumPy arrays and a line naming the data; first `limit` rows."""
  if model.dataset == "regression":
    x, y = _regression_data()
    source = f"synthetic ReLU-teacher regression, seed {REGRESSION_SEED}, 8,192 points"
  elif model.dataset == "sequences":
    x, y = _sequence_data()
    source = f"synthetic token sequences, seed {SEQUENCE_SEED}, 8,192 sequences"
  else:
    loader = {"mnist": datasets.load_mnist, "fashion_mnist": datasets.load_fashion_mnist,
              "cifar10": datasets.load_cifar10}[model.dataset]
    data = loader(_image_dir(data_dir, model.dataset), model.split)
    x, y, source = data.images, data.labels.astype(np.int32), data.source
  if limit is not None:
    x, y = x[:limit], y[:limit]
  if model.target == "inputs":
    y = x.reshape(len(x), -1)
  return x, y, source


def loss_function(model):
  if model.loss == "mse":
    return keras.losses.MeanSquaredError()
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def initial_weights(model, seed):
  """The weights every optimizer starts from for `seed`: the model built under Keras's seed."""
  keras.utils.set_random_seed(seed)
  return model.build().get_weights()


def batch_order(num_examples, batch_size, steps, seed):
  """[steps, batch_size] example indices: one fresh permutation per pass, fixed by `seed`."""
  rng = np.random.default_rng([seed, 11])
  passes = math.ceil(steps * batch_size / num_examples)
  order = np.concatenate([rng.permutation(num_examples) for _ in range(passes)])
  return order[:steps * batch_size].reshape(steps, batch_size)


def full_loss(keras_model, x, y, loss):
  """Mean loss over every example of (x, y), without updates; inf where it is not finite."""
  total = 0.0
  for start in range(0, len(x), EVAL_BATCH):
    rows = slice(start, start + EVAL_BATCH)
    total += float(loss(y[rows], keras_model(x[rows], training=False))) * len(x[rows])
  value = total / len(x)
  return value if math.isfinite(value) else math.inf


class _BatchLoss(keras.metrics.Metric):
  """The loss of the latest minibatch: Keras's own "loss" log is a running mean over the epoch."""

  def __init__(self, loss, name="batch_loss"):
    super().__init__(name=name)
    self._loss = loss
    self.value = self.add_variable(shape=(), initializer="zeros", name="value")

  def update_state(self, y_true, y_pred, sample_weight=None):
    self.value.assign(tf.cast(self._loss(y_true, y_pred), self.value.dtype))

  def result(self):
    return self.value

  def reset_state(self):
    self.value.assign(0.0)


class _Recorder(keras.callbacks.Callback):
  """Every step's minibatch loss and end time; stops a run whose loss is no longer finite."""

  def __init__(self):
    super().__init__()
    self.losses, self.times = [], []

  def on_train_batch_end(self, batch, logs=None):
    value = float(logs["batch_loss"])
    self.losses.append(value)
    self.times.append(time.perf_counter())
    if not math.isfinite(value):
      self.model.stop_training = True


@dataclasses.dataclass
class Run:
  """One finished run: per-step minibatch losses (inf after a divergence) and its figures."""
  losses: np.ndarray  # float32 [steps]
  initial_loss: float
  final_loss: float  # inf when diverged
  seconds_per_step: float
  diverged: bool


def train(model, optimizer, weights, data, steps, seed):
  """`steps` steps of `model.fit` with `optimizer` from `weights` on the batches of `seed`.

  Args:
    model: a Model.
    optimizer: a fresh keras.optimizers.Optimizer.
    weights: the initial weights (initial_weights(model, seed)).
    data: (x, y) arrays.
    steps: how many minibatches.
    seed: fixes the minibatch order (batch_order), the same for every optimizer.
  """
  x, y = data
  keras_model = model.build()
  keras_model.set_weights(weights)
  loss = loss_function(model)
  initial = full_loss(keras_model, x, y, loss)
  # jit_compile off: XLA would take tens of seconds per run to compile, and it bypasses the
  # learned optimizer's fused LSTM cell, so wall times would not be the ones users see.
  keras_model.compile(optimizer=optimizer, loss=loss, metrics=[_BatchLoss(loss)],
                      jit_compile=False)
  order = tf.constant(batch_order(len(x), model.batch_size, steps, seed))
  x_tensor, y_tensor = tf.constant(x), tf.constant(y)
  batches = tf.data.Dataset.from_tensor_slices(order).map(
      lambda i: (tf.gather(x_tensor, i), tf.gather(y_tensor, i))).prefetch(2)
  recorder = _Recorder()
  keras_model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                  callbacks=[recorder])
  losses = np.full(steps, np.inf, np.float32)
  losses[:len(recorder.losses)] = recorder.losses
  diverged = not np.all(np.isfinite(losses))
  final = math.inf if diverged else full_loss(keras_model, x, y, loss)
  diverged = diverged or not math.isfinite(final)
  times = np.diff(recorder.times[WARMUP_STEPS - 1:])
  seconds = float(np.mean(times)) if len(times) else math.nan
  return Run(losses, initial, math.inf if diverged else final, seconds, diverged)


def block_means(losses, block=CURVE_BLOCK):
  """Means over consecutive blocks of `block` steps (inf where any step is inf)."""
  losses = np.asarray(losses, np.float64)
  whole = len(losses) // block * block
  return losses[:whole].reshape(-1, block).mean(axis=1).astype(np.float32)


# --- The verdict ---------------------------------------------------------------------------------


def config_name(optimizer, rate):
  """"adam@1e-03", "sgdm@3.16e-02", or a learned optimizer's own name ("mnist")."""
  return f"{optimizer}@{rate:.3g}" if optimizer in ("adam", "sgdm") else optimizer


def summarize(final_losses, initial_losses, learned=()):
  """The suite's figures for one model at one number of steps.

  Args:
    final_losses: config name (config_name) -> final losses, one per seed (inf: diverged).
    initial_losses: the initial losses, one per seed (the same for every config).
    learned: the names of the learned optimizers among the configs.

  Returns:
    A dict: per config mean/std/ratio to tuned Adam/diverged/stalled; the tuned Adam and SGD-m
    configs (argmin of the mean final loss over their rates); the initial loss.
  """
  initial = float(np.mean(initial_losses))
  configs = {}
  for name, values in final_losses.items():
    values = np.asarray(values, np.float64)
    diverged = bool(np.any(~np.isfinite(values)))
    mean = math.inf if diverged else float(np.mean(values))
    configs[name] = {"mean": mean, "std": math.inf if diverged else float(np.std(values)),
                     "diverged": diverged,
                     "stalled": bool(not diverged and mean > STALL_FRACTION * initial)}

  def tuned(prefix):
    names = [n for n in configs if n.startswith(prefix + "@")]
    return min(names, key=lambda n: configs[n]["mean"]) if names else None

  tuned_adam, tuned_sgdm = tuned("adam"), tuned("sgdm")
  for entry in configs.values():
    best = configs[tuned_adam]["mean"] if tuned_adam else math.nan
    entry["ratio_to_tuned_adam"] = entry["mean"] / best if best not in (0, math.inf) else math.nan
  default = config_name("adam", DEFAULT_ADAM_RATE)
  return {"initial_loss": initial, "configs": configs, "tuned_adam": tuned_adam,
          "tuned_sgdm": tuned_sgdm, "adam_default": default if default in configs else None,
          "learned": [n for n in learned if n in configs]}


def wins(summaries, name):
  """How `name` stands over per-model summaries: lower mean than tuned Adam and Adam 1e-3, and
  the models where it diverged or stalled."""
  counts = {"models": 0, "below_tuned_adam": 0, "below_adam_default": 0, "diverged": [],
            "stalled": []}
  for model, summary in summaries.items():
    entry = summary["configs"].get(name)
    if entry is None:
      continue
    counts["models"] += 1
    mean = entry["mean"]
    counts["below_tuned_adam"] += mean < summary["configs"][summary["tuned_adam"]]["mean"]
    counts["below_adam_default"] += mean < summary["configs"][summary["adam_default"]]["mean"]
    if entry["diverged"]:
      counts["diverged"].append(model)
    if entry["stalled"]:
      counts["stalled"].append(model)
  return counts


def done(counts, num_models=len(MODELS)):
  """The issue's done-when: on all `num_models`, below tuned Adam on >= 6 of 8 (three quarters),
  below Adam 1e-3 on all, and no divergence or stall."""
  return (counts["models"] == num_models
          and counts["below_tuned_adam"] >= math.ceil(0.75 * num_models)
          and counts["below_adam_default"] == num_models
          and not counts["diverged"] and not counts["stalled"])
