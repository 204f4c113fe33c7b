"""Persistent evolution strategies: a meta-gradient for truncated unrolls without their bias.

Backpropagation through a window of T steps sees only how the weights act within it, not how
they shaped the optimizee state the window started from: on long horizons its meta-gradient is
biased toward greedy rules (short-horizon bias, Wu et al. 2018), which is what the task family's
T = 20 runs showed (docs/training.md). PES (Vicol, Metz and Sohl-Dickstein 2021, arXiv 2112.13835)
estimates the gradient of each window's objective through the whole history instead. Antithetic
particle pairs unroll the same optimizee instance, one with the weights θ + ε_j, the other with
θ - ε_j, ε_j ~ N(0, σ² I) drawn anew each window; each pair keeps its own states across windows
and the sum ξ_j of the perturbations it has seen since its instance started, and

    g = 1 / (2 P σ²) Σ_j ξ_j (L(θ + ε_j) - L(θ - ε_j))

over the P pairs, L a window's meta-objective, is an unbiased estimate of that gradient (for
Gaussian smoothing of width σ). It needs only forward unrolls: no activations kept and no
derivatives of the optimizee's gradients to take, though the estimate includes their effect (it
matches backpropagation with second derivatives, not the paper's first-order meta-gradient).
"""

import re

import tensorflow as tf

from learning_to_learn import meta


class PESTrainer:
  """Takes meta-steps on PES estimates, with `trainer`'s evaluation unrolls and meta-optimizer.

  A drop-in for meta.MetaTrainer in training.Run (reset, train_unroll, optimizer, states).

  Args:
    trainer: a meta.MetaTrainer of one instance on one replica; its evaluation unroll runs each
      particle (with its XLA setting), its optimizer applies the estimates, its objective and
      meta-gradient clipping apply.
    num_pairs: P, antithetic particle pairs: 2P forward unrolls a meta-step.
    sigma: σ, the perturbations' standard deviation, in the weights' own units.
    variables: a regular expression: only the networks' variables whose names it matches
      (re.search) are perturbed and trained; None, all. The estimate's variance grows with the
      number of weights perturbed, so a small part of the network (its output layer, "linear")
      learns from far fewer particles than all of it.
  """

  def __init__(self, trainer, num_pairs, sigma, variables=None):
    if trainer.num_instances != 1 or trainer.strategy.num_replicas_in_sync != 1:
      raise ValueError("PES runs its own particles: give it a trainer of one instance on one "
                       "replica.")
    if int(num_pairs) != num_pairs or num_pairs < 1 or not sigma > 0:
      raise ValueError(f"PES needs num_pairs >= 1 and sigma > 0; got {num_pairs} and {sigma}.")
    self.trainer = trainer
    self.num_pairs, self.sigma = int(num_pairs), float(sigma)
    self.num_instances = 1
    self.variables = [v for v in trainer.variables
                      if variables is None or re.search(variables, v.name)]
    if not self.variables:
      raise ValueError(f"pes variables={variables!r} matches none of the networks' variables "
                       f"({', '.join(v.name for v in trainer.variables)}).")
    self.optimizer = trainer.optimizer
    self.states = None  # [2P] particle states (+ then - of each pair), None before reset
    self._sums = None  # [P] lists of ξ_j, one tensor per variable
    # The pair's arguments go in flat: TensorFlow matches nests of named tuples against the
    # function's signature at every call, at more cost than the unrolls of a small problem.
    self._pair_fn = tf.function(self._pair_flat, autograph=False)
    self._pair_structure = None  # the nest of _pair's arguments, set by the first call

  def reset(self, seed):
    """Starts an epoch: every particle on the instance `seed` draws, no perturbation seen."""
    self.trainer.reset(seed)
    self.states = [self.trainer.states] * (2 * self.num_pairs)
    self._sums = [[tf.zeros_like(v) for v in self.variables] for _ in range(self.num_pairs)]

  def perturbation(self, seed, pair):
    """ε of pair `pair` in the window of minibatch seed `seed`: one tensor per variable."""
    pair_seed = tf.random.experimental.stateless_fold_in(seed, pair)
    return [self.sigma * tf.random.stateless_normal(
        v.shape, tf.random.experimental.stateless_fold_in(pair_seed, i), dtype=v.dtype)
            for i, v in enumerate(self.variables)]

  def _pair(self, plus, minus, sums, weights, seed, pair):
    """Pair `pair`'s two particles one window on the minibatches of `seed`, from their states
    `plus` and `minus`, the variables at θ ± ε and left at θ - ε: (their new states, ξ_j with
    this window's ε added, L(θ + ε) - L(θ - ε), their two UnrollResults)."""
    epsilon = self.perturbation(seed, pair)
    sums = [s + e for s, e in zip(sums, epsilon)]
    states, results, objectives = [], [], []
    for sign, start in ((1.0, plus), (-1.0, minus)):
      for v, w, e in zip(self.variables, weights, epsilon):
        v.assign(w + sign * e)
      result, state = self.trainer._eval_fn(start, seed)  # pylint: disable=protected-access
      states.append(state)
      results.append(self.trainer._local_copy(result))  # pylint: disable=protected-access
      objectives.append(meta.meta_objective(results[-1].losses, self.trainer.objective))
    return states, sums, objectives[0] - objectives[1], results

  def _pair_flat(self, flat):
    return self._pair(*tf.nest.pack_sequence_as(self._pair_structure, flat))

  def estimate(self, seed):
    """Runs every particle one window on the minibatches of `seed`: (the PES estimate, one
    variable's tensor each; the UnrollResult of every particle, + and - of each pair in turn).

    Each pair is one call of a compiled function (perturbation, both unrolls, their objectives):
    op by op, the eager ops around the unrolls cost more than the unrolls of a small problem."""
    weights = [tf.identity(v) for v in self.variables]
    results, estimate = [], [tf.zeros_like(w) for w in weights]
    try:
      for pair in range(self.num_pairs):
        arguments = (self.states[2 * pair], self.states[2 * pair + 1], self._sums[pair], weights,
                     seed, tf.constant(pair, tf.int32))
        self._pair_structure = arguments
        states, self._sums[pair], difference, pair_results = self._pair_fn(
            tf.nest.flatten(arguments))
        self.states[2 * pair], self.states[2 * pair + 1] = states
        results.extend(pair_results)
        estimate = [g + s * difference for g, s in zip(estimate, self._sums[pair])]
    finally:
      for v, w in zip(self.variables, weights):
        v.assign(w)
    scale = 1.0 / (2.0 * self.num_pairs * self.sigma ** 2)
    return [g * scale for g in estimate], results

  def train_unroll(self, seed):
    """One window of every particle and, if all is finite, one meta-step on the estimate."""
    estimate, results = self.estimate(seed)
    norm = tf.linalg.global_norm(estimate)
    if self.trainer.clip_meta_gradient is not None:
      estimate, _ = tf.clip_by_global_norm(estimate, self.trainer.clip_meta_gradient, norm)
    finite = bool(tf.math.is_finite(norm)) and all(bool(r.finite) for r in results)
    if finite:
      self.optimizer.apply_gradients(zip(estimate, self.variables))

    def mean(field):
      return tf.add_n([getattr(r, field) for r in results]) / len(results)
    return meta.UnrollResult(meta_loss=mean("meta_loss"), final_loss=mean("final_loss"),
                             losses=mean("losses"), update_norm=mean("update_norm"),
                             meta_gradient_norm=norm, finite=tf.constant(finite))
