"""Prints the performance figures of meta-training and evaluation on this machine.

Usage: python bench/run.py [--quick]

Figures (medians over repetitions after warm-up, with min..max):
- the float32 matmul rate (2048 x 2048), the yardstick, measured in the same run;
- MNIST (784-20-10 MLP, 15,910 coordinates, T = 20): optimizee steps per second meta-training and
  evaluating, the network arithmetic they achieve as a fraction of the yardstick, and the fraction
  the issue's targets (250 and 800 steps/s) would take; the optimizer network's forward GFLOP/s;
- quadratic: meta-steps per second;
- peak memory of MNIST meta-training for T = 5, 20, 50, and the growth per unrolled step.
It reports; it never fails on a slow machine.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import problems  # noqa: E402
from learning_to_learn import meta  # noqa: E402
from learning_to_learn import networks  # noqa: E402


def timed(fn, repetitions, warmup=1):
  """Seconds per call of fn: (median, min, max) over repetitions, after warm-up calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)), float(np.min(times)), float(np.max(times))


def rate_line(label, work, seconds, unit):
  median, fastest, slowest = seconds
  return (f"{label}: {work / median:.1f} {unit} "
          f"(range {work / slowest:.1f}..{work / fastest:.1f})")


def matmul_gflops(repetitions):
  a = tf.random.normal([2048, 2048])
  matmul = tf.function(lambda: tf.matmul(a, a))
  seconds = timed(lambda: matmul().numpy(), repetitions)
  return 2 * 2048 ** 3 / 1e9, seconds


def unrolls_per_call(trainer, train, num_unrolls):
  step = trainer.train_unroll if train else trainer.eval_unroll
  counter = [0]

  def run():
    trainer.reset(meta.make_seed(0, counter[0]))
    for unroll in range(num_unrolls):
      result = step(meta.make_seed(0, counter[0], unroll + 1))
    float(result.final_loss)
    counter[0] += 1

  return run


def network_flops_per_coordinate(layers=(20, 20), inputs=2):
  """Multiply-adds x 2 of one coordinate's forward pass: LSTM gate matmuls and the output layer."""
  flops, size = 0, inputs
  for hidden in layers:
    flops += 2 * (size + hidden) * 4 * hidden
    size = hidden
  return flops + 2 * size


def arithmetic_line(steps, seconds, flop_per_step, yardstick, target):
  """The network's arithmetic rate at a measured speed, and what `target` steps/s would need."""
  rate = steps / seconds[0] * flop_per_step / 1e9
  needed = target * flop_per_step / 1e9
  return (f"  = {rate:.1f} GFLOP/s of network arithmetic, {rate / yardstick:.2f} of the yardstick; "
          f"{target} steps/s would need {needed:.0f} GFLOP/s, {needed / yardstick:.2f} of it")


def network_forward(num_coords, num_steps, repetitions):
  net = networks.CoordinateWiseDeepLSTM(layers=(20, 20), preprocess_name="LogAndSign",
                                        preprocess_options={"k": 5}, scale=0.01)
  gradients = tf.random.normal([num_steps, num_coords])

  @tf.function(jit_compile=True)
  def forward():
    state = net.initial_state_for_inputs(gradients[0])
    total = tf.zeros([num_coords])
    for t in range(num_steps):
      update, state = net(gradients[t], state)
      total += update
    return total

  seconds = timed(lambda: forward().numpy(), repetitions)
  return network_flops_per_coordinate() * num_coords * num_steps / 1e9, seconds


def peak_memory_child(unroll_length):
  """In a fresh process: peak RSS (MB) after two meta-training unrolls on MNIST."""
  problem, config, _ = problems.get_config("mnist")
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, unroll_length)
  trainer.reset(meta.make_seed(0))
  for unroll in range(2):
    float(trainer.train_unroll(meta.make_seed(0, unroll)).final_loss)
  print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def peak_memory(unroll_length):
  out = subprocess.run([sys.executable, __file__, "--memory_child", str(unroll_length)],
                       capture_output=True, text=True, check=False)
  try:
    return float(out.stdout.strip().splitlines()[-1])
  except (IndexError, ValueError):
    return float("nan")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few repetitions (for CI)")
  parser.add_argument("--memory_child", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.memory_child:
    peak_memory_child(args.memory_child)
    return
  repetitions = 2 if args.quick else 5
  print(f"Machine: {os.cpu_count()} CPUs, TensorFlow {tf.__version__}"
        f"{' (quick mode)' if args.quick else ''}")

  gflop, seconds = matmul_gflops(3 * repetitions)
  yardstick = gflop / seconds[0]
  print(rate_line("matmul 2048x2048 float32 (yardstick)", gflop, seconds, "GFLOP/s"))

  problem, config, _ = problems.get_config("mnist")
  optimizer = meta.MetaOptimizer(**config)
  trainer = optimizer.meta_minimize(problem, 20, learning_rate=0.001)
  num_unrolls = 1 if args.quick else 5
  steps = 20 * num_unrolls
  num_coords = sum(int(np.prod(p.shape)) for p in problem.init(meta.make_seed(0))[0].values())
  # Matmul arithmetic of the network per optimizee step; training adds two gradient matmuls per
  # forward one. The MLP's own (about 12 MFLOP a step) is left out.
  forward_flop = network_flops_per_coordinate() * num_coords
  seconds = timed(unrolls_per_call(trainer, True, num_unrolls), repetitions)
  print(rate_line("MNIST meta-training (T=20)", steps, seconds, "steps/s"))
  print(arithmetic_line(steps, seconds, 3 * forward_flop, yardstick, 250))
  seconds = timed(unrolls_per_call(trainer, False, num_unrolls), repetitions)
  print(rate_line("MNIST evaluation", steps, seconds, "steps/s"))
  print(arithmetic_line(steps, seconds, forward_flop, yardstick, 800))
  gflop, seconds = network_forward(num_coords, 20, repetitions)
  print(rate_line(f"optimizer network forward ({num_coords} coords, XLA)", gflop, seconds,
                  "GFLOP/s") + f" = {gflop / seconds[0] / yardstick:.2f} of the yardstick")

  problem, config, _ = problems.get_config("quadratic")
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 20, learning_rate=0.001)
  print(rate_line("quadratic meta-training (T=20)", num_unrolls,
                  timed(unrolls_per_call(trainer, True, num_unrolls), repetitions),
                  "meta-steps/s"))

  lengths = (5, 50) if args.quick else (5, 20, 50)  # the fixed ~1.4 GB hides T <= 20 alone
  memory = {t: peak_memory(t) for t in lengths}
  growth = (memory[lengths[-1]] - memory[lengths[0]]) / (lengths[-1] - lengths[0])
  print("MNIST meta-training peak memory: " + ", ".join(
      f"T={t}: {m:.0f} MB" for t, m in memory.items()) + f"; {growth:.1f} MB per unrolled step")


if __name__ == "__main__":
  main()
