"""summary.json, a comparison's results as data: written by `evaluate.py --compare`, read by
scripts/results_page.py, which builds RESULTS.md from nothing else.

One module owns the file, so that its writer and its readers agree on it. A summary holds the
comparison's settings ("problem", "split", "labels", "data", "path", "settings", "seed",
"num_test_epochs", "num_tuning_epochs", "num_steps"), the "optimizer" configs saved with the
learned networks, the tuned "learning_rates", "seconds", and "final_loss" and "paired_difference"
as {optimizer: {str(step): {"mean", "ci95"}}}.

VERSION 1 records "version". A file without it (version 0, as the published results/ hold) reads
alike; the fields such files may lack ("labels", "optimizer", "paired_difference") read as None
or empty.
"""

import json
import math

from learning_to_learn import atomic

VERSION = 1
FILE_NAME = "summary.json"

def _defaults():
  """What a version-0 file lacks where it was written before the field was recorded."""
  return {"labels": None, "optimizer": {}, "paired_difference": {}}


def finite_or_none(value):
  """JSON has no NaN or infinity (json.dump writes bare NaN, which parsers reject): null instead."""
  if isinstance(value, dict):
    return {key: finite_or_none(v) for key, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def writer(summary):
  """A function that writes `summary` (with its version) to the path it is given: one file of
  an atomic.replace_all set, or of `write`."""
  content = finite_or_none(dict({"version": VERSION}, **summary))

  def write_to(path):
    with open(path, "w") as f:
      json.dump(content, f, indent=2, allow_nan=False)

  return write_to


def write(path, summary):
  """Writes `summary` to `path` whole or not at all (atomic.replace)."""
  atomic.replace(path, writer(summary))


def read(path):
  """The summary in `path`, with "version" (0 if it records none) and every field of _defaults().

  Raises:
    ValueError: the file is of a newer version than this code reads.
  """
  with open(path) as f:
    summary = json.load(f)
  version = summary.get("version", 0)
  if version > VERSION:
    raise ValueError(f"{path} is a summary of version {version}; this code reads versions up to "
                     f"{VERSION}: update learning_to_learn.")
  return dict(_defaults(), **dict(summary, version=version))
