"""Prints the cost of the coordinatewise LSTM's forward and backward pass, per cell kernel.

Usage: python bench/lstm_cell.py [--repetitions=7] [--coords=15920] [--steps=20]

The 2-layer 20-20 LSTM over MNIST's coordinates (15,910, padded to 15,920) for 20 steps, forward
and the gradient of a weighted sum of its outputs with respect to the inputs and every weight,
under `tf.function` on TensorFlow's kernels, for:
- plain: `networks.lstm_step`, feature-major ([hidden, coordinates]), the code's own path;
- block: TensorFlow's fused CPU cell `LSTMBlockCell`, batch-major ([coordinates, hidden]), its
  backward op `LSTMBlockCellGrad` registered through `tf.custom_gradient` with the two matmuls of
  the input and weight gradients around it;
- fused: this package's C++ op (`fused_lstm`), when it builds on this machine.
Variants run alternately (A B C A B C ...), so that a load from other processes on the cores
falls on all of them; each figure is a median, of wall time and of this process's CPU time (all
threads), which a load from other processes disturbs less. It reports; it never fails on a slow
machine.
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

from learning_to_learn import fused_lstm  # noqa: E402
from learning_to_learn import networks  # noqa: E402

INPUTS, HIDDEN = 2, 20


def weights(seed=0):
  rng = np.random.default_rng(seed)
  layers, size = [], INPUTS
  for _ in range(2):
    w = rng.normal(0, 1 / np.sqrt(size + HIDDEN), [size + HIDDEN, 4 * HIDDEN]).astype(np.float32)
    b = rng.normal(0, 0.1, [4 * HIDDEN]).astype(np.float32)
    layers.append((tf.Variable(w), tf.Variable(b)))
    size = HIDDEN
  return layers


def block_step(inputs, state, w, b, forget_bias=1.0):
  """One LSTMBlockCell step, batch-major: inputs [batch, k], state ([batch, h], [batch, h])."""
  hidden_prev, cell_prev = state

  @tf.custom_gradient
  def cell(x, cs_prev, h_prev, w, b):
    zeros = tf.zeros([HIDDEN])
    i, cs, f, o, ci, co, h = tf.raw_ops.LSTMBlockCell(
        x=x, cs_prev=cs_prev, h_prev=h_prev, w=w, wci=zeros, wcf=zeros, wco=zeros, b=b,
        forget_bias=forget_bias, cell_clip=-1.0, use_peephole=False)

    def grad(dcs, dh):
      cs_prev_grad, dicfo, _, _, _ = tf.raw_ops.LSTMBlockCellGrad(
          x=x, cs_prev=cs_prev, h_prev=h_prev, w=w, wci=zeros, wcf=zeros, wco=zeros, b=b, i=i,
          cs=cs, f=f, o=o, ci=ci, co=co, cs_grad=dcs, h_grad=dh, use_peephole=False)
      stacked = tf.concat([x, h_prev], axis=1)  # [batch, k + h]
      d_stacked = tf.matmul(dicfo, w, transpose_b=True)
      dx, dh_prev = d_stacked[:, :x.shape[1]], d_stacked[:, x.shape[1]:]
      return (dx, cs_prev_grad, dh_prev, tf.matmul(stacked, dicfo, transpose_a=True),
              tf.reduce_sum(dicfo, axis=0))

    return (cs, h), grad

  cell_next, hidden = cell(inputs, cell_prev, hidden_prev, w, b)
  return hidden, (hidden, cell_next)


def make_run(kind, layers, inputs, readout):
  """A compiled forward + backward pass of `kind` over inputs [steps, INPUTS, coords]."""
  variables = [v for layer in layers for v in layer]
  steps, _, coords = inputs.shape

  @tf.function(autograph=False)
  def run():
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      if kind == "block":
        state = [(tf.zeros([coords, HIDDEN]), tf.zeros([coords, HIDDEN])) for _ in layers]
      else:
        state = [networks.LSTMState(tf.zeros([HIDDEN, coords]), tf.zeros([HIDDEN, coords]))
                 for _ in layers]
      total = 0.0
      for t in range(steps):
        outputs = tf.transpose(inputs[t]) if kind == "block" else inputs[t]
        for n, (w, b) in enumerate(layers):
          if kind == "block":
            outputs, state[n] = block_step(outputs, state[n], w, b)
          elif kind == "fused":
            outputs, cell = fused_lstm.lstm_cell(outputs, *state[n], w, b)
            state[n] = networks.LSTMState(outputs, cell)
          else:
            outputs, state[n] = networks.lstm_step(outputs, state[n], w, b)
        readout_t = tf.transpose(readout[t]) if kind == "block" else readout[t]
        total += tf.reduce_sum(outputs * readout_t)
    gradients = tape.gradient(total, [inputs] + variables)
    return total, gradients

  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repetitions", type=int, default=7)
  parser.add_argument("--coords", type=int, default=15920)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  with open("/proc/cpuinfo") as f:
    model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
  print(f"Machine: {model}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}; "
        f"{args.coords} coordinates, {args.steps} steps, 2 layers of {HIDDEN}")
  rng = np.random.default_rng(1)
  inputs = tf.constant(rng.normal(size=[args.steps, INPUTS, args.coords]).astype(np.float32))
  readout = tf.constant(rng.normal(size=[args.steps, HIDDEN, args.coords]).astype(np.float32))
  layers = weights()
  kinds = ["plain", "block"] + (["fused"] if fused_lstm.available() else [])
  runs = {kind: make_run(kind, layers, inputs, readout) for kind in kinds}
  results = {kind: runs[kind]() for kind in kinds}  # traced and warmed up
  reference = results["plain"][1]
  for kind in kinds[1:]:
    error = max(float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(b)) + 1e-30))
                for a, b in zip(results[kind][1], reference))
    print(f"  {kind}: largest gradient difference from plain, relative to its tensor's "
          f"largest entry: {error:.1e}")
  times = {kind: [] for kind in kinds}
  cpu_times = {kind: [] for kind in kinds}
  for _ in range(args.repetitions):
    for kind in kinds:
      start, cpu_start = time.perf_counter(), time.process_time()
      float(runs[kind]()[0])
      times[kind].append(time.perf_counter() - start)
      cpu_times[kind].append(time.process_time() - cpu_start)
  base = np.median(times["plain"])
  for kind in kinds:
    median = np.median(times[kind])
    print(f"{kind}: {1e3 * median / args.steps:.2f} ms a step forward + backward (range "
          f"{1e3 * min(times[kind]) / args.steps:.2f}..{1e3 * max(times[kind]) / args.steps:.2f})"
          f" = x{base / median:.2f} the speed of plain; CPU time "
          f"{1e3 * np.median(cpu_times[kind]) / args.steps:.2f} ms a step")


if __name__ == "__main__":
  main()
