"""The update rules against second implementations: NumPy LSTMs and Keras optimizers."""

import os

from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import baselines
from learning_to_learn import networks
from learning_to_learn import optimizer_files

from conftest import environment, run_python


def lstm_net(**kwargs):
  options = dict(layers=(20, 20), preprocess_name="LogAndSign", preprocess_options={"k": 5},
                 scale=0.01)
  options.update(kwargs)
  return networks.CoordinateWiseDeepLSTM(**options)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_coordinatewise(weights, gradient, state, k=5.0, scale=0.01):
  """The coordinatewise LSTM written again in NumPy from the paper's equations."""
  g = gradient.reshape(-1, 1).astype(np.float64)
  eps = np.finfo(np.float32).eps
  x = np.concatenate([np.maximum(np.log(np.abs(g) + eps) / k, -1.0),
                      np.clip(g * np.exp(k), -1.0, 1.0)], axis=1)
  next_state = []
  for i, (h, c) in enumerate(state):
    w, b = weights[f"lstm_{i}"]["w_gates"], weights[f"lstm_{i}"]["b_gates"]
    z = np.concatenate([x, h], axis=1) @ w + b
    n = h.shape[1]
    gate_i, gate_j, gate_f, gate_o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
    c = sigmoid(gate_f + 1.0) * c + sigmoid(gate_i) * np.tanh(gate_j)
    h = sigmoid(gate_o) * np.tanh(c)
    next_state.append((h, c))
    x = h
  update = (x @ weights["linear"]["w"] + weights["linear"]["b"]) * scale
  return update.reshape(gradient.shape), next_state


class CoordinateWiseTest(parameterized.TestCase):

  def test_weight_count_is_5141_whatever_the_optimizee(self):
    net = lstm_net()
    # (2 + 20) * 80 + 80 + (20 + 20) * 80 + 80 + 20 + 1, by the paper's architecture.
    self.assertEqual(sum(int(np.prod(v.shape)) for v in net.trainable_variables), 5141)
    for shape in ([3], [784, 20], [5, 5, 3, 16]):
      update, state = net(tf.ones(shape), net.initial_state_for_inputs(tf.ones(shape)))
      self.assertEqual(update.shape, tuple(shape))
      # Feature-major, the coordinates padded to a multiple of 16 columns.
      self.assertEqual(state[0].hidden.shape, (20, -(-int(np.prod(shape)) // 16) * 16))
    self.assertEqual(sum(int(np.prod(v.shape)) for v in net.trainable_variables), 5141)

  @parameterized.parameters("eager", "graph", "xla")
  def test_matches_numpy_lstm_over_three_steps(self, mode):
    # The fast path (feature-major, bias in the matmul, 12 coordinates padded to 16 columns), as
    # run eagerly, as a graph (meta-training) and under XLA (evaluation), against plain NumPy rows.
    net = lstm_net(initializer={"linear": {"w": "random_normal"}})
    step = {"eager": net, "graph": tf.function(net),
            "xla": tf.function(net, jit_compile=True)}[mode]
    weights = networks.weights(net)
    rng = np.random.default_rng(0)
    state = net.initial_state_for_inputs(tf.zeros([4, 3]))
    np_state = [(np.zeros((12, 20)), np.zeros((12, 20)))] * 2
    for _ in range(3):
      g = (rng.normal(size=(4, 3)) * 10.0 ** rng.integers(-6, 1, size=(4, 3))).astype(np.float32)
      update, state = step(tf.constant(g), state)
      want, np_state = numpy_coordinatewise(weights, g, np_state)
      np.testing.assert_allclose(update.numpy(), want, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(state[1].cell.numpy()[:, :12].T, np_state[1][1], rtol=1e-4,
                               atol=1e-6)

  def test_coordinates_are_independent(self):
    net = lstm_net(initializer={"linear": {"w": "random_normal"}})
    g = tf.constant(np.random.default_rng(1).normal(size=[50]).astype(np.float32))
    state = net.initial_state_for_inputs(g)
    update, _ = net(g, state)
    changed = tf.tensor_scatter_nd_update(g, [[i] for i in range(1, 50)], tf.fill([49], 3.0))
    update_changed, _ = net(changed, state)
    self.assertEqual(float(update[0]), float(update_changed[0]))
    self.assertNotEqual(float(update[1]), float(update_changed[1]))
    # Batch of one coordinate alone gives the same update as inside the batch.
    alone, _ = net(g[:1], net.initial_state_for_inputs(g[:1]))
    np.testing.assert_allclose(alone.numpy(), update.numpy()[:1], rtol=1e-6)

  def test_zero_output_layer_gives_exactly_zero_updates(self):
    net = lstm_net(initializer={"linear": "zeros"})
    g = tf.random.normal([7, 5])
    update, _ = net(g, net.initial_state_for_inputs(g))
    self.assertEqual(float(tf.reduce_max(tf.abs(update))), 0.0)

  def test_zeros_initializer_without_layers_is_the_reference_simple_net(self):
    net = networks.CoordinateWiseDeepLSTM(layers=(), initializer="zeros")
    self.assertEqual(sum(int(np.prod(v.shape)) for v in net.trainable_variables), 2)
    update, state = net(tf.constant([1.0, -2.0]), net.initial_state_for_inputs(tf.zeros([2])))
    self.assertEqual(state, ())
    np.testing.assert_array_equal(update.numpy(), [0.0, 0.0])


class OtherNetworksTest(parameterized.TestCase):

  def test_kernel_lstm_reads_each_kernel_slice(self):
    net = networks.KernelDeepLSTM(kernel_shape=[3, 3], layers=(4,),
                                  initializer={"linear": {"w": "random_normal"}})
    kernel = tf.random.normal([3, 3, 2, 5])
    update, _ = net(kernel, net.initial_state_for_inputs(kernel))
    self.assertEqual(update.shape, (3, 3, 2, 5))
    # Slice (in=1, out=3) alone through the standard LSTM path gives that slice's update.
    slice_13 = tf.reshape(kernel[:, :, 1, 3], [1, 9])
    alone, _ = net._network(slice_13, net.initial_state_for_inputs(kernel[:, :, 1:2, 3:4]))
    np.testing.assert_allclose(alone.numpy().reshape(3, 3), update.numpy()[:, :, 1, 3],
                               rtol=1e-5, atol=1e-7)

  def test_standard_lstm_shapes(self):
    net = networks.StandardDeepLSTM(output_size=4, layers=(6,), input_size=3)
    update, state = net(tf.ones([2, 3]), net.initial_state_for_inputs(tf.ones([2, 3])))
    self.assertEqual(update.shape, (2, 4))
    self.assertEqual(state[0].hidden.shape, (6, 16))


KERAS_TWINS = [
    ("sgd", lambda: baselines.Sgd(0.1), lambda: keras.optimizers.SGD(0.1)),
    ("adam", lambda: baselines.Adam(0.01), lambda: keras.optimizers.Adam(0.01, epsilon=1e-8)),
    ("rmsprop", lambda: baselines.RMSProp(0.01), lambda: keras.optimizers.RMSprop(0.01)),
    ("nag", lambda: baselines.Nag(0.05, momentum=0.9),
     lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
]


class HandDesignedRulesTest(parameterized.TestCase):

  @parameterized.named_parameters(*KERAS_TWINS)
  def test_matches_keras_over_30_random_steps(self, make_rule, make_keras):
    rule, keras_optimizer = make_rule(), make_keras()
    rng = np.random.default_rng(2)
    start = rng.normal(size=[4, 3]).astype(np.float32)
    variable = tf.Variable(start)
    params = tf.constant(start)
    state = rule.initial_state_for_inputs(params)
    for _ in range(30):
      g = rng.normal(size=[4, 3]).astype(np.float32)
      keras_optimizer.apply_gradients([(tf.constant(g), variable)])
      update, state = rule(tf.constant(g), state)
      params = params + update
    np.testing.assert_allclose(params.numpy(), variable.numpy(), rtol=1e-5, atol=1e-6)

  def test_rules_have_no_trainable_weights(self):
    for _, make_rule, _ in KERAS_TWINS:
      self.assertEqual(make_rule().trainable_variables, ())


class SaveLoadTest(parameterized.TestCase):

  def test_factory_rejects_unknown_net(self):
    with pytest.raises(ValueError, match="CoordinateWiseDeepLSTM"):
      networks.factory("CoordinatewiseLSTM")

  def test_round_trip_in_a_fresh_process_reproduces_updates_exactly(self):
    tmp = self.create_tempdir().full_path
    net = lstm_net(initializer={"linear": {"w": "random_normal"}})
    path = optimizer_files.save(net, os.path.join(tmp, "cw.npz"))
    g = np.random.default_rng(3).normal(size=[6, 2]).astype(np.float32)
    np.save(os.path.join(tmp, "g.npy"), g)
    state = net.initial_state_for_inputs(tf.constant(g))
    want = []
    for _ in range(3):
      update, state = net(tf.constant(g), state)
      want.append(update.numpy())
    script = (
        "import numpy as np, tensorflow as tf, sys\n"
        "from learning_to_learn import optimizer_files\n"
        "net = optimizer_files.load(sys.argv[1]); g = tf.constant(np.load(sys.argv[2]))\n"
        "state = net.initial_state_for_inputs(g); out = []\n"
        "for _ in range(3):\n"
        "  u, state = net(g, state); out.append(u.numpy())\n"
        "np.save(sys.argv[3], np.stack(out))\n")
    out_path = os.path.join(tmp, "out.npy")
    # The fresh process sees the devices this one does: the same kernels give the same numbers.
    run_python("-c", script, path, os.path.join(tmp, "g.npy"), out_path, check=True,
               env=environment(CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES")))
    np.testing.assert_array_equal(np.load(out_path), np.stack(want))

  def test_factory_with_net_path_restores_weights(self):
    tmp = self.create_tempdir().full_path
    net = lstm_net()
    path = optimizer_files.save(net, os.path.join(tmp, "cw.npz"))
    again = optimizer_files.network("CoordinateWiseDeepLSTM", dict(
        layers=(20, 20), preprocess_name="LogAndSign", preprocess_options={"k": 5}, scale=0.01),
                                    net_path=path)
    for a, b in zip(net.trainable_variables, again.trainable_variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())

  @parameterized.named_parameters(("fewer_layers", (20,)), ("other_width", (10, 10)))
  def test_saved_options_replace_the_requested_ones(self, layers):
    tmp = self.create_tempdir().full_path
    net = lstm_net(scale=0.1, preprocess_options={"k": 10})
    path = optimizer_files.save(net, os.path.join(tmp, "cw.npz"))
    again = optimizer_files.network("CoordinateWiseDeepLSTM", dict(layers=layers, scale=0.01),
                                    net_path=path)
    self.assertEqual(again.get_config(), net.get_config())
    gradient = tf.constant([1e-3, -2.0, 0.5])
    state = net.initial_state_for_inputs(gradient)
    np.testing.assert_array_equal(net(gradient, state)[0], again(gradient, state)[0])

  def test_weights_without_a_config_for_another_shape_are_refused(self):
    tmp = self.create_tempdir().full_path
    path = os.path.join(tmp, "cw.npz")
    np.savez(path, **{f"{layer}/{field}": value
                      for layer, fields in networks.weights(lstm_net()).items()
                      for field, value in fields.items()})
    with pytest.raises(ValueError, match="another network shape"):
      optimizer_files.network("CoordinateWiseDeepLSTM", dict(layers=(20,)), net_path=path)
    with pytest.raises(ValueError, match="holds a CoordinateWiseDeepLSTM, not a KernelDeepLSTM"):
      optimizer_files.network("KernelDeepLSTM", dict(layers=(20,), kernel_shape=(2,)),
                              net_path=optimizer_files.save(lstm_net(), os.path.join(tmp, "saved.npz")))

  def test_missing_and_garbage_files_give_clear_errors(self):
    tmp = self.create_tempdir().full_path
    with pytest.raises(FileNotFoundError, match="no trained optimizer"):
      optimizer_files.load(os.path.join(tmp, "absent.npz"))
    garbage = os.path.join(tmp, "garbage.npz")
    with open(garbage, "wb") as f:
      f.write(b"not a numpy file")
    with pytest.raises(ValueError, match="cannot read"):
      optimizer_files.load(garbage)
