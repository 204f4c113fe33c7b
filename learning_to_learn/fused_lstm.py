"""The LSTM cell as one C++ op, forward and backward, built at first use; else the plain cell.

Op by op, a step of the coordinatewise LSTM is bound by memory traffic: each of a layer's dozen
elementwise ops reads and writes a [hidden, coordinates] tensor. `fused_lstm.cc`
does the whole cell over tiles of 64 coordinates that stay in the core's cache, so that a step
reads its inputs and writes its outputs once; its backward op gives the gradients with respect to
the inputs, the previous state and the weights (the meta-gradient flows into the weights).

The op is compiled with the C++ compiler (`$CXX`, else g++) against the headers and flags that
`tf.sysconfig` gives, once per source, TensorFlow version and CPU, into
`$XDG_CACHE_HOME/learning_to_learn` (else ~/.cache/learning_to_learn), and loaded with
`tf.load_op_library`. Without a compiler, or when the build fails, `networks.LSTM` runs its plain
cell, `cells.lstm_step`. Where it builds, it runs only if it is the faster of the two on this
machine: the first use times both on one layer's step, forward and backward, and keeps the figures
beside the library, so later processes reuse them (the op's speed against TensorFlow's own kernels
differs from CPU to CPU). `L2L_FUSED_LSTM=0` in the environment forces the plain cell, `=1` the op
wherever it builds. Which one runs, and why, is logged once at INFO. XLA (`jit_compile=True`)
cannot compile a custom op: `usable` is false there, and `networks.LSTM` runs its plain cell.

`L2L_LSTM_MATMUL=bfloat16` makes the op's matmuls round their operands to bfloat16 and sum in
float32 (AVX512_BF16's dot product: twice the multiply-adds an instruction), and its gates'
sigmoid and tanh piecewise cubics (within 3.6e-6 and 7.2e-6), on CPUs that have it: faster, at
results that differ from float32 by more than rounding (the tolerance is stated and tested in
docs/performance.md and tests/test_fused_lstm.py). The default is float32.
"""

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

from learning_to_learn import cells

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fused_lstm.cc")
ENV_SWITCH = "L2L_FUSED_LSTM"  # "0" forces the plain cell, "1" the op wherever it builds
# "bfloat16": the op's matmuls round their operands to bfloat16 (sums stay float32) and its gate
# activations are piecewise cubics, where the CPU has AVX512_BF16; "float32" (the default) keeps
# the plain cell's results to float rounding.
MATMUL_ENV = "L2L_LSTM_MATMUL"
MATMULS = ("float32", "bfloat16")
_OPTIMIZATION = ["-O3", "-march=native", "-fPIC", "-shared"]
# Eigen's AVX512-FP16 packets, which -march=native turns on where the CPU has them (Intel Sapphire
# Rapids and later), do not compile with g++ 12; the cell uses no half floats.
_NO_FP16 = ["-mno-avx512fp16"]

_lock = threading.Lock()
_library = None  # the loaded op library, False once a build or load failed or is switched off
_library_file = None  # its path
_faster = None  # whether the op beats the plain cell here, once timed or read
_speed_lock = threading.Lock()  # apart from _lock: timing the op loads it
_forced_logged = False
_precision_logged = False
_bf16_built = None  # whether the loaded op runs bfloat16 matmuls, once tried


def cache_dir():
  """Where built libraries are kept: $XDG_CACHE_HOME/learning_to_learn, else ~/.cache/..."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "learning_to_learn")


def _cpu_flags():
  # -march=native makes the library specific to the CPU's instruction set: part of the key.
  try:
    with open("/proc/cpuinfo") as f:
      return next((line for line in f if line.startswith("flags")), "")
  except OSError:
    return platform.machine()


def _optimization():
  """The compiler's optimization flags for this CPU."""
  return _OPTIMIZATION + (_NO_FP16 if "avx512_fp16" in _cpu_flags().split() else [])


def _first_error(stderr):
  """The compiler's first error line (else its last line): what a failed build's message says."""
  lines = stderr.strip().splitlines()
  return next((line.strip() for line in lines if " error: " in line or line.startswith("error")),
              lines[-1].strip() if lines else "no output")


def _library_path(source_text, compiler):
  key = hashlib.sha256("\0".join([
      source_text, tf.__version__, compiler, " ".join(tf.sysconfig.get_compile_flags()),
      " ".join(_optimization()), _cpu_flags()]).encode()).hexdigest()[:16]
  return os.path.join(cache_dir(), f"fused_lstm_{key}.so")


def build():
  """Compiles fused_lstm.cc unless its library is cached; returns the library's path.

  Raises:
    RuntimeError: no compiler, or the compiler failed (its first error in the message).
  """
  compiler = shutil.which(os.environ.get("CXX", "g++"))
  if compiler is None:
    raise RuntimeError(f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on PATH")
  with open(SOURCE) as f:
    source_text = f.read()
  path = _library_path(source_text, compiler)
  if os.path.exists(path):
    return path
  os.makedirs(cache_dir(), exist_ok=True)
  # Built under a temporary name and renamed: another process never loads a half-written file.
  fd, partial = tempfile.mkstemp(suffix=".so", dir=cache_dir())
  os.close(fd)
  command = ([compiler, SOURCE, "-o", partial] + tf.sysconfig.get_compile_flags()
             + _optimization() + tf.sysconfig.get_link_flags())
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    os.unlink(partial)
    raise RuntimeError(f"{os.path.basename(compiler)} failed (status {result.returncode}): "
                       f"{_first_error(result.stderr)}")
  os.replace(partial, path)
  return path


def _load():
  """The op library, building it on first use; None where it cannot be had."""
  global _library, _library_file
  with _lock:
    if _library is None:
      if os.environ.get(ENV_SWITCH, "1") == "0":
        logging.info("LSTM cell: plain TensorFlow ops (%s=0)", ENV_SWITCH)
        _library = False
      else:
        try:
          path = build()
          _library = tf.load_op_library(path)
          _library_file = path
        except (RuntimeError, OSError, tf.errors.OpError) as e:
          logging.info("LSTM cell: plain TensorFlow ops; the fused op is unavailable: %s", e)
          _library = False
    return _library or None


@tf.autograph.experimental.do_not_convert
def available():
  """Whether the fused op is built and loaded (building it if need be)."""
  return _load() is not None


def in_xla_context():
  """Whether ops built now are compiled by XLA (jit_compile), where custom ops do not run."""
  return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def measure(coordinates=16384, repetitions=5, calls=10):
  """Milliseconds a call of one layer's step (2 inputs, 20 units), forward and backward, take on
  (the fused op, the plain cell): medians of `repetitions` alternating rounds of `calls`.

  It runs in a thread of its own, where TensorFlow executes eagerly with no tape recording
  whatever the caller is doing: the cell is chosen while a function is being traced.
  """
  result = {}

  def run():
    try:
      result["ms"] = _measure(coordinates, repetitions, calls)
    except BaseException as e:  # pylint: disable=broad-except
      result["error"] = e

  thread = threading.Thread(target=run, name="fused_lstm.measure")
  thread.start()
  thread.join()
  if "error" in result:
    raise result["error"]
  return result["ms"]


def _measure(coordinates, repetitions, calls):
  def plain_cell(inputs, hidden, cell, w_gates, b_gates):
    hidden, state = cells.lstm_step(inputs, cells.LSTMState(hidden, cell), w_gates, b_gates)
    return hidden, state.cell

  rng = np.random.default_rng(0)
  shapes = [[2, coordinates], [20, coordinates], [20, coordinates], [22, 80], [80]]
  args = [tf.constant(rng.normal(scale=0.5, size=shape).astype(np.float32)) for shape in shapes]

  def timed(cell):
    @tf.function(autograph=False)
    def step(*args):
      with tf.GradientTape() as tape:
        tape.watch(args)
        hidden, new_cell = cell(*args)
        loss = tf.reduce_sum(hidden) + tf.reduce_sum(new_cell)
      # The previous state's and the weights' gradients: what a meta-gradient needs.
      return tape.gradient(loss, args[1:4])
    return step

  steps = [timed(lstm_cell), timed(plain_cell)]
  seconds = [[], []]
  for step in steps:
    step(*args)[-1].numpy()  # traced and warm
  for _ in range(repetitions):
    for k, step in enumerate(steps):
      start = time.perf_counter()
      for _ in range(calls):
        out = step(*args)
      out[-1].numpy()
      seconds[k].append((time.perf_counter() - start) / calls)
  return tuple(1e3 * float(np.median(s)) for s in seconds)


def _speeds_path():
  return _library_file + ".speed.json"


def _read_speeds():
  """The kept figures, or None where there are none (or they are damaged)."""
  try:
    with open(_speeds_path()) as f:
      speeds = json.load(f)
    float(speeds["fused_ms"]), float(speeds["plain_ms"])
    return speeds
  except (OSError, ValueError, KeyError, TypeError):
    return None


@contextlib.contextmanager
def _machine_lock():
  """Holds a lock file beside the library: processes starting together time the op one at a time,
  and the later ones read the first one's figures, so that every process here runs the same cell
  (runs that must agree bit for bit, a resumed one and its uninterrupted twin, do)."""
  try:
    import fcntl  # pylint: disable=import-outside-toplevel  (POSIX only)
    handle = open(_speeds_path() + ".lock", "w")
  except (ImportError, OSError):  # no flock, or an unwritable cache: each process times itself
    yield
    return
  with handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def faster_here():
  """Whether the fused op is the faster cell on this machine (timing it once, see the module)."""
  global _faster
  with _speed_lock:
    if _faster is None:
      speeds = _read_speeds()
      if speeds is None:
        with _machine_lock():
          speeds = _read_speeds()  # another process may have timed it meanwhile
          if speeds is None:
            fused_ms, plain_ms = measure()
            speeds = {"fused_ms": fused_ms, "plain_ms": plain_ms}
            try:  # a cache that cannot be written only means timing again next time
              partial = f"{_speeds_path()}.{os.getpid()}.partial"
              with open(partial, "w") as f:
                json.dump(speeds, f)
              os.replace(partial, _speeds_path())
            except OSError:
              pass
      _faster = speeds["fused_ms"] < speeds["plain_ms"]
      which = "the fused C++ op" if _faster else "plain TensorFlow ops"
      logging.info("LSTM cell: %s, the faster here (a layer's step forward and backward: fused "
                   "%.2f ms, plain %.2f ms; %s)", which, speeds["fused_ms"], speeds["plain_ms"],
                   _library_file)
    return _faster


@tf.autograph.experimental.do_not_convert
def chosen():
  """Whether networks run the op: built and loaded, and the faster here or forced (`=1`).

  Raises:
    ValueError: $L2L_LSTM_MATMUL is bad (`matmul_precision`), even where the plain cell runs.
  """
  matmul_precision()
  if not available():
    return False
  if os.environ.get(ENV_SWITCH) == "1":
    global _forced_logged
    if not _forced_logged:
      _forced_logged = True
      logging.info("LSTM cell: the fused C++ op (%s=1; %s)", ENV_SWITCH, _library_file)
    return True
  return faster_here()


def bf16_supported():
  """Whether the op can run bfloat16 matmuls here: the CPU has AVX512_BF16's dot product and the
  op was built with it (tried once on a tile of zeros; a compiler without it builds the op all the
  same, refusing the attribute)."""
  global _bf16_built
  if "avx512_bf16" not in _cpu_flags().split() or _load() is None:
    return False
  with _lock:
    if _bf16_built is None:
      with tf.init_scope():  # eagerly, even while a function is being traced
        zeros = tf.zeros([1, 16])
        try:
          _library.fused_lstm_cell(zeros, zeros, zeros, tf.zeros([2, 4]), tf.zeros([4]),
                                   matmul="bfloat16")
          _bf16_built = True
        except tf.errors.InvalidArgumentError:
          _bf16_built = False
  return _bf16_built


def matmul_precision():
  """The fused op's matmul precision, from $L2L_LSTM_MATMUL: "float32" (default) or "bfloat16".

  Raises:
    ValueError: an unknown value, or "bfloat16" where the op cannot run it (`bf16_supported`),
      unless the plain cell is forced (`L2L_FUSED_LSTM=0`); one line each.
  """
  value = os.environ.get(MATMUL_ENV, "float32") or "float32"
  if value not in MATMULS:
    raise ValueError(f"{MATMUL_ENV}={value!r} is not one of {', '.join(MATMULS)}; unset it for "
                     "float32.")
  if value == "bfloat16" and os.environ.get(ENV_SWITCH) != "0" and not bf16_supported():
    raise ValueError(f"{MATMUL_ENV}=bfloat16 needs a CPU with AVX512_BF16 and the fused op built "
                     "for it, which this machine lacks; unset it for float32.")
  global _precision_logged
  if value == "bfloat16" and not _precision_logged:
    _precision_logged = True
    logging.info("LSTM cell: the fused op's matmuls round their operands to bfloat16 and its "
                 "gate activations are piecewise cubics (%s); the plain cell, where it runs, "
                 "stays float32", MATMUL_ENV)
  return value


@tf.autograph.experimental.do_not_convert
def usable(inputs):
  """Whether `networks.LSTM` runs `lstm_cell` here: float32, outside XLA, and `chosen()`."""
  return inputs.dtype == tf.float32 and not in_xla_context() and chosen()


@tf.autograph.experimental.do_not_convert
def lstm_cell(inputs, hidden, cell, w_gates, b_gates, forget_bias=1.0, precision=None):
  """One LSTM step as the C++ op, feature-major: `cells.lstm_step`'s math and layout.

  Args:
    inputs: [input_size, batch]; hidden, cell: [hidden_size, batch]; all float32.
    w_gates: [input_size + hidden_size, 4 hidden_size], gates in the order i, j, f, o.
    b_gates: [4 hidden_size].
    forget_bias: added to the forget gate.
    precision: the matmuls', "float32" or "bfloat16"; None reads `matmul_precision()`.

  Returns:
    (hidden', cell'), each [hidden_size, batch].

  Raises:
    RuntimeError: the op is unavailable (`usable` says so beforehand).
  """
  library = _load()
  if library is None:
    raise RuntimeError("the fused LSTM op is unavailable (the INFO log says why); "
                       "use cells.lstm_step")
  return library.fused_lstm_cell(inputs, hidden, cell, w_gates, b_gates,
                                 forget_bias=forget_bias, matmul=precision or matmul_precision())


# preprocess.factory's names -> the op's `preprocess` attribute, for the preprocessings it runs.
LEARNED_STEP_PREPROCESSING = {"identity": "identity", "LogAndSign": "log_and_sign",
                              "AdamNormalized": "adam_normalized"}


@tf.autograph.experimental.do_not_convert
def learned_step(gradient, preprocess_state, states, weights, preprocess_name,
                 preprocess_options=None, scale=1.0, forget_bias=1.0, precision=None):
  """A coordinatewise deep LSTM's whole update of one flat gradient as one C++ op, forward only.

  The Keras optimizer's step: preprocessing, every layer and the output layer in one pass over
  tiles of coordinates, the same math as running them op by op (to float rounding).

  Args:
    gradient: [N] float32.
    preprocess_state: a `preprocess.AdamNormalizedState` (m and v of N elements, count a scalar:
      the steps seen before this one) for "AdamNormalized", else None.
    states: per layer a `cells.LSTMState` of [hidden, N] tensors.
    weights: "lstm_<i>/w_gates", "lstm_<i>/b_gates", "linear/w", "linear/b" -> tensors.
    preprocess_name, preprocess_options: as `preprocess.factory` takes them; a name outside
      LEARNED_STEP_PREPROCESSING raises ValueError.
    scale: multiplies the output layer.
    forget_bias: added to the forget gates, as `cells.lstm_step` does.
    precision: the matmuls', "float32" or "bfloat16"; None reads `matmul_precision()`.

  Returns:
    (update [N] already scaled, the next preprocess state or None, the next states per layer).

  Raises:
    RuntimeError: the op is unavailable (`chosen` says so beforehand).
  """
  library, attrs = _learned_step_library(preprocess_name, preprocess_options, scale, forget_bias,
                                         precision)
  if preprocess_state is None:
    empty = tf.zeros([0], tf.float32)
    m, v, count = empty, empty, tf.constant(0.0)
  else:
    m, v, count = preprocess_state.m, preprocess_state.v, preprocess_state.count + 1.0
  num_layers = len(states)
  outputs = library.fused_learned_step(
      gradient, m, v, count, [s.hidden for s in states], [s.cell for s in states],
      [weights[f"lstm_{i}/w_gates"] for i in range(num_layers)],
      [weights[f"lstm_{i}/b_gates"] for i in range(num_layers)],
      weights["linear/w"], weights["linear/b"], **attrs)
  update, m_next, v_next, hidden, cell = outputs
  next_preprocess = (None if preprocess_state is None
                     else type(preprocess_state)(m_next, v_next, count))
  return update, next_preprocess, tuple(cells.LSTMState(h, c) for h, c in zip(hidden, cell))


def apply_learned_step(gradient, moments, count, states, weights, preprocess_name,
                       preprocess_options=None, scale=1.0, forget_bias=1.0, precision=None):
  """`learned_step` with its state in variables, overwritten in place; returns the update.

  The Keras optimizer's step: the new LSTM state (and Adam moments) go into the cache lines the old
  one was just read from, rather than into fresh tensors whose lines must first be read from
  memory. A variable whose value is still held elsewhere (a tensor read from it earlier) gets a
  fresh buffer instead, so that tensor keeps its value. A gradient that is not all finite moves
  nothing and gives a NaN update, for the caller's finiteness check to refuse.

  Args:
    gradient: [N] float32.
    moments: (m, v) float32 variables of N elements for "AdamNormalized", else None.
    count: the Adam step t after this gradient (scalar float32), for "AdamNormalized".
    states: per layer a pair (hidden, cell) of [hidden, N] float32 variables.
    weights, preprocess_name, preprocess_options, scale, forget_bias, precision: as
      `learned_step` takes them.

  Returns:
    The update [N], already scaled.

  Raises:
    RuntimeError: the op is unavailable (`chosen` says so beforehand).
  """
  library, attrs = _learned_step_library(preprocess_name, preprocess_options, scale, forget_bias,
                                         precision)
  num_layers = len(states)
  return library.fused_learned_step_in_place(
      gradient, tf.cast(count, tf.float32), [v.handle for v in moments or ()],
      [h.handle for h, _ in states], [c.handle for _, c in states],
      [weights[f"lstm_{i}/w_gates"] for i in range(num_layers)],
      [weights[f"lstm_{i}/b_gates"] for i in range(num_layers)],
      weights["linear/w"], weights["linear/b"], **attrs)


def _learned_step_library(preprocess_name, preprocess_options, scale, forget_bias, precision):
  """(the loaded library, the learned-step ops' attributes); raises as `learned_step` says."""
  library = _load()
  if library is None:
    raise RuntimeError("the fused LSTM op is unavailable (the INFO log says why); "
                       "run the network op by op")
  if preprocess_name not in LEARNED_STEP_PREPROCESSING:
    raise ValueError(f"learned_step: preprocess_name {preprocess_name!r} is not one of "
                     f"{', '.join(LEARNED_STEP_PREPROCESSING)}; run the network op by op.")
  options = dict(preprocess_options or {})
  beta1, beta2 = float(options.get("beta1", 0.9)), float(options.get("beta2", 0.999))
  return library, dict(
      preprocess=LEARNED_STEP_PREPROCESSING[preprocess_name], k=float(options.get("k", 5.0)),
      beta1=beta1, beta2=beta2, beta1_complement=1.0 - beta1, beta2_complement=1.0 - beta2,
      epsilon=float(options.get("epsilon", 1e-8)), forget_bias=forget_bias, scale=float(scale),
      matmul=precision or matmul_precision())


@tf.RegisterGradient("FusedLstmCell")
def _fused_lstm_cell_grad(op, dh_next, dc_next):
  """First derivatives of the cell, from its inputs (the backward op recomputes the gates)."""
  dh_next = tf.zeros_like(op.inputs[1]) if dh_next is None else dh_next
  dc_next = tf.zeros_like(op.inputs[2]) if dc_next is None else dc_next
  return _load().fused_lstm_cell_grad(*op.inputs, dh_next, dc_next,
                                      forget_bias=op.get_attr("forget_bias"),
                                      matmul=op.get_attr("matmul").decode())
