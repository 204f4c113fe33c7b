"""The unroll: T optimizee steps driven by an update rule, as a pure function of its inputs.

Everything that changes during an unroll (parameters, the rule's state) goes in and comes back out,
so the same function serves meta-training (under an outer GradientTape), evaluation of learned and
hand-designed rules, and the tests, eagerly or under `tf.function`.
"""

from typing import Any, NamedTuple

import tensorflow as tf


class UnrollState(NamedTuple):
  """What is carried from one unroll to the next within an epoch.

  params: name -> optimizee parameter tensor.
  net_state: the update rule's state (LSTM states, Adam moments, ...).
  constants: the problem instance's constants (quadratic W and y, ...), fixed within an epoch.
  """
  params: dict
  net_state: Any
  constants: Any


def initial_state(problem, rule, seed):
  """A fresh epoch: new optimizee initialization and problem constants, zero rule state."""
  params, constants = problem.init(seed)
  return UnrollState(params, rule.initial_state(params), constants)


def _batch_at(batches, t):
  return tf.nest.map_structure(lambda b: b[t], batches)


def unroll(problem, rule, state, batches, second_derivatives=False):
  """Runs T steps of: loss -> gradients -> rule -> params + updates.

  The loss and the gradient at step t use the same minibatch `batches[t]`; the final loss f(x_T)
  uses `batches[T]`. Without `second_derivatives` the optimizee gradients are constants to any
  outer tape (paper section 2: dropping the Hessian terms); the losses still depend on the rule's
  weights through the parameters it moved.

  Args:
    problem: an optimizee (see problems.py): `loss(params, constants, batch)`.
    rule: `rule.initial_state(params)`, `rule(gradients, net_state) -> (updates, net_state)`.
    state: UnrollState to start from.
    batches: a nest of tensors with leading dimension T + 1 (from `problem.sample_batches`).
    second_derivatives: let an outer tape differentiate through the optimizee gradients.

  Returns:
    losses: [T + 1], f(x_0) .. f(x_T).
    final UnrollState.
  """
  num_steps = tf.nest.flatten(batches)[0].shape[0] - 1
  params, net_state, constants = state
  losses = []
  for t in range(num_steps):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(params)
      loss = problem.loss(params, constants, _batch_at(batches, t))
    gradients = tape.gradient(loss, params)
    if not second_derivatives:
      gradients = tf.nest.map_structure(tf.stop_gradient, gradients)
    updates, net_state = rule(gradients, net_state)
    params = {name: params[name] + updates[name] for name in params}
    losses.append(loss)
  losses.append(problem.loss(params, constants, _batch_at(batches, num_steps)))
  return tf.stack(losses), UnrollState(params, net_state, constants)


def run_steps(problem, rule, state, seed, num_steps):
  """`num_steps` steps of `rule` from `state` on minibatches drawn from `seed`: evaluation's unit.

  The batches are sampled here, inside whatever compiles this, as meta-training samples its own:
  the same seed then draws the same minibatches for a learned rule and its baselines.

  Returns:
    losses: [num_steps + 1], f(x_0) .. f(x_num_steps).
    final UnrollState, to start the next call of the epoch from.
  """
  batches = problem.sample_batches(seed, num_steps + 1)
  return unroll(problem, rule, state, batches)
