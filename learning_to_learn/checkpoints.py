"""Where trained optimizers live: shipped ones by name, and the full state of a training run.

Two kinds of file, kept apart on purpose:
- a trained optimizer: one `<net key>.npz` per learned network (networks.save), what evaluate.py and
  the Keras wrapper load; a training run writes its best one into `--save_path` itself;
- a training checkpoint: everything needed to resume (weights, meta-optimizer slots, epoch, best
  evaluation loss so far), in `--save_path/checkpoints/` through tf.train.CheckpointManager.
"""

import os
import shutil
import tempfile

import tensorflow as tf

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def shipped_names():
  """Names of the trained optimizers that ship inside the package."""
  if not os.path.isdir(SHIPPED_DIR):
    return []
  return sorted(n for n in os.listdir(SHIPPED_DIR) if os.path.isdir(os.path.join(SHIPPED_DIR, n)))


def resolve(path):
  """A shipped optimizer's name or a directory of `<key>.npz` files -> that directory."""
  if path in shipped_names():
    return os.path.join(SHIPPED_DIR, path)
  if os.path.isdir(path):
    return path
  shipped = ", ".join(shipped_names()) or "none yet"
  raise FileNotFoundError(f"no trained optimizer at {path!r}: give a directory written by "
                          f"train.py --save_path, or a shipped name ({shipped}).")


class TrainingCheckpoint:
  """The resumable state of a training run, saved every few epochs and at the end.

  tf.train.CheckpointManager writes the data files first and the index that points at them last,
  so an interrupted save leaves the previous checkpoint the one that is restored.

  Args:
    directory: where to keep checkpoints.
    meta_optimizer: the MetaOptimizer whose networks train.
    optimizer: the Keras optimizer taking the meta-steps (its slots resume too).
    max_to_keep: how many recent checkpoints to keep.
    chief: whether this process keeps what it saves. Every worker of a multi-worker run must take
      part in each save; the others write to a scratch directory and delete it.
  """

  def __init__(self, directory, meta_optimizer, optimizer, max_to_keep=3, chief=True):
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.best_loss = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best")
    self.faults = tf.Variable(0, dtype=tf.int64, trainable=False, name="faults")
    # Wall-clock seconds of training and evaluation so far, over every resumed session.
    self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
    nets = {f"net_{key}": net for key, net in meta_optimizer.nets.items()}
    self._checkpoint = tf.train.Checkpoint(optimizer=optimizer, epoch=self.epoch,
                                           best_loss=self.best_loss, faults=self.faults,
                                           seconds=self.seconds, **nets)
    self.manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep)
    self._chief = chief

  def restore_latest(self):
    """Restores the newest readable checkpoint.

    A damaged newest checkpoint (truncated or corrupted files) is passed over for the one before,
    so an interrupted or broken save never costs more than the epochs since the previous one.

    Returns:
      (restored path or None when there is no checkpoint, [(damaged path, reason), ...]).
    """
    damaged = []
    for path in reversed(self.manager.checkpoints):
      try:
        self._checkpoint.restore(path).assert_existing_objects_matched()
        return path, damaged
      except Exception as e:  # pylint: disable=broad-except
        # TF's reader raises OpError, ValueError, AssertionError or even IndexError on a
        # truncated file; whichever it is, this checkpoint is unusable and an older one may not be.
        damaged.append((path, first_line(e)))
    if damaged:
      path, reason = damaged[0]
      raise ValueError(f"no checkpoint in {self.manager.directory} can be restored (newest: "
                       f"{path}: {reason}); they were written for another configuration or are "
                       "damaged: pass --overwrite to start afresh.")
    return None, damaged

  def save(self):
    if self._chief:
      return self.manager.save(checkpoint_number=int(self.epoch.numpy()))
    scratch = tempfile.mkdtemp(prefix="l2l-worker-checkpoint-")
    try:
      return self._checkpoint.write(os.path.join(scratch, "checkpoint"))
    finally:
      shutil.rmtree(scratch, ignore_errors=True)


def first_line(error):
  """An exception's message cut to its first line, for one-line errors that quote a cause."""
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__
