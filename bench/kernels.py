"""Where a step of MNIST meta-training goes: matmuls, elementwise gate work, copies.

Usage: python bench/kernels.py [--unrolls=3]

Runs a few MNIST meta-training unrolls (T = 20) under TensorFlow's profiler, one op at a time
(inter-op parallelism 1, each op still on every core), so that an op's duration is its own cost and
not time spent sharing the cores with another op. It prints, per optimizee step, the time of each
kind of kernel and the op types that cost most. The matmuls are the only arithmetic the network
needs; the rest is memory traffic. The profiler adds overhead: read the shares here and take the
speed from bench/run.py. Evaluation runs under XLA, whose dots finish asynchronously on the thread
pool after their trace event ends, so its kernel times cannot be split this way; instead it times
the first layer's ops alone, on TensorFlow's kernels and under XLA, and the network's forward and
backward pass over a 20-step unroll both ways: why meta-training stays off XLA.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from learning_to_learn import configs  # noqa: E402
from learning_to_learn import meta  # noqa: E402
from learning_to_learn import networks  # noqa: E402
from learning_to_learn import seeds as seeds_lib  # noqa: E402

_MATMULS = {"MatMul", "BatchMatMulV2", "BatchMatMulV3"}
_COPIES = {"ConcatV2", "Split", "SplitV", "Slice", "StridedSlice", "StridedSliceGrad", "Pad",
           "Transpose", "GatherV2", "Identity"}


def kind_of(op_type):
  """"matmul", "copy" (data moved, not computed) or "elementwise" (gates, their gradients, sums)."""
  # oneDNN builds rewrite ops under a "_Mkl" prefix (_MklMatMul): the same kernel kinds.
  op_type = op_type[len("_Mkl"):] if op_type.startswith("_Mkl") else op_type
  if op_type in _MATMULS:
    return "matmul"
  return "copy" if op_type in _COPIES else "elementwise"


def kernel_times(logdir):
  """(kind -> seconds, op type -> seconds, kernel count), summed over the compute threads."""
  path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  times, op_times, count = collections.Counter(), collections.Counter(), 0
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith(("tf_Compute", "tf_numa")):
        continue  # the Python thread only waits
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name  # "scope/name:OpType"
        # Containers (executors, thread pools, "end:" markers) hold the kernels; count leaves only.
        if "::" in name or ":" not in name or name.startswith("end:"):
          continue
        op_type = name.rsplit(":", 1)[-1]
        times[kind_of(op_type)] += event.duration_ps * 1e-12
        op_times[op_type] += event.duration_ps * 1e-12
        count += 1
  return times, op_times, count


def profile(trainer, num_unrolls):
  step = trainer.train_unroll
  trainer.reset(seeds_lib.make_seed(0))
  for unroll in range(2):  # compile and warm up outside the profile
    float(step(seeds_lib.make_seed(0, unroll)).final_loss)
  logdir = tempfile.mkdtemp(prefix="l2l_profile_")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  for unroll in range(num_unrolls):
    float(step(seeds_lib.make_seed(1, unroll)).final_loss)
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  return wall, kernel_times(logdir)


def per_call(fn, repetitions):
  fn()  # compile
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn())
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def xla_against_kernels(num_coords, repetitions=30):
  """Microseconds a call of each op of an LSTM layer (first layer: 2 inputs + 20 hidden + 1 bias
  row, 80 gates) on TensorFlow's kernels and under XLA, then the whole network's forward and
  backward pass over 20 steps, as steps/s."""
  stacked = tf.random.normal([23, num_coords])
  weights = tf.random.normal([23, 80])
  gates = tf.random.normal([80, num_coords])
  ops = {"gates = W^T [x; h] (forward dot)": lambda: tf.matmul(weights, stacked, transpose_a=True),
         "d[x; h] = W dgates (backward dot)": lambda: tf.matmul(weights, gates),
         "dW = [x; h] dgates^T (backward dot)": lambda: tf.matmul(stacked, gates, transpose_b=True),
         "sigmoid of the gates": lambda: tf.sigmoid(gates)}
  for name, op in ops.items():
    kernels, xla = (per_call(tf.function(op, jit_compile=jit), repetitions) for jit in (False, True))
    print(f"{name}, {num_coords} coordinates: {kernels * 1e6:.0f} us on TensorFlow's kernels, "
          f"{xla * 1e6:.0f} us under XLA (x{kernels / xla:.2f})")
  net = networks.CoordinateWiseDeepLSTM(layers=(20, 20), preprocess_name="LogAndSign",
                                        preprocess_options={"k": 5}, scale=0.01)
  gradients = tf.random.normal([20, num_coords])

  def forward_backward():
    with tf.GradientTape() as tape:
      state = net.initial_state_for_inputs(gradients[0])
      total = 0.0
      for t in range(20):
        update, state = net(gradients[t], state)
        total += tf.reduce_sum(update * gradients[t])
    return tape.gradient(total, net.trainable_variables)

  kernels, xla = (per_call(tf.function(forward_backward, jit_compile=jit), max(3, repetitions // 10))
                  for jit in (False, True))
  print(f"network forward and backward, 20 steps: {20 / kernels:.1f} steps/s on TensorFlow's "
        f"kernels, {20 / xla:.1f} under XLA (x{kernels / xla:.2f})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--unrolls", type=int, default=3, help="profiled unrolls of 20 steps each")
  args = parser.parse_args()
  tf.config.threading.set_inter_op_parallelism_threads(1)  # before any op runs
  problem, config, _ = configs.get_config("mnist")
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 20, learning_rate=0.001)
  wall, (times, op_times, count) = profile(trainer, args.unrolls)
  steps = 20 * args.unrolls
  total = sum(times.values())
  print(f"MNIST meta-training, T = 20, {os.cpu_count()} CPUs, ops one at a time: "
        f"{wall / steps * 1e3:.1f} ms per optimizee step under the profiler, "
        f"{count / steps:.0f} kernels per step")
  print("by kind: " + ", ".join(
      f"{kind} {times[kind] / steps * 1e3:.2f} ms ({times[kind] / total:.0%})"
      for kind in ("matmul", "elementwise", "copy")))
  print("costliest op types: " + ", ".join(
      f"{op} {seconds / steps * 1e3:.2f} ms" for op, seconds in op_times.most_common(8)))
  params, _ = problem.init(seeds_lib.make_seed(0))
  xla_against_kernels(sum(int(tf.size(p)) for p in params.values()))


if __name__ == "__main__":
  main()
