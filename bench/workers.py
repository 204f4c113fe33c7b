"""Meta-training throughput with 1 process and with 2 workers of MultiWorkerMirroredStrategy.

Usage: python bench/workers.py [--problem=quadratic] [--epochs=20] [--num_instances=2]

Both setups run train.py with the same global number of optimizee instances per meta-step: one
process holding all of them (--strategy=default), or two processes on 127.0.0.1 holding half each
(--strategy=multi_worker, TF_CONFIG per worker). The figure is optimizee instance-steps per second
over the second half of the epochs (the first half includes tracing), from train.py's own
"Mean epoch time" lines. On one 2-core machine both workers share the cores, so this shows the
cost of the collective ops more than any speed-up; on separate machines each worker has its own.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from learning_to_learn import distribute  # noqa: E402


def launch(args, tf_config=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  env.pop("TF_CONFIG", None)
  if tf_config is not None:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epoch_seconds(log):
  """The mean meta-training epoch time of the last log period in a train.py log.

  Evaluation blocks print the same line under an EVALUATION header; those are skipped.
  """
  header, times = None, []
  for line in log.splitlines():
    if re.search(r"\] (Epoch \d+|EVALUATION|Last epochs)$", line):
      header = line.rsplit("] ", 1)[1]
    match = re.search(r"Mean epoch time: ([0-9.]+) s", line)
    if match and header and header.startswith("Epoch"):
      times.append(float(match.group(1)))
  if not times:
    raise RuntimeError("train.py printed no epoch times:\n" + log[-2000:])
  return times[-1]


def run(num_workers, flags):
  with tempfile.TemporaryDirectory() as tmp:
    common = [*flags, f"--save_path={tmp}/run"]
    if num_workers == 1:
      processes = [launch(common)]
    else:
      processes = [launch([*common, "--strategy=multi_worker"], tf_config)
                   for tf_config in distribute.localhost_cluster(num_workers)]
    logs = [p.communicate()[1] for p in processes]
    for p, log in zip(processes, logs):
      if p.returncode:
        raise RuntimeError(f"train.py exited with {p.returncode}:\n{log[-2000:]}")
    return epoch_seconds(logs[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--problem", default="quadratic")
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--num_instances", type=int, default=2)
  parser.add_argument("--num_steps", type=int, default=100)
  args = parser.parse_args()
  half = max(args.epochs // 2, 1)
  flags = [f"--problem={args.problem}", f"--num_epochs={2 * half}", f"--log_period={half}",
           f"--evaluation_period={10 * half}", "--evaluation_epochs=1",
           f"--checkpoint_period={2 * half}", f"--num_instances={args.num_instances}",
           f"--num_steps={args.num_steps}"]
  print(f"{args.problem}: {args.num_instances} instances per meta-step, {args.num_steps} steps "
        f"per epoch, mean over epochs {half + 1}..{2 * half}")
  for workers in (1, 2):
    seconds = run(workers, flags)
    rate = args.num_instances * args.num_steps / seconds
    print(f"{workers} worker{'s' if workers > 1 else ''}: {seconds:.3f} s per epoch, "
          f"{rate:.0f} optimizee instance-steps/s")


if __name__ == "__main__":
  main()
