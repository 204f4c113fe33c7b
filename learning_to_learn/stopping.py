"""Ctrl-C and SIGTERM as a request to stop cleanly: save what is done, then leave.

The first SIGINT or SIGTERM raises `Stop` where the program is, so the loop can save and exit;
every later one is noted and ignored, because a person pressing Ctrl-C twice (or a scheduler
sending SIGTERM again) must not cut short the save the first one started.
"""

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(Exception):
  """Raised by the first stop signal; str() is the signal's name."""


class StopOnSignal:
  """Context manager: SIGINT and SIGTERM raise Stop once inside it; the old handlers come back."""

  def __init__(self):
    self.stopping = None  # the first signal's name once one arrived
    self.ignored = 0  # signals that arrived while stopping
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.stopping is not None:
      self.ignored += 1
      return
    self.stopping = signal.Signals(signum).name
    raise Stop(self.stopping)

  def hold(self):
    """From now on signals are counted, not raised: what is left is saving finished work."""
    if self.stopping is None:
      self.stopping = "held"

  def __enter__(self):
    for signum in SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    if self.stopping is None:  # once stopping, later signals stay ignored until the process ends
      for signum, handler in self._previous.items():
        signal.signal(signum, handler)
    return False


def install():
  """StopOnSignal for the rest of the process (a CLI's main loop): returns it, already entered."""
  handler = StopOnSignal()
  handler.__enter__()
  return handler
