"""A comparison's kept work: the baselines' tuned rates, their sweeps' scores, their test runs.

Tuning is most of a comparison's time, so `evaluation.compare(store=...)` keeps each result as
it finishes, and a rerun with the same settings takes it back instead of running it again. Two
files in one directory, each holding one record per comparison setting, so that a rerun with
other settings (another number of tuning or test instances) adds its record beside the earlier
ones, and a rerun with the first settings finds its own again:

- tuning.json: the record of the settings used last at the top level, {"settings", "rates",
  "scores"} (the layout of a file with one record, as earlier versions wrote it), and the earlier
  records in "other_settings": [{"settings", "rates", "scores"}, ...].
- baseline_runs.npz: per record, under the prefix "<digest of its settings>/", "__settings__"
  (JSON), "__rates__" (JSON: name -> rate) and one [num_test_epochs, num_steps + 1] array of
  losses per baseline. A file in the earlier one-record layout (no prefix) reads as one record.

What is read back is checked, never trusted: a file that cannot be read is moved aside to
`<file>.damaged` and its work redone; a NaN score, a rate that is not positive and finite, and
test runs that are not a finite 2-D float array are ignored and measured again. Each such case
adds a line to `Store.warnings`, for the CLI to show. Every write goes through atomic.replace, so a
failed write leaves the previous file whole.
"""

import hashlib
import json
import math
import os
import zipfile
import zlib

import numpy as np

from learning_to_learn import atomic

TUNING_FILE = "tuning.json"
RUNS_FILE = "baseline_runs.npz"
_SETTINGS, _RATES = "__settings__", "__rates__"


def _plain(value):
  """`value` as JSON reads it back (lists, not tuples), so that kept settings compare equal."""
  return json.loads(json.dumps(value))


def digest(settings):
  """A short stable name of a settings dict: the key of its record in baseline_runs.npz."""
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# --- tuning.json --------------------------------------------------------------------------------

def read_tuning_records(path):
  """Every record of a tuning.json, the one used last first: [{"settings", "rates", "scores"}].

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not JSON, or not the object this module writes.
  """
  with open(path) as f:
    try:
      record = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
      raise ValueError(f"not valid JSON ({' '.join(str(e).split())[:120]})") from None
  if not isinstance(record, dict):
    raise ValueError(f"a JSON {type(record).__name__}, not a tuning record")
  others = record.get("other_settings", [])
  if not isinstance(others, list):
    raise ValueError("its other_settings is not a list")
  records = [{key: record.get(key) for key in ("settings", "rates", "scores")}] + others
  return [r for r in records if isinstance(r, dict) and "settings" in r]


def write_tuning_records(path, records):
  """Writes records (the one used last first) in tuning.json's layout, atomically."""
  first, others = records[0], records[1:]
  value = dict(first, other_settings=others) if others else dict(first)

  def write(partial):
    with open(partial, "w") as f:
      json.dump(value, f, indent=2)

  atomic.replace(path, write)


def _find(records, settings):
  return next((r for r in records if r.get("settings") == settings), None)


def checked_rates(rates):
  """name -> rate, only the rates that are positive finite numbers; and the names dropped."""
  rates = rates if isinstance(rates, dict) else {}
  good = {name: float(rate) for name, rate in rates.items()
          if isinstance(rate, (int, float)) and not isinstance(rate, bool)
          and 0 < rate < math.inf}
  return good, sorted(set(rates) - set(good))


def checked_scores(scores):
  """name -> {rate: score}, without entries that are not numbers or are NaN; and their count.

  An infinite score is a diverged sweep (see evaluation._tune) and kept; NaN is no measurement.
  """
  good, dropped = {}, 0
  for name, by_rate in (scores if isinstance(scores, dict) else {}).items():
    if not isinstance(by_rate, dict):
      dropped += 1
      continue
    for rate, score in by_rate.items():
      try:
        rate, score = float(rate), float(score)
      except (TypeError, ValueError):
        dropped += 1
        continue
      if math.isnan(rate) or math.isnan(score) or not rate > 0:
        dropped += 1
        continue
      good.setdefault(name, {})[rate] = score
  return good, dropped


def read_tuned_rates(path, settings):
  """Baseline rates an earlier comparison tuned with the same `settings` (a dict), else {}."""
  try:
    record = _find(read_tuning_records(path), _plain(settings))
  except (OSError, ValueError):
    return {}
  return checked_rates((record or {}).get("rates"))[0]


def read_tuning_scores(path, settings):
  """Baseline name -> {rate: mean loss} that earlier sweeps with the same `settings` measured."""
  try:
    record = _find(read_tuning_records(path), _plain(settings))
  except (OSError, ValueError):
    return {}
  return checked_scores((record or {}).get("scores"))[0]


# --- baseline_runs.npz --------------------------------------------------------------------------

def read_run_records(path):
  """Every record of a baseline_runs.npz: digest -> (settings, {name: (rate, losses)}).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is truncated, empty or not in this module's layout.
  """
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {key: data[key] for key in data.files}
  except FileNotFoundError:
    raise
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
    raise ValueError(f"not a readable .npz ({' '.join(str(e).split())[:120] or type(e).__name__})"
                     ) from None
  if _SETTINGS in arrays:  # the earlier layout: one record, no prefix
    arrays = {f"{digest(None)}/{key}": value for key, value in arrays.items()}
  records = {}
  for key in arrays:
    prefix, _, field = key.rpartition("/")
    if field != _SETTINGS:
      continue
    try:
      settings = json.loads(str(arrays[key]))
      rates = json.loads(str(arrays[f"{prefix}/{_RATES}"]))
    except (KeyError, ValueError):
      raise ValueError(f"record {prefix} has damaged settings or rates") from None
    if not isinstance(rates, dict):
      raise ValueError(f"record {prefix} has rates that are not a name -> rate object")
    records[digest(settings)] = (settings, {
        name: (rate, arrays[f"{prefix}/{name}"]) for name, rate in rates.items()
        if f"{prefix}/{name}" in arrays})
  if arrays and not records:
    raise ValueError("it holds no record of test runs")
  return records


def write_run_records(path, records):
  """Writes digest -> (settings, {name: (rate, losses)}) as baseline_runs.npz lays them out."""
  arrays = {}
  for key, (settings, tested) in records.items():
    arrays[f"{key}/{_SETTINGS}"] = np.array(json.dumps(settings))
    arrays[f"{key}/{_RATES}"] = np.array(json.dumps({n: r for n, (r, _) in tested.items()}))
    arrays.update({f"{key}/{name}": np.asarray(losses, np.float32)
                   for name, (_, losses) in tested.items()})
  atomic.replace(path, lambda partial: np.savez(partial, **arrays))


def checked_runs(tested):
  """name -> (rate, losses), only runs with a positive finite rate and finite 2-D float losses;
  and the names dropped."""
  good = {}
  for name, (rate, losses) in tested.items():
    losses = np.asarray(losses)
    if (isinstance(rate, (int, float)) and 0 < rate < math.inf and losses.ndim == 2
        and np.issubdtype(losses.dtype, np.floating) and np.all(np.isfinite(losses))):
      good[name] = (float(rate), losses)
  return good, sorted(set(tested) - set(good))


def read_test_runs(path, settings):
  """Baseline name -> (rate, losses) of test runs kept under the same `settings`, else {}."""
  try:
    record = read_run_records(path).get(digest(_plain(settings)))
  except (OSError, ValueError):
    return {}
  if record is None or record[0] != _plain(settings):
    return {}
  return checked_runs(record[1])[0]


def write_test_runs(path, settings, tested):
  """Keeps name -> (rate, losses) under `settings`, beside the records of other settings."""
  try:
    records = read_run_records(path)
  except (OSError, ValueError):
    records = {}
  settings = _plain(settings)
  records[digest(settings)] = (settings, tested)
  write_run_records(path, records)


# --- The store ----------------------------------------------------------------------------------

class Store:
  """The kept tuning and test runs of one comparison setting, in `directory`.

  Args:
    directory: where tuning.json and baseline_runs.npz are kept (an existing, writable directory).
    tuning_settings: what a rate's score depends on (instances, tuning epochs and steps, grid).
    test_settings: what a baseline's test runs depend on (instances, test epochs, steps).

  Attributes:
    tuned: name -> rate already tuned under tuning_settings.
    scored: name -> {rate: score} measured by sweeps under tuning_settings.
    tested: name -> (rate, losses) of test runs made under test_settings.
    warnings: one line per kept file or entry that was damaged and is being redone.
    tuning_path, runs_path: the two files.
  """

  def __init__(self, directory, tuning_settings, test_settings):
    self.tuning_path = os.path.join(directory, TUNING_FILE)
    self.runs_path = os.path.join(directory, RUNS_FILE)
    self._tuning_settings = _plain(tuning_settings)
    self._test_settings = _plain(test_settings)
    self.warnings = []
    self._other_tuning = self._read(read_tuning_records, self.tuning_path, [])
    record = _find(self._other_tuning, self._tuning_settings) or {}
    self._other_tuning = [r for r in self._other_tuning if r is not record]
    self.tuned, bad_rates = checked_rates(record.get("rates"))
    self.scored, bad_scores = checked_scores(record.get("scores"))
    if bad_rates:
      self.warnings.append(f"{self.tuning_path}: the tuned rates of {', '.join(bad_rates)} are "
                           "not positive finite numbers; ignored, tuning those again")
    if bad_scores:
      self.warnings.append(f"{self.tuning_path}: {bad_scores} scores are NaN or not numbers; "
                           "ignored, measuring those rates again")
    self._other_runs = self._read(read_run_records, self.runs_path, {})
    key = digest(self._test_settings)
    kept = self._other_runs.pop(key, (None, {}))
    tested = kept[1] if kept[0] == self._test_settings else {}
    self.tested, bad_runs = checked_runs(tested)
    if bad_runs:
      self.warnings.append(f"{self.runs_path}: the test runs of {', '.join(bad_runs)} hold "
                           "non-finite losses or are not loss arrays; ignored, running them again")

  def _read(self, reader, path, empty):
    """reader(path), or `empty` when there is no file; a damaged file is moved aside."""
    try:
      return reader(path)
    except FileNotFoundError:
      return empty
    except (OSError, ValueError) as e:
      aside = path + ".damaged"
      try:
        os.replace(path, aside)
        where = f"moved it to {aside}"
      except OSError:
        where = "it will be replaced"
      self.warnings.append(f"{path} cannot be read ({e}); {where} and doing its work again")
      return empty

  def _write_tuning(self):
    scores = {name: {repr(float(rate)): score for rate, score in rates.items()}
              for name, rates in self.scored.items()}
    record = {"settings": self._tuning_settings, "rates": self.tuned, "scores": scores}
    write_tuning_records(self.tuning_path, [record] + self._other_tuning)

  def keep_tuned(self, name, rate):
    """Records that `name`'s tuning chose `rate` (evaluation.compare's on_tuned)."""
    self.tuned[name] = float(rate)
    self._write_tuning()

  def keep_score(self, name, rate, score):
    """Records one rate's score in `name`'s sweep (evaluation.compare's on_scored)."""
    self.scored.setdefault(name, {})[float(rate)] = float(score)
    self._write_tuning()

  def keep_tested(self, name, rate, losses):
    """Records `name`'s test runs at `rate` (evaluation.compare's on_tested)."""
    self.tested[name] = (float(rate), np.asarray(losses))
    records = dict(self._other_runs)
    records[digest(self._test_settings)] = (self._test_settings, self.tested)
    write_run_records(self.runs_path, records)
