"""Writes RESULTS.md from the result files that `evaluate.py --compare` leaves in results/<name>/.

Usage: python scripts/results_page.py [--results_dir=results] [--output=RESULTS.md]

Nothing here is typed by hand: every number comes from a summary.json, every plot from a loss.png,
and the experiments and their titles from scripts/experiments.py.
"""

import argparse
import json
import os
import sys

import experiments  # scripts/experiments.py, beside this file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from learning_to_learn import results_summary  # noqa: E402  pylint: disable=g-import-not-at-top

def describe(summary):
  """The learned optimizer's preprocessing and output scale, as saved with it when recorded."""
  config = next(iter(summary["optimizer"].values()), None)
  if config is None:  # a summary written before evaluate.py recorded the optimizer
    return f"{summary['settings']} settings"
  options = config["net_options"]
  k = options.get("preprocess_options", {}).get("k")
  inputs = options.get("preprocess_name") + (f" k = {k}" if k is not None else " inputs")
  return f"{inputs}, output scale {options.get('scale')}"


def best_baseline(losses, step):
  """The tuned baseline with the lowest mean loss at `step` (a str key), and its losses there."""
  name = min((k for k in losses if k != "L2L"), key=lambda k: losses[k][step]["mean"])
  return name, losses[name][step]


def apart(learned, other):
  """Whether `learned`'s 95% interval lies wholly below `other`'s."""
  return learned["mean"] + learned["ci95"] < other["mean"] - other["ci95"]


def paired_difference(summary, baseline, step):
  """L2L's loss minus `baseline`'s, run by run, at `step`; None in summaries written before
  evaluate.py kept it, or where a run diverged."""
  paired = summary["paired_difference"].get(baseline, {}).get(step)
  return paired if paired and paired["mean"] is not None else None


def section(name, title, summary, table):
  steps = sorted({int(s) for losses in summary["final_loss"].values() for s in losses})
  lines = [f"## {title}", "",
           f"Problem `{summary['problem']}`"
           + (f", {summary['split']} split, data: {summary['data']}; " if summary["data"] != "no data"
              else "; ") +
           f"optimizer `{summary['path']}` ({describe(summary)}); "
           f"{summary['num_test_epochs']} test runs, baselines tuned on "
           f"{summary['num_tuning_epochs']} other runs; seed {summary['seed']}.", "",
           table.strip(), "", f"![{name}](results/{name}/loss.png)", ""]
  learned = summary["final_loss"].get("L2L")
  if learned:
    for step in steps:
      key = str(step)
      rival_name, rival = best_baseline(summary["final_loss"], key)
      mean, half = learned[key]["mean"], learned[key]["ci95"]
      verdict = "lower than" if mean < rival["mean"] else "not lower than"
      line = (f"- At step {step} the learned optimizer's mean loss ({mean:.4g} ± {half:.2g}) is "
              f"{verdict} the best tuned baseline's ({rival_name}, {rival['mean']:.4g} ± "
              f"{rival['ci95']:.2g})")
      if mean < rival["mean"]:
        overlapping = [k for k, v in summary["final_loss"].items()
                       if k != "L2L" and not apart(learned[key], v[key])]
        line += (f"; its 95% interval overlaps {', '.join(overlapping)}'s" if overlapping else
                 "; its 95% interval is apart from every baseline's")
      lines.append(line + ".")
      paired = paired_difference(summary, rival_name, key)
      if paired:
        diff, spread = paired["mean"], paired["ci95"]
        sign = ("below zero" if diff + spread < 0 else "above zero" if diff - spread > 0
                else "overlapping zero")
        lines.append(f"  Run by run (every optimizer's test runs share their initial weights and "
                     f"minibatches), its loss minus {rival_name}'s is {diff:+.3g} ± "
                     f"{spread:.2g}: its 95% interval is {sign}.")
    lines.append("")
  return lines


# (problem, reference-settings experiment, paper-settings experiment)
SETTINGS_PAIRS = [("quadratics", "quadratic", "quadratic_paper"),
                  ("MNIST (5,000-digit sample)", "mnist_reference", "mnist_paper")]


def ratio_to_best_baseline(summary, step="100"):
  """L2L's mean loss over the best tuned baseline's: below 1, the learned optimizer wins."""
  losses = summary["final_loss"]
  best = min(v[step]["mean"] for k, v in losses.items() if k != "L2L")
  return losses["L2L"][step]["mean"] / best


def settings_section(summaries):
  """Which settings train better, judged on each problem by L2L over the best tuned baseline."""
  lines = ["## Reference settings against paper settings", "",
           "The mean loss of the learned optimizer at step 100 over that of the best tuned "
           "baseline on the same test runs (below 1: the learned optimizer wins). The two "
           "settings' quadratics differ (uniform against Gaussian), so the ratio, not the loss, "
           "is what compares them.", "",
           "| problem | reference (k = 5, scale 0.01) | paper (p = 10, scale 0.1) | better |",
           "|---|---|---|---|"]
  for problem, reference, paper in SETTINGS_PAIRS:
    if reference in summaries and paper in summaries:
      ratios = [ratio_to_best_baseline(summaries[n]) for n in (reference, paper)]
      better = "reference" if ratios[0] < ratios[1] else "paper"
      lines.append(f"| {problem} | {ratios[0]:.2f} | {ratios[1]:.2f} | {better} |")
  return lines + [""]


# Figure 7's panels: (panel, `cifar` experiment, LSTM-sub experiment, one-LSTM experiment).
CIFAR_PANELS = [("CIFAR-10", "cifar10", None, "cifar10_single"),
                ("CIFAR-5", "cifar5", "cifar5_sub", "cifar5_single"),
                ("CIFAR-2", "cifar2", "cifar2_sub", "cifar2_single")]


def cifar_cell(summary, step):
  """L2L's loss at `step` and how it stands against the best tuned baseline (see the legend)."""
  learned = summary["final_loss"]["L2L"][step]
  rival, other = best_baseline(summary["final_loss"], step)
  paired = paired_difference(summary, rival, step)
  if apart(learned, other):
    mark = "**apart**"
  elif paired and paired["mean"] + paired["ci95"] < 0:
    mark = "paired"
  elif learned["mean"] < other["mean"]:
    mark = "mean"
  else:
    mark = "no"
  return f"{learned['mean']:.4g} ± {learned['ci95']:.2g} ({mark})"


def cifar_section(summaries):
  """Figure 7 in one table: every CIFAR optimizer against the best tuned baseline per panel."""
  lines = ["## CIFAR (figure 7) at a glance", "",
           "Mean loss over each panel's test runs of batch 5 (the valid split), each learned "
           "optimizer against the same tuned baselines and test runs; the sections below have "
           "the full tables and plots. Against the best tuned baseline at that step: "
           "**apart**: lower, 95% intervals apart; paired: lower, and the run-by-run difference's "
           "interval is below zero, though the two intervals overlap; mean: lower mean only; "
           "no: not lower.", "",
           "| panel | step | LSTM (`cifar`) | LSTM-sub (`cifar_sub`) | one LSTM (`cifar_single`) "
           "| best tuned baseline |", "|---|---|---|---|---|---|"]
  for panel, *names in CIFAR_PANELS:
    if names[0] not in summaries:
      continue
    for step in ("100", "200"):
      cells = [cifar_cell(summaries[n], step) if n in summaries else "-" for n in names]
      rival, other = best_baseline(summaries[names[0]]["final_loss"], step)
      lines.append(f"| {panel} | {step} | {' | '.join(cells)} | {rival} "
                   f"{other['mean']:.4g} ± {other['ci95']:.2g} |")
  return lines + [""]


# The MNIST levers (scripts/mnist_ablation.sh), in the order of the table.
ABLATION = [
    ("paper", "LogAndSign p = 10, sum of losses (the paper's)"),
    ("paper_log", "LogAndSign p = 10, log objective"),
    ("adam_normalized", "AdamNormalized inputs, sum of losses"),
    ("adam_normalized_log", "AdamNormalized inputs, log objective"),
    ("imitation", "AdamNormalized inputs, log objective, 100 epochs imitating tuned Adam, then "
                  "imitation weight 0.1"),
    ("long_run", "as `imitation`, longer: stage 1 of the run in `ongoing/` (its epochs count "
                 "from the end of 100 imitation epochs at T = 100, which took 12 minutes)"),
    ("curriculum", "`long_run`'s best, then 200-step epochs selected at steps 100 and 200: stage 2 "
                   "of the run in `ongoing/` (its epochs and minutes count from stage 1's end)"),
]


def _cell(losses, name, step):
  entry = losses.get(name, {}).get(step)
  return f"{entry['mean']:.4g} ± {entry['ci95']:.2g}" if entry else "-"


def ablation_section(results_dir):
  """One row per lever: its kept optimizer's valid losses beside tuned NAG and Adam's."""
  rows = []
  baselines_path = os.path.join(results_dir, "mnist_ablation", "baselines", "summary.json")
  if not os.path.exists(baselines_path):
    return []
  baselines = results_summary.read(baselines_path)["final_loss"]
  for name, levers in ABLATION:
    folder = os.path.join(results_dir, "mnist_ablation", name)
    if not os.path.exists(os.path.join(folder, "summary.json")):
      continue
    summary = results_summary.read(os.path.join(folder, "summary.json"))
    with open(os.path.join(folder, "best.json")) as f:
      best = json.load(f)
    losses = dict(baselines, **summary["final_loss"])
    rows.append(f"| `{name}` | {levers} | {best['epoch']} | {best['seconds'] / 60:.0f} | "
                + " | ".join(_cell(losses, n, s) for n in ("L2L", "nag", "adam")
                             for s in ("100", "200")) + " |")
  if not rows:
    return []
  return ["## MNIST levers, one at a time", ""] + ablation_verdict(results_dir, baselines) + \
      shipped_note(results_dir) + [

          "Each variant but `long_run` and `curriculum` was meta-trained with the same budget "
          "(`scripts/mnist_ablation.sh`) on the 50,000 training digits of the full MNIST and the optimizer kept whose mean loss "
          "at step 100 over 32 valid instances was lowest; the table runs it and the tuned "
          "baselines on 100 other valid instances. Minutes: wall time of meta-training up to "
          "the kept epoch, on 2 CPU cores shared with other jobs. The baselines' rates were "
          "tuned at step 100 on 10 other valid instances.", "",
          "| variant | levers | kept epoch | minutes | L2L @100 | L2L @200 | NAG @100 | "
          "NAG @200 | Adam @100 | Adam @200 |",
          "|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def shipped_note(results_dir):
  """Where the long run's optimizer, shipped as `mnist`, was tested on more runs."""
  path = os.path.join(results_dir, "mnist", "summary.json")
  if not os.path.exists(path):
    return []
  summary = results_summary.read(path)
  learned = summary["final_loss"]["L2L"]
  return [f"`long_run`'s optimizer ships as `{summary['path']}`; the MNIST section below runs it "
          f"and the tuned baselines on {summary['num_test_epochs']} test runs (the 100 here and "
          f"{summary['num_test_epochs'] - 100} more): "
          + ", ".join(f"{v['mean']:.4g} ± {v['ci95']:.2g} at step {k}" for k, v in learned.items())
          + ".", ""]


def ablation_verdict(results_dir, baselines):
  """Whether the best variant beats every tuned baseline, by its mean and by 95% intervals."""
  best = None
  for name, _ in ABLATION:
    path = os.path.join(results_dir, "mnist_ablation", name, "summary.json")
    if os.path.exists(path):
      learned = results_summary.read(path)["final_loss"]["L2L"]
      if best is None or learned["100"]["mean"] < best[1]["100"]["mean"]:
        best = (name, learned)
  lines = []
  for step in ("100", "200"):
    name, learned = best
    mean, half = learned[step]["mean"], learned[step]["ci95"]
    rival, other = best_baseline(baselines, step)
    if apart(learned[step], other):
      verdict = "lower than every tuned baseline's, intervals apart"
    elif mean < other["mean"]:
      verdict = (f"lower than every tuned baseline's mean, but its interval overlaps "
                 f"{rival}'s")
    else:
      verdict = f"not lower than {rival}'s"
    lines.append(f"- Step {step}: the best variant, `{name}`, reaches {mean:.4g} ± {half:.2g}: "
                 f"{verdict} ({rival}: {other['mean']:.4g} ± {other['ci95']:.2g}).")
  return lines + [""]


def transfer_verdict(name, counts, num_models, steps):
  """The held-out suite's done-when for one learned optimizer, from its win counts."""
  need = -(-3 * num_models // 4)  # >= 6 of 8
  failed = counts["diverged"] + [m for m in counts["stalled"] if m not in counts["diverged"]]
  met = (counts["models"] == num_models and counts["below_tuned_adam"] >= need
         and counts["below_adam_default"] == num_models and not failed)
  ran = (f"on the {num_models} models" if counts["models"] == num_models else
         f"on {counts['models']} of the {num_models} models so far (the rest not run yet)")
  trouble = (f"diverged on {', '.join(counts['diverged']) or 'none'}, stalled (final loss above "
             f"0.9 x initial) on {', '.join(counts['stalled']) or 'none'}")
  # With models still to run, the verdict is "not met" only once no result could mend it.
  lost = (counts["models"] - counts["below_adam_default"] > 0 or failed
          or counts["models"] - counts["below_tuned_adam"] > num_models - need)
  verdict = ("met" if met else "not met" if lost or counts["models"] == num_models
             else "undecided until every model has run")
  return (f"- `{name}` at {int(steps):,} steps, {ran}: lower mean final loss than tuned Adam on "
          f"{counts['below_tuned_adam']} (done-when: at least {need} of {num_models}), than Adam "
          f"1e-3 on {counts['below_adam_default']} (done-when: all {num_models}); {trouble}. "
          f"Done-when {verdict}.")


def family_section(results_dir):
  """The candidates for `general` on the task family (scripts/general_levers.py): the ranking that
  picks it, and the head-to-head of two close candidates over several runs a task."""
  parts = [os.path.join(results_dir, "general_levers", "selection.md"),
           os.path.join(results_dir, "general_levers_runs3", "head_to_head.md")]
  found = [p for p in parts if os.path.exists(p)]
  if not found:
    return []
  lines = ["## The general optimizer's candidates, on the task family", "",
           "Every lever tried for `general` without meta-training, scored on the 32 tasks of "
           "`learning_to_learn/task_family.py` (none of the held-out suite's) by the loss at step "
           "1,000; what each candidate is: `scripts/general_levers.py` and docs/training.md "
           "(\"The general optimizer\"). The shipped `general` is the one "
           "learning_to_learn/pretrained/README.md names.", ""]
  for path in found:
    with open(path) as f:
      lines += [f.read().strip(), ""]
  return lines


def transfer_section(results_dir):
  """The held-out suite (scripts/transfer_suite.py): its models, table, figure and verdict."""
  folder = os.path.join(results_dir, "transfer")
  if not os.path.exists(os.path.join(folder, "summary.json")):
    return []
  with open(os.path.join(folder, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(folder, "table.md")) as f:
    table = f.read()
  models = summary["models"]
  names = ", ".join(f"`{n}`" for n in summary["learned"])
  rates = lambda key: ", ".join(f"{r:.3g}" for r in summary[key])
  lines = ["## Held-out suite: models the learned optimizers never saw", "",
           f"{len(models)} Keras models that played no part in meta-training or selection, each "
           f"trained with `model.fit` (batch {summary['batch_size']}), {len(summary['seeds'])} "
           "seeds each, every optimizer from the same initial weights and minibatches per seed "
           "(`scripts/transfer_suite.py`). Learned: the shipped " + names + ". Baselines: Adam "
           f"at {rates('adam_rates')} (tuned Adam: the rate of lowest mean final loss per model, "
           f"chosen on these runs; Adam 1e-3 is one of them) and SGD with momentum "
           f"{summary['sgdm_momentum']:g} at {rates('sgdm_rates')}, tuned the same way. Final "
           "loss: the loss on all of the data the model trains on, after the last step; the "
           "initial loss likewise before the first. Milliseconds per step: wall time after the "
           "first 20 steps, on 2 CPU cores shared with other jobs, so only roughly comparable; "
           "\"grid edge\": the tuned rate is the lowest or highest tried. "
           "The image models train on the valid splits (the last sixth of each training file), "
           "which no training task of the family or of `mnist` read; the runs that selected the "
           "optimizers read them, with other models.", "",
           "| model | what it is | data | params |", "|---|---|---|---|"]
  lines += [f"| {n} | {m['description']} | {m['data']} | {m['params']:,} |"
            for n, m in models.items()]
  lines += ["", table.strip(), "", "![held-out suite](results/transfer/loss.png)", ""]
  for steps, by_name in summary["wins"].items():
    num_models = sum(int(steps) in m["steps"] for m in models.values())
    if int(steps) == 1000:  # the horizon the done-when is stated at
      lines += [transfer_verdict(n, counts, num_models, steps) for n, counts in by_name.items()]
    else:
      lines += [f"- `{n}` at {int(steps):,} steps, on {c['models']} of {num_models} models: lower "
                f"mean final loss than tuned Adam on {c['below_tuned_adam']}, than Adam 1e-3 on "
                f"{c['below_adam_default']}; diverged on {', '.join(c['diverged']) or 'none'}, "
                f"stalled on {', '.join(c['stalled']) or 'none'}." for n, c in by_name.items()]
  pending = [f"{n} at {s:,} steps" for n, m in models.items() for s in m["steps"]
             if n not in summary["results"].get(str(s), {})]
  if pending:
    lines.append(f"- Not run yet: {', '.join(pending)}.")
  return lines + [""]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results_dir", default="results")
  parser.add_argument("--output", default="RESULTS.md")
  args = parser.parse_args()
  lines = ["# Results", "",
           "Generated by `python scripts/results_page.py` from `results/*/summary.json`; the "
           "commands that produce those files are in `scripts/run_experiments.sh`. Intervals are "
           "95% normal-approximation intervals of the mean over the test runs.", ""]
  found = 0
  summaries, body = {}, []
  for name, title, _ in experiments.EXPERIMENTS:
    folder = os.path.join(args.results_dir, name)
    summary_path = os.path.join(folder, "summary.json")
    if not os.path.exists(summary_path):
      body += [f"## {title}", "", "Not run yet.", ""]
      continue
    summary = results_summary.read(summary_path)
    with open(os.path.join(folder, "table.md")) as f:
      table = f.read()
    body += section(name, title, summary, table)
    summaries[name] = summary
    found += 1
  lines += (settings_section(summaries) + ablation_section(args.results_dir)
            + cifar_section(summaries) + body + family_section(args.results_dir)
            + transfer_section(args.results_dir))
  with open(args.output, "w") as f:
    f.write("\n".join(lines))
  print(f"Wrote {args.output} from {found} of {len(experiments.EXPERIMENTS)} experiments.")


if __name__ == "__main__":
  main()
