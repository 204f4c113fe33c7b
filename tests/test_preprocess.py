"""LogAndSign and Clamp against the paper's formula, written out in NumPy."""

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import preprocess

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
