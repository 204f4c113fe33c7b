"""Scores candidate starts of the general optimizer on the task family's validation tasks.

Usage: python scripts/general_levers.py --data_dir=../shared/data [--unroll_length=20]
    [--split=valid|train] CANDIDATE [CANDIDATE ...]
  CANDIDATE: adam@RATE (Adam at that learning rate), or NAME@SCALE (a shipped optimizer or a
  train.py --save_path, its network run at output scale SCALE), or NAME@SCALE~RATE (the same with
  its step adapted online at rate RATE, `step_size`; ~0 turns a file's own adaptation off;
  ~RATE^START starts that multiplier at START instead of 1; ~RATE,BETA adapts it on the average
  of the previous updates, `adaptation_averaging`); a
  trailing ":norm" normalizes each tensor's update to RMS SCALE (`step_size.normalize`), ":snr"
  too and multiplies it by the RMS of Adam's normalized step on the tensor's gradients
  (`step_size.signal_ratio`; files named `:snrbc` were scored with its first moment
  bias-corrected, before the warm-up it has now).

Each candidate runs the 8 validation tasks of learning_to_learn/task_family.py for 1,000 steps from
the instances a meta-training run selects on (its evaluation seeds), without XLA, as
`train.py --nojit_compile` evaluates; the mean loss at step 1,000 is what selection compares.
Each chunk of --unroll_length steps draws its minibatches from its own seed, so a run's
evaluations are on the instances of its own --unroll_length: give the run's to compare with it.
`--split=train` scores the 24 training tasks instead, unaugmented, on their train splits: more
tasks to choose settings that are not meta-trained (a scale, an adaptation rate) on, still none of
the held-out suite's. Writes OUT/<candidate>.json: task -> [loss at step 0, loss at step 1,000]
(OUT: results/general_levers, or results/general_levers_train for the training tasks), then
OUT/table.md from every such file there (`--table_only` writes the table alone). Where Adam was
scored at several rates, "tuned Adam" is the best of them per task, and the table counts the tasks
on which each candidate ends below it and gives the geometric mean of its ratios to it: the
held-out suite's measure, on tasks that are not in it. With both splits scored,
results/general_levers/selection.md ranks the candidates scored on both over all 32 tasks by that
geometric mean, with the count beside it: what the shipped `general` is picked by
(learning_to_learn/pretrained/README.md says how).

`--runs=N` scores each task N times (the first the run above, then other instances and
minibatches) and keeps the mean, in OUT_runsN; with two candidates scored so on both splits,
results/general_levers_runsN/head_to_head.md compares them over all 32 tasks: a less noisy
tie-break between two close candidates than one run a task.
"""

import argparse
import glob
import json
import os
import time

import numpy as np

STEPS = 1000
DEFAULT_ADAM = "adam@0.001"  # Keras's default rate, the done-when's second yardstick
STALLED = 0.9
SPLIT_DIRECTORIES = {"valid": "results/general_levers", "train": "results/general_levers_train"}


def candidate_config(candidate):
  """The net config of `candidate` (see the usage)."""
  from learning_to_learn import evaluation, optimizer_files, training
  signal = candidate.endswith(":snr")
  normalized = signal or candidate.endswith(":norm")
  name, _, value = (candidate.rpartition(":")[0] if normalized else candidate).rpartition("@")
  value, tilde, rate = value.partition("~")
  rate, caret, start = rate.partition("^")
  rate, comma, averaging = rate.partition(",")
  try:
    value, rate = float(value), (float(rate) if tilde else None)
    start = float(start) if caret else None
    averaging = float(averaging) if comma else None
  except ValueError:
    value = None
  if not name or value is None or (name == "adam" and (tilde or normalized)):
    raise SystemExit(f"general_levers.py: error: {candidate!r} is not adam@RATE, NAME@SCALE or "
                     "NAME@SCALE~RATE, the last two with :norm or without.")
  if name == "adam":
    return evaluation.baseline_config("adam", value)
  config = training.net_config_from(name)
  for entry in config.values():
    path = entry.pop("net_path")
    entry["net_options"] = dict(entry["net_options"], scale=value,
                                initializer=optimizer_files.read_weights(path))
    if rate is not None:
      entry["net_options"]["scale_adaptation"] = rate
    if normalized:
      entry["net_options"]["normalize_output"] = True
    if signal:
      entry["net_options"]["signal_scaled"] = True
    if start is not None:
      entry["net_options"]["initial_multiplier"] = start
    if averaging is not None:
      entry["net_options"]["adaptation_averaging"] = averaging
  return config


def family(split, data_dir):
  """The tasks of `split`: "valid", the validation tasks; "train", the training ones unaugmented."""
  from learning_to_learn import task_family
  if split == "train":
    return task_family.unaugmented_tasks("train", data_dir)
  return task_family.tasks("valid", data_dir)


def score(candidate, data_dir, unroll_length=20, split="valid", runs=1):
  """task name -> [loss at step 0, loss at step STEPS], each the mean over the evaluation runs
  (`runs` of them, the first the one selection uses)."""
  from learning_to_learn import evaluation, seeds
  # train.py --seed=0 --evaluation_epochs=RUNS
  run_seeds = seeds.epoch_seeds(0, runs, seeds.EVALUATION)
  scores = {}
  for task in family(split, data_dir):
    start = time.time()
    evaluator = evaluation.Evaluator(task, candidate_config(candidate),
                                     unroll_length=unroll_length,
                                     jit_compile=False)
    losses = evaluator.run(run_seeds, STEPS)
    scores[task.name] = [float(np.mean(losses[:, 0])), float(np.mean(losses[:, STEPS]))]
    print(f"{candidate} {task.name}: {scores[task.name][1]:.4g} ({time.time() - start:.0f} s)",
          flush=True)
  return scores


def tuned_adam(results, tasks):
  """task -> the lowest final loss of the adam@RATE candidates, or None with fewer than two."""
  rates = [c for c in results if c.startswith("adam@")]
  if len(rates) < 2:
    return None
  return {t: min(results[c][t][1] for c in rates) for t in tasks}


def ratios_to(adam, scores, tasks):
  """A candidate's final loss over tuned Adam's, task by task, as an array."""
  return np.array([scores[t][1] / adam[t] for t in tasks])


def finals(scores, tasks):
  """task -> a candidate's loss at step STEPS: a yardstick for `ratios_to`."""
  return {t: scores[t][1] for t in tasks}


def geometric_mean(ratios):
  return float(np.exp(np.mean(np.log(ratios))))


def read(directory):
  """Candidate -> its scores (task -> [loss at step 0, at step STEPS]), from `directory`."""
  results = {}
  for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
    with open(path) as f:
      results[os.path.basename(path)[:-len(".json")].replace("+", "/")] = json.load(f)
  return results


def selection(directories):
  """The markdown ranking of the candidates scored on every split in `directories` (a split's
  directory, its label), over all their tasks together: how many end below tuned Adam, and the
  geometric mean of their ratios to it, lowest first (what picks the shipped `general`)."""
  ratios, default, stalled, tasks_total = {}, {}, {}, 0
  for directory, _ in directories:
    results = read(directory)
    tasks = list(next(iter(results.values()))) if results else []
    adam = tuned_adam(results, tasks)
    if adam is None or DEFAULT_ADAM not in results:
      return None
    tasks_total += len(tasks)
    adam_default = finals(results[DEFAULT_ADAM], tasks)
    for candidate, scores in results.items():
      if not candidate.startswith("adam@"):
        ratios.setdefault(candidate, []).extend(ratios_to(adam, scores, tasks))
        default.setdefault(candidate, []).extend(ratios_to(adam_default, scores, tasks))
        stalled[candidate] = stalled.get(candidate, 0) + sum(
            scores[t][1] > STALLED * scores[t][0] for t in tasks)
  ranked = sorted((c for c in ratios if len(ratios[c]) == tasks_total),
                  key=lambda c: np.mean(np.log(ratios[c])))
  labels = " and ".join(f"{label} (`{directory}`)" for directory, label in directories)
  lines = [f"Candidates scored on all {tasks_total} tasks, the {labels}: tuned Adam is the best "
           "of the Adam rates scored on each task (`scripts/general_levers.py`). Lowest geometric "
           f"mean of the ratios first. Stalled: the loss at step {STEPS} above {STALLED} x the "
           "initial loss, the held-out suite's measure.", "",
           "| candidate | tasks below tuned Adam | geometric mean of the ratios | worst ratio | "
           "tasks below Adam at 1e-3 | stalled |",
           "|---|---|---|---|---|---|"]
  for c in ranked:
    r = np.array(ratios[c])
    lines.append(f"| `{c}` | {int(np.sum(r < 1))} of {tasks_total} | "
                 f"{geometric_mean(r):.3f} | {np.max(r):.2f} | "
                 f"{int(np.sum(np.array(default[c]) < 1))} of {tasks_total} | {stalled[c]} |")
  return "\n".join(lines) + "\n"


def head_to_head(directories, runs):
  """The markdown comparison of the two candidates scored on every split in `directories` (a
  split's directory, its label), over all their tasks: how many each ends below the other on, and
  the geometric mean of its ratios to the other; None unless exactly two are."""
  results = [read(directory) for directory, _ in directories]
  both = sorted(set.intersection(*(set(r) for r in results)))
  if len(both) != 2:
    return None
  ratios = {c: [] for c in both}
  for r in results:
    tasks = list(r[both[0]])
    for c, o in zip(both, both[::-1]):
      ratios[c].extend(ratios_to(finals(r[o], tasks), r[c], tasks))
  total = len(ratios[both[0]])
  labels = " and ".join(f"{label} (`{directory}`)" for directory, label in directories)
  lines = [f"Two candidates on all {total} tasks, the {labels}, each task's loss at step {STEPS} "
           f"the mean of {runs} runs (`scripts/general_levers.py --runs={runs}`).", "",
           "| candidate | tasks below the other | geometric mean of the ratios to the other |",
           "|---|---|---|"]
  for c in both:
    r = np.array(ratios[c])
    lines.append(f"| `{c}` | {int(np.sum(r < 1))} of {total} | {geometric_mean(r):.3f} |")
  return "\n".join(lines) + "\n"


def table(directory, unroll_length=20, split="valid", runs=1):
  """The markdown table of every candidate's scores in `directory`, best mean first."""
  count = "one run" if runs == 1 else f"the mean of {runs} runs"
  results = read(directory)
  if not results:
    raise SystemExit(f"general_levers.py: error: no candidate's scores in {directory}; score one "
                     "first.")
  tasks = list(next(iter(results.values())))
  order = sorted(results, key=lambda c: np.mean([results[c][t][1] for t in tasks]))
  which = "training tasks (unaugmented, train splits)" if split == "train" else "validation tasks"
  lines = [f"Loss at step {STEPS} on the task family's {len(tasks)} {which} ({count} "
           f"each, the instances train.py's evaluations use, in chunks of {unroll_length} steps; "
           "`scripts/general_levers.py`). "
           "`NAME@SCALE`: that trained optimizer at output scale SCALE (`~RATE`: its step adapted "
           "online at rate RATE; `:norm`: each tensor's update normalized to RMS SCALE; "
           "`:snr`: normalized and multiplied by the RMS of Adam's m/sqrt(v^) on the tensor, m "
           "uncorrected; `:snrbc`, scored before that choice: the same with m bias-corrected, "
           "no warm-up; `^START`: the adapted multiplier's first value; `,BETA`: the "
           "multiplier adapted on the exponential average of the previous updates); "
           "`adam@RATE`: Adam.", "",
           "| task | " + " | ".join(f"`{c}`" for c in order) + " |",
           "|---|" + "---|" * len(order)]
  for task in tasks:
    best = min(results[c][task][1] for c in order)
    cells = [(f"**{results[c][task][1]:.4g}**" if results[c][task][1] == best
              else f"{results[c][task][1]:.4g}") for c in order]
    lines.append(f"| {task} | " + " | ".join(cells) + " |")
  lines.append("| mean | " + " | ".join(
      f"{np.mean([results[c][t][1] for t in tasks]):.4f}" for c in order) + " |")
  adam = tuned_adam(results, tasks)
  if adam is not None:
    yardstick, ratios = "tuned Adam", {c: ratios_to(adam, results[c], tasks) for c in order}
  elif len(order) == 2:  # a head-to-head comparison
    yardstick, ratios = "the other", {c: ratios_to(finals(results[o], tasks), results[c], tasks)
                                      for c, o in zip(order, order[::-1])}
  else:
    return "\n".join(lines) + "\n"
  lines.append(f"| tasks below {yardstick} | " + " | ".join(
      f"{int(np.sum(ratios[c] < 1))} of {len(tasks)}" for c in order) + " |")
  lines.append(f"| geometric mean of the ratios to {yardstick} | " + " | ".join(
      f"{geometric_mean(ratios[c]):.3f}" for c in order) + " |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("candidates", nargs="*")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--out", default=None,
                      help="default results/general_levers (_train with --split=train)")
  parser.add_argument("--split", default="valid", choices=("valid", "train"))
  parser.add_argument("--table_only", action="store_true")
  parser.add_argument("--unroll_length", type=int, default=20)
  parser.add_argument("--runs", type=int, default=1,
                      help="runs a task (other instances and minibatches), averaged; > 1 writes "
                           "to OUT_runsN")
  args = parser.parse_args()
  if args.runs < 1:
    raise SystemExit(f"general_levers.py: error: --runs={args.runs} must be at least 1.")
  if args.out is None:
    args.out = SPLIT_DIRECTORIES[args.split] + (f"_runs{args.runs}" if args.runs > 1 else "")
  os.makedirs(args.out, exist_ok=True)
  for candidate in [] if args.table_only else args.candidates:
    scores = score(candidate, args.data_dir, args.unroll_length, args.split, args.runs)
    # A run's directory as NAME: its path, "/" written as "+", names the file.
    with open(os.path.join(args.out, f"{candidate.replace('/', '+')}.json"), "w") as f:
      json.dump(scores, f, indent=1)
    print(f"{candidate}: mean loss at step {STEPS} {np.mean([s[1] for s in scores.values()]):.4f}")
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write(table(args.out, args.unroll_length, args.split, args.runs))
  splits = [(SPLIT_DIRECTORIES["valid"], "validation tasks"),
            (SPLIT_DIRECTORIES["train"], "training tasks unaugmented")]
  if args.runs > 1:
    splits = [(f"{d}_runs{args.runs}", label) for d, label in splits]
    if args.out in [d for d, _ in splits] and all(os.path.isdir(d) for d, _ in splits):
      comparison = head_to_head(splits, args.runs)
      if comparison is not None:
        with open(os.path.join(splits[0][0], "head_to_head.md"), "w") as f:
          f.write(comparison)
    return
  if args.out in SPLIT_DIRECTORIES.values() and all(os.path.isdir(d) for d, _ in splits):
    ranking = selection(splits)
    if ranking is not None:
      with open(os.path.join(SPLIT_DIRECTORIES["valid"], "selection.md"), "w") as f:
        f.write(ranking)


if __name__ == "__main__":
  main()
