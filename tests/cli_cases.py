"""Runs many bad-input cases of one CLI in one process: `python tests/cli_cases.py SCRIPT CASES OUT`.

SCRIPT is train or evaluate; CASES a JSON file of case name -> the CLI's arguments (argv without
the program); OUT the JSON file this writes, case name -> {"returncode", "stdout", "stderr",
"seconds"}, each as a subprocess of `python SCRIPT.py ARGS` would have given them.

A subprocess of the CLI spends ~7 s of CPU importing TensorFlow before it reads its first flag;
the tests have dozens of cases that fail on that flag. Here TensorFlow and the CLI's module load
once, and each case runs the entry point itself (`cli.train_main`, `cli.evaluate_main`: absl's
app.run of the CLI's main, flags parsed from sys.argv):
- the flags go back to their defaults first (FLAGS.unparse_flags), so that no case sees a flag
  another case set;
- sys.argv[0] is the script's name, which the error line starts with;
- file descriptors 1 and 2 go to scratch files, so that everything the case writes is kept, in
  order: print and sys.stderr, logging handlers that hold the stream they were made with
  (absl's), warnings, and TensorFlow's C++ output;
- SystemExit (app.run's sys.exit(main(argv)), or its exit 1 on a flag it cannot parse) gives the
  exit status as Python would turn it into one, and an exception that escapes gives its
  traceback and status 1, as the interpreter would print and exit.

Only for cases whose whole effect is their output and exit status: a case that needs a process of
its own (signals, rlimits, an environment of its own, a lock or any state meant to outlive the
case) runs as a subprocess. tests/test_cli.py checks this driver against true subprocesses.
This file is no test module (no test_ prefix): pytest does not collect it.
"""

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"train": "train_main", "evaluate": "evaluate_main"}


def exit_status(code):
  """The exit status of a process that raised SystemExit(code), and what Python prints for it."""
  if code is None:
    return 0, ""
  if isinstance(code, int):
    return code & 0xFF, ""
  return 1, f"{code}\n"


@contextlib.contextmanager
def captured_output():
  """Sends file descriptors 1 and 2 to scratch files for the block; yields {} that then holds
  "stdout" and "stderr", the text written to each."""
  text = {}
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      yield text
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      for fd, copy in saved.items():
        os.dup2(copy, fd)
        os.close(copy)
      for name, scratch in (("stdout", out), ("stderr", err)):
        scratch.seek(0)
        text[name] = scratch.read().decode("utf-8", "replace")


def run_case(entry_point, script, args):
  """One case: the entry point on `script args`, as a fresh process would run it."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.FLAGS.unparse_flags()  # every flag at its default, none marked present
  sys.argv = [script, *args]
  start = time.monotonic()
  with captured_output() as text:
    try:
      entry_point()
      returncode = 0
    except SystemExit as e:
      returncode, message = exit_status(e.code)
      sys.stderr.write(message)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      returncode = 1
  return {"returncode": returncode, "stdout": text["stdout"], "stderr": text["stderr"],
          "seconds": time.monotonic() - start}


def main(argv):
  if len(argv) != 4 or argv[1] not in SCRIPTS:
    sys.exit(f"usage: {argv[0]} {'|'.join(SCRIPTS)} CASES.json OUT.json")
  name, cases_path, out_path = argv[1:]
  with open(cases_path) as f:
    cases = json.load(f)
  sys.path[0] = ROOT  # as for `python train.py` from the repository root
  script = f"{name}.py"
  from learning_to_learn import cli  # pylint: disable=import-outside-toplevel
  from learning_to_learn.cli import quiet  # pylint: disable=import-outside-toplevel
  quiet.import_tensorflow([script])
  importlib.import_module(f"learning_to_learn.cli.{name}")
  entry_point = getattr(cli, SCRIPTS[name])
  results = {case: run_case(entry_point, script, args) for case, args in cases.items()}
  with open(out_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv)
