"""Evaluator, baselines and learning-rate tuning, checked against closed forms and numpy.

Nothing here trusts the library's own arithmetic: every expected loss comes from a formula or an
independent numpy re-implementation of the rule and the problem.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import problems
from learning_to_learn import checkpoints
from learning_to_learn import comparison_store
from learning_to_learn import datasets
from learning_to_learn import evaluation
from learning_to_learn import keras_problems
from learning_to_learn import meta
from learning_to_learn import seeds as seeds_lib


def _sgd_simple_losses(rate, num_steps):
  # f = x^2, x0 = 1, x <- x - r 2x = (1 - 2r) x, so f(x_t) = (1 - 2r)^(2t).
  return (1.0 - 2.0 * rate) ** (2.0 * np.arange(num_steps + 1))


def _numpy_adam_simple_losses(num_steps, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8):
  x, m, v = 1.0, 0.0, 0.0
  losses = [x * x]
  for t in range(1, num_steps + 1):
    g = 2.0 * x
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    x = x - lr * m_hat / (np.sqrt(v_hat) + eps)
    losses.append(x * x)
  return np.array(losses)


def _evaluator(problem, name, rate, unroll_length, jit_compile=False):
  config = evaluation.baseline_config(name, rate)
  return evaluation.Evaluator(problem, config, unroll_length=unroll_length,
                              jit_compile=jit_compile)


# --- 1. SGD on `simple`: closed form, carried state across chunks, remainder chunk --------------

@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_sgd_on_simple_matches_closed_form(rate, jit_compile):
  # num_steps=7 with unroll_length=3: chunks of 3, 3 and a remainder of 1.
  evaluator = _evaluator(problems.simple(), "sgd", rate, unroll_length=3, jit_compile=jit_compile)
  losses = evaluator.run([(0, 3, 0)], num_steps=7)
  assert losses.shape == (1, 8)
  np.testing.assert_allclose(losses[0], _sgd_simple_losses(rate, 7), rtol=1e-5, atol=1e-7)


def test_chunking_does_not_change_losses():
  # The same epoch in one call, in chunks that divide it and in chunks that leave a remainder.
  whole = _evaluator(problems.simple(), "sgd", 0.1, unroll_length=7).run([(0, 3, 0)], 7)
  for unroll_length in (1, 2, 3, 5):
    chunked = _evaluator(problems.simple(), "sgd", 0.1, unroll_length).run([(0, 3, 0)], 7)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


def test_run_epoch_rejects_bad_num_steps():
  evaluator = _evaluator(problems.simple(), "sgd", 0.1, unroll_length=3)
  for bad in (0, -1, 2.5):
    with pytest.raises(ValueError, match="num_steps"):
      evaluator.run_epoch((0, 3, 0), bad)


# --- 2. Adam on `simple` against a numpy Adam -----------------------------------------------------

@pytest.mark.parametrize("unroll_length", [10, 4])
def test_adam_on_simple_matches_numpy_adam(unroll_length):
  evaluator = _evaluator(problems.simple(), "adam", 0.1, unroll_length=unroll_length)
  losses = evaluator.run([(0, 3, 0)], num_steps=10)[0]
  expected = _numpy_adam_simple_losses(10, lr=0.1)
  np.testing.assert_allclose(losses, expected, rtol=1e-4, atol=1e-6)
  # The check has teeth: Adam's step sizes are far from SGD's at the same rate.
  assert not np.allclose(expected, _sgd_simple_losses(0.1, 10), rtol=1e-2)


# --- 3. Fresh state every epoch -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nag"])
def test_same_seed_twice_gives_identical_losses(name):
  evaluator = _evaluator(problems.quadratic(batch_size=4, num_dims=3), name, 0.05, unroll_length=3)
  losses = evaluator.run([(0, 3, 5), (0, 3, 5)], num_steps=7)
  np.testing.assert_array_equal(losses[0], losses[1])


@pytest.mark.parametrize("name", ["adam", "rmsprop", "nag"])
def test_stateful_rule_state_does_not_leak_on_simple(name):
  # `simple` is the same instance for every seed, so a leaked moment or velocity would be the only
  # thing that could make the second epoch differ from the first.
  evaluator = _evaluator(problems.simple(), name, 0.1, unroll_length=3)
  losses = evaluator.run([(0, 3, 0), (0, 3, 1)], num_steps=7)
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)


def test_adam_state_does_not_leak_between_epochs():
  problem = problems.quadratic(batch_size=4, num_dims=3)
  seed_a, seed_b = (0, 3, 0), (0, 3, 1)
  after_a = _evaluator(problem, "adam", 0.05, unroll_length=3).run([seed_a, seed_b], 7)
  alone = _evaluator(problem, "adam", 0.05, unroll_length=3).run([seed_b], 7)
  np.testing.assert_array_equal(after_a[1], alone[0])
  # Different seeds are different instances, so the comparison above is not vacuous.
  assert not np.allclose(after_a[0], after_a[1])


# --- 4. Learning-rate tuning --------------------------------------------------------------------

def test_default_grid_is_half_decades_from_1e_minus_4_to_1():
  np.testing.assert_allclose(evaluation.LEARNING_RATE_GRID, 10.0 ** np.arange(-4, 0.01, 0.5))


def test_tune_learning_rate_sgd_on_simple_matches_closed_form():
  seeds = seeds_lib.epoch_seeds(0, 2, purpose=2)
  best, scores = evaluation.tune_learning_rate(problems.simple(), "sgd", seeds, num_steps=5,
                                               jit_compile=False)
  grid = evaluation.LEARNING_RATE_GRID
  assert list(scores) == list(grid)
  expected = {r: (1.0 - 2.0 * r) ** 10 for r in grid}  # f(x_5) = (1 - 2r)^(2*5)
  for r in grid:
    np.testing.assert_allclose(scores[r], expected[r], rtol=1e-5, atol=1e-9, err_msg=f"rate {r}")
  expected_best = min(grid, key=lambda r: abs(1.0 - 2.0 * r))
  assert expected_best == pytest.approx(10 ** -0.5)
  assert best == expected_best


def test_tune_learning_rate_scores_divergence_as_inf():
  # r = 1e6: x_t = (1 - 2e6)^t, so f(x_5) ~ 1e63 overflows float32 (and NaN follows inf - inf).
  grid = (0.1, 1e6)
  best, scores = evaluation.tune_learning_rate(problems.simple(), "sgd", [(0, 2, 0)],
                                               num_steps=5, grid=grid, unroll_length=5,
                                               jit_compile=False)
  assert scores[1e6] == float("inf")
  np.testing.assert_allclose(scores[0.1], 0.8 ** 10, rtol=1e-5)
  assert best == 0.1


def test_tune_learning_rate_reports_progress():
  # f(x_2) = (1 - 2r)^4: 0.4 is the best of the three and inside the grid, so no extension.
  seen = []
  best, _ = evaluation.tune_learning_rate(problems.simple(), "sgd", [(0, 2, 0)], num_steps=2,
                                          grid=(0.1, 0.4, 0.9), jit_compile=False,
                                          progress=lambda r, s: seen.append((r, s)))
  assert best == 0.4
  assert [r for r, _ in seen] == [0.1, 0.4, 0.9]
  np.testing.assert_allclose([s for _, s in seen], [0.8 ** 4, 0.2 ** 4, 0.8 ** 4], rtol=1e-4)


def test_tune_learning_rate_goes_past_the_grid_edge_by_at_most_two_half_decades():
  # On `simple` with 5 steps the optimum is near r = 0.5; a grid of 0.01 and 0.01 sqrt(10) has its
  # best on the upper edge, so the sweep tries 0.1 and then 0.1 sqrt(10), and stops there.
  grid = (0.01, 0.01 * np.sqrt(10.0))
  best, scores = evaluation.tune_learning_rate(problems.simple(), "sgd", [(0, 2, 0)],
                                               num_steps=5, grid=grid, unroll_length=5,
                                               jit_compile=False)
  expected_rates = [0.01 * np.sqrt(10.0) ** k for k in range(4)]
  np.testing.assert_allclose(list(scores), expected_rates, rtol=1e-12)
  np.testing.assert_allclose(list(scores.values()),
                             [(1.0 - 2.0 * r) ** 10 for r in expected_rates], rtol=1e-4)
  assert best == pytest.approx(expected_rates[-1])


def test_paired_differences_by_hand():
  # Step 0: differences 0.5, 0.5, -0.5: mean 1/6, sample sd sqrt(1/3), half-width 1.96 / 3.
  # Step 1: a per-run offset shared by both optimizers cancels, leaving -0.1 and no spread.
  offsets = np.array([0.0, 5.0, -3.0])
  losses = {"L2L": np.stack([[1.0, 2.0, 3.0], offsets + 1.0], axis=1),
            "nag": np.stack([[0.5, 1.5, 3.5], offsets + 1.1], axis=1)}
  pairs = evaluation.paired_differences(losses, steps=(0, 1))
  assert list(pairs) == ["nag"]
  np.testing.assert_allclose(pairs["nag"][0], (1.0 / 6.0, 1.96 / 3.0), rtol=1e-12)
  np.testing.assert_allclose(pairs["nag"][1], (-0.1, 0.0), atol=1e-12)


def test_compare_progress_never_runs_past_its_total():
  # compare() announces `total` steps; the edge extension of the sweep must not overshoot it.
  calls = []
  losses, rates = evaluation.compare(
      problems.simple(), None, baselines=("sgd",), num_tuning_epochs=1, num_test_epochs=2,
      num_steps=5, grid=(0.01, 0.01 * np.sqrt(10.0)), unroll_length=5, jit_compile=False,
      progress=lambda stage, done, total: calls.append((stage, done, total)))
  assert rates["sgd"] == pytest.approx(0.1 * np.sqrt(10.0))
  np.testing.assert_allclose(losses["sgd"], np.tile(_sgd_simple_losses(rates["sgd"], 5), (2, 1)),
                             rtol=1e-4, atol=1e-7)
  dones = [done for _, done, _ in calls]
  assert dones == list(range(1, len(calls) + 1))
  assert all(done <= total for _, done, total in calls), calls
  assert calls[-1][1] == calls[-1][2], calls  # finishes exactly at 100%


def test_compare_reuses_kept_test_runs_only_at_the_tuned_rate():
  # SGD on `simple` has a closed form (_sgd_simple_losses): runs kept at the tuned rate come back
  # as they were kept (here a marker array), runs kept at another rate are made again.
  settings = dict(baselines=("sgd",), num_tuning_epochs=1, num_test_epochs=2, num_steps=5,
                  grid=(0.01,), unroll_length=5, jit_compile=False, tuned={"sgd": 0.1})
  marker = np.full((2, 6), 7.0, np.float32)
  kept = []
  losses, _ = evaluation.compare(problems.simple(), None, tested={"sgd": (0.1, marker)},
                                 on_tested=lambda *args: kept.append(args), **settings)
  np.testing.assert_array_equal(losses["sgd"], marker)
  assert not kept
  losses, _ = evaluation.compare(problems.simple(), None, tested={"sgd": (0.3, marker)},
                                 on_tested=lambda *args: kept.append(args), **settings)
  np.testing.assert_allclose(losses["sgd"], np.tile(_sgd_simple_losses(0.1, 5), (2, 1)),
                             rtol=1e-4, atol=1e-7)
  assert [(name, rate) for name, rate, _ in kept] == [("sgd", 0.1)]
  np.testing.assert_array_equal(kept[0][2], losses["sgd"])


def test_compare_takes_an_interrupted_sweeps_scores():
  # A kept score of -1 for rate 0.01, which no real run gives (the losses are positive), wins the
  # sweep; the rates without a kept score are run and reported.
  reported = []
  rate = 0.01 * np.sqrt(10.0)
  _, rates = evaluation.compare(
      problems.simple(), None, baselines=("sgd",), num_tuning_epochs=1, num_test_epochs=1,
      num_steps=5, grid=(0.01, rate), unroll_length=5, jit_compile=False,
      scored={"sgd": {0.01: -1.0}}, on_scored=lambda *args: reported.append(args))
  assert rates["sgd"] == 0.01
  scores = {r: score for _, r, score in reported}
  assert scores[0.01] == -1.0
  np.testing.assert_allclose(scores[rate], _sgd_simple_losses(rate, 5)[-1], rtol=1e-4)


def test_tuning_scores_read_back_under_their_settings_only(tmp_path):
  path = str(tmp_path / "tuning.json")
  checkpoints.write_json(path, {"settings": {"seed": 0}, "rates": {},
                                "scores": {"adam": {repr(0.1 / 3): 0.5, "0.01": float("inf")}}})
  assert comparison_store.read_tuning_scores(path, {"seed": 0}) == {
      "adam": {0.1 / 3: 0.5, 0.01: float("inf")}}
  assert comparison_store.read_tuning_scores(path, {"seed": 1}) == {}


def test_kept_test_runs_read_back_under_their_settings_only(tmp_path):
  path = str(tmp_path / "baseline_runs.npz")
  runs = {"adam": (0.01, np.arange(6, dtype=np.float32).reshape(2, 3))}
  comparison_store.write_test_runs(path, {"seed": 0}, runs)
  back = comparison_store.read_test_runs(path, {"seed": 0})
  assert back["adam"][0] == 0.01
  np.testing.assert_array_equal(back["adam"][1], runs["adam"][1])
  assert comparison_store.read_test_runs(path, {"seed": 1}) == {}
  assert comparison_store.read_test_runs(str(tmp_path / "absent.npz"), {"seed": 0}) == {}


# --- 5. baseline_config validation --------------------------------------------------------------

def test_baseline_config_rejects_unknown_optimizer_naming_the_options():
  with pytest.raises(ValueError) as info:
    evaluation.baseline_config("adagrad", 0.1)
  message = str(info.value)
  assert "adagrad" in message
  for name in ("sgd", "adam", "rmsprop", "nag"):
    assert name in message


@pytest.mark.parametrize("rate", [0.0, -0.1, float("nan")])
def test_baseline_config_rejects_non_positive_rate(rate):
  with pytest.raises(ValueError, match="learning_rate"):
    evaluation.baseline_config("sgd", rate)


@pytest.mark.parametrize("name,net", [("sgd", "Sgd"), ("adam", "Adam"), ("rmsprop", "RMSProp"),
                                      ("nag", "Nag")])
def test_baseline_config_builds_the_named_rule(name, net):
  config = evaluation.baseline_config(name, 0.25)
  assert list(config) == [name]
  assert config[name]["net"] == net
  assert float(config[name]["net_options"]["learning_rate"].numpy()) == pytest.approx(0.25)


# --- 6. epoch_seeds -----------------------------------------------------------------------------

def test_epoch_seeds_of_different_purposes_never_overlap():
  purposes = range(4)
  seeds = {p: seeds_lib.epoch_seeds(7, 50, p) for p in purposes}
  for p in purposes:
    assert len(seeds[p]) == 50
    assert len(set(seeds[p])) == 50
    assert all(all(isinstance(v, int) for v in s) for s in seeds[p])
  for p, q in itertools.combinations(purposes, 2):
    assert not set(seeds[p]) & set(seeds[q]), (p, q)
  # And the stateless-RNG seeds drawn from them (init: chunk 0; minibatches: chunks 1..) too.
  words = {}
  for p in purposes:
    for s in seeds[p]:
      for chunk in range(3):
        words.setdefault(tuple(seeds_lib.make_seed(*s, chunk).numpy()), set()).add((p, s, chunk))
  assert all(len(users) == 1 for users in words.values())


def test_epoch_seeds_are_deterministic():
  assert seeds_lib.epoch_seeds(3, 4, 1) == seeds_lib.epoch_seeds(3, 4, 1)
  assert seeds_lib.epoch_seeds(3, 4, 1) != seeds_lib.epoch_seeds(4, 4, 1)


# --- 7. Quadratic against numpy ------------------------------------------------------------------

def _numpy_quadratic_sgd_losses(problem, seed, rate, num_steps):
  params, constants = problem.init(seeds_lib.make_seed(*seed, 0))  # as Evaluator.run_epoch resets
  x = params["x"].numpy().astype(np.float64)  # [B, D]
  w = constants["w"].numpy().astype(np.float64)  # [B, D, D]
  y = constants["y"].numpy().astype(np.float64)  # [B, D]
  batch_size = x.shape[0]

  def loss(x):
    residual = np.einsum("bij,bj->bi", w, x) - y
    return np.mean(np.sum(residual ** 2, axis=1))

  losses = [loss(x)]
  for _ in range(num_steps):
    residual = np.einsum("bij,bj->bi", w, x) - y
    grad = 2.0 * np.einsum("bji,bj->bi", w, residual) / batch_size  # 2 W^T (W x - y) / B
    x = x - rate * grad
    losses.append(loss(x))
  return np.array(losses)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_sgd_on_quadratic_matches_numpy(rate):
  problem = problems.quadratic(batch_size=4, num_dims=3)
  seeds = [(0, 3, 0), (0, 3, 1)]
  losses = _evaluator(problem, "sgd", rate, unroll_length=4).run(seeds, num_steps=10)
  for row, seed in zip(losses, seeds):
    expected = _numpy_quadratic_sgd_losses(problem, seed, rate, 10)
    np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-7)
    assert expected[-1] < expected[0]  # a real descent, not a constant sequence


# --- 8. Against the old chunks: MetaTrainer.eval_unroll driven by hand -----------------------------

def _meta_trainer_losses(meta_optimizer, problem, seed, num_steps, unroll_length, jit_compile):
  # Evaluation as it was: a MetaTrainer per chunk length, the states handed from one to the next.
  trainers, states, losses = {}, None, []
  for i, start in enumerate(range(0, num_steps, unroll_length)):
    length = min(unroll_length, num_steps - start)
    if length not in trainers:
      trainers[length] = meta.MetaTrainer(meta_optimizer, problem, length, jit_compile=jit_compile)
    trainer = trainers[length]
    if states is None:
      trainer.reset(seeds_lib.make_seed(*seed, 0))
    else:
      trainer.states = states
    result = trainer.eval_unroll(seeds_lib.make_seed(*seed, i + 1))
    states = trainer.states
    losses.append(result.losses.numpy()[:-1])
  losses.append(result.losses.numpy()[-1:])
  return np.concatenate(losses)


def _tiny_mlp():
  # Random data, so that each chunk's minibatch seed matters (the quadratic draws no batches).
  labels = np.random.default_rng(1).integers(0, 3, 50)
  images = np.random.default_rng(0).random((50, 4, 4, 1)).astype(np.float32)
  dataset = datasets.Dataset(images=images, labels=labels.astype(np.int32), source="synthetic",
                             split="train")
  return problems.MLPClassifier(dataset, layers=(5,), batch_size=8, num_classes=3)


LEARNED = {"cw": {"net": "CoordinateWiseDeepLSTM", "net_options": {"layers": (4, 4),
                                                                    "scale": 0.1}}}


@pytest.mark.parametrize("rule,problem,jit_compile", [
    ("learned", "quadratic", None), ("learned", "mlp", False), ("adam", "quadratic", False),
    ("adam", "mlp", True)])
def test_evaluator_matches_meta_trainer_chunks(rule, problem, jit_compile):
  problem = problems.quadratic(batch_size=4, num_dims=3) if problem == "quadratic" else _tiny_mlp()
  config = LEARNED if rule == "learned" else evaluation.baseline_config("adam", 0.05)
  reference = meta.MetaOptimizer(**config)
  evaluator = evaluation.Evaluator(problem, config, unroll_length=3, jit_compile=jit_compile)
  # The weights go in the way train.py hands them over: copied into evaluator.meta_optimizer.
  for source, copy in zip(reference.trainable_variables,
                          evaluator.meta_optimizer.trainable_variables):
    copy.assign(source)
  seeds = [(0, 3, 0), (0, 3, 1)]
  losses = evaluator.run(seeds, num_steps=7)  # chunks of 3, 3 and 1
  for row, seed in zip(losses, seeds):
    expected = _meta_trainer_losses(reference, problem, seed, 7, 3, jit_compile)
    np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(expected[-1], expected[0])  # the rule moved the optimizee


def _tiny_conv():
  labels = np.random.default_rng(1).integers(0, 3, 50)
  images = np.random.default_rng(0).random((50, 8, 8, 1)).astype(np.float32)
  dataset = datasets.Dataset(images=images, labels=labels.astype(np.int32), source="synthetic",
                             split="train")
  return problems.ConvClassifier(dataset, conv_channels=(2,), linear_layers=(4,), batch_size=8,
                                 num_classes=3)


def _tiny_dropout_mlp():
  rng = np.random.default_rng(0)
  data = (rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, 32).astype(np.int32))
  return keras_problems.KerasProblem(
      lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                                keras.layers.Dropout(0.5), keras.layers.Dense(3)]),
      data, "sparse_categorical_crossentropy", batch_size=8)


class _Branching(problems.Problem):
  """f(x) = sum x^2 through a tf.cond: control flow in a loss, no random op."""

  def init(self, seed):
    del seed
    return {"x": tf.ones([2])}, ()

  def sample_batches(self, seed, num_batches):
    del seed
    return tf.zeros([num_batches])

  def loss(self, params, constants, batch):
    del constants, batch
    x = params["x"]
    return tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.reduce_sum(x * x),
                   lambda: tf.reduce_sum(-x * x))


def test_evaluation_compiles_with_xla_by_default_unless_the_loss_convolves_or_draws():
  # XLA's CPU convolutions run several times slower than TensorFlow's kernels, and its random
  # draws (dropout here) are other numbers than the kernels' (docs/performance.md).
  conv, mlp, quadratic = _tiny_conv(), _tiny_mlp(), problems.quadratic(batch_size=4, num_dims=3)
  dropout = _tiny_dropout_mlp()
  assert meta.convolves(conv) and meta.convolves(problems.Ensemble([quadratic, conv]))
  assert not any(meta.convolves(p) for p in (mlp, quadratic, dropout))
  assert meta.loss_is_random(dropout) and meta.loss_is_random(problems.Ensemble([dropout, mlp]))
  # Their minibatches are drawn at random, but outside the loss.
  assert not any(meta.loss_is_random(p) for p in (conv, mlp, quadratic, _Branching()))
  adam = evaluation.baseline_config("adam", 0.05)
  for problem, xla in ((conv, False), (dropout, False), (mlp, True)):
    evaluator = evaluation.Evaluator(problem, adam, unroll_length=3)
    assert evaluator._run_steps_fn._jit_compile is xla  # pylint: disable=protected-access
    trainer = meta.MetaTrainer(meta.MetaOptimizer(**adam), problem, 3)
    assert trainer._local_eval_fn._jit_compile is xla  # pylint: disable=protected-access
  forced = evaluation.Evaluator(conv, adam, unroll_length=3, jit_compile=True)
  assert forced._run_steps_fn._jit_compile is True  # pylint: disable=protected-access


@pytest.mark.parametrize("problem", ["mlp", "conv"])
def test_a_rule_sees_the_same_minibatches_under_xla_and_without(problem):
  # Under XLA, stateless random ops draw other numbers than TensorFlow's kernels for a seed with
  # a word that is negative as int32, as the second chunk's seed here has: the Evaluator draws
  # its minibatches outside the compiled steps, so both give the same losses to rounding.
  seed = (0, 3, 0)
  assert (seeds_lib.unroll_seed(seed, 1).numpy() < 0).any()
  problem = _tiny_mlp() if problem == "mlp" else _tiny_conv()
  adam = evaluation.baseline_config("adam", 0.05)
  xla, kernels = (evaluation.Evaluator(problem, adam, unroll_length=3, jit_compile=jit)
                  for jit in (True, False))
  losses = xla.run([seed], num_steps=7)
  np.testing.assert_allclose(losses, kernels.run([seed], num_steps=7), rtol=1e-5, atol=1e-7)
  assert not np.allclose(losses[0, -1], losses[0, 0])
  # MetaTrainer's unrolls draw theirs outside the compiled unroll too.
  reference = meta.MetaOptimizer(**adam)
  np.testing.assert_allclose(_meta_trainer_losses(reference, problem, seed, 7, 3, True), losses[0],
                             rtol=1e-5, atol=1e-7)


def test_evaluator_traces_once_per_chunk_length_whatever_the_epochs():
  evaluator = evaluation.Evaluator(problems.quadratic(batch_size=4, num_dims=3), LEARNED,
                                   unroll_length=3)
  evaluator.run([(0, 3, 0)], num_steps=7)
  first = evaluator.trace_counts
  evaluator.run(seeds_lib.epoch_seeds(0, 3, purpose=3), num_steps=7)
  assert first == evaluator.trace_counts == {"initial_state": 1, "sample_batches": 2,
                                                  "run_steps": 2}


def test_a_check_that_raises_stops_the_epoch_before_the_next_chunk():
  # The next chunk's minibatches are drawn ahead on another thread; the stop still comes first.
  class Stop(Exception):
    pass

  calls = []

  def check():
    calls.append(len(calls))
    if len(calls) == 3:
      raise Stop()

  evaluator = evaluation.Evaluator(_tiny_mlp(), evaluation.baseline_config("sgd", 0.1),
                                   unroll_length=2)
  with pytest.raises(Stop):
    evaluator.run_epoch((0, 3, 0), num_steps=10, check=check)
  assert calls == [0, 1, 2]


def test_evaluator_rejects_bad_unroll_length():
  for bad in (0, -2, 1.5):
    with pytest.raises(ValueError, match="unroll_length"):
      evaluation.Evaluator(problems.simple(), evaluation.baseline_config("sgd", 0.1),
                           unroll_length=bad)
