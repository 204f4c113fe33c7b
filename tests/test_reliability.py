"""Resume after a kill, damaged checkpoints, non-finite faults and determinism, end to end."""

import glob
import os
import signal
import time

import numpy as np
import tensorflow as tf

import problems
from learning_to_learn import meta
from learning_to_learn import seeds as seeds_lib

from conftest import ROOT, run_cli, start_cli

TRAIN = [os.path.join(ROOT, "train.py"), "--problem=quadratic", "--num_steps=20",
         "--unroll_length=10", "--evaluation_period=4", "--evaluation_epochs=1", "--log_period=4",
         "--checkpoint_period=2", "--nojit_compile", "--seed=5"]


def train(save_path, *flags, check=True):
  # A process of its own, forked from the fork server (conftest.run_cli).
  result = run_cli(*TRAIN, f"--save_path={save_path}", *flags, timeout=300)
  if check:
    assert result.returncode == 0, result.stderr[-2000:]
  return result


def checkpoint_values(save_path):
  """Every variable of the newest training checkpoint, by its checkpoint key, but the wall clock."""
  reader = tf.train.load_checkpoint(os.path.join(save_path, "checkpoints"))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "OBJECT_GRAPH" not in k and not k.startswith("seconds/")}


def error_lines(result):
  return [line for line in result.stderr.splitlines() if "error:" in line]


def wait_for(pattern, process, seconds=240):
  deadline = time.time() + seconds
  while time.time() < deadline and process.poll() is None:
    if glob.glob(pattern):
      return True
    time.sleep(0.2)
  return bool(glob.glob(pattern))


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  train(whole, "--num_epochs=12")
  process = start_cli(*TRAIN, f"--save_path={killed}", "--num_epochs=12", stdout=None,
                      stderr=None)
  assert wait_for(str(killed / "checkpoints" / "ckpt-4.index"), process)
  process.kill()
  process.wait()
  resumed = train(killed, "--num_epochs=12")
  assert "Resuming from" in resumed.stderr
  want, got = checkpoint_values(whole), checkpoint_values(killed)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  best_whole, best_killed = np.load(whole / "cw.npz"), np.load(killed / "cw.npz")
  for key in best_whole.files:
    np.testing.assert_array_equal(best_whole[key], best_killed[key])


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  process = start_cli(*TRAIN, f"--save_path={tmp_path}", "--num_epochs=100000",
                      "--checkpoint_period=100000", stdout=None)
  # The first evaluation (epoch 4) writes the best optimizer: by then epochs have run.
  assert wait_for(str(tmp_path / "cw.npz"), process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, stderr[-2000:]
  assert "SIGTERM" in stderr
  epoch = int(checkpoint_values(tmp_path)["epoch/.ATTRIBUTES/VARIABLE_VALUE"])
  assert epoch >= 4


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
  train(tmp_path, "--num_epochs=4")
  newest = tmp_path / "checkpoints" / "ckpt-4.data-00000-of-00001"
  newest.write_bytes(newest.read_bytes()[:40])  # truncated mid-write
  result = train(tmp_path, "--num_epochs=6")
  assert "ckpt-4" in result.stderr and "damaged" in result.stderr
  assert "Resuming from" in result.stderr and "ckpt-2" in result.stderr
  assert int(checkpoint_values(tmp_path)["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 6


def test_all_checkpoints_damaged_gives_one_line_error(tmp_path):
  train(tmp_path, "--num_epochs=2")
  for path in glob.glob(str(tmp_path / "checkpoints" / "*.data-*")):
    with open(path, "wb") as f:
      f.write(b"garbage")
  result = train(tmp_path, "--num_epochs=4", check=False)
  assert result.returncode == 2
  lines = error_lines(result)
  assert len(lines) == 1 and "--overwrite" in lines[0] and "Traceback" not in result.stderr


def test_resume_with_other_flags_is_refused(tmp_path):
  train(tmp_path, "--num_epochs=2")
  result = train(tmp_path, "--num_epochs=4", "--learning_rate=0.01", check=False)
  assert result.returncode == 2
  assert "learning_rate" in error_lines(result)[0] and "--overwrite" in error_lines(result)[0]


def test_absurd_learning_rate_stops_with_finite_weights(tmp_path):
  result = train(tmp_path, "--num_epochs=6", "--learning_rate=1e30", "--max_faults=3",
                 check=False)
  assert result.returncode == 2
  lines = error_lines(result)
  assert len(lines) == 1 and "non-finite" in lines[0] and "--clip_meta_gradient" in lines[0]
  for path in glob.glob(str(tmp_path / "*.npz")):
    data = np.load(path)
    for key in data.files:
      if key != "__config__":
        assert np.all(np.isfinite(data[key])), key
  if os.path.isdir(tmp_path / "checkpoints") and os.listdir(tmp_path / "checkpoints"):
    for key, value in checkpoint_values(tmp_path).items():
      if np.issubdtype(np.asarray(value).dtype, np.floating):
        assert np.all(np.isfinite(value)) or "best" in key, key


def test_same_seed_gives_identical_runs(tmp_path):
  first, second = train(tmp_path / "a", "--num_epochs=4"), train(tmp_path / "b", "--num_epochs=4")
  a, b = checkpoint_values(tmp_path / "a"), checkpoint_values(tmp_path / "b")
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)

  def stats(result):
    return [line.split("] ")[-1] for line in result.stderr.splitlines() if "Log Mean" in line]

  assert stats(first) == stats(second) and stats(first)


class NaNAtStep(problems.Problem):
  """x^2 whose loss turns NaN once x has taken `bad_step` steps."""

  param_names = ("x", "steps")

  def __init__(self, bad_step):
    self.bad_step = bad_step

  def init(self, seed):
    return {"x": tf.ones([3]), "steps": tf.zeros([])}, ()

  def loss(self, params, constants, batch):
    # "steps" grows by one per update because its gradient is -1 and the rule is SGD-like below.
    poison = tf.where(params["steps"] >= self.bad_step, np.nan, 0.0)
    return tf.reduce_sum(tf.square(params["x"])) - params["steps"] + poison


def test_non_finite_meta_step_never_reaches_the_weights():
  optimizer = meta.MetaOptimizer(cw=dict(net="CoordinateWiseDeepLSTM", net_options=dict(
      layers=(), initializer={"linear": {"w": np.array([[-1.0]]), "b": np.zeros([1])}})))
  trainer = optimizer.meta_minimize(NaNAtStep(bad_step=7), 5, learning_rate=0.1,
                                    jit_compile=False)
  trainer.reset(seeds_lib.make_seed(0))
  first = trainer.train_unroll(seeds_lib.make_seed(1))  # steps 0..5: finite, applied
  assert bool(first.finite)
  before = [v.numpy().copy() for v in optimizer.trainable_variables]
  second = trainer.train_unroll(seeds_lib.make_seed(2))  # reaches step 7: NaN, not applied
  assert not bool(second.finite)
  for v, b in zip(optimizer.trainable_variables, before):
    np.testing.assert_array_equal(v.numpy(), b)
    assert np.all(np.isfinite(v.numpy()))


def test_init_path_starts_from_the_trained_weights(tmp_path):
  from learning_to_learn import networks
  from learning_to_learn import optimizer_files
  start = networks.CoordinateWiseDeepLSTM(layers=(20, 20), preprocess_name="LogAndSign",
                                          preprocess_options={"k": 5}, scale=0.01)
  for variable in start.trainable_variables:  # far from any fresh initialization
    variable.assign(tf.fill(variable.shape, 0.125))
  os.makedirs(tmp_path / "start")
  optimizer_files.save(start, str(tmp_path / "start" / "cw.npz"))
  train(tmp_path / "run", "--num_epochs=4", f"--init_path={tmp_path / 'start'}",
        "--learning_rate=1e-9")
  # Four epochs of two Adam steps move each weight by about 8e-9 from where it started.
  for variable in optimizer_files.load(str(tmp_path / "run" / "cw.npz")).trainable_variables:
    np.testing.assert_allclose(variable.numpy(), 0.125, atol=1e-7)
  missing = train(tmp_path / "other", f"--init_path={tmp_path / 'absent'}", check=False)
  assert missing.returncode == 2
  assert "no trained optimizer" in missing.stderr.splitlines()[-1]
