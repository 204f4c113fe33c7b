"""The contract every update rule keeps, one test body run over each rule `networks.factory` builds
(as Sonnet's OptimizerTestBase and optax's table of optimizers do).

For each rule: updates of the gradient's shape and a state of the initial state's; one trace under
tf.function for repeated steps of one shape, with the eager updates; the same updates after a save
and load through optimizer_files; a zero output (the learned rules' final linear layer, the
hand-designed rules' learning rate) gives zero updates; and one step against a hand computation
(the formula of a first step, or the scaled output bias that a zero output weight leaves). The
rules against second implementations over many steps (NumPy LSTMs, Keras optimizers) are in
test_networks.py.
"""

import os
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import networks
from learning_to_learn import optimizer_files

from conftest import rule_updates

# The factory's registry: a rule registered there gets a test of each kind below, which fails
# until the rule has a row in CASES.
REGISTERED = sorted(networks._NETWORKS)  # pylint: disable=protected-access

SCALE = 0.1  # the learned rules' output scale
GRADIENT = np.array([[0.5, -2.0, 1e-3], [0.0, 3.0, -1e-5]], np.float32)  # a zero, tiny, large


class Case(NamedTuple):
  """How a rule is built and what it must give.

  options: net_options of the factory (not the defaults, so that a save that dropped one would
  show; the learned rules' weights are random); hand_options replace some of them for the hand-computed
  step, zero_options for the zero output. shapes: gradient shapes the rule takes (its update has
  the same). gradient: the hand-computed step's gradient; want(gradient): that step's update, from
  the rule's formula, not from the code.
  """
  options: dict
  shapes: tuple
  zero_options: dict
  hand_options: dict
  gradient: np.ndarray
  want: Callable[[np.ndarray], Any]


def _lstm_options(**extra):
  return dict(layers=(4, 4), preprocess_name="LogAndSign", preprocess_options={"k": 5},
              scale=SCALE, **extra)


def _output_layer(b):
  """A final linear layer of zero weights and bias `b`: every update is SCALE * b, whatever the
  LSTM layers compute (update = SCALE (w^T h + b))."""
  return {"initializer": {"linear": {"w": "zeros", "b": np.asarray(b, np.float32)}}}


ZERO_OUTPUT = {"initializer": {"linear": "zeros"}}
KERNEL_BIAS = np.arange(9, dtype=np.float32) / 10 - 0.4  # one per position of a 3 x 3 slice
STANDARD_BIAS = np.array([0.3, -0.2, 0.7], np.float32)  # one per output of a batch row

CASES = {
    "CoordinateWiseDeepLSTM": Case(
        _lstm_options(), shapes=((), (7,), (4, 5), (2, 3, 4)), zero_options=ZERO_OUTPUT,
        hand_options=_output_layer([0.7]), gradient=GRADIENT,
        want=lambda g: np.full(g.shape, SCALE * 0.7)),
    # A kernel [h, w, in, out]: each (in, out) pair's h x w slice is a batch row of 9 inputs, whose
    # update at position (i, j) is SCALE * b[3 i + j].
    "KernelDeepLSTM": Case(
        _lstm_options(kernel_shape=[3, 3]), shapes=((3, 3, 1, 1), (3, 3, 2, 5)),
        zero_options=ZERO_OUTPUT, hand_options=_output_layer(KERNEL_BIAS),
        gradient=np.linspace(-1, 1, 3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4),
        want=lambda g: np.broadcast_to(SCALE * KERNEL_BIAS.reshape(3, 3, 1, 1), g.shape)),
    # A batch of rows [batch, 3], each row's update SCALE * b; 40 rows pad to 48 columns.
    "StandardDeepLSTM": Case(
        _lstm_options(output_size=3, input_size=3), shapes=((1, 3), (5, 3), (40, 3)),
        zero_options=ZERO_OUTPUT, hand_options=_output_layer(STANDARD_BIAS),
        gradient=np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3),
        want=lambda g: np.broadcast_to(SCALE * STANDARD_BIAS, g.shape)),
    # update = -lr g.
    "Sgd": Case(
        {"learning_rate": 0.01}, shapes=((), (7,), (4, 5), (2, 3, 4)),
        zero_options={"learning_rate": 0.0}, hand_options={"learning_rate": 0.1},
        gradient=GRADIENT, want=lambda g: -0.1 * g),
    # First step: m^ = g and v^ = g^2, so update = -lr g / (|g| + eps).
    "Adam": Case(
        {"learning_rate": 0.01, "beta2": 0.99}, shapes=((), (7,), (4, 5), (2, 3, 4)),
        zero_options={"learning_rate": 0.0},
        hand_options={"learning_rate": 0.05, "beta1": 0.5, "beta2": 0.9, "epsilon": 1e-8},
        gradient=GRADIENT, want=lambda g: -0.05 * g / (np.abs(g) + 1e-8)),
    # First step: v = (1 - rho) g^2, so update = -lr g / sqrt((1 - rho) g^2 + eps).
    "RMSProp": Case(
        {"learning_rate": 0.01, "rho": 0.5}, shapes=((), (7,), (4, 5), (2, 3, 4)),
        zero_options={"learning_rate": 0.0},
        hand_options={"learning_rate": 0.01, "rho": 0.8, "epsilon": 1e-7},
        gradient=GRADIENT, want=lambda g: -0.01 * g / np.sqrt(0.2 * g * g + 1e-7)),
    # First step: v = -lr g, so update = mu v - lr g = -lr (1 + mu) g.
    "Nag": Case(
        {"learning_rate": 0.01, "momentum": 0.5}, shapes=((), (7,), (4, 5), (2, 3, 4)),
        zero_options={"learning_rate": 0.0}, hand_options={"learning_rate": 0.1, "momentum": 0.9},
        gradient=GRADIENT, want=lambda g: -0.1 * 1.9 * g),
}


def _case(name):
  if name not in CASES:
    pytest.fail(f"{name} is registered in networks.factory but has no row in "
                "test_update_rules.CASES: add its shapes, zero output and a hand-computed step.")
  return CASES[name]


def _rule(name, **changes):
  return networks.factory(name, dict(_case(name).options, **changes))


def _gradients(shape, count, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=shape).astype(np.float32) for _ in range(count)]


def _shapes(structure):
  return [tuple(t.shape) for t in tf.nest.flatten(structure)]


def test_every_registered_rule_has_a_row():
  assert sorted(CASES) == REGISTERED


@pytest.mark.parametrize("name", REGISTERED)
def test_updates_have_the_gradients_shape_and_the_state_keeps_its_own(name):
  rule = _rule(name)
  for shape in _case(name).shapes:
    gradient = tf.constant(_gradients(shape, 1)[0])
    state = rule.initial_state_for_inputs(gradient)
    for _ in range(2):
      update, next_state = rule(gradient, state)
      assert update.shape == shape and update.dtype == tf.float32, (shape, update)
      tf.nest.assert_same_structure(next_state, state)
      assert _shapes(next_state) == _shapes(state), shape
      state = next_state


@pytest.mark.parametrize("name", REGISTERED)
def test_one_trace_under_tf_function_for_steps_of_one_shape(name):
  rule = _rule(name)
  traces = []

  def step(gradient, state):
    traces.append(gradient.shape)  # Python runs only while tf.function traces
    return rule(gradient, state)

  gradients = _gradients(_case(name).shapes[-1], 4, seed=1)
  got = rule_updates(rule, gradients, tf.function(step))
  assert len(traces) == 1, traces
  for g, e in zip(got, rule_updates(rule, gradients)):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", REGISTERED)
def test_save_and_load_give_the_samerule_updates(name, tmp_path):
  rule = _rule(name)
  again = optimizer_files.load(optimizer_files.save(rule, os.path.join(tmp_path, "rule.npz")))
  assert type(again) is type(rule)
  assert again.get_config() == rule.get_config()
  gradients = _gradients(_case(name).shapes[-1], 3, seed=2)
  for a, b in zip(rule_updates(again, gradients), rule_updates(rule, gradients)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", REGISTERED)
def test_a_zero_output_gives_zerorule_updates(name):
  rule = _rule(name, **_case(name).zero_options)
  for update in rule_updates(rule, _gradients(_case(name).shapes[-1], 3, seed=3)):
    np.testing.assert_array_equal(update, np.zeros_like(update))


@pytest.mark.parametrize("name", REGISTERED)
def test_first_step_against_a_hand_computation(name):
  case = _case(name)
  rule = _rule(name, **case.hand_options)
  (update,) = rule_updates(rule, [case.gradient])
  np.testing.assert_allclose(update, case.want(case.gradient), rtol=1e-5, atol=1e-7)
