"""Where trained optimizers live: shipped ones by name, and the full state of a training run.

Two kinds of file, kept apart on purpose:
- a trained optimizer: one `<net key>.npz` per learned network, what evaluate.py and the Keras
  wrapper load; a training run writes its best one into `--save_path` itself; its format, and the
  shipped ones, belong to optimizer_files;
- a training checkpoint: everything needed to resume (weights, meta-optimizer slots, epoch, best
  evaluation loss so far), in `--save_path/checkpoints/` through tf.train.CheckpointManager.
"""

import glob
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

from learning_to_learn import errors
from learning_to_learn import atomic
from learning_to_learn import comparison_store
from learning_to_learn import optimizer_files

class TrainingCheckpoint:
  """The resumable state of a training run, saved every few epochs and at the end.

  tf.train.CheckpointManager writes the data files first and the index that points at them last,
  so an interrupted save leaves the previous checkpoint the one that is restored. The index (the
  `checkpoint` text file) is only a list of names: when it is missing or damaged the data files
  are still found by their names, so that a run never starts over while its checkpoints survive.

  Args:
    directory: where to keep checkpoints.
    meta_optimizer: the MetaOptimizer whose networks train.
    optimizer: the Keras optimizer taking the meta-steps (its slots resume too).
    max_to_keep: how many recent checkpoints to keep.
    chief: whether this process keeps what it saves. Every worker of a multi-worker run must take
      part in each save; the others write to a scratch directory and delete it.
    curriculum: also keep a horizon curriculum's place (`stage`, and `stale`: evaluations without
      improvement). Off, checkpoints stay readable by runs that predate curricula.
  """

  def __init__(self, directory, meta_optimizer, optimizer, max_to_keep=3, chief=True,
               curriculum=False):
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.best_loss = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best")
    self.faults = tf.Variable(0, dtype=tf.int64, trainable=False, name="faults")
    # Wall-clock seconds of training and evaluation so far, over every resumed session.
    self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
    self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage")
    self.stale = tf.Variable(0, dtype=tf.int64, trainable=False, name="stale")
    nets = {f"net_{key}": net for key, net in meta_optimizer.nets.items()}
    if curriculum:
      nets.update(stage=self.stage, stale=self.stale)
    self._checkpoint = tf.train.Checkpoint(optimizer=optimizer, epoch=self.epoch,
                                           best_loss=self.best_loss, faults=self.faults,
                                           seconds=self.seconds, **nets)
    self._directory, self._max_to_keep, self._chief = directory, max_to_keep, chief
    self.warnings = []  # what restore_latest found wrong but worked around, for the log
    index = os.path.join(directory, "checkpoint")
    try:
      self.manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep)
    except ValueError as e:  # TF cannot parse the index ("Invalid checkpoint state")
      if not chief:
        raise ValueError(f"{index} is damaged ({errors.first_line(e)}); start the chief first, it "
                         "rebuilds the index.") from None
      os.replace(index, index + ".damaged")  # kept for inspection; the data files are intact
      self.warnings.append(f"{index} is damaged ({errors.first_line(e)}); moved it to "
                           f"{index}.damaged and looked for the checkpoint files themselves")
      self.manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep)

  def restore_latest(self):
    """Restores the newest readable checkpoint.

    A damaged newest checkpoint (truncated or corrupted files) is passed over for the one before,
    so an interrupted or broken save never costs more than the epochs since the previous one.

    Returns:
      (restored path or None when there is no checkpoint, [(damaged path, reason), ...]).
    """
    damaged = []
    listed = list(self.manager.checkpoints)
    found = _numbered_checkpoints(self._directory)
    unlisted = [path for path in found if path not in listed]
    if unlisted and not self.warnings:
      names = ", ".join(os.path.basename(p) for p in sorted(unlisted, key=_number))
      self.warnings.append(f"the index {os.path.join(self._directory, 'checkpoint')} is missing "
                           f"or stale (it does not list {names}); looking at the checkpoint files "
                           "themselves")
    for path in sorted(set(listed) | set(found), key=_number, reverse=True):
      try:
        self._checkpoint.restore(path).assert_existing_objects_matched()
        if path not in listed and self._chief:
          self._rebuild_index(path, found)
        return path, damaged
      except Exception as e:  # pylint: disable=broad-except
        # TF's reader raises OpError, ValueError, AssertionError or even IndexError on a
        # truncated file; whichever it is, this checkpoint is unusable and an older one may not be.
        damaged.append((path, errors.first_line(e)))
    if damaged:
      path, reason = damaged[0]
      raise ValueError(f"no checkpoint in {self.manager.directory} can be restored (newest: "
                       f"{path}: {reason}); they were written for another configuration or are "
                       "damaged: pass --overwrite to start afresh.")
    return None, damaged

  def _rebuild_index(self, restored, found):
    """Writes an index listing the files found, so the manager rotates them out as usual.

    The index is a text proto of names and times; timestamps after `last_preserved_timestamp` mark
    the checkpoints as the manager's to delete once newer ones replace them.
    """
    kept = [p for p in sorted(found, key=_number) if _number(p) <= _number(restored)]
    times = [os.path.getmtime(p + ".index") for p in kept]
    lines = [f'model_checkpoint_path: "{os.path.basename(restored)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
    lines.append(f"last_preserved_timestamp: {min(times) - 1!r}")
    index = os.path.join(self._directory, "checkpoint")
    with open(index + ".partial", "w") as f:
      f.write("\n".join(lines) + "\n")
    os.replace(index + ".partial", index)
    self.manager = tf.train.CheckpointManager(self._checkpoint, self._directory,
                                              self._max_to_keep)

  def save(self):
    """Saves the state; a failed write (disk full, permissions) keeps the previous checkpoint."""
    try:
      if self._chief:
        return self.manager.save(checkpoint_number=int(self.epoch.numpy()))
      scratch = tempfile.mkdtemp(prefix="l2l-worker-checkpoint-")
      try:
        return self._checkpoint.write(os.path.join(scratch, "checkpoint"))
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
    except (OSError, tf.errors.OpError) as e:
      # The half-written files of this save (TF writes them into "<prefix>_temp" first).
      for scratch in glob.glob(os.path.join(glob.escape(self._directory), "ckpt-*_temp")):
        shutil.rmtree(scratch, ignore_errors=True)
      previous = os.path.basename(self.manager.latest_checkpoint or "") or "none yet"
      raise ValueError(f"cannot write a checkpoint to {self._directory} ({_reason(e)}); the "
                       f"previous one ({previous}) is intact: free disk space or fix permissions, "
                       "then run the same command to resume.") from None


def _reason(error):
  """The useful end of an OS or TensorFlow error: TF's start with op names, end with the cause."""
  text = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
  text = " ".join(re.sub(r"\{\{[^}]*\}\}", "", str(text)).split())
  text = re.sub(r"\S*/(?=\S)", "", text)  # file names without their directories
  return text if len(text) <= 160 else "..." + text[-157:]


def _number(path):
  match = re.search(r"-(\d+)$", path)
  return int(match.group(1)) if match else -1


def _numbered_checkpoints(directory):
  """Prefixes of the checkpoints whose files are in `directory` ("ckpt-12"), index or not."""
  return [path[:-len(".index")] for path in glob.glob(os.path.join(directory, "ckpt-*.index"))
          if _number(path[:-len(".index")]) >= 0]


def has_checkpoint(directory):
  """Whether `directory` holds the files of at least one training checkpoint."""
  return bool(_numbered_checkpoints(directory))


def save_optimizer(meta_optimizer, path):
  """Writes the best optimizer so far; on a failed write the one already there stays intact."""
  try:
    return meta_optimizer.save(path)
  except OSError as e:
    for partial in glob.glob(os.path.join(glob.escape(path), "*.npz.partial")):
      os.remove(partial)  # optimizer_files.save writes beside the file and renames over it
    raise ValueError(f"cannot write the best optimizer to {path} ({e.strerror or e}); the one "
                     "saved before is intact: free disk space or fix permissions, then run the "
                     "same command to resume.") from None


def write_json(path, value):
  """Writes JSON beside `path` and renames it over: a failed write leaves the old file intact."""

  def write(partial):
    with open(partial, "w") as f:
      json.dump(value, f, indent=2)

  atomic.replace(path, write)


def check_no_trained_optimizer(save_path, meta_optimizer):
  """Refuses to start afresh over a trained optimizer that has no checkpoint to resume from.

  The best-so-far loss of a fresh run starts at infinity, so its first evaluation would replace
  the optimizer already in `save_path`, however good, with an optimizer trained for a few epochs.
  """
  if _numbered_checkpoints(os.path.join(save_path, "checkpoints")):
    return  # a checkpoint to resume from, or one restore_latest reports as damaged
  found = [os.path.basename(optimizer_files.path_for(save_path, key))
           for key in meta_optimizer.nets
           if os.path.isfile(optimizer_files.path_for(save_path, key))]
  if found:
    raise ValueError(f"--save_path={save_path} holds a trained optimizer ({', '.join(found)}) "
                     "but no checkpoint to resume from; a new run would replace it: give another "
                     "--save_path (and --init_path to start from it), or --overwrite to replace "
                     "it.")


def read_run_config(path):
  """The flags a run was started with (its run.json), as a dict; one-line errors when damaged."""
  try:
    with open(path) as f:
      config = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON ({errors.first_line(e)}); restore it, or pass "
                     "--overwrite to start the run afresh.") from None
  if not isinstance(config, dict):
    raise ValueError(f"{path} holds a JSON {type(config).__name__}, not the object of flags "
                     "train.py writes; restore it, or pass --overwrite to start afresh.")
  return config


def first_line(error):
  """An exception's message cut to its first line, for one-line errors that quote a cause."""
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__

