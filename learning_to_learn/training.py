"""The meta-training loop as a library call: `meta_train(problem, Settings(...), save_path=...)`.

A run meta-trains the networks of a MetaOptimizer epoch after epoch (each epoch a fresh optimizee
instance, num_steps / unroll_length meta-steps), evaluates them every `evaluation_period` epochs on
the same instances, keeps the best in `save_path`, and checkpoints everything needed to resume.
It resumes where a killed run stopped, retries an epoch whose meta-step was not finite, locks its
directory against a second run, and stops cleanly on SIGINT or SIGTERM. train.py maps its flags to
a `Settings` and calls `meta_train`; so do the bench, the examples and the tests.
"""

import contextlib
import dataclasses
import os
import shutil
import threading
import time
from typing import Any, NamedTuple, Optional, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import checkpoints
from learning_to_learn import console
from learning_to_learn import distribute
from learning_to_learn import evaluation
from learning_to_learn import locking
from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import pes
from learning_to_learn import reporting
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import stopping

OBJECTIVES = meta.OBJECTIVES
SCHEDULES = ("constant", "cosine")
ESTIMATORS = ("backprop", "pes")
TEACHERS = tuple(evaluation.BASELINES)
# The longest horizon an evaluation or a curriculum stage may have: each step of an evaluation is
# run, and a typo of a few zeros would run for days with no output.
MAX_HORIZON = 100_000


@dataclasses.dataclass(frozen=True)
class Settings:
  """How a meta-training run trains; the defaults are train.py's (the reference's) flags.

  Attributes:
    num_epochs: meta-training epochs, each on a fresh optimizee instance.
    num_steps: optimizee steps per epoch (the training horizon).
    unroll_length: T, optimizee steps per meta-step (reference: 20).
    learning_rate: Adam's rate for the meta-step (reference: 0.001).
    meta_lr_schedule: "constant", or "cosine" decay from learning_rate to 0 at num_epochs.
    second_derivatives: backpropagate through the optimizee gradients too.
    objective: meta-objective of an unroll: "sum" (the paper's), "log" or "late".
    clip_meta_gradient: clip the meta-gradient to this global norm (None: no clipping).
    clip_meta_gradient_value: clip every meta-gradient entry to [-value, value].
    num_instances: optimizee instances per meta-step, over all replicas.
    estimator: the meta-gradient: "backprop" through each unroll (the paper's), or "pes",
      persistent evolution strategies (`pes.PESTrainer`): unbiased through the whole history of
      truncated unrolls, from forward unrolls alone; one instance, no imitation, no stagger.
    pes_pairs: PES's antithetic particle pairs (2 pes_pairs forward unrolls a meta-step).
    pes_sigma: PES's perturbation standard deviation, in the networks' weights' units.
    pes_variables: a regular expression: PES perturbs and trains only the networks' variables
      whose names it matches ("linear": the output layer); None, all of them.
    stagger: with num_instances N > 1, instance i starts afresh at unroll i * U // N of each epoch
      of U unrolls instead of at its start, and lives the horizon from there, so that every
      meta-step mixes early and late phases of optimization rather than all N instances at the
      same step (one replica, batch_instances off). An instance's first life, after the run
      starts or resumes, is cut short at its offset.
    batch_instances: one network call a step over all of a replica's instances.
    recompute: recompute each optimizee step in the backward pass instead of keeping it.
    jit_compile: XLA for every unroll (True), none (False), or for evaluation only (None), where
      it is the faster.
    imitate: a hand-designed teacher ("sgd", "rmsprop", "adam", "nag") to imitate, or None.
    imitation_learning_rate: the teacher's learning rate (tune it first).
    imitation_epochs: first epochs that descend the imitation error alone (a warm start).
    imitation_weight: after those, the imitation error's weight beside the meta-objective.
    seed: seed of every problem instance and minibatch, and of the networks' initial weights.
    evaluation_period: epochs between evaluations.
    evaluate_start: score the starting networks before the first epoch, so that the best kept is
      never worse than the start (for runs that fine-tune a trained optimizer).
    evaluation_epochs: problem instances per evaluation (the same ones each time).
    selection_steps: steps whose mean evaluation losses, averaged, choose the best optimizer;
      None: the next curriculum horizon (the last one's in the last stage).
    curriculum: increasing training horizons (Chen et al. 2020), replacing num_steps; None: none.
    curriculum_patience: evaluations without improvement before the next horizon.
    log_period: epochs between progress statistics.
    checkpoint_period: epochs between training checkpoints.
    max_faults: non-finite meta-steps in a row before giving up.
  """

  num_epochs: int = 10000
  num_steps: int = 100
  unroll_length: int = 20
  learning_rate: float = 0.001
  meta_lr_schedule: str = "constant"
  second_derivatives: bool = False
  objective: str = "sum"
  clip_meta_gradient: Optional[float] = None
  clip_meta_gradient_value: Optional[float] = None
  num_instances: int = 1
  estimator: str = "backprop"
  pes_pairs: int = 8
  pes_sigma: float = 0.01
  pes_variables: Optional[str] = None
  stagger: bool = False
  batch_instances: bool = False
  recompute: bool = False
  jit_compile: Optional[bool] = None
  imitate: Optional[str] = None
  imitation_learning_rate: Optional[float] = None
  imitation_epochs: int = 0
  imitation_weight: float = 0.0
  seed: int = 0
  evaluation_period: int = 1000
  evaluate_start: bool = False
  evaluation_epochs: int = 20
  selection_steps: Optional[Sequence[int]] = None
  curriculum: Optional[Sequence[int]] = None
  curriculum_patience: int = 3
  log_period: int = 100
  checkpoint_period: int = 10
  max_faults: int = 10

  def __post_init__(self):
    for name in ("selection_steps", "curriculum"):
      value = getattr(self, name)
      if value is not None and not isinstance(value, tuple):
        object.__setattr__(self, name, tuple(value))
    check_settings(self)

  @property
  def horizons(self):
    """The training horizons: the curriculum's, or num_steps alone."""
    return tuple(self.curriculum) if self.curriculum is not None else (self.num_steps,)


def check_settings(settings, prefix=""):
  """Raises a one-line ValueError for the first bad value of `settings` (any object with Settings'
  fields); `prefix` is how the message names a setting ("--" for the command line)."""

  def name(field):
    return f"{prefix}{field}={getattr(settings, field)}"

  for field in ("num_epochs", "num_steps", "unroll_length", "log_period", "evaluation_period",
                "evaluation_epochs", "checkpoint_period", "max_faults", "num_instances"):
    value = getattr(settings, field)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
      raise ValueError(f"{name(field)} must be positive.")
  if settings.num_steps % settings.unroll_length:
    raise ValueError(f"{name('num_steps')} is not a multiple of {name('unroll_length')}; pick "
                     "num_steps = k * unroll_length.")
  if not settings.learning_rate > 0:
    raise ValueError(f"{name('learning_rate')} must be positive (reference: 0.001).")
  if settings.objective not in OBJECTIVES:
    raise ValueError(f"{name('objective')} is not one of {', '.join(OBJECTIVES)}.")
  if settings.meta_lr_schedule not in SCHEDULES:
    raise ValueError(f"{name('meta_lr_schedule')} is not one of {', '.join(SCHEDULES)}.")
  if settings.imitate is not None and settings.imitate not in TEACHERS:
    raise ValueError(f"{name('imitate')} is not one of {', '.join(TEACHERS)}.")
  if (settings.imitate is None) != (settings.imitation_learning_rate is None):
    raise ValueError(f"{prefix}imitate and {prefix}imitation_learning_rate go together: name the "
                     "teacher and its (tuned) learning rate, or neither.")
  if settings.imitation_learning_rate is not None and not settings.imitation_learning_rate > 0:
    raise ValueError(f"{name('imitation_learning_rate')} must be positive.")
  if settings.imitation_epochs < 0 or settings.imitation_weight < 0:
    raise ValueError(f"{prefix}imitation_epochs and {prefix}imitation_weight must not be "
                     "negative.")
  if settings.seed < 0:
    raise ValueError(f"{name('seed')} must be non-negative.")
  if settings.estimator not in ESTIMATORS:
    raise ValueError(f"{name('estimator')} is not one of {', '.join(ESTIMATORS)}.")
  if settings.estimator == "pes":
    if isinstance(settings.pes_pairs, bool) or not isinstance(
        settings.pes_pairs, (int, np.integer)) or settings.pes_pairs < 1 or not (
            np.isfinite(settings.pes_sigma) and settings.pes_sigma > 0):
      raise ValueError(f"{prefix}estimator=pes needs {prefix}pes_pairs >= 1 and a positive "
                       f"{prefix}pes_sigma; got {settings.pes_pairs} and {settings.pes_sigma}.")
    if settings.num_instances != 1 or settings.imitate or settings.stagger:
      raise ValueError(f"{prefix}estimator=pes runs its own particles on one instance: drop "
                       f"{prefix}num_instances, {prefix}imitate and {prefix}stagger.")
  if settings.stagger and (settings.num_instances < 2 or settings.batch_instances):
    raise ValueError(f"{prefix}stagger needs {prefix}num_instances of 2 or more, unrolled one by "
                     f"one: got {name('num_instances')}"
                     f"{f' with {prefix}batch_instances' if settings.batch_instances else ''}.")
  _check_horizons(settings, prefix)


def _steps_text(steps):
  return ",".join(map(str, steps))


def _check_horizons(settings, prefix):
  if settings.curriculum is not None:
    steps = list(settings.curriculum)
    if not steps or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0
                        for h in steps):
      raise ValueError(f"{prefix}curriculum must list positive step counts, e.g. 100,200.")
    if any(h % settings.unroll_length for h in steps) or steps != sorted(set(steps)):
      raise ValueError(f"{prefix}curriculum={_steps_text(steps)} must be increasing multiples "
                       f"of {prefix}unroll_length={settings.unroll_length}, e.g. 100,200.")
  if settings.selection_steps is not None:
    steps = list(settings.selection_steps)
    if not steps or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0
                        for s in steps):
      raise ValueError(f"{prefix}selection_steps must list positive step counts, e.g. 100,200.")
  for field in ("curriculum", "selection_steps"):
    steps = getattr(settings, field)
    if steps is not None and max(steps) > MAX_HORIZON:
      raise ValueError(f"{prefix}{field}={_steps_text(steps)} reaches {max(steps)} steps, above "
                       f"{MAX_HORIZON}: every step of it is run; give horizons of at most "
                       f"{MAX_HORIZON}.")
  if settings.num_steps > MAX_HORIZON:
    raise ValueError(f"{prefix}num_steps={settings.num_steps} is above {MAX_HORIZON}; an epoch "
                     f"runs every step: give at most {MAX_HORIZON}.")
  if settings.curriculum_patience <= 0:
    raise ValueError(f"{prefix}curriculum_patience={settings.curriculum_patience} must be "
                     "positive.")


# The settings that define a run: resuming under other values would silently mix two experiments.
RUN_SETTINGS = ("seed", "num_steps", "unroll_length", "learning_rate", "second_derivatives",
                "clip_meta_gradient", "num_instances", "estimator", "pes_pairs", "pes_sigma",
                "pes_variables", "stagger", "objective", "clip_meta_gradient_value",
                "meta_lr_schedule", "imitate", "imitation_learning_rate", "imitation_epochs",
                "imitation_weight", "selection_steps", "curriculum", "curriculum_patience")


def run_config(settings, more=None):
  """The record of what defines a run (its run.json): RUN_SETTINGS' values and the dict `more`."""
  config = {name: getattr(settings, name) for name in RUN_SETTINGS}
  for name in ("selection_steps", "curriculum"):
    if config[name] is not None:
      config[name] = [int(s) for s in config[name]]
  config.update(more or {})
  return config


class Curriculum:
  """Training horizons, the steps that select the best optimizer, and the best so far.

  Chen et al. 2020: train at one horizon, select at the next, and move on after `patience`
  evaluations without improvement. Without a curriculum there is one stage and `observe` only
  keeps the best.

  Args:
    horizons: increasing training horizons (one: no curriculum).
    selection_steps: fixed steps that select the best optimizer in every stage, or None for the
      next stage's horizon (the last one's in the last stage).
    patience: evaluations without improvement before the next stage.
    stage, stale, best: where a resumed run stood.
  """

  def __init__(self, horizons, selection_steps=None, patience=3, stage=0, stale=0,
               best=float("inf")):
    self.horizons = tuple(int(h) for h in horizons)
    self._selection_steps = None if selection_steps is None else [int(s) for s in selection_steps]
    self.patience = int(patience)
    self.stage, self.stale, self.best = int(stage), int(stale), float(best)

  @property
  def horizon(self):
    """The training horizon of the current stage."""
    return self.horizons[self.stage]

  def selection_steps(self, stage=None):
    """The steps whose mean evaluation losses select the best optimizer at `stage` (default now)."""
    if self._selection_steps is not None:
      return list(self._selection_steps)
    stage = self.stage if stage is None else stage
    return [self.horizons[min(stage + 1, len(self.horizons) - 1)]]

  def observe(self, loss):
    """Takes an evaluation's loss; returns whether it is the best so far. After `patience`
    evaluations without one, moves to the next stage (see `stage`), where a new yardstick
    starts a new best."""
    if loss < self.best:
      self.best, self.stale = float(loss), 0
      return True
    self.stale += 1
    if self.stale >= self.patience and self.stage + 1 < len(self.horizons):
      steps = self.selection_steps()
      self.stage, self.stale = self.stage + 1, 0
      if self.selection_steps() != steps:  # earlier bests were scored at other steps
        self.best = float("inf")
    return False


class EpochResult(NamedTuple):
  """What one epoch of meta-training gave."""
  epoch: int  # 1-based: the number of epochs done
  seconds: float
  final_loss: float
  unroll: Any  # the last meta.UnrollResult


class Callback:
  """Hooks of a meta-training run, like Keras's: override the ones you need."""

  def on_train_begin(self, run):
    """`run` is the Run: its settings, meta_optimizer, curriculum and epoch."""

  def on_epoch_end(self, run, result):
    """After each epoch; `result` is an EpochResult."""

  def on_evaluation(self, run, loss, seconds, steps, improved):
    """After each evaluation: the mean loss at `steps`, and whether it is the best so far."""

  def on_train_end(self, run, stopped):
    """At the end; `stopped` is the signal's name when a signal stopped the run, else None."""


class PrintProgress(Callback):
  """The progress bar and the reference's statistics (log10 mean final error, epoch time)."""

  def __init__(self):
    self._bar = None
    self._total_time = self._total_cost = 0.0
    self._count = 0

  def on_train_begin(self, run):
    console.show_package_lines()
    self._bar = console.Progress(run.settings.num_epochs, "meta-training")

  def on_epoch_end(self, run, result):
    self._count += 1
    self._total_time += result.seconds
    self._total_cost += result.final_loss
    self._bar.update(result.epoch, f"final loss {result.final_loss:.4g}")
    if result.epoch % run.settings.log_period == 0:
      reporting.print_stats(f"Epoch {result.epoch}", self._total_cost, self._total_time,
                            self._count)
      self._total_time = self._total_cost = 0.0
      self._count = 0

  def on_evaluation(self, run, loss, seconds, steps, improved):
    count = run.settings.evaluation_epochs
    reporting.print_stats(f"EVALUATION at step {_steps_text(steps)}", loss * count, seconds, count)

  def on_train_end(self, run, stopped):
    if self._count and not stopped:
      reporting.print_stats("Last epochs", self._total_cost, self._total_time, self._count)


class TensorBoard(Callback):
  """TensorBoard scalars in `logdir`: meta-loss, final loss, update and meta-gradient norms, and
  the evaluation loss."""

  def __init__(self, logdir):
    self._summaries = reporting.Summaries(logdir)

  def on_epoch_end(self, run, result):
    unroll = result.unroll
    self._summaries.scalars(result.epoch, meta_loss=unroll.meta_loss, final_loss=result.final_loss,
                            update_norm=unroll.update_norm,
                            meta_gradient_norm=unroll.meta_gradient_norm)

  def on_evaluation(self, run, loss, seconds, steps, improved):
    self._summaries.scalars(run.epoch, evaluation_loss=loss)


class Clock:
  """Wall-clock seconds of training and evaluation, over every resumed session of a run."""

  def __init__(self, seconds_before):
    self._before, self._started = seconds_before, time.time()

  def seconds(self):
    return self._before + time.time() - self._started


class _NoSignals:
  """Stands in for stopping.StopOnSignal where signals cannot be caught (not the main thread)."""

  def check(self):
    pass


@contextlib.contextmanager
def _stop_signals(stop):
  if stop is not None:
    yield stop
  elif threading.current_thread() is threading.main_thread():
    with stopping.StopOnSignal() as handler:
      yield handler
  else:
    yield _NoSignals()


def _as_list(problem_or_problems):
  if isinstance(problem_or_problems, (list, tuple)):
    if not problem_or_problems:
      raise ValueError("meta_train got an empty list of problems; give at least one.")
    return list(problem_or_problems)
  return [problem_or_problems]


def default_net_config():
  """One coordinatewise 20-20 LSTM under the key the Keras optimizer reads (`cw.npz`), with
  Adam-normalized inputs (Lv et al. 2017), which carry across problems of other gradient scales."""
  return {optimizer_files.SINGLE_NET_KEY: meta.lstm_config("AdamNormalized", {}, scale=0.1)}


def net_config_from(path):
  """The net config that starts from a trained optimizer (a save_path directory or a shipped
  name): each of its networks with the options and weights it was saved with."""
  directory = optimizer_files.resolve(path)
  keys = sorted(name[:-len(".npz")] for name in os.listdir(directory) if name.endswith(".npz"))
  if not keys:
    raise ValueError(f"{path} holds no trained optimizer (no .npz files); give a save_path of "
                     "meta_train or a shipped name.")
  config = {}
  for key in keys:
    file = optimizer_files.path_for(directory, key)
    saved = optimizer_files.read_config(file)
    if saved is None:
      raise ValueError(f"{file} records no network options; load it with the net config it was "
                       "trained with.")
    config[key] = {"net": saved["net"], "net_options": saved["net_options"], "net_path": file}
  return config


def stagger_offsets(num_instances, num_unrolls):
  """The unroll of each epoch at which each of `num_instances` staggered instances starts afresh:
  spread evenly over the epoch's `num_unrolls`, instance 0 at its start."""
  return [i * num_unrolls // num_instances for i in range(num_instances)]


class Run:
  """A meta-training run in progress: what `meta_train` builds, and what callbacks see.

  Attributes:
    settings: the Settings.
    meta_optimizer: the meta.MetaOptimizer being trained.
    curriculum: the Curriculum (its stage and best so far).
    epoch: epochs done.
    save_path: where the best optimizer and the checkpoints go, or None.
  """

  def __init__(self, problems, settings, net_config, net_assignments, evaluation_problems,
               save_path, strategy, flag_prefix, evaluation_split="train"):
    self.settings = settings
    self.evaluation_split = evaluation_split
    self.save_path = save_path
    self._problems = problems
    self._net_assignments = net_assignments
    self._prefix = flag_prefix
    self.strategy = strategy
    self.chief = distribute.is_chief(strategy)
    with strategy.scope():
      self.meta_optimizer = meta.MetaOptimizer(**net_config)
    self._trainers = []
    for problem in problems:
      shared = self._trainers[0].optimizer if self._trainers else None
      self._trainers.append(self._make_trainer(problem, shared))
    self._evaluators = [evaluation.Evaluator(p, net_config, net_assignments,
                                             settings.unroll_length, jit_compile=settings.jit_compile)
                        for p in evaluation_problems]
    self.curriculum = Curriculum(settings.horizons, settings.selection_steps,
                                 settings.curriculum_patience)
    self.epoch = 0
    self.checkpoint = None

  @property
  def meta_step_optimizer(self):
    """The Keras optimizer that takes the meta-steps (shared by every problem's trainer)."""
    return self._trainers[0].optimizer

  def _make_trainer(self, problem, shared_optimizer):
    settings = self.settings
    learning_rate = settings.learning_rate
    if settings.meta_lr_schedule == "cosine":
      learning_rate = keras.optimizers.schedules.CosineDecay(
          settings.learning_rate,
          decay_steps=settings.num_epochs * (settings.horizons[0] // settings.unroll_length))
    teacher = (evaluation.baseline_config(settings.imitate, settings.imitation_learning_rate)
               if settings.imitate else None)
    trainer = self.meta_optimizer.meta_minimize(
        problem, settings.unroll_length, learning_rate=learning_rate,
        net_assignments=self._net_assignments, second_derivatives=settings.second_derivatives,
        clip_meta_gradient=settings.clip_meta_gradient, jit_compile=settings.jit_compile,
        num_instances=settings.num_instances, strategy=self.strategy,
        objective=settings.objective, clip_meta_gradient_value=settings.clip_meta_gradient_value,
        recompute=settings.recompute, batch_instances=settings.batch_instances, teacher=teacher,
        optimizer=shared_optimizer)
    if settings.estimator == "pes":
      return pes.PESTrainer(trainer, settings.pes_pairs, settings.pes_sigma,
                            settings.pes_variables)
    return trainer

  def trainer_for(self, epoch, attempt=0):
    """The trainer of the problem epoch `epoch` trains on: one problem, or one drawn from the list
    by the epoch's seeds (seeds.family_member)."""
    if len(self._trainers) == 1:
      return self._trainers[0]
    epoch_seed = seeds_lib.training_epoch(self.settings.seed, epoch, attempt)
    return self._trainers[seeds_lib.family_member(epoch_seed, len(self._trainers))]

  # --- Resuming ---------------------------------------------------------------------------

  def restore_or_start(self, config, overwrite):
    """Checks or writes run.json, then restores the newest readable checkpoint, if any."""
    if self.save_path is None:
      return
    checkpoint_dir = os.path.join(self.save_path, "checkpoints")
    if overwrite and self.chief and os.path.isdir(checkpoint_dir):
      shutil.rmtree(checkpoint_dir)
    if self.chief and not overwrite:
      checkpoints.check_no_trained_optimizer(self.save_path, self.meta_optimizer)
    self._check_run_config(config, write=self.chief)
    state = checkpoints.TrainingCheckpoint(checkpoint_dir, self.meta_optimizer,
                                           self.meta_step_optimizer, chief=self.chief,
                                           curriculum=self.settings.curriculum is not None)
    # A worker started with overwrite must not read what the chief is deleting.
    restored, damaged = state.restore_latest() if self.chief or not overwrite else (None, [])
    for warning in state.warnings:
      logging.warning("%s.", warning)
    for path, reason in damaged:
      logging.warning("Checkpoint %s is damaged (%s); falling back to the one before.", path,
                      reason)
    if restored:
      logging.info("Resuming from %s at epoch %d.", restored, int(state.epoch.numpy()))
    self.checkpoint = state
    self.epoch = int(state.epoch.numpy())
    self.curriculum.stage = int(state.stage.numpy())
    self.curriculum.stale = int(state.stale.numpy())
    self.curriculum.best = float(state.best_loss.numpy())

  def _check_run_config(self, config, write):
    """Writes the run's defining values to save_path/run.json, or checks them against it."""
    path = os.path.join(self.save_path, "run.json")
    checkpoint_dir = os.path.join(self.save_path, "checkpoints")
    if not os.path.exists(path) and checkpoints.has_checkpoint(checkpoint_dir):
      raise ValueError(f"{self._prefix}save_path={self.save_path} holds checkpoints but no "
                       "run.json to tell which settings they were trained with; restore run.json, "
                       f"or pass {self._prefix}overwrite to start afresh.")
    if os.path.exists(path) and os.path.isdir(checkpoint_dir):
      saved = checkpoints.read_run_config(path)
      changed = [_change(self._prefix, k, config[k], saved.get(k, RUN_DEFAULTS.get(k)))
                 for k in config if not (k in UNRECORDED_BEFORE and k not in saved)
                 and not _same(saved.get(k, RUN_DEFAULTS.get(k)), config[k])]
      if changed:
        raise ValueError(f"{self._prefix}save_path={self.save_path} holds a run with other "
                         f"settings: {', '.join(changed)}; use the same "
                         f"{'flags' if self._prefix else 'settings'} to resume, or "
                         f"{self._prefix}overwrite.")
      return
    if not write:
      return
    os.makedirs(self.save_path, exist_ok=True)
    checkpoints.write_json(path, config)

  def save_checkpoint(self, clock, epoch=None):
    """Checkpoints the run at `epoch` (default: the epochs done) with its curriculum and time."""
    if self.checkpoint is None:
      return
    state = self.checkpoint
    state.seconds.assign(clock.seconds())
    state.epoch.assign(self.epoch if epoch is None else epoch)
    state.best_loss.assign(self.curriculum.best)
    state.stage.assign(self.curriculum.stage)
    state.stale.assign(self.curriculum.stale)
    state.save()

  # --- Training and evaluation ------------------------------------------------------------

  def _set_imitation(self, trainer, epoch):
    settings = self.settings
    if settings.imitate:
      warm_start = epoch < settings.imitation_epochs
      trainer.objective_weight.assign(0.0 if warm_start else 1.0)
      trainer.imitation_weight.assign(1.0 if warm_start else settings.imitation_weight)

  def _run_epoch(self, trainer, epoch_seed, num_unrolls, signals):
    """One epoch: (seconds, final loss, last UnrollResult), or None on a non-finite meta-step.
    A stop signal is acted on between unrolls. Staggered instances carry on from the trainer's
    last epoch (all start afresh the first time, and after a fault), each starting over at its
    own offset."""
    start = time.time()
    stagger = self.settings.stagger
    fresh = not stagger or trainer.states is None
    if fresh:
      trainer.reset(seeds_lib.initial_seed(epoch_seed))
    offsets = stagger_offsets(trainer.num_instances, num_unrolls) if stagger else ()
    for unroll in range(num_unrolls):
      signals.check()
      due = [i for i, offset in enumerate(offsets)
             if offset == unroll and not (fresh and unroll == 0)]
      if due:
        trainer.restart(seeds_lib.restart_seed(epoch_seed, unroll), due)
      result = trainer.train_unroll(seeds_lib.unroll_seed(epoch_seed, unroll))
      if not bool(result.finite):
        trainer.states = None  # not carried into a later epoch: a retry starts afresh
        return None
    return time.time() - start, float(result.final_loss), result

  def train_epoch(self, signals):
    """Trains the next epoch, again on a new instance after a non-finite meta-step; returns its
    EpochResult. Raises ValueError after max_faults non-finite meta-steps in a row."""
    settings, epoch = self.settings, self.epoch
    num_unrolls = self.curriculum.horizon // settings.unroll_length
    faults = 0
    while True:
      signals.check()
      # A retried epoch draws a new instance: the fault may lie in the instance itself.
      trainer = self.trainer_for(epoch, faults)
      self._set_imitation(trainer, epoch)
      outcome = self._run_epoch(trainer, seeds_lib.training_epoch(settings.seed, epoch, faults),
                                num_unrolls, signals)
      if outcome is not None:
        self.epoch += 1
        return EpochResult(self.epoch, *outcome)
      faults += 1
      logging.warning("Epoch %d: non-finite loss or meta-gradient; meta-step skipped, epoch "
                      "restarted (%d in a row).", epoch + 1, faults)
      if faults >= settings.max_faults:
        raise ValueError(f"{faults} non-finite meta-steps in a row at epoch {epoch + 1}: lower "
                         f"{self._prefix}learning_rate, set {self._prefix}clip_meta_gradient, or "
                         "use a smaller output scale (--settings=reference).")
      if self.checkpoint is not None:
        self.checkpoint.faults.assign_add(1)

  def evaluate(self, steps, signals=None):
    """(mean loss over the evaluation instances, problems and `steps`, seconds) of the current
    networks; inf when any loss is not finite. A stop signal is acted on between unrolls."""
    seeds = seeds_lib.epoch_seeds(self.settings.seed, self.settings.evaluation_epochs,
                                  seeds_lib.EVALUATION)
    check = signals.check if signals is not None else None
    start = time.time()
    scores = []
    for evaluator in self._evaluators:
      for source, copy in zip(self.meta_optimizer.trainable_variables,
                              evaluator.meta_optimizer.trainable_variables):
        copy.assign(source)
      losses = evaluator.run(seeds, max(steps), check=check)[:, steps]
      scores.append(float(np.mean(losses)) if np.all(np.isfinite(losses)) else float("inf"))
    return float(np.mean(scores)), time.time() - start

  def observe(self, loss):
    """Records an evaluation's loss in the curriculum: (whether it is the best so far, the stage
    it was scored in)."""
    stage = self.curriculum.stage
    return self.curriculum.observe(loss), stage

  def keep_best(self, loss, clock, steps, stage):
    """Writes the optimizer, just evaluated the best so far, to save_path with its best.json."""
    if self.save_path is None or not self.chief:
      return
    checkpoints.save_optimizer(self.meta_optimizer, self.save_path)
    record = {"epoch": self.epoch, "evaluation_loss": loss,
              "evaluation_split": self.evaluation_split,
              "evaluation_epochs": self.settings.evaluation_epochs,
              "num_steps": self.curriculum.horizons[stage], "selection_steps": steps,
              "seconds": round(clock.seconds(), 1)}
    checkpoints.write_json(os.path.join(self.save_path, "best.json"), record)
    logging.info("Saved the best optimizer so far (evaluation loss %.4g) to %s.", loss,
                 self.save_path)


# For run.json files written before these values were recorded.
RUN_DEFAULTS = {"num_instances": 1, "estimator": "backprop", "pes_pairs": 8, "pes_sigma": 0.01,
                "pes_variables": None, "stagger": False, "objective": "sum", "preprocess": None,
                "evaluation_split": "train", "clip_meta_gradient_value": None,
                "meta_lr_schedule": "constant", "imitate": None,
                "imitation_learning_rate": None, "imitation_epochs": 0,
                "imitation_weight": 0.0, "selection_steps": None, "curriculum": None,
                "curriculum_patience": 3, "labels": None}


# Recorded in run.json only since; a run.json without them was written by an earlier version.
UNRECORDED_BEFORE = ("data_digest",)


def _change(prefix, key, value, saved):
  if key == "data_digest":
    return "the data (its files changed since the run started)"
  return f"{prefix}{key}={value} (was {saved})"


def _same(saved, value):
  """Whether a run.json value is `value`; step lists compare as integers ("100" == 100)."""
  if isinstance(saved, list) and isinstance(value, (list, tuple)):
    try:
      return [int(s) for s in saved] == [int(v) for v in value]
    except (TypeError, ValueError):
      return False
  return saved == value


class RunResult(NamedTuple):
  """What `meta_train` returns."""
  meta_optimizer: Any  # the trained meta.MetaOptimizer (its last weights, not the best's)
  epoch: int  # epochs done
  best_loss: float  # the best evaluation loss (inf if none evaluated)
  stopped: Optional[str]  # the signal that stopped the run ("SIGINT", "SIGTERM"), or None


def meta_train(problem, settings=None, *, net_config=None, net_assignments=None, save_path=None,
               evaluation_problem=None, evaluation_split="train", callbacks=None, strategy=None,
               overwrite=False, identity=None, stop=None, flag_prefix=""):
  """Meta-trains learned optimizer networks on `problem`; returns a RunResult.

  Args:
    problem: the optimizee (a problems.Problem, e.g. a keras_problems.KerasProblem), or a list of
      them: a family, one drawn per epoch.
    settings: a Settings (default: Settings()).
    net_config: the networks, as meta.MetaOptimizer takes them (default: default_net_config()).
    net_assignments: which network updates which parameters (see meta.NetAssignments).
    save_path: directory for the best optimizer (`<key>.npz`, what evaluate.py and
      keras.LearnedOptimizer load), best.json, run.json and the checkpoints; None keeps nothing.
      A run there resumes from its newest checkpoint.
    evaluation_problem: the problem (or list) evaluations select on (default: `problem`).
    evaluation_split: recorded in best.json: the data split evaluation_problem draws from.
    callbacks: Callback objects (default: [PrintProgress()]).
    strategy: a tf.distribute.Strategy (default: the current one).
    overwrite: start afresh even if save_path holds a checkpoint.
    identity: more of what defines the run, for run.json (say, the problem's name); a digest of
      the problems' data (their `data_digest`) is recorded beside it.
    stop: a stopping.StopOnSignal already installed (train.py's); default: one for this call.
    flag_prefix: how errors name settings: "" here, "--" for train.py's flags.
  """
  settings = Settings() if settings is None else settings
  problems = _as_list(problem)
  evaluation_problems = problems if evaluation_problem is None else _as_list(evaluation_problem)
  strategy = strategy or tf.distribute.get_strategy()
  if settings.stagger and strategy.num_replicas_in_sync > 1:
    raise ValueError(f"{flag_prefix}stagger needs one replica; got "
                     f"{strategy.num_replicas_in_sync}: drop {flag_prefix}stagger or the strategy.")
  callbacks = [PrintProgress()] if callbacks is None else list(callbacks)
  config = run_config(settings, identity)
  digests = [p.data_digest for p in problems + evaluation_problems if hasattr(p, "data_digest")]
  if digests:  # a data file replaced under a run must not go unnoticed
    config["data_digest"] = ",".join(digests)
  lock = None
  if save_path is not None and distribute.is_chief(strategy):
    if os.path.exists(save_path) and not os.path.isdir(save_path):
      raise ValueError(f"{flag_prefix}save_path={save_path} is a file; give a directory.")
    lock = locking.DirectoryLock(save_path, f"{flag_prefix}save_path")
  try:
    # The networks' initial weights come from TF's global generator; problem instances and
    # minibatches use stateless seeds derived from the seed, epoch, unroll and instance (seeds.py).
    tf.random.set_seed(settings.seed)
    run = Run(problems, settings, net_config or default_net_config(), net_assignments,
              evaluation_problems, save_path, strategy, flag_prefix, evaluation_split)
    run.restore_or_start(config, overwrite)
    with _stop_signals(stop) as signals:
      stopped = _train(run, callbacks, signals)
    return RunResult(run.meta_optimizer, run.epoch, run.curriculum.best, stopped)
  finally:
    if lock is not None:
      lock.release()


def _train(run, callbacks, signals):
  """The epochs from the restored one to num_epochs; returns the stopping signal's name or None."""
  settings = run.settings
  clock = Clock(float(run.checkpoint.seconds.numpy()) if run.checkpoint else 0.0)
  for callback in callbacks:
    callback.on_train_begin(run)
  evaluating = False
  try:
    if settings.evaluate_start and run.epoch == 0 and run.curriculum.best == float("inf"):
      evaluating = True
      _evaluate(run, callbacks, signals, clock)
      evaluating = False
    while run.epoch < settings.num_epochs:
      result = run.train_epoch(signals)
      for callback in callbacks:
        callback.on_epoch_end(run, result)
      if run.epoch % settings.evaluation_period == 0 or run.epoch == settings.num_epochs:
        evaluating = True
        _evaluate(run, callbacks, signals, clock)
        evaluating = False
      if run.epoch % settings.checkpoint_period == 0 or run.epoch == settings.num_epochs:
        run.save_checkpoint(clock)
  except stopping.Stop as stop:
    # An epoch counts once its evaluation is done: a run stopped during one redoes that epoch.
    epoch = max(run.epoch - 1, 0) if evaluating else run.epoch
    logging.info("%s: saving a checkpoint at epoch %d and stopping.", stop, epoch)
    run.save_checkpoint(clock, epoch)
    for callback in callbacks:
      callback.on_train_end(run, str(stop))
    return str(stop)
  for callback in callbacks:
    callback.on_train_end(run, None)
  return None


def _evaluate(run, callbacks, signals, clock):
  """Scores the networks at the curriculum's selection steps and keeps them if the best so far."""
  steps = run.curriculum.selection_steps()
  loss, seconds = run.evaluate(steps, signals)
  improved, stage = run.observe(loss)
  for callback in callbacks:
    callback.on_evaluation(run, loss, seconds, steps, improved)
  if improved:
    run.keep_best(loss, clock, steps, stage)
  if run.curriculum.stage != stage:
    logging.info("Curriculum: no improvement in %d evaluations; training at %d steps from "
                 "epoch %d.", run.curriculum.patience, run.curriculum.horizon, run.epoch + 1)
