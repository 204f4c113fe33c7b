"""What a run will cost in memory, checked before it starts rather than discovered by a crash.

The per-coordinate costs are estimates (docs/performance.md gives their source): they
are used to refuse runs that cannot fit and to say what a large one will take, not to plan exactly.
"""

import os

import numpy as np
import tensorflow as tf

# Bytes of memory per optimizee coordinate per unrolled step: meta-training keeps every step's
# activations for the backward pass; with recompute=True, only each step's inputs.
UNROLL_BYTES_PER_COORDINATE_STEP = 1900
RECOMPUTED_BYTES_PER_COORDINATE_STEP = 520
# Each unrolled step is traced into one graph (unroll.py is a Python loop): building it takes time
# and memory in proportion to T. Longer unrolls than this are refused, with their cost stated.
MAX_UNROLL_LENGTH = 1000
# Longer unrolls than this are logged with their cost before training starts.
QUIET_UNROLL_LENGTH = 100


def available_memory():
  """Bytes this process may still use: the smaller of free RAM and its cgroup's room; or None."""
  limits = []
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          limits.append(int(line.split()[1]) * 1024)
  except (OSError, ValueError, IndexError):
    pass
  # The container's limit: cgroup v2's files, else v1's (whose "no limit" is a huge number).
  for limit_file, usage_file in (("memory.max", "memory.current"),
                                 ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
    try:
      with open(os.path.join("/sys/fs/cgroup", limit_file)) as f:
        maximum = f.read().strip()
      if maximum != "max" and int(maximum) < 2**60:
        with open(os.path.join("/sys/fs/cgroup", usage_file)) as f:
          limits.append(int(maximum) - int(f.read().strip()))
      break
    except (OSError, ValueError):
      continue
  return min(limits) if limits else None


def gigabytes(num_bytes):
  if num_bytes >= 2**30 / 10:
    return f"{num_bytes / 2**30:,.1f} GB"
  return f"{num_bytes / 2**20:,.1f} MB"


def check_fits(needed, what, fix):
  """Raises a one-line ValueError when `needed` bytes exceed the memory available now."""
  available = available_memory()
  if available is not None and needed > available:
    raise ValueError(f"{what} needs about {gigabytes(needed)} of memory but {gigabytes(available)} "
                     f"is available; {fix}")


def num_coordinates(problem):
  """How many optimizee coordinates the problem's parameters have (one instance)."""
  params, _ = problem.init(tf.constant([0, 0], tf.int32))
  return int(sum(np.prod(p.shape) for p in tf.nest.flatten(params)))


def unroll_cost(problem, unroll_length, instances_per_replica=1, recompute=False):
  """Checks that meta-training with this unroll length can run; returns its cost in words.

  `recompute`: whether the trainer recomputes each step's activations (MetaTrainer's argument).

  Raises:
    ValueError: unroll_length above MAX_UNROLL_LENGTH, or an estimate above the free memory.
  """
  coordinates = num_coordinates(problem) * max(instances_per_replica, 1)
  needed = unroll_length * coordinates * (RECOMPUTED_BYTES_PER_COORDINATE_STEP if recompute
                                          else UNROLL_BYTES_PER_COORDINATE_STEP)
  if unroll_length > MAX_UNROLL_LENGTH:
    raise ValueError(f"--unroll_length={unroll_length} is above {MAX_UNROLL_LENGTH}: every step "
                     "is traced into one graph, which takes minutes per few hundred steps, and "
                     f"meta-training would hold about {gigabytes(needed)}; use at most "
                     f"{MAX_UNROLL_LENGTH} (the paper uses 20).")
  check_fits(needed, f"--unroll_length={unroll_length} over {coordinates} coordinates",
             "lower --unroll_length or --num_instances.")
  return (f"meta-training will hold about {gigabytes(needed)} for the unrolled steps "
          f"({coordinates} coordinates), and building its graph takes longer the larger T is "
          "(minutes for a few hundred steps)")
