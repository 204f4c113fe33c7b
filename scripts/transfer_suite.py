"""Runs the held-out suite (learning_to_learn/transfer_suite.py) and writes its results.

Usage:
  python scripts/transfer_suite.py [--learned=mnist[,NAME_OR_DIR...]] [--models=a,b]
      [--seeds=0,1,2,3,4] [--steps=N] [--out=results/transfer] [--data_dir=../shared/data]

For each model, each number of steps it has (1,000; two models also 5,000), each seed and each
optimizer (Adam and SGD with momentum 0.9 at five rates each, and every --learned optimizer), one
`model.fit` from the seed's initial weights on the seed's minibatches. Every finished run is kept
in OUT/runs/<model>.npz, keyed by (optimizer, rate, seed, steps): the same command, run again,
skips what is done, so an interrupted run resumes and a new learned optimizer adds only its own
runs. The shorter horizon runs first for every model, then the longer one.

Then it writes OUT/summary.json, OUT/table.md and OUT/loss.png from every complete set of runs.
--steps replaces every model's steps (a quick check; give it its own --out; --steps=1000 runs
the 1,000-step part alone). --report_only writes those three files from the cache.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from learning_to_learn import atomic  # noqa: E402
from learning_to_learn import keras as l2l_keras  # noqa: E402
from learning_to_learn import optimizer_files  # noqa: E402
from learning_to_learn import transfer_suite as suite  # noqa: E402

DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "regression": "synthetic regression", "sequences": "synthetic sequences"}


def learned_name(checkpoint):
  """A learned optimizer's name in the results: a shipped name, or its directory's base name."""
  if checkpoint in optimizer_files.shipped_names():
    return checkpoint
  return os.path.basename(os.path.normpath(checkpoint))


def configs(learned):
  """(optimizer, rate, make) for every optimizer of the suite."""
  out = [("adam", r, lambda r=r: keras.optimizers.Adam(learning_rate=r)) for r in suite.ADAM_RATES]
  out += [("sgdm", r, lambda r=r: keras.optimizers.SGD(learning_rate=r,
                                                       momentum=suite.SGDM_MOMENTUM))
          for r in suite.SGDM_RATES]
  out += [(learned_name(c), 1.0, lambda c=c: l2l_keras.LearnedOptimizer(checkpoint=c))
          for c in learned]
  return out


def run_key(optimizer, rate, seed, steps):
  return f"{optimizer},{rate:.6g},{seed},{steps}"


class Cache:
  """One npz per model: `<key>,curve` (float32 block means) and `<key>,scalars` (initial loss,
  final loss, seconds per step, diverged) for every finished run; rewritten whole after each."""

  def __init__(self, directory):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self._runs = {}

  def _path(self, model):
    return os.path.join(self.directory, f"{model}.npz")

  def runs(self, model):
    if model not in self._runs:
      self._runs[model] = {}
      if os.path.exists(self._path(model)):
        with np.load(self._path(model)) as f:
          self._runs[model] = {name: f[name] for name in f.files}
    return self._runs[model]

  def has(self, model, key):
    return f"{key},scalars" in self.runs(model)

  def add(self, model, key, run):
    runs = self.runs(model)
    runs[f"{key},curve"] = suite.block_means(run.losses)
    runs[f"{key},scalars"] = np.array([run.initial_loss, run.final_loss, run.seconds_per_step,
                                       float(run.diverged)], np.float64)
    atomic.replace(self._path(model), lambda path: np.savez(path, **runs))

  def drop(self, models, prefix):
    """Removes every run whose key starts with `prefix` from each model's file: how many."""
    dropped = 0
    for model in models:
      runs = self.runs(model)
      gone = [name for name in runs if name.startswith(prefix)]
      if gone:
        for name in gone:
          del runs[name]
        atomic.replace(self._path(model), lambda path, runs=runs: np.savez(path, **runs))
        dropped += sum(name.endswith(",scalars") for name in gone)
    return dropped

  def get(self, model, key):
    runs = self.runs(model)
    scalars = runs[f"{key},scalars"]
    return runs[f"{key},curve"], scalars


def file_digest(checkpoint):
  """The sha256 of a learned optimizer's network file: which weights its cached runs are of."""
  with open(optimizer_files.single_net_file(checkpoint), "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def forget_changed(cache, learned, models):
  """Drops the cached runs of every --learned optimizer whose file changed since they ran.

  The runs are keyed by the optimizer's name, so a new `general` shipped under the old name would
  otherwise be reported with the old one's runs. OUT/runs/learned.json keeps each name's digest;
  a name first seen there is taken to be what its cached runs ran.
  """
  path = os.path.join(cache.directory, "learned.json")
  digests = {}
  if os.path.exists(path):
    with open(path) as f:
      digests = json.load(f)
  for checkpoint in learned:
    name, digest = learned_name(checkpoint), file_digest(checkpoint)
    if digests.get(name, digest) != digest:
      dropped = cache.drop(models, f"{name},")
      print(f"{name}: its file changed since its cached runs ({digests[name][:12]} -> "
            f"{digest[:12]}); dropped those {dropped} runs to run them again.", flush=True)
    digests[name] = digest
  atomic.replace(path, lambda tmp: _write_json(tmp, digests))


def _write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)


def reported_steps(model, args):
  """The horizons a model reports: its own, or a quick check's --steps alone."""
  return list(model.steps) if args.steps in (None, *model.steps) else [args.steps]


def num_params(model):
  return int(sum(np.prod(w.shape) for w in model.build().get_weights()))


def run_all(args, cache, learned):
  """Every missing run, the shorter horizon first; the summary rewritten after each model."""
  models = [suite.BY_NAME[m] for m in args.models]
  horizons = sorted({s for m in models for s in ([args.steps] if args.steps else m.steps)})
  optimizers = configs(learned)
  for steps in horizons:
    for model in models:
      if steps not in ([args.steps] if args.steps else model.steps):
        continue
      missing = [(o, r, make, s) for s in args.seeds for o, r, make in optimizers
                 if not cache.has(model.name, run_key(o, r, s, steps))]
      if not missing:
        continue
      x, y, _ = suite.load_data(model, args.data_dir)
      weights = {}
      for optimizer, rate, make, seed in missing:
        if seed not in weights:
          weights[seed] = suite.initial_weights(model, seed)
        start = time.time()
        run = suite.train(model, make(), weights[seed], (x, y), steps, seed)
        cache.add(model.name, run_key(optimizer, rate, seed, steps), run)
        print(f"{model.name} {steps} steps seed {seed} {suite.config_name(optimizer, rate)}: "
              f"loss {run.initial_loss:.4g} -> {run.final_loss:.4g}, "
              f"{1000 * run.seconds_per_step:.2f} ms/step, {time.time() - start:.0f} s",
              flush=True)
      keras.backend.clear_session()
      write_results(args, cache, learned)


def collect(args, cache, learned):
  """{steps: {model: (summary, curves, seconds)}} from every config with all seeds finished."""
  names = [learned_name(c) for c in learned]
  results = {}
  for model in (m for m in suite.MODELS if m.name in args.models):  # the suite's order
    for steps in reported_steps(model, args):
      finals, initials, curves, seconds = {}, [], {}, {}
      for optimizer, rate, _ in configs(learned):
        keys = [run_key(optimizer, rate, s, steps) for s in args.seeds]
        if not all(cache.has(model.name, k) for k in keys):
          continue
        name = suite.config_name(optimizer, rate)
        got = [cache.get(model.name, k) for k in keys]
        finals[name] = [float(g[1][1]) for g in got]
        initials = [float(g[1][0]) for g in got]
        curves[name] = np.stack([g[0] for g in got])
        # A run that diverged within the warm-up has no time per step: the others' mean.
        times = [float(g[1][2]) for g in got if math.isfinite(g[1][2])]
        seconds[name] = float(np.mean(times)) if times else None
      if not any(n.startswith("adam@") for n in finals):
        continue
      summary = suite.summarize(finals, initials, names)
      for name, entry in summary["configs"].items():
        entry["seconds_per_step"] = seconds[name]
      results.setdefault(steps, {})[model.name] = (summary, curves)
  return results


def describe(model, data_dir):
  x, _, _ = suite.load_data(model, data_dir)
  split = f", {model.split} split" if model.split != "all" else ""
  return f"{DATASET_NAMES[model.dataset]}{split}, {len(x):,} examples"


def write_results(args, cache, learned):
  results = collect(args, cache, learned)
  names = [learned_name(c) for c in learned]
  models = {m.name: m for m in suite.MODELS if m.name in args.models}
  summary = {"learned": names, "seeds": list(args.seeds), "batch_size": suite.BATCH_SIZE,
             "stall_fraction": suite.STALL_FRACTION, "adam_rates": list(suite.ADAM_RATES),
             "sgdm_rates": list(suite.SGDM_RATES), "sgdm_momentum": suite.SGDM_MOMENTUM,
             "models": {name: {"description": m.description, "data": describe(m, args.data_dir),
                               "params": num_params(m), "loss": m.loss,
                               "steps": reported_steps(m, args)}
                        for name, m in models.items()},
             "results": {}, "wins": {}, "done": {}}
  for steps, by_model in sorted(results.items()):
    summary["results"][str(steps)] = {m: s for m, (s, _) in by_model.items()}
    summaries = {m: s for m, (s, _) in by_model.items()}
    summary["wins"][str(steps)] = {n: suite.wins(summaries, n) for n in names}
    summary["done"][str(steps)] = {n: suite.done(summary["wins"][str(steps)][n], len(models))
                                   for n in names}
  writers = {os.path.join(args.out, "summary.json"):
             lambda p: _write_text(p, json.dumps(summary, indent=1, allow_nan=True) + "\n"),
             os.path.join(args.out, "table.md"): lambda p: _write_text(p, table(summary))}
  if results:
    writers[os.path.join(args.out, "loss.png")] = lambda p: plot(results, models, p)
  atomic.replace_all(writers)


def _write_text(path, text):
  with open(path, "w") as f:
    f.write(text)


def _loss(entry):
  if entry["diverged"]:
    return "diverged"
  return f"{entry['mean']:.4g} ± {entry['std']:.2g}"


def table(summary):
  """One table per horizon: each model's tuned baselines and learned optimizers, mean ± std over
  the seeds of the final loss, with the ratio to tuned Adam and milliseconds per step."""
  lines = []
  for steps, by_model in summary["results"].items():
    learned = summary["learned"]
    lines += [f"Final loss after {int(steps):,} steps (mean ± std over {len(summary['seeds'])} "
              "seeds; in brackets: ratio to tuned Adam, milliseconds per step).", "",
              "| model | params | initial | tuned Adam | Adam 1e-3 | tuned SGD-m | "
              + " | ".join(f"`{n}`" for n in learned) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(learned)]
    edges = {suite.config_name(optimizer, r) for optimizer in ("adam", "sgdm")
             for r in (min(summary[f"{optimizer}_rates"]), max(summary[f"{optimizer}_rates"]))}
    for model, s in by_model.items():
      c = s["configs"]

      def cell(name, rate=False):
        if name not in c:
          return "-"
        entry = c[name]
        at = f" at {name.split('@')[1]}" if rate else ""
        if rate and name in edges:  # the best may lie beyond the grid
          at += ", grid edge"
        flags = " stalled" if entry["stalled"] else ""
        ms = ("-" if entry["seconds_per_step"] is None
              else f"{1000 * entry['seconds_per_step']:.1f}")
        return f"{_loss(entry)}{at}{flags} ({entry['ratio_to_tuned_adam']:.2f}, {ms} ms)"
      lines.append(f"| {model} | {summary['models'][model]['params']:,} | "
                   f"{s['initial_loss']:.4g} | {cell(s['tuned_adam'], True)} | "
                   f"{cell(s['adam_default'])} | {cell(s['tuned_sgdm'], True)} | "
                   + " | ".join(cell(n) for n in learned) + " |")
    lines.append("")
  return "\n".join(lines)


def _smooth(curve, width=5):
  """A moving mean over `width` blocks, shorter at the start, so the first points stay."""
  cumulative = np.cumsum(np.insert(curve, 0, 0.0))
  ends = np.arange(1, len(curve) + 1)
  starts = np.maximum(ends - width, 0)
  return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def plot(results, models, path):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  panels = [(steps, model) for steps, by_model in sorted(results.items()) for model in by_model]
  columns = 4
  rows = math.ceil(len(panels) / columns)
  figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  for ax, (steps, model) in zip(axes.flat, panels):
    summary, curves = results[steps][model]
    tuned = ("tuned Adam = Adam 1e-3" if summary["adam_default"] == summary["tuned_adam"]
             else "tuned Adam")  # then drawn once
    shown = [(summary["tuned_adam"], tuned, "C0"), (summary["adam_default"], "Adam 1e-3", "C1"),
             (summary["tuned_sgdm"], "tuned SGD-m", "C2")]
    shown += [(n, n, f"C{3 + i}") for i, n in enumerate(summary["learned"])]
    seen = set()
    for name, label, color in shown:
      if name is None or name in seen or name not in curves:
        continue
      seen.add(name)
      block = np.asarray(curves[name], np.float64)
      if not np.all(np.isfinite(block)):
        block = np.where(np.isfinite(block), block, np.nan)
      smooth = np.stack([_smooth(c) for c in block])
      x = (np.arange(smooth.shape[1]) + 1) * suite.CURVE_BLOCK
      rate = f" ({name.split('@')[1]})" if "@" in name else ""
      ax.plot(x, np.nanmean(smooth, axis=0), label=label + rate, lw=1.2, color=color)
      ax.fill_between(x, np.nanmin(smooth, axis=0), np.nanmax(smooth, axis=0), color=color,
                      alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_title(f"{model}, {steps:,} steps", fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
  figure.suptitle("Minibatch loss, mean over seeds with their range (10-step means, smoothed)",
                  fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=90)
  plt.close(figure)


def parse(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(m.name for m in suite.MODELS),
                      help="comma-separated model names")
  parser.add_argument("--learned", default="mnist",
                      help="comma-separated shipped names or train.py --save_path directories")
  parser.add_argument("--seeds", default=",".join(map(str, suite.SEEDS)))
  parser.add_argument("--steps", type=int, default=None,
                      help="replaces every model's steps (a quick check)")
  parser.add_argument("--report_only", action="store_true",
                      help="write summary.json, table.md and loss.png from the cache; run nothing")
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "transfer"))
  default_data = os.path.join(os.path.dirname(ROOT), "shared", "data")
  parser.add_argument("--data_dir", default=default_data if os.path.isdir(default_data) else None)
  args = parser.parse_args(argv)
  args.models = [m for m in args.models.split(",") if m]
  unknown = [m for m in args.models if m not in suite.BY_NAME]
  if unknown:
    parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(suite.BY_NAME)}")
  args.learned = [c for c in args.learned.split(",") if c]
  args.seeds = [int(s) for s in args.seeds.split(",") if s]
  return args


def main():
  args = parse()
  for checkpoint in args.learned:  # a bad name fails now, not after an hour of baselines
    l2l_keras.LearnedOptimizer(checkpoint=checkpoint)
  cache = Cache(os.path.join(args.out, "runs"))
  forget_changed(cache, args.learned, list(suite.BY_NAME))
  if not args.report_only:
    run_all(args, cache, args.learned)
  write_results(args, cache, args.learned)
  print(f"Wrote {args.out}/summary.json, table.md and loss.png.")


if __name__ == "__main__":
  main()
