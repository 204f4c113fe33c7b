"""The Keras optimizer against the library's own unroll, a closed form, and its dense twin.

Sources: `unroll.unroll` with the same network (the MNIST sequence), the closed form scale × bias
of a zero output layer, a hand-built sign-descent LSTM (fit must lower the loss), an unsaved copy
of the model (save/load), and the dense gradient (IndexedSlices).
"""

import json
import os
from unittest import mock
import zipfile

from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

import problems
from learning_to_learn import baselines
from learning_to_learn import keras as l2l_keras
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import optimizer_files
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll

from conftest import keras_train_step, random_lstm_weights, start_python

K = 5.0
SCALE = 0.01

# A 2-device MirroredStrategy must configure devices before TensorFlow starts, so it runs in its
# own interpreter. Started when the module loads: its TensorFlow start-up then overlaps the
# other tests instead of adding to the suite's time.
_MIRRORED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from learning_to_learn import keras as l2l_keras
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.normal(size=[64, 4]).astype(np.float32)
y = x @ rng.normal(size=[4, 1]).astype(np.float32)
with strategy.scope():
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
  optimizer = l2l_keras.LearnedOptimizer(sys.argv[1], learning_rate=10.0)
  model.compile(optimizer=optimizer, loss="mse")
history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0)
in_sync = all(np.array_equal(v.value.values[0].numpy(), v.value.values[1].numpy())
              for v in optimizer.variables)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                  "in_sync": in_sync}))
"""


def lstm_net(**kwargs):
  options = dict(layers=(20, 20), preprocess_name="LogAndSign", preprocess_options={"k": K},
                 scale=SCALE)
  options.update(kwargs)
  return networks.CoordinateWiseDeepLSTM(**options)


def random_net(seed=0, **options):
  """Every weight random, so updates and state depend on all of them; `options` as lstm_net's."""
  weights = random_lstm_weights(seed)
  return lstm_net(initializer=weights, **options)


def sign_descent_net(layers=(20, 20), gain=10.0):
  """An LSTM built by hand to output -scale × sign(g): sign descent with step `scale`.

  Unit 0 of each layer copies its input signal (the LogAndSign sign feature, then the previous
  layer's unit 0) through its candidate; input and output gates are open, the forget gate shut.
  A ±1 signal leaves each layer as ±tanh(1) (to 1e-4), which the output layer divides out.
  """
  weights, size, signal = {}, 2, 1  # LogAndSign features are (log |g|, sign g)
  for i, hidden in enumerate(layers):
    w_gates = np.zeros([size + hidden, 4 * hidden], np.float32)
    b_gates = np.zeros([4 * hidden], np.float32)
    w_gates[signal, hidden] = gain  # gates are (i, j, f, o): column `hidden` is j of unit 0
    b_gates[:hidden] = gain
    b_gates[2 * hidden:3 * hidden] = -gain - 1.0  # lstm_step adds forget_bias = 1
    b_gates[3 * hidden:] = gain
    weights[f"lstm_{i}"] = {"w_gates": w_gates, "b_gates": b_gates}
    size, signal = hidden, 0
  linear_w = np.zeros([size, 1], np.float32)
  linear_w[0, 0] = -1.0 / np.tanh(1.0)
  weights["linear"] = {"w": linear_w, "b": np.zeros([1], np.float32)}
  return lstm_net(layers=layers, initializer=weights)


@pytest.fixture(scope="module", autouse=True)
def mirrored_run(tmp_path_factory):
  """Starts the MirroredStrategy script before the module's first test; yields its process."""
  path = optimizer_files.save(sign_descent_net(), str(tmp_path_factory.mktemp("mirrored") / "cw.npz"))
  process = start_python("-c", _MIRRORED_SCRIPT, path,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  yield process
  if process.poll() is None:
    process.kill()
    process.communicate()


def _write_text(path, text):
  with open(path, "w") as f:
    f.write(text)


def _truncate(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def _copy_into(model, params, num_layers):
  for i in range(num_layers):
    model.layers[i + 1].set_weights([params[f"mlp/linear_{i}/w"].numpy(),
                                     params[f"mlp/linear_{i}/b"].numpy()])


def _weights_of(optimizer):
  return {key: v.numpy() for key, v in optimizer.network_weights.items()}


def _small_model():
  model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                            keras.layers.Dense(1)])
  model.set_weights([np.random.default_rng(i).normal(size=w.shape).astype(np.float32)
                     for i, w in enumerate(model.get_weights())])
  return model


def _regression(seed=0, num_examples=32):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=[num_examples, 5]).astype(np.float32)
  return x, np.sin(x @ rng.normal(size=[5, 1])).astype(np.float32)


class LearnedOptimizerTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.create_tempdir().full_path

  def save(self, net, name="cw.npz"):
    return optimizer_files.save(net, os.path.join(self.tmp, name))

  # AdamNormalized carries preprocessing state of its own, which the Keras optimizer keeps beside
  # the LSTM's. Its features g / (sqrt(v) + eps) are near +-1 however tiny the gradient, so the
  # rounding of tiny gradients moves a few LSTM cells by up to 2e-4 where the losses agree.
  @parameterized.named_parameters(
      ("log_and_sign", {}, 1e-5),
      ("adam_normalized", {"preprocess_name": "AdamNormalized", "preprocess_options": {},
                           "scale": 0.1}, 1e-3))
  def test_mnist_losses_match_the_library_unroll(self, options, state_atol):
    num_steps = 10
    problem = problems.mnist(layers=(20,))
    params, constants = problem.init(seeds_lib.make_seed(1))
    images, labels = problem.sample_batches(seeds_lib.make_seed(2), num_steps + 1)
    net = random_net(**options)
    rule = meta.NetAssignments({"cw": net}, None, problem.param_names)
    state = unroll.UnrollState(params, rule.initial_state(params), constants)
    want, final = unroll.unroll(problem, rule, state, (images, labels))

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(20, activation="sigmoid"),
                              keras.layers.Dense(10)])
    _copy_into(model, params, num_layers=2)
    model.compile(optimizer=l2l_keras.LearnedOptimizer(self.save(net)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    got = [float(model.train_on_batch(images[t], labels[t])) for t in range(num_steps)]
    got.append(float(model.evaluate(images[num_steps], labels[num_steps], verbose=0)))
    # The losses must move, or equal sequences would prove nothing.
    self.assertGreater(np.ptp(want.numpy()), 1e-3)
    # Keras runs the whole update as one op (fused_lstm.learned_step) where it is built: its sums
    # round in another order than TensorFlow's matmul, a few ulps a step, grown over ten steps.
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)
    # The library runs all parameters as one vector, in sorted name order; Keras one per variable.
    optimizer, start = model.optimizer, 0
    for name in sorted(problem.param_names):
      layer = model.layers[int(name.split("/")[1][-1]) + 1]
      variable = layer.kernel if name.endswith("/w") else layer.bias
      size = int(np.prod(variable.shape))
      for got_layer, want_layer in zip(optimizer.lstm_state(variable), final.net_state[0]):
        np.testing.assert_allclose(got_layer.cell.numpy(), want_layer.cell[:, start:start + size],
                                   atol=state_atol, err_msg=name)
      start += size

  def test_zero_output_layer_moves_every_coordinate_by_scale_times_bias(self):
    bias, learning_rate = 0.7, 0.5
    path = self.save(lstm_net(initializer={"linear": {"w": "zeros", "b": [bias]}}))
    optimizer = l2l_keras.LearnedOptimizer(path, learning_rate=learning_rate)
    starts = [np.full(shape, 2.0, np.float32) for shape in ([3], [2, 5], [3, 3, 2, 4])]
    variables = [keras.Variable(start) for start in starts]
    gradients = [tf.random.normal(start.shape) for start in starts]
    optimizer.apply_gradients(zip(gradients, variables))
    for variable, start in zip(variables, starts):
      # Closed form: the LSTM output is multiplied by w = 0, leaving b, times scale and rate.
      np.testing.assert_allclose(variable.numpy() - start, learning_rate * SCALE * bias,
                                 rtol=1e-5)

  @parameterized.named_parameters(("tf_kernels", False), ("xla", True))
  def test_fit_lowers_the_loss_of_a_conv_net(self, jit_compile):
    optimizer = l2l_keras.LearnedOptimizer(self.save(sign_descent_net()), learning_rate=2.0)
    # Built after the optimizer exists: build() sizes the state from whatever model it meets.
    init = keras.initializers.GlorotUniform(seed=0)
    model = keras.Sequential([keras.Input((6, 6, 1)),
                              keras.layers.Conv2D(3, 3, kernel_initializer=init),
                              keras.layers.Flatten(),
                              keras.layers.Dense(1, kernel_initializer=init)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=[64, 6, 6, 1]).astype(np.float32)
    y = np.tanh(x.reshape(64, -1) @ rng.normal(size=[36, 1]) / 6.0).astype(np.float32)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0)
    losses = history.history["loss"]
    self.assertLess(losses[-1], 0.5 * losses[0])
    shapes = [tuple(state[0].hidden.shape) for state in
              map(optimizer.lstm_state, model.trainable_variables)]
    self.assertEqual(shapes, [(20, 27), (20, 3), (20, 48), (20, 1)])

  def test_save_and_load_model_restore_weights_and_state(self):
    path = self.save(random_net())
    model = _small_model()
    model.compile(optimizer=l2l_keras.LearnedOptimizer(path, learning_rate=0.5), loss="mse")
    x, y = _regression()
    for t in range(2):
      model.train_on_batch(x[8 * t:8 * t + 8], y[8 * t:8 * t + 8])
    # Weights unlike the file's, and the file deleted: they can only come from the .keras file.
    for variable in model.optimizer.network_weights.values():
      variable.assign(variable + 0.05 * tf.random.normal(variable.shape))
    saved = [v.numpy() for v in model.optimizer.variables]
    model.save(os.path.join(self.tmp, "m.keras"))
    file_weights = optimizer_files.read_weights(path)
    os.remove(path)
    self.assertFalse(np.array_equal(_weights_of(model.optimizer)["linear/w"],
                                    file_weights["linear"]["w"]))

    loaded = keras.models.load_model(os.path.join(self.tmp, "m.keras"))
    self.assertIsInstance(loaded.optimizer, l2l_keras.LearnedOptimizer)
    self.assertLen(loaded.optimizer.variables, len(saved))
    for want, variable in zip(saved, loaded.optimizer.variables):
      np.testing.assert_array_equal(variable.numpy(), want, err_msg=variable.path)
    self.assertGreater(np.abs(loaded.optimizer.lstm_state(
        loaded.trainable_variables[0])[1].cell.numpy()).max(), 0.0)
    for t in range(2, 4):
      batch = x[8 * t:8 * t + 8], y[8 * t:8 * t + 8]
      self.assertEqual(float(loaded.train_on_batch(*batch)), float(model.train_on_batch(*batch)))

  def test_states_saved_row_major_by_earlier_versions_load_transposed(self):
    # No variable of exactly 20 (= hidden) coordinates: its square state could not be told apart.
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=l2l_keras.LearnedOptimizer(self.save(random_net())), loss="mse")
    x, y = _regression()
    model.train_on_batch(x[:8], y[:8])
    optimizer = model.optimizer
    states = {id(v) for variable in model.trainable_variables
              for layer in optimizer.lstm_state(variable) for v in layer}
    want = [v.numpy() for v in optimizer.variables]
    # What a .keras file of the earlier versions holds: each state as (num_coords, hidden).
    store = {str(i): value.T if id(v) in states else value
             for i, (v, value) in enumerate(zip(optimizer.variables, want))}
    self.assertTrue(any(store[str(i)].shape != w.shape for i, w in enumerate(want)))
    for variable in optimizer.variables:
      variable.assign(tf.zeros_like(variable))
    optimizer.load_own_variables(store)
    for value, variable in zip(want, optimizer.variables):
      np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)

  def test_tf_train_checkpoint_restores_weights_and_state(self):
    path = self.save(random_net())
    model = _small_model()
    optimizer = l2l_keras.LearnedOptimizer(path)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _regression()
    model.train_on_batch(x, y)
    optimizer.network_weights["lstm_1/b_gates"].assign(tf.random.normal([80]))
    prefix = tf.train.Checkpoint(optimizer=optimizer, model=model).save(
        os.path.join(self.tmp, "ckpt"))

    again = _small_model()
    restored = l2l_keras.LearnedOptimizer(path)
    # Restored before build: TF defers the values until build creates the variables.
    status = tf.train.Checkpoint(optimizer=restored, model=again).restore(prefix)
    restored.build(again.trainable_variables)
    status.assert_consumed()
    for want, variable in zip(optimizer.variables, restored.variables):
      np.testing.assert_array_equal(variable.numpy(), want.numpy(), err_msg=variable.path)

  def test_a_step_traced_before_any_call_builds_the_optimizer_with_its_initial_values(self):
    # Keras builds an unbuilt optimizer inside the first traced step (model.fit without a
    # distribution strategy, or a user's tf.function). Its variables are created eagerly there,
    # so a step traced before any call (get_concrete_function, as an export does) builds too:
    # created in the step's graph, their initial values would depend on the step's gradient check
    # and TensorFlow could not lift them out of it (UnliftableError before this was fixed).
    net = random_net()
    model = _small_model()
    optimizer = l2l_keras.LearnedOptimizer(self.save(net))
    step = keras_train_step(model, optimizer, *_regression())
    step.get_concrete_function()
    self.assertTrue(optimizer.built)
    want = {f"{layer}/{field}": value
            for layer, fields in networks.weights(net).items() for field, value in fields.items()}
    got = _weights_of(optimizer)
    self.assertEqual(sorted(got), sorted(want))
    for key, value in want.items():
      np.testing.assert_array_equal(got[key], value, err_msg=key)
    before = [v.numpy() for v in model.trainable_variables]
    for variable in model.trainable_variables:
      for layer in optimizer.lstm_state(variable):
        np.testing.assert_array_equal(layer.hidden.numpy(), 0.0)
        np.testing.assert_array_equal(layer.cell.numpy(), 0.0)
    self.assertTrue(np.isfinite(step().numpy()))
    self.assertTrue(any(np.any(v.numpy() != b) for v, b in zip(model.trainable_variables, before)))

  def test_indexed_slices_give_the_dense_gradient_result(self):
    path = self.save(random_net())
    make = lambda: keras.Sequential([keras.Input((5,), dtype="int32"),
                                     keras.layers.Embedding(12, 3),
                                     keras.layers.GlobalAveragePooling1D(),
                                     keras.layers.Dense(1)])
    sparse_model, dense_model = make(), make()
    dense_model.set_weights(sparse_model.get_weights())
    start = sparse_model.get_weights()[0]
    sparse_opt = l2l_keras.LearnedOptimizer(path)
    dense_opt = l2l_keras.LearnedOptimizer(path)
    rng = np.random.default_rng(3)
    for _ in range(3):
      # Ids below 8 only, with repeats: rows 8-11 never get a gradient, some rows get several.
      tokens = rng.integers(0, 8, size=[6, 5]).astype(np.int32)
      targets = rng.normal(size=[6, 1]).astype(np.float32)
      for model, optimizer, densify in ((sparse_model, sparse_opt, False),
                                        (dense_model, dense_opt, True)):
        with tf.GradientTape() as tape:
          loss = tf.reduce_mean(tf.square(model(tokens) - targets))
        gradients = tape.gradient(loss, model.trainable_variables)
        self.assertIsInstance(gradients[0], tf.IndexedSlices)
        if densify:
          gradients = [tf.convert_to_tensor(g) for g in gradients]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    for got, want in zip(sparse_model.get_weights(), dense_model.get_weights()):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for got, want in zip(sparse_opt.variables, dense_opt.variables):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
    # Rows absent from every batch still moved: zero gradient is not "no update" for an LSTM.
    self.assertGreater(np.abs(sparse_model.get_weights()[0][8:] - start[8:]).min(), 0.0)

  def test_config_round_trip_keeps_the_rule_without_the_file(self):
    path = self.save(random_net())
    optimizer = l2l_keras.LearnedOptimizer(path, learning_rate=0.3, clipnorm=2.0)
    optimizer.build([keras.Variable(np.zeros([4], np.float32))])
    optimizer.network_weights["linear/b"].assign([0.25])
    config = optimizer.get_config()
    json.dumps(config)  # what model.save writes must be JSON
    os.remove(path)
    again = l2l_keras.LearnedOptimizer.from_config(config)
    self.assertEqual(again.get_config(), config)
    self.assertEqual((config["checkpoint"], config["clipnorm"]), (path, 2.0))
    self.assertAlmostEqual(config["learning_rate"], 0.3, places=6)  # a float32 variable
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    self.assertIsInstance(revived, l2l_keras.LearnedOptimizer)
    revived.build([keras.Variable(np.zeros([2], np.float32))])
    self.assertEqual(float(revived.network_weights["linear/b"][0]), 0.25)

  # Each edit makes the config describe another rule than its weights (or none): refused, naming
  # the entry, as a file with the same fault is (optimizer_files.build).
  @parameterized.named_parameters(
      ("fewer_layers_than_weights", lambda net: net["net_options"].update(layers=[20]),
       ["'lstm_1/w_gates'", "layers [20]", "disagree"]),
      ("wider_layers_than_weights", lambda net: net["net_options"].update(layers=[20, 30]),
       ["'lstm_1/b_gates'", "shape (80,)", "expected (120,)"]),
      ("bias_missing", lambda net: net["weights"].pop("linear/b"), ["lack 'linear/b'"]),
      ("weights_a_list", lambda net: net.update(weights=list(net["weights"].values())),
       ["network['weights'] is a list", "expected a dict"]),
      ("weight_a_string", lambda net: net["weights"].update({"linear/w": "w"}),
       ["'linear/w' is a str", "shape (20, 1)"]),
      ("weight_transposed", lambda net: net["weights"].update(
          {"linear/w": np.transpose(net["weights"]["linear/w"]).tolist()}),
       ["'linear/w'", "shape (1, 20), expected (20, 1)"]),
      ("options_a_list", lambda net: net.update(net_options=[20, 20]),
       ["network['net_options'] is a list"]),
  )
  def test_configs_that_disagree_with_their_weights_are_refused(self, edit, words):
    config = l2l_keras.LearnedOptimizer(self.save(random_net())).get_config()
    edit(config["network"])
    with self.assertRaises(ValueError) as raised:
      l2l_keras.LearnedOptimizer.from_config(config)
    message = str(raised.exception)
    for word in words:
      self.assertIn(word, message)
    self.assertIn("get_config wrote", message)  # the fix
    self.assertNotIn("\n", message)

  def test_load_model_refuses_a_saved_config_whose_layers_disagree(self):
    model = _small_model()
    model.compile(optimizer=l2l_keras.LearnedOptimizer(self.save(random_net())), loss="mse")
    model.fit(*_regression(), epochs=1, verbose=0)
    path = os.path.join(self.tmp, "model.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
      files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["compile_config"]["optimizer"]["config"]["network"]["net_options"]["layers"] = [20]
    files["config.json"] = json.dumps(config).encode()
    edited = os.path.join(self.tmp, "edited.keras")
    with zipfile.ZipFile(edited, "w") as archive:
      for name, data in files.items():
        archive.writestr(name, data)
    with self.assertRaisesRegex(ValueError, "'lstm_1/w_gates'.*layers \\[20\\]"):
      keras.models.load_model(edited)
    keras.models.load_model(path)  # the unedited file still loads

  def test_missing_checkpoints_name_the_argument(self):
    os.makedirs(os.path.join(self.tmp, "empty"))
    for checkpoint in ("mnsit", os.path.join(self.tmp, "gone.npz"),
                       os.path.join(self.tmp, "empty")):
      with self.assertRaises(FileNotFoundError) as raised:
        l2l_keras.LearnedOptimizer(checkpoint)
      self.assertIn(f"checkpoint={checkpoint!r}", str(raised.exception))
      self.assertNotIn("\n", str(raised.exception))

  def test_a_two_network_optimizer_names_its_files(self):
    # The shipped `cifar` holds conv.npz and fc.npz; the Keras optimizer runs one network.
    with self.assertRaises(FileNotFoundError) as raised:
      l2l_keras.LearnedOptimizer("cifar")
    message = str(raised.exception)
    self.assertIn("checkpoint='cifar' holds 2 networks", message)
    self.assertIn("(conv.npz, fc.npz)", message)
    self.assertNotIn("\n", message)
    path = os.path.join(optimizer_files.resolve("cifar"), "fc.npz")
    self.assertEqual(l2l_keras.LearnedOptimizer(path).get_config()["checkpoint"], path)

  def test_a_shipped_name_is_the_default(self):
    os.makedirs(os.path.join(self.tmp, "general"))
    self.save(random_net(), os.path.join("general", "cw.npz"))
    with mock.patch.object(optimizer_files, "SHIPPED_DIR", self.tmp):
      optimizer = l2l_keras.LearnedOptimizer()
    self.assertEqual(optimizer.get_config()["checkpoint"], "general")
    np.testing.assert_array_equal(
        optimizer.get_config()["network"]["weights"]["linear/w"],
        optimizer_files.read_weights(os.path.join(self.tmp, "general", "cw.npz"))["linear"]["w"])

  def test_the_shipped_general_is_mnist_normalized_signal_scaled_and_adapted_online(self):
    general, shipped = (optimizer_files.single_net_file(n) for n in ("general", "mnist"))
    options = optimizer_files.read_config(general)["net_options"]
    self.assertEqual((options["scale"], options["scale_adaptation"],
                      options["adaptation_averaging"], options["normalize_output"],
                      options["signal_scaled"]), (0.016, 0.05, 0.97, True, True))
    self.assertNotIn("initial_multiplier", options)
    self.assertNotIn("scale_adaptation", optimizer_files.read_config(shipped)["net_options"])
    self.assertNotIn("normalize_output", optimizer_files.read_config(shipped)["net_options"])
    self.assertEqual(optimizer_files.read_config(shipped)["net_options"]["scale"], 0.1)
    a, b = optimizer_files.read_weights(general), optimizer_files.read_weights(shipped)
    for layer in b:
      for field in b[layer]:
        np.testing.assert_array_equal(a[layer][field], b[layer][field])
    # Its first step on a tensor: the RMS of the update is the scale times the signal factor's
    # first value, 1 - beta1 = 0.1 for a gradient without zeros (the multiplier starts at 1).
    optimizer = l2l_keras.LearnedOptimizer()
    variable = keras.Variable(np.zeros([40], np.float32))
    gradient = np.linspace(-2.0, 2.0, 40, dtype=np.float32)  # no zero among them
    optimizer.apply([tf.constant(gradient)], [variable])
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(variable.numpy()))), 0.016 * 0.1,
                               rtol=1e-4)

  def test_a_directory_of_cw_npz_loads(self):
    self.save(random_net())
    optimizer = l2l_keras.LearnedOptimizer(self.tmp)
    optimizer.build([keras.Variable(np.zeros([2], np.float32))])
    np.testing.assert_array_equal(_weights_of(optimizer)["linear/w"],
                                  optimizer_files.read_weights(os.path.join(self.tmp, "cw.npz"))
                                  ["linear"]["w"])

  @parameterized.named_parameters(
      ("not_npz", lambda path: _write_text(path, "not an optimizer"), "cannot read"),
      ("truncated", lambda path: _truncate(optimizer_files.save(lstm_net(), path)), "cannot read"),
      ("weights_without_config", lambda path: np.savez(path, w=np.zeros(3)), "no network config"),
      ("standard_lstm", lambda path: optimizer_files.save(
          networks.StandardDeepLSTM(output_size=3, layers=(4,)), path), "StandardDeepLSTM"),
      ("adam", lambda path: optimizer_files.save(baselines.Adam(), path), "holds Adam"),
  )
  def test_bad_checkpoints_are_one_line_value_errors(self, write, message):
    path = os.path.join(self.tmp, "bad.npz")
    write(path)
    with self.assertRaises(ValueError) as raised:
      l2l_keras.LearnedOptimizer(path)
    self.assertIn(message, str(raised.exception))
    self.assertIn(f"checkpoint={path!r}", str(raised.exception))
    self.assertNotIn("\n", str(raised.exception))


class NonFiniteTest(parameterized.TestCase):
  """A step whose gradient or update is not finite moves no variable."""

  def _built(self):
    model = _small_model()
    optimizer = l2l_keras.LearnedOptimizer("mnist")
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _regression()
    model.train_on_batch(x[:8], y[:8])  # builds, and gives every state a non-zero value
    return model, optimizer, x, y

  def test_a_nan_gradient_raises_and_moves_nothing(self):
    model, optimizer, x, y = self._built()
    before = [v.numpy() for v in model.trainable_variables + optimizer.variables]
    x = x.copy()
    x[3, 2] = np.nan  # one example: every variable's gradient but the last bias turns NaN
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "a gradient holds NaN"):
      model.train_on_batch(x[:8], y[:8])
    after = [v.numpy() for v in model.trainable_variables + optimizer.variables]
    for want, got in zip(before, after):
      np.testing.assert_array_equal(got, want)

  def test_a_non_finite_update_is_refused_for_its_variable(self):
    model, optimizer, _, _ = self._built()
    variable = model.trainable_variables[0]
    before = variable.numpy()
    state = [v.numpy() for layer in optimizer.lstm_state(variable) for v in layer]
    gradient = tf.fill(variable.shape, np.inf)  # past apply's check: straight to the rule
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "turned NaN or infinite"):
      optimizer.update_step(gradient, variable, optimizer.learning_rate)
    np.testing.assert_array_equal(variable.numpy(), before)
    for want, got in zip(state, [v.numpy() for layer in optimizer.lstm_state(variable)
                                 for v in layer]):
      np.testing.assert_array_equal(got, want)

  def test_an_update_that_overflows_from_finite_gradients_leaves_the_variables(self):
    model, optimizer, x, y = self._built()
    weights = optimizer.network_weights
    weights["linear/w"].assign(np.full(weights["linear/w"].shape, 3e38, np.float32))
    weights["linear/b"].assign(np.full(weights["linear/b"].shape, 3e38, np.float32))
    before = [v.numpy() for v in model.trainable_variables]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "turned NaN or infinite"):
      model.train_on_batch(x[:8], y[:8])
    for want, got in zip(before, [v.numpy() for v in model.trainable_variables]):
      np.testing.assert_array_equal(got, want)

  def test_under_xla_a_non_finite_update_is_skipped_and_counted(self):
    model, optimizer, _, _ = self._built()
    variables = model.trainable_variables
    before = [v.numpy() for v in variables]

    @tf.function(jit_compile=True)
    def step(grads):
      optimizer.apply(grads, variables)

    grads = [tf.ones_like(v) for v in variables]
    grads[0] = tf.fill(variables[0].shape, np.nan)
    step(grads)
    self.assertEqual(optimizer.non_finite_updates, 1)
    np.testing.assert_array_equal(variables[0].numpy(), before[0])
    self.assertFalse(np.array_equal(variables[1].numpy(), before[1]))  # the finite ones moved
    for v in optimizer.variables:
      self.assertTrue(np.all(np.isfinite(v.numpy())), v.path)

  @parameterized.parameters("mnist", "general")
  def test_ten_thousand_noisy_steps_stay_bounded(self, checkpoint):
    # Stochastic linear least squares: gradient noise as large as the gradient itself at the
    # start, and no decay to rescue a rule whose steps do not shrink (nor, for `general`, an
    # adapted multiplier that grows without bound).
    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(64, 32)) / 8, tf.float32)
    target = tf.constant(rng.normal(size=(32,)), tf.float32)
    theta = tf.Variable(tf.zeros(32))
    optimizer = l2l_keras.LearnedOptimizer(checkpoint)
    optimizer.build([theta])

    def loss():
      return 0.5 * tf.reduce_sum(tf.square(tf.linalg.matvec(a, theta - target)))

    @tf.function
    def run(num_steps, seed):
      losses = tf.TensorArray(tf.float32, num_steps)
      for i in tf.range(num_steps):
        with tf.GradientTape() as tape:
          value = loss()
        gradient = tape.gradient(value, theta)
        noise = tf.random.stateless_normal([32], tf.stack([seed, i]))
        optimizer.apply([gradient + 0.5 * noise], [theta])
        losses = losses.write(i, value)
      return losses.stack()

    initial = float(loss())
    losses = np.concatenate([run(1000, s).numpy() for s in range(10)])
    self.assertEqual(len(losses), 10_000)
    self.assertTrue(np.all(np.isfinite(losses)))
    self.assertTrue(np.all(np.isfinite(theta.numpy())))
    self.assertLess(np.max(losses[1000:]), initial)  # never back above where it started
    self.assertLess(np.mean(losses[-1000:]), 0.5 * initial)


def test_mirrored_strategy_fit_lowers_the_loss(mirrored_run):
  out, err = mirrored_run.communicate(timeout=300)
  assert mirrored_run.returncode == 0, err[-2000:]
  result = json.loads(out.strip().splitlines()[-1])
  assert result["replicas"] == 2
  assert result["loss"][-1] < 0.5 * result["loss"][0], result["loss"]
  # Every replica's copy of the weights and LSTM state is the same after training.
  assert result["in_sync"]
