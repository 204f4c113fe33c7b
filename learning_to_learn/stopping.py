"""Ctrl-C and SIGTERM as a request to stop cleanly: save what is done, then leave.

The first SIGINT or SIGTERM is recorded, and the loop raises `Stop` at its next safe point
(`check()`, between epochs) so it can save and exit. The handler itself never raises: an exception
raised inside TensorFlow's or NumPy's C code surfaces as a SystemError, not as Stop. Every later
signal is ignored, because a person pressing Ctrl-C twice (or a scheduler sending SIGTERM again)
must not cut short the save the first one started. At exit the signals are set to SIG_IGN: Python
restores the default handlers while it shuts down, and a late Ctrl-C would kill the process then.
(Not earlier: switching to SIG_IGN with a signal pending makes Python print a race warning.)
"""

import atexit
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(Exception):
  """Raised by `check()` after the first stop signal; str() is the signal's name."""


class StopOnSignal:
  """Context manager: SIGINT and SIGTERM make `check()` raise Stop; the old handlers come back."""

  def __init__(self):
    self.stopping = None  # the first signal's name once one arrived
    self._raised = False
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.stopping is None:
      self.stopping = signal.Signals(signum).name

  def check(self):
    """Raises Stop once if a stop signal arrived: call it where stopping loses nothing."""
    if self.stopping is not None and not self._raised:
      self._raised = True
      raise Stop(self.stopping)

  def hold(self):
    """From now on signals are ignored: what is left is saving finished work."""
    if self.stopping is None:
      self.stopping, self._raised = "held", True

  def __enter__(self):
    for signum in SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    if self.stopping is None:  # once stopping, later signals stay ignored until the process ends
      for signum, handler in self._previous.items():
        signal.signal(signum, handler)
    return False


def _ignore_signals():
  for signum in SIGNALS:
    signal.signal(signum, signal.SIG_IGN)


def install():
  """StopOnSignal for the rest of the process (a CLI's main loop): returns it, already entered."""
  handler = StopOnSignal()
  handler.__enter__()
  atexit.register(_ignore_signals)
  return handler
