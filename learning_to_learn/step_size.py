"""A learned rule's step size adapted online, per parameter tensor, by hypergradient descent.

One fixed output scale cannot suit every optimizee: the best scale of the task family's
validation tasks spans 10x. After Baydin et al. 2018 (arXiv 1703.04782), each parameter tensor's
update is multiplied by m = exp(log_m), and log_m follows the sign of the loss's derivative in it:
the loss after step t-1 is f(θ_{t-1} + m u_{t-1}), whose derivative in m is g_t · u_{t-1} / m, so

    log_m_t = clip(log_m_{t-1} - rate * cos(g_t, u_{t-1}), log(MIN_MULTIPLIER), log(MAX_MULTIPLIER))

grows the step while each update still points downhill at the next gradient and shrinks it when
the next gradient opposes it (with `averaging`, the average of the recent updates in place of
u_{t-1}). The cosine makes the change independent of the tensor's size and gradient scale. The
multiplier is kept out of the meta-gradient: meta-training shapes the direction and the relative
size of the updates, the multiplier their overall size.

`normalize` goes one step further (a direction and a magnitude, as Celo2 does): each tensor's
update is divided by its root mean square and multiplied by the network's output scale, so the
rule's own output sets only the direction and the relative sizes within a tensor, and the scale
(times the adapted multiplier) each tensor's RMS step. A truncated unroll's objective can then no
longer shrink the step itself, which it does (docs/training.md, short-horizon bias).

A fixed RMS step keeps its size when the gradients turn to noise, where Adam's shrinks: its step
m^/sqrt(v^) is ±1 while the gradients agree and falls toward sqrt((1 - beta1) / (1 + beta1)) (0.23
at beta1 = 0.9) in RMS when they are pure noise. `signal_ratio` measures that RMS per tensor, from
Adam moments of its own, so that a normalized rule can take it as its step's factor
(`signal_scaled`): the rule sets the direction, Adam's signal-to-noise the size. Its first moment
is not bias-corrected, so the factor also ramps up as 1 - beta1^t over the first ten or so steps:
a warm-up, without which the larger scales this factor calls for wreck some networks in their
first steps (docs/training.md).
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

MIN_MULTIPLIER = 1.0 / 32
MAX_MULTIPLIER = 32.0


class AdaptationState(NamedTuple):
  """One tensor's state: its previous update, or with `averaging` their exponential average (its
  shape), and its log multiplier (scalar, or [N])."""
  previous_update: tf.Tensor
  log_multiplier: tf.Tensor


def check_rate(rate, where="scale_adaptation"):
  """Refuses a rate that is negative or not finite (0 switches the adaptation off)."""
  if not (isinstance(rate, (int, float)) and np.isfinite(rate) and rate >= 0):
    raise ValueError(f"{where}={rate!r} must be a finite number >= 0 (0: a fixed scale; "
                     "0.02 is the shipped `general`'s).")
  return float(rate)


def check_averaging(value, where="adaptation_averaging"):
  """Refuses an averaging factor outside [0, 1)."""
  if not (isinstance(value, (int, float)) and 0 <= value < 1):
    raise ValueError(f"{where}={value!r} must be a number in [0, 1) (0: the previous update "
                     "alone; 0.99 averages about the last 100).")
  return float(value)


def check_initial_multiplier(value, where="initial_multiplier"):
  """Refuses a starting multiplier outside [MIN_MULTIPLIER, MAX_MULTIPLIER]."""
  if not (isinstance(value, (int, float)) and MIN_MULTIPLIER <= value <= MAX_MULTIPLIER):
    raise ValueError(f"{where}={value!r} must be a number in [1/32, 32] (1: the output scale "
                     "itself at the first step).")
  return float(value)


def initial_state(tensor, batch_axes=0, multiplier=1.0):
  """A fresh state for `tensor`: no previous update, the multiplier `multiplier` (one per leading
  axis entry when the first `batch_axes` axes index independent instances).

  A multiplier below 1 starts the steps small and lets the adaptation grow them while the updates
  agree with the gradients: a warm-up that stops by itself where a large step would not pay.
  """
  shape = tf.shape(tensor)[:batch_axes]
  return AdaptationState(tf.zeros_like(tensor),
                         tf.fill(shape, tf.constant(np.log(multiplier), tensor.dtype)))


def cosine(a, b, batch_axes=0):
  """cos(a, b) over all axes past the first `batch_axes`; 0 where either is all zeros."""
  axes = list(range(batch_axes, len(a.shape)))
  dot = tf.reduce_sum(a * b, axis=axes)
  norms = tf.sqrt(tf.reduce_sum(tf.square(a), axis=axes) * tf.reduce_sum(tf.square(b), axis=axes))
  return tf.math.divide_no_nan(dot, norms)


def normalize(update, scale, batch_axes=0):
  """`update` × scale / its root mean square over all axes past the first `batch_axes` (0 where
  the update is all zeros): each tensor's RMS step is `scale`."""
  axes = list(range(batch_axes, len(update.shape)))
  rms = tf.sqrt(tf.reduce_mean(tf.square(update), axis=axes, keepdims=True))
  return tf.math.divide_no_nan(update * scale, rms)


def adapt(update, gradient, state, rate, batch_axes=0, averaging=0.0):
  """(update × its tensor's new multiplier, the next AdaptationState) for one tensor.

  `update` is the rule's own update for the gradient `gradient`; the multiplier moves first, on the
  previous update, then scales this one. With `averaging` = beta > 0 it moves on the exponential
  average of the previous updates instead (beta × average + (1 - beta) × update): the direction
  the parameters drift over about 1 / (1 - beta) steps, in which oscillations across a narrow
  valley cancel. The one-step signal shrinks the step wherever the updates overshoot in some
  directions, though progress along the others wants it kept (the greedy, short-horizon bias);
  the average shrinks it only while the drift itself turns back.
  """
  cos = cosine(tf.cast(gradient, update.dtype), state.previous_update, batch_axes)
  log_multiplier = tf.stop_gradient(tf.clip_by_value(  # out of the meta-gradient, inputs and all
      state.log_multiplier - rate * cos, np.log(MIN_MULTIPLIER), np.log(MAX_MULTIPLIER)))
  multiplied = scaled(update, tf.exp(log_multiplier), batch_axes)
  kept = (averaging * state.previous_update + (1.0 - averaging) * multiplied if averaging
          else multiplied)
  return multiplied, AdaptationState(kept, log_multiplier)


class SignalState(NamedTuple):
  """One tensor's Adam moments (its shape) and how many gradients they have seen (scalar)."""
  m: tf.Tensor
  v: tf.Tensor
  count: tf.Tensor


def initial_signal_state(tensor):
  """Fresh moments for `tensor`: zeros, no gradient seen."""
  zeros = tf.zeros_like(tensor)
  return SignalState(zeros, zeros, tf.constant(0.0, tensor.dtype))


def signal_ratio(gradient, state, batch_axes=0, beta1=0.9, beta2=0.999, epsilon=1e-8):
  """(RMS of m/(sqrt(v^) + epsilon) over each tensor, the next state): Adam's normalized step
  with m not bias-corrected.

  The RMS is over all axes past the first `batch_axes` (a scalar, or one per instance); it is
  1 - beta1 at the first step for a gradient without zeros, and kept out of the meta-gradient.
  """
  gradient = tf.stop_gradient(tf.cast(gradient, state.m.dtype))
  count = state.count + 1.0
  m = beta1 * state.m + (1.0 - beta1) * gradient
  v = beta2 * state.v + (1.0 - beta2) * tf.square(gradient)
  step = m / (tf.sqrt(v / (1.0 - beta2 ** count)) + epsilon)
  axes = list(range(batch_axes, len(gradient.shape)))
  rms = tf.sqrt(tf.reduce_mean(tf.square(step), axis=axes))
  return rms, SignalState(m, v, count)


def scaled(update, factor, batch_axes=0):
  """`update` × `factor`, one factor per instance of the first `batch_axes` axes (or a scalar)."""
  factor = tf.reshape(factor, tf.concat([tf.shape(factor),
                                         tf.ones([len(update.shape) - batch_axes], tf.int32)], 0))
  return update * factor
