"""Where a step of MNIST meta-training goes: matmuls, elementwise gate work, copies.

Usage: python bench/kernels.py [--unrolls=3]

Runs a few MNIST meta-training unrolls (T = 20) under TensorFlow's profiler, one op at a time
(inter-op parallelism 1, each op still on every core), so that an op's duration is its own cost and
not time spent sharing the cores with another op. It prints, per optimizee step, the time of each
kind of kernel and the op types that cost most. The matmuls are the only arithmetic the network
needs; the rest is memory traffic. The profiler adds overhead: read the shares here and take the
speed from bench/run.py. Evaluation runs under XLA, whose dots finish asynchronously on the thread
pool after their trace event ends, so its kernel times cannot be split this way.
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

import problems  # noqa: E402
from learning_to_learn import meta  # noqa: E402

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
  trainer.reset(meta.make_seed(0))
  for unroll in range(2):  # compile and warm up outside the profile
    float(step(meta.make_seed(0, unroll)).final_loss)
  logdir = tempfile.mkdtemp(prefix="l2l_profile_")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  for unroll in range(num_unrolls):
    float(step(meta.make_seed(1, unroll)).final_loss)
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  return wall, kernel_times(logdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--unrolls", type=int, default=3, help="profiled unrolls of 20 steps each")
  args = parser.parse_args()
  tf.config.threading.set_inter_op_parallelism_threads(1)  # before any op runs
  problem, config, _ = problems.get_config("mnist")
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


if __name__ == "__main__":
  main()
