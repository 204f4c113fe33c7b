"""One run per directory (train.py --save_path, evaluate.py --compare's --output_dir): a lock file
that holds the owner's process id.

Two runs writing one directory interleave run.json, checkpoints and the best optimizer, and each
believes it owns them. The lock is a file created atomically (O_EXCL) for the run's life and removed
when it ends; a lock whose process is gone (killed, machine restarted) is stale and taken over.
"""

import errno
import os
import socket

LOCK_FILE = "train.lock"


def _alive(pid):
  """Whether a process with this id exists on this machine."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read_owner(path):
  """(pid, host) written in a lock file, or None when it cannot be parsed (a half-written lock)."""
  try:
    with open(path) as f:
      pid, host = f.read().split()[:2]
    return int(pid), host
  except (OSError, ValueError):
    return None


class DirectoryLock:
  """An exclusive lock on a directory, held until `release` (or the process's end).

  Args:
    directory: the directory to lock; created if missing.
    flag: the flag that named it, for the error messages (e.g. "--save_path").
    name: the lock file's name; each kind of run has its own (train.lock, compare.lock), so that
      a comparison writing into a training run's directory does not wait for the training.

  Raises:
    ValueError: another live process holds the lock, or the directory cannot be written.
  """

  def __init__(self, directory, flag="--save_path", name=LOCK_FILE):
    self.path = os.path.join(directory, name)
    self._flag = flag
    try:
      os.makedirs(directory, exist_ok=True)
    except OSError as e:
      raise ValueError(f"{flag}={directory} cannot be created ({e.strerror}); choose a "
                       "directory you can write, or fix its permissions.") from None
    self._acquire(directory)

  def _acquire(self, directory):
    for _ in range(3):  # a stale lock is removed and creation retried; a racing run may win
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        owner = _read_owner(self.path)
        if owner is not None and (owner[1] != socket.gethostname() or _alive(owner[0])):
          raise ValueError(
              f"{self._flag}={directory} is in use by another run (process {owner[0]} on "
              f"{owner[1]}, {self.path}); wait for it to end, or give another {self._flag}. If "
              "no such run exists, delete the lock file.") from None
        try:
          os.remove(self.path)  # stale: its process is gone
        except FileNotFoundError:
          pass
        continue
      except OSError as e:
        raise ValueError(f"{self._flag}={directory} is not writable ({e.strerror}); choose a "
                         "directory you can write, or fix its permissions.") from None
      try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
      except OSError as e:
        os.close(fd)
        os.remove(self.path)
        if e.errno == errno.ENOSPC:
          raise ValueError(f"{self._flag}={directory}: no space left on the device; free some "
                           "space and run again.") from None
        raise
      os.close(fd)
      self._pid = os.getpid()
      return
    raise ValueError(f"{self._flag}={directory}: another run keeps taking the lock "
                     f"{self.path}; start one run per directory.")

  def release(self):
    """Removes the lock if this process still owns it (not a forked child or a taken-over lock)."""
    if os.getpid() != self._pid:
      return
    owner = _read_owner(self.path)
    if owner is not None and owner[0] == self._pid:
      try:
        os.remove(self.path)
      except OSError:  # gone, or the directory turned read-only: the lock is stale once we exit
        pass
