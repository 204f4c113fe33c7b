"""The console: the progress bar's arithmetic and cadence, and train.py's output being ours alone.

The end-to-end test runs train.py as a person would (no TF_CPP_MIN_LOG_LEVEL set), and the same
command with --verbosity=0, whose TensorFlow lines show that the quiet run had lines to hide.
"""

import concurrent.futures
import io
import os
import re
import sys

from learning_to_learn import console
from learning_to_learn.cli import quiet

from conftest import environment, run_python

# Lines TensorFlow writes by itself: C++ logs (absl/glog prefix "I1126 00:06:16.03 ..."), its
# start-up notices, and the checkpoint writer's line at every save.
TF_NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cpu_feature_guard|XLA service|"
                      r"StreamExecutor|rebuild TensorFlow|Sharding callback|functional_saver|"
                      r"Warning:", re.MULTILINE)


class Terminal(io.StringIO):

  def isatty(self):
    return True


class Clock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_format_seconds_against_hand_written_times():
  assert console.format_seconds(0) == "0:00"
  assert console.format_seconds(65) == "1:05"
  assert console.format_seconds(3665) == "1:01:05"


def test_remaining_time_counts_only_the_units_this_bar_saw(monkeypatch):
  clock = Clock()
  monkeypatch.setattr(console.time, "monotonic", clock)
  bar = console.Progress(1000, "meta-training", interactive=False)
  monkeypatch.setattr(console.absl_logging, "info", lambda text: None)
  clock.now = 10.0
  bar.update(501, "final loss 0.5")  # resumed at epoch 500: one epoch in 10 s
  # 499 epochs left at 10 s each: 4,990 s.
  assert bar.text() == ("meta-training  50% 501/1000  elapsed 0:10, remaining 1:23:10  "
                        "final loss 0.5")


def test_without_a_terminal_one_line_per_five_percent(monkeypatch):
  lines = []
  monkeypatch.setattr(console.absl_logging, "info", lines.append)
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  bar = console.Progress(200, "job")
  assert not bar.interactive
  for done in range(1, 201):
    bar.update(done, f"loss {done}")
  # The first update, then every 10 of 200 (5%): 1, 10, 20, ..., 200.
  assert len(lines) == 21
  assert lines[0].startswith("job   0% 1/200") and lines[0].endswith("loss 1")
  assert lines[-1].startswith("job 100% 200/200") and lines[-1].endswith("loss 200")
  assert sys.stderr.getvalue() == ""


def test_on_a_terminal_the_bar_redraws_in_place_under_printed_lines(monkeypatch):
  terminal = Terminal()
  monkeypatch.setattr(sys, "stderr", terminal)
  monkeypatch.setenv("COLUMNS", "200")  # the bar is cut to the terminal's width
  monkeypatch.setitem(console._state, "bar", None)  # pylint: disable=protected-access
  bar = console.Progress(3, "job", interactive=True)
  bar.update(1, "loss 3")
  console.write_line("Epoch 1")
  bar.update(2, "loss 2")
  assert "\n" not in terminal.getvalue().split("Epoch 1\n")[1]  # redrawn, not a new line
  bar.update(3, "loss 1")
  output = terminal.getvalue()
  assert output.endswith("loss 1\n")
  # Visible lines once carriage returns have done their work: the message, then the final bar.
  visible = [line.split("\r")[-1].replace("\x1b[K", "") for line in output.split("\n")]
  assert visible[0] == "Epoch 1"
  assert visible[1].startswith("[####################] job 100% 3/3")


def test_verbosity_is_read_from_argv_before_the_flags_are_parsed():
  assert quiet.verbosity_requested(["train.py", "--verbosity=0"])
  assert quiet.verbosity_requested(["train.py", "-v", "1"])
  assert not quiet.verbosity_requested(["train.py", "--problem=quadratic"])
  assert not quiet.verbosity_requested(["train.py", "--", "--verbosity=0"])


def _train(save_path, *extra):
  env = environment(TF_CPP_MIN_LOG_LEVEL=None)  # TensorFlow's logs as a person runs it
  return run_python("train.py", "--problem=quadratic", "--num_epochs=4", "--num_steps=20",
                    "--unroll_length=10", "--log_period=2", "--evaluation_period=2",
                    "--evaluation_epochs=2", "--checkpoint_period=2", f"--save_path={save_path}",
                    *extra, env=env)


def test_train_output_is_ours_alone(tmp_path):
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    quiet_run = pool.submit(_train, tmp_path / "quiet")
    verbose_run = pool.submit(_train, tmp_path / "verbose", "--verbosity=0")
    run, verbose = quiet_run.result(), verbose_run.result()
  assert run.returncode == 0, run.stderr
  output = run.stdout + run.stderr
  assert TF_NOISE.search(output) is None, output
  assert os.listdir(tmp_path / "quiet" / "checkpoints"), "no checkpoint was written"
  progress = [line for line in output.splitlines() if line.startswith("meta-training")]
  assert len(progress) == 4, output
  for line in progress:
    assert "elapsed" in line and "remaining" in line and "final loss" in line, line
  for words in ("Epoch 4", "Log Mean Final Error", "Mean epoch time", "EVALUATION",
                "Saved the best optimizer"):
    assert words in output, output
  # The same run with --verbosity=0 has TensorFlow's lines: the quiet run hid real ones.
  assert verbose.returncode == 0, verbose.stderr
  assert "Sharding callback duration" in verbose.stderr, verbose.stderr
  assert "Log Mean Final Error" in verbose.stderr, verbose.stderr
