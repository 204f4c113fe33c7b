"""Runs the CLIs as processes of their own without importing TensorFlow for each: a fork server.

`python tests/forkserver.py SOCKET` imports TensorFlow and the library once, prints "ready", and
then serves, on the Unix socket SOCKET, one request a connection: a JSON line {"script": train.py
or evaluate.py (a path to either), "args": [...], "cwd", "env", "stdout", "stderr" (paths, or
null for /dev/null), "fsize" (an RLIMIT_FSIZE in bytes, or null), "nice" (an increment of the
child's niceness, or 0)}. It forks; the child becomes
`python SCRIPT ARGS` run in `cwd` with `env`, its file descriptors 1 and 2 on those files, and
exits with the status that process would have; the server answers {"pid": ...} at once and
{"returncode": ...} (negative for a signal, as subprocess gives it) when the child ends.

A child is a process of its own, as the tests need: signals reach it by its pid, its rlimits, locks
and files are its own, and a resume is a new process. What it does not repeat is the ~7 s of CPU
each CLI spends importing TensorFlow before it reads a flag. So what happens at import (the
start-up lines the CLIs keep quiet, a library that is missing) is only seen by a true subprocess:
the tests of those keep using one, and tests/test_cli.py holds a forked run against one.

The server never runs a TensorFlow op itself (TensorFlow starts its thread pools on the first op,
and a forked child would inherit them without their threads), and it serves from one thread, so
that the fork copies no thread holding a lock. The CLIs' modules are imported in the child: their
flags overlap, so the two cannot share one process. This file is no test module (no test_ prefix).
"""

import atexit
import ctypes
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback

from cli_cases import exit_status  # this directory is sys.path[0]: a script's own

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = {"train.py": "train_main", "evaluate.py": "evaluate_main"}
PRELOADED = ("training", "meta", "evaluation", "comparison_store", "reporting", "results_summary",
             "distribute", "optimizer_files", "problems", "keras_problems", "task_family",
             "datasets", "configs")


def _redirect(fd, path):
  target = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(target, fd)
  os.close(target)


def _die_with_parent():
  """SIGKILL once the parent ends (Linux's PR_SET_PDEATHSIG): no run outlives the tests."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def _child(request):
  """Becomes `python SCRIPT ARGS` as the request asks; never returns."""
  code = 1
  try:
    _die_with_parent()
    if request.get("nice"):
      os.nice(request["nice"])
    if request.get("fsize") is not None:
      resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _redirect(1, request["stdout"])
    _redirect(2, request["stderr"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = ROOT  # as for `python train.py` from the repository root
    cli = importlib.import_module("learning_to_learn.cli")
    try:
      getattr(cli, ENTRY_POINTS[os.path.basename(script)])()
      code = 0
    except SystemExit as e:
      code, message = exit_status(e.code)
      sys.stderr.write(message)
    except KeyboardInterrupt:
      traceback.print_exc()
      atexit._run_exitfuncs()  # pylint: disable=protected-access
      sys.stdout.flush()
      sys.stderr.flush()
      signal.signal(signal.SIGINT, signal.SIG_DFL)  # as the interpreter ends on one: by SIGINT
      os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      code = 1
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    sys.stdout.flush()
    sys.stderr.flush()
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
  finally:
    os._exit(code)  # pylint: disable=protected-access


def _read_request(connection):
  data = b""
  while not data.endswith(b"\n"):
    chunk = connection.recv(65536)
    if not chunk:
      return None
    data += chunk
  return json.loads(data)


def serve(path):
  """Accepts requests on the socket at `path` until this process is killed, or its parent (the
  test process) ends: then its runs are killed too, so none outlives a test that left it."""
  parent = os.getppid()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(path)
  listener.listen(64)
  print("ready", flush=True)
  children = {}  # pid -> the connection waiting for its status
  while os.getppid() == parent:
    readable, _, _ = select.select([listener], [], [], 0.02)
    if readable:
      connection, _ = listener.accept()
      request = _read_request(connection)
      if request is None:
        connection.close()
        continue
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        listener.close()
        connection.close()
        _child(request)
      children[pid] = connection
      connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    while children:
      pid, status = os.waitpid(-1, os.WNOHANG)
      if pid == 0:
        break
      connection = children.pop(pid, None)
      if connection is not None:
        try:
          connection.sendall(
              json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        except OSError:  # the test that asked has gone
          pass
        connection.close()
  for pid in children:
    os.kill(pid, signal.SIGKILL)


def main(argv):
  if len(argv) != 2:
    sys.exit(f"usage: {argv[0]} SOCKET")
  sys.path[0] = ROOT
  from learning_to_learn.cli import quiet  # pylint: disable=import-outside-toplevel
  quiet.import_tensorflow(["forkserver"])
  for name in PRELOADED:
    importlib.import_module(f"learning_to_learn.{name}")
  import sonnet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  serve(argv[1])


if __name__ == "__main__":
  main(sys.argv)
