"""Prints the cost of LearnedOptimizer against Adam in a Keras training step on this machine.

Usage: python bench/keras_step.py [--quick] [--checkpoint=PATH] [--model=NAME]

Figures, for the paper's MNIST MLP (784-20-10 sigmoid, 15,910 parameters, batch 128), or with
`--model` one of the held-out suite's models (`transfer_suite.MODELS`: e.g. `mnist-relu-128-64`,
109,386 weights, or `cifar-conv-16-32`, 42,314), trained by a compiled custom step (forward,
gradients, `apply_gradients`), with TensorFlow's kernels and with XLA:
- milliseconds per training step: median over repetitions of `--steps_per_repetition` steps each,
  after warm-up, with min..max, the optimizers taking turns; and the learned optimizer's time as a
  multiple of Adam's; where the fused op runs, also its earlier variants (a layer at a time; the
  one-op update with the LSTM state written to fresh tensors rather than in place) and, where the
  CPU has AVX512_BF16, bfloat16 matmuls;
- seconds of the first step of a fresh model and optimizer, the optimizer built inside that
  step's trace as `model.fit` builds it without a distribution strategy;
- optimizer memory per model parameter: bytes of all of the optimizer's variables divided by the
  model's parameter count, from the variables themselves (for 20-20 LSTM layers: 2 layers x
  (hidden + cell) x 20 float32 = 320 bytes per coordinate, plus the shared weights spread over the
  parameters; Adam: two moments, 8 bytes).
It reports; it never fails on a slow machine. Without --checkpoint it times an untrained 20-20
network saved to a temporary file: the cost does not depend on the weights' values.
"""

import argparse
import functools
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from learning_to_learn import datasets  # noqa: E402
from learning_to_learn import fused_lstm  # noqa: E402
from learning_to_learn import keras as l2l_keras  # noqa: E402
from learning_to_learn import networks  # noqa: E402
from learning_to_learn import optimizer_files  # noqa: E402
from learning_to_learn import transfer_suite  # noqa: E402
from run import cpu_features, cpu_model  # noqa: E402  (bench/run.py, beside this script)

BATCH_SIZE = 128


PAPER_MODEL = "mnist-mlp"


class _LayerAtATime(l2l_keras.LearnedOptimizer):
  """The learned optimizer without its one-op update (`fused_lstm.apply_learned_step`)."""

  def _fused_step(self):
    return False


class _OutOfPlace(l2l_keras.LearnedOptimizer):
  """The one-op update writing the next LSTM state to fresh tensors for `assign`
  (`fused_lstm.learned_step`), as before it overwrote the state in place."""

  def _overwrites_state(self):
    return False


def make_model(name):
  if name == PAPER_MODEL:
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(20, activation="sigmoid"),
                             keras.layers.Dense(10)])
  return transfer_suite.BY_NAME[name].build()


def make_batches(name, rng):
  """8 minibatches of the model's inputs and targets: real MNIST digits for the paper's MLP, else
  random values of the right shapes and kinds (a step's cost does not depend on them)."""
  if name == PAPER_MODEL:
    data = datasets.load_mnist(None, "train")
    indices = rng.integers(0, len(data.labels), [8, BATCH_SIZE])
    return tf.constant(data.images[indices]), tf.constant(data.labels[indices])
  model = make_model(name)
  spec = transfer_suite.BY_NAME[name]
  shape = [8, spec.batch_size] + list(model.inputs[0].shape[1:])
  if spec.dataset == "sequences":
    images = rng.integers(0, transfer_suite.VOCABULARY, shape).astype(np.int32)
  else:
    images = rng.random(shape, dtype=np.float32)
  outputs = model.output_shape[-1]
  if spec.loss == "mse":
    labels = rng.random([8, spec.batch_size, outputs], dtype=np.float32)
  else:
    labels = rng.integers(0, outputs, [8, spec.batch_size]).astype(np.int32)
  return tf.constant(images), tf.constant(labels)


def _train_step(model, optimizer, loss_fn, images, labels):
  with tf.GradientTape() as tape:
    loss = loss_fn(labels, model(images, training=True))
  gradients = tape.gradient(loss, model.trainable_variables)
  optimizer.apply_gradients(zip(gradients, model.trainable_variables))
  return loss


def make_step(model, optimizer, jit_compile, loss_fn):
  # A partial, not a closure: TF's retracing warning counts the traces of every closure of one
  # code object together, and would take one step per optimizer for one step retraced.
  return tf.function(functools.partial(_train_step, model, optimizer, loss_fn),
                     jit_compile=jit_compile)


def seconds_per_step(steps, batches, repetitions, steps_per_repetition):
  """{name: (median, min, max) seconds per step} over repetitions, after a warm-up that compiles.

  The steps take turns, a repetition each, so that a load from other processes on the cores falls
  on all of them and their ratios hold better than their absolute times.
  """
  images, labels = batches
  for step in steps.values():
    for i in range(3):
      step(images[i], labels[i]).numpy()
  times = {name: [] for name in steps}
  for _ in range(repetitions):
    for name, step in steps.items():
      start = time.perf_counter()
      for i in range(steps_per_repetition):
        loss = step(images[i % len(images)], labels[i % len(labels)])
      loss.numpy()  # waits for the last step
      times[name].append((time.perf_counter() - start) / steps_per_repetition)
  return {name: (float(np.median(t)), float(np.min(t)), float(np.max(t)))
          for name, t in times.items()}


def optimizer_bytes(optimizer):
  return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in optimizer.variables)


def ms_line(label, seconds):
  median, fastest, slowest = seconds
  return f"  {label}: {1e3 * median:.2f} ms/step (range {1e3 * fastest:.2f}..{1e3 * slowest:.2f})"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few, short repetitions (for CI)")
  parser.add_argument("--checkpoint", default=None,
                      help="a trained optimizer (name, directory or .npz); default: an untrained "
                           "20-20 network")
  parser.add_argument("--model", default=PAPER_MODEL,
                      choices=[PAPER_MODEL] + [m.name for m in transfer_suite.MODELS],
                      help="the model trained: the paper's MNIST MLP (default) or one of the "
                           "held-out suite's")
  args = parser.parse_args()
  repetitions, steps_per_repetition = (3, 10) if args.quick else (7, 50)

  with tempfile.TemporaryDirectory() as tmp:
    checkpoint = args.checkpoint
    if checkpoint is None:
      checkpoint = optimizer_files.save(networks.CoordinateWiseDeepLSTM(
          layers=(20, 20), preprocess_name="LogAndSign", preprocess_options={"k": 5},
          scale=0.01), os.path.join(tmp, "cw.npz"))
    try:
      make_learned = lambda: l2l_keras.LearnedOptimizer(checkpoint)
      make_learned()
      batches = make_batches(args.model, np.random.default_rng(0))
    except (ValueError, FileNotFoundError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    if args.model == PAPER_MODEL:
      loss_fn, description = (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              "MNIST MLP 784-20-10")
    else:
      spec = transfer_suite.BY_NAME[args.model]
      loss_fn, description = transfer_suite.loss_function(spec), spec.description

    print(f"Machine: {os.cpu_count()} CPUs of {cpu_model()} ({cpu_features()}), TensorFlow "
          f"{tf.__version__}, Keras {keras.__version__}{' (quick mode)' if args.quick else ''}")
    print(f"Keras step: {'one fused op a variable' if fused_lstm.chosen() else 'TensorFlow ops'} "
          "(fused_lstm.chosen())")
    print(f"{args.model}: {description}; batch {int(batches[0].shape[1])}, median of "
          f"{repetitions} x {steps_per_repetition} steps")
    memory = {}
    for jit_compile in (False, True):
      print("XLA (jit_compile=True):" if jit_compile else "TensorFlow kernels (jit_compile=False):")
      # name -> (the optimizer's constructor, the environment its step is traced in)
      candidates = {"learned": (make_learned, {}),
                    "adam": (lambda: keras.optimizers.Adam(0.01), {})}
      if not jit_compile and fused_lstm.chosen():
        # The path before the whole update became one op: the fused cell a layer at a time.
        candidates["learned, a layer at a time"] = (lambda: _LayerAtATime(checkpoint), {})
        candidates["learned, state not in place"] = (lambda: _OutOfPlace(checkpoint), {})
        if fused_lstm.bf16_supported():
          candidates["learned, bfloat16 matmuls"] = (
              make_learned, {fused_lstm.MATMUL_ENV: "bfloat16"})
      steps = {}
      for name, (make, env) in candidates.items():
        model, optimizer = make_model(args.model), make()
        optimizer.build(model.trainable_variables)
        steps[name] = make_step(model, optimizer, jit_compile, loss_fn)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:  # traced, so built with the environment's settings
          steps[name](batches[0][0], batches[1][0]).numpy()
        finally:
          for k, v in saved.items():
            if v is None:
              os.environ.pop(k)
            else:
              os.environ[k] = v
        num_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
        memory[name] = (optimizer_bytes(optimizer), num_params)
      seconds = seconds_per_step(steps, batches, repetitions, steps_per_repetition)
      for name in seconds:
        print(ms_line(name, seconds[name]))
      for name in seconds:
        if name != "adam":
          print(f"  {name} / adam: {seconds[name][0] / seconds['adam'][0]:.2f}x")

    # As model.fit without a distribution strategy builds an optimizer: inside its first traced
    # step.
    print("First step, the optimizer built inside it (tracing and building included):")
    for name, make in (("learned", make_learned), ("adam", lambda: keras.optimizers.Adam(0.01))):
      model, optimizer = make_model(args.model), make()
      step = make_step(model, optimizer, False, loss_fn)
      start = time.perf_counter()
      step(batches[0][0], batches[1][0]).numpy()
      print(f"  {name}: {time.perf_counter() - start:.2f} s")

  print("Optimizer memory per model parameter:")
  for name, (num_bytes, num_params) in memory.items():
    print(f"  {name}: {num_bytes / num_params:.1f} bytes "
          f"({num_bytes:,} bytes of optimizer variables / {num_params:,} parameters)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
