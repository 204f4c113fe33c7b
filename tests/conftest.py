"""Test setup, and the helpers every test file shares.

Setup: the repository root on sys.path (for problems.py and the CLIs), quiet TF logs.

Helpers, imported as `from conftest import ROOT, run_python`: pytest puts this directory on sys.path
to import this file (tests/ is no package), so a test file finds it by that name.
- ROOT: the repository root.
- environment(**changes): the environment a test's subprocess runs in.
- run_python(*args, ...): `python *args` run to completion; returns the CompletedProcess.
- start_python(*args, ...): `python *args` started in the background; returns the Popen.
- picked(batch, name): a Future of one entry of a Future's dict result.
- rule_updates(rule, gradients): an update rule's updates over gradients in turn.
- random_lstm_weights(seed): every weight of a 20-20 LSTM rule with 2 input features, random.
- run_cli_cases(script, cases, directory): bad-input cases of train.py or evaluate.py, all in one
  process (tests/cli_cases.py); each case's result as a subprocess of its own would give it.
"""

import json
import concurrent.futures
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

# absl's TestCase helpers (create_tempdir) read flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()

TIMEOUT = 600  # seconds a subprocess may run before its test fails


def environment(**changes):
  """This process's environment with the repository importable from any directory, TensorFlow's
  C++ logs quiet and no GPU (the tests' numbers are those of the CPU); `changes` set variables,
  and a value of None removes one."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  for name, value in changes.items():
    if value is None:
      env.pop(name, None)
    else:
      env[name] = value
  return env


def run_python(*args, cwd=ROOT, env=None, timeout=TIMEOUT, **kwargs):
  """Runs `python *args` (a script and its flags, `-c` code, or `-m` a module) to its end.

  Args:
    *args: the interpreter's arguments; the interpreter is this one (sys.executable).
    cwd: the working directory, the repository root unless given.
    env: the environment, `environment()` unless given.
    timeout: seconds before subprocess.TimeoutExpired fails the test.
    **kwargs: more of subprocess.run's arguments (check=True, preexec_fn=...).

  Returns:
    the subprocess.CompletedProcess, its stdout and stderr as text, whatever its exit status
    (unless check=True): the test asserts on it.
  """
  kwargs.setdefault("check", False)
  return subprocess.run([sys.executable, *args], cwd=cwd,
                        env=environment() if env is None else env, capture_output=True,
                        text=True, timeout=timeout, **kwargs)


def start_python(*args, cwd=ROOT, env=None, **kwargs):
  """Starts `python *args` as `run_python` runs it, without waiting: the subprocess.Popen, its
  stdout and stderr text pipes unless `kwargs` (subprocess.Popen's) say otherwise."""
  kwargs.setdefault("stdout", subprocess.PIPE)
  kwargs.setdefault("stderr", subprocess.PIPE)
  kwargs.setdefault("text", True)
  return subprocess.Popen([sys.executable, *args], cwd=cwd,
                          env=environment() if env is None else env, **kwargs)


def run_cli_cases(script, cases, directory, timeout=TIMEOUT):
  """Runs each case of `script` (train.py or evaluate.py) in one process of tests/cli_cases.py,
  which imports TensorFlow once for all of them rather than once a case.

  Args:
    script: "train.py" or "evaluate.py".
    cases: case name -> the script's arguments (a list of str).
    directory: where the cases' and results' JSON files go.
    timeout: seconds before subprocess.TimeoutExpired fails the test.

  Returns:
    case name -> (subprocess.CompletedProcess of `python script *args`, as that subprocess would
    have ended: exit status, stdout and stderr; seconds the case took).
  """
  name = script[:-len(".py")]
  cases_path = os.path.join(directory, f"{name}_cases.json")
  results_path = os.path.join(directory, f"{name}_results.json")
  with open(cases_path, "w") as f:
    json.dump(cases, f)
  driver = run_python(os.path.join(ROOT, "tests", "cli_cases.py"), name, cases_path,
                      results_path, timeout=timeout)
  assert driver.returncode == 0, driver.stderr[-3000:]
  with open(results_path) as f:
    results = json.load(f)
  assert sorted(results) == sorted(cases), driver.stderr[-3000:]
  return {case: (subprocess.CompletedProcess([script, *cases[case]], result["returncode"],
                                             result["stdout"], result["stderr"]),
                 result["seconds"])
          for case, result in results.items()}


def picked(batch, name):
  """A Future of `batch`'s result[name], for a test that waits on one case of a batch's Future."""
  one = concurrent.futures.Future()

  def done(future):
    try:
      one.set_result(future.result()[name])
    except BaseException as e:  # pylint: disable=broad-except
      one.set_exception(e)

  batch.add_done_callback(done)
  return one


def rule_updates(rule, gradients, step=None):
  """The updates of an update rule (a networks module) over `gradients` in turn, from its initial
  state; `step` replaces the rule's call (say, the same under tf.function)."""
  import tensorflow as tf  # here: conftest is imported before any test, TensorFlow need not be
  step = step or rule
  state = rule.initial_state_for_inputs(tf.constant(gradients[0]))
  updates = []
  for g in gradients:
    update, state = step(tf.constant(g), state)
    updates.append(update.numpy())
  return updates


def random_lstm_weights(seed=0):
  """Normal(0, 0.3) weights for a 20-20 CoordinateWiseDeepLSTM with 2 input features, as its
  `initializer=`: every weight random, so updates and state depend on all of them."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  shapes = {"lstm_0": {"w_gates": (22, 80), "b_gates": (80,)},
            "lstm_1": {"w_gates": (40, 80), "b_gates": (80,)},
            "linear": {"w": (20, 1), "b": (1,)}}
  return {layer: {field: rng.normal(scale=0.3, size=shape).astype(np.float32)
                  for field, shape in fields.items()} for layer, fields in shapes.items()}
