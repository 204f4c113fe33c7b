"""Meta-trains a learned optimizer: `python train.py --problem=quadratic --save_path=runs/quad`.

Flags keep the reference's names and defaults. Each epoch draws a fresh problem instance and runs
num_steps / unroll_length unrolls, one Adam meta-step each; every evaluation_period epochs the
current optimizer is evaluated on the same evaluation_epochs instances, and the best one so far is
written to --save_path. The full training state is checkpointed for resuming.
"""

import atexit
import os
import shutil
import time
from typing import NamedTuple

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import checkpoints
from learning_to_learn import distribute
from learning_to_learn import evaluation
from learning_to_learn import limits
from learning_to_learn import locking
from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import problems
from learning_to_learn import reporting
from learning_to_learn import stopping

flags.DEFINE_string("problem", "simple", f"One of {', '.join(problems.PROBLEM_NAMES)}.")
flags.DEFINE_integer("num_epochs", 10000, "Meta-training epochs.")
flags.DEFINE_integer("log_period", 100, "Epochs between progress statistics.")
flags.DEFINE_integer("evaluation_period", 1000, "Epochs between evaluations.")
flags.DEFINE_integer("evaluation_epochs", 20, "Problem instances per evaluation.")
flags.DEFINE_integer("num_steps", 100, "Optimizee steps per epoch.")
flags.DEFINE_integer("unroll_length", 20, "Optimizee steps per meta-step (T).")
flags.DEFINE_float("learning_rate", 0.001, "Adam's learning rate for the meta-step.")
flags.DEFINE_boolean("second_derivatives", False, "Backpropagate through optimizee gradients.")
flags.DEFINE_string("save_path", None, "Directory for the best optimizer and checkpoints.")
flags.DEFINE_integer("seed", 0, "Seed of every problem instance and minibatch.")
flags.DEFINE_string("data_dir", None, "Directory with the data files (see README, Data).")
flags.DEFINE_list("labels", None, "Classifiers only: keep these labels, numbered 0..k-1 in this "
                  "order (e.g. 0,1,2,3,4), or a named set: cifar5 (0-4), cifar2 (0,1), lstm-sub "
                  "(5-9, the paper's LSTM-sub); default all.")
flags.DEFINE_enum("settings", "reference", ["reference", "paper"],
                  "reference: LogAndSign k=5, scale 0.01; paper: p=10, scale 0.1.")
flags.DEFINE_string("init_path", None, "Start from this trained optimizer (a --save_path "
                    "directory or a shipped name) instead of fresh weights, e.g. to fine-tune.")
flags.DEFINE_string("logdir", None, "Write TensorBoard summaries here.")
flags.DEFINE_integer("checkpoint_period", 10, "Epochs between full training checkpoints.")
flags.DEFINE_boolean("overwrite", False, "Start afresh even if --save_path holds a checkpoint.")
flags.DEFINE_float("clip_meta_gradient", None, "Clip the meta-gradient to this global norm.")
flags.DEFINE_integer("max_faults", 10, "Consecutive non-finite meta-steps before giving up.")
flags.DEFINE_boolean("jit_compile", None, "XLA for every unroll (--jit_compile), for none "
                     "(--nojit_compile); unset: XLA where it measured faster (evaluation).")
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                  "default: one process, one replica; mirrored: this machine's devices; "
                  "multi_worker: the cluster in TF_CONFIG (see README, Running on a cluster).")
flags.DEFINE_integer("num_instances", 1, "Optimizee instances per meta-step, over all replicas.")
flags.DEFINE_integer("cpu_devices", 0, "With --strategy=mirrored and no GPU: split the CPU into "
                     "this many logical devices, one replica each.")
flags.DEFINE_enum("objective", "sum", list(meta.OBJECTIVES), "Meta-objective of an unroll: the "
                  "sum of its losses (the paper's), of their logs, or late steps weighted more.")
flags.DEFINE_enum("preprocess", None, ["LogAndSign", "AdamNormalized"], "Replace the settings' "
                  "gradient preprocessing (LogAndSign) by this one; AdamNormalized: Lv et al. 2017.")
flags.DEFINE_enum("evaluation_split", "train", ["train", "valid"], "Split the evaluations, which "
                  "choose the best optimizer, draw their minibatches from.")
flags.DEFINE_float("clip_meta_gradient_value", None, "Clip every meta-gradient entry to "
                   "[-value, value].")
flags.DEFINE_enum("meta_lr_schedule", "constant", ["constant", "cosine"], "Meta learning rate "
                  "over the run: constant, or cosine decay from --learning_rate to 0 at "
                  "--num_epochs.")
flags.DEFINE_enum("imitate", None, ["sgd", "rmsprop", "adam", "nag"], "A hand-designed teacher "
                  "whose updates the learned optimizer imitates on its own trajectory (Chen et al. "
                  "2020); needs --imitation_learning_rate.")
flags.DEFINE_float("imitation_learning_rate", None, "The teacher's learning rate (tune it first "
                   "with evaluate.py --compare).")
flags.DEFINE_integer("imitation_epochs", 0, "First epochs that descend the imitation error alone "
                     "(a warm start).")
flags.DEFINE_float("imitation_weight", 0.0, "After those epochs, the imitation error's weight "
                   "beside the meta-objective (a regularizer).")
flags.DEFINE_boolean("recompute", False, "Recompute each optimizee step in the backward pass "
                     "instead of keeping its activations: less memory per unrolled step for more time "
                     "(figures: README, Performance); the same meta-gradient to rounding.")
flags.DEFINE_boolean("batch_instances", False, "With --num_instances above 1: one network call a "
                     "step over all of a replica's instances rather than one per instance; the "
                     "same meta-gradient to rounding, faster where a step's overhead dominates "
                     "(small optimizees: README, Performance).")
flags.DEFINE_list("selection_steps", None, "Optimizee steps whose mean evaluation losses, "
                  "averaged, choose the best optimizer (e.g. 100,200); default: the last step of "
                  "the evaluated horizon.")
flags.DEFINE_list("curriculum", None, "Training horizons of a curriculum (Chen et al. 2020), e.g. "
                  "100,200: train at one horizon, evaluate at the next, and move on after "
                  "--curriculum_patience evaluations without improvement; replaces --num_steps.")
flags.DEFINE_integer("curriculum_patience", 3, "Evaluations without improvement before the "
                     "curriculum moves to its next horizon.")
FLAGS = flags.FLAGS


def validate_flags():
  for name in ("num_epochs", "num_steps", "unroll_length", "log_period", "evaluation_period",
               "evaluation_epochs", "checkpoint_period", "max_faults", "num_instances"):
    if getattr(FLAGS, name) <= 0:
      raise ValueError(f"--{name}={getattr(FLAGS, name)} must be positive.")
  if FLAGS.num_steps % FLAGS.unroll_length:
    raise ValueError(f"--num_steps={FLAGS.num_steps} is not a multiple of --unroll_length="
                     f"{FLAGS.unroll_length}; pick num_steps = k * unroll_length.")
  if FLAGS.learning_rate <= 0:
    raise ValueError(f"--learning_rate={FLAGS.learning_rate} must be positive (reference: 0.001).")
  if (FLAGS.imitate is None) != (FLAGS.imitation_learning_rate is None):
    raise ValueError("--imitate and --imitation_learning_rate go together: name the teacher and "
                     "its (tuned) learning rate, or neither.")
  if FLAGS.imitation_learning_rate is not None and not FLAGS.imitation_learning_rate > 0:
    raise ValueError(f"--imitation_learning_rate={FLAGS.imitation_learning_rate} must be "
                     "positive.")
  if FLAGS.imitation_epochs < 0 or FLAGS.imitation_weight < 0:
    raise ValueError("--imitation_epochs and --imitation_weight must not be negative.")
  if FLAGS.seed < 0:
    raise ValueError(f"--seed={FLAGS.seed} must be non-negative.")
  problems.parse_labels(FLAGS.labels)  # its form here; its range once the data is read
  validate_horizons()
  if FLAGS.save_path is not None and os.path.exists(FLAGS.save_path) and not os.path.isdir(
      FLAGS.save_path):
    raise ValueError(f"--save_path={FLAGS.save_path} is a file; give a directory.")


def _int_list(name):
  """The integers of list flag --name, or a one-line error naming it."""
  try:
    values = [int(v) for v in getattr(FLAGS, name)]
  except ValueError:
    raise ValueError(f"--{name}={','.join(getattr(FLAGS, name))} must be a comma-separated "
                     "list of integers, e.g. 100,200.") from None
  if not values or min(values) <= 0:
    raise ValueError(f"--{name} must list positive step counts, e.g. 100,200.")
  return values


def validate_horizons():
  """Checks --curriculum, --selection_steps and --curriculum_patience."""
  if FLAGS.curriculum is not None:
    steps = _int_list("curriculum")
    if any(h % FLAGS.unroll_length for h in steps) or steps != sorted(set(steps)):
      raise ValueError(f"--curriculum={','.join(FLAGS.curriculum)} must be increasing multiples "
                       f"of --unroll_length={FLAGS.unroll_length}, e.g. 100,200.")
  if FLAGS.selection_steps is not None:
    _int_list("selection_steps")
  if FLAGS.curriculum_patience <= 0:
    raise ValueError(f"--curriculum_patience={FLAGS.curriculum_patience} must be positive.")


def horizons():
  """The training horizons: the curriculum's, or --num_steps alone."""
  return _int_list("curriculum") if FLAGS.curriculum is not None else [FLAGS.num_steps]


def selection_steps(stage):
  """The steps whose mean losses choose the best optimizer at curriculum stage `stage`.

  By default the next stage's horizon (Chen et al. 2020 validate beyond the training horizon),
  or the last horizon's in the last stage.
  """
  if FLAGS.selection_steps is not None:
    return _int_list("selection_steps")
  return [horizons()[min(stage + 1, len(horizons()) - 1)]]


# Flags that define a run: resuming under different values would silently mix two experiments.
# The strategy is not among them: a run may resume on another number of replicas.
RUN_FLAGS = ("problem", "settings", "seed", "num_steps", "unroll_length", "learning_rate",
             "second_derivatives", "data_dir", "clip_meta_gradient", "num_instances", "init_path",
             "objective", "preprocess", "evaluation_split", "clip_meta_gradient_value",
             "meta_lr_schedule", "imitate", "imitation_learning_rate", "imitation_epochs",
             "imitation_weight", "selection_steps", "curriculum", "curriculum_patience",
             "labels")
# For run.json files written before these flags existed.
RUN_FLAG_DEFAULTS = {"num_instances": 1, "objective": "sum", "preprocess": None,
                     "evaluation_split": "train", "clip_meta_gradient_value": None,
                     "meta_lr_schedule": "constant", "imitate": None,
                     "imitation_learning_rate": None, "imitation_epochs": 0,
                     "imitation_weight": 0.0, "selection_steps": None, "curriculum": None,
                     "curriculum_patience": 3, "labels": None}


def check_run_config(save_path, write=True):
  """Writes the run's defining flags to save_path/run.json (if `write`), or checks them against it."""
  path = os.path.join(save_path, "run.json")
  config = {name: getattr(FLAGS, name) for name in RUN_FLAGS}
  labels = problems.parse_labels(FLAGS.labels)  # cifar2 and 0,1 are the same run
  config["labels"] = None if labels is None else list(labels)
  if os.path.exists(path) and os.path.isdir(os.path.join(save_path, "checkpoints")):
    saved = checkpoints.read_run_config(path)
    changed = [f"--{k}={config[k]} (was {saved.get(k, RUN_FLAG_DEFAULTS.get(k))})"
               for k in RUN_FLAGS if saved.get(k, RUN_FLAG_DEFAULTS.get(k)) != config[k]]
    if changed:
      raise ValueError(f"--save_path={save_path} holds a run with other settings: "
                       f"{', '.join(changed)}; use the same flags to resume, or --overwrite.")
    return
  if not write:
    return
  os.makedirs(save_path, exist_ok=True)
  checkpoints.write_json(path, config)


def run_epoch(trainer, epoch_seed, num_unrolls):
  """One training epoch; returns (seconds, final loss, last UnrollResult), or None on a
  non-finite step."""
  start = time.time()
  trainer.reset(meta.make_seed(*epoch_seed, 0))
  for unroll in range(num_unrolls):
    result = trainer.train_unroll(meta.make_seed(*epoch_seed, unroll + 1))
    if not bool(result.finite):
      return None
  return time.time() - start, float(result.final_loss), result


def with_preprocess(net_config, name):
  """The net config with every LSTM's gradient preprocessing replaced by `name`, default options."""
  config = {}
  for key, net in net_config.items():
    net = dict(net)
    if net["net"].endswith("DeepLSTM"):
      net["net_options"] = dict(net["net_options"], preprocess_name=name, preprocess_options={})
    config[key] = net
  return config


def write_best_record(save_path, epoch, loss, seconds, stage):
  """best.json beside the best optimizer: when it was found, how good, after how long."""
  record = {"epoch": epoch, "evaluation_loss": loss, "evaluation_split": FLAGS.evaluation_split,
            "evaluation_epochs": FLAGS.evaluation_epochs, "num_steps": horizons()[stage],
            "selection_steps": selection_steps(stage), "seconds": round(seconds, 1)}
  checkpoints.write_json(os.path.join(save_path, "best.json"), record)


def make_evaluation(problem, optimizer, net_config, net_assignments):
  """A function (steps) -> (mean over the evaluation instances and `steps` of the loss, seconds).

  It runs an evaluation.Evaluator, the one evaluation path, with a copy of the current weights on
  the --evaluation_split problem (the training problem itself for "train"), on the same
  --evaluation_epochs instances each time.
  """
  seeds = evaluation.epoch_seeds(FLAGS.seed, FLAGS.evaluation_epochs, evaluation.EVALUATION)
  if FLAGS.evaluation_split != "train":
    problem, _, _ = problems.get_config(FLAGS.problem, data_dir=FLAGS.data_dir,
                                        split=FLAGS.evaluation_split, settings=FLAGS.settings,
                                        labels=problems.parse_labels(FLAGS.labels))
  evaluator = evaluation.Evaluator(problem, net_config, net_assignments, FLAGS.unroll_length,
                                   jit_compile=FLAGS.jit_compile)

  def evaluate(steps):
    for source, copy in zip(optimizer.trainable_variables,
                            evaluator.meta_optimizer.trainable_variables):
      copy.assign(source)
    start = time.time()
    losses = evaluator.run(seeds, max(steps))[:, steps]
    score = float(np.mean(losses)) if np.all(np.isfinite(losses)) else float("inf")
    return score, time.time() - start
  return evaluate


def make_trainer(strategy):
  """The flags' problem, meta-optimizer and trainer; returns (optimizer, trainer, evaluate),
  `evaluate` as make_evaluation gives it."""
  init_path = optimizer_files.resolve(FLAGS.init_path) if FLAGS.init_path else None
  problem, net_config, net_assignments = problems.get_config(
      FLAGS.problem, path=init_path, data_dir=FLAGS.data_dir, split="train",
      settings=FLAGS.settings, labels=problems.parse_labels(FLAGS.labels))
  if hasattr(problem, "source"):
    logging.info("Data: %s", problem.source)
  if FLAGS.preprocess:
    net_config = with_preprocess(net_config, FLAGS.preprocess)
  cost = limits.unroll_cost(problem, FLAGS.unroll_length,
                            FLAGS.num_instances // strategy.num_replicas_in_sync,
                            recompute=FLAGS.recompute)
  if FLAGS.unroll_length > limits.QUIET_UNROLL_LENGTH:
    logging.warning("--unroll_length=%d: %s.", FLAGS.unroll_length, cost)
  elif FLAGS.recompute:
    logging.info("--recompute: %s.", cost)
  with strategy.scope():
    optimizer = meta.MetaOptimizer(**net_config)
  num_unrolls = horizons()[0] // FLAGS.unroll_length
  learning_rate = FLAGS.learning_rate
  if FLAGS.meta_lr_schedule == "cosine":
    learning_rate = keras.optimizers.schedules.CosineDecay(
        FLAGS.learning_rate, decay_steps=FLAGS.num_epochs * num_unrolls)
  trainer = optimizer.meta_minimize(
      problem, FLAGS.unroll_length, learning_rate=learning_rate,
      net_assignments=net_assignments, second_derivatives=FLAGS.second_derivatives,
      clip_meta_gradient=FLAGS.clip_meta_gradient, jit_compile=FLAGS.jit_compile,
      num_instances=FLAGS.num_instances, strategy=strategy, objective=FLAGS.objective,
      clip_meta_gradient_value=FLAGS.clip_meta_gradient_value, recompute=FLAGS.recompute,
      batch_instances=FLAGS.batch_instances,
      teacher=evaluation.baseline_config(FLAGS.imitate, FLAGS.imitation_learning_rate)
      if FLAGS.imitate else None)
  evaluate = make_evaluation(problem, optimizer, net_config, net_assignments)
  return optimizer, trainer, evaluate


def restore_or_start(optimizer, trainer, chief):
  """The run's TrainingCheckpoint, restored from its newest readable checkpoint if it has one.

  None without --save_path. With --overwrite the chief deletes the old checkpoints first.
  """
  if FLAGS.save_path is None:
    return None
  checkpoint_dir = os.path.join(FLAGS.save_path, "checkpoints")
  if FLAGS.overwrite and chief and os.path.isdir(checkpoint_dir):
    shutil.rmtree(checkpoint_dir)
  if chief and not FLAGS.overwrite:
    checkpoints.check_no_trained_optimizer(FLAGS.save_path, optimizer)
  check_run_config(FLAGS.save_path, write=chief)
  state = checkpoints.TrainingCheckpoint(checkpoint_dir, optimizer, trainer.optimizer,
                                         chief=chief, curriculum=FLAGS.curriculum is not None)
  # A worker started with --overwrite must not read what the chief is deleting.
  restored, damaged = state.restore_latest() if chief or not FLAGS.overwrite else (None, [])
  for warning in state.warnings:
    logging.warning("%s.", warning)
  for path, reason in damaged:
    logging.warning("Checkpoint %s is damaged (%s); falling back to the one before.", path,
                    reason)
  if restored:
    logging.info("Resuming from %s at epoch %d.", restored, int(state.epoch.numpy()))
  return state


class Clock:
  """Wall-clock seconds of training and evaluation, over every resumed session of a run."""

  def __init__(self, seconds_before):
    self._before, self._started = seconds_before, time.time()

  def seconds(self):
    return self._before + time.time() - self._started


def train_epoch(trainer, epoch, num_unrolls, state, signals):
  """Trains epoch `epoch` + 1, again on a new instance after a non-finite meta-step.

  Returns run_epoch's (seconds, final loss, last UnrollResult); raises ValueError after
  --max_faults non-finite meta-steps in a row, and stopping.Stop on a stop signal before a try.
  """
  faults = 0
  while True:
    signals.check()  # a stop signal takes effect here, between epochs
    # A retried epoch draws a new instance: the fault may lie in the instance itself.
    attempt = (faults,) if faults else ()
    if FLAGS.imitate:
      warm_start = epoch < FLAGS.imitation_epochs
      trainer.objective_weight.assign(0.0 if warm_start else 1.0)
      trainer.imitation_weight.assign(1.0 if warm_start else FLAGS.imitation_weight)
    seed = (FLAGS.seed, evaluation.TRAINING, epoch) + attempt
    outcome = run_epoch(trainer, seed, num_unrolls)
    if outcome is not None:
      return outcome
    faults += 1
    logging.warning("Epoch %d: non-finite loss or meta-gradient; meta-step skipped, epoch "
                    "restarted (%d in a row).", epoch + 1, faults)
    if faults >= FLAGS.max_faults:
      raise ValueError(f"{faults} non-finite meta-steps in a row at epoch {epoch + 1}: lower "
                       "--learning_rate, set --clip_meta_gradient, or use a smaller output "
                       "scale (--settings=reference).")
    if state:
      state.faults.assign_add(1)


class Standing(NamedTuple):
  """Where a run stands between epochs: what checkpoints keep besides the weights."""
  epoch: int
  best: float  # the best evaluation loss so far (of the current selection steps)
  stage: int  # the curriculum's horizon index (0 without a curriculum)
  stale: int  # evaluations since the best of this stage improved


def evaluate_and_keep_best(evaluate, optimizer, run, clock, summaries, chief):
  """Evaluates the optimizer; writes it to --save_path if it beats the best. Returns the new
  Standing, on to the next curriculum stage after --curriculum_patience stale evaluations."""
  steps = selection_steps(run.stage)
  mean_eval, eval_time = evaluate(steps)
  reporting.print_stats(f"EVALUATION at step {','.join(map(str, steps))}",
                        mean_eval * FLAGS.evaluation_epochs, eval_time, FLAGS.evaluation_epochs)
  summaries.scalars(run.epoch, evaluation_loss=mean_eval)
  if mean_eval < run.best:
    run = run._replace(best=mean_eval, stale=0)
    if FLAGS.save_path is not None and chief:
      checkpoints.save_optimizer(optimizer, FLAGS.save_path)
      write_best_record(FLAGS.save_path, run.epoch, mean_eval, clock.seconds(), run.stage)
      logging.info("Saved the best optimizer so far (evaluation loss %.4g) to %s.", mean_eval,
                   FLAGS.save_path)
  else:
    run = run._replace(stale=run.stale + 1)
  if run.stale >= FLAGS.curriculum_patience and run.stage + 1 < len(horizons()):
    run = run._replace(stage=run.stage + 1, stale=0)
    if selection_steps(run.stage) != steps:  # a new yardstick: earlier bests do not compare
      run = run._replace(best=float("inf"))
    logging.info("Curriculum: no improvement in %d evaluations; training at %d steps from epoch "
                 "%d.", FLAGS.curriculum_patience, horizons()[run.stage], run.epoch + 1)
  return run


def save_checkpoint(state, run, clock):
  """Checkpoints the run with its Standing and its time so far."""
  state.seconds.assign(clock.seconds())
  state.epoch.assign(run.epoch)
  state.best_loss.assign(run.best)
  state.stage.assign(run.stage)
  state.stale.assign(run.stale)
  state.save()


def restored_standing(state):
  if state is None:
    return Standing(0, float("inf"), 0, 0)
  return Standing(int(state.epoch.numpy()), float(state.best_loss.numpy()),
                  int(state.stage.numpy()), int(state.stale.numpy()))


def run_epochs(optimizer, trainer, evaluate, state, chief):
  """Trains from the restored epoch to --num_epochs; returns the exit status (130: stopped)."""
  run = restored_standing(state)
  clock = Clock(float(state.seconds.numpy()) if state else 0.0)
  summaries = reporting.Summaries(FLAGS.logdir if chief else None)
  progress = reporting.Progress(FLAGS.num_epochs, "meta-training")
  total_time = total_cost = 0.0
  count = 0
  signals = stopping.install()
  try:
    while run.epoch < FLAGS.num_epochs:
      num_unrolls = horizons()[run.stage] // FLAGS.unroll_length
      seconds, cost, result = train_epoch(trainer, run.epoch, num_unrolls, state, signals)
      run = run._replace(epoch=run.epoch + 1)
      count += 1
      total_time += seconds
      total_cost += cost
      progress.update(run.epoch, f"final loss {cost:.4g}")
      summaries.scalars(run.epoch, meta_loss=result.meta_loss, final_loss=cost,
                        update_norm=result.update_norm,
                        meta_gradient_norm=result.meta_gradient_norm)
      if run.epoch % FLAGS.log_period == 0:
        reporting.print_stats(f"Epoch {run.epoch}", total_cost, total_time, count)
        total_time = total_cost = 0.0
        count = 0
      if run.epoch % FLAGS.evaluation_period == 0 or run.epoch == FLAGS.num_epochs:
        run = evaluate_and_keep_best(evaluate, optimizer, run, clock, summaries, chief)
      if state and (run.epoch % FLAGS.checkpoint_period == 0 or run.epoch == FLAGS.num_epochs):
        save_checkpoint(state, run, clock)
  except stopping.Stop as stop:
    logging.info("%s: saving a checkpoint at epoch %d and stopping.", stop, run.epoch)
    if state:
      save_checkpoint(state, run, clock)
    return 130
  if count:
    reporting.print_stats("Last epochs", total_cost, total_time, count)
  return 0


def train():
  """Restores or starts the run the flags describe, and meta-trains; returns the exit status."""
  validate_flags()
  strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.cpu_devices)  # before any other op
  # Only the chief writes files; every worker takes part in every step, checkpoints included.
  chief = distribute.is_chief(strategy)
  if FLAGS.save_path is not None and chief:
    # Held until the process ends; one left by a killed run is stale once its process is gone.
    atexit.register(locking.DirectoryLock(FLAGS.save_path).release)
  if strategy.num_replicas_in_sync > 1:
    logging.info("Strategy %s: %d replicas, %d optimizee instances each per meta-step.",
                 FLAGS.strategy, strategy.num_replicas_in_sync,
                 FLAGS.num_instances // strategy.num_replicas_in_sync)
  # The networks' initial weights come from TF's global generator; problem instances and
  # minibatches use stateless seeds derived from --seed, epoch, unroll and instance: nothing else
  # is random.
  tf.random.set_seed(FLAGS.seed)
  optimizer, trainer, evaluate = make_trainer(strategy)
  state = restore_or_start(optimizer, trainer, chief)
  return run_epochs(optimizer, trainer, evaluate, state, chief)


def main(argv):
  del argv
  tf.get_logger().setLevel("WARNING")  # TF logs every checkpoint write at INFO level
  return reporting.run_cli("train.py", train)


if __name__ == "__main__":
  app.run(main)
