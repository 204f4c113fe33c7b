"""The meta-optimizer: learned update rules trained by gradient descent on an unrolled optimizee.

Andrychowicz et al. 2016, section 2: the meta-loss of an unroll is sum_{t=0..T} f(x_t), the
gradient of that sum flows into the rule's weights (Adam takes the meta-step), and the optimizee
parameters and the rule's state carry on to the next unroll until the epoch ends.
"""

import functools
from typing import NamedTuple
import weakref

import keras
import numpy as np
import sonnet as snt
import tensorflow as tf

from learning_to_learn import fused_lstm
from learning_to_learn import instances
from learning_to_learn import networks
from learning_to_learn import optimizer_files
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import step_size
from learning_to_learn import unroll as unroll_lib


def lstm_config(preprocess_name="LogAndSign", preprocess_options=None, scale=0.01):
  """The net config of one coordinatewise LSTM of two layers of 20 units, the paper's (section 3).

  Args:
    preprocess_name: the gradient preprocessing (preprocess.py).
    preprocess_options: its options; None: LogAndSign's k = 5, the reference's.
    scale: the output scale (reference: 0.01; the paper's Appendix A: 0.1).
  """
  if preprocess_options is None:
    preprocess_options = {"k": 5}
  return {"net": "CoordinateWiseDeepLSTM",
          "net_options": {"layers": (20, 20), "preprocess_name": preprocess_name,
                          "preprocess_options": dict(preprocess_options), "scale": scale}}


DEFAULT_NET_CONFIG = {"coordinatewise": lstm_config()}


class NetAssignments:
  """Which network updates which optimizee parameters, applied to a dict of gradients.

  A coordinatewise network sees all of its parameters concatenated into one vector, so an MLP's
  weights and biases go through one batched LSTM call rather than one per variable: the updates are
  the same (each coordinate is independent), the matmuls bigger and fewer. Other networks (kernel,
  standard) are called per parameter.

  Args:
    nets: key -> update rule (a baselines.UpdateRule: learned or hand-designed).
    net_assignments: None (only if there is one net: it takes every parameter) or a list of
      (key, [parameter names]) as the reference's `simple-multi` and `cifar-multi` configs give.
    param_names: every optimizee parameter name; each must be assigned exactly once.
    batch_axes: 1 when every parameter has a leading axis of independent instances
      (instances.StackedProblem), else 0: a net with `scale_adaptation` adapts each instance's
      step of each parameter tensor apart (`step_size`), and its group's state then carries
      (the net's state, one step_size.AdaptationState per parameter); a net with
      `normalize_output` has each instance's update of each tensor normalized apart.
  """

  def __init__(self, nets, net_assignments, param_names, batch_axes=0):
    param_names = sorted(param_names)
    if net_assignments is None:
      if len(nets) != 1:
        raise ValueError(f"net_assignments=None needs exactly one net, got {sorted(nets)}; "
                         "pass net_assignments=[(key, [parameter names]), ...].")
      net_assignments = [(next(iter(nets)), param_names)]
    seen = set()
    self.groups = []
    for key, names in net_assignments:
      if key not in nets:
        raise ValueError(f"net_assignments names net {key!r}, which is not among the configured "
                         f"nets {sorted(nets)}.")
      if any(k == key for k, _ in self.groups):
        raise ValueError(f"net_assignments lists net {key!r} twice; merge its parameter lists.")
      unknown = sorted(set(names) - set(param_names))
      if unknown:
        raise ValueError(f"net_assignments assigns {unknown}, which the problem does not have; "
                         f"its parameters are {param_names}.")
      twice = sorted(seen & set(names))
      if twice:
        raise ValueError(f"net_assignments assigns {twice} to more than one net.")
      seen.update(names)
      self.groups.append((key, list(names)))
    missing = sorted(set(param_names) - seen)
    if missing:
      raise ValueError(f"net_assignments leaves {missing} without a net; assign every parameter.")
    self.nets = nets
    self._batch_axes = int(batch_axes)

  def _adaptation(self, key):
    return getattr(self.nets[key], "scale_adaptation", 0.0)

  def _normalized(self, key):
    return getattr(self.nets[key], "normalize_output", False)

  def _signal_scaled(self, key):
    return getattr(self.nets[key], "signal_scaled", False)

  def initial_state(self, params):
    state = []
    for key, names in self.groups:
      net = self.nets[key]
      if net.coordinatewise:
        net_state = net.initial_state_for_inputs(_concat(params, names))
      else:
        net_state = tuple(net.initial_state_for_inputs(params[n]) for n in names)
      extras = []
      if self._adaptation(key):
        multiplier = getattr(net, "initial_multiplier", 1.0)
        extras.append(tuple(step_size.initial_state(params[n], self._batch_axes, multiplier)
                            for n in names))
      if self._signal_scaled(key):
        extras.append(tuple(step_size.initial_signal_state(params[n]) for n in names))
      state.append((net_state, *extras) if extras else net_state)
    return tuple(state)

  def __call__(self, gradients, net_state):
    updates, next_state = {}, []
    for (key, names), state in zip(self.groups, net_state):
      net, rate, signal = self.nets[key], self._adaptation(key), self._signal_scaled(key)
      if rate or signal:
        state, *extras = state
        adaptation = extras.pop(0) if rate else None
        signal_states = extras.pop(0) if signal else None
      if net.coordinatewise:
        flat_update, state = net(_concat(gradients, names), state)
        group = _split(flat_update, gradients, names)
      else:
        outputs = [net(gradients[n], s) for n, s in zip(names, state)]
        group = {n: u for n, (u, _) in zip(names, outputs)}
        state = tuple(s for _, s in outputs)
      if self._normalized(key):
        group = {n: step_size.normalize(u, net.scale, self._batch_axes) for n, u in group.items()}
      extras = []
      if signal:
        ratios = [step_size.signal_ratio(gradients[n], s, self._batch_axes)
                  for n, s in zip(names, signal_states)]
        group = {n: step_size.scaled(group[n], r, self._batch_axes)
                 for n, (r, _) in zip(names, ratios)}
        signal_states = tuple(s for _, s in ratios)
      if rate:
        averaging = getattr(net, "adaptation_averaging", 0.0)
        adapted = [step_size.adapt(group[n], gradients[n], a, rate, self._batch_axes, averaging)
                   for n, a in zip(names, adaptation)]
        group = {n: u for n, (u, _) in zip(names, adapted)}
        extras.append(tuple(a for _, a in adapted))
      if signal:
        extras.append(signal_states)
      if extras:
        state = (state, *extras)
      updates.update(group)
      next_state.append(state)
    return updates, tuple(next_state)


class ImitatingRule:
  """A student rule that moves the optimizee, with a teacher run beside it on the same gradients.

  Chen et al. 2020 ("Training Stronger Baselines for Learning to Optimize", section 3.3)
  warm-start and regularize learned optimizers by imitating a hand-designed one. Here the
  trajectory is the student's own, so the student learns the teacher's update in the states it
  will itself reach; the state carries the running sum, over steps, of the squared distance
  between the two updates relative to the teacher's squared update norm (the teacher is a
  constant target to the meta-gradient).

  State: (student state, teacher state, imitation error so far). With `stacked`, parameters carry
  a leading instance axis (instances.StackedProblem) and the error is one per instance, [N].
  """

  def __init__(self, student, teacher, stacked=False):
    self.student, self.teacher, self.stacked = student, teacher, stacked

  def initial_state(self, params):
    first = next(iter(params.values()))
    error = tf.zeros(tf.shape(first)[:1]) if self.stacked else tf.constant(0.0)
    return self.student.initial_state(params), self.teacher.initial_state(params), error

  def _sum(self, tensors):
    # Over each instance's coordinates: [N] when stacked, else a scalar.
    if self.stacked:
      return tf.add_n([tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=1)
                       for t in tensors])
    return tf.add_n([tf.reduce_sum(t) for t in tensors])

  def __call__(self, gradients, state):
    student_state, teacher_state, error = state
    updates, student_state = self.student(gradients, student_state)
    targets, teacher_state = self.teacher(gradients, teacher_state)
    targets = tf.nest.map_structure(tf.stop_gradient, targets)
    distance = self._sum([tf.square(updates[n] - targets[n]) for n in updates])
    size = self._sum([tf.square(targets[n]) for n in targets])
    return updates, (student_state, teacher_state, error + distance / (size + 1e-20))


def _result(losses, moved, imitation):
  """The UnrollResult of one instance's unroll: its T + 1 losses and how far its parameters moved."""
  num_steps = tf.cast(tf.shape(losses)[0] - 1, tf.float32)
  return UnrollResult(tf.reduce_sum(losses), losses[-1], losses, _global_norm(moved) / num_steps,
                      tf.constant(0.0), _all_finite(losses), imitation)


def _unroll_results(problem, rule, state, batches, second_derivatives, recompute=False):
  """One unroll from `state`: (a tuple of one UnrollResult per instance, the final UnrollState).

  One instance, or N of an instances.StackedProblem, whose losses come back as [T + 1, N].
  """
  start = state
  losses, state = unroll_lib.unroll(problem, rule, state, batches, second_derivatives, recompute)
  moved = {n: state.params[n] - start.params[n] for n in start.params}
  imitation = (state.net_state[2] - start.net_state[2] if isinstance(rule, ImitatingRule)
               else tf.zeros(tf.shape(losses)[1:]))
  if not isinstance(problem, instances.StackedProblem):
    return (_result(losses, moved, imitation),), state
  return tuple(_result(losses[:, i], problem.instance(moved, i), imitation[i])
               for i in range(problem.num_instances)), state


OBJECTIVES = ("sum", "log", "late")


def meta_objective(losses, objective="sum"):
  """What a meta-step descends, from the T + 1 losses f(x_0) .. f(x_T) of an unroll.

  "sum": sum_t f(x_t), the paper's (section 2), which the large early losses dominate.
  "log": sum_t log f(x_t) (Wichrowska et al. 2017): each step's relative progress counts alike,
  so the late steps, where the loss is small, weigh as much as the first. Losses below 1e-30
  count as 1e-30, so a loss of exactly zero gives a finite objective.
  "late": sum_t (t + 1) / (T + 1) f(x_t), weights rising linearly to 1 at the unroll's end.
  """
  if objective == "sum":
    return tf.reduce_sum(losses)
  if objective == "late":
    count = tf.shape(losses)[0]
    weights = tf.cast(tf.range(1, count + 1), losses.dtype) / tf.cast(count, losses.dtype)
    return tf.reduce_sum(weights * losses)
  if objective == "log":
    return tf.reduce_sum(tf.math.log(tf.maximum(losses, 1e-30)))
  raise ValueError(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}.")


def eval_jit_compile(jit_compile, nets, problem=None):
  """Whether an evaluation unroll of `nets` on `problem` compiles with XLA: `jit_compile` where
  given; for None, XLA unless one of the nets runs its whole update as one op there
  (`networks.forward_only`), which is faster still on CPU and which XLA cannot run, or the
  problem's loss convolves (`convolves`: XLA's CPU convolutions are several times slower than
  TensorFlow's own) or draws random numbers (`loss_is_random`: XLA would draw other ones than
  the kernels, on which other rules may run; docs/performance.md)."""
  if jit_compile is not None:
    return bool(jit_compile)
  if networks.runs_whole_step(nets):
    return False
  return problem is None or not (convolves(problem) or loss_is_random(problem))


def convolves(problem):
  """Whether `problem`'s loss runs a convolution."""
  return any(op.startswith(("Conv", "DepthwiseConv")) for op in _loss_op_types(problem))


def loss_is_random(problem):
  """Whether `problem`'s loss draws random numbers (dropout, noise), beyond its minibatches."""
  return any(_draws(op) for op in _loss_op_types(problem))


def _draws(op_type):
  # Stateless and stateful random ops, not control flow ("StatelessIf") or calls
  # ("StatefulPartitionedCall").
  return ("Random" in op_type or "TruncatedNormal" in op_type or "Multinomial" in op_type
          or op_type.startswith(("StatefulUniform", "StatefulStandardNormal", "Rng"))
          or op_type == "StatelessShuffle")


_op_types = weakref.WeakKeyDictionary()  # problem -> _loss_op_types(problem), traced once


def _traced_loss(problem, params, constants, batch):
  return problem.loss(params, constants, batch)


def _loss_op_types(problem):
  """The op types of `problem`'s loss (functions it calls included), traced on one instance's
  first minibatch, which are drawn eagerly, outside the trace."""
  try:
    return _op_types[problem]
  except (KeyError, TypeError):  # not traced yet, or a problem that cannot be a weak key
    pass
  seed = seeds_lib.make_seed(0)
  params, constants = problem.init(seed)
  batch = tf.nest.map_structure(lambda b: b[0], problem.sample_batches(seed, 1))
  definition = tf.function(functools.partial(_traced_loss, problem),
                           autograph=False).get_concrete_function(
      params, constants, batch).graph.as_graph_def()
  types = frozenset(node.op for node in definition.node).union(
      node.op for function in definition.library.function for node in function.node_def)
  try:
    _op_types[problem] = types
  except TypeError:
    pass
  return types


def _concat(tensors, names):
  # each [shape_i] -> [sum_i size_i]
  return tf.concat([tf.reshape(tensors[n], [-1]) for n in names], axis=0)


def _split(flat, like, names):
  sizes = [int(np.prod(like[n].shape)) for n in names]
  return {n: tf.reshape(part, tf.shape(like[n]))
          for n, part in zip(names, tf.split(flat, sizes, axis=0))}


class UnrollResult(NamedTuple):
  meta_loss: tf.Tensor  # sum of the T + 1 losses of the unroll
  final_loss: tf.Tensor  # f(x_T), the loss after the unroll's last step
  losses: tf.Tensor  # [T + 1]
  update_norm: tf.Tensor  # ||x_T - x_0|| / T, the mean size of one step's update
  meta_gradient_norm: tf.Tensor  # global norm of the meta-gradient (0 when not training)
  finite: tf.Tensor  # whether the losses and the meta-gradient are all finite
  imitation: tf.Tensor = 0.0  # sum over the steps of the relative imitation error (ImitatingRule)


def _global_norm(tensors):
  return tf.linalg.global_norm(tf.nest.flatten(tensors)) if tf.nest.flatten(tensors) else 0.0


def _all_finite(tensors):
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tf.nest.flatten(tensors)])


@snt.allow_empty_variables
class MetaOptimizer(snt.Module):
  """Learning-to-learn meta-optimizer: owns the learned networks, builds their training.

  Args:
    **net_config: key -> {"net": class name, "net_options": {...}, "net_path": optional file},
      as the reference's `util.get_config` gives; several keys with `net_assignments` let different
      networks update different parameters. Empty: one coordinatewise 20-20 LSTM with LogAndSign
      (k = 5) and output scale 0.01, the reference's default.
  """

  def __init__(self, **net_config):
    # A bad $L2L_LSTM_MATMUL is refused here, in one line, not from inside a traced function.
    fused_lstm.matmul_precision()
    super().__init__(name="meta_optimizer")
    self._config = net_config or DEFAULT_NET_CONFIG
    self.nets = {key: optimizer_files.network(**cfg) for key, cfg in self._config.items()}

  def assignments(self, problem, net_assignments=None, batch_axes=0):
    return NetAssignments(self.nets, net_assignments, problem.param_names, batch_axes)

  def meta_loss(self, problem, state, batches, net_assignments=None, second_derivatives=False):
    """One unroll from `state`; returns (UnrollResult, final UnrollState). Pure: tape it."""
    rule = self.assignments(problem, net_assignments)
    results, state = _unroll_results(problem, rule, state, batches, second_derivatives)
    return results[0], state

  def meta_minimize(self, problem, unroll_length, learning_rate=0.01, **kwargs):
    """A MetaTrainer that meta-trains these networks on `problem` with Adam."""
    return MetaTrainer(self, problem, unroll_length, learning_rate=learning_rate, **kwargs)

  def save(self, path):
    """Writes each learned network to `path/<key>.npz`; returns key -> file."""
    return optimizer_files.save_all(self.nets, path)


def _check_trainer_arguments(unroll_length, learning_rate, objective, clip_meta_gradient,
                             clip_meta_gradient_value, num_instances, replicas):
  """Raises a one-line ValueError for the first bad argument of MetaTrainer."""
  if int(unroll_length) != unroll_length or unroll_length <= 0:
    raise ValueError(f"unroll_length={unroll_length} must be a positive integer (reference: 20).")
  if objective not in OBJECTIVES:
    raise ValueError(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}.")
  if clip_meta_gradient_value is not None and not clip_meta_gradient_value > 0:
    raise ValueError(f"clip_meta_gradient_value={clip_meta_gradient_value} must be positive, "
                     "or None to not clip.")
  schedule = isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule)
  if not schedule and not learning_rate > 0:
    raise ValueError(f"learning_rate={learning_rate} must be positive (reference: 0.001).")
  if clip_meta_gradient is not None and not clip_meta_gradient > 0:
    raise ValueError(f"clip_meta_gradient={clip_meta_gradient} must be positive, or None to "
                     "not clip.")
  if int(num_instances) != num_instances or num_instances <= 0 or num_instances % replicas:
    raise ValueError(f"num_instances={num_instances} must be a positive multiple of the "
                     f"{replicas} replicas, so that each replica unrolls the same number.")


class MetaTrainer:
  """Meta-trains a MetaOptimizer on one problem: epochs of unrolls, one Adam meta-step per unroll.

  A thin stateful shell around pure compiled functions: it holds the current optimizee states
  between calls; `reset` starts an epoch; `train_unroll` runs one unroll and a meta-step;
  `eval_unroll` runs one unroll without touching the weights.

  Each meta-step unrolls `num_instances` optimizee instances and descends their mean meta-loss. Under
  a tf.distribute strategy each replica unrolls its share of them, the meta-gradients are summed
  across replicas, and one Adam step keeps every replica's networks identical: the meta-step is the
  same, to float rounding, for any number of replicas.

  Args:
    meta_optimizer: the MetaOptimizer whose networks are trained; under a strategy it must have been
      built inside `strategy.scope()`.
    problem: the optimizee (problems.py).
    unroll_length: T, optimizee steps per unroll and per meta-step (reference: 20).
    learning_rate: Adam's rate for the meta-step (reference default 0.01 here, 0.001 in train.py),
      or a keras LearningRateSchedule of the meta-step count.
    net_assignments: see NetAssignments.
    second_derivatives: backpropagate through the optimizee gradients too.
    clip_meta_gradient: if set, clip the meta-gradient to this global norm.
    objective: "sum" (the paper's) or "log"; see `meta_objective`.
    clip_meta_gradient_value: if set, clip every meta-gradient entry to [-value, value] (after
      any global-norm clipping).
    teacher: a net config ({key: {"net": "Adam", "net_options": {...}}}) of a hand-designed rule to
      imitate (see ImitatingRule), or None. The meta-step then descends
      `objective_weight * objective + imitation_weight * imitation error`; both weights are
      variables (`self.objective_weight`, `self.imitation_weight`) that a caller may change
      between meta-steps, e.g. to warm-start by imitation alone, without retracing.
    jit_compile: compile the unroll with XLA: True, False, or None for the faster of the two on
      CPU: TensorFlow's own kernels for training, where XLA fuses the LSTM's gate gradients into
      one slow loop, and for evaluation unrolls XLA unless a coordinatewise network's whole
      update runs as one op or the problem's loss convolves or draws random numbers
      (`eval_jit_compile`; docs/performance.md).
    num_instances: optimizee instances per meta-step, over all replicas (reference: 1).
    recompute: keep only each optimizee step's inputs (parameters, network state, minibatch) for
      the meta-gradient and recompute the step in the backward pass (unroll.Recomputed): the
      memory an unroll holds grows by the state per step (80 floats a coordinate for 20-20 LSTMs)
      rather than by every activation, for one more forward pass per step (docs/performance.md).
      The same values to rounding. Off by default, being slower.
    batch_instances: unroll a replica's instances as one instances.StackedProblem, so that each
      step makes one call of each network over every instance's coordinates rather than one per
      instance: the same meta-gradient to rounding, faster where a step's fixed cost dominates,
      as on small optimizees (docs/performance.md).
      Coordinatewise networks only.
    strategy: a tf.distribute.Strategy; None for the current one (the default: no distribution).
    optimizer: the Keras optimizer to take the meta-steps with, e.g. another trainer's, so that
      trainers of several problems share one Adam; None: a new Adam at `learning_rate`.

  A meta-step whose losses or meta-gradient are not finite on any replica is not applied: the
  weights never see a NaN. `train_unroll` reports it in `result.finite`; the caller decides
  (train.py resets the epoch).
  """

  def __init__(self, meta_optimizer, problem, unroll_length, learning_rate=0.01,
               net_assignments=None, second_derivatives=False, clip_meta_gradient=None,
               jit_compile=None, num_instances=1, strategy=None, objective="sum",
               clip_meta_gradient_value=None, teacher=None, recompute=False,
               batch_instances=False, optimizer=None):
    self.strategy = strategy or tf.distribute.get_strategy()
    _check_trainer_arguments(unroll_length, learning_rate, objective, clip_meta_gradient,
                             clip_meta_gradient_value, num_instances,
                             self.strategy.num_replicas_in_sync)
    self.problem = problem
    self.unroll_length = int(unroll_length)
    self.second_derivatives = second_derivatives
    self.recompute = bool(recompute)
    self.clip_meta_gradient = clip_meta_gradient
    self.clip_meta_gradient_value = clip_meta_gradient_value
    self.objective = objective
    self.num_instances = int(num_instances)
    self._local_instances = self.num_instances // self.strategy.num_replicas_in_sync
    self.rule, self._stacked = self._make_rule(meta_optimizer, net_assignments, teacher,
                                               batch_instances)
    self.variables = meta_optimizer.trainable_variables
    outside = [v.name for v in self.variables
               if not self.strategy.extended.variable_created_in_scope(v)]
    if outside:
      raise ValueError(f"the networks' variables ({outside[0]}, ...) were not created under this "
                       "strategy: build the MetaOptimizer inside `strategy.scope()`.")
    with self.strategy.scope():
      self.objective_weight = tf.Variable(1.0, trainable=False, name="objective_weight")
      self.imitation_weight = tf.Variable(1.0 if teacher else 0.0, trainable=False,
                                          name="imitation_weight")
      self.optimizer = optimizer or keras.optimizers.Adam(learning_rate, epsilon=1e-8)
      if self.variables and not self.optimizer.built:
        self.optimizer.build(self.variables)
    self.states = None  # per local instance; a PerReplica nest under a multi-replica strategy
    self._compile(jit_compile, list(meta_optimizer.nets.values()))

  def _make_rule(self, meta_optimizer, net_assignments, teacher, batch_instances):
    """(the rule that moves the optimizee, the StackedProblem of a replica's instances or None)."""
    batch_axes = 1 if batch_instances else 0  # a stacked problem's leading instance axis
    rule = meta_optimizer.assignments(self.problem, net_assignments, batch_axes)
    stacked = None
    if batch_instances:
      others = sorted(k for k, net in meta_optimizer.nets.items() if not net.coordinatewise)
      if others:
        raise ValueError(f"batch_instances needs coordinatewise networks; {others} are not: "
                         "leave batch_instances off for them.")
      stacked = instances.StackedProblem(self.problem, self._local_instances)
    if teacher is not None:
      teachers = {key: optimizer_files.network(**config) for key, config in teacher.items()}
      rule = ImitatingRule(rule, NetAssignments(teachers, None, self.problem.param_names,
                                                 batch_axes),
                           stacked=bool(batch_instances))
    return rule, stacked

  def _compile(self, jit_compile, nets):
    # Replica-local work, compiled as `jit_compile` says; the collectives stay outside XLA. No
    # autograph: the library branches on Python values only, and converting its functions was
    # most of the tracing time; problems.Problem converts a user's problem's methods itself.
    self._local_train_fn = tf.function(self._local_train, jit_compile=bool(jit_compile),
                                        autograph=False)
    self._local_eval_fn = tf.function(
        self._local_eval, jit_compile=eval_jit_compile(jit_compile, nets, self.problem),
        autograph=False)
    # One method each rather than one closure for all: TF's retracing warning counts traces by
    # code object, and would take four functions traced once each for one function retraced.
    self._reset_fn = tf.function(self._reset_on_replicas, autograph=False)
    self._restart_fn = tf.function(self._restart, autograph=False)
    self._train_fn = tf.function(self._train_on_replicas, autograph=False)
    self._eval_fn = tf.function(self._eval_on_replicas, autograph=False)
    self._apply_fn = tf.function(self._apply_on_replicas, autograph=False)

  def _reset_on_replicas(self, seed):
    return self.strategy.run(self._reset, args=(seed,))

  def _train_on_replicas(self, states, seed):
    return self.strategy.run(self._train, args=(states, seed))

  def _eval_on_replicas(self, states, seed):
    return self.strategy.run(self._eval, args=(states, seed))

  def _apply_on_replicas(self, gradients):
    return self.strategy.run(self._apply, args=(gradients,))

  def _local_copy(self, value):
    # Values all-reduced on the replicas are identical: any local copy will do.
    return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], value)

  def _instance_seeds(self, seed):
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    first = tf.cast(replica, tf.int32) * self._local_instances
    return tuple(seeds_lib.instance_seed(seed, first + i) for i in range(self._local_instances))

  def _reset(self, seed):
    if self._stacked is not None:
      return (unroll_lib.initial_state(self._stacked, self.rule, self._instance_seeds(seed)),)
    return tuple(unroll_lib.initial_state(self.problem, self.rule, s)
                 for s in self._instance_seeds(seed))

  def _restart(self, states, seed, which):
    # `which`, a tuple of Python ints, is part of the trace: one trace per set of instances.
    seeds = self._instance_seeds(seed)
    return tuple(unroll_lib.initial_state(self.problem, self.rule, seeds[i]) if i in which
                 else state for i, state in enumerate(states))

  def _draw(self, seeds):
    # Each instance's minibatches (all instances' at once when stacked), drawn outside the
    # compiled unroll: under XLA, stateless random ops give other numbers than TensorFlow's kernels
    # for most seeds, and the same seed must draw the same minibatches whatever compiles the unroll.
    if self._stacked is not None:
      return (self._stacked.sample_batches(seeds, self.unroll_length + 1),)
    return tuple(self.problem.sample_batches(s, self.unroll_length + 1) for s in seeds)

  def _local_run(self, states, batches, recompute=False):
    # (one UnrollResult per instance, the states): one stacked state, or one state per instance.
    problem = self._stacked or self.problem
    results, next_states = [], []
    for state, instance_batches in zip(states, batches):
      instance_results, state = _unroll_results(problem, self.rule, state, instance_batches,
                                                self.second_derivatives, recompute)
      results.extend(instance_results)
      next_states.append(state)
    return tuple(results), tuple(next_states)

  def _local_eval(self, states, batches):
    with networks.forward_only():
      return self._local_run(states, batches)

  def _local_train(self, states, batches):
    with tf.GradientTape() as tape:
      results, states = self._local_run(states, batches, self.recompute)
      objective = tf.add_n([self.objective_weight * meta_objective(r.losses, self.objective)
                            + self.imitation_weight * r.imitation
                            for r in results]) / float(self.num_instances)
    return results, states, tape.gradient(objective, self.variables)

  def _mean_result(self, results):
    """The mean UnrollResult over every instance of every replica; `finite` only if all are."""
    context = tf.distribute.get_replica_context()
    sums = {f: tf.add_n([getattr(r, f) for r in results]) for f in UnrollResult._fields
            if f != "finite"}
    sums["finite"] = tf.add_n([1.0 - tf.cast(r.finite, tf.float32) for r in results])
    sums = context.all_reduce(tf.distribute.ReduceOp.SUM, sums)
    mean = {f: v / float(self.num_instances) for f, v in sums.items() if f != "finite"}
    return UnrollResult(finite=tf.equal(sums["finite"], 0.0), **mean)

  def _train(self, states, seed):
    results, states, gradients = self._local_train_fn(states,
                                                      self._draw(self._instance_seeds(seed)))
    result = self._mean_result(results)
    # Each replica keeps its own share of the meta-gradient (the optimizer sums them when it
    # applies); the global norm decides clipping and finiteness, the same on every replica.
    total = gradients
    if self.strategy.num_replicas_in_sync > 1 and gradients:
      total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    norm = _global_norm(total)
    if self.clip_meta_gradient is not None:
      gradients, _ = tf.clip_by_global_norm(gradients, self.clip_meta_gradient, use_norm=norm)
    if self.clip_meta_gradient_value is not None:
      bound = self.clip_meta_gradient_value
      gradients = [tf.clip_by_value(g, -bound, bound) for g in gradients]
    result = result._replace(meta_gradient_norm=norm,
                             finite=result.finite & tf.math.is_finite(norm))
    return result, states, gradients

  def _eval(self, states, seed):
    results, states = self._local_eval_fn(states, self._draw(self._instance_seeds(seed)))
    return self._mean_result(results), states

  def _apply(self, gradients):
    # Placed on the replica's device: a multi-worker all-reduce needs to know where its inputs are.
    gradients = [tf.identity(g) for g in gradients]
    self.optimizer.apply_gradients(zip(gradients, self.variables))

  def reset(self, seed):
    """Starts an epoch: fresh optimizee instances and problem constants, zero network state."""
    self.states = self._reset_fn(seed)

  def restart(self, seed, instances):
    """Starts the instances whose indices are in `instances` afresh, as `reset(seed)` would start
    them, and leaves the others where they are: staggered instances (training.Settings.stagger)
    each start over at their own step of the horizon, so that a meta-step mixes early and late
    phases. One replica, instances unrolled one by one (not batch_instances)."""
    if self._stacked is not None or self.strategy.num_replicas_in_sync > 1:
      raise ValueError("restarting some instances needs one replica and batch_instances off: "
                       "their states are then one per instance.")
    which = tuple(sorted({int(i) for i in instances}))
    if not which or which[0] < 0 or which[-1] >= self.num_instances:
      raise ValueError(f"instances={list(instances)} must be indices below num_instances="
                       f"{self.num_instances}.")
    if self.states is None:
      raise ValueError("restart() before reset(): start every instance with reset(seed) first.")
    self.states = self._restart_fn(self.states, seed, which)

  def train_unroll(self, seed):
    """One unroll from the carried states and, if all is finite, one meta-step."""
    result, self.states, gradients = self._train_fn(self.states, seed)
    result = self._local_copy(result)
    if self.variables and bool(result.finite):
      self._apply_fn(gradients)
    return result

  def eval_unroll(self, seed):
    """One unroll from the carried states, weights untouched; returns the mean UnrollResult."""
    result, self.states = self._eval_fn(self.states, seed)
    return self._local_copy(result)

  @property
  def state(self):
    """The UnrollState of the first instance (of the first local replica).

    With batch_instances, its params and constants are the first instance's slices and its
    net_state is every local instance's, stacked.
    """
    state = self._local_copy(self.states)[0]
    if self._stacked is None:
      return state
    return state._replace(params=self._stacked.instance(state.params, 0),
                          constants=self._stacked.instance(state.constants, 0))

  @property
  def trace_counts(self):
    """How often each compiled function was traced (1 each after warm-up: no retracing)."""
    functions = {"reset": self._reset_fn, "train": self._train_fn, "eval": self._eval_fn,
                 "local_train": self._local_train_fn, "local_eval": self._local_eval_fn}
    return {name: fn.experimental_get_tracing_count() for name, fn in functions.items()}
