"""Gradient preprocessing: what the optimizer network sees of each gradient coordinate.

Gradients of different problems span many orders of magnitude; the paper (Appendix A) feeds the LSTM
a log-magnitude and a sign so that its inputs stay in [-1, 1] whatever the scale. AdamNormalized
(Lv et al. 2017) goes further: the gradient and its momentum divided by Adam's RMS estimate, which
needs state carried from step to step.
"""

from typing import NamedTuple

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
  default setting (see docs/architecture.md, "How this port differs").

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


class AdamNormalizedState(NamedTuple):
  """Adam's moment estimates per coordinate, and how many gradients they have seen."""
  m: tf.Tensor
  v: tf.Tensor
  count: tf.Tensor  # scalar float: the step t of Adam's bias correction


def adam_normalized(gradients, state, beta1, beta2, epsilon):
  """One step of Adam's moments, returning the normalised features and the next state.

  m_t = beta1 m + (1 - beta1) g,  v_t = beta2 v + (1 - beta2) g^2,  with bias correction
  m^ = m_t / (1 - beta1^t), v^ = v_t / (1 - beta2^t); features (g / (sqrt(v^) + eps),
  m^ / (sqrt(v^) + eps)) on the last axis. Both are invariant to the gradient's scale, the point
  of Lv et al. 2017 (arXiv 1703.03633): a rule trained on one problem's gradient magnitudes keeps
  working on another's, and the network can represent Adam (output proportional to the second
  feature) or momentum-free normalised descent (the first) from its first step.
  """
  count = state.count + 1.0
  m = beta1 * state.m + (1.0 - beta1) * gradients
  v = beta2 * state.v + (1.0 - beta2) * tf.square(gradients)
  root = tf.sqrt(v / (1.0 - beta2 ** count)) + epsilon
  features = tf.concat([gradients / root, m / (1.0 - beta1 ** count) / root], axis=-1)
  return features, AdamNormalizedState(m, v, count)


class AdamNormalized(snt.Module):
  """Adam-normalised gradient and momentum as the network's inputs (Lv et al. 2017, "RNNprop").

  A stateful preprocessor: `features, state = module(gradients, state)`, starting from
  `module.initial_state(gradients)`. Networks carry its state beside their LSTM states.

  Args:
    beta1, beta2: Adam's decay rates of the first and second moments, in [0, 1).
    epsilon: added to sqrt(v^) so that coordinates whose gradient is always zero get zero features.

  Shapes: [..., 1] -> [..., 2].
  """

  stateful = True

  def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8, name="preprocess_adam"):
    super().__init__(name=name)
    for label, beta in (("beta1", beta1), ("beta2", beta2)):
      if not 0.0 <= beta < 1.0:
        raise ValueError(f"AdamNormalized: {label}={beta} must be in [0, 1) (Adam's: 0.9, 0.999).")
    if not epsilon > 0:
      raise ValueError(f"AdamNormalized: epsilon={epsilon} must be positive (Adam's: 1e-8).")
    self._beta1, self._beta2, self._epsilon = float(beta1), float(beta2), float(epsilon)

  def initial_state(self, gradients):
    zeros = tf.zeros_like(gradients)
    return AdamNormalizedState(zeros, zeros, tf.constant(0.0, gradients.dtype))

  def __call__(self, gradients, state):
    return adam_normalized(gradients, state, self._beta1, self._beta2, self._epsilon)


_PREPROCESSORS = {"identity": Identity, "LogAndSign": LogAndSign, "Clamp": Clamp,
                  "AdamNormalized": AdamNormalized}


def factory(preprocess_name="identity", preprocess_options=None):
  """Builds a preprocessor by name: identity, LogAndSign, Clamp (the reference's) or AdamNormalized."""
  if preprocess_name not in _PREPROCESSORS:
    raise ValueError(f"unknown preprocess_name {preprocess_name!r}; "
                     f"choose one of {', '.join(_PREPROCESSORS)}.")
  return _PREPROCESSORS[preprocess_name](**dict(preprocess_options or {}))


def num_features(preprocess_name):
  """How many network inputs one gradient coordinate becomes."""
  return 2 if preprocess_name in ("LogAndSign", "AdamNormalized") else 1


def is_stateful(preprocessor):
  """Whether a preprocessor carries state across steps (`__call__(gradients, state)`)."""
  return getattr(preprocessor, "stateful", False)
