"""Whole-or-nothing writes (atomic): the partial file's name by hand, and a set of files of which
one write fails against the files each test wrote itself."""

import errno
import os

import pytest

from learning_to_learn import atomic


def test_partial_path_keeps_the_extension_last():
  assert atomic.partial_path("/d/baseline_runs.npz") == "/d/baseline_runs.partial.npz"
  assert atomic.partial_path("run/loss.png") == "run/loss.partial.png"
  assert atomic.partial_path("README") == "README.partial"


def test_replace_writes_to_the_partial_file_then_renames_it_over(tmp_path):
  path = str(tmp_path / "table.md")
  with open(path, "w") as f:
    f.write("old\n")
  seen = []

  def write(partial):
    seen.append((partial, sorted(os.listdir(tmp_path))))
    with open(partial, "w") as f:
      f.write("new\n")

  atomic.replace(path, write)
  assert seen == [(str(tmp_path / "table.partial.md"), ["table.md"])]
  with open(path) as f:
    assert f.read() == "new\n"
  assert os.listdir(tmp_path) == ["table.md"]


def test_replace_all_leaves_the_old_set_whole_when_one_write_fails(tmp_path):
  paths = [str(tmp_path / name) for name in ("table.md", "loss.png")]
  for path in paths:
    with open(path, "w") as f:
      f.write(f"old {os.path.basename(path)}\n")

  def write_new(partial):
    with open(partial, "w") as f:
      f.write("new\n")

  def disk_full(partial):
    with open(partial, "w") as f:
      f.write("half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), partial)

  with pytest.raises(ValueError) as error:
    atomic.replace_all({paths[0]: write_new, paths[1]: disk_full})
  assert str(error.value).startswith(f"cannot write {paths[1]} (No space left on device)")
  assert "the previous table.md, loss.png are intact" in str(error.value)
  for path in paths:
    with open(path) as f:
      assert f.read() == f"old {os.path.basename(path)}\n"
  assert sorted(os.listdir(tmp_path)) == ["loss.png", "table.md"]  # no partial file left
  atomic.replace_all({paths[0]: write_new}, remove=[paths[1]])
  assert sorted(os.listdir(tmp_path)) == ["table.md"]
