"""A trained coordinatewise LSTM optimizer as a Keras 3 optimizer, for `model.compile` and `fit`.

    from learning_to_learn import keras as l2l_keras
    model.compile(optimizer=l2l_keras.LearnedOptimizer(), loss=...)  # the shipped `general`

The update rule is the one meta-training learned (Andrychowicz et al. 2016, section 2.1), computed
with the library's own `networks.lstm_step` and `preprocess` functions; only where its weights and
state live differs: in Keras optimizer variables, so that `model.save`, `keras.models.load_model`,
`tf.train.Checkpoint` and `tf.distribute` treat them like Adam's moments.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import errors
from learning_to_learn import fused_lstm
from learning_to_learn import limits
from learning_to_learn import networks
from learning_to_learn import optimizer_files
from learning_to_learn import preprocess
from learning_to_learn import step_size

# The file of a train.py --save_path that this wrapper reads (optimizer_files owns the name).
NET_FILE = optimizer_files.SINGLE_NET_FILE
_SUPPORTED_NET = "CoordinateWiseDeepLSTM"
# Memory per model parameter of a training step, on the costlier path (TensorFlow's ops, which
# also run under XLA): the LSTM state's 320 bytes (80 floats for 20-20 layers) and each step's
# gate activations and temporaries. docs/performance.md gives the measurement.
BYTES_PER_PARAMETER = 1350
_CONFIG_FIX = "pass the dict LearnedOptimizer.get_config wrote, unchanged"
NON_FINITE_GRADIENT = (
    "LearnedOptimizer: a gradient holds NaN or infinite values, so the step was not applied (no "
    "variable moved): the loss diverged or overflowed; lower learning_rate, clip gradients "
    "(clipnorm=...), or look for NaN in the data and the model.")


def _non_finite_update(path):
  return (f"LearnedOptimizer: the learned update of {path} turned NaN or infinite from finite "
          "gradients (its input preprocessing overflowed), so it was not applied; scale the "
          "loss down or clip gradients (clipnorm=...).")


def _config_weights(network, expected):
  """get_config's weights as float32 arrays, checked entry by entry against `expected`.

  `expected`: {"lstm_0/w_gates": shape, ...} of the network the config's own options build;
  the names, shapes and finiteness that reading a file checks (optimizer_files.build), so that a
  config whose layers and weights disagree, or that lacks an entry (which the network would build
  from its default initializer: zero for "linear/b"), never runs as another update rule.
  """
  weights = network["weights"]
  layers = network["net_options"].get("layers")
  if not isinstance(weights, dict):
    raise ValueError(f"network['weights'] is a {type(weights).__name__}, expected a dict of "
                     f"'layer/field' -> nested lists of floats; {_CONFIG_FIX}.")
  missing = [key for key in expected if key not in weights]
  extra = sorted(set(weights) - set(expected), key=str)
  if missing or extra:
    found = " and ".join(
        [f"lack {', '.join(map(repr, missing))}"] * bool(missing)
        + [f"hold {', '.join(map(repr, extra))}"] * bool(extra))
    raise ValueError(f"network weights {found}, but a {_SUPPORTED_NET} with layers {layers} has "
                     f"exactly {', '.join(expected)}: the config's layers and weights disagree; "
                     f"{_CONFIG_FIX}.")
  arrays = {}
  for key, shape in expected.items():
    try:
      value = np.asarray(weights[key], dtype=np.float32)
    except (TypeError, ValueError):
      raise ValueError(f"network weights {key!r} is a {type(weights[key]).__name__} that is not "
                       f"an array of numbers, expected floats of shape {shape}; "
                       f"{_CONFIG_FIX}.") from None
    if value.shape != shape:
      raise ValueError(f"network weights {key!r} have shape {value.shape}, expected {shape} for "
                       f"layers {layers}: the config's layers and weights disagree; "
                       f"{_CONFIG_FIX}.")
    if not np.all(np.isfinite(value)):
      raise ValueError(f"network weights {key!r} hold NaN or infinite values; pass the dict "
                       "LearnedOptimizer.get_config wrote, from a run that did not diverge.")
    arrays[key] = value
  return optimizer_files.nested(arrays)


def _network_from_config(checkpoint, network):
  """The network a get_config `network` entry describes, checked as a file is checked."""
  if not isinstance(network, dict) or not {"net", "net_options", "weights"} <= set(network):
    raise ValueError(f"network={str(network)[:80]!r} is not what LearnedOptimizer.get_config "
                     "writes; pass a dict with net, net_options and weights, or network=None "
                     "to read the checkpoint.")
  _check_supported(checkpoint, network["net"])
  if not isinstance(network["net_options"], dict):
    raise ValueError(f"network['net_options'] is a {type(network['net_options']).__name__}, "
                     f"expected a dict of {_SUPPORTED_NET} options; {_CONFIG_FIX}.")
  options = {k: v for k, v in network["net_options"].items() if k != "initializer"}
  # Built first from the options alone: the weights it has are the ones the config must hold.
  expected = _build_from_config(network["net"], options)
  shapes = {key: value.shape for key, value in optimizer_files.flat(
      networks.weights(expected)).items()}
  initializer = _config_weights(network, shapes)
  return _build_from_config(network["net"], dict(options, initializer=initializer))


def _build_from_config(net, options):
  try:
    return networks.factory(net, options)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"network config does not build a {_SUPPORTED_NET} "
                     f"({errors.first_line(e)}); {_CONFIG_FIX}.") from None


def _check_supported(checkpoint, name):
  # Sgd and Adam are coordinatewise too, but only the LSTM's weights can live in this class.
  if name != _SUPPORTED_NET:
    raise ValueError(f"checkpoint={checkpoint!r} holds {name}, not {_SUPPORTED_NET}; "
                     "LearnedOptimizer runs only that network (one LSTM shared by every "
                     "coordinate): train one with train.py's coordinatewise net config.")


def _read_network(checkpoint, network):
  """Validates a network and returns (net_options, flat weights as float32 arrays).

  `network` (from `get_config`) wins over the file, so a model saved with this optimizer loads after
  the checkpoint file is gone. Either way every weight's name, shape and finiteness is checked.
  """
  checkpoint = os.fspath(checkpoint) if isinstance(checkpoint, os.PathLike) else checkpoint
  if network is None:
    path = optimizer_files.single_net_file(checkpoint)
    try:
      net = optimizer_files.load(path)  # one read of the file: class, options and weights
    except ValueError as e:
      raise ValueError(f"checkpoint={checkpoint!r}: {errors.first_line(e)}") from None
    _check_supported(checkpoint, type(net).__name__)
  else:
    net = _network_from_config(checkpoint, network)
  return net.get_config(), optimizer_files.flat(networks.weights(net))


def _value(variable):
  # Reads a Keras variable once as a tensor (on this replica's device under tf.distribute).
  return tf.convert_to_tensor(variable)


def _constant_initializer(value):
  def initializer(shape, dtype=None):
    return tf.constant(value, dtype=dtype or tf.float32, shape=shape)
  return initializer


@keras.saving.register_keras_serializable(package="learning_to_learn")
class LearnedOptimizer(keras.optimizers.Optimizer):
  """A trained coordinatewise deep-LSTM optimizer (paper section 2.1) behind the Keras API.

  For every model variable θ with gradient g, each coordinate c runs the shared network on its own
  state s_c (one hidden and one cell column per LSTM layer):
      x_c = preprocess(g_c);  (h_c, s_c') = LSTM_L(... LSTM_1(x_c, s_c));
      θ_c <- θ_c + learning_rate * scale * (w h_c + b).
  Shapes: g [any] -> [num_coords, 1] -> preprocess [num_coords, 1 or 2] -> LSTM layers
  [hidden, num_coords] (feature-major, as networks.lstm_step) -> linear [1, num_coords] -> × scale
  -> g's shape.

  Where things live: the network's weights ("lstm_<i>/w_gates", "lstm_<i>/b_gates", "linear/w",
  "linear/b") and every variable's LSTM state are Keras optimizer variables created in `build`, so
  `model.save`/`load_model`, `tf.train.Checkpoint` and `tf.distribute` save, restore and mirror
  them like Adam's moments. (A Sonnet module held by a Keras optimizer would not be saved: a
  naive wrapper comes back from `load_model` with fresh random weights.) Memory: the weights are
  shared (5,141 floats for 20-20 layers); the state costs 2 × sum(layers) floats per coordinate,
  80 for 20-20 layers, against Adam's 2 (2 more with the AdamNormalized preprocessing); a
  training step in all needs BYTES_PER_PARAMETER bytes per model parameter (docs/performance.md),
  and `build` refuses with a ValueError a model whose need exceeds the memory available, rather
  than letting it die mid-step.

  Sparse gradients (`tf.IndexedSlices`, e.g. from `keras.layers.Embedding`) give exactly the update
  of the equivalent dense gradient: rows absent from the batch have gradient zero, and their LSTM
  state still advances and their update is in general not zero, because a recurrent learned rule
  does not leave a coordinate alone when its gradient is zero (Adam's momentum does not either).
  So the gradient is densified, and a step costs O(vocabulary × hidden) whatever the batch touches.

  Saving: `get_config` holds `checkpoint` (the string, a record of where the rule came from) and
  `network` (the net's class, options and weights, about 5,000 numbers). The weights are the rule
  itself, not training state, so a config without them would rebuild a different optimizer; with
  them `from_config(get_config())` is the same rule and `load_model` never reads the checkpoint
  file, which may have moved or been deleted. The LSTM states travel only in the saved variables.

  Args:
    checkpoint: a shipped optimizer's name ("general", "mnist", "quadratic", see
      `optimizer_files.shipped_names()`), a directory written by `train.py --save_path` holding
      cw.npz, or an .npz file written by `optimizer_files.save`. Default "general": the one
      selected for models it was not trained on (`mnist` is the one meta-trained on the paper's
      MNIST MLP).
    learning_rate: multiplies the network's update; 1.0 (default) is exactly the trained rule.
      A float, a schedule or a callable, as for any Keras optimizer.
    name: the optimizer's name, a prefix of its variables' names.
    network: the `network` entry of `get_config()`; when given, `checkpoint` is not read. Leave it
      None unless you rebuild from a config.
    **kwargs: the base Keras options (clipnorm, clipvalue, global_clipnorm, weight_decay, use_ema,
      ema_momentum, loss_scale_factor, gradient_accumulation_steps, ...), with their usual meaning.

  Raises:
    FileNotFoundError: `checkpoint` names no shipped optimizer, directory or file.
    ValueError: the file is not a saved network, or the network is not a CoordinateWiseDeepLSTM.
    tf.errors.InvalidArgumentError, from a training step: a gradient, or the learned update made
      from it, is NaN or infinite. No variable moves: the gradients of every variable are
      checked before anything does, and each update before its variable moves (by then the
      one-op update has overwritten that variable's LSTM state and moments; docs/api.md). (Under
      XLA, which cannot raise, an update that is not finite is skipped for its variable and
      counted in `non_finite_updates`.)
  """

  def __init__(self, checkpoint="general", learning_rate=1.0, name="learned_optimizer", network=None,
               **kwargs):
    if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
      learning_rate = float(learning_rate)  # Keras accepts floats only; 1 means 1.0 here.
    # A bad $L2L_LSTM_MATMUL is refused here, in one line, not from inside a traced step.
    fused_lstm.matmul_precision()
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    net_options, weights = _read_network(checkpoint, network)
    self._checkpoint = os.fspath(checkpoint) if isinstance(checkpoint, os.PathLike) else checkpoint
    # JSON text, not a dict: Keras and TF would wrap a dict attribute in their tracking types.
    self._net_json = json.dumps({"net": _SUPPORTED_NET, "net_options": net_options})
    self._initial_weights = tuple(weights.items())
    self._num_layers = len(net_options["layers"])
    self._scale = float(net_options["scale"])
    self._scale_adaptation = step_size.check_rate(net_options.get("scale_adaptation", 0.0))
    self._initial_multiplier = step_size.check_initial_multiplier(
        net_options.get("initial_multiplier", 1.0))
    self._adaptation_averaging = step_size.check_averaging(
        net_options.get("adaptation_averaging", 0.0))
    self._normalize_output = bool(net_options.get("normalize_output", False))
    self._signal_scaled = bool(net_options.get("signal_scaled", False))
    preprocessor = preprocess.factory(net_options["preprocess_name"],
                                      net_options["preprocess_options"])
    # A bound method, not the module: TF would otherwise add the (empty) Sonnet module to every
    # checkpoint's object graph.
    self._preprocess = preprocessor.__call__
    self._stateful_preprocess = preprocess.is_stateful(preprocessor)

  def build(self, var_list):
    """Creates the shared network weights and, for each variable, its zero LSTM state.

    Eagerly, also where Keras builds the optimizer inside the traced train step (`model.fit`
    without a distribution strategy): there each of the dozens of variables would otherwise be
    created behind a run-once conditional of its own, most of the first step's tracing time.
    """
    if self.built:
      return
    with tf.init_scope():
      self._create_variables(var_list)

  def _create_variables(self, var_list):
    num_params = sum(int(np.prod(v.shape)) for v in var_list)
    limits.check_fits(num_params * BYTES_PER_PARAMETER,
                      f"LearnedOptimizer on {num_params:,} parameters (about "
                      f"{BYTES_PER_PARAMETER} bytes each)",
                      "train a smaller model, or use a machine with more memory.")
    super().build(var_list)
    self._net_weights = {}
    for key, value in self._initial_weights:
      self._net_weights[key] = self.add_variable(
          shape=value.shape, initializer=_constant_initializer(value), dtype="float32",
          name=key.replace("/", "_"))
    self._states = []
    for variable in var_list:
      num_coords = int(np.prod(variable.shape))
      prefix = getattr(variable, "path", variable.name).replace("/", "_").replace(":", "_")
      layers = []
      for i in range(self._num_layers):
        hidden_size = self._net_weights[f"lstm_{i}/b_gates"].shape[0] // 4
        layers.append(tuple(
            self.add_variable(shape=(hidden_size, num_coords), initializer="zeros",
                              dtype="float32", name=f"{prefix}_lstm_{i}_{field}")
            for field in ("hidden", "cell")))
      self._states.append(tuple(layers))
    # A stateful preprocessor (AdamNormalized) keeps its moments per coordinate, and its step
    # count per variable, as optimizer variables too.
    self._preprocess_states = []
    for variable in var_list if self._stateful_preprocess else ():
      num_coords = int(np.prod(variable.shape))
      prefix = getattr(variable, "path", variable.name).replace("/", "_").replace(":", "_")
      self._preprocess_states.append(preprocess.AdamNormalizedState(
          *(self.add_variable(shape=(num_coords, 1), initializer="zeros", dtype="float32",
                              name=f"{prefix}_preprocess_{field}") for field in ("m", "v")),
          self.add_variable(shape=(), initializer="zeros", dtype="float32",
                            name=f"{prefix}_preprocess_count")))
    # A rule with scale_adaptation keeps each variable's previous update and log step multiplier.
    self._adaptation_states = []
    for variable in var_list if self._scale_adaptation else ():
      prefix = getattr(variable, "path", variable.name).replace("/", "_").replace(":", "_")
      self._adaptation_states.append(step_size.AdaptationState(
          self.add_variable(shape=variable.shape, initializer="zeros", dtype="float32",
                            name=f"{prefix}_previous_update"),
          self.add_variable(shape=(), initializer=_constant_initializer(
              np.float32(np.log(self._initial_multiplier))), dtype="float32",
                            name=f"{prefix}_log_step_multiplier")))
    # Last, so that a .keras file written before it existed still lines up (load_own_variables).
    self._non_finite_updates = self.add_variable(shape=(), initializer="zeros", dtype="int64",
                                                 name="non_finite_updates")
    # A signal_scaled rule keeps Adam moments of each variable's gradients (step_size.signal_ratio).
    self._signal_states = []
    for variable in var_list if self._signal_scaled else ():
      prefix = getattr(variable, "path", variable.name).replace("/", "_").replace(":", "_")
      self._signal_states.append(step_size.SignalState(
          *(self.add_variable(shape=variable.shape, initializer="zeros", dtype="float32",
                              name=f"{prefix}_signal_{field}") for field in ("m", "v")),
          self.add_variable(shape=(), initializer="zeros", dtype="float32",
                            name=f"{prefix}_signal_count")))

  @property
  def network_weights(self):
    """Name ("lstm_0/w_gates", ..., "linear/b") -> the Keras variable holding that weight."""
    self._check_built("network_weights")
    return dict(self._net_weights)

  def lstm_state(self, variable):
    """The LSTM state of one model variable: a networks.LSTMState of Keras variables per layer."""
    self._check_built("lstm_state")
    return tuple(networks.LSTMState(hidden, cell)
                 for hidden, cell in self._states[self._get_variable_index(variable)])

  def _check_built(self, what):
    if not self.built:
      raise ValueError(f"{what}: LearnedOptimizer {self.name!r} has no variables before build(); "
                       "call optimizer.build(model.trainable_variables) or train one step first.")

  def apply(self, grads, trainable_variables=None):
    """Keras's apply, refusing the whole step before anything moves if a gradient is not finite
    (outside XLA, which cannot raise; there update_step skips and counts instead)."""
    checks = []
    present = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
    if present and not fused_lstm.in_xla_context():
      finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])
      checks = [tf.debugging.Assert(finite, [NON_FINITE_GRADIENT])]
    with tf.control_dependencies(checks):  # every op of the step, the iteration count's too
      return super().apply(grads, trainable_variables)

  def update_step(self, gradient, variable, learning_rate):
    """Runs the network on every coordinate of `gradient` and moves `variable` by its output."""
    update, assignments = self._learned_update(gradient, variable)
    finite = tf.reduce_all(tf.math.is_finite(update))
    if fused_lstm.in_xla_context():
      # XLA drops Assert: the variable and its state stay where they were, and the skip is counted.
      update = tf.where(finite, update, tf.zeros_like(update))
      assignments = [(state, tf.where(finite, value, _value(state)))
                     for state, value in assignments]
      self._non_finite_updates.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
      checks = []
    else:
      path = getattr(variable, "path", variable.name)
      checks = [tf.debugging.Assert(finite, [_non_finite_update(path)])]
    with tf.control_dependencies(checks):  # nothing is assigned from a refused update
      for state, value in assignments:
        self.assign(state, value)
      self.assign_add(variable,
                      tf.cast(learning_rate, variable.dtype) * tf.cast(update, variable.dtype))

  def _learned_update(self, gradient, variable):
    """(the update, in `variable`'s shape; [(state variable, its next value)]), nothing assigned."""
    if isinstance(gradient, tf.IndexedSlices):
      # A Python type check, not a tensor test: fine in update_step, which Keras traces without
      # autograph. Densifying sums repeated rows, as the dense gradient would.
      gradient = tf.convert_to_tensor(gradient)
    if self._fused_step():
      return self._fused_update(gradient, variable)
    outputs = tf.reshape(tf.cast(gradient, tf.float32), [-1, 1])  # [num_coords, 1]
    assignments = []
    if self._stateful_preprocess:
      saved = self._preprocess_states[self._get_variable_index(variable)]
      outputs, preprocessed = self._preprocess(outputs, type(saved)(*map(_value, saved)))
      assignments += list(zip(saved, preprocessed))
    else:
      outputs = self._preprocess(outputs)
    outputs = tf.transpose(outputs)  # [num_features, num_coords], feature-major
    for i, state in enumerate(self.lstm_state(variable)):
      # The fused C++ cell where it runs; under XLA (jit_compile) the plain one.
      outputs, next_state = networks.fused_lstm_step(
          outputs, networks.LSTMState(_value(state.hidden), _value(state.cell)),
          _value(self._net_weights[f"lstm_{i}/w_gates"]),
          _value(self._net_weights[f"lstm_{i}/b_gates"]))
      assignments += [(state.hidden, next_state.hidden), (state.cell, next_state.cell)]
    weights = self._net_weights
    update = networks.linear(outputs, _value(weights["linear/w"]), _value(weights["linear/b"]))
    update = tf.reshape(update * self._scale, variable.shape)  # [1, num_coords] ->
    return self._adapted(update, gradient, variable, assignments)

  def _adapted(self, update, gradient, variable, assignments):
    """The update normalized (normalize_output), scaled by its gradients' signal (signal_scaled)
    and its step adapted online (scale_adaptation), with that state's assignments."""
    index, gradient = self._get_variable_index(variable), tf.reshape(gradient, variable.shape)
    if self._normalize_output:
      update = step_size.normalize(update, self._scale)
    if self._signal_scaled:
      saved = self._signal_states[index]
      ratio, signal = step_size.signal_ratio(gradient, step_size.SignalState(*map(_value, saved)))
      update = update * ratio
      assignments = assignments + list(zip(saved, signal))
    if self._scale_adaptation:
      saved = self._adaptation_states[index]
      update, adapted = step_size.adapt(update, gradient,
                                        step_size.AdaptationState(*map(_value, saved)),
                                        self._scale_adaptation,
                                        averaging=self._adaptation_averaging)
      assignments = assignments + list(zip(saved, adapted))
    return update, assignments

  def _fused_step(self):
    """Whether this step runs as one C++ op per variable (`fused_lstm.learned_step`)."""
    net = json.loads(self._net_json)["net_options"]
    return (net["preprocess_name"] in fused_lstm.LEARNED_STEP_PREPROCESSING
            and not fused_lstm.in_xla_context() and fused_lstm.chosen())

  def _overwrites_state(self):
    """Whether the one-op update overwrites the LSTM states and moments in place: unless a
    distribution strategy owns the variables, which Keras's `assign` must then update."""
    return not tf.distribute.has_strategy()

  def _fused_update(self, gradient, variable):
    """`_learned_update` as one op: the same math, one pass over the coordinates.

    The op overwrites the LSTM states and Adam moments where they are (`apply_learned_step`)
    where `_overwrites_state`; otherwise it returns their next values for `assign`.
    """
    net = json.loads(self._net_json)["net_options"]
    index = self._get_variable_index(variable)
    saved_preprocess = self._preprocess_states[index] if self._stateful_preprocess else None
    states = self._states[index]
    flat = tf.reshape(tf.cast(gradient, tf.float32), [-1])
    weights = {key: _value(weight) for key, weight in self._net_weights.items()}
    assignments = []
    if self._overwrites_state():
      moments, count = None, 0.0
      if saved_preprocess is not None:
        moments, count = saved_preprocess[:2], _value(saved_preprocess.count) + 1.0
        assignments.append((saved_preprocess.count, count))
      update = fused_lstm.apply_learned_step(flat, moments, count, states, weights,
                                             net["preprocess_name"], net["preprocess_options"],
                                             scale=self._scale)
    else:
      update, preprocessed, next_states = fused_lstm.learned_step(
          flat, None if saved_preprocess is None
          else type(saved_preprocess)(*map(_value, saved_preprocess)),
          tuple(networks.LSTMState(_value(h), _value(c)) for h, c in states), weights,
          net["preprocess_name"], net["preprocess_options"], scale=self._scale)
      if saved_preprocess is not None:
        assignments += list(zip(saved_preprocess, preprocessed))
      for (hidden, cell), state in zip(states, next_states):
        assignments += [(hidden, state.hidden), (cell, state.cell)]
    return self._adapted(tf.reshape(update, variable.shape), gradient, variable, assignments)

  @property
  def non_finite_updates(self):
    """How many variable updates were skipped for being non-finite under XLA (elsewhere they raise)."""
    self._check_built("non_finite_updates")
    return int(self._non_finite_updates.numpy())

  def load_own_variables(self, store):
    """Restores the variables from a .keras file, whichever layout it holds.

    The LSTM states are feature-major, (hidden, num_coords); a file may hold them coordinate-major,
    (num_coords, hidden), the older layout: those arrays are transposed rather than refused (a
    variable with exactly `hidden` coordinates cannot be told apart and loads as saved). A file
    without the non-finite counter loads with it at zero.
    """
    variables = list(self.variables)
    if self.built and len(store.keys()) == len(variables) - 1:
      variables = variables[:-1]  # written before the non-finite counter, which starts at zero
      self._non_finite_updates.assign(0)
    if not self.built or len(store.keys()) != len(variables):
      return super().load_own_variables(store)  # Keras says why it skips
    states = {id(v) for layers in self._states for pair in layers for v in pair}
    for i, variable in enumerate(variables):
      value = store[str(i)]
      saved, wanted = tuple(value.shape), tuple(variable.shape)
      if id(variable) in states and saved != wanted and saved == wanted[::-1]:
        value = np.transpose(value)
      variable.assign(value)

  def get_config(self):
    config = super().get_config()
    if self.built:
      weights = {key: variable.numpy() for key, variable in self._net_weights.items()}
    else:
      weights = dict(self._initial_weights)
    network = json.loads(self._net_json)
    network["weights"] = {key: np.asarray(value, np.float32).tolist()
                          for key, value in weights.items()}
    config.update(checkpoint=self._checkpoint, network=network)
    return config
