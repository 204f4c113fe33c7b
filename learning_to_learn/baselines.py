"""Hand-designed update rules in the learned rules' shape, so one unroll evaluates every optimizer.

Each maps a gradient (any shape) and its state to an update of the same shape and a new state,
`update, next_state = rule(gradient, state)`, from
`state = rule.initial_state_for_inputs(gradient)`, as the learned rules in `networks` do.
`networks.factory` builds them by class name. Each treats every coordinate alike and independently
(`coordinatewise`), and has no trainable weights.
"""

from typing import NamedTuple

import sonnet as snt
import tensorflow as tf


@snt.allow_empty_variables
class UpdateRule(snt.Module):
  """Base of every update rule, learned (`networks`) or hand-designed (here).

  `coordinatewise` says whether the rule treats every coordinate alike and independently; only then
  may the meta-optimizer concatenate several variables into one call (one batched matmul instead of
  one per variable), which gives the same updates.
  """

  coordinatewise = True

  def __call__(self, gradient, state):
    raise NotImplementedError

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    raise NotImplementedError

  def get_config(self):
    """The constructor arguments (JSON-able) that rebuild this rule."""
    raise NotImplementedError


class HandDesigned(UpdateRule):
  """Base of the hand-designed rules: no weights, every coordinate alike; options in get_config."""

  def get_config(self):
    """The constructor arguments (JSON-able) that rebuild this rule.

    A learning rate may be a non-trainable tf.Variable (evaluation tunes it in place, without
    retracing); the config records its value now.
    """
    return {key: float(value.numpy()) if isinstance(value, tf.Variable) else value
            for key, value in self._options.items()}


class Sgd(HandDesigned):
  """update = -learning_rate g. Stateless."""

  def __init__(self, learning_rate=0.001, name="sgd"):
    super().__init__(name=name)
    self._options = dict(learning_rate=learning_rate)
    self._learning_rate = learning_rate

  def __call__(self, gradient, state):
    return -self._learning_rate * gradient, state

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    return ()


class AdamState(NamedTuple):
  step: tf.Tensor  # scalar count of updates so far
  m: tf.Tensor  # first-moment estimate, the gradient's shape
  v: tf.Tensor  # second-moment estimate, the gradient's shape


class Adam(HandDesigned):
  """Adam (Kingma & Ba 2015) with bias-corrected moments.

  m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g^2;  t' = t + 1;
  update = -lr (m' / (1 - b1^t')) / (sqrt(v' / (1 - b2^t')) + epsilon).
  """

  def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, name="adam"):
    super().__init__(name=name)
    self._options = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)
    self._lr, self._b1, self._b2, self._eps = learning_rate, beta1, beta2, epsilon

  def __call__(self, gradient, state):
    step = state.step + 1.0
    m = self._b1 * state.m + (1.0 - self._b1) * gradient
    v = self._b2 * state.v + (1.0 - self._b2) * tf.square(gradient)
    m_hat = m / (1.0 - tf.pow(self._b1, step))
    v_hat = v / (1.0 - tf.pow(self._b2, step))
    return -self._lr * m_hat / (tf.sqrt(v_hat) + self._eps), AdamState(step, m, v)

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    zeros = tf.zeros_like(inputs, dtype=dtype)
    return AdamState(tf.zeros([], dtype), zeros, zeros)


class RMSProp(HandDesigned):
  """RMSProp (Tieleman & Hinton 2012) as Keras writes it, without momentum.

  v' = rho v + (1 - rho) g^2;  update = -lr g / sqrt(v' + epsilon).
  """

  def __init__(self, learning_rate=1e-3, rho=0.9, epsilon=1e-7, name="rmsprop"):
    super().__init__(name=name)
    self._options = dict(learning_rate=learning_rate, rho=rho, epsilon=epsilon)
    self._lr, self._rho, self._eps = learning_rate, rho, epsilon

  def __call__(self, gradient, state):
    v = self._rho * state + (1.0 - self._rho) * tf.square(gradient)
    return -self._lr * gradient / tf.sqrt(v + self._eps), v

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    return tf.zeros_like(inputs, dtype=dtype)


class Nag(HandDesigned):
  """Nesterov's accelerated gradient in the form of Sutskever et al. 2013 (as Keras SGD).

  v' = mu v - lr g;  update = mu v' - lr g.
  """

  def __init__(self, learning_rate=1e-3, momentum=0.9, name="nag"):
    super().__init__(name=name)
    self._options = dict(learning_rate=learning_rate, momentum=momentum)
    self._lr, self._mu = learning_rate, momentum

  def __call__(self, gradient, state):
    velocity = self._mu * state - self._lr * gradient
    return self._mu * velocity - self._lr * gradient, velocity

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    return tf.zeros_like(inputs, dtype=dtype)
