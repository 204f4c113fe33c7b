"""Evaluates a learned or hand-designed optimizer.

Usage: `python evaluate.py --problem=quadratic --path=DIR [--compare]`.

Every epoch draws a fresh problem instance and starts the optimizer from fresh state (the reference
kept Adam's moments across epochs; this does not). All optimizers use the same split and the same
instances for the same --seed.
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from learning_to_learn import atomic
from learning_to_learn import comparison_store
from learning_to_learn import configs
from learning_to_learn import console
from learning_to_learn import evaluation
from learning_to_learn import locking
from learning_to_learn import optimizer_files
from learning_to_learn import reporting
from learning_to_learn import results_summary
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import stopping

OPTIMIZERS = ("L2L",) + tuple(evaluation.BASELINES)
COMPARE_LOCK = "compare.lock"  # in --output_dir and --baselines_dir while a comparison runs

flags.DEFINE_enum("optimizer", "L2L", OPTIMIZERS, "The optimizer to evaluate.")
flags.DEFINE_string("path", None, "A trained optimizer: a directory from train.py --save_path, or "
                    "the name of a shipped one.")
flags.DEFINE_string("problem", "simple", f"One of {', '.join(configs.PROBLEM_NAMES)}.")
flags.DEFINE_integer("num_epochs", 100, "Problem instances to run.")
flags.DEFINE_integer("num_steps", 100, "Optimizee steps per instance.")
flags.DEFINE_float("learning_rate", 0.001, "Learning rate of a hand-designed optimizer.")
flags.DEFINE_integer("seed", 0, "Seed of the problem instances and minibatches.")
flags.DEFINE_string("data_dir", None, "Directory with the data files (see README, Data).")
flags.DEFINE_list("labels", None, "Classifiers only: keep these labels, numbered 0..k-1 in this "
                  "order (e.g. 0,1,2,3,4), or a named set: cifar5 (0-4), cifar2 (0,1), lstm-sub "
                  "(5-9); default all.")
flags.DEFINE_enum("split", "train", ["train", "valid", "test"],
                  "Data split the classifiers draw from.")
flags.DEFINE_enum("settings", "reference", ["reference", "paper"],
                  "Problem settings (paper: Gaussian quadratics) and a fresh L2L's; a "
                  "trained optimizer keeps the preprocessing and scale saved with it.")
flags.DEFINE_integer("unroll_length", 20, "Steps per compiled call. Each call draws its "
                     "minibatches from a seed of its own, so another value trains on other "
                     "minibatches (the same initial parameters).")
flags.DEFINE_list("hidden_layers", None, "MNIST MLP hidden sizes (default 20), e.g. 40 or 20,20.")
flags.DEFINE_enum("activation", None, ["sigmoid", "relu"], "MNIST MLP activation (default "
                  "sigmoid).")
flags.DEFINE_boolean("compare", False, "Compare the learned optimizer with every tuned baseline: "
                     "tune each rate, run all on the same test instances, write a table, a CSV "
                     "and a plot to --output_dir.")
flags.DEFINE_integer("num_tuning_epochs", 10, "With --compare: instances per tuning run.")
flags.DEFINE_list("baselines", list(evaluation.BASELINES), "With --compare: the hand-designed "
                  "optimizers to tune and run; empty (--baselines=) for the learned one alone, "
                  "e.g. beside an earlier baselines-only comparison on the same seed.")
flags.DEFINE_list("report_steps", None, "With --compare: steps the table reports (default: 100 "
                  "and --num_steps).")
flags.DEFINE_string("baselines_dir", None, "With --compare: where the baselines' tuned rates and "
                    "test runs are kept and reused (tuning.json, baseline_runs.npz: a record "
                    "per setting; default --output_dir), e.g. another optimizer's comparison on "
                    "the same problem.")
flags.DEFINE_string("output_dir", None, "With --compare: where results go (default "
                    "runs/compare/<problem>, kept apart from the published results/).")
flags.DEFINE_boolean("jit_compile", None, "XLA for every unroll (--jit_compile), for none "
                     "(--nojit_compile); unset: the faster (meta.eval_jit_compile).")
FLAGS = flags.FLAGS


def validate_flags():
  for name in ("num_epochs", "num_steps", "unroll_length", "num_tuning_epochs"):
    if getattr(FLAGS, name) <= 0:
      raise ValueError(f"--{name}={getattr(FLAGS, name)} must be positive.")
  if FLAGS.seed < 0:
    raise ValueError(f"--seed={FLAGS.seed} must be non-negative.")
  configs.parse_labels(FLAGS.labels)  # its form here; its range once the data is read
  if FLAGS.optimizer != "L2L" and FLAGS.path is not None:
    raise ValueError(f"--path is for --optimizer=L2L, not {FLAGS.optimizer}; drop one of them.")
  unknown = sorted(set(FLAGS.baselines) - set(evaluation.BASELINES))
  if unknown:
    raise ValueError(f"--baselines={','.join(FLAGS.baselines)}: {', '.join(unknown)} unknown; "
                     f"choose from {','.join(evaluation.BASELINES)}, or leave it empty.")
  if FLAGS.compare and not FLAGS.baselines and FLAGS.path is None:
    raise ValueError("--compare with --baselines= (none) needs --path: there is nothing to run.")
  if FLAGS.compare and FLAGS.num_epochs < 2:
    raise ValueError(f"--num_epochs={FLAGS.num_epochs}: --compare needs at least 2 test runs for "
                     "an interval (the paper's figures use 100).")


def mlp_options():
  """The MLP's shape for the generalization runs (paper section 3.2)."""
  options = {}
  if FLAGS.hidden_layers is not None:
    try:
      options["layers"] = tuple(int(size) for size in FLAGS.hidden_layers)
    except ValueError:
      raise ValueError(f"--hidden_layers={','.join(FLAGS.hidden_layers)}: give positive integers, "
                       "e.g. --hidden_layers=20,20.") from None
    if not options["layers"] or min(options["layers"]) <= 0:
      raise ValueError(f"--hidden_layers={','.join(FLAGS.hidden_layers)}: give positive "
                       "integers, e.g. --hidden_layers=20,20.")
  if FLAGS.activation is not None:
    options["activation"] = FLAGS.activation
  if options and FLAGS.problem not in ("mnist", "fashion_mnist"):
    raise ValueError(f"--hidden_layers and --activation shape the MLP of mnist and fashion_mnist, "
                     f"not {FLAGS.problem}; drop them.")
  return options


def labels():
  """The --labels subset as a list of ints, or None for all labels."""
  chosen = configs.parse_labels(FLAGS.labels)
  return None if chosen is None else list(chosen)


def rule_config(optimizer, problem_name, path, learning_rate):
  """(problem, net_config, net_assignments) of the optimizer to evaluate."""
  if optimizer == "L2L":
    path = None if path is None else optimizer_files.resolve(path)
    return configs.get_config(problem_name, path=path, data_dir=FLAGS.data_dir,
                               split=FLAGS.split, settings=FLAGS.settings, labels=labels(),
                               **mlp_options())
  problem, _, _ = configs.get_config(problem_name, data_dir=FLAGS.data_dir, split=FLAGS.split,
                                      labels=labels(), **mlp_options())
  return problem, evaluation.baseline_config(optimizer, learning_rate), None


def report_steps():
  """The steps whose losses the comparison reports: --report_steps, or step 100 and the last."""
  steps = [int(s) for s in FLAGS.report_steps] if FLAGS.report_steps else sorted(
      {min(100, FLAGS.num_steps), FLAGS.num_steps})
  if any(not 0 <= s <= FLAGS.num_steps for s in steps):
    raise ValueError(f"--report_steps={FLAGS.report_steps} must lie in 0..{FLAGS.num_steps}.")
  return steps


def _instances(source, **more):
  """What the comparison's instances depend on, plus `more`: the key its kept files are read by.

  Lists, not tuples, as the JSON they are kept in reads back.
  """
  return json.loads(json.dumps(dict(
      problem=configs.optimizee_name(FLAGS.problem), split=FLAGS.split, data=source,
      seed=FLAGS.seed, settings=FLAGS.settings, mlp=mlp_options(),
      # Runs kept before this key existed drew a baseline's minibatches under XLA, other ones than
      # the learned optimizer's for most seeds: they are not reused.
      minibatches=evaluation.MINIBATCHES, **more)))


def open_store(baselines_dir, source):
  """The kept tuning and test runs of this comparison's settings (comparison_store.Store).

  Tuning is most of a comparison's time: an interrupted run's tuned rates, the rates its
  unfinished sweep had scored and the baselines' test runs are reused by a rerun with the same
  settings (what a rate's score or a test run depends on); other settings keep records of their own
  beside them.
  """
  tuning = _instances(source, num_tuning_epochs=FLAGS.num_tuning_epochs,
                      tuning_steps=min(100, FLAGS.num_steps),
                      grid=list(evaluation.LEARNING_RATE_GRID))
  testing = _instances(source, num_test_epochs=FLAGS.num_epochs, num_steps=FLAGS.num_steps)
  store = comparison_store.Store(baselines_dir, tuning, testing)
  for warning in store.warnings:
    logging.warning("%s.", warning)
  if store.tuned:
    logging.info("Reusing the tuned rates of %s from %s.", ", ".join(store.tuned),
                 store.tuning_path)
  unfinished = sorted(set(store.scored) - set(store.tuned))
  if unfinished:
    logging.info("Reusing the scores of %s's unfinished sweep from %s.", ", ".join(unfinished),
                 store.tuning_path)
  if store.tested:
    logging.info("Reusing the test runs of %s from %s where their rates are still the tuned "
                 "ones.", ", ".join(store.tested), store.runs_path)
  return store


def lock_dirs(output_dir, baselines_dir):
  """One comparison at a time writes each directory: locks on both (one when they are the same)."""
  locks = [locking.DirectoryLock(output_dir, "--output_dir", name=COMPARE_LOCK)]
  if os.path.realpath(baselines_dir) != os.path.realpath(output_dir):
    try:
      locks.append(locking.DirectoryLock(baselines_dir, "--baselines_dir", name=COMPARE_LOCK))
    except ValueError:
      locks[0].release()
      raise
  return locks


def compare():
  """--compare: every optimizer on the same test instances, baselines tuned first."""
  problem, l2l_config, net_assignments = rule_config("L2L", FLAGS.problem, FLAGS.path, None)
  if FLAGS.path is None:
    l2l_config = None
    logging.warning("No --path: comparing the baselines only.")
  steps = report_steps()
  output_dir = FLAGS.output_dir or os.path.join("runs", "compare", FLAGS.problem)
  reporting.check_writable_dir(output_dir, "--output_dir")  # before the work, not after it
  baselines_dir = FLAGS.baselines_dir or output_dir
  reporting.check_writable_dir(baselines_dir, "--baselines_dir")
  no_plot = reporting.plot_unavailable()  # known now, not after the work
  if no_plot:
    logging.warning("%s: the comparison writes everything but loss.png.", no_plot)
  locks = lock_dirs(output_dir, baselines_dir)
  try:
    return _compare(problem, l2l_config, net_assignments, steps, output_dir, baselines_dir,
                    no_plot)
  finally:
    for lock in locks:
      lock.release()


def _compare(problem, l2l_config, net_assignments, steps, output_dir, baselines_dir, no_plot):
  source = getattr(problem, "source", "no data")
  store = open_store(baselines_dir, source)
  logging.info("Comparing on %s (%s split; %s).", FLAGS.problem, FLAGS.split, source)
  bars = {}
  signals = stopping.install()

  def progress(stage, done, total):
    bar = bars.setdefault("all", console.Progress(total, "comparison"))
    bar.update(done, stage)

  start = time.time()
  try:
    # signals.check runs between chunks of every run: a stop acts within one chunk's time.
    losses, rates = evaluation.compare(
        problem, l2l_config, net_assignments, seed=FLAGS.seed,
        num_tuning_epochs=FLAGS.num_tuning_epochs, num_test_epochs=FLAGS.num_epochs,
        num_steps=FLAGS.num_steps, tuning_steps=min(100, FLAGS.num_steps),
        unroll_length=min(FLAGS.unroll_length, FLAGS.num_steps), jit_compile=FLAGS.jit_compile,
        progress=progress, baselines=tuple(FLAGS.baselines), store=store, check=signals.check)
  except stopping.Stop as stop:
    console.end_bar()
    done = f"the tuned rates of {', '.join(store.tuned)}" if store.tuned else "no tuned rate yet"
    kept = (f"{done} and the scores of {sum(map(len, store.scored.values()))} rates are in "
            f"{store.tuning_path}")
    logging.info("%s: comparison stopped; %s; run the same command to go on.", stop, kept)
    return 130
  signals.hold()
  write_comparison(losses, rates, steps, l2l_config, output_dir, source, start, no_plot)
  return 0


def comparison_summary(losses, rates, steps, l2l_config, source, start):
  """The comparison's summary.json content (see results_summary): its settings and results."""
  summary = {
      "problem": FLAGS.problem, "split": FLAGS.split, "labels": labels(), "data": source,
      "path": FLAGS.path,
      "settings": FLAGS.settings, "seed": FLAGS.seed, "num_test_epochs": FLAGS.num_epochs,
      "optimizer": {key: optimizer_files.read_config(config["net_path"])
                    for key, config in (l2l_config or {}).items() if config.get("net_path")},
      "num_tuning_epochs": FLAGS.num_tuning_epochs, "num_steps": FLAGS.num_steps,
      "learning_rates": rates, "seconds": round(time.time() - start, 1),
      "final_loss": {name: {str(s): dict(zip(("mean", "ci95"), map(
          float, evaluation.mean_interval(runs[:, s])))) for s in steps}
                     for name, runs in losses.items()},
  }
  if "L2L" in losses:  # run by run: the test runs share their instances (see paired_differences)
    summary["paired_difference"] = {
        name: {str(s): dict(zip(("mean", "ci95"), pair)) for s, pair in by_step.items()}
        for name, by_step in evaluation.paired_differences(losses, steps).items()}
  return summary


def write_comparison(losses, rates, steps, l2l_config, output_dir, source, start, no_plot=None):
  """Prints the comparison's table; writes it, summary.json, losses.csv and loss.png.

  The four are written as one set (atomic.replace_all): a failed write leaves the previous set
  whole. Without matplotlib (`no_plot`, its reason) an earlier loss.png is removed, not left
  beside results it does not show.
  """
  table = reporting.comparison_table(losses, rates, steps)
  print(table, flush=True)  # first: a failed write below must not cost the result
  for name, runs in losses.items():
    bad = int(np.sum(~np.isfinite(runs[:, -1])))
    if bad:
      logging.warning("%s: %d of %d test runs ended with a non-finite loss: %s.", name, bad,
                      len(runs), reporting.NON_FINITE_CAUSES)
  where = f"{FLAGS.split} split, " if source != "no data" else ""
  if labels() is not None:
    where += f"labels {','.join(map(str, labels()))}, "
  title = f"{FLAGS.problem} ({where}{FLAGS.num_epochs} test runs)"
  summary = comparison_summary(losses, rates, steps, l2l_config, source, start)

  def write_table(path):
    with open(path, "w") as f:
      f.write(table + "\n")

  plot = os.path.join(output_dir, "loss.png")
  writers = {os.path.join(output_dir, "table.md"): write_table,
             os.path.join(output_dir, results_summary.FILE_NAME): results_summary.writer(summary),
             os.path.join(output_dir, "losses.csv"): lambda path: reporting.write_loss_curves(
                 losses, path)}
  if not no_plot:
    writers[plot] = lambda path: reporting.plot_loss_curves(losses, path, title)
  atomic.replace_all(writers, remove=[plot])
  if no_plot:
    logging.warning("Wrote table.md, summary.json and losses.csv to %s; loss.png skipped: %s.",
                    output_dir, no_plot)
  else:
    logging.info("Wrote table.md, summary.json, losses.csv and loss.png to %s.", output_dir)


def evaluate():
  validate_flags()
  if FLAGS.compare:
    return compare()
  if FLAGS.optimizer == "L2L" and FLAGS.path is None:
    logging.warning("No --path: evaluating an untrained optimizer.")
  problem, net_config, net_assignments = rule_config(FLAGS.optimizer, FLAGS.problem, FLAGS.path,
                                                     FLAGS.learning_rate)
  source = getattr(problem, "source", None)
  logging.info("Problem %s, split %s%s.", FLAGS.problem, FLAGS.split,
               f", data: {source}" if source else "")
  evaluator = evaluation.Evaluator(problem, net_config, net_assignments,
                                   unroll_length=min(FLAGS.unroll_length, FLAGS.num_steps),
                                   jit_compile=FLAGS.jit_compile)
  seeds = seeds_lib.epoch_seeds(FLAGS.seed, FLAGS.num_epochs, seeds_lib.TEST)
  progress = console.Progress(FLAGS.num_epochs, f"evaluating {FLAGS.optimizer}")
  done = [0]

  def epoch_done(i):
    done[0] = i
    progress.update(i)

  signals = stopping.install()
  start = time.time()
  try:
    # signals.check runs between chunks: a stop acts within one chunk's time.
    losses = evaluator.run(seeds, FLAGS.num_steps, progress=epoch_done, check=signals.check)
  except stopping.Stop as stop:
    console.end_bar()
    logging.info("%s: evaluation stopped after %d of %d runs; it keeps nothing: run it again.",
                 stop, done[0], FLAGS.num_epochs)
    return 130
  signals.hold()
  elapsed = time.time() - start
  final = losses[:, -1]
  bad = int(np.sum(~np.isfinite(final)))
  if bad:
    logging.warning("%d of %d runs ended with a non-finite loss: %s.", bad, FLAGS.num_epochs,
                    reporting.NON_FINITE_CAUSES)
  reporting.print_stats(f"{FLAGS.optimizer} on {FLAGS.problem} ({FLAGS.split} split)",
                        float(np.sum(final)), elapsed, FLAGS.num_epochs)
  return 0


def main(argv):
  del argv
  return reporting.run_cli("evaluate.py", evaluate)


if __name__ == "__main__":
  app.run(main)
