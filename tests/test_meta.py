"""Meta-training: the reference's Torch numbers, finite differences, carry/reset, assignments."""

import logging
import os

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

import problems
from learning_to_learn import baselines
from learning_to_learn import configs
from learning_to_learn import datasets
from learning_to_learn import evaluation
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll as unroll_lib

from conftest import environment, run_python
SIMPLE_NET = dict(net="CoordinateWiseDeepLSTM", net_options={"layers": (), "initializer": "zeros"})


class QuarticSum(problems.Problem):
  """f(x) = sum(x^4) / 4 + sum(x): non-quadratic, so second derivatives matter."""

  param_names = ("a", "b")

  def init(self, seed):
    a = tf.random.stateless_normal([3], seed)
    return {"a": a, "b": tf.reshape(-a[:2], [2, 1])}, ()

  def loss(self, params, constants, batch):
    return sum(tf.reduce_sum(p ** 4) / 4 + tf.reduce_sum(p) for p in params.values())


class PositiveQuarticSum(problems.Problem):
  """f(x) = sum(x^4) / 4 + sum(x) + 5: positive near its start, so its log is defined."""

  param_names = ("a",)

  def init(self, seed):
    return {"a": tf.random.stateless_normal([3], seed)}, ()

  def loss(self, params, constants, batch):
    a = params["a"]
    return tf.reduce_sum(a ** 4) / 4 + tf.reduce_sum(a) + 5.0


class LinearProblem(QuarticSum):
  """f(x) = sum(3 x): the gradient is constant, so second derivatives vanish."""

  def loss(self, params, constants, batch):
    return sum(3.0 * tf.reduce_sum(p) for p in params.values())


class PythonBranch(problems.Problem):
  """f(x) = sum(x^2) where sum(x) > 0, else sum(x^4) / 4, chosen with Python's `if` on a tensor:
  only autograph makes that a graph."""

  param_names = ("x",)

  def init(self, seed):
    return {"x": tf.random.stateless_normal([4], seed)}, ()

  def loss(self, params, constants, batch):
    x = params["x"]
    if tf.reduce_sum(x) > 0.0:
      value = tf.reduce_sum(x * x)
    else:
      value = tf.reduce_sum(x ** 4) / 4
    return value


class WhereBranch(PythonBranch):
  """PythonBranch's function through tf.where: no control flow for autograph to convert."""

  def loss(self, params, constants, batch):
    x = params["x"]
    return tf.where(tf.reduce_sum(x) > 0.0, tf.reduce_sum(x * x), tf.reduce_sum(x ** 4) / 4)


EVALUATION_SEEDS = [(0, 0, k) for k in range(4)]


class AutographTest(parameterized.TestCase):
  """The library traces without autograph; a user's problem is converted (problems.Problem)."""

  def test_only_problems_from_outside_the_package_are_converted(self):
    self.assertTrue(hasattr(PythonBranch.loss, "__wrapped__"))
    self.assertFalse(hasattr(problems.Simple.loss, "__wrapped__"))
    # Eagerly the method is called as written.
    self.assertAlmostEqual(float(PythonBranch().loss({"x": tf.constant([1.0, -3.0])}, (), None)),
                           20.5)

  def test_a_method_without_source_or_a_static_one_runs_as_written(self):
    namespace = {}
    exec("def loss(self, params, constants, batch):\n"  # pylint: disable=exec-used
         "  return 3.0 * params['x']\n", namespace)
    no_source = type("NoSource", (problems.Problem,), {"loss": namespace["loss"]})
    static = type("Static", (problems.Problem,), {
        "loss": staticmethod(lambda params, constants, batch: 5.0 * params["x"])})
    for cls, factor in ((no_source, 3.0), (static, 5.0)):
      traced = tf.function(lambda x, cls=cls: cls().loss({"x": x}, (), None), autograph=False)
      self.assertAlmostEqual(float(traced(tf.constant(2.0))), 2.0 * factor)

  @parameterized.named_parameters(("graph", False), ("xla", True))
  def test_a_loss_that_branches_in_python_trains_and_evaluates_as_its_tf_where_twin(
      self, jit_compile):
    results = []
    for problem in (PythonBranch(), WhereBranch()):
      tf.random.set_seed(0)
      trainer = meta.MetaOptimizer(net=SIMPLE_NET).meta_minimize(
          problem, 4, learning_rate=0.05, jit_compile=jit_compile)
      trainer.reset(seeds_lib.make_seed(1))
      trained = [float(trainer.train_unroll(seeds_lib.make_seed(1, i)).meta_loss)
                 for i in range(3)]
      evaluator = evaluation.Evaluator(problem, evaluation.baseline_config("sgd", 0.1),
                                       unroll_length=4, jit_compile=jit_compile)
      results.append((trained, evaluator.run(EVALUATION_SEEDS, num_steps=6)))
    # Both branches are taken: the evaluation's instances start on both sides of sum(x) = 0.
    self.assertEqual(
        {bool(tf.reduce_sum(PythonBranch().init(seeds_lib.initial_seed(s))[0]["x"]) > 0)
         for s in EVALUATION_SEEDS}, {True, False})
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


class TorchResultsTest(parameterized.TestCase):

  @parameterized.named_parameters(("eager_graph", False), ("xla", True))
  def test_reproduces_the_reference_torch_numbers(self, jit_compile):
    # The reference's meta_test.testResults: simple problem, linear net from zeros, unroll 5,
    # meta Adam lr 0.01, one epoch of two unrolls. Hand check: after the first meta-step
    # w = b = -0.01, so x <- 0.98 x - 0.01 five times from 1 gives 0.855881.
    optimizer = meta.MetaOptimizer(net=SIMPLE_NET)
    trainer = optimizer.meta_minimize(problems.simple(), 5, jit_compile=jit_compile)
    trainer.reset(seeds_lib.make_seed(0))
    for i in range(2):
      result = trainer.train_unroll(seeds_lib.make_seed(0, i))
    self.assertAlmostEqual(float(result.final_loss), 0.7325327, places=4)
    self.assertAlmostEqual(float(trainer.state.params["x"]), 0.855881, places=4)


class MetaGradientTest(parameterized.TestCase):

  def _setup(self, problem, second_derivatives, objective="sum", scale=1.0, num_steps=3):
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer(cw=dict(net="CoordinateWiseDeepLSTM", net_options=dict(
        layers=(4,), scale=scale)))  # identity input: the net reads g, so dg/dx matters
    net = optimizer.nets["cw"]
    rule = optimizer.assignments(problem)
    state = unroll_lib.initial_state(problem, rule, seeds_lib.make_seed(1))
    batches = problem.sample_batches(seeds_lib.make_seed(2), num_steps + 1)
    variables = net.trainable_variables

    def meta_loss():
      losses, _ = unroll_lib.unroll(problem, rule, state, batches, second_derivatives)
      return meta.meta_objective(losses, objective)

    with tf.GradientTape() as tape:
      loss = meta_loss()
    return variables, meta_loss, tape.gradient(loss, variables)

  def _assert_matches_finite_differences(self, variables, meta_loss, gradients, num_directions,
                                         atol):
    """Central differences (step 1e-2) along random directions against the tape's gradient."""
    rng = np.random.default_rng(0)
    for _ in range(num_directions):
      direction = [rng.normal(size=v.shape).astype(np.float32) for v in variables]
      analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(gradients, direction))
      originals = [v.numpy() for v in variables]
      values = []
      for sign in (1.0, -1.0):
        for v, o, d in zip(variables, originals, direction):
          v.assign(o + sign * 1e-2 * d)
        values.append(float(meta_loss()))
      for v, o in zip(variables, originals):
        v.assign(o)
      numeric = (values[0] - values[1]) / 2e-2
      self.assertAlmostEqual(analytic, numeric, delta=2e-2 * abs(numeric) + atol)

  def test_second_derivatives_match_finite_differences(self):
    self._assert_matches_finite_differences(
        *self._setup(QuarticSum(), second_derivatives=True), num_directions=3, atol=1e-3)

  def test_log_meta_gradient_matches_finite_differences(self):
    self._assert_matches_finite_differences(
        *self._setup(PositiveQuarticSum(), second_derivatives=True, objective="log", scale=0.1,
                     num_steps=4), num_directions=1, atol=1e-4)

  def test_first_order_gradient_differs_on_a_non_quadratic_problem(self):
    _, _, exact = self._setup(QuarticSum(), second_derivatives=True)
    _, _, first_order = self._setup(QuarticSum(), second_derivatives=False)
    exact, first_order = (np.concatenate([g.numpy().ravel() for g in gs])
                          for gs in (exact, first_order))
    # The dropped Hessian terms change the meta-gradient by more than float noise.
    self.assertGreater(np.linalg.norm(exact - first_order), 1e-2 * np.linalg.norm(exact))

  def test_first_order_gradient_is_exact_when_the_gradient_is_constant(self):
    _, _, exact = self._setup(LinearProblem(), second_derivatives=True)
    _, _, first_order = self._setup(LinearProblem(), second_derivatives=False)
    for a, b in zip(exact, first_order):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def _classifier():
  """A small MLP on random images: real minibatches, and a gradient with structure."""
  rng = np.random.default_rng(0)
  dataset = datasets.Dataset(images=rng.random((64, 6, 6, 1)).astype(np.float32),
                             labels=rng.integers(0, 10, 64).astype(np.int32))
  return problems.MLPClassifier(dataset, layers=(7,), batch_size=16)


class RecomputeTest(parameterized.TestCase):
  """The unroll that recomputes the rule's activations (unroll.Recomputed) against the plain one."""

  def _unroll(self, problem, rule, variables, recompute, compiled, second_derivatives=False):
    state = unroll_lib.initial_state(problem, rule, seeds_lib.make_seed(1))
    batches = problem.sample_batches(seeds_lib.make_seed(2), 7)

    def run():
      with tf.GradientTape() as tape:
        losses, final = unroll_lib.unroll(problem, rule, state, batches, second_derivatives,
                                          recompute)
        meta_loss = tf.reduce_sum(losses)
      return losses, final, tape.gradient(meta_loss, variables)

    return tf.function(run)() if compiled else run()

  def _check_same(self, problem, rule, variables, compiled, second_derivatives=False):
    plain, recomputed = (self._unroll(problem, rule, variables, recompute, compiled,
                                      second_derivatives) for recompute in (False, True))
    # The forward pass is the same ops on the same values, to rounding: the rule runs in a
    # function of its own, where grappler may fuse or order its float ops otherwise (1 ulp seen).
    np.testing.assert_allclose(recomputed[0].numpy(), plain[0].numpy(), rtol=1e-6)
    for a, b in zip(tf.nest.flatten(recomputed[1]), tf.nest.flatten(plain[1])):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    # The meta-gradient: each step's share the same, summed over the steps in another order.
    self.assertLen(recomputed[2], len(variables))
    for a, b in zip(recomputed[2], plain[2]):
      self.assertIsNotNone(a)
      # Entries that cancel to near zero keep an absolute error of the scale of the others'.
      scale = float(tf.reduce_max(tf.abs(b)))
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * scale)
    self.assertGreater(sum(float(tf.reduce_max(tf.abs(g))) for g in plain[2]), 0.0)

  @parameterized.named_parameters(("eager", False), ("compiled", True))
  def test_lstm_on_an_mlp_gives_the_plain_meta_gradient(self, compiled):
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer()  # the paper's 20-20 LSTM with LogAndSign
    rule = optimizer.assignments(_classifier())
    self._check_same(_classifier(), rule, optimizer.trainable_variables, compiled)

  def test_second_derivatives_flow_through_the_recomputed_rule(self):
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer(cw=dict(net="CoordinateWiseDeepLSTM", net_options=dict(
        layers=(4,), scale=1.0)))
    problem = QuarticSum()
    self._check_same(problem, optimizer.assignments(problem), optimizer.trainable_variables,
                     compiled=True, second_derivatives=True)

  def test_an_imitating_rule_with_a_stepped_teacher(self):
    # Nested state: the student's LSTM states, Adam's step count and moments, the running error.
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer()
    problem = _classifier()
    teacher = meta.NetAssignments({"adam": networks.factory("Adam", {"learning_rate": 0.01})},
                                  None, problem.param_names)
    rule = meta.ImitatingRule(optimizer.assignments(problem), teacher)
    self._check_same(problem, rule, optimizer.trainable_variables, compiled=True)

  def test_meta_trainer_with_recompute_takes_the_same_steps(self):
    tf.random.set_seed(0)
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    start = [v.numpy() for v in optimizer.trainable_variables]
    runs = {}
    for recompute in (False, True):
      for variable, value in zip(optimizer.trainable_variables, start):
        variable.assign(value)
      trainer = optimizer.meta_minimize(problem, 5, recompute=recompute, jit_compile=False)
      trainer.reset(seeds_lib.make_seed(0))
      losses = [trainer.train_unroll(seeds_lib.make_seed(0, i)).losses.numpy() for i in range(3)]
      runs[recompute] = losses, [v.numpy() for v in optimizer.trainable_variables]
      self.assertEqual(trainer.trace_counts["local_train"], 1)
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5)
    for a, b in zip(runs[True][1], runs[False][1]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class CarryAndResetTest(parameterized.TestCase):

  def _evaluator_trainer(self, length):
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    return optimizer, problem, optimizer.meta_minimize(problem, length, jit_compile=False)

  def test_two_carried_unrolls_equal_one_unroll_of_twice_the_length(self):
    optimizer, problem, short = self._evaluator_trainer(5)
    long = optimizer.meta_minimize(problem, 10, jit_compile=False)
    short.reset(seeds_lib.make_seed(7))
    long.reset(seeds_lib.make_seed(7))
    first = short.eval_unroll(seeds_lib.make_seed(1)).losses.numpy()
    second = short.eval_unroll(seeds_lib.make_seed(2)).losses.numpy()
    both = long.eval_unroll(seeds_lib.make_seed(3)).losses.numpy()
    # The quadratic has no data, so minibatch seeds do not matter; x_5 is carried over.
    np.testing.assert_allclose(np.concatenate([first[:5], second]), both, rtol=1e-5)
    for a, b in zip(tf.nest.flatten(short.state), tf.nest.flatten(long.state)):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-8)

  def test_reset_draws_a_new_instance_and_zeroes_the_state(self):
    _, problem, trainer = self._evaluator_trainer(5)
    trainer.reset(seeds_lib.make_seed(3))
    trainer.eval_unroll(seeds_lib.make_seed(4))
    params, constants = problem.init(seeds_lib.make_seed(3))
    self.assertFalse(np.allclose(trainer.state.params["x"], params["x"]))
    trainer.reset(seeds_lib.make_seed(3))
    np.testing.assert_array_equal(trainer.state.params["x"], params["x"])
    np.testing.assert_array_equal(trainer.state.constants["w"], constants["w"])
    for tensor in tf.nest.flatten(trainer.state.net_state):
      self.assertEqual(float(tf.reduce_max(tf.abs(tensor))), 0.0)
    trainer.reset(seeds_lib.make_seed(5))
    self.assertFalse(np.allclose(trainer.state.constants["w"], constants["w"]))

  def test_restart_starts_the_named_instances_as_reset_would_and_leaves_the_others(self):
    problem, config, _ = configs.get_config("quadratic")
    trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 5, jit_compile=False,
                                                        num_instances=3)
    trainer.reset(seeds_lib.make_seed(3))
    trainer.eval_unroll(seeds_lib.make_seed(4))
    before = trainer.states
    trainer.restart(seeds_lib.make_seed(8), [2, 0])
    # Instance i of reset(seed) is problem.init(instance_seed(seed, i)) with a zero rule state.
    for i in (0, 2):
      params, constants = problem.init(seeds_lib.instance_seed(seeds_lib.make_seed(8), i))
      np.testing.assert_array_equal(trainer.states[i].params["x"], params["x"])
      np.testing.assert_array_equal(trainer.states[i].constants["w"], constants["w"])
      for tensor in tf.nest.flatten(trainer.states[i].net_state):
        self.assertEqual(float(tf.reduce_max(tf.abs(tensor))), 0.0)
    for a, b in zip(tf.nest.flatten(trainer.states[1]), tf.nest.flatten(before[1])):
      np.testing.assert_array_equal(a, b)
    with self.assertRaisesRegex(ValueError, r"instances=\[3\] must be indices below"):
      trainer.restart(seeds_lib.make_seed(8), [3])

  def test_compiled_functions_trace_once(self):
    _, _, trainer = self._evaluator_trainer(5)
    for epoch in range(2):
      trainer.reset(seeds_lib.make_seed(epoch))
      for unroll in range(3):
        trainer.train_unroll(seeds_lib.make_seed(epoch, unroll))
        trainer.eval_unroll(seeds_lib.make_seed(epoch, unroll))
    self.assertEqual(trainer.trace_counts, {"reset": 1, "train": 1, "eval": 1, "local_train": 1,
                                            "local_eval": 1})

  def test_several_trainers_raise_no_retracing_warning(self):
    # TF counts traces by code object over its last 10 calls: trainers whose functions shared one
    # would be reported as one function retracing (bench/run.py's second trainer was).
    def run(trainer, epochs):
      for epoch in range(epochs):
        trainer.reset(seeds_lib.make_seed(epoch))
        trainer.train_unroll(seeds_lib.make_seed(epoch, 1))
        trainer.eval_unroll(seeds_lib.make_seed(epoch, 2))

    run(self._evaluator_trainer(5)[2], 10)  # flushes traces earlier tests left in TF's window
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
      for _ in range(2):
        run(self._evaluator_trainer(5)[2], 3)
    finally:
      tf.get_logger().removeHandler(handler)
    self.assertEqual([m for m in messages if "retracing" in m], [])

  def test_compiled_unroll_equals_eager_unroll(self):
    optimizer, problem, trainer = self._evaluator_trainer(4)
    trainer.reset(seeds_lib.make_seed(1))
    start = trainer.state
    compiled = trainer.eval_unroll(seeds_lib.make_seed(2)).losses.numpy()
    eager, _ = unroll_lib.unroll(problem, trainer.rule, start,
                                 problem.sample_batches(seeds_lib.make_seed(2), 5))
    np.testing.assert_allclose(compiled, eager.numpy(), rtol=1e-5)


class NetAssignmentsTest(parameterized.TestCase):

  def test_simple_multi_gives_x1_to_adam(self):
    problem, config, assignments = configs.get_config("simple-multi")
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(problem, 5, net_assignments=assignments, jit_compile=False)
    trainer.reset(seeds_lib.make_seed(0))
    trainer.eval_unroll(seeds_lib.make_seed(1))
    # x_0's net is zero-initialized: x_0 stays 1. x_1 follows Adam(0.1) on x^2, in NumPy:
    x, m, v = 1.0, 0.0, 0.0
    for t in range(1, 6):
      g = 2 * x
      m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
      x -= 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    self.assertEqual(float(trainer.state.params["x_0"]), 1.0)
    self.assertAlmostEqual(float(trainer.state.params["x_1"]), x, places=5)

  def test_concatenated_call_equals_one_call_per_parameter(self):
    net = networks.CoordinateWiseDeepLSTM(layers=(6, 6), preprocess_name="LogAndSign",
                                          preprocess_options={"k": 5},
                                          initializer={"linear": {"w": "random_normal"}})
    rule = meta.NetAssignments({"cw": net}, None, ["a", "b"])
    rng = np.random.default_rng(0)
    gradients = {"a": tf.constant(rng.normal(size=[3, 4]), tf.float32),
                 "b": tf.constant(rng.normal(size=[5]), tf.float32)}
    state = rule.initial_state(gradients)
    separate = {n: net.initial_state_for_inputs(g) for n, g in gradients.items()}
    for _ in range(3):
      updates, state = rule(gradients, state)
      for name, g in gradients.items():
        update, separate[name] = net(g, separate[name])
        np.testing.assert_allclose(updates[name].numpy(), update.numpy(), rtol=1e-6, atol=1e-8)

  @parameterized.named_parameters(
      ("two_nets_no_assignments", None, "exactly one net"),
      ("unknown_net", [("cw", ["x_0"]), ("sgd", ["x_1"])], "not among"),
      ("unknown_param", [("cw", ["x_0", "x_9"]), ("adam", ["x_1"])], "does not have"),
      ("twice", [("cw", ["x_0", "x_1"]), ("adam", ["x_1"])], "more than one"),
      ("missing", [("cw", ["x_0"])], "without a net"))
  def test_bad_assignments_are_refused(self, assignments, message):
    _, config, _ = configs.get_config("simple-multi")
    optimizer = meta.MetaOptimizer(**config)
    with pytest.raises(ValueError, match=message):
      optimizer.assignments(problems.simple_multi_optimizer(), assignments)

  def test_bad_trainer_arguments_are_refused(self):
    optimizer = meta.MetaOptimizer(net=SIMPLE_NET)
    with pytest.raises(ValueError, match="unroll_length"):
      optimizer.meta_minimize(problems.simple(), 0)
    with pytest.raises(ValueError, match="learning_rate"):
      optimizer.meta_minimize(problems.simple(), 5, learning_rate=-1.0)


class TrainingTest(parameterized.TestCase):

  def test_simple_converges_within_the_reference_budget(self):
    # train.py's defaults: 100 steps per epoch, unroll 20, meta learning rate 0.001; the reference
    # allows 10,000 epochs. The learned rule must drive x^2 below 1e-5.
    problem, config, _ = configs.get_config("simple")
    trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 20, learning_rate=0.001,
                                                         jit_compile=False)
    for epoch in range(10000):
      trainer.reset(seeds_lib.make_seed(0, epoch))
      for unroll in range(5):
        result = trainer.train_unroll(seeds_lib.make_seed(0, epoch, unroll))
      if float(result.final_loss) < 1e-5:
        break
    self.assertLess(float(result.final_loss), 1e-5)

  def test_short_quadratic_training_beats_tuned_sgd_on_unseen_instances(self):
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(problem, 20, learning_rate=0.01, jit_compile=False)
    seeds = seeds_lib.epoch_seeds(0, 5, purpose=3)
    untrained = evaluation.Evaluator(problem, config, jit_compile=False)
    for mine, theirs in zip(untrained.meta_optimizer.trainable_variables,
                            optimizer.trainable_variables):
      mine.assign(theirs)
    before = untrained.run(seeds, 100)[:, -1].mean()
    for epoch in range(60):
      trainer.reset(seeds_lib.make_seed(0, 0, epoch))
      for unroll in range(5):
        trainer.train_unroll(seeds_lib.make_seed(0, 0, epoch, unroll + 1))
    tmp = self.create_tempdir().full_path
    optimizer.save(tmp)
    _, trained_config, _ = configs.get_config("quadratic", path=tmp)
    after = evaluation.Evaluator(problem, trained_config, jit_compile=False).run(seeds, 100)
    best_sgd = min(
        evaluation.Evaluator(problem, evaluation.baseline_config("sgd", rate),
                             jit_compile=False).run(seeds, 100)[:, -1].mean()
        for rate in (0.01, 0.03, 0.1, 0.3))
    self.assertLess(after[:, -1].mean(), before)
    self.assertLess(after[:, -1].mean(), best_sgd)


class SaveTest(parameterized.TestCase):

  def test_saved_optimizer_reproduces_updates_in_a_fresh_process(self):
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(problem, 5, learning_rate=0.01, jit_compile=False)
    trainer.reset(seeds_lib.make_seed(0))
    trainer.train_unroll(seeds_lib.make_seed(1))  # weights now differ from any fresh init
    tmp = self.create_tempdir().full_path
    optimizer.save(tmp)
    trainer.reset(seeds_lib.make_seed(9))
    want = trainer.eval_unroll(seeds_lib.make_seed(9, 1)).losses.numpy()
    script = (
        "import sys, numpy as np\n"
        "from learning_to_learn import configs, meta, seeds as seeds_lib\n"
        "problem, config, _ = configs.get_config('quadratic', path=sys.argv[1])\n"
        "trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 5, jit_compile=False)\n"
        "trainer.reset(seeds_lib.make_seed(9))\n"
        "np.save(sys.argv[2], trainer.eval_unroll(seeds_lib.make_seed(9, 1)).losses.numpy())\n")
    out = os.path.join(tmp, "losses.npy")
    # The fresh process sees the devices this one does: the same kernels give the same numbers.
    run_python("-c", script, tmp, out, check=True, env=environment(CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES")))
    np.testing.assert_array_equal(np.load(out), want)


class ClipTest(parameterized.TestCase):

  def test_meta_gradient_is_clipped_to_the_global_norm(self):
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(problem, 5, clip_meta_gradient=1e-3, jit_compile=False)
    trainer.reset(seeds_lib.make_seed(0))
    result, _, gradients = trainer._train_fn(trainer.states, seeds_lib.make_seed(1))
    self.assertGreater(float(result.meta_gradient_norm), 1e-3)  # the norm before clipping
    self.assertAlmostEqual(float(tf.linalg.global_norm(gradients)), 1e-3, places=6)
    with pytest.raises(ValueError, match="clip_meta_gradient"):
      optimizer.meta_minimize(problem, 5, clip_meta_gradient=0.0)


class LogObjectiveTest(parameterized.TestCase):

  def test_hand_computed_values(self):
    losses = tf.constant([2.0, 0.5, 1.0])
    self.assertAlmostEqual(float(meta.meta_objective(losses, "sum")), 3.5, places=6)
    self.assertAlmostEqual(float(meta.meta_objective(losses, "log")), np.log(2 * 0.5 * 1),
                           places=6)
    # Weights 1/3, 2/3, 3/3.
    self.assertAlmostEqual(float(meta.meta_objective(losses, "late")), 2 / 3 + 1 / 3 + 1,
                           places=6)
    with self.assertRaisesRegex(ValueError, "objective"):
      meta.meta_objective(losses, "mean")

  @parameterized.parameters("sum", "log")
  def test_trainer_takes_adams_first_step_on_the_objective(self, objective):
    """Adam's first step is -rate * g / (|g| + eps): its sign is the objective gradient's."""
    problem, config, _ = configs.get_config("quadratic")
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer(**config)
    rule = optimizer.assignments(problem)
    state = unroll_lib.initial_state(problem, rule, seeds_lib.make_seed(0))
    batches = problem.sample_batches(seeds_lib.make_seed(1), 6)
    with tf.GradientTape() as tape:
      losses, _ = unroll_lib.unroll(problem, rule, state, batches)
      value = meta.meta_objective(losses, objective)
    want = tape.gradient(value, optimizer.trainable_variables)
    trainer = optimizer.meta_minimize(problem, 5, learning_rate=1e-3, objective=objective,
                                      jit_compile=False)
    trainer.reset(seeds_lib.make_seed(0))
    before = [v.numpy() for v in optimizer.trainable_variables]
    trainer.train_unroll(seeds_lib.make_seed(1))
    for b, v, g in zip(before, optimizer.trainable_variables, want):
      g = g.numpy()
      # Adam's epsilon shrinks the steps of tiny entries, and float rounding may flip their sign.
      big = np.abs(g) > 1e-3 * np.abs(g).max()
      self.assertGreater(big.mean(), 0.3)
      np.testing.assert_allclose((v.numpy() - b)[big], -1e-3 * np.sign(g[big]), rtol=2e-2)

  def test_elementwise_clip_bounds_every_entry(self):
    problem, config, _ = configs.get_config("quadratic")
    optimizer = meta.MetaOptimizer(**config)
    trainer = optimizer.meta_minimize(problem, 5, clip_meta_gradient_value=1e-4,
                                      jit_compile=False)
    trainer.reset(seeds_lib.make_seed(0))
    result, _, gradients = trainer._train_fn(trainer.states, seeds_lib.make_seed(1))
    largest = max(float(tf.reduce_max(tf.abs(g))) for g in gradients)
    self.assertAlmostEqual(largest, 1e-4, places=9)  # some entry was clipped to the bound
    self.assertGreater(float(result.meta_gradient_norm), 1e-3)  # the norm before clipping
    with self.assertRaisesRegex(ValueError, "clip_meta_gradient_value"):
      optimizer.meta_minimize(problem, 5, clip_meta_gradient_value=-1.0)


class ImitationTest(parameterized.TestCase):

  def test_error_of_sgd_imitating_sgd_is_the_closed_form(self):
    """Student rate a, teacher rate b: each step's relative error is ((a - b) / b)^2."""
    problem, _, _ = configs.get_config("quadratic")
    rule = lambda rate: meta.NetAssignments({"sgd": baselines.Sgd(rate)}, None,
                                            problem.param_names)
    imitating = meta.ImitatingRule(rule(0.3), rule(0.1))
    state = unroll_lib.initial_state(problem, imitating, seeds_lib.make_seed(0))
    batches = problem.sample_batches(seeds_lib.make_seed(1), 6)
    (result,), final = meta._unroll_results(problem, imitating, state, batches, False)
    self.assertAlmostEqual(float(result.imitation), 5 * ((0.3 - 0.1) / 0.1) ** 2, places=3)
    # The student moves the optimizee: the losses are those of SGD at rate 0.3 alone.
    plain = unroll_lib.initial_state(problem, rule(0.3), seeds_lib.make_seed(0))
    losses, _ = unroll_lib.unroll(problem, rule(0.3), plain, batches)
    np.testing.assert_allclose(result.losses.numpy(), losses.numpy(), rtol=1e-6)

  def test_imitation_alone_brings_the_lstm_towards_its_teacher(self):
    problem, config, _ = configs.get_config("quadratic", settings="paper")
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer(**config)
    teacher = {"adam": {"net": "Adam", "net_options": {"learning_rate": 0.1}}}
    trainer = optimizer.meta_minimize(problem, 10, learning_rate=0.01, teacher=teacher,
                                      jit_compile=False)
    trainer.objective_weight.assign(0.0)
    errors = []
    for epoch in range(40):
      trainer.reset(seeds_lib.make_seed(0, epoch))
      errors.append(float(trainer.train_unroll(seeds_lib.make_seed(1, epoch)).imitation))
    # Relative error summed over 10 steps: from about 10 (a fresh net moves little) to far less.
    self.assertGreater(np.mean(errors[:5]), 2 * np.mean(errors[-5:]))
