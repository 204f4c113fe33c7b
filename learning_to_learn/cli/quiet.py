"""Keeps the command-line tools' console output to our own lines, unless --verbosity asks for more.

TensorFlow writes from C++ as it loads (oneDNN, CPU features), again when XLA starts, and Python
libraries log through absl and warn (TensorFlow's checkpoint writer logs a line per save). Without
--verbosity the tools show only the package's own messages, warnings and errors, and one progress
bar per long job; with --verbosity (absl's flag, any value) everything is as TensorFlow and absl
leave it.
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings

from absl import flags
from absl import logging as absl_logging

from learning_to_learn import console



def verbosity_requested(argv):
  """Whether argv sets absl's --verbosity (or -v): read before absl parses the flags."""
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg.startswith("-") and arg.lstrip("-").split("=")[0] in ("verbosity", "v"):
      return True
  return False


@contextlib.contextmanager
def _stderr_aside():
  """Sends file descriptor 2 to a scratch file, and plays it back if the block fails.

  TensorFlow 2.21 prints its oneDNN notice through absl's C++ logging before it reads
  TF_CPP_MIN_LOG_LEVEL, so no setting hides it; it comes only while TensorFlow loads.
  """
  try:
    saved = os.dup(2)
  except OSError:  # no stderr to hold aside
    yield
    return
  with tempfile.TemporaryFile() as scratch:
    sys.stderr.flush()
    os.dup2(scratch.fileno(), 2)
    try:
      yield
    except BaseException:
      sys.stderr.flush()
      os.dup2(saved, 2)
      scratch.seek(0)
      os.write(2, scratch.read())
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def import_tensorflow(argv=None):
  """Imports TensorFlow quietly, unless argv asks for detail: call before anything imports it."""
  if verbosity_requested(sys.argv if argv is None else argv):
    return
  # Hides TensorFlow's C++ information and warnings (XLA's start-up lines among them), not errors.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  with _stderr_aside():
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def configure_logging():
  """After absl has parsed the flags: our lines only, plainly, unless --verbosity was given."""
  if flags.FLAGS["verbosity"].present:
    return
  if not sys.warnoptions:  # python -W or PYTHONWARNINGS still decide
    warnings.simplefilter("ignore")
  absl_logging.set_verbosity(absl_logging.INFO)
  # TensorFlow's Python logger writes through a handler of its own when it loads before absl's;
  # without it its records reach the root logger, where the filter drops them.
  for handler in list(logging.getLogger("tensorflow").handlers):
    logging.getLogger("tensorflow").removeHandler(handler)
  console.install(console.FromPackage())
