"""Stacked optimizee instances (instances.StackedProblem, MetaTrainer(batch_instances=True))
against the same instances run one by one."""

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

import problems
from learning_to_learn import configs
from learning_to_learn import datasets
from learning_to_learn import instances
from learning_to_learn import meta
from learning_to_learn import seeds as seeds_lib


def _classifier():
  rng = np.random.RandomState(0)
  dataset = datasets.Dataset(images=rng.rand(64, 4, 4, 1).astype(np.float32),
                             labels=rng.randint(0, 3, 64).astype(np.int32), source="random")
  return problems.MLPClassifier(dataset, layers=(5,), batch_size=8, num_classes=3)


def _close(a, b, **tolerances):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tolerances)


SEEDS = [seeds_lib.make_seed(0, i) for i in range(3)]


class StackedProblemTest(parameterized.TestCase):

  @parameterized.named_parameters(("quadratic", lambda: configs.get_config("quadratic")[0]),
                                  ("mlp", _classifier))
  def test_losses_and_gradients_are_each_instances_own(self, make_problem):
    problem = make_problem()
    stacked = instances.StackedProblem(problem, 3)
    params, constants = stacked.init(SEEDS)
    batches = stacked.sample_batches(SEEDS, 2)
    with tf.GradientTape() as tape:
      tape.watch(params)
      losses = stacked.loss(params, constants, stacked.instance(batches, 1))
    gradients = tape.gradient(losses, params)
    self.assertEqual(losses.shape, [3])
    for i, seed in enumerate(SEEDS):
      own_params, own_constants = problem.init(seed)
      own_batch = tf.nest.map_structure(lambda b: b[1], problem.sample_batches(seed, 2))
      with tf.GradientTape() as tape:
        tape.watch(own_params)
        loss = problem.loss(own_params, own_constants, own_batch)
      _close(losses[i], loss, rtol=1e-6)
      for name, gradient in tape.gradient(loss, own_params).items():
        _close(gradients[name][i], gradient, rtol=1e-5, atol=1e-8)

  def test_a_wrong_number_of_seeds_is_refused(self):
    with pytest.raises(ValueError, match="got 2 seeds for 3 stacked instances"):
      instances.StackedProblem(_classifier(), 3).init(SEEDS[:2])


def _two_nets(problem):
  """A LogAndSign LSTM for the weights and an AdamNormalized one for the biases."""
  weights = [n for n in problem.param_names if n.endswith("/w")]
  biases = [n for n in problem.param_names if n.endswith("/b")]
  lstm = lambda preprocess, options: dict(net="CoordinateWiseDeepLSTM", net_options=dict(
      layers=(6, 6), preprocess_name=preprocess, preprocess_options=options, scale=0.1))
  return ({"w": lstm("LogAndSign", {"k": 5}), "b": lstm("AdamNormalized", {})},
          [("w", weights), ("b", biases)])


class BatchInstancesTest(parameterized.TestCase):
  """Three meta-steps over 3 instances, looped and stacked, from the same weights."""

  def _run(self, batch_instances, objective, teacher, assignments):
    tf.random.set_seed(0)
    problem = _classifier()
    config, net_assignments = _two_nets(problem) if assignments else ({}, None)
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(
        problem, 4, learning_rate=0.01, net_assignments=net_assignments, num_instances=3,
        objective=objective, jit_compile=False, batch_instances=batch_instances,
        teacher={"adam": {"net": "Adam", "net_options": {"learning_rate": 0.05}}}
        if teacher else None)
    if teacher:
      trainer.imitation_weight.assign(0.5)
    trainer.reset(seeds_lib.make_seed(5))
    results = [trainer.train_unroll(seeds_lib.make_seed(6, i)) for i in range(3)]
    self.assertEqual(trainer.trace_counts["local_train"], 1)
    return (results, [v.numpy() for v in optimizer.trainable_variables],
            trainer.state.params)

  @parameterized.named_parameters(
      ("sum", "sum", False, False),
      ("log_imitating", "log", True, False),
      ("two_nets", "log", False, True))
  def test_same_meta_steps_as_the_loop(self, objective, teacher, assignments):
    looped = self._run(False, objective, teacher, assignments)
    stacked = self._run(True, objective, teacher, assignments)
    for a, b in zip(stacked[0], looped[0]):
      _close(a.losses, b.losses, rtol=1e-5)
      _close(a.meta_gradient_norm, b.meta_gradient_norm, rtol=1e-4)
      _close(a.imitation, b.imitation, rtol=1e-4, atol=1e-7)
      _close(a.update_norm, b.update_norm, rtol=1e-4)
    if teacher:
      self.assertGreater(float(looped[0][0].imitation), 0.0)
    for a, b in zip(stacked[1], looped[1]):
      _close(a, b, rtol=1e-4, atol=1e-6)
    # The weights moved: the comparison is not of three no-ops.
    self.assertGreater(float(looped[0][0].meta_gradient_norm), 0.0)
    for name, value in looped[2].items():  # the first instance, carried over three unrolls
      _close(stacked[2][name], value, rtol=1e-4, atol=1e-6)

  def test_non_coordinatewise_networks_are_refused(self):
    problem = _classifier()
    optimizer = meta.MetaOptimizer(net=dict(net="StandardDeepLSTM", net_options=dict(
        output_size=1, layers=(4,))))
    with pytest.raises(ValueError, match=r"batch_instances needs coordinatewise networks; "
                                         r"\['net'\] are not"):
      optimizer.meta_minimize(problem, 4, num_instances=2, batch_instances=True)
