"""Update rules as Sonnet modules: the learned LSTM optimizers, and a factory of every rule by name.

Every rule maps a gradient (any shape) and its state to an update of the same shape and a new state:
`update, next_state = rule(gradient, state)`, starting from
`state = rule.initial_state_for_inputs(gradient)`.
The learned rules follow Andrychowicz et al. 2016 (arXiv 1606.04474), section 2.1. The
hand-designed rules live in `baselines`; `factory` builds them too, by class name.
"""

import collections.abc
import contextlib
import threading

import numpy as np
import sonnet as snt
import tensorflow as tf

from learning_to_learn import baselines
from learning_to_learn import cells
from learning_to_learn import fused_lstm
from learning_to_learn import preprocess
from learning_to_learn import step_size


LSTMState = cells.LSTMState
lstm_step = cells.lstm_step


def fused_lstm_step(inputs, state, w_gates, b_gates):
  """`lstm_step` as one C++ op (`fused_lstm`) where it runs (`fused_lstm.usable`).

  The same math to float rounding, with fewer passes over memory; elsewhere, `lstm_step` itself.
  """
  if fused_lstm.usable(inputs):
    hidden, cell = fused_lstm.lstm_cell(inputs, state.hidden, state.cell, w_gates, b_gates)
    return hidden, LSTMState(hidden, cell)
  return lstm_step(inputs, state, w_gates, b_gates)


def linear(inputs, w, b):
  """y = w^T x + b on feature-major inputs: [input_size, batch] -> [output_size, batch]."""
  return tf.matmul(w, inputs, transpose_a=True) + b[:, tf.newaxis]


# --- Initializers, in the reference's vocabulary ------------------------------------------------

_NAMED_INITIALIZERS = {
    "zeros": snt.initializers.Zeros,
    "ones": snt.initializers.Ones,
    "random_normal": snt.initializers.RandomNormal,
    "random_uniform": snt.initializers.RandomUniform,
    "truncated_normal": snt.initializers.TruncatedNormal,
}


def _to_initializer(spec):
  """A name ("zeros", ...), an array of the weights, or a Sonnet initializer -> initializer."""
  if isinstance(spec, str):
    if spec not in _NAMED_INITIALIZERS:
      raise ValueError(f"unknown initializer {spec!r}; choose one of "
                       f"{', '.join(_NAMED_INITIALIZERS)}, or pass arrays.")
    return _NAMED_INITIALIZERS[spec]()
  if isinstance(spec, (np.ndarray, list, tuple, float, int)):
    value = np.asarray(spec, dtype=np.float32)

    def constant(shape, dtype):
      if tuple(shape) != value.shape:
        raise ValueError(f"initial weights of shape {value.shape} do not fit a variable of shape "
                         f"{tuple(shape)}: the checkpoint was trained for another network shape; "
                         "build the network with the layers it was trained with.")
      return tf.constant(value, dtype=dtype)

    return constant
  return spec


def _layer_initializers(initializer, layer_name, fields):
  """The reference's rule: a dict keyed by layer name applies per layer, else to every layer.

  Within a layer, a dict keyed by field ("w", "b", ...) applies per field, else to every field.
  Fields not given keep the layer's default initializer.
  """
  if initializer is None:
    return {}
  if isinstance(initializer, dict) and layer_name in initializer:
    initializer = initializer[layer_name]
  elif isinstance(initializer, dict) and not set(initializer) & set(fields):
    return {}
  if isinstance(initializer, dict):
    return {f: _to_initializer(initializer[f]) for f in fields if f in initializer}
  return {f: _to_initializer(initializer) for f in fields}


def _fan_in_initializer(fan_in):
  # Sonnet's default for linear maps: truncated normal with stddev 1/sqrt(fan_in).
  return snt.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(fan_in))


# --- Layers -------------------------------------------------------------------------------------

class LSTM(snt.Module):
  """A fused-gate LSTM layer: thin variables around `lstm_step` (feature-major: [size, batch]).

  Weights: `w_gates` [input_size + hidden_size, 4 hidden_size], `b_gates` [4 hidden_size]; created
  on construction (input_size is known) so that checkpoints and counts need no first call.

  Args:
    fused_cell: run the step as one C++ op (`fused_lstm`) where it is built, the faster cell
      and not under XLA (`fused_lstm.usable`), else `lstm_step`: the same math to float
      rounding, fewer passes over memory.
  """

  def __init__(self, input_size, hidden_size, initializers=None, name="lstm", fused_cell=True):
    super().__init__(name=name)
    initializers = initializers or {}
    self.hidden_size = hidden_size
    self.fused_cell = fused_cell
    fan_in = input_size + hidden_size
    w_init = initializers.get("w_gates", _fan_in_initializer(fan_in))
    b_init = initializers.get("b_gates", snt.initializers.Zeros())
    self.w_gates = tf.Variable(w_init([fan_in, 4 * hidden_size], tf.float32), name="w_gates")
    self.b_gates = tf.Variable(b_init([4 * hidden_size], tf.float32), name="b_gates")

  def __call__(self, inputs, state):
    step = fused_lstm_step if self.fused_cell else lstm_step
    return step(inputs, state, self.w_gates, self.b_gates)

  def initial_state(self, batch_size, dtype=tf.float32):
    zeros = tf.zeros([self.hidden_size, batch_size], dtype=dtype)
    return LSTMState(zeros, zeros)


class Linear(snt.Module):
  """y = w^T x + b on feature-major inputs [input_size, batch]; weights created on construction."""

  def __init__(self, input_size, output_size, initializers=None, name="linear"):
    super().__init__(name=name)
    initializers = initializers or {}
    w_init = initializers.get("w", _fan_in_initializer(input_size))
    b_init = initializers.get("b", snt.initializers.Zeros())
    self.w = tf.Variable(w_init([input_size, output_size], tf.float32), name="w")
    self.b = tf.Variable(b_init([output_size], tf.float32), name="b")

  def __call__(self, inputs):
    return linear(inputs, self.w, self.b)


# --- Update rules -------------------------------------------------------------------------------

# The base of the learned rules is that of every update rule, kept under its reference-era name.
Network = baselines.UpdateRule


def _plain(value):
  # tf.Module wraps dicts and lists held as attributes in trackable wrappers that json refuses.
  if isinstance(value, collections.abc.Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


# The layers' batch (columns) is padded to a multiple of 16 with columns of zero inputs, computed
# and dropped: with rows of a multiple of 64 bytes TensorFlow splits the gates without copying them,
# (what that gained: docs/performance.md). Every column is independent of the others.
_COLUMN_MULTIPLE = 16


_FORWARD_ONLY = threading.local()


@contextlib.contextmanager
def forward_only():
  """Within it, networks are built for updates that nothing differentiates (evaluation).

  A coordinatewise deep LSTM traced here runs its whole update (preprocessing, every layer, the
  output layer) as one C++ op where `runs_whole_step` says so: fewer passes over the coordinates
  than a fused op per layer, and no gradient. Read when a function is traced, not when it runs.
  """
  previous = getattr(_FORWARD_ONLY, "on", False)
  _FORWARD_ONLY.on = True
  try:
    yield
  finally:
    _FORWARD_ONLY.on = previous


def _in_forward_only():
  return getattr(_FORWARD_ONLY, "on", False)


def runs_whole_step(nets):
  """Whether any of `nets` runs its update as one op under `forward_only` outside XLA here."""
  return any(isinstance(net, CoordinateWiseDeepLSTM) and net.whole_step_here() for net in nets)


def _num_rows(x):
  return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def _padded(batch):
  return (batch + _COLUMN_MULTIPLE - 1) // _COLUMN_MULTIPLE * _COLUMN_MULTIPLE


class StandardDeepLSTM(Network):
  """A deep LSTM reading a whole gradient vector: inputs [batch, n] -> updates [batch, output_size].

  update = scale * Linear(LSTM_L(... LSTM_1(preprocess(g)))).

  Args:
    output_size: size of the update for each batch row.
    layers: hidden sizes of the LSTM layers; () is a linear map (the reference's `simple` config).
    preprocess_name: "identity" (reference default), "LogAndSign", "Clamp" or "AdamNormalized"
      (stateful: its moments ride at the end of the network's state).
    preprocess_options: keyword arguments of the preprocessor, e.g. {"k": 5}.
    scale: output multiplier; the reference's configs use 0.01, the paper 0.1.
    scale_adaptation: 0 (default) keeps `scale` fixed; a rate > 0 adapts each parameter tensor's
      step online (`step_size`), which the rules running the network per tensor apply
      (`meta.NetAssignments`, `keras.LearnedOptimizer`); the network's own output is unchanged.
    normalize_output: False (default) keeps the output as the network gives it; True makes those
      rules divide each parameter tensor's update by its root mean square, so that `scale` is
      each tensor's RMS step (`step_size.normalize`); the network's own output is unchanged.
    initial_multiplier: with scale_adaptation, each tensor's step multiplier at the first step
      (default 1, in [1/32, 32]); below 1 the adaptation warms the step up from there.
    adaptation_averaging: with scale_adaptation, beta in [0, 1): the multiplier follows the
      gradient against the exponential average of the previous updates (0, default: the previous
      update alone; `step_size.adapt`).
    signal_scaled: with normalize_output, each tensor's RMS step is also multiplied by the RMS of
      Adam's normalized step on its gradients (`step_size.signal_ratio`): 1 while they agree,
      less as they turn to noise.
    initializer: None (Sonnet defaults), a name such as "zeros", or a dict per layer
      ("lstm_0", ..., "linear") and per field ("w_gates", "b_gates", "w", "b") of names or arrays,
      as `optimizer_files.network(net_path=...)` passes from a saved network.
    input_size: features per batch row before preprocessing.
    fused_cell: run each LSTM step as one C++ op where it builds (see `LSTM`); a choice of how
      to compute, not of what, so `get_config` leaves it out.
  """

  coordinatewise = False

  def __init__(self, output_size, layers, preprocess_name="identity", preprocess_options=None,
               scale=1.0, initializer=None, input_size=1, name="deep_lstm", fused_cell=True,
               scale_adaptation=0.0, normalize_output=False, signal_scaled=False,
               initial_multiplier=1.0, adaptation_averaging=0.0):
    super().__init__(name=name)
    # The options every deep LSTM shares; each class's get_config adds those of its constructor.
    self._lstm_options = dict(layers=list(layers), preprocess_name=preprocess_name,
                              preprocess_options=dict(preprocess_options or {}), scale=float(scale))
    self.scale_adaptation = step_size.check_rate(scale_adaptation)
    if self.scale_adaptation:  # recorded only when on, so earlier files' configs read the same
      self._lstm_options["scale_adaptation"] = self.scale_adaptation
    self.initial_multiplier = step_size.check_initial_multiplier(initial_multiplier)
    if self.initial_multiplier != 1.0:
      if not self.scale_adaptation:
        raise ValueError(f"initial_multiplier={initial_multiplier!r} starts the adapted step: set "
                         "scale_adaptation > 0 too, or leave it at 1.")
      self._lstm_options["initial_multiplier"] = self.initial_multiplier
    self.adaptation_averaging = step_size.check_averaging(adaptation_averaging)
    if self.adaptation_averaging:
      if not self.scale_adaptation:
        raise ValueError(f"adaptation_averaging={adaptation_averaging!r} averages the adapted "
                         "step's updates: set scale_adaptation > 0 too, or leave it at 0.")
      self._lstm_options["adaptation_averaging"] = self.adaptation_averaging
    if not isinstance(normalize_output, bool):
      raise ValueError(f"normalize_output={normalize_output!r} must be True or False.")
    self.normalize_output = normalize_output
    if normalize_output:  # recorded only when on, as scale_adaptation
      self._lstm_options["normalize_output"] = True
    if not isinstance(signal_scaled, bool):
      raise ValueError(f"signal_scaled={signal_scaled!r} must be True or False.")
    if signal_scaled and not normalize_output:
      raise ValueError("signal_scaled=True scales a normalized step: set normalize_output=True "
                       "too.")
    self.signal_scaled = signal_scaled
    if signal_scaled:  # recorded only when on, as scale_adaptation
      self._lstm_options["signal_scaled"] = True
    self._output_size, self._input_size = output_size, input_size
    if any(int(size) <= 0 for size in layers):
      raise ValueError(f"layers={tuple(layers)}: every hidden size must be positive.")
    self._preprocess = preprocess.factory(preprocess_name, preprocess_options)
    self._stateful = preprocess.is_stateful(self._preprocess)
    self._scale = float(scale)
    size = input_size * preprocess.num_features(preprocess_name)
    self._cores = []
    for i, hidden_size in enumerate(layers):
      name_i = f"lstm_{i}"
      self._cores.append(LSTM(size, hidden_size, name=name_i, initializers=_layer_initializers(
          initializer, name_i, ("w_gates", "b_gates")), fused_cell=fused_cell))
      size = hidden_size
    self._linear = Linear(size, output_size, name="linear", initializers=_layer_initializers(
        initializer, "linear", ("w", "b")))

  def get_config(self):
    return dict(output_size=self._output_size, **_plain(self._lstm_options),
                input_size=self._input_size)

  @property
  def scale(self):
    """The output multiplier (each tensor's RMS step where `normalize_output` is on)."""
    return self._scale

  @property
  def layers(self):
    """Name -> layer module, in the order the inputs flow."""
    named = {core.name: core for core in self._cores}
    named["linear"] = self._linear
    return named

  def _features(self, inputs, preprocess_state):
    # [batch, n] -> [batch, n, 1] -> preprocess -> [batch, n, f] -> [batch, n f] -> [n f, batch]
    batch = _num_rows(inputs)
    if self._stateful:
      features, preprocess_state = self._preprocess(inputs[..., tf.newaxis], preprocess_state)
    else:
      features = self._preprocess(inputs[..., tf.newaxis])
    features = tf.transpose(tf.reshape(features, [batch, -1]))
    return tf.pad(features, [[0, 0], [0, _padded(batch) - batch]]), preprocess_state

  def _network(self, inputs, state):
    """[batch, n] inputs -> [batch, output_size] updates; the layers run feature-major, padded.

    `state` is one LSTMState per layer, then, for a stateful preprocessor, its state.
    """
    num_layers = len(self._cores)
    outputs, preprocess_state = self._features(
        inputs, state[num_layers] if self._stateful else None)
    next_state = []
    for core, core_state in zip(self._cores, state[:num_layers]):
      outputs, core_next = core(outputs, core_state)
      next_state.append(core_next)
    if self._stateful:
      next_state.append(preprocess_state)
    outputs = self._linear(outputs)[:, :_num_rows(inputs)]  # the padding's columns dropped
    return tf.transpose(outputs) * self._scale, tuple(next_state)

  def __call__(self, gradient, state):
    return self._network(gradient, state)

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    """Zero states of [hidden, batch rounded up to a multiple of 16] per layer, then the
    preprocessor's fresh state if it has one."""
    batch_size = _padded(_num_rows(inputs))
    state = tuple(core.initial_state(batch_size, dtype) for core in self._cores)
    if self._stateful:
      state += (self._preprocess.initial_state(tf.cast(inputs, dtype)[..., tf.newaxis]),)
    return state


class CoordinateWiseDeepLSTM(StandardDeepLSTM):
  """The paper's optimizer: one small LSTM applied to every coordinate separately (section 2.1).

  All coordinates share the weights; each keeps its own state column. So the weight count does
  not depend on the optimizee: 20-20 layers with LogAndSign have 5,141 weights
  ((2 + 20) 80 + 80 + (20 + 20) 80 + 80 + 20 + 1).

  Shapes: gradient of any shape -> [num_coords, 1] -> preprocess [num_coords, 1 or 2] -> LSTM
  layers [hidden, num_coords] -> linear [num_coords, 1] -> x scale -> the gradient's shape.
  State: one LSTMState of [hidden, num_coords rounded up to a multiple of 16] per layer.
  """

  coordinatewise = True

  def __init__(self, name="cw_deep_lstm", **kwargs):
    # Every coordinate is a batch row of one input and one output, whatever a caller passes.
    kwargs.pop("output_size", None)
    kwargs.pop("input_size", None)
    super().__init__(output_size=1, name=name, **kwargs)

  def get_config(self):
    return _plain(self._lstm_options)

  def __call__(self, gradient, state):
    if (_in_forward_only() and gradient.dtype == tf.float32 and not fused_lstm.in_xla_context()
        and self.whole_step_here()):
      return self._whole_step(gradient, state)
    coords = tf.reshape(gradient, [-1, 1])  # [num_coords, 1]
    update, next_state = self._network(coords, state)
    return tf.reshape(update, tf.shape(gradient)), next_state

  def whole_step_here(self):
    """Whether `fused_lstm.learned_step` can run this network: every layer on the fused cell,
    a preprocessing the op has, and the op chosen here (`fused_lstm.chosen`)."""
    return (bool(self._cores) and all(core.fused_cell for core in self._cores)
            and self._lstm_options["preprocess_name"] in fused_lstm.LEARNED_STEP_PREPROCESSING
            and fused_lstm.chosen())

  def _whole_step(self, gradient, state):
    """`__call__` as one op: the same math to float rounding (the padding columns, which no
    coordinate reads, see a zero gradient rather than zero features)."""
    num_layers = len(self._cores)
    flat = tf.reshape(gradient, [-1])
    count = tf.size(flat)
    padding = [[0, tf.shape(state[0].hidden)[1] - count]]
    saved = state[num_layers] if self._stateful else None
    preprocess_state = None
    if saved is not None:  # the moments, [count, 1, 1], padded as the states' columns
      preprocess_state = type(saved)(*(tf.pad(tf.reshape(t, [-1]), padding)
                                       for t in (saved.m, saved.v)), saved.count)
    weights = {"linear/w": self._linear.w, "linear/b": self._linear.b}
    for i, core in enumerate(self._cores):
      weights[f"lstm_{i}/w_gates"], weights[f"lstm_{i}/b_gates"] = core.w_gates, core.b_gates
    options = self._lstm_options
    update, preprocess_state, next_state = fused_lstm.learned_step(
        tf.pad(flat, padding), preprocess_state, tuple(state[:num_layers]), weights,
        options["preprocess_name"], options["preprocess_options"], scale=self._scale)
    if saved is not None:
      next_state += (type(saved)(*(tf.reshape(t[:count], tf.shape(saved.m))
                                   for t in preprocess_state[:2]), preprocess_state.count),)
    return tf.reshape(update[:count], tf.shape(gradient)), next_state

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    return super().initial_state_for_inputs(tf.reshape(inputs, [-1, 1]), dtype)


class KernelDeepLSTM(StandardDeepLSTM):
  """For convolution kernels [h, w, in, out]: one LSTM per (in, out) pair reads the h x w slice.

  Shapes: [h, w, in, out] -> [in out, h w] -> StandardDeepLSTM -> [in out, h w] -> [h, w, in, out].
  """

  def __init__(self, kernel_shape, name="kernel_deep_lstm", **kwargs):
    self._kernel_shape = [int(d) for d in kernel_shape]
    kwargs.pop("output_size", None)
    kwargs.pop("input_size", None)
    size = int(np.prod(self._kernel_shape))  # a batch row is one h x w slice, in and out
    super().__init__(output_size=size, input_size=size, name=name, **kwargs)

  def get_config(self):
    return dict(_plain(self._lstm_options), kernel_shape=list(self._kernel_shape))

  def _slices(self, kernel):
    # [h, w, in, out] -> [in, out, h, w] -> [in out, h w]
    return tf.reshape(tf.transpose(kernel, [2, 3, 0, 1]), [-1, int(np.prod(self._kernel_shape))])

  def __call__(self, gradient, state):
    update, next_state = self._network(self._slices(gradient), state)
    # [in out, h w] -> [h w, in out] -> [h, w, in, out]
    return tf.reshape(tf.transpose(update), tf.shape(gradient)), next_state

  def initial_state_for_inputs(self, inputs, dtype=tf.float32):
    return super().initial_state_for_inputs(self._slices(inputs), dtype)


def runs_fused_cell(nets):
  """Whether any of `nets` (update rules) runs an LSTM layer on the fused C++ op outside XLA."""
  cores = [core for net in nets for core in getattr(net, "_cores", ())]
  return any(core.fused_cell for core in cores) and fused_lstm.chosen()


_NETWORKS = {cls.__name__: cls for cls in (CoordinateWiseDeepLSTM, KernelDeepLSTM,
                                            StandardDeepLSTM, baselines.Sgd, baselines.Adam,
                                            baselines.RMSProp, baselines.Nag)}


# --- Construction ----------------------------------------------------------------------------

def check_name(net):
  """Refuses a class name that `factory` cannot build."""
  if net not in _NETWORKS:
    raise ValueError(f"unknown net {net!r}; choose one of {', '.join(_NETWORKS)}.")


def factory(net, net_options=()):
  """Builds a network by class name, as the reference's configs name them.

  Args:
    net: class name, e.g. "CoordinateWiseDeepLSTM".
    net_options: constructor keyword arguments (a dict or pairs).

  A network saved to a file is built by optimizer_files.network, which reads its options and
  weights and calls this.
  """
  check_name(net)
  return build(net, dict(net_options), "net_options")


def _check_finite_options(options, where, prefix=""):
  """A NaN or infinite option (scale, k, a rate) makes every update non-finite: refuse it."""
  for key, value in options.items():
    if isinstance(value, dict):
      _check_finite_options(value, where, f"{prefix}{key}.")
    elif isinstance(value, float) and not np.isfinite(value):
      raise ValueError(f"{where}: option {prefix}{key}={value} is not finite; the file is "
                       "damaged or was saved from a diverged run: retrain, or use another save.")


def build(net, net_options, source="net_options"):
  """The network; options a file or a caller got wrong are one ValueError line, not a TypeError.

  `source` names where the options came from (the argument, or a file) in that line.
  """
  check_name(net)
  _check_finite_options({k: v for k, v in net_options.items() if k != "initializer"}, source)
  try:
    return _NETWORKS[net](**net_options)
  except TypeError as e:  # an option this version does not know, e.g. from a newer or foreign file
    raise ValueError(f"{source}: {net} does not accept these options ({e}); it was written by "
                     "another version or edited: retrain, or remove the option.") from None


def weights(network):
  """Layer name -> field -> numpy array, the form `initializer=` accepts."""
  layers = getattr(network, "layers", {})
  return {layer_name: {v.name.split(":")[0].split("/")[-1]: v.numpy() for v in layer.variables}
          for layer_name, layer in layers.items()}
