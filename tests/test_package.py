"""The installed package: built as a wheel, installed into a scratch directory, used from outside.

What a user of `pip install` gets: the library with every shipped optimizer loadable by name, the
two commands, and no top-level module with a generic name. The wheel is built offline
(`--no-build-isolation`, setuptools from this environment) from a copy of the files it needs, so
the checkout gets no build/ or egg-info.
"""

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import ROOT, TIMEOUT, at_this_threads_priority, background_jobs, run_python


# Run from a directory outside the checkout with only the install on the path: for every shipped
# optimizer, one model.fit step, and the update it takes for a fixed gradient.
USER_SCRIPT = """
import json, os, sys
import numpy as np
import keras
import learning_to_learn
from learning_to_learn import optimizer_files
from learning_to_learn import keras as l2l_keras

assert learning_to_learn.__file__.startswith(sys.argv[1]), learning_to_learn.__file__
# The single-network optimizers (cifar's two networks need a file named, see test_keras).
names = [n for n in optimizer_files.shipped_names()
         if os.path.isfile(os.path.join(optimizer_files.resolve(n), "cw.npz"))]
result = {"names": names, "updates": {}, "fit_loss": {}}
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
y = x @ np.arange(1.0, 5.0, dtype="float32")[:, None]
for name in result["names"]:
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
  model.compile(optimizer=l2l_keras.LearnedOptimizer(checkpoint=name), loss="mse")
  before = model.get_weights()[0].copy()
  history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  assert not np.array_equal(before, model.get_weights()[0]), name
  result["fit_loss"][name] = history.history["loss"][0]
  variable = keras.Variable(np.ones(6, "float32"))
  optimizer = l2l_keras.LearnedOptimizer(checkpoint=name)
  optimizer.apply_gradients([(keras.ops.convert_to_tensor(np.linspace(-1, 1, 6, dtype="float32")),
                              variable)])
  result["updates"][name] = (variable.numpy() - 1.0).tolist()
print("RESULT " + json.dumps(result))
"""


def _pip(*args, cwd):
  # pip as a person runs it: this process's environment, the checkout not on PYTHONPATH.
  done = run_python("-m", "pip", "--disable-pip-version-check", *args, cwd=cwd,
                    env=dict(os.environ))
  assert done.returncode == 0, done.stdout + done.stderr
  return done


def _install(tmp):
  """(wheel path, install directory): the package built and installed with pip --target."""
  source = tmp / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), source / name)
  shutil.copytree(os.path.join(ROOT, "learning_to_learn"), source / "learning_to_learn",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
  _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"),
       str(source), cwd=tmp)
  (wheel,) = glob.glob(str(tmp / "dist" / "*.whl"))
  target = tmp / "site"
  _pip("install", "--no-deps", "--no-index", "--target", str(target), wheel, cwd=tmp)
  return wheel, str(target)


def _outside(target, *command):
  env = dict(os.environ, PYTHONPATH=target, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  cwd = os.path.dirname(target)  # the scratch directory, outside the checkout
  return subprocess.Popen(command, **at_this_threads_priority(dict(
      cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))


def _install_and_use(tmp):
  """The package installed, then used from outside the checkout: USER_SCRIPT and, at the same
  time, the installed l2l-evaluate given bad input. (wheel path, install directory, the script's
  (exit status, stdout, stderr), the command's (exit status, stderr))."""
  wheel, target = _install(tmp)
  user = _outside(target, sys.executable, "-c", USER_SCRIPT, target)
  command = _outside(target, os.path.join(target, "bin", "l2l-evaluate"), "--optimizer=adam",
                     "--path=quadratic")
  stdout, stderr = user.communicate(timeout=600)
  _, command_stderr = command.communicate(timeout=600)
  return wheel, target, (user.returncode, stdout, stderr), (command.returncode, command_stderr)


def start_background_jobs(items, submit, tmp_path_factory):
  """The install and its use, started as the session starts (conftest runs them beside the other
  tests), unless this environment has no setuptools to build with (the tests skip)."""
  del items  # both tests need the one job
  if importlib.util.find_spec("setuptools") is None:
    return {}
  return {"installed": submit(_install_and_use, tmp_path_factory.mktemp("package"))}


@pytest.fixture(scope="module")
def runs(request):
  """What _install_and_use gives, from the job started as the session started."""
  pytest.importorskip("setuptools")
  return background_jobs(request.module)["installed"].result(timeout=TIMEOUT)


def test_wheel_holds_the_library_its_optimizers_and_no_generic_module(runs):
  wheel = runs[0]
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
  assert {name.split("/")[0] for name in names if not name.startswith(
      "learning_to_learn-")} == {"learning_to_learn"}, names
  shipped = sorted(os.path.relpath(path, ROOT) for path in glob.glob(
      os.path.join(ROOT, "learning_to_learn", "pretrained", "*", "*.npz")))
  assert shipped, "the checkout ships no optimizer"
  for path in shipped + ["learning_to_learn/pretrained/README.md",
                         "learning_to_learn/fused_lstm.cc"]:
    assert path in names, names
  assert "l2l-train = learning_to_learn.cli:train_main" in entry_points, entry_points
  assert "l2l-evaluate = learning_to_learn.cli:evaluate_main" in entry_points, entry_points


def test_every_shipped_optimizer_trains_a_keras_model_from_outside_the_checkout(runs):
  _, _, (returncode, stdout, stderr), (command_returncode, command_stderr) = runs
  assert returncode == 0, stderr
  result = json.loads(stdout.split("RESULT ", 1)[1])

  # Against the checkout: the same optimizers by name, and the same update for the same gradient.
  from learning_to_learn import optimizer_files
  import keras
  from learning_to_learn import keras as l2l_keras
  assert result["names"] == [n for n in optimizer_files.shipped_names() if os.path.isfile(
      os.path.join(optimizer_files.resolve(n), "cw.npz"))]
  assert len(result["names"]) >= 5
  for name in result["names"]:
    assert np.isfinite(result["fit_loss"][name]), result
    variable = keras.Variable(np.ones(6, "float32"))
    optimizer = l2l_keras.LearnedOptimizer(checkpoint=name)
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(
        np.linspace(-1, 1, 6, dtype="float32")), variable)])
    np.testing.assert_allclose(result["updates"][name], variable.numpy() - 1.0, rtol=1e-6,
                               atol=1e-9)
    assert np.any(np.asarray(result["updates"][name]) != 0), name

  assert command_returncode == 2, command_stderr
  assert command_stderr.strip().splitlines()[-1].startswith(
      "l2l-evaluate: error: --path is for"), command_stderr
  assert "Traceback" not in command_stderr, command_stderr
