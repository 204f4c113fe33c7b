"""Everything the CLIs show a person: progress, statistics, TensorBoard scalars. Nothing else logs."""

import sys
import time

from absl import logging
import numpy as np
import tensorflow as tf


def stats_lines(header, total_error, total_time, count):
  """The reference's statistics: log10 of the mean final error, and the mean epoch time."""
  mean_error = total_error / count
  log_error = np.log10(mean_error) if mean_error > 0 else float("-inf")
  return [header, f"Log Mean Final Error: {log_error:.2f}",
          f"Mean epoch time: {total_time / count:.2f} s"]


def print_stats(header, total_error, total_time, count):
  for line in stats_lines(header, total_error, total_time, count):
    logging.info(line)


class Progress:
  """A one-line progress bar on stderr (a log line every 10% when stderr is not a terminal)."""

  def __init__(self, total, label, stream=None):
    self.total, self.label = max(int(total), 1), label
    self.stream = stream or sys.stderr
    self._start = time.time()
    self._last_decile = -1
    self._interactive = self.stream.isatty()

  def update(self, done, note=""):
    fraction = min(done / self.total, 1.0)
    elapsed = time.time() - self._start
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    text = f"{self.label} {done}/{self.total} [{elapsed:.0f}s<{eta:.0f}s] {note}"
    if self._interactive:
      bar = "#" * int(20 * fraction)
      self.stream.write(f"\r{bar:<20} {text}")
      if done >= self.total:
        self.stream.write("\n")
      self.stream.flush()
    elif int(10 * fraction) > self._last_decile:
      self._last_decile = int(10 * fraction)
      logging.info(text)


class Summaries:
  """TensorBoard scalars when a logdir is given; a no-op otherwise."""

  def __init__(self, logdir=None):
    self._writer = tf.summary.create_file_writer(logdir) if logdir else None

  def scalars(self, step, **values):
    if self._writer is None:
      return
    with self._writer.as_default(step=int(step)):
      for name, value in values.items():
        tf.summary.scalar(name, float(value))
    self._writer.flush()
