"""Random rescaling of an optimizee, so that a learned optimizer meets every scale in training.

Chen et al. 2020 (and Open-L2O's `--if_scale`): each instance reparametrizes every parameter
tensor as w = c * theta with c drawn log-uniformly, and scales its loss by s drawn the same way.
The optimizer updates theta and sees the gradient c * s * grad_w f, so the gradient scales it meets
in training span the ranges' product; the optimum and the loss landscape's shape stay the same.
"""

import tensorflow as tf

from learning_to_learn import problems


def _log_uniform(seed, shape, bounds):
  low, high = (tf.math.log(float(b)) for b in bounds)
  return tf.exp(tf.random.stateless_uniform(shape, seed, low, high))


def _check_bounds(name, bounds):
  if bounds is None:
    return None
  low, high = (float(b) for b in bounds)
  if not 0 < low <= high:
    raise ValueError(f"{name}={bounds} must be (low, high) with 0 < low <= high, e.g. (0.1, 10).")
  return low, high


class Rescaled(problems.Problem):
  """`problem` with its parameters and loss rescaled per instance.

  Args:
    problem: any optimizee.
    param_scale: (low, high) of the log-uniform factor c of each parameter tensor, or None.
    loss_scale: (low, high) of the log-uniform factor s of the loss, or None.
  """

  def __init__(self, problem, param_scale=(0.1, 10.0), loss_scale=(0.1, 10.0)):
    self.problem = problem
    self.param_scale = _check_bounds("param_scale", param_scale)
    self.loss_scale = _check_bounds("loss_scale", loss_scale)
    self.param_names = problem.param_names

  @property
  def source(self):
    return getattr(self.problem, "source", "no data")

  @property
  def data_digest(self):
    return self.problem.data_digest  # AttributeError (so hasattr is False) if it has none

  def init(self, seed):
    inner_seed, param_seed, loss_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    params, constants = self.problem.init(inner_seed)
    num = len(self.param_names)
    scales = (_log_uniform(param_seed, [num], self.param_scale) if self.param_scale
              else tf.ones([num]))
    loss_scale = (_log_uniform(loss_seed, [], self.loss_scale) if self.loss_scale
                  else tf.ones([]))
    rescaled = {name: params[name] / scales[i] for i, name in enumerate(self.param_names)}
    return rescaled, (constants, scales, loss_scale)

  def sample_batches(self, seed, num_batches):
    return self.problem.sample_batches(seed, num_batches)

  def loss(self, params, constants, batch):
    inner, scales, loss_scale = constants
    weights = {name: params[name] * scales[i] for i, name in enumerate(self.param_names)}
    return loss_scale * self.problem.loss(weights, inner, batch)
