"""Test setup: the repository root on sys.path (for problems.py and the CLIs), quiet TF logs."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

# absl's TestCase helpers (create_tempdir) read flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()
