"""pes.py: the PES estimate against backpropagation through the whole history, and a PES run."""

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import meta
from learning_to_learn import pes
from learning_to_learn import problems
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import training
from learning_to_learn import unroll as unroll_lib

T, WINDOWS = 2, 3


def _linear_rule_trainer(jit_compile=False):
  """f(x) = x^2 from x = 1, the update scale (w g + b): a rule whose weights shape the history."""
  optimizer = meta.MetaOptimizer(cw=dict(net="CoordinateWiseDeepLSTM", net_options=dict(
      layers=(), scale=1.0, initializer="zeros")))
  problem = problems.simple()
  trainer = optimizer.meta_minimize(problem, T, jit_compile=jit_compile, objective="log")
  for v in trainer.variables:  # w = -0.2, b = 0.05: x shrinks, not to zero, over the windows
    v.assign(tf.fill(v.shape, -0.2 if v.shape.rank == 2 else 0.05))
  return problem, trainer


def _backprop_gradients(problem, trainer):
  """The gradient of the last window's objective: through the whole history (what PES
  estimates), and with the window's start held fixed (what backprop through one window sees);
  both with second derivatives, since PES differentiates the loss itself."""
  state = unroll_lib.initial_state(problem, trainer.rule, seeds_lib.make_seed(0))
  batches = problem.sample_batches(seeds_lib.make_seed(0), WINDOWS * T + 1)
  with tf.GradientTape() as tape:
    losses, _ = unroll_lib.unroll(problem, trainer.rule, state, batches, True)
    last = meta.meta_objective(losses[(WINDOWS - 1) * T:], "log")
  through_history = tape.gradient(last, trainer.variables)
  with tf.GradientTape() as tape:
    _, start = unroll_lib.unroll(problem, trainer.rule, state,
                                 batches[:(WINDOWS - 1) * T + 1], True)
    start = tf.nest.map_structure(tf.stop_gradient, start)
    losses, _ = unroll_lib.unroll(problem, trainer.rule, start, batches[:T + 1], True)
    window_only = tape.gradient(meta.meta_objective(losses, "log"), trainer.variables)
  return np.concatenate([g.numpy().ravel() for g in through_history]), np.concatenate(
      [g.numpy().ravel() for g in window_only])


def test_the_estimate_is_the_gradient_through_the_whole_history():
  problem, trainer = _linear_rule_trainer()
  through_history, window_only = _backprop_gradients(problem, trainer)
  # The history matters here: backprop through the last window alone differs from it.
  assert np.linalg.norm(window_only - through_history) > 0.3 * np.linalg.norm(through_history)
  before = [v.numpy() for v in trainer.variables]
  estimator = pes.PESTrainer(trainer, num_pairs=1500, sigma=1e-3)
  estimator.reset(seeds_lib.make_seed(0))
  for window in range(WINDOWS):
    estimate, results = estimator.estimate(seeds_lib.make_seed(0, window + 1))
  estimate = np.concatenate([g.numpy().ravel() for g in estimate])
  # The estimate leaves the weights as they were, and every particle ran the problem.
  for v, b in zip(trainer.variables, before):
    np.testing.assert_array_equal(v.numpy(), b)
  assert len(results) == 3000 and all(bool(r.finite) for r in results)
  # Unbiased, with a standard error of about |g| sqrt(windows * 3 weights / pairs) = 0.08 |g|.
  error = np.linalg.norm(estimate - through_history) / np.linalg.norm(through_history)
  assert error < 0.25, (estimate, through_history)
  assert np.linalg.norm(estimate - window_only) > 2 * np.linalg.norm(estimate - through_history)


def test_a_pair_sees_opposite_perturbations_and_the_meta_step_descends_the_estimate():
  problem, trainer = _linear_rule_trainer()
  estimator = pes.PESTrainer(trainer, num_pairs=2, sigma=0.01)
  estimator.reset(seeds_lib.make_seed(0))
  seed = seeds_lib.make_seed(0, 1)
  epsilon = estimator.perturbation(seed, 1)
  # Particle 3 (pair 1, minus) ran with θ - ε: the same window as the rule at those weights.
  weights = [v.numpy() for v in trainer.variables]
  for v, w, e in zip(trainer.variables, weights, epsilon):
    v.assign(w - e)
  state = unroll_lib.initial_state(problem, trainer.rule, seeds_lib.make_seed(0))
  expected, _ = unroll_lib.unroll(problem, trainer.rule, state,
                                  problem.sample_batches(seed, T + 1))
  for v, w in zip(trainer.variables, weights):
    v.assign(w)
  result = estimator.train_unroll(seed)
  np.testing.assert_allclose(np.abs(estimator.states[3][0].params["x"]), expected[-1] ** 0.5,
                             rtol=1e-5)
  assert bool(result.finite) and float(result.meta_gradient_norm) > 0
  # Adam's first step moves each weight by its learning rate against the estimate's sign.
  moved = [v.numpy() - w for v, w in zip(trainer.variables, weights)]
  assert all(np.all(np.abs(np.abs(m) - 0.01) < 1e-4) for m in moved)


def test_a_pes_run_meta_trains_through_the_training_loop(tmp_path):
  settings = training.Settings(num_epochs=4, num_steps=8, unroll_length=2, evaluation_period=4,
                               evaluation_epochs=1, estimator="pes", pes_pairs=4,
                               pes_sigma=0.01, learning_rate=0.01, objective="log")
  result = training.meta_train(problems.simple(), settings, save_path=str(tmp_path),
                               callbacks=[])
  assert result.epoch == 4 and np.isfinite(result.best_loss)
  assert (tmp_path / "cw.npz").exists()


@pytest.mark.parametrize("values, message", [
    (dict(estimator="reinforce"), "estimator=reinforce is not one of backprop, pes"),
    (dict(estimator="pes", pes_pairs=0), "needs pes_pairs >= 1 and a positive pes_sigma"),
    (dict(estimator="pes", pes_sigma=0.0), "needs pes_pairs >= 1 and a positive pes_sigma"),
    (dict(estimator="pes", num_instances=2), "runs its own particles on one instance")])
def test_bad_pes_settings_are_one_line_errors(values, message):
  with pytest.raises(ValueError, match=message):
    training.Settings(**values)


def test_only_the_matched_variables_are_perturbed_and_trained():
  optimizer = meta.MetaOptimizer(cw=dict(net="CoordinateWiseDeepLSTM", net_options=dict(
      layers=(4,), scale=0.1)))
  trainer = optimizer.meta_minimize(problems.simple(), T, jit_compile=False, objective="log")
  estimator = pes.PESTrainer(trainer, num_pairs=2, sigma=0.01, variables="linear")
  assert sorted(v.name.split("/")[-1] for v in estimator.variables) == ["b:0", "w:0"]
  before = {v.name: v.numpy() for v in trainer.variables}
  estimator.reset(seeds_lib.make_seed(0))
  assert bool(estimator.train_unroll(seeds_lib.make_seed(0, 1)).finite)
  changed = sorted(v.name for v in trainer.variables
                   if not np.array_equal(v.numpy(), before[v.name]))
  assert changed == sorted(v.name for v in estimator.variables)
  with pytest.raises(ValueError, match="matches none of the networks' variables"):
    pes.PESTrainer(trainer, num_pairs=2, sigma=0.01, variables="no_such_layer")
