"""What the CLIs show a person: progress, statistics, tables, plots, TensorBoard scalars.

The other modules that write to the console: console.py lays out stderr (the progress bar and the
lines printed above it), datasets.py logs which data each loader read, and the CLIs log their own
progress and warnings.
"""

import math
import os
import sys

from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_learn import console
from learning_to_learn import evaluation


def run_cli(script, command):
  """Runs a CLI's command; bad input ends as one line on stderr and exit status 2, no traceback.

  The line starts with the name the program was run by (`train.py`, `l2l-train`), else `script`.
  An OSError that reaches here (permission denied, disk full, a file where a directory should be)
  is the machine's or the user's, not a bug: it too is one line, with the path it names.
  """
  try:
    return command()
  except (ValueError, FileNotFoundError) as e:
    console.end_bar()
    print(f"{_program(script)}: error: {one_line(e)}", file=sys.stderr)
    return 2
  except OSError as e:
    console.end_bar()
    where = f" {e.filename}" if e.filename else ""
    print(f"{_program(script)}: error: cannot use{where}: {e.strerror or e}; check the path, its "
          "permissions and the free disk space.", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # before the command's own handler was installed: nothing to save
    console.end_bar()
    print(f"{_program(script)}: interrupted; nothing was being saved at that point.",
          file=sys.stderr)
    return 130


def _program(script):
  """The name the program was run by (`train.py`, `l2l-train`), else `script`."""
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else script


def one_line(error):
  """An error's message on one line (TensorFlow's and NumPy's messages span several)."""
  return " ".join(str(error).split()) or type(error).__name__


def check_writable_dir(path, flag):
  """Creates `path` if needed and proves it writable, before any long work depends on it."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{flag}={path} is a file; give a directory.")
  probe = os.path.join(path, f".write-test-{os.getpid()}")
  try:
    os.makedirs(path, exist_ok=True)
    with open(probe, "w") as f:
      f.write("ok\n")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"{flag}={path} is not writable ({e.strerror or e}); choose a directory you "
                     "can write, or fix its permissions.") from None


# What a non-finite loss most often means, for the lines that report one.
NON_FINITE_CAUSES = ("the optimizer diverged (a learning rate or output scale too large), or the "
                     "data or a trained optimizer holds bad values")


def log_error_text(mean_error):
  """log10 of a mean final error as text; a non-finite or non-positive mean says what it is.

  Never "-inf" for a NaN: that reads as a perfect result.
  """
  if math.isnan(mean_error) or math.isinf(mean_error):
    return f"{mean_error} (non-finite loss: {NON_FINITE_CAUSES})"
  if mean_error == 0:
    return "-inf (the loss is exactly 0)"
  if mean_error < 0:
    return f"undefined (mean loss {mean_error:.4g} is negative)"
  return f"{np.log10(mean_error):.2f}"


def stats_lines(header, total_error, total_time, count):
  """The reference's statistics: log10 of the mean final error, and the mean epoch time."""
  return [header, f"Log Mean Final Error: {log_error_text(total_error / count)}",
          f"Mean epoch time: {total_time / count:.2f} s"]


def print_stats(header, total_error, total_time, count):
  for line in stats_lines(header, total_error, total_time, count):
    logging.info(line)


class Summaries:
  """TensorBoard scalars when a logdir is given; a no-op otherwise."""

  def __init__(self, logdir=None):
    self._writer = None
    if logdir:
      check_writable_dir(logdir, "--logdir")
      try:
        import tensorboard  # pylint: disable=import-outside-toplevel,unused-import
      except ImportError:
        raise ValueError("--logdir needs the tensorboard package, which tensorflow-cpu does not "
                         "bring: pip install tensorboard.") from None
      self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, step, **values):
    if self._writer is None:
      return
    with self._writer.as_default(step=int(step)):
      for name, value in values.items():
        tf.summary.scalar(name, float(value))
    self._writer.flush()


def comparison_table(losses, rates, steps):
  """Markdown table: mean final loss +- 95% interval at each step in `steps`, per optimizer."""
  header = "| optimizer | learning rate | " + " | ".join(f"loss at step {s}" for s in steps) + " |"
  lines = [header, "|" + "---|" * (len(steps) + 2)]
  for name, runs in losses.items():
    cells = []
    for step in steps:
      column = runs[:, step]
      if not np.all(np.isfinite(column)):
        bad = int(np.sum(~np.isfinite(column)))
        cells.append(f"diverged ({bad} of {len(column)} runs non-finite)")
        continue
      mean, half = evaluation.mean_interval(column)
      cells.append(f"{mean:.4g} ± {half:.2g}")
    rate = f"{rates[name]:.3g}" if name in rates else "learned"
    lines.append(f"| {name} | {rate} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_loss_curves(losses, path):
  """CSV: one row per step, the mean loss of each optimizer and its 95% half-interval."""
  names = list(losses)
  columns = []
  for name in names:
    mean, half = evaluation.mean_interval(losses[name])
    columns += [mean, half]
  header = "step," + ",".join(f"{n}_mean,{n}_ci95" for n in names)
  rows = np.column_stack([np.arange(len(columns[0]))] + columns)
  np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt=["%d"] + ["%.6g"] * (
      len(columns)))


def plot_unavailable():
  """Why loss.png cannot be drawn here (matplotlib missing: the install line), or None.

  Asked before a comparison starts, so that its hours of work are not followed by an ImportError.
  """
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")  # as plot_loss_curves draws: no display needed
    import matplotlib.pyplot  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    return (f"matplotlib cannot be imported ({one_line(e)}); pip install matplotlib, or the "
            "package's plot extra (pip install 'learning-to-learn[plot]'), to draw loss.png")
  return None


def plot_loss_curves(losses, path, title):
  """Loss (log scale) against step, one curve per optimizer with its 95% band, as in the paper."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axes = plt.subplots(figsize=(6, 4))
  for name, runs in losses.items():
    mean, half = evaluation.mean_interval(runs)
    steps = np.arange(len(mean))
    axes.plot(steps, mean, label=name, linewidth=2 if name == "L2L" else 1)
    axes.fill_between(steps, np.maximum(mean - half, 1e-12), mean + half, alpha=0.2)
  axes.set_yscale("log")
  axes.set_xlabel("step")
  axes.set_ylabel("loss")
  axes.set_title(title)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
