"""stopping: signals sent to this process, and what check() then does, step by step."""

import os
import signal

import pytest

from learning_to_learn import stopping


@pytest.fixture
def handlers():
  """The signal handlers before the test, put back after it whatever it left."""
  before = {signum: signal.getsignal(signum) for signum in stopping.SIGNALS}
  yield before
  for signum, handler in before.items():
    signal.signal(signum, handler)


def test_without_a_signal_check_passes_and_the_old_handlers_come_back(handlers):
  with stopping.StopOnSignal() as stop:
    assert signal.getsignal(signal.SIGTERM) != handlers[signal.SIGTERM]
    stop.check()
  assert stop.stopping is None
  assert {s: signal.getsignal(s) for s in stopping.SIGNALS} == handlers


def test_the_first_signal_raises_stop_once_and_later_ones_are_ignored(handlers):
  with stopping.StopOnSignal() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # a second signal: no KeyboardInterrupt, no new reason
    with pytest.raises(stopping.Stop, match="SIGTERM"):
      stop.check()
    stop.check()  # once only: the loop is saving now
  assert stop.stopping == "SIGTERM"
  # Stopping, the handlers stay: a late Ctrl-C must not cut the save short.
  assert signal.getsignal(signal.SIGINT) != handlers[signal.SIGINT]
  os.kill(os.getpid(), signal.SIGINT)


def test_hold_makes_every_later_signal_a_no_op(handlers):
  with stopping.StopOnSignal() as stop:
    stop.hold()
    os.kill(os.getpid(), signal.SIGINT)
    stop.check()
  assert stop.stopping == "held"
