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
- keras_train_step(model, optimizer, x, y): a user's compiled training step, outside model.fit.
- run_cli_cases(script, cases, directory): bad-input cases of train.py or evaluate.py, all in one
  process (tests/cli_cases.py); each case's result as a subprocess of its own would give it.
- run_cli(script, *args, ...), start_cli(script, *args, ...): `python train.py ARGS` (or
  evaluate.py) as run_python and start_python give it, in a process forked from one that imported
  TensorFlow once (tests/forkserver.py); for everything but what happens at import.
- background_jobs(module), at_full_priority(job): a module's jobs started as the session starts;
  at_this_threads_priority(kwargs): subprocess's arguments for a process a job starts itself.

Background jobs: the in-process tests keep about one core busy (tracing is one Python thread), so
a module whose tests wait on processes of their own (train.py runs, say) defines
`start_background_jobs(items, submit, tmp_path_factory)`; the session calls it before the first
test, its processes run at low priority (nice BACKGROUND_NICE) on what the in-process tests leave
idle, and its tests that take the `runs` fixture (job name -> Future) go last, to find their jobs
done. A module whose jobs are few and long sets BACKGROUND_FIRST to have them start ahead.
"""

import atexit
import json
import concurrent.futures
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

# absl's TestCase helpers (create_tempdir) read flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()

TIMEOUT = 600  # seconds a subprocess may run before its test fails
BACKGROUND_NICE = 10  # a background job's processes: the cores go to the tests in front first
BACKGROUND_WORKERS = 4  # background jobs at once
_LOCAL = threading.local()  # .nice: the niceness of the processes this thread starts


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
                        text=True, timeout=timeout, **at_this_threads_priority(kwargs))


def start_python(*args, cwd=ROOT, env=None, **kwargs):
  """Starts `python *args` as `run_python` runs it, without waiting: the subprocess.Popen, its
  stdout and stderr text pipes unless `kwargs` (subprocess.Popen's) say otherwise."""
  kwargs.setdefault("stdout", subprocess.PIPE)
  kwargs.setdefault("stderr", subprocess.PIPE)
  kwargs.setdefault("text", True)
  return subprocess.Popen([sys.executable, *args], cwd=cwd,
                          env=environment() if env is None else env,
                          **at_this_threads_priority(kwargs))


def _niceness():
  """The niceness of the processes this thread starts: BACKGROUND_NICE in a background job."""
  return getattr(_LOCAL, "nice", 0)


def at_this_threads_priority(kwargs):
  """subprocess's `kwargs` with the child lowering its priority as this thread's jobs do."""
  nice = _niceness()
  if not nice:
    return kwargs
  before = kwargs.get("preexec_fn")

  def preexec():
    os.nice(nice)
    if before is not None:
      before()

  return dict(kwargs, preexec_fn=preexec)


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


def keras_train_step(model, optimizer, x, y, jit_compile=False):
  """A compiled custom training step of `model` by `optimizer` on (x, y), mean squared error, as a
  user writes one outside model.fit: a tf.function that returns the step's loss."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(jit_compile=jit_compile)
  def step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x) - y))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    return loss

  return step


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


# --- The CLIs forked from a process that imported TensorFlow once (tests/forkserver.py) ---------

CAPTURE = "capture"  # start_cli's stdout/stderr: kept, for communicate() to return
_SERVER = {}
_SERVER_LOCK = threading.Lock()


def _forkserver_socket():
  """The socket of this test session's fork server, started on first use."""
  with _SERVER_LOCK:
    if "socket" not in _SERVER:
      directory = tempfile.mkdtemp(prefix="l2l-forkserver-")
      path = os.path.join(directory, "socket")
      script = os.path.join(ROOT, "tests", "forkserver.py")
      server = subprocess.Popen([sys.executable, script, path], cwd=ROOT, env=environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      line = server.stdout.readline()
      assert line == "ready\n", f"the fork server did not start: {line}{server.stderr.read()}"

      def stop():
        server.kill()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)

      atexit.register(stop)
      _SERVER.update(socket=path, server=server)
    return _SERVER["socket"]


class CliProcess:
  """A CLI the fork server started: the parts of subprocess.Popen the tests use (pid, poll, wait,
  send_signal, kill, communicate, returncode)."""

  def __init__(self, script, args, cwd, env, stdout, stderr, fsize):
    self.args = [script, *args]
    self.returncode = None
    self._scratch = tempfile.mkdtemp(prefix="l2l-cli-")
    self._captured = {}
    paths = {}
    for name, target in (("stdout", stdout), ("stderr", stderr)):
      if target == CAPTURE:
        target = self._captured[name] = os.path.join(self._scratch, name)
      if target is not None:
        open(target, "w").close()  # there from the start, as a file given to Popen is
      paths[name] = target
    self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    self._connection.connect(_forkserver_socket())
    request = {"script": script, "args": list(args), "cwd": cwd, "env": env, "fsize": fsize,
               "nice": _niceness(), **paths}
    self._connection.sendall(json.dumps(request).encode() + b"\n")
    self._buffer = b""
    self.pid = self._message()["pid"]

  def _message(self, timeout=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while b"\n" not in self._buffer:
      left = None if deadline is None else max(0.0, deadline - time.monotonic())
      if not select.select([self._connection], [], [], left)[0]:
        raise subprocess.TimeoutExpired(self.args, timeout)
      chunk = self._connection.recv(4096)
      assert chunk, "the fork server went away"
      self._buffer += chunk
    line, self._buffer = self._buffer.split(b"\n", 1)
    return json.loads(line)

  def poll(self):
    if self.returncode is None:
      try:
        self.wait(timeout=0)
      except subprocess.TimeoutExpired:
        pass
    return self.returncode

  def wait(self, timeout=None):
    if self.returncode is None:
      self.returncode = self._message(timeout)["returncode"]
      self._connection.close()
    return self.returncode

  def send_signal(self, signum):
    if self.poll() is None:
      os.kill(self.pid, signum)

  def kill(self):
    self.send_signal(signal.SIGKILL)

  def communicate(self, timeout=None):
    """Waits for the end; (stdout, stderr) as text where captured, else None."""
    self.wait(timeout)
    texts = []
    for name in ("stdout", "stderr"):
      if name in self._captured:
        with open(self._captured[name], encoding="utf-8", errors="replace") as f:
          texts.append(f.read())
      else:
        texts.append(None)
    shutil.rmtree(self._scratch, ignore_errors=True)
    return tuple(texts)


def start_cli(script, *args, cwd=ROOT, env=None, stdout=CAPTURE, stderr=CAPTURE, fsize=None):
  """Starts `python script *args` (train.py or evaluate.py) as start_python would, forked from
  the fork server: a CliProcess. stdout and stderr: CAPTURE, a file's path, or None (discarded);
  fsize: the process's RLIMIT_FSIZE in bytes (a disk that fills), or None."""
  assert os.path.basename(script) in ("train.py", "evaluate.py"), script
  server_env = environment()  # the fork server's
  env = server_env if env is None else env
  for name in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):  # read as TensorFlow loads
    assert env.get(name) == server_env.get(name), f"{name} needs a process of its own"
  return CliProcess(script, args, cwd, env, stdout, stderr, fsize)


def run_cli(script, *args, cwd=ROOT, env=None, timeout=TIMEOUT, fsize=None):
  """Runs `python script *args` (train.py or evaluate.py) to its end as run_python would, forked
  from the fork server: the subprocess.CompletedProcess, stdout and stderr as text."""
  process = start_cli(script, *args, cwd=cwd, env=env, fsize=fsize)
  try:
    stdout, stderr = process.communicate(timeout=timeout)
  finally:
    if process.returncode is None:
      process.kill()
      process.wait()
  return subprocess.CompletedProcess([script, *args], process.returncode, stdout, stderr)


# --- Jobs started as the session starts, run beside the in-process tests ------------------------

_BACKGROUND = {}  # module name -> {job name -> Future}


def _waits_on_background(item):
  module = getattr(item, "module", None)
  return (hasattr(module, "start_background_jobs")
          and "runs" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(session, config, items):
  """The tests that wait on background jobs go last, each module's in its own order."""
  del session, config
  late = [item for item in items if _waits_on_background(item)]
  if late:
    items[:] = [item for item in items if not _waits_on_background(item)] + late


def _lower_this_threads_priority():
  _LOCAL.nice = BACKGROUND_NICE


@pytest.fixture(scope="session", autouse=True)
def _background(request, tmp_path_factory):
  """Starts every selected module's background jobs before the first test."""
  by_module = {}
  for item in request.session.items:
    if _waits_on_background(item):
      by_module.setdefault(item.module, []).append(item)
  if not by_module:
    yield
    return
  pool = concurrent.futures.ThreadPoolExecutor(BACKGROUND_WORKERS,
                                               initializer=_lower_this_threads_priority)
  try:
    # Modules whose jobs are few and long (BACKGROUND_FIRST) first, so that none is left to wait on
    # at the end; then in the tests' order.
    for module, items in sorted(by_module.items(),
                                key=lambda pair: not getattr(pair[0], "BACKGROUND_FIRST", False)):
      _BACKGROUND[module.__name__] = module.start_background_jobs(items, pool.submit,
                                                                  tmp_path_factory)
    yield
  finally:
    for futures in _BACKGROUND.values():
      for future in futures.values():
        future.cancel()
    _BACKGROUND.clear()
    pool.shutdown(wait=True)


def background_jobs(module):
  """job name -> Future of each job `module` started as the session started."""
  assert module.__name__ in _BACKGROUND, f"{module.__name__}'s background jobs were not started"
  return _BACKGROUND[module.__name__]


@pytest.fixture(scope="module")
def runs(request):
  """job name -> Future of each job the test's module started as the session started (a module
  may define its own `runs` over these)."""
  return background_jobs(request.module)


def at_full_priority(job):
  """`job`, whose processes a background thread starts at normal priority: for a job that times
  them (how soon a stop is acted on), which must not wait for the tests in front."""

  def run(*args, **kwargs):
    nice, _LOCAL.nice = _niceness(), 0
    try:
      return job(*args, **kwargs)
    finally:
      _LOCAL.nice = nice

  return run
