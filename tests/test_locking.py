"""locking.DirectoryLock: one run per directory, stale locks taken over, a release that never raises."""

import os
import socket
import subprocess

import pytest

from learning_to_learn import locking


def test_a_live_holder_is_named_and_a_dead_one_taken_over(tmp_path):
  lock = locking.DirectoryLock(str(tmp_path))
  with open(lock.path) as f:
    assert f.read().split() == [str(os.getpid()), socket.gethostname()]
  with pytest.raises(ValueError, match=rf"in use by another run \(process {os.getpid()} "):
    locking.DirectoryLock(str(tmp_path))
  lock.release()
  assert not os.path.exists(lock.path)
  child = subprocess.Popen(["true"])
  child.wait()
  with open(lock.path, "w") as f:  # left by a killed run whose process is gone
    f.write(f"{child.pid} {socket.gethostname()}\n")
  taken = locking.DirectoryLock(str(tmp_path))
  with open(taken.path) as f:
    assert f.read().split()[0] == str(os.getpid())
  taken.release()


def test_release_in_a_directory_turned_read_only_does_not_raise(tmp_path, monkeypatch):
  lock = locking.DirectoryLock(str(tmp_path))

  def refuse(path):
    raise PermissionError(13, "Read-only file system", path)
  monkeypatch.setattr(locking.os, "remove", refuse)
  lock.release()  # an atexit callback or a finally: a traceback here would follow the real error
  monkeypatch.undo()
  assert os.path.exists(lock.path)  # stale once this process ends; the next run takes it over
