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


class Recomputed:
  """A function whose activations an outer tape recomputes in its backward pass, not keeps.

  An outer GradientTape around an unroll keeps every intermediate of every step until its backward
  pass: for a deep LSTM, the stacked [x; h], the gate activations, cells and products of every
  layer, several times the values of its state.
  `unroll(..., recompute=True)` wraps each step in this: a step keeps only its inputs (parameters,
  the rule's state, the minibatch) and runs forward again when the backward pass reaches it:
  memory O(T x state) rather than O(T x activations), for one more forward pass per step (the
  cost in time: docs/performance.md). The values are the same to rounding: the
  step's own function may fuse its float ops otherwise, and the steps' shares of the meta-gradient
  are summed in another order.

  Both passes are functions that TensorFlow calls rather than inlines, one body for all T steps:
  written out T times, the graph itself would take most of the memory the activations give back. A step's
  backward call takes the gradients of all its outputs, so it runs once the later step's is done,
  one step at a time (tf.recompute_grad waits for its first output's alone, which for the rule's
  updates are all ready at once, so that every step would be recomputed together).

  Args:
    fn: `fn(inputs, constants) -> outputs`, nests of tensors whose structure stays the same from
      call to call. The outer tape differentiates through `inputs`; `constants` (data, problem
      constants) get no gradient.
  """

  def __init__(self, fn):
    self.fn = fn
    self._structure = self._outputs = None  # the nests, for flattening: set by the first call
    no_inline = {"_noinline": True}
    self._forward = tf.function(self._forward_flat, autograph=False,
                                experimental_attributes=no_inline)
    self._backward = tf.function(self._backward_flat, autograph=False,
                                 experimental_attributes=no_inline)

  def _forward_flat(self, flat):
    outputs = self.fn(*tf.nest.pack_sequence_as(self._structure, flat))
    self._outputs = outputs
    return tf.nest.flatten(outputs)

  def _backward_flat(self, flat, num_sources, output_gradients, variables):
    sources = [x for x in flat[:num_sources] if x.dtype.is_floating]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(sources + variables)
      outputs = self._forward_flat(flat)
    pairs = [(y, g) for y, g in zip(outputs, output_gradients) if g is not None]
    grads = iter(tape.gradient([y for y, _ in pairs], sources + variables,
                               output_gradients=[g for _, g in pairs],
                               unconnected_gradients=tf.UnconnectedGradients.ZERO))
    source_grads = [next(grads) if x.dtype.is_floating else None for x in flat[:num_sources]]
    return source_grads + [None] * (len(flat) - num_sources), list(grads)

  def __call__(self, inputs, constants):
    self._structure = (inputs, constants)
    num_sources = len(tf.nest.flatten(inputs))

    @tf.custom_gradient
    def step(*flat):
      outputs = self._forward(list(flat))

      def grad(*output_gradients, variables=None):
        # Integer outputs (step counters) have no gradient.
        output_gradients = [g if y.dtype.is_floating else None
                            for y, g in zip(outputs, output_gradients)]
        return self._backward(list(flat), num_sources, output_gradients, list(variables or []))

      return outputs, grad

    flat_outputs = step(*tf.nest.flatten(self._structure))
    return tf.nest.pack_sequence_as(self._outputs, flat_outputs)


def _step(problem, rule, params, net_state, constants, batch, second_derivatives):
  """One optimizee step: (loss at params, params + update, the rule's next state)."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    loss = problem.loss(params, constants, batch)
  gradients = tape.gradient(loss, params)
  # A lookup (an embedding) gives IndexedSlices; the rules take every coordinate's gradient.
  gradients = {name: tf.convert_to_tensor(g) for name, g in gradients.items()}
  if not second_derivatives:
    gradients = tf.nest.map_structure(tf.stop_gradient, gradients)
  updates, net_state = rule(gradients, net_state)
  return loss, {name: params[name] + updates[name] for name in params}, net_state


def unroll(problem, rule, state, batches, second_derivatives=False, recompute=False):
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
    recompute: have an outer tape recompute each step's activations rather than keep them (see
      `Recomputed`): less memory for a longer backward pass, the same values to rounding.

  Returns:
    losses: [T + 1], f(x_0) .. f(x_T).
    final UnrollState.
  """
  num_steps = tf.nest.flatten(batches)[0].shape[0] - 1
  params, net_state, constants = state

  def step(carried, data):
    return _step(problem, rule, *carried, *data, second_derivatives)

  step = Recomputed(step) if recompute else step
  losses = []
  for t in range(num_steps):
    loss, params, net_state = step((params, net_state), (constants, _batch_at(batches, t)))
    losses.append(loss)
  losses.append(problem.loss(params, constants, _batch_at(batches, num_steps)))
  return tf.stack(losses), UnrollState(params, net_state, constants)
