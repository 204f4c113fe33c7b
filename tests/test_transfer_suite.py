"""Tests of the held-out suite: its models, their data, the shared start and batches, the verdict."""

import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from learning_to_learn import task_family
from learning_to_learn import transfer_suite as suite

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data")


def dense(n_in, n_out):
  return n_in * n_out + n_out


def conv3x3(c_in, c_out):
  return 9 * c_in * c_out + c_out


# Parameter counts by formula from each architecture as its description states it.
EXPECTED_PARAMS = {
    "mnist-sigmoid-512": dense(784, 512) + dense(512, 10),
    "fmnist-relu-4x128": dense(784, 128) + 3 * dense(128, 128) + dense(128, 10),
    "mnist-relu-128-64": dense(784, 128) + dense(128, 64) + dense(64, 10),
    # same padding: 28 -> pool 14 -> pool 7.
    "mnist-conv-16-32": conv3x3(1, 16) + conv3x3(16, 32) + dense(7 * 7 * 32, 10),
    # valid padding: 32 -> 30 -> pool 15 -> 13 -> pool 6.
    "cifar-conv-16-32": conv3x3(3, 16) + conv3x3(16, 32) + dense(6 * 6 * 32, 32) + dense(32, 10),
    "regression-tanh": dense(64, 96) + dense(96, 96) + dense(96, 2),
    "mnist-autoencoder": dense(784, 64) + dense(64, 784),
    # Keras's GRU (reset_after): three gates, each input and recurrent kernels and two biases.
    "sequences-gru": 32 * 16 + 3 * (16 * 32 + 32 * 32 + 2 * 32) + dense(32, 4),
}


def signature(model):
  """What a Keras model is made of: each layer's class, width or channels, and activation."""
  layers = []
  for layer in model.layers:
    config = layer.get_config()
    layers.append((type(layer).__name__, config.get("units", config.get("filters")),
                   config.get("activation"), config.get("padding")))
  return tuple(model.input_shape[1:]), tuple(layers)


def family_signatures():
  specs = (task_family.sample_specs(task_family.NUM_TRAINING_TASKS, task_family.TRAINING_SEED)
           + task_family.sample_specs(task_family.NUM_VALIDATION_TASKS,
                                      task_family.VALIDATION_SEED))
  shapes = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
  found = set()
  for spec in specs:
    if spec.dataset in shapes:
      shape, outputs = shapes[spec.dataset], 10
    else:  # the teacher's input size, as the family draws it
      shape = tuple(task_family._synthetic_data(spec, "valid")[0].shape[1:])
      outputs = 1 if spec.dataset == "regression" else 4
    found.add(signature(task_family.build_model(spec, shape, outputs)))
  return found


class ModelsTest(parameterized.TestCase):

  @parameterized.named_parameters((m.name, m) for m in suite.MODELS)
  def test_builds_on_its_data_with_the_parameters_its_architecture_implies(self, model):
    x, y, _ = suite.load_data(model, DATA_DIR, limit=8)
    keras_model = model.build()
    outputs = keras_model(x)
    self.assertEqual(keras_model.count_params(), EXPECTED_PARAMS[model.name])
    loss = float(suite.loss_function(model)(y, outputs))
    self.assertTrue(math.isfinite(loss))
    if model.target == "inputs":
      self.assertEqual(outputs.shape, (8, 784))

  def test_no_model_is_one_of_the_family(self):
    family = family_signatures()
    for model in suite.MODELS:
      self.assertNotIn(signature(model.build()), family, model.name)

  def test_data_the_family_does_not_train_on(self):
    family_seeds = {s.seed for s in task_family.sample_specs(24, 0) + task_family.sample_specs(8, 1)}
    self.assertNotIn(suite.REGRESSION_SEED, family_seeds)
    self.assertNotIn(suite.SEQUENCE_SEED, family_seeds)
    for model in suite.MODELS:
      if model.dataset in task_family.IMAGE_SETS:
        self.assertEqual(model.split, "valid", model.name)

  def test_sequence_labels(self):
    # Classes by hand: token mod 4; 0, 4 are class 0. A tie (two of class 1, two of class 2)
    # goes to the lower class.
    tokens = np.array([[0, 4, 1, 2], [1, 5, 2, 6]])
    np.testing.assert_array_equal(suite.sequence_labels(tokens), [0, 1])

  def test_batch_order_is_a_permutation_per_pass_and_fixed_by_the_seed(self):
    order = suite.batch_order(10, 4, 5, seed=3)  # 20 indices: two passes of 10
    self.assertEqual(order.shape, (5, 4))
    np.testing.assert_array_equal(np.sort(order.ravel()[:10]), np.arange(10))
    np.testing.assert_array_equal(order, suite.batch_order(10, 4, 5, seed=3))
    self.assertFalse(np.array_equal(order, suite.batch_order(10, 4, 5, seed=4)))


class SharedStartTest(absltest.TestCase):

  def test_two_optimizers_meet_the_same_weights_and_batches(self):
    model = suite.BY_NAME["regression-tanh"]
    x, y, _ = suite.load_data(model)
    weights = suite.initial_weights(model, 3)
    still = suite.train(model, keras.optimizers.SGD(learning_rate=0.0), weights, (x, y), 2, 3)
    moving = suite.train(model, keras.optimizers.Adam(learning_rate=1e-2), weights, (x, y), 2, 3)
    self.assertEqual(still.initial_loss, moving.initial_loss)
    self.assertEqual(still.losses[0], moving.losses[0])  # before any update: same batch
    self.assertEqual(still.final_loss, still.initial_loss)  # rate 0 leaves the weights
    self.assertNotEqual(moving.final_loss, moving.initial_loss)
    # The second batch is the seed's second row of indices, evaluated here independently.
    keras_model = model.build()
    keras_model.set_weights(weights)
    rows = suite.batch_order(len(x), model.batch_size, 2, 3)[1]
    expected = float(keras.losses.MeanSquaredError()(y[rows], keras_model(x[rows])))
    np.testing.assert_allclose(still.losses[1], expected, rtol=1e-6)


class SummaryTest(absltest.TestCase):
  """The verdict on a hand-made table of final losses (two seeds), worked out by hand."""

  INITIAL = [2.0, 2.2]  # mean 2.1: a config stalls above 0.9 x 2.1 = 1.89

  def finals(self, learned):
    return {"adam@0.001": [1.0, 1.2], "adam@0.01": [0.5, 0.7], "adam@0.1": [math.inf, 0.1],
            "sgdm@0.1": [0.8, 0.8], "sgdm@1": [3.0, 3.0], "mnist": learned}

  def test_tuned_rates_ratios_and_flags(self):
    s = suite.summarize(self.finals([0.4, 0.4]), self.INITIAL, ["mnist"])
    self.assertEqual(s["tuned_adam"], "adam@0.01")  # adam@0.1 diverged: its mean is inf
    self.assertEqual(s["tuned_sgdm"], "sgdm@0.1")
    self.assertEqual(s["adam_default"], "adam@0.001")
    self.assertAlmostEqual(s["initial_loss"], 2.1)
    self.assertAlmostEqual(s["configs"]["mnist"]["ratio_to_tuned_adam"], 0.4 / 0.6)
    self.assertAlmostEqual(s["configs"]["adam@0.001"]["std"], 0.1)
    self.assertTrue(s["configs"]["adam@0.1"]["diverged"])
    self.assertEqual(s["configs"]["adam@0.1"]["mean"], math.inf)
    self.assertTrue(s["configs"]["sgdm@1"]["stalled"])
    self.assertFalse(s["configs"]["mnist"]["stalled"])

  def test_wins_and_done(self):
    summaries = {"a": suite.summarize(self.finals([0.4, 0.4]), self.INITIAL, ["mnist"]),
                 "b": suite.summarize(self.finals([0.9, 0.9]), self.INITIAL, ["mnist"]),
                 "c": suite.summarize(self.finals([1.9, 2.0]), self.INITIAL, ["mnist"])}
    counts = suite.wins(summaries, "mnist")
    # a: below tuned Adam's 0.6 and Adam 1e-3's 1.1; b: below 1.1 only; c: neither, and stalled.
    self.assertEqual(counts, {"models": 3, "below_tuned_adam": 1, "below_adam_default": 2,
                              "diverged": [], "stalled": ["c"]})
    self.assertFalse(suite.done(counts, num_models=3))
    self.assertTrue(suite.done({"models": 8, "below_tuned_adam": 6, "below_adam_default": 8,
                                "diverged": [], "stalled": []}, num_models=8))
    self.assertFalse(suite.done({"models": 8, "below_tuned_adam": 5, "below_adam_default": 8,
                                 "diverged": [], "stalled": []}, num_models=8))
    self.assertFalse(suite.done({"models": 7, "below_tuned_adam": 7, "below_adam_default": 7,
                                 "diverged": [], "stalled": []}, num_models=8))



def _script():
  """scripts/transfer_suite.py as a module (scripts/ is no package)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "transfer_suite.py")
  spec = importlib.util.spec_from_file_location("transfer_suite_script", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class CacheTest(absltest.TestCase):

  def test_runs_of_a_changed_optimizer_file_are_dropped_and_no_others(self):
    from learning_to_learn import optimizer_files  # pylint: disable=g-import-not-at-top
    script = _script()
    tmp = self.create_tempdir().full_path
    learned = os.path.join(tmp, "mine")
    os.makedirs(learned)
    with np.load(os.path.join(optimizer_files.SHIPPED_DIR, "quadratic", "cw.npz")) as f:
      arrays = {key: f[key] for key in f.files}
    np.savez(os.path.join(learned, "cw.npz"), **arrays)
    cache = script.Cache(os.path.join(tmp, "runs"))
    model = list(suite.BY_NAME)[0]
    for key in ("mine,1,0,1000", "adam,0.001,0,1000"):
      cache.runs(model)[f"{key},curve"] = np.zeros(3, np.float32)
      cache.runs(model)[f"{key},scalars"] = np.array([2.3, 0.1, 1e-3, 0.0])
    np.savez(os.path.join(tmp, "runs", f"{model}.npz"), **cache.runs(model))
    script.forget_changed(cache, [learned], [model])  # first seen: its cached runs are kept
    self.assertTrue(cache.has(model, "mine,1,0,1000"))
    script.forget_changed(cache, [learned], [model])  # unchanged: kept
    self.assertTrue(cache.has(model, "mine,1,0,1000"))
    arrays["linear/w"] = arrays["linear/w"] + 1.0
    np.savez(os.path.join(learned, "cw.npz"), **arrays)
    script.forget_changed(cache, [learned], [model])
    reread = script.Cache(os.path.join(tmp, "runs"))  # from the file, as the next run reads it
    self.assertFalse(reread.has(model, "mine,1,0,1000"))
    self.assertTrue(reread.has(model, "adam,0.001,0,1000"))


if __name__ == "__main__":
  absltest.main()
