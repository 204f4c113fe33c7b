"""keras_problems.KerasProblem against the model's own call and GradientTape, and its CLI path."""

import os
import textwrap

from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import evaluation
from learning_to_learn import keras_problems
from learning_to_learn import meta
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import training

from conftest import ROOT, run_cli


def _mlp():
  return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                           keras.layers.Dense(3)])


def _conv():
  return keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, activation="relu"),
                           keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                           keras.layers.Dense(3)])


def _embedding():
  inputs = keras.Input((5,), dtype="int32")
  hidden = keras.layers.Embedding(20, 4)(inputs)
  hidden = keras.layers.GlobalAveragePooling1D()(hidden)
  return keras.Model(inputs, keras.layers.Dense(3, kernel_regularizer="l2")(hidden))


def _batch_norm():
  return keras.Sequential([keras.Input((12,)), keras.layers.Dense(8),
                           keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                           keras.layers.Dense(3)])


def _data(kind, num=64, seed=0):
  rng = np.random.default_rng(seed)
  x = {"mlp": lambda: rng.normal(size=(num, 12)), "conv": lambda: rng.normal(size=(num, 8, 8, 2)),
       "embedding": lambda: rng.integers(0, 20, size=(num, 5)),
       "batch_norm": lambda: rng.normal(size=(num, 12))}[kind]()
  return x.astype(np.float32) if x.dtype == np.float64 else x.astype(np.int32), rng.integers(
      0, 3, size=num)


BUILDERS = {"mlp": _mlp, "conv": _conv, "embedding": _embedding, "batch_norm": _batch_norm}
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class LossAndGradientTest(parameterized.TestCase):
  """The problem's loss and gradients equal the model's own with the same weights and examples."""

  @parameterized.named_parameters(("mlp", "mlp"), ("conv", "conv"), ("embedding", "embedding"),
                                  ("batch_norm", "batch_norm"))
  def test_equal_to_the_model_and_its_tape(self, kind):
    problem = keras_problems.KerasProblem(BUILDERS[kind], _data(kind), LOSS, batch_size=16)
    params, constants = problem.init(seeds_lib.make_seed(7))
    x, y, seeds = problem.sample_batches(seeds_lib.make_seed(8), 1)
    batch = (x[0], y[0], seeds[0])
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = problem.loss(params, constants, batch)
    gradients = tape.gradient(loss, params)
    # The second computation: a model of the same architecture, its variables assigned.
    model = BUILDERS[kind]()
    for variable, name in zip(model.trainable_variables, problem.param_names, strict=True):
      variable.assign(params[name])  # the same architecture: the same order of variables
    with tf.GradientTape() as tape:
      expected = tf.reduce_mean(LOSS(batch[1], model(batch[0], training=True)))
      expected += tf.add_n(model.losses) if model.losses else 0.0
    expected_gradients = tape.gradient(expected, model.trainable_variables)
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)
    for name, gradient in zip(problem.param_names, expected_gradients, strict=True):
      np.testing.assert_allclose(tf.convert_to_tensor(gradients[name]).numpy(),
                                 tf.convert_to_tensor(gradient).numpy(), rtol=1e-4, atol=1e-6)

  def test_minibatches_are_drawn_from_the_data_by_seed(self):
    x, y = _data("mlp")
    problem = keras_problems.KerasProblem(_mlp, (x, y), LOSS, batch_size=8)
    bx, by, _ = problem.sample_batches(seeds_lib.make_seed(1), 3)
    self.assertEqual(bx.shape, (3, 8, 12))
    for row_x, row_y in zip(bx.numpy().reshape(-1, 12), by.numpy().reshape(-1)):
      index = int(np.argmin(np.abs(x - row_x).sum(axis=1)))  # each row is one of the examples
      np.testing.assert_array_equal(x[index], row_x)
      self.assertEqual(y[index], row_y)
    again = problem.sample_batches(seeds_lib.make_seed(1), 3)[0]
    np.testing.assert_array_equal(bx.numpy(), again.numpy())

  def test_a_tf_data_dataset_gives_the_same_examples(self):
    x, y = _data("mlp")
    for dataset in (tf.data.Dataset.from_tensor_slices((x, y)),
                    tf.data.Dataset.from_tensor_slices((x, y)).batch(10)):
      problem = keras_problems.KerasProblem(_mlp, dataset, LOSS, batch_size=8)
      from_arrays = keras_problems.KerasProblem(_mlp, (x, y), LOSS, batch_size=8)
      self.assertEqual(problem.data_digest, from_arrays.data_digest)


class InitTest(parameterized.TestCase):

  def test_each_seed_draws_fresh_weights_from_the_layers_initializers(self):
    problem = keras_problems.KerasProblem(_mlp, _data("mlp", num=8), LOSS)
    kernel = problem.param_names[0]
    first = tf.function(problem.init)(seeds_lib.make_seed(1))[0]
    again = problem.init(seeds_lib.make_seed(1))[0]
    other = problem.init(seeds_lib.make_seed(2))[0]
    np.testing.assert_array_equal(first[kernel].numpy(), again[kernel].numpy())
    self.assertGreater(float(tf.reduce_max(tf.abs(first[kernel] - other[kernel]))), 0.1)
    # Glorot uniform (Keras's Dense default), fan_in 12 and fan_out 16: U(-l, l), l^2 = 6 / 28.
    limit = np.sqrt(6.0 / 28.0)
    draws = np.concatenate([problem.init(seeds_lib.make_seed(s))[0][kernel].numpy().ravel()
                            for s in range(40)])
    self.assertLessEqual(np.abs(draws).max(), limit)
    self.assertAlmostEqual(draws.var(), limit ** 2 / 3.0, delta=0.05 * limit ** 2 / 3.0)
    np.testing.assert_array_equal(first[problem.param_names[1]].numpy(), np.zeros(16))  # zeros

  def test_dropout_masks_follow_the_step_seed(self):
    def model():
      return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16),
                               keras.layers.Dropout(0.5), keras.layers.Dense(3)])
    problem = keras_problems.KerasProblem(model, _data("mlp"), LOSS, batch_size=16)
    params, constants = problem.init(seeds_lib.make_seed(1))
    x, y, seeds = problem.sample_batches(seeds_lib.make_seed(2), 2)
    losses = [float(problem.loss(params, constants, (x[0], y[0], seeds[i]))) for i in (0, 0, 1)]
    self.assertEqual(losses[0], losses[1])
    self.assertNotEqual(losses[0], losses[2])

  def test_other_non_trainable_state_is_refused(self):
    class Counter(keras.layers.Layer):
      def build(self, shape):
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False)

      def call(self, inputs):
        self.count.assign_add(1.0)
        return inputs

    def model():
      return keras.Sequential([keras.Input((12,)), Counter(), keras.layers.Dense(3)])
    with self.assertRaisesRegex(ValueError, r"non-trainable variable .*make it trainable"):
      keras_problems.KerasProblem(model, _data("mlp"), LOSS)

  def test_bad_data_and_losses_are_one_line_errors(self):
    with self.assertRaisesRegex(ValueError, "same positive number of examples"):
      keras_problems.KerasProblem(_mlp, (np.zeros((4, 12), np.float32), np.zeros(5)), LOSS)
    with self.assertRaisesRegex(ValueError, "not a Keras loss name"):
      keras_problems.KerasProblem(_mlp, _data("mlp"), "no_such_loss")
    with self.assertRaisesRegex(ValueError, "not a keras.Model"):
      keras_problems.KerasProblem(lambda: 3, _data("mlp"), LOSS)


class AssignNetsTest(parameterized.TestCase):

  def test_kernels_and_biases_get_their_own_networks(self):
    problem = keras_problems.KerasProblem(_mlp, _data("mlp"), LOSS)
    assignments = dict(keras_problems.assign_nets(problem, {"kernels": "*kernel",
                                                            "biases": "*bias"}))
    self.assertEqual(assignments["kernels"], [problem.param_names[0], problem.param_names[2]])
    self.assertEqual(assignments["biases"], [problem.param_names[1], problem.param_names[3]])
    with self.assertRaisesRegex(ValueError, "matches none of the patterns"):
      keras_problems.assign_nets(problem, {"kernels": "*kernel"})


def test_meta_training_on_a_keras_problem_lowers_its_loss():
  """A few dozen epochs of meta_train on a Keras MLP: the evaluation loss ends below its start."""
  problem = keras_problems.KerasProblem(_mlp, _data("mlp", num=256), LOSS, batch_size=32)
  settings = training.Settings(num_epochs=30, num_steps=20, unroll_length=10, evaluation_period=30,
                               evaluation_epochs=4, log_period=30, learning_rate=0.01,
                               objective="log")
  net_config = training.default_net_config()
  before = evaluation.Evaluator(problem, net_config, unroll_length=10)
  seeds = seeds_lib.epoch_seeds(0, 4, seeds_lib.EVALUATION)
  tf.random.set_seed(settings.seed)  # meta_train's networks start from this seed's draw
  start = meta.MetaOptimizer(**net_config)
  for source, copy in zip(start.trainable_variables, before.meta_optimizer.trainable_variables):
    copy.assign(source)
  loss_before = float(np.mean(before.run(seeds, 20)[:, 20]))
  result = training.meta_train(problem, settings, net_config=net_config, callbacks=[])
  assert result.epoch == 30 and result.stopped is None
  assert result.best_loss < loss_before, (result.best_loss, loss_before)


USER_FILE = """
    import keras
    import numpy as np
    from learning_to_learn import keras_problems

    def build(split="train"):
      rng = np.random.default_rng(0 if split == "train" else 1)
      x = rng.normal(size=(256, 6)).astype("float32")
      y = (x[:, :1] - 2 * x[:, 1:2]).astype("float32")
      def model():
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                                 keras.layers.Dense(1)])
      return keras_problems.KerasProblem(model, (x, y), "mse", batch_size=32)
"""


def _cli(script, *args, cwd):
  return run_cli(os.path.join(ROOT, script), *args, cwd=str(cwd))


@pytest.mark.parametrize("spec", ["user_problems.py:build"])
def test_train_and_compare_on_a_users_file(tmp_path, spec):
  (tmp_path / "user_problems.py").write_text(textwrap.dedent(USER_FILE))
  done = _cli("train.py", f"--problem={spec}", "--num_epochs=4", "--num_steps=20",
              "--unroll_length=10", "--evaluation_period=2", "--evaluation_epochs=2",
              "--evaluation_split=valid", "--save_path=run", cwd=tmp_path)
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "run" / "cw.npz").is_file()
  done = _cli("evaluate.py", f"--problem={spec}", "--path=run", "--compare", "--num_epochs=2",
              "--num_steps=20", "--num_tuning_epochs=1", "--baselines=adam", "--split=valid",
              "--output_dir=compare", cwd=tmp_path)
  assert done.returncode == 0, done.stderr
  assert "| L2L |" in done.stdout and "| adam |" in done.stdout.lower()
  done = _cli("train.py", "--problem=user_problems.py:nothing", "--num_epochs=1", cwd=tmp_path)
  assert done.returncode == 2
  assert "defines no function nothing; it defines build" in done.stderr.strip().splitlines()[-1]
