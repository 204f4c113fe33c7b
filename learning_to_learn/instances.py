"""Several optimizee instances as one optimizee with a leading instance axis.

Unrolled one after another, N instances cost N LSTM calls a step, each over one instance's
coordinates. Stacked, every parameter gains a leading axis of size N and a coordinatewise rule
(NetAssignments) sees all N instances' coordinates in one vector, so each step makes one LSTM call
over N times the coordinates: fewer, larger ops. The coordinates stay
independent, so the updates, losses and meta-gradient are those of the loop, to rounding.
"""

import tensorflow as tf


def _stack(nests, axis=0):
  return tf.nest.map_structure(lambda *ts: tf.stack(ts, axis=axis), *nests)


def _unstack(nest, num, axis=0):
  leaves = [tf.unstack(t, num=num, axis=axis) for t in tf.nest.flatten(nest)]
  return [tf.nest.pack_sequence_as(nest, [parts[i] for parts in leaves]) for i in range(num)]


class StackedProblem:
  """N instances of `problem`, each drawn from its own seed, as one problem.

  `init` and `sample_batches` take a sequence of N seeds (the ones the instances would get one by
  one); params and constants gain a leading axis of N, batches an axis of N after the step axis.
  `loss` returns the N instances' losses, a [N] vector: its gradient with respect to the stacked
  parameters is each instance's own gradient, since no instance's loss reads another's parameters.

  Each instance's loss is the problem's own function on its slice, so every problem (MLPs, conv
  nets, quadratics) stacks without a batched version of its own.
  """

  def __init__(self, problem, num_instances):
    if int(num_instances) != num_instances or num_instances < 1:
      raise ValueError(f"num_instances={num_instances} must be a positive integer.")
    self.problem = problem
    self.num_instances = int(num_instances)
    self.param_names = problem.param_names

  def _check(self, seeds):
    if len(seeds) != self.num_instances:
      raise ValueError(f"got {len(seeds)} seeds for {self.num_instances} stacked instances.")

  def init(self, seeds):
    self._check(seeds)
    params, constants = zip(*[self.problem.init(s) for s in seeds])
    return _stack(params), _stack(constants)

  def sample_batches(self, seeds, num_batches):
    self._check(seeds)
    return _stack([self.problem.sample_batches(s, num_batches) for s in seeds], axis=1)

  def loss(self, params, constants, batch):
    n = self.num_instances
    return tf.stack([self.problem.loss(p, c, b) for p, c, b in
                     zip(_unstack(params, n), _unstack(constants, n), _unstack(batch, n))])

  def instance(self, nest, index):
    """Instance `index`'s slice of a stacked nest (params, constants, batches at one step)."""
    return tf.nest.map_structure(lambda t: t[index], nest)
