"""Failures a careless user, bad data or a crash cause, each run as a person meets it: the CLI as a
process of its own. The promise checked: one line on stderr, exit status 2 (130 for a stop signal),
no traceback, and nothing already written is lost.

Importing TensorFlow costs each run ~7-10 s, so the CLIs are forked from a process that imported
it once (conftest.run_cli, tests/forkserver.py), a true subprocess only where the import is part
of what is checked; the selected tests' commands start as the session starts
(start_background_jobs; conftest runs them beside the other modules' tests) and each test, run
last, waits for its own. The ERRORS cases, whose whole effect is their output and exit
status, run a script's cases in one process (tests/cli_cases.py), which
test_the_one_process_cases_end_as_their_own_process_does holds against the CLI's own process.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from learning_to_learn import optimizer_files
from learning_to_learn import checkpoints
from learning_to_learn import comparison_store
from learning_to_learn import evaluation

from conftest import TIMEOUT, at_full_priority, environment, picked, run_cli
from conftest import run_cli_cases, run_python, start_cli

ENV = environment()
TRAIN = ["train.py", "--problem=quadratic", "--num_steps=20", "--unroll_length=10",
         "--evaluation_period=4", "--evaluation_epochs=1", "--log_period=4",
         "--checkpoint_period=2", "--nojit_compile", "--seed=5"]
COMPARE = ["evaluate.py", "--problem=quadratic", "--compare", "--num_epochs=3",
           "--num_tuning_epochs=2", "--num_steps=10", "--unroll_length=5", "--nojit_compile"]
SHIPPED = os.path.join(optimizer_files.SHIPPED_DIR, "quadratic", "cw.npz")


def _train(save_path, *flags, **kwargs):
  return run_cli(*TRAIN, f"--save_path={save_path}", *flags, **kwargs)


def _snapshot(directory):
  """Relative path -> bytes of every file under `directory`."""
  files = {}
  for parent, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, directory)] = f.read()
  return files


def _unwritable(tmp):
  """A directory this process cannot create: a read-only tree when root, else a chmod-ed one."""
  if os.geteuid() == 0:
    return "/sys/l2l-test-unwritable"
  path = os.path.join(tmp, "read_only")
  os.makedirs(path)
  os.chmod(path, 0o500)
  return os.path.join(path, "run")


def _epoch(save_path):
  reader = tf.train.load_checkpoint(os.path.join(save_path, "checkpoints"))
  return int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))


def _optimizer_file(tmp, name, weights=None, options=None):
  """The shipped quadratic optimizer with some weights or options replaced, in its own dir."""
  with np.load(SHIPPED) as data:
    arrays = {key: data[key] for key in data.files}
  config = json.loads(str(arrays["__config__"]))
  config["net_options"].update(options or {})
  arrays["__config__"] = np.array(json.dumps(config))
  for key, value in (weights or {}).items():
    arrays[key] = np.full_like(arrays[key], value)
  path = os.path.join(tmp, name)
  os.makedirs(path)
  np.savez(os.path.join(path, "cw.npz"), **arrays)
  return path


def _mnist_dir(tmp, labels=None, num=50, images=None):
  """A data_dir with an mnist.npz of `num` random digits and the given labels."""
  rng = np.random.default_rng(0)
  if images is None:
    images = rng.integers(0, 256, (num, 28, 28)).astype(np.uint8)
  if labels is None:
    labels = rng.integers(0, 10, len(images)).astype(np.uint8)
  path = os.path.join(tmp, "data")
  os.makedirs(path)
  np.savez(os.path.join(path, "mnist.npz"), x_train=images, y_train=labels, x_test=images,
           y_test=labels)
  return path


def _wait_for(path, process, seconds=300):
  deadline = time.time() + seconds
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(path):
      return True
    time.sleep(0.1)
  return os.path.exists(path)


# --- Lost work ----------------------------------------------------------------------------------

def _index_gone(tmp, damage):
  save = os.path.join(tmp, "run")
  first = _train(save, "--num_epochs=4")
  assert first.returncode == 0, first.stderr[-2000:]
  index = os.path.join(save, "checkpoints", "checkpoint")
  if damage == "missing":
    os.remove(index)
  else:
    with open(index, "w") as f:
      f.write(damage)
  return _train(save, "--num_epochs=6"), save


def _trained_optimizer_without_checkpoints(tmp):
  save = os.path.join(tmp, "run")
  os.makedirs(save)
  shutil.copy(SHIPPED, save)
  before = _snapshot(save)
  return _train(save, "--num_epochs=4"), before, _snapshot(save)


def _locked(tmp, pid):
  save = os.path.join(tmp, "run")
  os.makedirs(save)
  with open(os.path.join(save, "train.lock"), "w") as f:
    f.write(f"{pid} {socket.gethostname()}\n")
  before = _snapshot(save)
  return _train(save, "--num_epochs=2"), before, save


def _dead_pid():
  child = subprocess.Popen(["true"])
  child.wait()
  return child.pid


def _signals_during_stop(tmp):
  save = os.path.join(tmp, "run")
  process = start_cli(*TRAIN, f"--save_path={save}", "--num_epochs=100000",
                      "--checkpoint_period=100000", env=ENV, stdout=None)
  assert _wait_for(os.path.join(save, "cw.npz"), process)
  with open(os.path.join(save, "train.lock")) as f:
    lock = f.read()
  # Ctrl-C pressed three times, SIGTERM twice: only the first may act.
  for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGINT):
    process.send_signal(signum)
    time.sleep(0.02)
  _, stderr = process.communicate(timeout=TIMEOUT)
  return process.returncode, stderr, lock, process.pid, save


def _disk_full_checkpoint(tmp):
  save = os.path.join(tmp, "run")
  first = _train(save, "--num_epochs=8")
  assert first.returncode == 0, first.stderr[-2000:]
  before = _snapshot(save)

  # cw.npz (23 kB) still fits, a checkpoint (65 kB) does not
  return _train(save, "--num_epochs=12", fsize=40000), before, save


def _disk_full_best(tmp):
  save = os.path.join(tmp, "run")
  first = _train(save, "--num_epochs=4")
  assert first.returncode == 0, first.stderr[-2000:]
  before = _snapshot(save)
  os.symlink("/dev/full", os.path.join(save, "cw.npz.partial"))  # every write: ENOSPC
  return _train(save, "--num_epochs=8"), before, save


def _damaged_run_json(tmp):
  """A run.json of the wrong shape, then one that is not JSON: (result, files before, after)."""
  save = os.path.join(tmp, "run")
  first = _train(save, "--num_epochs=2")
  assert first.returncode == 0, first.stderr[-2000:]
  outcomes = []
  for text in ("[1, 2]\n", "{\"problem\": \n"):
    with open(os.path.join(save, "run.json"), "w") as f:
      f.write(text)
    before = _snapshot(save)
    outcomes.append((_train(save, "--num_epochs=4"), before, _snapshot(save)))
  return outcomes


def _compare_interrupted(tmp):
  out = os.path.join(tmp, "out")
  process = start_cli(*COMPARE, "--path=quadratic", f"--output_dir={out}", env=ENV)
  assert _wait_for(os.path.join(out, "tuning.json"), process)
  process.send_signal(signal.SIGINT)
  stdout, stderr = process.communicate(timeout=TIMEOUT)
  with open(os.path.join(out, "tuning.json")) as f:
    tuned = json.load(f)
  rerun = run_cli(*COMPARE, "--path=quadratic", f"--output_dir={out}")
  return process.returncode, stdout + stderr, tuned, rerun, out


def _compare_diverging(tmp):
  path = _optimizer_file(tmp, "huge_scale", options={"scale": 1e30})
  out = os.path.join(tmp, "out")
  return run_cli(*COMPARE, f"--path={path}", f"--output_dir={out}"), out


def _seeded_compare_dir(tmp, old_outputs=False):
  """An --output_dir holding the outputs of an earlier comparison (fake, known bytes)."""
  out = os.path.join(tmp, "out")
  os.makedirs(out)
  for name in ("table.md", "summary.json", "losses.csv", "loss.png") if old_outputs else ():
    with open(os.path.join(out, name), "w") as f:
      f.write(f"the earlier {name}\n")
  return out


def _compare_settings(num_tuning_epochs=2, num_epochs=3, num_steps=10):
  """The settings evaluate.py --compare keeps its records under, as COMPARE runs it."""
  instances = {"problem": "quadratic", "split": "train", "data": "no data", "seed": 0,
               "settings": "reference", "mlp": {},
               "minibatches": "drawn by TensorFlow's kernels"}
  tuning = dict(instances, num_tuning_epochs=num_tuning_epochs, tuning_steps=min(100, num_steps),
                grid=list(evaluation.LEARNING_RATE_GRID))
  return tuning, dict(instances, num_test_epochs=num_epochs, num_steps=num_steps)


def _compare_write_fails(tmp):
  out = _seeded_compare_dir(tmp, old_outputs=True)
  before = _snapshot(out)

  # tuning.json and baseline_runs.npz (3 kB) fit, loss.png (50 kB) does not
  result = run_cli(*COMPARE, "--path=quadratic", f"--output_dir={out}", fsize=20000)
  return result, before, _snapshot(out)


def _compare_damaged_kept_files(tmp):
  """A truncated baseline_runs.npz and a tuning.json with NaN where a score and a rate were."""
  out = _seeded_compare_dir(tmp)
  tuning, _ = _compare_settings()
  grid = evaluation.LEARNING_RATE_GRID
  with open(os.path.join(out, "tuning.json"), "w") as f:
    f.write(json.dumps({"settings": tuning, "rates": {"adam": float("nan")},
                        "scores": {"sgd": {repr(rate): float("nan") for rate in grid}}}))
  with open(os.path.join(out, "baseline_runs.npz"), "wb") as f:
    f.write(b"PK\x03\x04 truncated")
  return run_cli(*COMPARE, f"--output_dir={out}"), out


def _no_matplotlib(tmp):
  stub = os.path.join(tmp, "stub", "matplotlib")
  os.makedirs(stub)
  with open(os.path.join(stub, "__init__.py"), "w") as f:
    f.write("raise ImportError('No module named matplotlib (a test stub)')\n")
  out = _seeded_compare_dir(tmp, old_outputs=True)
  env = dict(ENV, PYTHONPATH=os.path.dirname(stub))
  return run_python(*COMPARE, "--path=quadratic", f"--output_dir={out}", env=env), out


def _stopped(args, ready, tmp):
  """Starts `args`, sends SIGTERM `ready` seconds after its "Comparing on"/"Problem" line:
  (exit status, seconds from the signal to the line saying it stopped, stderr).

  The seconds until the stop line, not until the exit: TensorFlow's own teardown adds a second or
  more on a loaded machine, and is no part of how soon the stop is acted on.
  """
  log = os.path.join(tmp, "stderr.txt")
  process = start_cli(*args, env=ENV, stdout=None, stderr=log)

  def seen(words):
    with open(log) as f:
      text = f.read()
    return any(word in text for word in words)

  try:  # whatever fails here, the run (hours long) does not outlive the test
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not seen(
        ["Comparing on", "Problem quadratic"]):
      time.sleep(0.1)
    time.sleep(ready)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while process.poll() is None and not seen(["stopped"]) and time.monotonic() < signalled + 300:
      time.sleep(0.02)
    seconds = time.monotonic() - signalled
    process.wait(timeout=TIMEOUT)
  finally:
    if process.poll() is None:
      process.kill()
  with open(log) as f:
    return process.returncode, seconds, f.read()


def _compare_stopped_mid_sweep(tmp):
  """SIGTERM during a sweep whose every rate takes minutes; sgd's tuning is kept from before."""
  out = _seeded_compare_dir(tmp)
  tuning, _ = _compare_settings(num_tuning_epochs=1000000)
  scores = {repr(rate): 1.0 + i for i, rate in enumerate(evaluation.LEARNING_RATE_GRID[1:])}
  kept = {"settings": tuning, "rates": {"sgd": 0.001}, "scores": {"sgd": scores}}
  checkpoints.write_json(os.path.join(out, "tuning.json"), kept)
  returncode, seconds, stderr = _stopped(
      [*COMPARE, "--num_tuning_epochs=1000000", f"--output_dir={out}"], 3, tmp)
  with open(os.path.join(out, "tuning.json")) as f:
    after = json.load(f)
  return returncode, seconds, stderr, kept, after


def _evaluate_stopped(tmp):
  return _stopped(["evaluate.py", "--problem=quadratic", "--optimizer=sgd", "--num_epochs=1000000",
                   "--num_steps=20", "--unroll_length=5", "--nojit_compile"], 3, tmp)


def _run_json_deleted(tmp):
  save = os.path.join(tmp, "run")
  first = _train(save, "--num_epochs=2")
  assert first.returncode == 0, first.stderr[-2000:]
  os.remove(os.path.join(save, "run.json"))
  before = _snapshot(save)
  return _train(save, "--num_epochs=4", "--learning_rate=0.01", "--seed=6"), before, save


def _data_swapped(tmp):
  save = os.path.join(tmp, "run")
  data = _mnist_dir(tmp)
  args = ["--problem=mnist", f"--data_dir={data}", "--num_steps=10", "--unroll_length=5",
          "--evaluation_period=2", "--evaluation_epochs=1", "--checkpoint_period=1"]
  first = run_cli("train.py", f"--save_path={save}", "--num_epochs=2", *args)
  assert first.returncode == 0, first.stderr[-2000:]
  other = np.random.default_rng(1).integers(0, 256, (50, 28, 28)).astype(np.uint8)
  labels = np.random.default_rng(1).integers(0, 10, 50).astype(np.uint8)
  np.savez(os.path.join(data, "mnist.npz"), x_train=other, y_train=labels, x_test=other,
           y_test=labels)
  before = _snapshot(save)
  return run_cli("train.py", f"--save_path={save}", "--num_epochs=4", *args), before, save


def _train_stopped_mid_epoch(tmp):
  """SIGTERM during an epoch of 10,000 unrolls: (status, seconds to the stop line, stderr, save)."""
  save = os.path.join(tmp, "run")
  log = os.path.join(tmp, "stderr.txt")
  process = start_cli(*TRAIN, f"--save_path={save}", "--num_steps=100000", "--num_epochs=2",
                      env=ENV, stdout=None, stderr=log)
  assert _wait_for(os.path.join(save, "run.json"), process)
  time.sleep(10)  # past the first unroll's tracing, well inside the epoch
  process.send_signal(signal.SIGTERM)
  signalled = time.monotonic()

  def seen():
    with open(log) as f:
      return "stopping" in f.read()

  while process.poll() is None and not seen() and time.monotonic() < signalled + 300:
    time.sleep(0.02)
  seconds = time.monotonic() - signalled
  process.wait(timeout=TIMEOUT)
  with open(log) as f:
    return process.returncode, seconds, f.read(), save


JOBS = {
    "run_json_deleted": _run_json_deleted,
    "data_swapped": _data_swapped,
    "train_stopped_mid_epoch": at_full_priority(_train_stopped_mid_epoch),
    "index_missing": lambda tmp: _index_gone(tmp, "missing"),
    "index_empty": lambda tmp: _index_gone(tmp, ""),
    "trained_optimizer_without_checkpoints": _trained_optimizer_without_checkpoints,
    "live_lock": lambda tmp: _locked(tmp, os.getpid()),
    "stale_lock": lambda tmp: _locked(tmp, _dead_pid()),
    "signals_during_stop": _signals_during_stop,
    "disk_full_checkpoint": _disk_full_checkpoint,
    "disk_full_best": _disk_full_best,
    "damaged_run_json": _damaged_run_json,
    "compare_interrupted": _compare_interrupted,
    "compare_diverging": _compare_diverging,
    "compare_write_fails": _compare_write_fails,
    "compare_damaged_kept_files": _compare_damaged_kept_files,
    "no_matplotlib": _no_matplotlib,
    # These time how soon a stop is acted on: their processes take the cores as the tests do.
    "compare_stopped_mid_sweep": at_full_priority(_compare_stopped_mid_sweep),
    "evaluate_stopped": at_full_priority(_evaluate_stopped),
}

# One-line failures: name -> (script, args(tmp), words the error line must contain).
ERRORS = {
    "save_path_unwritable": ("train.py", lambda tmp: [f"--save_path={_unwritable(tmp)}"],
                             ["--save_path", "writ"]),
    "save_path_under_a_file": ("train.py", lambda tmp: [f"--save_path={_a_file(tmp)}/run"],
                               ["--save_path"]),
    "logdir_unwritable": ("train.py", lambda tmp: [f"--logdir={_unwritable(tmp)}"],
                          ["--logdir", "writable"]),
    "logdir_is_a_file": ("train.py", lambda tmp: [f"--logdir={_a_file(tmp)}"],
                         ["--logdir", "is a file"]),
    "output_dir_is_a_file": ("evaluate.py", lambda tmp: [f"--output_dir={_a_file(tmp)}"],
                             ["--output_dir", "is a file"]),
    "output_dir_unwritable": ("evaluate.py", lambda tmp: [f"--output_dir={_unwritable(tmp)}"],
                              ["--output_dir", "writable"]),
    "output_dir_in_use": ("evaluate.py", lambda tmp: [f"--output_dir={_compare_locked(tmp)}"],
                          ["--output_dir", "in use", str(os.getpid()), "compare.lock"]),
    "baselines_dir_in_use": (
        "evaluate.py", lambda tmp: [f"--output_dir={tmp}/out",
                                    f"--baselines_dir={_compare_locked(tmp, 'baselines')}"],
        ["--baselines_dir", "in use", str(os.getpid()), "compare.lock"]),
    "unknown_option_evaluate": (
        "evaluate.py", lambda tmp: [f"--path={_optimizer_file(tmp, 'o', options={'bogus': 1})}"],
        ["cw.npz", "bogus"]),
    "unknown_option_init_path": (
        "train.py",
        lambda tmp: [f"--init_path={_optimizer_file(tmp, 'o', options={'bogus': 1})}"],
        ["cw.npz", "bogus"]),
    "nan_weights_evaluate": (
        "evaluate.py",
        lambda tmp: [f"--path={_optimizer_file(tmp, 'o', weights={'linear/w': np.nan})}"],
        ["cw.npz", "NaN", "linear/w"]),
    "inf_weights_init_path": (
        "train.py",
        lambda tmp: ["--init_path=" + _optimizer_file(tmp, "o",
                                                      weights={"lstm_0/w_gates": np.inf})],
        ["cw.npz", "infinite", "lstm_0/w_gates"]),
    "nan_option_evaluate": (
        "evaluate.py",
        lambda tmp: [f"--path={_optimizer_file(tmp, 'o', options={'scale': float('nan')})}"],
        ["cw.npz", "scale", "not finite"]),
    "label_out_of_range": (
        "train.py", lambda tmp: ["--problem=mnist", "--data_dir=" + _mnist_dir(
            tmp, labels=np.r_[np.arange(49) % 10, 10].astype(np.uint8))],
        ["mnist.npz", "outside 0..9", "10"]),
    "float_labels": (
        "evaluate.py", lambda tmp: ["--problem=mnist", "--data_dir=" + _mnist_dir(
            tmp, labels=np.arange(50) % 10 + 0.5)],
        ["mnist.npz", "float64", "integers"]),
    "empty_npz": ("train.py", lambda tmp: ["--problem=mnist", f"--data_dir={_empty_npz(tmp)}"],
                  ["mnist.npz", "copy it again"]),
    "no_images_npz": (
        "train.py", lambda tmp: ["--problem=mnist", "--data_dir=" + _mnist_dir(
            tmp, images=np.zeros((0, 28, 28), np.uint8))],
        ["mnist.npz", "no images"]),
    "empty_idx": ("evaluate.py", lambda tmp: ["--problem=mnist", f"--data_dir={_empty_idx(tmp)}"],
                  ["train-images-idx3-ubyte", "too short"]),
    "selection_steps_too_long": (
        "train.py", lambda tmp: ["--selection_steps=5000000"],
        ["--selection_steps=5000000", "above 100000"]),
    "curriculum_too_long": (
        "train.py", lambda tmp: ["--curriculum=100,2000000", "--unroll_length=20"],
        ["--curriculum=100,2000000", "above 100000"]),
    "unroll_length_too_long": (
        "train.py", lambda tmp: ["--unroll_length=100000", "--num_steps=100000"],
        ["--unroll_length=100000", "GB", "at most"]),
}


def _compare_locked(tmp, name="locked"):
  """A directory whose compare.lock a live process (this one) holds: a comparison running."""
  path = os.path.join(tmp, name)
  os.makedirs(path)
  with open(os.path.join(path, "compare.lock"), "w") as f:
    f.write(f"{os.getpid()} {socket.gethostname()}\n")
  return path


def _a_file(tmp):
  path = os.path.join(tmp, "a_file")
  with open(path, "w") as f:
    f.write("a file\n")
  return path


def _empty_npz(tmp):
  path = os.path.join(tmp, "empty")
  os.makedirs(path)
  open(os.path.join(path, "mnist.npz"), "wb").close()
  return path


def _empty_idx(tmp):
  path = os.path.join(tmp, "empty_idx")
  os.makedirs(path)
  for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
    open(os.path.join(path, name), "wb").close()
  return path


def _error_args(name, tmp):
  """The arguments of ERRORS case `name`, its files made under `tmp`."""
  script, args, _ = ERRORS[name]
  base, flags = ["--problem=quadratic", "--nojit_compile"], args(tmp)
  if script == "evaluate.py":
    base += ["--num_epochs=2", "--num_steps=10"]
    if any(flag.startswith("--output_dir") for flag in flags):
      base += ["--compare"]
  return [*base, *flags]


def _error_subprocess(script, args):
  """A case run as the CLI's own subprocess, to hold tests/cli_cases.py's result against."""
  start = time.monotonic()
  result = run_python(script, *args)
  return result, time.monotonic() - start


def _tf_config_port(tmp):
  del tmp
  config = {"cluster": {"worker": ["127.0.0.1:abc"]}, "task": {"type": "worker", "index": 0}}
  return run_cli(*TRAIN, "--strategy=multi_worker", "--num_epochs=1",
                 env=dict(ENV, TF_CONFIG=json.dumps(config))), 0.0


def _evaluate_diverging(tmp):
  del tmp
  return run_cli("evaluate.py", "--problem=quadratic", "--optimizer=sgd", "--learning_rate=1000",
                 "--num_epochs=2", "--num_steps=40", "--nojit_compile")


ALL_JOBS = dict(JOBS, tf_config_port=_tf_config_port, evaluate_diverging=_evaluate_diverging)
SUBPROCESS = "subprocess_"  # a job subprocess_<case>: ERRORS case <case> as a subprocess of its own


def start_background_jobs(items, submit, tmp_path_factory):
  """name -> Future of each job the selected tests (`items`) wait on; conftest starts them as the
  session starts (`submit`: its background pool's).

  The ERRORS cases of each script run in one process (conftest.run_cli_cases); each case's
  Future is picked from that batch's.
  """
  selected = set()
  for item in items:
    callspec = getattr(item, "callspec", None)
    selected.update(callspec.id.split("-") if callspec else [item.originalname[len("test_"):]])
  wanted = [name for name in ALL_JOBS if name in selected]
  errors = [name for name in ERRORS if name in selected]
  args = {name: _error_args(name, str(tmp_path_factory.mktemp(name))) for name in errors}
  # In the tests' order: a test waits TIMEOUT for its job, queued time included.
  futures = {name: submit(ALL_JOBS[name], str(tmp_path_factory.mktemp(name))) for name in wanted}
  for script in ("train.py", "evaluate.py"):
    cases = {name: args[name] for name in errors if ERRORS[name][0] == script}
    if cases:
      batch = submit(run_cli_cases, script, cases, str(tmp_path_factory.mktemp(script)))
      futures.update({name: picked(batch, name) for name in cases})
  for name in errors:
    if SUBPROCESS + name in selected:
      futures[SUBPROCESS + name] = submit(_error_subprocess, ERRORS[name][0], args[name])
  return futures


def _result(runs, name):
  assert name in runs, f"job {name} was not started"
  return runs[name].result(timeout=TIMEOUT)


def _one_error_line(result, script):
  """The one "error:" line of a failed run, after checking exit status 2 and no traceback."""
  tail = result.stderr[-3000:]
  assert result.returncode == 2, tail
  assert "Traceback" not in result.stderr + result.stdout, tail
  lines = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), tail
  assert len(lines[0]) < 400, lines[0]
  return lines[0]


@pytest.mark.parametrize("job", ["index_missing", "index_empty"])
def test_damaged_or_missing_index_resumes_from_the_checkpoint_files(runs, job):
  result, save = _result(runs, job)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Resuming from" in result.stderr and "ckpt-4 at epoch 4" in result.stderr, result.stderr
  assert "index" in result.stderr  # the warning says what was wrong
  assert _epoch(save) == 6
  # The rebuilt index lists the older checkpoints too, so the manager keeps rotating them.
  assert tf.train.get_checkpoint_state(os.path.join(save, "checkpoints")).all_model_checkpoint_paths


def test_trained_optimizer_without_checkpoints(runs):
  result, before, after = _result(runs, "trained_optimizer_without_checkpoints")
  line = _one_error_line(result, "train.py")
  assert "cw.npz" in line and "--overwrite" in line and "--init_path" in line
  assert after == before


def test_live_lock(runs):
  result, before, save = _result(runs, "live_lock")
  line = _one_error_line(result, "train.py")
  assert "in use" in line and str(os.getpid()) in line and "train.lock" in line
  assert _snapshot(save) == before  # nothing written: no run.json, lock untouched


def test_stale_lock(runs):
  result, _, save = _result(runs, "stale_lock")
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.isfile(os.path.join(save, "cw.npz"))
  assert not os.path.exists(os.path.join(save, "train.lock"))  # released at the end


def test_signals_during_stop(runs):
  returncode, stderr, lock, pid, save = _result(runs, "signals_during_stop")
  assert lock.split()[0] == str(pid)  # held while running
  assert returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-2000:]
  # Signals pending together reach Python in signal-number order: SIGINT may act first.
  assert "SIGTERM: saving a checkpoint" in stderr or "SIGINT: saving a checkpoint" in stderr
  assert _epoch(save) >= 4
  assert not os.path.exists(os.path.join(save, "train.lock"))


def test_disk_full_checkpoint(runs):
  result, before, save = _result(runs, "disk_full_checkpoint")
  line = _one_error_line(result, "train.py")
  assert "cannot write a checkpoint" in line and "ckpt-8" in line and "File too large" in line
  after = _snapshot(save)
  assert {k: v for k, v in after.items() if k in before} == before
  assert not [name for name in after if "ckpt-10" in name]  # no half-written checkpoint left


def test_disk_full_best(runs):
  result, before, save = _result(runs, "disk_full_best")
  line = _one_error_line(result, "train.py")
  assert "cannot write the best optimizer" in line and "No space left" in line
  after = _snapshot(save)
  assert after["cw.npz"] == before["cw.npz"]
  assert after["checkpoints/ckpt-4.index"] == before["checkpoints/ckpt-4.index"]


@pytest.mark.parametrize("job", ["run_json_deleted"])
def test_a_resume_without_run_json_is_refused(runs, job):
  result, before, save = _result(runs, job)
  line = _one_error_line(result, "train.py")
  assert "holds checkpoints but no run.json" in line and "--overwrite" in line
  assert _snapshot(save) == before  # nothing rewritten: not run.json, not the checkpoints


@pytest.mark.parametrize("job", ["data_swapped"])
def test_a_resume_on_changed_data_is_refused(runs, job):
  result, before, save = _result(runs, job)
  line = _one_error_line(result, "train.py")
  assert "holds a run with other settings" in line and "the data (its files changed" in line
  assert _snapshot(save) == before


@pytest.mark.parametrize("job", ["train_stopped_mid_epoch"])
def test_a_stop_during_an_epoch_is_acted_on_within_seconds(runs, job):
  returncode, seconds, stderr, save = _result(runs, job)
  assert returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr and "SIGTERM: saving a checkpoint at epoch 0" in stderr
  # The epoch has 10,000 unrolls: the checkpoint at epoch 0 shows the stop came inside it, and
  # the bound, loose enough for a loaded machine, that it was not deferred by minutes.
  assert seconds < 60, seconds
  assert _epoch(save) == 0


def test_damaged_run_json(runs):
  for result, before, after in _result(runs, "damaged_run_json"):
    line = _one_error_line(result, "train.py")
    assert "run.json" in line and "--overwrite" in line
    assert after == before


def test_compare_interrupted(runs):
  returncode, output, kept, rerun, out = _result(runs, "compare_interrupted")
  assert returncode == 130, output[-2000:]
  assert "Traceback" not in output and "SIGINT" in output, output[-2000:]
  # Every rate scored before the signal is kept, whether or not its baseline's sweep had ended.
  assert kept["scores"] and "run the same command" in output
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "Reusing the" in rerun.stderr, rerun.stderr[-2000:]
  with open(os.path.join(out, "tuning.json")) as f:
    final = json.load(f)
  for name, scores in kept["scores"].items():
    for rate, score in scores.items():
      assert final["scores"][name][rate] == score
  with open(os.path.join(out, "summary.json")) as f:
    rates = json.load(f)["learning_rates"]
  for name, rate in kept["rates"].items():
    assert rates[name] == rate


def _strict_json(path):
  def refuse(constant):
    raise AssertionError(f"{path} holds {constant}, which is not JSON")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_compare_diverging(runs):
  result, out = _result(runs, "compare_diverging")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "| L2L | learned | diverged" in result.stdout, result.stdout
  assert "nan ±" not in result.stdout
  assert "non-finite loss" in result.stderr
  summary = _strict_json(os.path.join(out, "summary.json"))
  assert summary["final_loss"]["L2L"]["10"]["mean"] is None
  assert summary["final_loss"]["adam"]["10"]["mean"] > 0
  assert summary["paired_difference"]["adam"]["10"]["mean"] is None  # diverged, run by run too


def test_compare_write_fails(runs):
  result, before, after = _result(runs, "compare_write_fails")
  line = _one_error_line(result, "evaluate.py")
  assert "cannot write" in line and "loss.png" in line and "File too large" in line, line
  assert "table.md, summary.json, losses.csv, loss.png are intact" in line, line
  assert "| L2L | learned |" in result.stdout  # the table is printed before the writes
  # The earlier set whole: nothing truncated, nothing new beside it, no partial file left.
  assert {k: v for k, v in after.items() if k in before} == before
  assert sorted(after) == sorted([*before, "baseline_runs.npz", "tuning.json"]), sorted(after)


def test_compare_damaged_kept_files(runs):
  result, out = _result(runs, "compare_damaged_kept_files")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  runs_file = os.path.join(out, "baseline_runs.npz")
  assert f"{runs_file} cannot be read" in result.stderr and "moved it to" in result.stderr
  assert os.path.isfile(runs_file + ".damaged")
  assert "9 scores are NaN" in result.stderr and "tuned rates of adam" in result.stderr
  with open(os.path.join(out, "tuning.json")) as f:
    tuning = json.load(f)
  summary = _strict_json(os.path.join(out, "summary.json"))
  sgd = {float(rate): score for rate, score in tuning["scores"]["sgd"].items()}
  assert all(np.isfinite(score) for score in sgd.values()), sgd  # measured again, not NaN
  assert summary["learning_rates"]["sgd"] == min(sgd, key=sgd.get)
  assert np.isfinite(summary["learning_rates"]["adam"])
  _, testing = _compare_settings()
  kept = comparison_store.read_test_runs(runs_file, testing)
  assert sorted(kept) == sorted(evaluation.BASELINES)  # written again, whole
  for name, (rate, losses) in kept.items():
    assert rate == summary["learning_rates"][name]
    np.testing.assert_allclose(losses[:, 10].mean(), summary["final_loss"][name]["10"]["mean"],
                               rtol=1e-5)


def test_no_matplotlib(runs):
  result, out = _result(runs, "no_matplotlib")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  # Said before any work, and again at the end.
  assert result.stderr.index("pip install matplotlib") < result.stderr.index("Comparing on")
  assert "loss.png skipped" in result.stderr
  assert sorted(os.listdir(out)) == ["baseline_runs.npz", "losses.csv", "summary.json",
                                     "table.md", "tuning.json"]  # the earlier loss.png removed
  summary = _strict_json(os.path.join(out, "summary.json"))
  with open(os.path.join(out, "table.md")) as f:
    table = f.read()
  assert table.strip() in result.stdout and summary["learning_rates"].keys() == set(
      evaluation.BASELINES)
  curves = np.genfromtxt(os.path.join(out, "losses.csv"), delimiter=",", names=True)
  np.testing.assert_allclose(curves["L2L_mean"][10], summary["final_loss"]["L2L"]["10"]["mean"],
                             rtol=1e-5)


def test_compare_stopped_mid_sweep(runs):
  returncode, seconds, stderr, kept, after = _result(runs, "compare_stopped_mid_sweep")
  assert returncode == 130, stderr[-2000:]
  # A rate of rmsprop's sweep takes minutes: stopped within it (the bound, as in
  # test_evaluate_stopped, loose enough for a loaded machine).
  assert seconds < 30, seconds
  assert "SIGTERM: comparison stopped" in stderr and "Traceback" not in stderr, stderr[-2000:]
  assert after["rates"] == kept["rates"] and after["scores"] == kept["scores"]


def test_evaluate_stopped(runs):
  returncode, seconds, stderr = _result(runs, "evaluate_stopped")
  assert returncode == 130, stderr[-2000:]
  # The evaluation would have taken hours; the stop comes within a chunk once the steps are
  # compiled, but on a loaded machine the signal may come while they are still being traced
  # (5.7 s once, with the suite's other runs beside it).
  assert seconds < 30, seconds
  assert "SIGTERM: evaluation stopped after" in stderr and "Traceback" not in stderr


def test_evaluate_diverging(runs):
  result = _result(runs, "evaluate_diverging")
  assert result.returncode == 0, result.stderr[-2000:]
  line = [line for line in result.stderr.splitlines() if "Log Mean Final Error" in line][0]
  assert "-inf" not in line and "non-finite" in line and "diverged" in line, line


def test_tf_config_port(runs):
  result, _ = _result(runs, "tf_config_port")
  line = _one_error_line(result, "train.py")
  assert "127.0.0.1:abc" in line and "port" in line


@pytest.mark.parametrize("job", list(ERRORS))
def test_one_error_line(runs, job):
  script, _, words = ERRORS[job]
  result, seconds = _result(runs, job)
  line = _one_error_line(result, script)
  for word in words:
    assert word in line, line
  if "output_dir" in job:  # checked before the comparison: no progress line, no tuning
    assert "comparison " not in result.stderr and "tuning" not in result.stderr, seconds


# A file system case of each CLI also run as a subprocess of its own (the cases write nothing, so
# the two can share their inputs): tests/cli_cases.py, which runs ERRORS in one process, must give
# what the CLI's own process gives.
@pytest.mark.parametrize("job,subprocess_job", [
    (name, SUBPROCESS + name) for name in ("save_path_unwritable", "output_dir_in_use")])
def test_the_one_process_cases_end_as_their_own_process_does(runs, job, subprocess_job):
  (driven, _), (real, _) = _result(runs, job), _result(runs, subprocess_job)
  assert driven.returncode == real.returncode == 2, (driven.stderr, real.stderr)
  assert _one_error_line(driven, ERRORS[job][0]) == _one_error_line(real, ERRORS[job][0])
  assert driven.stderr.splitlines() == real.stderr.splitlines(), (driven.stderr, real.stderr)
  assert driven.stdout == real.stdout, (driven.stdout, real.stdout)


# --- The same checks in the library, in-process -------------------------------------------------

def test_log_error_text_never_reads_a_failure_as_perfect():
  from learning_to_learn import reporting
  assert reporting.log_error_text(100.0) == "2.00"
  for value in (float("nan"), float("inf")):
    text = reporting.log_error_text(value)
    assert "non-finite" in text and "-inf" not in text, text
  assert "exactly 0" in reporting.log_error_text(0.0)
  assert "negative" in reporting.log_error_text(-1.0)
  from learning_to_learn import results_summary
  summary = {"a": [1.0, float("nan")], "b": {"c": float("-inf")}}
  text = json.dumps(results_summary.finite_or_none(summary), allow_nan=False)
  assert json.loads(text) == {"a": [1.0, None], "b": {"c": None}}


def test_lock_held_then_released(tmp_path):
  from learning_to_learn import locking
  lock = locking.DirectoryLock(str(tmp_path))
  with pytest.raises(ValueError, match="in use by another run"):
    locking.DirectoryLock(str(tmp_path))
  lock.release()
  locking.DirectoryLock(str(tmp_path)).release()
  assert not os.listdir(tmp_path)


def test_keras_optimizer_refuses_more_memory_than_available(monkeypatch):
  from learning_to_learn import keras as l2l_keras
  from learning_to_learn import limits
  optimizer = l2l_keras.LearnedOptimizer(checkpoint="quadratic")
  monkeypatch.setattr(limits, "available_memory", lambda: 10**6)  # 1 MB left
  needed = 1000 * l2l_keras.BYTES_PER_PARAMETER / 2**20
  with pytest.raises(ValueError, match=rf"1,000 parameters .* needs about {needed:.1f} MB of memory "
                                       "but"):
    optimizer.build([tf.Variable(tf.zeros([1000]))])


@pytest.mark.parametrize("weights,options", [({"linear/w": np.nan}, None),
                                             (None, {"scale": float("inf")}),
                                             (None, {"bogus": 1})])
def test_keras_optimizer_refuses_bad_files(tmp_path, weights, options):
  from learning_to_learn import keras as l2l_keras
  path = _optimizer_file(str(tmp_path), "o", weights=weights, options=options)
  with pytest.raises(ValueError, match="cw.npz"):
    l2l_keras.LearnedOptimizer(checkpoint=path)
  network = l2l_keras.LearnedOptimizer(checkpoint="quadratic").get_config()["network"]
  network["weights"]["linear/b"] = [float("nan")]
  with pytest.raises(ValueError, match="NaN"):
    l2l_keras.LearnedOptimizer(checkpoint="quadratic", network=network)


def _idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_labels_are_checked_when_read(tmp_path):
  from learning_to_learn import datasets
  _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((20, 28, 28)))
  _idx(tmp_path / "train-labels-idx1-ubyte", np.r_[np.arange(19) % 10, 12])
  with pytest.raises(ValueError, match=r"1 label\(s\) outside 0..9 \(first: 12 at index 19\)"):
    datasets.load_mnist(str(tmp_path))
