"""The fused C++ LSTM cell against the plain TensorFlow cell, finite differences and meta-gradients.

Sources: `networks.lstm_step` (TensorFlow ops) and its GradientTape gradients; central finite
differences of the op itself; the meta-gradient of a MetaTrainer whose networks run the plain
cell. Tolerances, relative to the largest entry of each compared tensor: 1e-5 for one cell (the
two differ by float rounding of sums taken in another order), 1e-4 for meta-gradients through
3-step unrolls of fixed networks (the rounding compounds over the steps and through the
optimizee's gradients).
"""

import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import configs
from learning_to_learn import fused_lstm
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import seeds as seeds_lib

from conftest import ROOT, TIMEOUT, environment, keras_train_step, random_lstm_weights
from conftest import start_python

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

# Without a compiler the plain cell runs (tested below); with one, the op must build.
HAS_COMPILER = shutil.which(os.environ.get("CXX", "g++")) is not None
needs_op = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler: the plain cell runs")


@needs_op
def test_the_op_builds_where_there_is_a_compiler():
  assert fused_lstm.available(), "the fused LSTM op did not build (see the INFO log)"


def _cell_inputs(input_size, hidden_size, batch, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [[input_size, batch], [hidden_size, batch], [hidden_size, batch],
            [input_size + hidden_size, 4 * hidden_size], [4 * hidden_size]]
  return [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]


def _relative_error(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  return float(np.max(np.abs(actual - expected)) / (np.max(np.abs(expected)) + 1e-30))


def _outputs_and_gradients(step, inputs, readout):
  """(h', c') and the gradients of sum(readout_h h' + readout_c c') w.r.t. x, h, c, w and b."""
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    hidden, cell = step(*inputs)
    loss = tf.reduce_sum(readout[0] * hidden) + tf.reduce_sum(readout[1] * cell)
  return [hidden, cell] + tape.gradient(loss, inputs)


def _plain(x, h, c, w, b):
  hidden, state = networks.lstm_step(x, networks.LSTMState(h, c), w, b)
  return hidden, state.cell


def _fused(x, h, c, w, b):
  return fused_lstm.lstm_cell(x, h, c, w, b)


@needs_op
class CellTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("first_layer_one_tile", 2, 20, 50), ("second_layer_tiles_and_a_tail", 20, 20, 200),
      ("odd_sizes", 3, 5, 77), ("wide_inputs", 22, 7, 64))
  def test_outputs_and_gradients_match_the_plain_cell(self, input_size, hidden_size, batch):
    inputs = _cell_inputs(input_size, hidden_size, batch)
    rng = np.random.default_rng(1)
    readout = tf.constant(rng.normal(size=[2, hidden_size, batch]).astype(np.float32))
    names = ["h'", "c'", "dx", "dh", "dc", "dw", "db"]
    for compiled in (False, True):
      run = tf.function(_outputs_and_gradients) if compiled else _outputs_and_gradients
      fused = run(_fused, inputs, readout)
      plain = run(_plain, inputs, readout)
      for name, a, e in zip(names, fused, plain):
        self.assertLess(_relative_error(a, e), 1e-5, f"{name}, compiled={compiled}")

  def test_a_carried_state_matches_the_plain_cell(self):
    # In a compiled loop nothing else holds a step's state once the next step has read it, so
    # TensorFlow may hand the op its inputs' buffers for its outputs (kForwardNote in the op).
    # Two layers, six steps, both cells from the same start; then the gradient of the last
    # outputs, whose backward op may take dh' and dc' buffers likewise.
    x, h, c, w, b = _cell_inputs(2, 20, 200)
    w2 = tf.constant(np.random.default_rng(3).normal(size=[40, 80]).astype(np.float32) * 0.3)

    def forward(step, states, offset):
      for t in range(6):
        inputs = x * (t + offset)
        for layer, weights in enumerate((w, w2)):
          inputs, cell = step(inputs, *states[layer], weights, b)
          states[layer] = (inputs, cell)
      return inputs, states

    def run(step):
      @tf.function
      def unrolled():
        # Forward only, on other inputs than the taped pass (or TensorFlow would share the two).
        hidden, states = forward(step, [(h, c), (h, c)], 0.5)
        with tf.GradientTape() as tape:
          tape.watch([w, w2])
          last, taped = forward(step, [(h, c), (h, c)], 1.0)
          loss = tf.reduce_sum(tf.sin(last)) + tf.reduce_sum(tf.square(taped[0][1]))
        return [hidden, states[0][1], states[1][1]] + tape.gradient(loss, [w, w2])
      return unrolled()

    for name, a, e in zip(["h'", "c' (layer 1)", "c' (layer 2)", "dw", "dw2"], run(_fused),
                          run(_plain)):
      self.assertLess(_relative_error(a, e), 1e-4, name)

  def test_gradients_match_finite_differences(self):
    inputs = _cell_inputs(2, 3, 5, seed=2)

    def loss_of(*values):
      hidden, cell = fused_lstm.lstm_cell(*values)
      return tf.reduce_sum(tf.sin(hidden)) + tf.reduce_sum(tf.square(cell))

    analytic, numeric = tf.test.compute_gradient(loss_of, inputs, delta=1e-3)
    for a, n in zip(analytic, numeric):
      self.assertLess(np.max(np.abs(a - n)), 2e-3)

  def test_coordinates_are_bitwise_independent_of_their_neighbours(self):
    x, h, c, w, b = _cell_inputs(2, 20, 100)
    changed = tf.concat([x[:, :1], tf.fill([2, 99], 3.0)], axis=1)
    hidden, cell = fused_lstm.lstm_cell(x, h, c, w, b)
    hidden_changed, cell_changed = fused_lstm.lstm_cell(changed, h, c, w, b)
    np.testing.assert_array_equal(hidden[:, 0], hidden_changed[:, 0])
    np.testing.assert_array_equal(cell[:, 0], cell_changed[:, 0])

  def test_the_lstm_layer_runs_plain_under_xla(self):
    layer = networks.LSTM(2, 20)
    x, h, c, _, _ = _cell_inputs(2, 20, 16)
    state = networks.LSTMState(h, c)
    graph = tf.function(layer, jit_compile=True).get_concrete_function(x, state).graph
    op_types = {op.type for op in graph.get_operations()}
    self.assertNotIn("FusedLstmCell", op_types)
    eager = tf.function(layer).get_concrete_function(x, state).graph
    self.assertIn("FusedLstmCell", {op.type for op in eager.get_operations()})

  def test_bad_shapes_are_one_clear_error(self):
    x, h, c, w, b = _cell_inputs(2, 20, 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"w must be \[22, 80\]"):
      fused_lstm.lstm_cell(x, h, c, w[:20], b)


@pytest.fixture(autouse=True)
def op_wherever_it_builds(monkeypatch):
  """The op runs wherever it builds (L2L_FUSED_LSTM=1), however fast it is here: what these
  tests compare with the plain cell is the op."""
  monkeypatch.setenv(fused_lstm.ENV_SWITCH, "1")


@pytest.fixture
def fresh(monkeypatch):
  """A fused_lstm that has not tried to load its op yet nor timed it; restored afterwards."""
  monkeypatch.setattr(fused_lstm, "_library", None)
  monkeypatch.setattr(fused_lstm, "_faster", None)
  return monkeypatch


@needs_op
def test_the_op_runs_only_where_it_is_the_faster_cell(fresh, tmp_path):
  fresh.delenv(fused_lstm.ENV_SWITCH)
  speeds = tmp_path / "speed.json"
  fresh.setattr(fused_lstm, "_speeds_path", lambda: str(speeds))
  fresh.setattr(fused_lstm, "measure", lambda: (2.0, 1.0))  # the op twice as slow
  assert fused_lstm.available() and not fused_lstm.chosen()
  assert not fused_lstm.usable(tf.zeros([2, 3]))
  assert json.loads(speeds.read_text()) == {"fused_ms": 2.0, "plain_ms": 1.0}

  def untimed():
    raise AssertionError("timed again although the figures are kept")

  fresh.setattr(fused_lstm, "_faster", None)  # as a new process: the figures come from the file
  fresh.setattr(fused_lstm, "measure", untimed)
  assert not fused_lstm.chosen()
  fresh.setenv(fused_lstm.ENV_SWITCH, "1")  # forced: the op, however slow
  assert fused_lstm.chosen()
  speeds.write_text(json.dumps({"fused_ms": 1.0, "plain_ms": 2.0}))
  fresh.delenv(fused_lstm.ENV_SWITCH)
  fresh.setattr(fused_lstm, "_faster", None)
  assert fused_lstm.chosen() and fused_lstm.usable(tf.zeros([2, 3]))


def _processes_starting_together(tmp):
  """Four fresh processes with no kept figures, started together: (each one's [whether the op is
  the faster cell, how often it timed the two], the figures kept)."""
  script = (
      "import json, os, sys\n"
      "from learning_to_learn import fused_lstm\n"
      "fused_lstm.available()\n"
      "fused_lstm._speeds_path = lambda: sys.argv[1]\n"
      "timed = []\n"
      "measure = fused_lstm.measure\n"
      "fused_lstm.measure = lambda: timed.append(1) or measure(coordinates=1024, repetitions=1)\n"
      "print(json.dumps([fused_lstm.faster_here(), len(timed)]))\n")
  speeds = str(tmp / "speed.json")
  env = environment(L2L_FUSED_LSTM=None)
  processes = [start_python("-c", script, speeds, env=env) for _ in range(4)]
  results = []
  for process in processes:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  with open(speeds) as f:
    return results, json.load(f)


@needs_op
def test_processes_starting_together_time_the_op_once_and_agree(runs):
  """Four fresh processes with no kept figures: one times, the others read its figures."""
  results, kept = runs["processes_starting_together"].result(timeout=TIMEOUT)
  assert len({faster for faster, _ in results}) == 1, results
  assert sum(timed for _, timed in results) == 1, results
  assert results[0][0] == (kept["fused_ms"] < kept["plain_ms"])


# Where each instruction set is in /proc/cpuinfo's flags: a build for it runs here only if the CPU
# has them all.
_NARROWER_BUILDS = {"x86-64-v3": {"avx2", "fma", "bmi2"}, "x86-64-v2": {"sse4_2", "popcnt"}}


def _cpu_has(flags):
  return flags <= set(fused_lstm._cpu_flags().split())  # pylint: disable=protected-access


def _narrower_builds(tmp):
  """The cell's and the learned step's tests, each build in a child process of its own (one
  library of the op a process), side by side, its build flags replaced: march -> (the child's
  exit status, its output, the files its build left)."""
  # Without AVX-512 the machine's own build already has AVX2's packets.
  marches = [march for march, flags in sorted(_NARROWER_BUILDS.items())
             if _cpu_has(flags) and (march != "x86-64-v3" or _cpu_has({"avx512f"}))]
  children = {}
  for march in marches:
    home = tmp / march
    home.mkdir()
    (home / "narrower_build.py").write_text(
        "from learning_to_learn import fused_lstm\n"
        f"fused_lstm._OPTIMIZATION = ['-O3', '-march={march}', '-fPIC', '-shared']\n")
    env = environment(PYTHONPATH=os.pathsep.join([ROOT, str(home)]),
                      XDG_CACHE_HOME=str(home / "cache"), L2L_FUSED_LSTM=None,
                      L2L_NARROWER_BUILD=march)
    children[march] = start_python(
        "-m", "pytest", "-q", "-p", "narrower_build", "-p", "no:cacheprovider",
        os.path.join(ROOT, "tests", "test_fused_lstm.py"),
        "-k", "CellTest and match or LearnedStepTest and matches",
        env=env, stderr=subprocess.STDOUT)
  results = {}
  for march, child in children.items():
    out, _ = child.communicate(timeout=600)
    cache = tmp / march / "cache" / "learning_to_learn"
    results[march] = (child.returncode, out, os.listdir(cache) if cache.is_dir() else [])
  return results


@needs_op
@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction sets")
def test_builds_for_narrower_vector_registers_match_the_plain_cell(runs):
  # The op's packets and register blocks follow the widest registers the build may use (16 floats
  # with AVX-512, 8 with AVX2, 4 with SSE); a machine runs only its own width unless built for a
  # narrower one: the cell and learned-step tests against the plain cell and the network op by op,
  # for each narrower build this CPU runs.
  if os.environ.get("L2L_NARROWER_BUILD"):
    pytest.skip("a child of this test")  # never starts children of its own
  results = runs["narrower_builds"].result(timeout=TIMEOUT)
  assert results, "an x86-64 CPU runs SSE4.2 code"
  for march, (returncode, out, built) in results.items():
    assert returncode == 0, f"{march}: {out[-3000:]}"
    assert " passed" in out and " failed" not in out, f"{march}: {out[-3000:]}"
    assert any(name.endswith(".so") for name in built), (march, built)


BACKGROUND_FIRST = True  # the narrower builds are the longest single job: a child's 25 s compile


def start_background_jobs(items, submit, tmp_path_factory):
  """The jobs of the selected tests (`items`) that start processes of their own, started as the
  session starts (conftest runs them beside the other tests): name -> Future."""
  narrower = (platform.machine() == "x86_64"
              and not os.environ.get("L2L_NARROWER_BUILD"))  # a child of that test starts none
  jobs = {"test_processes_starting_together_time_the_op_once_and_agree":
              ("processes_starting_together", _processes_starting_together, True),
          "test_builds_for_narrower_vector_registers_match_the_plain_cell":
              ("narrower_builds", _narrower_builds, narrower)}
  futures = {}
  for item in items:
    if item.originalname in jobs and HAS_COMPILER:  # else the tests skip
      name, job, wanted = jobs[item.originalname]
      if wanted:
        futures[name] = submit(job, tmp_path_factory.mktemp(name))
  return futures


@needs_op
def test_measure_times_both_cells():
  fused_ms, plain_ms = fused_lstm.measure(coordinates=256, repetitions=1, calls=1)
  assert 0 < fused_ms < 1e4 and 0 < plain_ms < 1e4


def test_the_switch_forces_the_plain_cell(fresh):
  fresh.setenv(fused_lstm.ENV_SWITCH, "0")
  assert not fused_lstm.available()


def test_no_compiler_is_a_fallback_with_a_reason(fresh):
  fresh.setenv("CXX", "/nonexistent/g++")
  with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
    fused_lstm.build()
  assert not fused_lstm.available()


def test_a_failing_build_is_a_fallback_with_the_compiler_message(fresh, tmp_path):
  broken = tmp_path / "broken.cc"
  broken.write_text("this is not C++\n")
  fresh.setattr(fused_lstm, "SOURCE", str(broken))
  fresh.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  # The message quotes the compiler's first error, not the notes and warnings after it.
  with pytest.raises(RuntimeError, match=r"failed \(status 1\): .*broken.cc:1:1: error: "):
    fused_lstm.build()
  assert not fused_lstm.available()


def _set_fused(optimizer, fused):
  for net in optimizer.nets.values():
    for core in getattr(net, "_cores", ()):
      core.fused_cell = fused


def _meta_gradients(optimizer, problem, fused, unroll=3, **kwargs):
  """The meta-gradient of one unroll from a fixed seed, the networks on the fused or plain cell."""
  _set_fused(optimizer, fused)
  trainer = optimizer.meta_minimize(problem, unroll, learning_rate=0.001, jit_compile=False,
                                    **kwargs)
  trainer.reset(seeds_lib.make_seed(7))
  train = trainer._train_fn  # pylint: disable=protected-access
  result, _, gradients = train(trainer.states, seeds_lib.make_seed(7, 1))
  return float(result.meta_loss), [g.numpy() for g in gradients]


def _conv_problem():
  """cifar-multi's config: a conv net, two networks by net assignments (the data beside the
  checkout, as for the MNIST cases)."""
  return configs.get_config("cifar-multi", data_dir=os.path.join(DATA, "cifar10"))


@needs_op
class MetaGradientTest(parameterized.TestCase):

  def _check(self, problem, net_config, net_assignments=None, tolerance=1e-4, **kwargs):
    # The same networks every run: how far a rounding carries depends on them. On the conv net,
    # other networks' meta-gradients moved by up to 1e-2 when the plain cell's hidden state was
    # scaled by 1 + 1.2e-7 (one float32 rounding), as far as fused and plain differed there: a
    # branch (ReLU, max-pool, LogAndSign's clip) flips on a rounding and takes a jump with it.
    tf.random.set_seed(0)
    optimizer = meta.MetaOptimizer(**net_config)
    plain_loss, plain = _meta_gradients(optimizer, problem, False,
                                        net_assignments=net_assignments, **kwargs)
    fused_loss, fused = _meta_gradients(optimizer, problem, True,
                                        net_assignments=net_assignments, **kwargs)
    self.assertAlmostEqual(fused_loss, plain_loss, delta=1e-5 * abs(plain_loss))
    self.assertLen(fused, len(plain))
    for variable, a, e in zip(optimizer.trainable_variables, fused, plain):
      self.assertGreater(np.max(np.abs(e)), 0.0, variable.name)
      self.assertLess(_relative_error(a, e), tolerance, variable.name)

  @parameterized.named_parameters(("first_order", False), ("second_derivatives", True))
  def test_mnist(self, second_derivatives):
    problem, net_config, _ = configs.get_config("mnist", data_dir=os.path.join(DATA, "mnist"))
    self._check(problem, net_config, second_derivatives=second_derivatives)

  def test_mnist_imitating_adam(self):
    problem, net_config, _ = configs.get_config("mnist", data_dir=os.path.join(DATA, "mnist"))
    self._check(problem, net_config,
                teacher={"adam": {"net": "Adam", "net_options": {"learning_rate": 0.01}}})

  @parameterized.named_parameters(("first_order", False), ("second_derivatives", True))
  def test_conv_net_with_two_networks(self, second_derivatives):
    config = _conv_problem()
    problem, net_config, net_assignments = config
    # 3e-4: on an AVX2 CPU (AMD EPYC, Zen 3) the conv layers' network's meta-gradients were 7e-6
    # to 1.7e-4 apart (its second layer's bias, a sum over every coordinate and step whose terms
    # cancel), the same before and after the op's packets were sized to AVX2; under 1e-4 with
    # AVX-512, where TensorFlow's kernels sum in another order.
    self._check(problem, net_config, net_assignments, tolerance=3e-4,
                second_derivatives=second_derivatives)


def _learned_step_case(preprocess_name, layers, num_coords, seed=0):
  """Random weights, LSTM states and a gradient (and Adam moments) for learned_step."""
  from learning_to_learn import preprocess
  rng = np.random.default_rng(seed)
  normal = lambda *shape: tf.constant(rng.normal(size=shape).astype(np.float32))
  weights, inputs = {}, preprocess.num_features(preprocess_name)
  for i, hidden in enumerate(layers):
    weights[f"lstm_{i}/w_gates"] = 0.5 * normal(inputs + hidden, 4 * hidden)
    weights[f"lstm_{i}/b_gates"] = 0.5 * normal(4 * hidden)
    inputs = hidden
  weights["linear/w"], weights["linear/b"] = normal(inputs, 1), normal(1)
  states = tuple(networks.LSTMState(normal(h, num_coords), normal(h, num_coords)) for h in layers)
  # Magnitudes from 1e-6 to 1: LogAndSign's linear and log branches, Adam's normalization.
  gradient = normal(num_coords) * tf.constant(10.0 ** rng.uniform(-6, 0, num_coords), tf.float32)
  moments = None
  if preprocess_name == "AdamNormalized":
    # Moments of the gradient's own magnitude, as Adam's would be, so that the features stay
    # within a few units rather than saturating every gate.
    magnitude = tf.reshape(tf.abs(gradient), [-1, 1])
    moments = preprocess.AdamNormalizedState(
        magnitude * normal(num_coords, 1),
        tf.square(magnitude * tf.constant(rng.uniform(0.5, 2, [num_coords, 1]), tf.float32)),
        tf.constant(6.0))
  return gradient, moments, states, weights


def _op_by_op_step(gradient, moments, states, weights, preprocess_name, options, scale,
                   step=networks.lstm_step):
  """The same update from TensorFlow ops: preprocess, `step` per layer (cells.lstm_step unless
  said), linear."""
  from learning_to_learn import preprocess
  module = preprocess.factory(preprocess_name, options)
  features = tf.reshape(gradient, [-1, 1])
  if moments is not None:
    features, moments = module(features, moments)
  else:
    features = module(features)
  outputs, next_states = tf.transpose(features), []
  for i, state in enumerate(states):
    outputs, state = step(outputs, state, weights[f"lstm_{i}/w_gates"],
                          weights[f"lstm_{i}/b_gates"])
    next_states.append(state)
  update = tf.reshape(networks.linear(outputs, weights["linear/w"], weights["linear/b"]) * scale,
                      [-1])
  return update, moments, next_states


# (name, preprocessing, its options, layers, coordinates): tiles and a tail, one tile, odd sizes.
LEARNED_STEP_CASES = [
    ("identity", "identity", {}, (20, 20), 200),
    ("log_and_sign", "LogAndSign", {"k": 5.0}, (20, 20), 77),
    ("adam_normalized", "AdamNormalized", {}, (20, 20), 130),
    ("adam_normalized_own_betas", "AdamNormalized",
     {"beta1": 0.5, "beta2": 0.9, "epsilon": 1e-6}, (20, 20), 64),
    ("three_odd_layers", "LogAndSign", {"k": 10.0}, (3, 5, 9), 33)]


@needs_op
class LearnedStepTest(parameterized.TestCase):
  """`fused_lstm.learned_step`, the Keras optimizer's whole update in one op."""

  @parameterized.named_parameters(*LEARNED_STEP_CASES)
  def test_it_matches_the_network_run_op_by_op(self, name, options, layers, num_coords):
    gradient, moments, states, weights = _learned_step_case(name, layers, num_coords)
    update, next_moments, next_states = fused_lstm.learned_step(
        gradient, moments, states, weights, name, options, scale=0.3)
    want, want_moments, want_states = _op_by_op_step(gradient, moments, states, weights, name,
                                                     options, 0.3)
    self.assertEqual(update.shape, [num_coords])
    self.assertLess(_relative_error(update, want), 1e-5)
    for got, expected in zip(next_states, want_states):
      self.assertLess(_relative_error(got.hidden, expected.hidden), 1e-5)
      self.assertLess(_relative_error(got.cell, expected.cell), 1e-5)
    if moments is None:
      self.assertIsNone(next_moments)
    else:
      self.assertLess(_relative_error(next_moments.m, want_moments.m), 1e-6)
      self.assertLess(_relative_error(next_moments.v, want_moments.v), 1e-6)
      self.assertEqual(float(next_moments.count), 7.0)

  def test_a_coordinate_is_independent_of_its_neighbours(self):
    gradient, moments, states, weights = _learned_step_case("AdamNormalized", (20, 20), 100)
    changed = tf.concat([gradient[:1], tf.fill([99], 3.0)], axis=0)
    first = fused_lstm.learned_step(gradient, moments, states, weights, "AdamNormalized")
    second = fused_lstm.learned_step(changed, moments, states, weights, "AdamNormalized")
    np.testing.assert_array_equal(first[0][0], second[0][0])
    np.testing.assert_array_equal(first[2][1].cell[:, 0], second[2][1].cell[:, 0])

  def test_an_unsupported_preprocessing_is_refused(self):
    gradient, _, states, weights = _learned_step_case("identity", (4,), 8)
    with pytest.raises(ValueError, match="'Clamp' is not one of identity, LogAndSign"):
      fused_lstm.learned_step(gradient, None, states, weights, "Clamp")

  def test_bad_shapes_are_one_clear_error(self):
    gradient, _, states, weights = _learned_step_case("identity", (4,), 8)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"layer 0's hidden and cell must be \[hidden, 7\]"):
      fused_lstm.learned_step(gradient[:7], None, states, weights, "identity")


def _variables(moments, states):
  """(moments as (m, v) variables or None, states as (hidden, cell) variable pairs)."""
  held = None if moments is None else (tf.Variable(moments.m), tf.Variable(moments.v))
  return held, [(tf.Variable(s.hidden), tf.Variable(s.cell)) for s in states]


@needs_op
class ApplyLearnedStepTest(parameterized.TestCase):
  """`fused_lstm.apply_learned_step`: the same update, its state overwritten in its variables."""

  @parameterized.named_parameters(*LEARNED_STEP_CASES)
  def test_it_matches_the_network_run_op_by_op(self, name, options, layers, num_coords):
    gradient, moments, states, weights = _learned_step_case(name, layers, num_coords)
    want, want_moments, want_states = _op_by_op_step(gradient, moments, states, weights, name,
                                                     options, 0.3)
    held, variables = _variables(moments, states)

    @tf.function
    def step():  # no other tensor holds the variables' buffers here: written where they are
      count = 0.0 if moments is None else moments.count + 1.0
      return fused_lstm.apply_learned_step(gradient, held, count, variables, weights, name,
                                           options, scale=0.3)

    update = step()
    self.assertLess(_relative_error(update, want), 1e-5)
    for (hidden, cell), expected in zip(variables, want_states):
      self.assertLess(_relative_error(hidden, expected.hidden), 1e-5)
      self.assertLess(_relative_error(cell, expected.cell), 1e-5)
    if moments is not None:
      self.assertLess(_relative_error(held[0], want_moments.m), 1e-6)
      self.assertLess(_relative_error(held[1], want_moments.v), 1e-6)

  def test_a_value_read_before_keeps_it(self):
    gradient, moments, states, weights = _learned_step_case("AdamNormalized", (20, 20), 70)
    held, variables = _variables(moments, states)
    before = [v.read_value() for pair in [held] + variables for v in pair]  # share the buffers
    copies = [np.array(t) for t in before]
    want, want_moments, want_states = _op_by_op_step(gradient, moments, states, weights,
                                                     "AdamNormalized", {}, 1.0)
    update = fused_lstm.apply_learned_step(gradient, held, moments.count + 1.0, variables,
                                           weights, "AdamNormalized")
    for tensor, copy in zip(before, copies):
      np.testing.assert_array_equal(tensor.numpy(), copy)
    self.assertLess(_relative_error(update, want), 1e-5)
    self.assertLess(_relative_error(held[1], want_moments.v), 1e-6)
    self.assertLess(_relative_error(variables[1][1], want_states[1].cell), 1e-5)

  def test_a_gradient_not_finite_moves_nothing_and_gives_nan(self):
    gradient, moments, states, weights = _learned_step_case("AdamNormalized", (20, 20), 70)
    gradient = tf.tensor_scatter_nd_update(gradient, [[69]], [np.inf])
    held, variables = _variables(moments, states)
    before = [np.array(v.numpy()) for pair in [held] + variables for v in pair]
    update = fused_lstm.apply_learned_step(gradient, held, moments.count + 1.0, variables,
                                           weights, "AdamNormalized")
    self.assertTrue(np.all(np.isnan(update.numpy())))
    for variable, want in zip([v for pair in [held] + variables for v in pair], before):
      np.testing.assert_array_equal(variable.numpy(), want)

  def test_moments_that_do_not_fit_the_preprocessing_are_refused(self):
    gradient, moments, states, weights = _learned_step_case("AdamNormalized", (4,), 8)
    held, variables = _variables(moments, states)
    with pytest.raises(tf.errors.InvalidArgumentError, match="takes 2 moment variables; got 0"):
      fused_lstm.apply_learned_step(gradient, None, 1.0, variables, weights, "AdamNormalized")


def _keras_updates(checkpoint, fused, monkeypatch, jit_compile=False, steps=3):
  """A small Dense model's parameters after `steps` steps of LearnedOptimizer (none: the step is
  only traced), and the step's op types."""
  import keras
  from learning_to_learn import keras as l2l_keras
  monkeypatch.setattr(fused_lstm, "chosen", lambda: fused)
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(70, activation="tanh"),
                            keras.layers.Dense(3)])
  optimizer = l2l_keras.LearnedOptimizer(checkpoint)
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=[32, 6]).astype(np.float32))
  y = tf.constant(rng.normal(size=[32, 3]).astype(np.float32))
  step = keras_train_step(model, optimizer, x, y, jit_compile)
  for _ in range(steps):
    step()
  op_types = {op.type for op in step.get_concrete_function().graph.get_operations()}
  return [v.numpy() for v in model.trainable_variables], op_types


LEARNED_STEP_OPS = {"FusedLearnedStep", "FusedLearnedStepInPlace"}


@needs_op
@pytest.mark.parametrize("options", [
    {"preprocess_name": "AdamNormalized", "preprocess_options": {}, "scale": 0.1,
     "scale_adaptation": 0.05},
    {"preprocess_name": "AdamNormalized", "preprocess_options": {}, "scale": 0.002,
     "scale_adaptation": 0.05, "normalize_output": True},
    {"preprocess_name": "AdamNormalized", "preprocess_options": {}, "scale": 0.016,
     "scale_adaptation": 0.05, "adaptation_averaging": 0.97, "normalize_output": True,
     "signal_scaled": True},
    {"preprocess_name": "LogAndSign", "preprocess_options": {"k": 5}, "scale": 0.1}],
    ids=["adam_normalized_adapted", "normalized_adapted", "signal_scaled_averaged",
         "log_and_sign"])
def test_the_keras_step_runs_one_op_a_variable_with_the_plain_updates(options, monkeypatch,
                                                                       tmp_path):
  from learning_to_learn import optimizer_files
  net = networks.CoordinateWiseDeepLSTM(layers=(20, 20), initializer=random_lstm_weights(3),
                                        **options)
  checkpoint = optimizer_files.save(net, str(tmp_path / "cw.npz"))
  fused, fused_ops = _keras_updates(checkpoint, True, monkeypatch)
  plain, plain_ops = _keras_updates(checkpoint, False, monkeypatch)
  # The state is overwritten in place (FusedLearnedStepInPlace) outside a distribution strategy.
  assert "FusedLearnedStepInPlace" in fused_ops and not LEARNED_STEP_OPS & plain_ops
  for a, e in zip(fused, plain):
    assert _relative_error(a, e) < 1e-5
  _, xla_ops = _keras_updates(checkpoint, True, monkeypatch, jit_compile=True, steps=0)
  assert not LEARNED_STEP_OPS & xla_ops


# --- The whole update as one op where nothing differentiates it (networks.forward_only) ----------

FORWARD_ONLY_CASES = [
    {"preprocess_name": "LogAndSign", "preprocess_options": {"k": 5}, "scale": 0.1},
    {"preprocess_name": "AdamNormalized", "preprocess_options": {}, "scale": 0.1}]


def _steps(net, gradients):
  """(the updates, the final state) of `net` over `gradients` from its initial state."""
  state = net.initial_state_for_inputs(gradients[0])
  updates = []
  for gradient in gradients:
    update, state = net(gradient, state)
    updates.append(update)
  return updates, state


def _op_types(net, gradient, forward_only, jit_compile=False):
  """The op types of one call of `net` traced under tf.function, within forward_only or not."""
  def call(g, state):
    if forward_only:
      with networks.forward_only():
        return net(g, state)
    return net(g, state)
  state = net.initial_state_for_inputs(gradient)
  function = tf.function(call, jit_compile=jit_compile)
  return {op.type for op in function.get_concrete_function(gradient, state).graph.get_operations()}


@needs_op
@pytest.mark.parametrize("options", FORWARD_ONLY_CASES, ids=["log_and_sign", "adam_normalized"])
def test_forward_only_runs_the_whole_update_as_one_op_with_the_plain_updates(options):
  whole, plain = (networks.CoordinateWiseDeepLSTM(layers=(20, 20), fused_cell=fused,
                                                  initializer=random_lstm_weights(5), **options)
                  for fused in (True, False))
  rng = np.random.default_rng(0)
  # 7 x 11 = 77 coordinates (the state's 80 columns hold 3 of padding), magnitudes 1e-6 to 1.
  gradients = [tf.constant((rng.normal(size=(7, 11)) * 10.0 ** rng.uniform(-6, 0, (7, 11)))
                           .astype(np.float32)) for _ in range(4)]
  with networks.forward_only():
    got, got_state = _steps(whole, gradients)
  want, want_state = _steps(plain, gradients)
  for actual, expected in zip(got, want):
    assert actual.shape == (7, 11)
    assert _relative_error(actual, expected) < 1e-5
  for actual, expected in zip(got_state[:2], want_state[:2]):
    assert actual.hidden.shape == actual.cell.shape == (20, 80)
    assert _relative_error(actual.hidden[:, :77], expected.hidden[:, :77]) < 1e-5
    assert _relative_error(actual.cell[:, :77], expected.cell[:, :77]) < 1e-5
  if options["preprocess_name"] == "AdamNormalized":
    actual, expected = got_state[2], want_state[2]
    assert actual.m.shape == expected.m.shape and float(actual.count) == 4.0
    assert _relative_error(actual.m, expected.m) < 1e-6
    assert _relative_error(actual.v, expected.v) < 1e-6
  # One op a step within forward_only; outside it, or under XLA, a cell a layer or the plain ops.
  inside, outside = (_op_types(whole, gradients[0], f) for f in (True, False))
  assert "FusedLearnedStep" in inside and "FusedLstmCell" not in inside
  assert "FusedLearnedStep" not in outside and "FusedLstmCell" in outside
  assert not {"FusedLearnedStep", "FusedLstmCell"} & _op_types(whole, gradients[0], True, True)


@needs_op
def test_evaluation_runs_the_whole_update_outside_xla_with_the_xla_losses():
  import problems  # pylint: disable=import-outside-toplevel
  from learning_to_learn import evaluation  # pylint: disable=import-outside-toplevel
  config = {"cw": {"net": "CoordinateWiseDeepLSTM", "net_options": dict(
      layers=(20, 20), initializer=random_lstm_weights(2), **FORWARD_ONLY_CASES[0])}}
  problem = problems.quadratic(batch_size=4, num_dims=10)
  default, xla = (evaluation.Evaluator(problem, config, unroll_length=5, jit_compile=jit)
                  for jit in (None, True))
  assert meta.eval_jit_compile(None, default.meta_optimizer.nets.values()) is False
  assert meta.eval_jit_compile(None, [networks.factory("Adam", {"learning_rate": 0.1})]) is True
  seeds = [(0, 3, 0), (0, 3, 1)]
  got, want = default.run(seeds, num_steps=12), xla.run(seeds, num_steps=12)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert not np.allclose(want[:, -1], want[:, 0])  # the rule moved the optimizee
  # pylint: disable=protected-access
  state = default._initial_state_fn(seeds_lib.initial_seed(seeds[0]))
  batches = default._sample_batches_fn(seeds_lib.unroll_seed(seeds[0], 0), 6)
  graph = default._run_steps_fn.get_concrete_function(state, batches).graph
  # pylint: enable=protected-access
  assert "FusedLearnedStep" in {op.type for op in graph.get_operations()}
  trainer = meta.MetaOptimizer(**config).meta_minimize(problem, 5)
  trainer.reset(seeds_lib.make_seed(0, 1))
  assert np.isfinite(trainer.eval_unroll(seeds_lib.make_seed(0, 1, 1)).losses.numpy()).all()


# --- bfloat16 matmuls ($L2L_LSTM_MATMUL=bfloat16) -------------------------------------------------

needs_bf16 = pytest.mark.skipif(
    not (HAS_COMPILER and fused_lstm.bf16_supported()),
    reason="bfloat16 matmuls need a compiler and a CPU with AVX512_BF16")


def _to_bfloat16(a):
  """a rounded to bfloat16 (to nearest even) and back, as float64: numpy's own bit arithmetic."""
  bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
  bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
  return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def _sigmoid(z):
  return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(z, np.float64))  # no overflow at large |z|


@functools.lru_cache(maxsize=None)
def _piecewise():
  """(sigmoid, tanh) as bfloat16 mode evaluates them, in float64 from the pieces that
  scripts/activation_pieces.py fits, not from the op's copy of its tables."""
  spec = importlib.util.spec_from_file_location(
      "activation_pieces", os.path.join(ROOT, "scripts", "activation_pieces.py"))
  pieces = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(pieces)
  functions = []
  for name in ("kSigmoidPieces", "kTanhPieces"):
    function, top, odd = pieces.FUNCTIONS[name]
    functions.append(functools.partial(pieces.evaluate, pieces.fit(function, top), top=top,
                                       odd=odd, dtype=np.float64))
  return tuple(functions)


def _rounded_reference(x, h, c, w, b, dh_next, dc_next):
  """The cell and its backward pass in float64 with each matmul's operands rounded to bfloat16
  and the gates' sigmoid and tanh the fitted pieces (`_piecewise`), written from the LSTM's
  equations: (h', c') and (dx, dh, dc, dw, db)."""
  x, h, c, w, b, dh_next, dc_next = (np.asarray(t, np.float64) for t in
                                     (x, h, c, w, b, dh_next, dc_next))
  sigmoid, tanh = _piecewise()
  stacked = np.concatenate([x, h])
  i, j, f, o = np.split(_to_bfloat16(w).T @ _to_bfloat16(stacked) + b[:, None], 4)
  i, j, f, o = sigmoid(i), tanh(j), sigmoid(f + 1.0), sigmoid(o)
  cell = f * c + i * j
  tanh_cell = tanh(cell)
  dcell = dc_next + dh_next * o * (1.0 - tanh_cell ** 2)
  dgates = np.concatenate([dcell * j * i * (1.0 - i), dcell * i * (1.0 - j ** 2),
                           dcell * c * f * (1.0 - f), dh_next * tanh_cell * o * (1.0 - o)])
  dstacked = _to_bfloat16(w) @ _to_bfloat16(dgates)
  k = x.shape[0]
  return ((o * tanh_cell, cell),
          (dstacked[:k], dstacked[k:], dcell * f,
           _to_bfloat16(stacked) @ _to_bfloat16(dgates).T, dgates.sum(axis=1)))


@needs_bf16
@pytest.mark.parametrize("input_size, hidden_size, batch",
                         [(2, 20, 200), (20, 20, 300), (3, 5, 77)])
def test_bfloat16_cell_matches_the_equations_with_rounded_operands(monkeypatch, input_size,
                                                                   hidden_size, batch):
  # In norm (the difference's over the reference's), so that a rare operand which float32 rounding
  # puts on the other side of a bfloat16 rounding boundary counts for little; the float32 op,
  # whose every product differs from the reference's by up to 2^-8, must fail it.
  inputs = _cell_inputs(input_size, hidden_size, batch)
  rng = np.random.default_rng(1)
  upstream = [tf.constant(rng.normal(size=[hidden_size, batch]).astype(np.float32))
              for _ in range(2)]
  forward, backward = _rounded_reference(*inputs, *upstream)
  library = fused_lstm._load()  # pylint: disable=protected-access
  for matmul, close in (("bfloat16", True), ("float32", False)):
    got_forward = library.fused_lstm_cell(*inputs, matmul=matmul)
    got_backward = library.fused_lstm_cell_grad(*inputs, *upstream, matmul=matmul)
    errors = [np.linalg.norm(a - e) / np.linalg.norm(e)
              for a, e in zip(list(got_forward) + list(got_backward), forward + backward)]
    assert (max(errors) < 1e-5) == close, (matmul, errors)
  monkeypatch.setenv(fused_lstm.MATMUL_ENV, "bfloat16")
  np.testing.assert_array_equal(fused_lstm.lstm_cell(*inputs)[0],
                                library.fused_lstm_cell(*inputs, matmul="bfloat16")[0])


def _activation_tables(text):
  """{name: (header comment, coefficients [rows, pieces])} of the C++ tables in `text`."""
  tables = {}
  pattern = r"(// (k\w+Pieces):[^\n]*)\n[^\n]*constexpr float \2\[(\d+)\]\[(\d+)\] = \{(.*?)\n\};"
  for match in re.finditer(pattern, text, re.S):
    numbers = [float(x) for x in re.findall(r"(-?[0-9.]+(?:e-?[0-9]+)?)f", match.group(5))]
    shape = int(match.group(3)), int(match.group(4))
    tables[match.group(2)] = match.group(1), np.array(numbers).reshape(shape)
  return tables


def test_the_op_holds_the_tables_that_the_script_fits():
  # A refit, or a hand edit of either side, shows here rather than as a small drift in results.
  # The fit's least squares round differently on other CPUs (coefficients below 1e-5 moved by up
  # to 4.5e-13 on an AVX2 AMD EPYC): 1e-9 a coefficient moves a piece's value by at most 4e-9,
  # against the pieces' errors of 3.6e-6 and 7.2e-6 stated in the headers, which must match.
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "activation_pieces.py")],
                          capture_output=True, text=True, check=True)
  with open(fused_lstm.SOURCE) as f:
    in_source = _activation_tables(f.read())
  fitted = _activation_tables(result.stdout)
  assert sorted(fitted) == sorted(in_source) == ["kSigmoidPieces", "kTanhPieces"]
  for name, (header, coefficients) in fitted.items():
    assert in_source[name][0] == header
    np.testing.assert_allclose(in_source[name][1], coefficients, rtol=0, atol=1e-9, err_msg=name)


@needs_bf16
def test_bfloat16_gate_activations_are_within_their_stated_error():
  # One unit, four inputs that are the gates themselves (identity weights, operands exact in
  # bfloat16), c = 0: c' = sigmoid(a) tanh(b), h' = sigmoid(d) tanh(c'), against float64. The
  # pieces' largest errors are 3.6e-6 (sigmoid) and 7.2e-6 (tanh) (scripts/activation_pieces.py).
  rng = np.random.default_rng(0)
  n = 4096
  gates = _to_bfloat16(rng.uniform(-24.0, 24.0, size=[4, n])).astype(np.float32)
  gates[:, :64] = _to_bfloat16(np.linspace(-1.0, 1.0, 64)).astype(np.float32)  # near zero
  gates[:, 64] = [0.0, 0.0, 0.0, 0.0]
  gates[:, 65] = [1e30, 1e30, 0.0, 1e30]  # saturated (an infinite operand would give 0 inf)
  gates[:, 66] = [-1e30, -1e30, 0.0, -1e30]
  gates[:, 67] = [np.nan, 1.0, 0.0, 1.0]
  w = np.concatenate([np.eye(4), np.zeros([1, 4])]).astype(np.float32)
  library = fused_lstm._load()  # pylint: disable=protected-access
  h, c = library.fused_lstm_cell(gates, np.zeros([1, n], np.float32), np.zeros([1, n], np.float32),
                                 w, np.zeros([4], np.float32), forget_bias=0.0,
                                 matmul="bfloat16")
  a, b, _, d = gates.astype(np.float64)
  cell = _sigmoid(a) * np.tanh(b)
  hidden = _sigmoid(d) * np.tanh(cell)
  finite = np.arange(n) != 67
  assert np.max(np.abs(c.numpy()[0, finite] - cell[finite])) < 1.1e-5
  assert np.max(np.abs(h.numpy()[0, finite] - hidden[finite])) < 1.9e-5
  assert c.numpy()[0, 64] == 0.0 and h.numpy()[0, 64] == 0.0  # tanh(0) is exactly 0
  assert np.isnan(c.numpy()[0, 67]) and np.isnan(h.numpy()[0, 67])  # NaN is not hidden


@needs_bf16
def test_bfloat16_learned_step_matches_the_bfloat16_cell_layer_by_layer(monkeypatch):
  monkeypatch.setenv(fused_lstm.MATMUL_ENV, "bfloat16")
  gradient, moments, states, weights = _learned_step_case("AdamNormalized", (20, 20), 130)
  update, _, next_states = fused_lstm.learned_step(gradient, moments, states, weights,
                                                   "AdamNormalized", {}, scale=0.3)
  # The same update through the one-layer op (tested above against the equations) and TF ops.
  want, _, want_states = _op_by_op_step(gradient, moments, states, weights, "AdamNormalized", {},
                                        0.3, step=networks.fused_lstm_step)
  for got, expected in zip(next_states, want_states):
    assert _relative_error(got.cell, expected.cell) < 1e-5
  assert _relative_error(update, want) < 1e-5
  float32_update = fused_lstm.learned_step(gradient, moments, states, weights, "AdamNormalized",
                                           {}, scale=0.3, precision="float32")[0]
  assert 1e-4 < _relative_error(float32_update, want) < 5e-2


@needs_bf16
@pytest.mark.parametrize("unroll", [3, 20])
def test_bfloat16_meta_gradient_is_within_its_stated_tolerance_of_float32(monkeypatch, unroll):
  """docs/performance.md states it: the meta-gradient of an MNIST unroll within 1% of the plain
  float32 cell's (norm of the difference over the norm), at a cosine above 0.9999, the meta-loss
  within 1e-5."""
  problem, net_config, _ = configs.get_config("mnist", data_dir=os.path.join(DATA, "mnist"))
  tf.random.set_seed(0)
  optimizer = meta.MetaOptimizer(**net_config)

  def meta_gradient(fused):
    loss, gradients = _meta_gradients(optimizer, problem, fused, unroll)
    return loss, np.concatenate([g.ravel() for g in gradients])

  plain_loss, plain = meta_gradient(False)
  monkeypatch.setenv(fused_lstm.MATMUL_ENV, "bfloat16")
  loss, rounded = meta_gradient(True)
  difference = np.linalg.norm(rounded - plain) / np.linalg.norm(plain)
  cosine = rounded @ plain / (np.linalg.norm(rounded) * np.linalg.norm(plain))
  assert abs(loss - plain_loss) < 1e-5 * abs(plain_loss)
  assert 1e-5 < difference < 1e-2  # rounded, yet close
  assert cosine > 0.9999


@pytest.mark.parametrize("value, flags, message", [
    ("bf16", "avx512f avx512_bf16", r"L2L_LSTM_MATMUL='bf16' is not one of float32, bfloat16; "),
    ("bfloat16", "avx512f", r"L2L_LSTM_MATMUL=bfloat16 needs a CPU with AVX512_BF16 and the "
                            r"fused op built for it, which this machine lacks; unset it for "
                            r"float32\.")])
def test_a_bad_matmul_setting_is_one_clear_error(monkeypatch, value, flags, message):
  monkeypatch.setenv(fused_lstm.MATMUL_ENV, value)
  monkeypatch.setattr(fused_lstm, "_cpu_flags", lambda: f"flags\t\t: {flags}")
  with pytest.raises(ValueError, match=message) as raised:
    fused_lstm.matmul_precision()
  assert "\n" not in str(raised.value)
  monkeypatch.setattr(fused_lstm, "faster_here", lambda: False)  # the plain cell runs
  monkeypatch.delenv(fused_lstm.ENV_SWITCH)
  with pytest.raises(ValueError, match=message):
    fused_lstm.chosen()
  # and before anything is traced, where the error would come wrapped in a traceback
  from learning_to_learn import keras as l2l_keras
  for make in (meta.MetaOptimizer, lambda: l2l_keras.LearnedOptimizer("mnist")):
    with pytest.raises(ValueError, match=message):
      make()
  # Where the plain cell is forced, bfloat16 has nothing to change: no error (a line at INFO);
  # a value that is no precision at all is still refused.
  monkeypatch.setenv(fused_lstm.ENV_SWITCH, "0")
  if value == "bfloat16":
    assert fused_lstm.chosen() is False
  else:
    with pytest.raises(ValueError, match=message):
      fused_lstm.chosen()
  monkeypatch.delenv(fused_lstm.MATMUL_ENV)
  assert fused_lstm.matmul_precision() == "float32"
