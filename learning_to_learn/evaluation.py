"""Runs update rules, learned or hand-designed, over fresh problem instances, and tunes baselines.

Every rule goes through the same pure unroll (`unroll.unroll`, compiled once per Evaluator) on
initializations and minibatches drawn by TensorFlow's own kernels, whichever compiler runs the
steps, so a learned optimizer and its baselines see the same ones for the same seed.
"""

import concurrent.futures
import functools

import numpy as np
import tensorflow as tf

from learning_to_learn import meta
from learning_to_learn import networks
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll

BASELINES = {"sgd": "Sgd", "rmsprop": "RMSProp", "adam": "Adam", "nag": "Nag"}

# How `Evaluator` draws minibatches, for records of its runs to name.
MINIBATCHES = "drawn by TensorFlow's kernels"

# The paper tunes each baseline's learning rate; this sweep spans 10^-4 .. 10^0 in half-decades.
LEARNING_RATE_GRID = tuple(10.0 ** (e / 2) for e in range(-8, 1))


def baseline_config(name, learning_rate):
  """A one-net config for a hand-designed rule; the rate is a variable so sweeps do not retrace."""
  if name not in BASELINES:
    raise ValueError(f"unknown optimizer {name!r}; choose one of L2L, {', '.join(BASELINES)}.")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate={learning_rate} must be positive.")
  rate = tf.Variable(float(learning_rate), trainable=False, name="learning_rate")
  return {name: {"net": BASELINES[name], "net_options": {"learning_rate": rate}}}


def _sample_batches(problem, seed, num_batches):
  return problem.sample_batches(seed, num_batches)


def _run_steps(problem, rule, state, batches):
  # An evaluation's steps: nothing differentiates them, so a network may run as one op.
  with networks.forward_only():
    return unroll.unroll(problem, rule, state, batches)


class Evaluator:
  """Runs one rule for whole epochs and records the loss at every step.

  An epoch with seed tuple `seed` starts from `unroll.initial_state` at `seeds.initial_seed(seed)`;
  its chunk i of `unroll_length` steps (the last one shorter if need be) draws its minibatches from
  `seeds.unroll_seed(seed, i)`, and the state carries from one chunk to the next.

  Args:
    problem: the optimizee.
    net_config, net_assignments: the rule, as MetaOptimizer takes them.
    unroll_length: steps per compiled call (an epoch is several calls; the state carries over).
    jit_compile: compile the steps with XLA (None: `meta.eval_jit_compile`, the faster on CPU:
      XLA, unless a coordinatewise network runs its whole update as one op or the problem's loss
      convolves or draws random numbers; docs/performance.md).
  """

  def __init__(self, problem, net_config, net_assignments=None, unroll_length=20,
               jit_compile=None):
    if int(unroll_length) != unroll_length or unroll_length <= 0:
      raise ValueError(f"unroll_length={unroll_length} must be a positive integer (reference: 20).")
    self.meta_optimizer = meta.MetaOptimizer(**net_config)
    self._unroll_length = int(unroll_length)
    rule = self.meta_optimizer.assignments(problem, net_assignments)
    # Partials, not methods or closures: TF's retracing warning counts traces per code object, and
    # would count the traces of every Evaluator (compare builds five) as one function's. The chunk
    # length is a Python int: one trace per distinct length, two at most.
    # No autograph, as in meta.MetaTrainer.
    self._initial_state_fn = tf.function(functools.partial(unroll.initial_state, problem, rule),
                                         autograph=False)
    # Drawn apart from the steps and never under XLA, whose stateless random ops give other
    # numbers than TensorFlow's kernels for most seeds (any seed word that is negative as int32):
    # every rule sees the same minibatches for a seed, whichever compiler runs its steps.
    self._sample_batches_fn = tf.function(functools.partial(_sample_batches, problem),
                                          autograph=False)
    self._run_steps_fn = tf.function(functools.partial(_run_steps, problem, rule), jit_compile=(
        meta.eval_jit_compile(jit_compile, list(self.meta_optimizer.nets.values()), problem)),
        autograph=False)

  @property
  def trace_counts(self):
    """How often each compiled function was traced: once, and once per distinct chunk length."""
    return {"initial_state": self._initial_state_fn.experimental_get_tracing_count(),
            "sample_batches": self._sample_batches_fn.experimental_get_tracing_count(),
            "run_steps": self._run_steps_fn.experimental_get_tracing_count()}

  def run_epoch(self, seed, num_steps, check=None):
    """Losses f(x_0) .. f(x_num_steps) of one fresh problem instance, as a numpy array.

    check: called before every chunk of `unroll_length` steps, e.g. `stopping.StopOnSignal.check`,
      which raises to stop: a stop signal then acts within one chunk's time, not one epoch's.
    """
    if int(num_steps) != num_steps or num_steps <= 0:
      raise ValueError(f"num_steps={num_steps} must be a positive integer.")
    state = self._initial_state_fn(seeds_lib.initial_seed(seed))
    lengths = [min(self._unroll_length, int(num_steps) - start)
               for start in range(0, int(num_steps), self._unroll_length)]

    def draw(i):
      return self._sample_batches_fn(seeds_lib.unroll_seed(seed, i), lengths[i] + 1)

    losses = []
    # The next chunk's minibatches are drawn on another thread while this chunk's steps run.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as drawer:
      drawn = drawer.submit(draw, 0)
      for i in range(len(lengths)):
        if check is not None:
          check()
        batches = drawn.result()
        if i + 1 < len(lengths):
          drawn = drawer.submit(draw, i + 1)
        chunk, state = self._run_steps_fn(state, batches)
        losses.append(chunk.numpy()[:-1])
    losses.append(chunk.numpy()[-1:])
    return np.concatenate(losses)

  def run(self, seeds, num_steps, progress=None, check=None):
    """Losses of every epoch: [len(seeds), num_steps + 1]. `progress(i)` is called per epoch,
    `check()` before every chunk (see run_epoch)."""
    rows = []
    for i, seed in enumerate(seeds):
      rows.append(self.run_epoch(seed, num_steps, check))
      if progress is not None:
        progress(i + 1)
    return np.stack(rows)


def tune_learning_rate(problem, name, seeds, num_steps, grid=LEARNING_RATE_GRID,
                       unroll_length=20, jit_compile=None, progress=None):
  """Chooses a baseline's rate by the mean final loss over `seeds` (non-finite counts as worst).

  If the best rate is the largest or smallest tried, the sweep goes on past the grid's edge by up
  to two half-decades, so that the chosen rate is a true optimum of the sweep.

  Returns (best rate, {rate: mean final loss}).
  """
  best, scores, _ = _tune(problem, name, seeds, num_steps, grid, unroll_length, jit_compile,
                          progress, None)
  return best, scores


def _tune(problem, name, seeds, num_steps, grid, unroll_length, jit_compile, progress, check,
          known=None):
  """tune_learning_rate, also returning its Evaluator set to the best rate, for reuse.

  check: passed to Evaluator.run (a stop between chunks).
  known: {rate: score} an interrupted sweep with the same settings already measured; not rerun.
  """
  config = baseline_config(name, grid[0])
  rate = config[name]["net_options"]["learning_rate"]
  evaluator = Evaluator(problem, config, unroll_length=unroll_length, jit_compile=jit_compile)
  scores = {}

  def score(r):
    if known and r in known and not np.isnan(known[r]):  # NaN is no measurement: rerun
      scores[r] = float(known[r])
    else:
      rate.assign(r)
      final = evaluator.run(seeds, num_steps, check=check)[:, -1]
      scores[r] = float(np.mean(final)) if np.all(np.isfinite(final)) else float("inf")
    if progress is not None:
      progress(r, scores[r])

  for r in grid:
    score(r)
  # A best rate on the grid's edge is not tuned yet: go on by half-decades (at most two).
  for _ in range(2):
    best = min(scores, key=scores.get)
    if len(grid) < 2 or best not in (min(scores), max(scores)) or not np.isfinite(scores[best]):
      break
    score(best * np.sqrt(10.0) if best == max(scores) else best / np.sqrt(10.0))
  best = min(scores, key=scores.get)
  rate.assign(best)
  return best, scores, evaluator


def mean_interval(values, confidence_z=1.96):
  """Mean and the half-width of its normal-approximation 95% interval, over axis 0."""
  values = np.asarray(values, np.float64)
  half = confidence_z * values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
  return values.mean(axis=0), half


def paired_differences(losses, steps, reference="L2L"):
  """`reference`'s loss minus each other optimizer's, run by run: {name: {step: (mean, ci95)}}.

  Every optimizer's test runs share their initial weights and minibatches (the same seeds), so
  the difference removes what a run's instance adds to both losses, and its interval is the one
  that says whether `reference` is lower, where the two unpaired intervals can overlap.
  """
  return {name: {step: tuple(float(v) for v in mean_interval(losses[reference][:, step]
                                                             - runs[:, step])) for step in steps}
          for name, runs in losses.items() if name != reference}


def compare(problem, l2l_config, net_assignments=None, baselines=tuple(BASELINES), seed=0,
            num_tuning_epochs=10, num_test_epochs=100, num_steps=100, tuning_steps=None,
            grid=LEARNING_RATE_GRID, unroll_length=20, jit_compile=None, progress=None,
            tuned=None, on_tuned=None, tested=None, on_tested=None, scored=None, on_scored=None,
            store=None, check=None):
  """The paper's comparison: tune each baseline's rate, then test every optimizer on fresh runs.

  Baselines are tuned on `num_tuning_epochs` instances (seed purpose TUNING) by their mean loss
  after `tuning_steps` (default num_steps); all optimizers then run the same `num_test_epochs`
  instances (purpose TEST), which played no part in training or tuning.

  Args:
    l2l_config: net config of the learned optimizer, or None to compare baselines only.
    progress: called as progress(stage: str, done: int, total: int); the stage names the run
      that ended and its mean final loss.
    tuned: baseline name -> rate already tuned with these settings (e.g. by an interrupted run):
      those baselines skip tuning, which is most of a comparison's time.
    on_tuned: called as on_tuned(name, rate) once a baseline's tuning is done, to keep it.
    scored: baseline name -> {rate: score} of an interrupted sweep with these settings, which a
      new sweep takes instead of rerunning those rates.
    on_scored: called as on_scored(name, rate, score) after each rate of a sweep, to keep it.
    tested: baseline name -> (rate, losses [num_test_epochs, num_steps + 1]) of test runs already
      made with these settings: a baseline whose rate is the one tuned skips its test runs, so
      that comparing a newer learned optimizer reruns only the learned one. Runs holding a
      non-finite loss are run again, never taken on trust.
    on_tested: called as on_tested(name, rate, losses) after a baseline's test runs, to keep them.
    store: a comparison_store.Store, which gives tuned, scored and tested and keeps each result
      (on_tuned, on_scored, on_tested); in place of those six arguments.
    check: called before every chunk of every run, e.g. a stop signal's check, which raises to
      stop; what was kept before it (on_scored, on_tuned, on_tested) stays kept.

  Returns:
    (losses: name -> [num_test_epochs, num_steps + 1], rates: baseline name -> chosen rate).
  """
  tuned, on_tuned, tested, on_tested, scored, on_scored = _from_store(
      store, tuned, on_tuned, tested, on_tested, scored, on_scored)
  test_seeds = seeds_lib.epoch_seeds(seed, num_test_epochs, seeds_lib.TEST)
  make_evaluator = functools.partial(Evaluator, problem, unroll_length=unroll_length,
                                     jit_compile=jit_compile)
  tune = functools.partial(_tune, problem,
                           seeds=seeds_lib.epoch_seeds(seed, num_tuning_epochs, seeds_lib.TUNING),
                           num_steps=tuning_steps or num_steps, grid=grid,
                           unroll_length=unroll_length, jit_compile=jit_compile, check=check)
  # Each baseline: the grid, up to two rates past its edge, and the test run.
  ticker = _Ticker(progress, len(baselines) * (len(grid) + 3) + (l2l_config is not None))
  losses, rates = {}, {}
  if l2l_config is not None:
    losses["L2L"] = make_evaluator(l2l_config, net_assignments).run(test_seeds, num_steps,
                                                                    check=check)
    ticker.tick(f"L2L: loss {np.mean(losses['L2L'][:, -1]):.4g}")
  tuned, tested = dict(tuned or {}), dict(tested or {})
  for name in baselines:
    rates[name], evaluator = _tuned_baseline(
        name, tuned, (scored or {}).get(name), on_tuned, on_scored, ticker, tune, make_evaluator,
        num_rates=len(grid) + 2)
    losses[name] = _test_runs(name, rates[name], tested.get(name), evaluator, test_seeds,
                              num_steps, on_tested, check)
    ticker.tick(f"{name}: loss {np.mean(losses[name][:, -1]):.4g}")
  return losses, rates


def _from_store(store, tuned, on_tuned, tested, on_tested, scored, on_scored):
  """compare's six records and keepers: the store's when one is given, else those passed."""
  if store is None:
    return tuned, on_tuned, tested, on_tested, scored, on_scored
  if any(arg is not None for arg in (tuned, on_tuned, tested, on_tested, scored, on_scored)):
    raise ValueError("compare: pass store= or tuned/on_tuned/tested/on_tested/scored/on_scored, "
                     "not both; the store gives all six.")
  return (store.tuned, store.keep_tuned, store.tested, store.keep_tested, store.scored,
          store.keep_score)


class _Ticker:
  """Counts a comparison's runs for `progress(stage, done, total)`; runs not needed are skipped."""

  def __init__(self, progress, total):
    self._progress, self._total, self._done = progress, total, 0

  def skip(self, count):
    self._done += count

  def tick(self, stage):
    self._done += 1
    if self._progress is not None:
      self._progress(stage, self._done, self._total)


def _tuned_baseline(name, tuned, known, on_tuned, on_scored, ticker, tune, make_evaluator,
                    num_rates):
  """(rate, an Evaluator at that rate) of baseline `name`: the rate in `tuned`, or a new sweep.

  known: the {rate: score} an interrupted sweep kept, which the sweep does not rerun.
  num_rates: the most rates a sweep runs, for the progress count.
  """
  if name in tuned:
    rate = float(tuned[name])
    ticker.skip(num_rates)
    return rate, make_evaluator(baseline_config(name, rate))

  def scored_one(rate, score):
    if on_scored is not None:
      on_scored(name, rate, score)
    ticker.tick(f"tuning {name}, rate {rate:.3g}: loss {score:.4g}")

  rate, scores, evaluator = tune(name, progress=scored_one, known=known)
  ticker.skip(num_rates - len(scores))  # the edge rates this sweep did not need
  if on_tuned is not None:
    on_tuned(name, rate)
  return rate, evaluator


def _test_runs(name, rate, kept, evaluator, seeds, num_steps, on_tested, check):
  """A baseline's test losses: the `kept` (rate, losses) if at this rate, whole and finite, else
  run now and passed to on_tested."""
  if kept is not None and kept[0] == rate and np.shape(kept[1]) == (
      len(seeds), num_steps + 1) and np.all(np.isfinite(kept[1])):
    return np.asarray(kept[1])
  losses = evaluator.run(seeds, num_steps, check=check)
  if on_tested is not None:
    on_tested(name, rate, losses)
  return losses
