"""step_size: the online per-tensor step multiplier, against hand-computed cases and a numpy loop.

The reference for several steps is numpy's: the network without adaptation gives the raw updates,
and log m_t = clip(log m_{t-1} - rate cos(g_t, u_{t-1})) is applied to them by hand; the library's
rule (`meta.NetAssignments`) and the Keras optimizer must both reproduce it.
"""

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import keras as l2l_keras
from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import optimizer_files
from learning_to_learn import step_size

from conftest import random_lstm_weights

RATE = 0.3  # large, so that three steps move the multipliers visibly


def test_adapt_hand_computed():
  gradient = tf.constant([[1.0, 0.0], [0.0, 1.0]])
  previous = tf.constant([[1.0, 1.0], [0.0, 0.0]])  # g . u = 1, |g| |u| = 2: cos = 1/2
  state = step_size.AdaptationState(previous, tf.constant(0.0))
  update, next_state = step_size.adapt(tf.ones([2, 2]), gradient, state, 0.1)
  np.testing.assert_allclose(next_state.log_multiplier.numpy(), -0.05, rtol=1e-6)
  np.testing.assert_allclose(update.numpy(), np.full([2, 2], np.exp(-0.05)), rtol=1e-6)
  np.testing.assert_allclose(next_state.previous_update.numpy(), update.numpy())


def test_a_first_step_keeps_the_multiplier_and_the_bounds_hold():
  fresh = step_size.initial_state(tf.ones([3]))
  update, state = step_size.adapt(tf.constant([1.0, 2.0, 3.0]), tf.ones([3]), fresh, 5.0)
  assert state.log_multiplier.numpy() == 0.0  # no previous update: cosine 0
  np.testing.assert_array_equal(update.numpy(), [1.0, 2.0, 3.0])
  # A gradient opposing the last update every time: the multiplier grows to its bound and stops.
  for _ in range(10):
    update, state = step_size.adapt(tf.constant([1.0, 2.0, 3.0]), -tf.constant([1.0, 2.0, 3.0]),
                                    state, 5.0)
  np.testing.assert_allclose(np.exp(state.log_multiplier.numpy()), step_size.MAX_MULTIPLIER,
                             rtol=1e-5)


def test_instances_adapt_apart():
  gradient = tf.constant([[1.0, 0.0], [1.0, 0.0]])
  previous = tf.constant([[1.0, 0.0], [-1.0, 0.0]])  # cos +1 for instance 0, -1 for instance 1
  state = step_size.AdaptationState(previous, tf.zeros([2]))
  _, next_state = step_size.adapt(tf.ones([2, 2]), gradient, state, 0.1, batch_axes=1)
  np.testing.assert_allclose(next_state.log_multiplier.numpy(), [-0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize("rate", [-0.1, float("nan"), float("inf")])
def test_a_bad_rate_is_refused(rate):
  with pytest.raises(ValueError, match="scale_adaptation=.* must be a finite number >= 0"):
    networks.CoordinateWiseDeepLSTM(layers=(4,), scale_adaptation=rate)


SCALE = 0.03


def _net(rate, normalize=False, start=1.0, averaging=0.0):
  """normalize: False, True, or "signal" (normalized and signal-scaled); start: the first
  multiplier; averaging: the adaptation's average of the previous updates."""
  return networks.CoordinateWiseDeepLSTM(
      layers=(20, 20), preprocess_name="AdamNormalized", scale=SCALE,
      initializer=random_lstm_weights(0), scale_adaptation=rate,
      normalize_output=bool(normalize), signal_scaled=normalize == "signal",
      initial_multiplier=start, adaptation_averaging=averaging)


def _gradients(step):
  rng = np.random.default_rng(step)
  return {"a": tf.constant(rng.normal(size=[3, 4]).astype(np.float32)),
          "b": tf.constant(rng.normal(size=[5]).astype(np.float32) * 0.01)}


def _numpy_reference(steps, normalize=False, start=1.0, averaging=0.0):
  """Updates per step and name: the raw rule's, normalized to RMS SCALE if `normalize`, times the
  RMS of m/(sqrt(v^) + 1e-8) (Adam's, m uncorrected) if it is "signal", then multiplied as the
  formula says (the cosine against the updates' exponential average, with `averaging`), in
  numpy."""
  raw_rule = meta.NetAssignments({"n": _net(0.0)}, None, ["a", "b"])
  state = raw_rule.initial_state(_gradients(0))
  log_m = {"a": np.log(start), "b": np.log(start)}
  previous = {"a": np.zeros([3, 4]), "b": np.zeros([5])}
  moments = {name: [np.zeros_like(p), np.zeros_like(p)] for name, p in previous.items()}
  out = []
  for t in range(steps):
    gradients = _gradients(t)
    raw, state = raw_rule(gradients, state)
    step = {}
    for name in ("a", "b"):
      g = gradients[name].numpy().astype(np.float64)
      norms = np.linalg.norm(g) * np.linalg.norm(previous[name])
      cos = float(np.sum(g * previous[name]) / norms) if norms else 0.0
      log_m[name] = float(np.clip(log_m[name] - RATE * cos, np.log(step_size.MIN_MULTIPLIER),
                                  np.log(step_size.MAX_MULTIPLIER)))
      raw_step = raw[name].numpy().astype(np.float64)
      if normalize:
        raw_step = raw_step * SCALE / np.sqrt(np.mean(raw_step ** 2))
      if normalize == "signal":
        m, v = moments[name]
        m[...] = 0.9 * m + 0.1 * g
        v[...] = 0.999 * v + 0.001 * g ** 2
        adam = m / (np.sqrt(v / (1 - 0.999 ** (t + 1))) + 1e-8)
        raw_step = raw_step * np.sqrt(np.mean(adam ** 2))
      step[name] = np.exp(log_m[name]) * raw_step
      previous[name] = averaging * previous[name] + (1 - averaging) * step[name]
    out.append(step)
  return out


CASES = [(False, 1.0, 0.0), (True, 1.0, 0.0), ("signal", 1.0, 0.0), ("signal", 0.125, 0.0),
         ("signal", 1.0, 0.7)]


@pytest.mark.parametrize("normalize,start,averaging", CASES)
def test_the_rule_matches_the_numpy_loop(normalize, start, averaging):
  rule = meta.NetAssignments({"n": _net(RATE, normalize, start, averaging)}, None, ["a", "b"])
  state = rule.initial_state(_gradients(0))
  reference = _numpy_reference(4, normalize, start, averaging)
  for t in range(4):
    updates, state = rule(_gradients(t), state)
    for name in ("a", "b"):
      np.testing.assert_allclose(updates[name].numpy(), reference[t][name], rtol=2e-5, atol=1e-9)
  multipliers = [float(np.exp(a.log_multiplier.numpy())) for a in state[0][1]]
  assert all(abs(m - start) > 1e-3 for m in multipliers)  # the adaptation did move them


@pytest.mark.parametrize("normalize,start,averaging", CASES)
def test_the_keras_optimizer_matches_the_numpy_loop(tmp_path, normalize, start, averaging):
  path = optimizer_files.save(_net(RATE, normalize, start, averaging), str(tmp_path / "cw.npz"))
  optimizer = l2l_keras.LearnedOptimizer(checkpoint=path)
  variables = [tf.Variable(tf.zeros([3, 4])), tf.Variable(tf.zeros([5]))]
  reference = _numpy_reference(4, normalize, start, averaging)
  for t in range(4):
    before = [v.numpy() for v in variables]
    gradients = _gradients(t)
    optimizer.apply([gradients["a"], gradients["b"]], variables)
    for name, variable, old in zip(("a", "b"), variables, before):
      np.testing.assert_allclose(variable.numpy() - old, reference[t][name], rtol=1e-4,
                                 atol=1e-8)


def test_the_option_survives_the_file(tmp_path):
  path = optimizer_files.save(_net(RATE, normalize=True), str(tmp_path / "cw.npz"))
  loaded = optimizer_files.load(path)
  assert loaded.scale_adaptation == RATE and loaded.normalize_output is True
  config = _net(0.0).get_config()
  assert "scale_adaptation" not in config and "normalize_output" not in config  # earlier files


def test_normalize_hand_computed():
  # [3, 4]: RMS sqrt((9 + 16) / 2) = sqrt(12.5); scale 2
  got = step_size.normalize(tf.constant([3.0, 4.0]), 2.0).numpy()
  np.testing.assert_allclose(got, np.array([3.0, 4.0]) * 2.0 / np.sqrt(12.5), rtol=1e-6)
  np.testing.assert_array_equal(step_size.normalize(tf.zeros([3]), 2.0).numpy(), np.zeros(3))
  # instances apart: each row to RMS 1
  rows = step_size.normalize(tf.constant([[1.0, 1.0], [0.0, 10.0]]), 1.0, batch_axes=1).numpy()
  np.testing.assert_allclose(rows, [[1.0, 1.0], [0.0, np.sqrt(2.0)]], rtol=1e-6)


def test_a_bad_normalize_option_is_refused():
  with pytest.raises(ValueError, match="normalize_output=1 must be True or False"):
    networks.CoordinateWiseDeepLSTM(layers=(4,), normalize_output=1)


def test_signal_ratio_hand_computed():
  # First step: m = 0.1 g and v^ = g^2, so each coordinate's ratio is 0.1 sign(g) (0 where g is 0).
  state = step_size.initial_signal_state(tf.zeros([4]))
  ratio, state = step_size.signal_ratio(tf.constant([2.0, -3.0, 0.0, 5.0]), state)
  np.testing.assert_allclose(ratio.numpy(), 0.1 * np.sqrt(3 / 4), rtol=2e-5)
  # Second step, opposite gradient g2 = -g1 on one coordinate: m = 0.9 * 0.1 g1 - 0.1 g1 = -0.01 g1;
  # v = 0.999 * 0.001 g1^2 + 0.001 g1^2, v^ = v / (1 - 0.999^2).
  state = step_size.initial_signal_state(tf.zeros([1]))
  _, state = step_size.signal_ratio(tf.constant([1.0]), state)
  ratio, state = step_size.signal_ratio(tf.constant([-1.0]), state)
  expected = 0.01 / np.sqrt(0.001999 / (1 - 0.999 ** 2))
  np.testing.assert_allclose(ratio.numpy(), expected, rtol=1e-5)
  assert float(state.count) == 2.0


def test_signal_ratio_of_noise_tends_to_adams_noise_floor():
  # Zero-mean noise: m/sqrt(v^) has RMS sqrt((1 - beta1) / (1 + beta1)) once the moments settle.
  rng = np.random.default_rng(0)
  state = step_size.initial_signal_state(tf.zeros([20000]))
  for _ in range(300):
    ratio, state = step_size.signal_ratio(tf.constant(rng.normal(size=20000), tf.float32), state)
  np.testing.assert_allclose(ratio.numpy(), np.sqrt(0.1 / 1.9), rtol=0.05)


def test_signal_ratio_per_instance():
  state = step_size.initial_signal_state(tf.zeros([2, 3]))
  ratio, _ = step_size.signal_ratio(tf.constant([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), state,
                                    batch_axes=1)
  np.testing.assert_allclose(ratio.numpy(), [0.1, 0.1 * np.sqrt(1 / 3)], rtol=2e-5)


def test_signal_scaled_needs_a_normalized_output():
  with pytest.raises(ValueError, match="signal_scaled=True scales a normalized step"):
    networks.CoordinateWiseDeepLSTM(layers=(4,), signal_scaled=True)
  with pytest.raises(ValueError, match="signal_scaled=1 must be True or False"):
    networks.CoordinateWiseDeepLSTM(layers=(4,), normalize_output=True, signal_scaled=1)


def test_the_first_multiplier_is_the_initial_one():
  state = step_size.initial_state(tf.zeros([2, 3]), batch_axes=1, multiplier=0.25)
  np.testing.assert_allclose(np.exp(state.log_multiplier.numpy()), [0.25, 0.25], rtol=1e-6)
  # No previous update: the first step moves nothing, so the update is 0.25 times the rule's.
  update, _ = step_size.adapt(tf.ones([2, 3]), tf.ones([2, 3]), state, 0.1, batch_axes=1)
  np.testing.assert_allclose(update.numpy(), np.full([2, 3], 0.25), rtol=1e-6)


@pytest.mark.parametrize("options,message", [
    ({"scale_adaptation": 0.05, "initial_multiplier": 64.0}, "must be a number in \\[1/32, 32\\]"),
    ({"initial_multiplier": 0.5}, "set scale_adaptation > 0 too")])
def test_a_bad_initial_multiplier_is_refused(options, message):
  with pytest.raises(ValueError, match=message):
    networks.CoordinateWiseDeepLSTM(layers=(4,), **options)


def test_averaging_hand_computed():
  # The cosine is taken against the stored average, which then moves toward this step's update.
  gradient = tf.constant([1.0, 0.0])
  average = tf.constant([1.0, 1.0])  # cos(g, average) = 1 / sqrt(2)
  state = step_size.AdaptationState(average, tf.constant(0.0))
  update, next_state = step_size.adapt(tf.constant([2.0, -2.0]), gradient, state, 0.1,
                                       averaging=0.75)
  log_m = -0.1 / np.sqrt(2.0)
  np.testing.assert_allclose(next_state.log_multiplier.numpy(), log_m, rtol=1e-6)
  np.testing.assert_allclose(update.numpy(), np.exp(log_m) * np.array([2.0, -2.0]), rtol=1e-6)
  np.testing.assert_allclose(next_state.previous_update.numpy(),
                             0.75 * np.array([1.0, 1.0]) + 0.25 * update.numpy(), rtol=1e-6)


def test_averaging_keeps_the_step_where_updates_oscillate_across_a_drift():
  # Updates that alternate across a valley while drifting along it: with each gradient opposing
  # the last update's oscillation, the one-step signal shrinks the multiplier, the average
  # (whose oscillation cancels, leaving the drift the gradient still opposes) grows it.
  def run(averaging):
    state = step_size.initial_state(tf.zeros([2]))
    for t in range(40):
      sign = 1.0 if t % 2 else -1.0
      update = tf.constant([-0.3, sign])  # a drift along -x, an oscillation in y
      gradient = tf.constant([1.0, -2.0 * sign])  # downhill along -x; in y, the last update's way
      _, state = step_size.adapt(update, gradient, state, 0.05, averaging=averaging)
    return float(np.exp(state.log_multiplier.numpy()))
  assert run(0.0) < 0.5 and run(0.9) > 1.0


@pytest.mark.parametrize("options,message", [
    ({"scale_adaptation": 0.05, "adaptation_averaging": 1.0}, "must be a number in \\[0, 1\\)"),
    ({"scale_adaptation": 0.05, "adaptation_averaging": -0.1}, "must be a number in \\[0, 1\\)"),
    ({"adaptation_averaging": 0.9}, "set scale_adaptation > 0 too")])
def test_a_bad_averaging_is_refused(options, message):
  with pytest.raises(ValueError, match=message):
    networks.CoordinateWiseDeepLSTM(layers=(4,), **options)


def test_averaging_survives_the_file(tmp_path):
  path = optimizer_files.save(_net(RATE, "signal", averaging=0.9), str(tmp_path / "cw.npz"))
  assert optimizer_files.load(path).adaptation_averaging == 0.9
  assert "adaptation_averaging" not in _net(RATE).get_config()  # earlier files read the same
