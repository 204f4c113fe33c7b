"""Data-parallel meta-training: R replicas with N / R instances each take the meta-step of one with N.

The multi-replica cases run in subprocesses: logical CPU devices and TF_CONFIG must be set before
TensorFlow starts.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import checkpoints
from learning_to_learn import configs
from learning_to_learn import distribute
from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll as unroll_lib

from conftest import ROOT, TIMEOUT, background_jobs, environment, start_python

FAST = ["--problem=quadratic", "--num_epochs=3", "--num_steps=10", "--unroll_length=5",
        "--evaluation_period=2", "--evaluation_epochs=2", "--log_period=1", "--checkpoint_period=1",
        "--num_instances=2", "--learning_rate=0.01"]


def _environment(**extra):
  extra.setdefault("TF_CONFIG", None)  # a cluster only where a test sets one
  return environment(**extra)


def _train(*args, **env):
  return start_python(os.path.join(ROOT, "train.py"), *args, env=_environment(**env))


def _finish(process, timeout=TIMEOUT):
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


def _saved_weights(save_path):
  net = optimizer_files.load(os.path.join(save_path, "cw.npz"))
  return [v.numpy() for v in net.trainable_variables]


def test_instance_zero_keeps_the_meta_step_seed_and_the_others_differ():
  seed = seeds_lib.make_seed(3, 0, 7)
  seeds = [seeds_lib.instance_seed(seed, i).numpy().tolist() for i in range(4)]
  assert seeds[0] == seed.numpy().tolist()
  assert len({tuple(s) for s in seeds}) == 4


def test_meta_gradient_of_two_instances_is_the_mean_of_their_own():
  problem, config, _ = configs.get_config("quadratic")
  tf.random.set_seed(1)
  optimizer = meta.MetaOptimizer(**config)
  trainer = optimizer.meta_minimize(problem, 5, num_instances=2, jit_compile=False)
  reset_seed, unroll_seed = seeds_lib.make_seed(4), seeds_lib.make_seed(5)
  trainer.reset(reset_seed)
  result, _, gradients = trainer._train_fn(trainer.states, unroll_seed)

  # Second path: each instance on its own, through MetaOptimizer.meta_loss and a tape.
  own, meta_losses = [], []
  for i in range(2):
    rule = optimizer.assignments(problem)
    state = unroll_lib.initial_state(problem, rule, seeds_lib.instance_seed(reset_seed, i))
    batches = problem.sample_batches(seeds_lib.instance_seed(unroll_seed, i), 6)
    with tf.GradientTape() as tape:
      unrolled, _ = optimizer.meta_loss(problem, state, batches)
    own.append(tape.gradient(unrolled.meta_loss, optimizer.trainable_variables))
    meta_losses.append(float(unrolled.meta_loss))
  assert abs(meta_losses[0] - meta_losses[1]) > 1e-3 * meta_losses[0]  # two different instances
  np.testing.assert_allclose(float(result.meta_loss), np.mean(meta_losses), rtol=1e-6)
  for g, a, b in zip(gradients, *own):
    np.testing.assert_allclose(g.numpy(), (a.numpy() + b.numpy()) / 2, rtol=1e-5, atol=1e-9)


def test_instances_must_split_evenly_over_replicas():
  problem, config, _ = configs.get_config("quadratic")
  optimizer = meta.MetaOptimizer(**config)
  with pytest.raises(ValueError, match="num_instances=0 must be a positive multiple"):
    optimizer.meta_minimize(problem, 5, num_instances=0)


def test_networks_built_outside_the_strategy_are_refused():
  problem, config, _ = configs.get_config("quadratic")
  optimizer = meta.MetaOptimizer(**config)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  with pytest.raises(ValueError, match="inside `strategy.scope"):
    optimizer.meta_minimize(problem, 5, strategy=strategy)


def test_bad_strategy_names_and_cluster_configs_are_refused(monkeypatch):
  with pytest.raises(ValueError, match="unknown strategy 'ring'"):
    distribute.make_strategy("ring")
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="TF_CONFIG .* not set"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                     '"index": 3}}')
  with pytest.raises(ValueError, match="not in its cluster"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(ValueError, match="not a cluster description"):
    distribute.make_strategy("multi_worker")


def _run_all(tmp):
  """Every subprocess of this module, started at once (their start-up overlaps, and the two workers
  need each other): (tmp, name -> (exit status, stdout, stderr))."""
  processes = {
      "check": start_python(os.path.join(ROOT, "tests", "mirrored_check.py"),
                            env=_environment()),
      "single": _train(*FAST, f"--save_path={tmp / 'single'}"),
      "mirrored": _train(*FAST, "--strategy=mirrored", "--cpu_devices=2",
                         f"--save_path={tmp / 'mirrored'}"),
  }
  for i, tf_config in enumerate(distribute.localhost_cluster(2)):
    processes[f"worker_{i}"] = _train(*FAST, "--strategy=multi_worker",
                                      f"--save_path={tmp / 'workers'}",
                                      TF_CONFIG=json.dumps(tf_config))
  try:
    return tmp, {name: _finish(process) for name, process in processes.items()}
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()


def start_background_jobs(items, submit, tmp_path_factory):
  """The subprocesses, started as the session starts (conftest runs them beside other tests)."""
  del items  # every test that takes `runs` needs them all
  return {"all": submit(_run_all, tmp_path_factory.mktemp("distribute"))}


@pytest.fixture(scope="module")
def runs(request):
  """(the subprocesses' directory, name -> that subprocess's (exit status, stdout, stderr))."""
  tmp, results = background_jobs(request.module)["all"].result(timeout=TIMEOUT)
  return tmp, results.__getitem__


def _succeeded(result, name):
  code, out, err = result(name)
  assert code == 0, f"{name}: {err[-3000:]}"
  return out


def test_two_mirrored_replicas_take_the_meta_step_of_one_holding_both_instances(runs):
  _, result = runs
  out = json.loads(_succeeded(result, "check").strip().splitlines()[-1])
  assert out["replicas"] == 2
  assert out["single_norm"] > out["clip"]  # clipping was active
  np.testing.assert_allclose(out["mirrored_norm"], out["single_norm"], rtol=1e-5)
  for a, b in zip(out["mirrored_gradient"], out["single_gradient"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
  np.testing.assert_allclose(out["mirrored_losses"], out["single_losses"], rtol=1e-5)
  for a, b in zip(out["mirrored_weights"], out["single_weights"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for first, second in out["replica_weights"]:
    np.testing.assert_array_equal(first, second)  # one meta-update keeps the replicas identical


def test_train_py_mirrored_on_two_cpus_matches_one_replica(runs):
  tmp, result = runs
  for name in ("mirrored", "single"):
    _succeeded(result, name)
  for a, b in zip(_saved_weights(tmp / "mirrored"), _saved_weights(tmp / "single")):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_two_workers_on_localhost_train_and_the_chief_checkpoint_loads(runs):
  tmp, result = runs
  for name in ("worker_0", "worker_1", "single"):
    _succeeded(result, name)
  save_path = tmp / "workers"
  # Only the chief wrote, and what it wrote restores into a fresh optimizer.
  assert sorted(os.listdir(save_path)) == ["best.json", "checkpoints", "cw.npz", "run.json"]
  problem, config, _ = configs.get_config("quadratic")
  optimizer = meta.MetaOptimizer(**config)
  trainer = optimizer.meta_minimize(problem, 5)
  state = checkpoints.TrainingCheckpoint(save_path / "checkpoints", optimizer, trainer.optimizer)
  restored, damaged = state.restore_latest()
  assert restored is not None and not damaged
  assert int(state.epoch.numpy()) == 3
  # Two workers with one instance each took the meta-steps of one process holding both.
  for a, b in zip(_saved_weights(save_path), _saved_weights(tmp / "single")):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
