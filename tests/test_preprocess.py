"""LogAndSign and Clamp against the paper's formula, written out in NumPy; AdamNormalized against
Adam's moments as Kingma & Ba write them, and its first step by hand."""

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import networks
from learning_to_learn import preprocess

from conftest import random_lstm_weights

GRADIENTS = [0.0, 1e-5, -1e-5, 1e-3, -1e-3, 0.1, -0.1, 1.0, 10.0]


def numpy_log_and_sign(g, k):
  """Paper Appendix A: (log|g|/p, sign g) if |g| >= e^-p else (-1, e^p g), with eps in the log."""
  eps = np.finfo(np.float32).eps
  log = np.maximum(np.log(np.abs(g) + eps) / k, -1.0)
  sign = np.clip(g * np.exp(k), -1.0, 1.0)
  return np.stack([log, sign], axis=-1)


class LogAndSignTest(parameterized.TestCase):

  @parameterized.named_parameters(("k5", 5.0), ("k10", 10.0))
  def test_matches_formula(self, k):
    g = np.array(GRADIENTS, np.float32)[:, None]  # [9, 1]
    got = preprocess.LogAndSign(k)(tf.constant(g)).numpy()
    want = numpy_log_and_sign(g[:, 0], k)  # [9, 2]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

  def test_hand_computed_cases(self):
    out = preprocess.LogAndSign(5)(tf.constant([[0.0, 1.0, -1e-3]])).numpy()[0]
    # Zero: log(eps)/5 = -3.2 clamps to -1, sign 0.  One: log(1 + eps) ~ 0, sign 1.
    # -1e-3 with k = 5: log(1e-3)/5 = -1.3816 -> -1; -1e-3 * e^5 = -0.1484.
    np.testing.assert_allclose(out, [-1.0, 0.0, -1.0, 0.0, 1.0, -1e-3 * np.exp(5)], atol=1e-6)

  def test_large_gradient_uses_log_magnitude(self):
    out = preprocess.LogAndSign(10)(tf.constant([[-100.0]])).numpy()[0]
    np.testing.assert_allclose(out, [np.log(100.0) / 10, -1.0], rtol=1e-6)

  def test_last_dimension_doubles(self):
    out = preprocess.LogAndSign(5)(tf.zeros([3, 4, 7]))
    self.assertEqual(out.shape, (3, 4, 14))

  def test_rejects_non_positive_k(self):
    with pytest.raises(ValueError, match="k=0"):
      preprocess.LogAndSign(0)


class ClampTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("both", -1.0, 2.0, [-1.0, -1.0, 0.5, 2.0]),
      ("min_only", -1.0, None, [-1.0, -1.0, 0.5, 3.0]),
      ("max_only", None, 2.0, [-5.0, -1.0, 0.5, 2.0]),
      ("open", None, None, [-5.0, -1.0, 0.5, 3.0]))
  def test_clamps(self, lo, hi, want):
    got = preprocess.Clamp(lo, hi)(tf.constant([-5.0, -1.0, 0.5, 3.0])).numpy()
    np.testing.assert_array_equal(got, want)

  def test_rejects_inverted_bounds(self):
    with pytest.raises(ValueError, match="min_value"):
      preprocess.Clamp(2.0, 1.0)

  def test_factory_rejects_unknown_name(self):
    with pytest.raises(ValueError, match="LogAndSign"):
      preprocess.factory("LogSign")


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
  weights = random_lstm_weights(seed)
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
