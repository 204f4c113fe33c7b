"""A progress bar and message lines that share stderr without garbling each other.

On a terminal the bar is redrawn in place and every message is printed above it. Anywhere else (a
log file, a pipe, a test) the bar becomes a log line every few percent, since carriage returns
would fill a log with thousands of partial lines.
"""

import logging
import os
import shutil
import sys
import time

from absl import logging as absl_logging

_state = {"bar": None, "handler": None}  # the bar on screen; the LineHandler, once installed


def _stderr():
  return sys.stderr  # looked up at each write: tests and notebooks replace sys.stderr


def format_seconds(seconds):
  """1:05 for 65 s, 1:01:05 for 3665 s: the form a bar's times take."""
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineHandler(logging.Handler):
  """Writes each log record as one plain line on stderr, above the progress bar if one is drawn.

  Warnings and errors carry their level ("warning: ..."); information is the message alone, as a
  person reads it. absl's handler would prefix every line with a time, thread id and file.
  """

  def emit(self, record):
    try:
      text = record.getMessage()
      if record.levelno >= logging.WARNING:
        text = f"{record.levelname.lower()}: {text}"
      write_line(text)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class FromPackage(logging.Filter):
  """Passes this package's records, and errors from anywhere."""

  def filter(self, record):
    return (record.levelno >= logging.ERROR
            or os.path.abspath(record.pathname).startswith(PACKAGE_DIR + os.sep))


def show_package_lines():
  """In a plain Python program, where nothing shows information: this package's lines on stderr.

  A CLI (or a caller who set up logging) has a handler already; then nothing changes.
  """
  if _state["handler"] is None and not logging.getLogger().handlers:
    install(FromPackage())
    absl_logging.set_verbosity(absl_logging.INFO)


def install(handler_filter=None):
  """Sends the root logger's records to one LineHandler (with `handler_filter`), in place of absl's.

  Progress bars drawn after this update in place when stderr is a terminal.
  """
  root = logging.getLogger()
  for handler in list(root.handlers):
    root.removeHandler(handler)
  handler = LineHandler()
  if handler_filter is not None:
    handler.addFilter(handler_filter)
  root.addHandler(handler)
  _state["handler"] = handler
  return handler


def write_line(text):
  """Prints one line on stderr; a bar on screen is cleared first and drawn again below it."""
  stream = _stderr()
  bar = _state["bar"]
  if bar is not None:
    stream.write("\r\x1b[K")
  stream.write(text + "\n")
  if bar is not None:
    bar.draw()
  stream.flush()


class Progress:
  """The progress of one long job: how much is done, elapsed and remaining time, the latest note.

  The remaining time is extrapolated from the units done since this bar started: a resumed run
  that begins at epoch 500 of 1,000 is timed from epoch 500.

  Args:
    total: units of work in the job (epochs, runs).
    label: what the job is, e.g. "meta-training".
    percent_step: without a terminal, a line is logged each time this many percent more are done
      (default 5: at most 21 lines per job), and on the first and last update.
    interactive: redraw in place; default True when stderr is a terminal and `install` has run
      (under absl's own handler, its lines would break the bar).
  """

  def __init__(self, total, label, percent_step=5, interactive=None):
    self.total, self.label = max(int(total), 1), label
    self._percent_step = percent_step
    if interactive is None:
      interactive = _state["handler"] is not None and _stderr().isatty()
    self.interactive = interactive
    self._start = time.monotonic()
    self._initial = None
    self._done, self._note = 0, ""
    self._last_logged = None

  def text(self):
    """The bar's line without the bar itself: percent, count, times and the note."""
    done = self._done
    counted = done - (self._initial or 0)
    elapsed = time.monotonic() - self._start
    remaining = elapsed / counted * (self.total - done) if counted > 0 else None
    left = format_seconds(remaining) if remaining is not None else "?"
    note = f"  {self._note}" if self._note else ""
    return (f"{self.label} {100 * done // self.total:3d}% {done}/{self.total}  "
            f"elapsed {format_seconds(elapsed)}, remaining {left}{note}")

  def draw(self):
    """Redraws the bar in place on the terminal, cut to its width so it never wraps."""
    stream = _stderr()
    width = shutil.get_terminal_size((100, 24)).columns
    filled = int(20 * min(self._done / self.total, 1.0))
    line = f"[{'#' * filled}{'.' * (20 - filled)}] {self.text()}"
    stream.write("\r\x1b[K" + line[:width - 1])
    stream.flush()

  def update(self, done, note=""):
    """Records that `done` units are complete; `note` is shown after the times (a loss)."""
    if self._initial is None:
      # Updates come once per unit: the units before the first one were done before this bar.
      self._initial = max(int(done) - 1, 0)
    self._done, self._note = int(done), note
    if self.interactive:
      _state["bar"] = self
      self.draw()
      if self._done >= self.total:
        end_bar()
      return
    bucket = int(100 * self._done // (self._percent_step * self.total))
    if self._last_logged is None or bucket > self._last_logged:
      self._last_logged = bucket
      absl_logging.info(self.text())


def end_bar():
  """Ends the bar on screen, if any, with a newline, so that what follows starts a line."""
  if _state["bar"] is not None:
    _state["bar"] = None
    _stderr().write("\n")
    _stderr().flush()
