"""Gradient preprocessing: what the optimizer network sees of each gradient coordinate.

Gradients of different problems span many orders of magnitude; the paper (Appendix A) feeds the LSTM
a log-magnitude and a sign so that its inputs stay in [-1, 1] whatever the scale.
"""

import numpy as np
import sonnet as snt
import tensorflow as tf


def clamp(inputs, min_value=None, max_value=None):
  """Elementwise `min(max(inputs, min_value), max_value)`; a bound of None is open."""
  outputs = inputs
  if min_value is not None:
    outputs = tf.maximum(outputs, min_value)
  if max_value is not None:
    outputs = tf.minimum(outputs, max_value)
  return outputs


def log_and_sign(gradients, k):
  """The paper's preprocessing with p = k, applied to every coordinate.

  Returns `concat([max(log(|g| + eps) / k, -1), clip(g * e^k, -1, 1)], -1)`, with eps the machine
  epsilon of the dtype, so the last dimension doubles. The paper's case split (|g| >= e^-p or
  not) is the same map written with clamps, as the reference does: small gradients give
  (-1, g e^p) and large ones (log|g| / p, sign g).
  """
  eps = np.finfo(gradients.dtype.as_numpy_dtype).eps
  log = clamp(tf.math.log(tf.abs(gradients) + eps) / k, min_value=-1.0)
  sign = clamp(gradients * np.exp(k), min_value=-1.0, max_value=1.0)
  return tf.concat([log, sign], axis=-1)


class Clamp(snt.Module):
  """Clamps its inputs to [min_value, max_value]; a bound of None is open."""

  def __init__(self, min_value=None, max_value=None, name="clamp"):
    super().__init__(name=name)
    if min_value is not None and max_value is not None and min_value > max_value:
      raise ValueError(f"Clamp: min_value={min_value} is above max_value={max_value}; "
                       "pass min_value <= max_value.")
    self._min = min_value
    self._max = max_value

  def __call__(self, inputs):
    return clamp(inputs, self._min, self._max)


class LogAndSign(snt.Module):
  """Log-magnitude and sign features of each gradient coordinate (paper Appendix A).

  The paper uses p = 10; the reference's configurations use k = 5, which this port keeps as its
  default setting (see README, "Differences").

  Args:
    k: the exponent p of the paper; magnitudes below e^-k are encoded linearly. Must be positive.

  Shapes: [..., n] -> [..., 2 n].
  """

  def __init__(self, k, name="preprocess_log"):
    super().__init__(name=name)
    if not k > 0:
      raise ValueError(f"LogAndSign: k={k} must be positive (the reference uses 5, the paper 10).")
    self._k = float(k)

  def __call__(self, gradients):
    return log_and_sign(gradients, self._k)


class Identity(snt.Module):
  """Passes gradients through unchanged (the reference's `preprocess_name="identity"`)."""

  def __init__(self, name="identity"):
    super().__init__(name=name)

  def __call__(self, gradients):
    return gradients


_PREPROCESSORS = {"identity": Identity, "LogAndSign": LogAndSign, "Clamp": Clamp}


def factory(preprocess_name="identity", preprocess_options=None):
  """Builds a preprocessor by its reference name: identity, LogAndSign or Clamp."""
  if preprocess_name not in _PREPROCESSORS:
    raise ValueError(f"unknown preprocess_name {preprocess_name!r}; "
                     f"choose one of {', '.join(_PREPROCESSORS)}.")
  return _PREPROCESSORS[preprocess_name](**dict(preprocess_options or {}))


def num_features(preprocess_name):
  """How many network inputs one gradient coordinate becomes."""
  return 2 if preprocess_name == "LogAndSign" else 1
