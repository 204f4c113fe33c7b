"""training.py: Settings, the Curriculum, fault retry, best-keeping and stops, with fake
evaluations and epochs where the sequence of events is the point."""

import json
import os
import types

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import problems
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import stopping
from learning_to_learn import training

INF = float("inf")


class SettingsTest(parameterized.TestCase):

  def test_defaults_are_the_reference_flags(self):
    settings = training.Settings()
    self.assertEqual((settings.num_epochs, settings.num_steps, settings.unroll_length,
                      settings.learning_rate, settings.evaluation_period,
                      settings.evaluation_epochs), (10000, 100, 20, 0.001, 1000, 20))
    self.assertEqual(settings.horizons, (100,))
    self.assertEqual(training.Settings(curriculum=[20, 40], unroll_length=20).horizons, (20, 40))

  @parameterized.named_parameters(
      ("zero_unroll", dict(unroll_length=0), "unroll_length=0 must be positive"),
      ("not_a_multiple", dict(num_steps=30), "num_steps=30 is not a multiple of unroll_length=20"),
      ("teacher_alone", dict(imitate="adam"), "imitate and imitation_learning_rate go together"),
      ("curriculum", dict(curriculum=(20, 30)), "curriculum=20,30 must be increasing multiples"),
      ("horizon", dict(selection_steps=(5_000_000,)), "reaches 5000000 steps, above 100000"),
      ("objective", dict(objective="mean"), "objective=mean is not one of sum, log, late"))
  def test_bad_values_are_one_line_errors(self, values, message):
    with self.assertRaisesRegex(ValueError, message):
      training.Settings(**values)

  def test_the_command_line_names_flags(self):
    values = types.SimpleNamespace(**dict(vars(training.Settings()), unroll_length=0))
    with self.assertRaisesRegex(ValueError, "^--unroll_length=0 must be positive"):
      training.check_settings(values, "--")


class CurriculumTest(parameterized.TestCase):
  """Sequences worked out by hand from the rule: move on after `patience` stale evaluations."""

  def test_moves_on_after_patience_stale_evaluations_and_starts_a_new_best(self):
    curriculum = training.Curriculum((100, 200, 300), patience=2)
    self.assertEqual(curriculum.selection_steps(), [200])  # the next horizon
    seen = [(curriculum.observe(loss), curriculum.stage, curriculum.best)
            for loss in (1.0, 1.5, 1.2, 5.0, 4.0, 4.5, 4.2, 9.0, 9.5, 9.9)]
    self.assertEqual(seen, [(True, 0, 1.0), (False, 0, 1.0), (False, 1, INF),
                            (True, 1, 5.0), (True, 1, 4.0), (False, 1, 4.0), (False, 2, 4.0),
                            (False, 2, 4.0), (False, 2, 4.0), (False, 2, 4.0)])
    # Stage 1 selects at 300, and so does stage 2 (the last horizon's): the best carries over.
    self.assertEqual(curriculum.selection_steps(), [300])
    self.assertEqual(curriculum.horizon, 300)

  def test_fixed_selection_steps_keep_the_best_across_stages(self):
    curriculum = training.Curriculum((20, 40), selection_steps=(20, 40), patience=1)
    self.assertTrue(curriculum.observe(2.0))
    self.assertFalse(curriculum.observe(3.0))
    self.assertEqual((curriculum.stage, curriculum.best), (1, 2.0))
    self.assertFalse(curriculum.observe(2.5))
    self.assertEqual(curriculum.stage, 1)  # the last stage stays

  def test_without_a_curriculum_it_only_keeps_the_best(self):
    curriculum = training.Curriculum((100,), patience=1)
    self.assertEqual([curriculum.observe(v) for v in (3.0, 4.0, 2.0, 2.0)],
                     [True, False, True, False])
    self.assertEqual((curriculum.stage, curriculum.best), (0, 2.0))


def _run(save_path=None, **values):
  settings = training.Settings(**dict(dict(num_epochs=4, num_steps=2, unroll_length=1,
                                           evaluation_period=1, evaluation_epochs=1,
                                           log_period=100, checkpoint_period=1), **values))
  problem = problems.simple()
  net_config = {"cw": {"net": "CoordinateWiseDeepLSTM",
                       "net_options": {"layers": (), "initializer": "zeros"}}}
  run = training.Run([problem], settings, net_config, None, [problem], save_path,
                     tf.distribute.get_strategy(), "")
  run.restore_or_start(training.run_config(settings), overwrite=False)
  return run


class Recorder(training.Callback):

  def __init__(self):
    self.events = []

  def on_epoch_end(self, run, result):
    self.events.append(("epoch", result.epoch))

  def on_evaluation(self, run, loss, seconds, steps, improved):
    self.events.append(("evaluation", run.epoch, loss, improved))

  def on_train_end(self, run, stopped):
    self.events.append(("end", stopped))


class _Signals:
  """A stand-in for stopping.StopOnSignal that stops at its `at`-th check."""

  def __init__(self, at=None):
    self.calls, self._at = 0, at

  def check(self):
    self.calls += 1
    if self.calls == self._at:
      raise stopping.Stop("SIGTERM")


def test_best_keeping_writes_the_optimizer_only_when_the_evaluation_improves(tmp_path):
  run = _run(str(tmp_path))
  scores = iter([3.0, 2.0, 2.5, 1.0])
  run.evaluate = lambda steps, signals=None: (next(scores), 0.0)
  written = []
  real_keep = run.keep_best
  run.keep_best = lambda loss, *args: (written.append(run.epoch), real_keep(loss, *args))
  recorder = Recorder()
  assert training._train(run, [recorder], _Signals()) is None
  assert [e for e in recorder.events if e[0] == "evaluation"] == [
      ("evaluation", 1, 3.0, True), ("evaluation", 2, 2.0, True), ("evaluation", 3, 2.5, False),
      ("evaluation", 4, 1.0, True)]
  assert written == [1, 2, 4]
  with open(tmp_path / "best.json") as f:
    best = json.load(f)
  assert (best["epoch"], best["evaluation_loss"], best["selection_steps"]) == (4, 1.0, [2])
  assert os.path.isfile(tmp_path / "cw.npz")



def test_evaluate_start_scores_the_start_first_and_keeps_it_until_beaten(tmp_path):
  run = _run(str(tmp_path), num_epochs=3, evaluate_start=True)
  scores = iter([2.0, 3.0, 1.5, 2.5])  # the start, then epochs 1, 2, 3
  run.evaluate = lambda steps, signals=None: (next(scores), 0.0)
  recorder = Recorder()
  assert training._train(run, [recorder], _Signals()) is None
  assert [e for e in recorder.events if e[0] == "evaluation"] == [
      ("evaluation", 0, 2.0, True), ("evaluation", 1, 3.0, False), ("evaluation", 2, 1.5, True),
      ("evaluation", 3, 2.5, False)]
  with open(tmp_path / "best.json") as f:
    assert json.load(f)["epoch"] == 2
  # Resumed, the start is not scored again: the best so far came back with the checkpoint.
  resumed = _run(str(tmp_path), num_epochs=4, evaluate_start=True)
  resumed.evaluate = lambda steps, signals=None: (5.0, 0.0)
  recorder = Recorder()
  training._train(resumed, [recorder], _Signals())
  assert [e for e in recorder.events if e[0] == "evaluation"] == [("evaluation", 4, 5.0, False)]


def test_a_stop_during_the_start_evaluation_saves_epoch_zero(tmp_path):
  run = _run(str(tmp_path), evaluate_start=True)
  assert training._train(run, [], _Signals(at=1)) == "SIGTERM"  # the start's first chunk
  assert int(run.checkpoint.epoch.numpy()) == 0

def test_a_non_finite_epoch_is_retried_on_new_instances_then_refused():
  run = _run(max_faults=3)
  seeds = []

  def never_finite(trainer, epoch_seed, num_unrolls, signals):
    seeds.append(epoch_seed)
    return None
  run._run_epoch = never_finite
  with pytest.raises(ValueError, match="3 non-finite meta-steps in a row at epoch 1"):
    run.train_epoch(_Signals())
  training_seed = (0, seeds_lib.TRAINING, 0)
  assert seeds == [training_seed, training_seed + (1,), training_seed + (2,)]


def test_a_retried_epoch_that_succeeds_counts_once():
  run = _run()
  outcomes = iter([None, (0.5, 1.0, "result")])
  run._run_epoch = lambda *args: next(outcomes)
  result = run.train_epoch(_Signals())
  assert (result.epoch, result.final_loss, run.epoch) == (1, 1.0, 1)


def test_a_stop_during_an_epoch_saves_the_epochs_done(tmp_path):
  run = _run(str(tmp_path), num_epochs=10)
  recorder = Recorder()
  # Checks per epoch: one before it, one before each of its 2 unrolls, one before each of the
  # evaluation's 2 chunks (unroll_length 1): 5. The 12th check is epoch 3's first unroll.
  assert training._train(run, [recorder], _Signals(at=12)) == "SIGTERM"
  assert recorder.events[-1] == ("end", "SIGTERM")
  assert int(run.checkpoint.epoch.numpy()) == 2
  resumed = _run(str(tmp_path), num_epochs=10)
  assert resumed.epoch == 2


def test_a_stop_during_an_evaluation_redoes_that_epoch(tmp_path):
  run = _run(str(tmp_path), num_epochs=10)
  # The 4th check is the first chunk of epoch 1's evaluation.
  assert training._train(run, [], _Signals(at=4)) == "SIGTERM"
  assert int(run.checkpoint.epoch.numpy()) == 0


def test_meta_train_resumes_where_it_stopped_and_records_the_run(tmp_path):
  settings = training.Settings(num_epochs=3, num_steps=2, unroll_length=1, evaluation_period=1,
                               evaluation_epochs=1, checkpoint_period=1)
  first = training.meta_train(problems.simple(), settings, save_path=str(tmp_path), callbacks=[])
  assert (first.epoch, first.stopped) == (3, None)
  longer = training.Settings(**dict(vars(settings), num_epochs=5))
  recorder = Recorder()
  second = training.meta_train(problems.simple(), longer, save_path=str(tmp_path),
                               callbacks=[recorder])
  assert second.epoch == 5
  assert [e[1] for e in recorder.events if e[0] == "epoch"] == [4, 5]
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["num_steps"] == 2
  other = training.Settings(**dict(vars(longer), learning_rate=0.1))
  with pytest.raises(ValueError, match=r"holds a run with other settings: learning_rate=0.1 "):
    training.meta_train(problems.simple(), other, save_path=str(tmp_path), callbacks=[])
  os.remove(tmp_path / "run.json")
  with pytest.raises(ValueError, match="holds checkpoints but no run.json"):
    training.meta_train(problems.simple(), longer, save_path=str(tmp_path), callbacks=[])


def test_a_family_shares_one_meta_step_optimizer_and_draws_a_problem_per_epoch():
  family = [problems.simple(), problems.quadratic(batch_size=2, num_dims=3)]
  settings = training.Settings(num_epochs=1, num_steps=2, unroll_length=1, evaluation_period=1,
                               evaluation_epochs=1)
  run = training.Run(family, settings, training.default_net_config(), None, family, None,
                     tf.distribute.get_strategy(), "")
  trainers = run._trainers
  assert trainers[0].optimizer is trainers[1].optimizer
  chosen = {id(run.trainer_for(epoch)) for epoch in range(20)}
  assert chosen == {id(t) for t in trainers}
  expected = [int(np.random.default_rng([0, seeds_lib.TRAINING, e]).integers(2))
              for e in range(20)]
  assert [trainers.index(run.trainer_for(e)) for e in range(20)] == expected


class _StaggerSpy:
  """A trainer that records its resets and restarts (by unroll) instead of unrolling."""

  def __init__(self, num_instances, fault_at=None):
    self.num_instances, self.states, self.events, self._unroll = num_instances, None, [], 0
    self._fault_at = fault_at

  def reset(self, seed):
    self.states = "all"
    self.events.append((self._unroll, "reset", tuple(seed.numpy())))

  def restart(self, seed, instances):
    self.events.append((self._unroll, tuple(instances), tuple(seed.numpy())))

  def train_unroll(self, seed):
    self._unroll += 1
    finite = self._unroll != self._fault_at
    return types.SimpleNamespace(finite=tf.constant(finite), final_loss=tf.constant(1.0))


def test_staggered_instances_start_over_at_their_offsets_and_carry_on_across_epochs():
  # 4 instances over epochs of 8 unrolls: offsets 0, 2, 4, 6 (i * 8 // 4).
  assert training.stagger_offsets(4, 8) == [0, 2, 4, 6]
  assert training.stagger_offsets(3, 2) == [0, 0, 1]
  run = _run(num_instances=4, stagger=True, num_steps=8, unroll_length=1)
  spy = _StaggerSpy(4)
  epoch0, epoch1 = (0, seeds_lib.TRAINING, 0), (0, seeds_lib.TRAINING, 1)
  run._run_epoch(spy, epoch0, 8, _Signals())
  run._run_epoch(spy, epoch1, 8, _Signals())

  def seed(value):
    return tuple(value.numpy())
  assert spy.events == [
      # First epoch: all start at its first unroll, then 1, 2, 3 start over at their offsets.
      (0, "reset", seed(seeds_lib.initial_seed(epoch0))),
      (2, (1,), seed(seeds_lib.restart_seed(epoch0, 2))),
      (4, (2,), seed(seeds_lib.restart_seed(epoch0, 4))),
      (6, (3,), seed(seeds_lib.restart_seed(epoch0, 6))),
      # Later epochs carry the states on: each instance lives 8 unrolls, from its offset.
      (8, (0,), seed(seeds_lib.restart_seed(epoch1, 0))),
      (10, (1,), seed(seeds_lib.restart_seed(epoch1, 2))),
      (12, (2,), seed(seeds_lib.restart_seed(epoch1, 4))),
      (14, (3,), seed(seeds_lib.restart_seed(epoch1, 6)))]


def test_a_fault_in_a_staggered_epoch_starts_every_instance_afresh_next_time():
  run = _run(num_instances=2, stagger=True, num_steps=4, unroll_length=1)
  spy = _StaggerSpy(2, fault_at=3)
  epoch0, epoch1 = (0, seeds_lib.TRAINING, 0), (0, seeds_lib.TRAINING, 1)
  assert run._run_epoch(spy, epoch0, 4, _Signals()) is None
  assert spy.states is None
  run._run_epoch(spy, epoch1, 4, _Signals())
  assert [e[:2] for e in spy.events] == [(0, "reset"), (2, (1,)), (3, "reset"), (5, (1,))]


def test_stagger_needs_several_instances_unrolled_one_by_one():
  with pytest.raises(ValueError, match="stagger needs num_instances of 2 or more"):
    training.Settings(stagger=True)
  with pytest.raises(ValueError, match="with batch_instances"):
    training.Settings(stagger=True, num_instances=2, batch_instances=True)


def test_a_staggered_run_meta_trains_with_real_restarts(tmp_path):
  run = _run(str(tmp_path), num_instances=3, stagger=True, num_steps=3, unroll_length=1,
             num_epochs=3)
  trainer = run.trainer_for(0)
  starts = []
  restart = trainer.restart
  trainer.restart = lambda seed, instances: (starts.append(list(instances)),
                                             restart(seed, instances))
  assert training._train(run, [], _Signals()) is None
  assert run.epoch == 3
  # Offsets 0, 1, 2: the first epoch restarts 1 and 2, each later one 0, 1 and 2 in turn.
  assert starts == [[1], [2], [0], [1], [2], [0], [1], [2]]
  assert all(np.all(np.isfinite(t)) for s in trainer.states for t in tf.nest.flatten(s))
