"""unroll: T steps of gradient descent on f(x) = sum c x^2, against the closed form.

With update -r g and g = 2 c x, each step multiplies x by (1 - 2 r c): f(x_t) = sum c x0^2
(1 - 2 r c)^(2 t), and d f(x_T) / d r = sum c x0^2 2 T (1 - 2 r c)^(2 T - 1) (-2 c).
"""

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import unroll

X0 = np.array([1.0, -2.0], np.float32)
C = np.array([0.5, 2.0], np.float32)
RATE = 0.1
T = 5


class Bowl:
  """f(x) = sum c x^2 from x0, whatever the seed and the batch."""

  def init(self, seed):
    del seed
    return {"x": tf.constant(X0)}, tf.constant(C)

  def loss(self, params, constants, batch):
    del batch
    return tf.reduce_sum(constants * tf.square(params["x"]))

  def sample_batches(self, seed, num_batches):
    del seed
    return tf.zeros([num_batches])


class Descent:
  """update = -rate g per parameter; its state counts the steps."""

  def __init__(self, rate):
    self.rate = rate

  def initial_state(self, params):
    del params
    return tf.constant(0)

  def __call__(self, gradients, state):
    return {name: -self.rate * g for name, g in gradients.items()}, state + 1


def closed_form_losses(num_steps=T):
  t = np.arange(num_steps + 1)[:, None]
  return np.sum(C * X0**2 * (1 - 2 * RATE * C) ** (2 * t), axis=1)


@pytest.mark.parametrize("recompute", [False, True])
def test_losses_and_final_state_are_the_closed_forms(recompute):
  problem, rule = Bowl(), Descent(RATE)
  state = unroll.initial_state(problem, rule, tf.constant([0, 0]))
  losses, final = unroll.unroll(problem, rule, state, problem.sample_batches(None, T + 1),
                                recompute=recompute)
  np.testing.assert_allclose(losses.numpy(), closed_form_losses(), rtol=1e-5)
  np.testing.assert_allclose(final.params["x"].numpy(), X0 * (1 - 2 * RATE * C) ** T, rtol=1e-5)
  assert int(final.net_state) == T
  np.testing.assert_array_equal(final.constants.numpy(), C)


def test_an_unroll_carries_on_from_the_state_it_is_given():
  problem, rule = Bowl(), Descent(RATE)
  state = unroll.initial_state(problem, rule, tf.constant([0, 0]))
  first, state = unroll.unroll(problem, rule, state, problem.sample_batches(None, 3))
  second, state = unroll.unroll(problem, rule, state, problem.sample_batches(None, 4))
  np.testing.assert_allclose(np.concatenate([first.numpy(), second.numpy()[1:]]),
                             closed_form_losses(), rtol=1e-5)
  assert int(state.net_state) == T


def test_the_meta_gradient_is_the_closed_forms_with_second_derivatives():
  problem, rate = Bowl(), tf.Variable(RATE)
  rule = Descent(rate)
  batches = problem.sample_batches(None, T + 1)
  want = np.sum(C * X0**2 * 2 * T * (1 - 2 * RATE * C) ** (2 * T - 1) * (-2 * C))
  got = {}
  for second_derivatives in (True, False):
    with tf.GradientTape() as tape:
      losses, _ = unroll.unroll(problem, rule, unroll.initial_state(problem, rule, None), batches,
                                second_derivatives=second_derivatives)
      final_loss = losses[-1]
    got[second_derivatives] = float(tape.gradient(final_loss, rate))
  np.testing.assert_allclose(got[True], want, rtol=1e-4)
  # Without them each gradient is a constant: the derivative through x_t's gradient is dropped.
  assert abs(got[False] - want) > 1e-2 * abs(want)
