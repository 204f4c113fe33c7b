"""Deletes every checkpoint of a training run but the newest, so that git holds one copy.

Usage: python scripts/keep_latest_checkpoint.py ongoing/mnist/checkpoints

The index file `checkpoint` is rewritten to name the newest checkpoint alone, with a relative
path as tf.train.CheckpointManager writes it, so the directory can move.
"""

import glob
import os
import sys
import time

import tensorflow as tf


def keep_latest(directory):
  latest = tf.train.latest_checkpoint(directory)
  if latest is None:
    sys.exit(f"keep_latest_checkpoint.py: error: no checkpoint index in {directory}; "
             "give the checkpoints/ directory of a train.py --save_path.")
  removed = 0
  for path in glob.glob(os.path.join(directory, "ckpt-*")):
    if not os.path.basename(path).startswith(os.path.basename(latest) + "."):
      os.remove(path)
      removed += 1
  # The manager lists a checkpoint only with its timestamp, so those are kept from the old index.
  state = tf.train.get_checkpoint_state(directory)
  stamps = dict(zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps))
  name = os.path.basename(latest)  # relative, as tf.train.CheckpointManager writes it
  with open(os.path.join(directory, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n'
            f"all_model_checkpoint_timestamps: {stamps.get(latest, time.time())}\n"
            f"last_preserved_timestamp: {state.last_preserved_timestamp}\n")
  print(f"Kept {os.path.basename(latest)}, removed {removed} files.")


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__.strip().splitlines()[2])
  keep_latest(sys.argv[1])
