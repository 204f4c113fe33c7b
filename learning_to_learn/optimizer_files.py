"""Trained-optimizer files: the one module that writes, reads, finds and builds from them.

A trained optimizer is a directory holding one `<key>.npz` per learned network, keyed as in the
meta-optimizer's net config (`path_for(directory, key)`). Each file holds the network's weights as
float arrays keyed `layer/field` ("lstm_0/w_gates", "linear/b") and, under `__config__`, the JSON
{"net": class name, "net_options": constructor options} that rebuilds its shape. Shipped
optimizers are such directories inside the package, found by name (`resolve`).

Training checkpoints (everything needed to resume a run) are another kind of file: see checkpoints.
"""

import glob
import json
import os
import zipfile
import zlib

import numpy as np

from learning_to_learn import networks

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
CONFIG_KEY = "__config__"
# The key of a problem's single learned network (configs.get_config names it so), hence the file
# that the Keras wrapper reads from a train.py --save_path.
SINGLE_NET_KEY = "cw"
SINGLE_NET_FILE = f"{SINGLE_NET_KEY}.npz"


# --- Names ------------------------------------------------------------------------------------

def path_for(directory, key):
  """The file of the network `key` in a trained-optimizer directory: `<directory>/<key>.npz`."""
  return os.path.join(directory, f"{key}.npz")


def shipped_names():
  """Names of the trained optimizers that ship inside the package."""
  if not os.path.isdir(SHIPPED_DIR):
    return []
  return sorted(n for n in os.listdir(SHIPPED_DIR) if os.path.isdir(os.path.join(SHIPPED_DIR, n)))


def resolve(path):
  """A directory of `<key>.npz` files, or a shipped optimizer's name -> that directory.

  A path names what is there: after `train.py --save_path=quadratic`, `quadratic` is that run's
  optimizer, not the shipped one of the same name (still reachable by its full path,
  `SHIPPED_DIR/quadratic`). A same-named directory holding no trained optimizer (a run before its
  first save, a data directory) is ambiguous and refused with the way to name each; only a name
  with no such directory beside it means the shipped optimizer.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if path not in shipped_names() or holds_optimizer(path):
      return path
    raise ValueError(_ambiguous(path, "the directory", "which holds no trained optimizer yet"))
  if path in shipped_names():
    return os.path.join(SHIPPED_DIR, path)
  shipped = ", ".join(shipped_names()) or "none yet"
  raise FileNotFoundError(f"no trained optimizer at {path!r}: give a directory written by "
                          f"train.py --save_path, or a shipped name ({shipped}).")


def _ambiguous(path, what, why):
  """The one line for a shipped name that is also a path here which is not a trained optimizer."""
  return (f"{path!r} is both a shipped optimizer and {what} {os.path.abspath(path)}, {why}: "
          f"for the shipped one pass {os.path.join(SHIPPED_DIR, path)}, for your own pass "
          f"{os.path.join('.', path)} once it holds one (train.py writes it at its first "
          "evaluation), or rename it.")


def is_optimizer_file(path):
  """Whether `path` is a readable .npz that holds a network config (what `save` writes)."""
  try:
    with zipfile.ZipFile(path) as archive:
      return f"{CONFIG_KEY}.npy" in archive.namelist()
  except (OSError, zipfile.BadZipFile):
    return False


def holds_optimizer(directory):
  """Whether `directory` holds at least one trained network file (`<key>.npz` with its config)."""
  return any(is_optimizer_file(f) for f in glob.glob(os.path.join(glob.escape(directory),
                                                                   "*.npz")))


def single_net_file(source, argument="checkpoint"):
  """A shipped name, a directory holding cw.npz, or an .npz file -> the .npz file's path.

  `argument` is the caller's name for `source`, which the one-line errors quote.
  """
  if not isinstance(source, (str, os.PathLike)):
    raise ValueError(f"{argument}={source!r} is a {type(source).__name__}; pass a shipped "
                     "optimizer's name, a directory written by train.py --save_path, or an .npz "
                     "file written by optimizer_files.save.")
  path = os.fspath(source)
  # An existing file is that file, as a directory is in resolve; but a shipped name is never
  # silently replaced by a same-named file that is no trained network.
  if os.path.isfile(path):
    if path not in shipped_names() or is_optimizer_file(path):
      return path
    raise ValueError(f"{argument}=" + _ambiguous(path, "the file", "which is not a network "
                                                  "file written by optimizer_files.save"))
  try:
    directory = resolve(path)
  except FileNotFoundError:
    shipped = ", ".join(shipped_names()) or "none yet"
    raise FileNotFoundError(f"{argument}={path!r} is neither a shipped optimizer ({shipped}) nor "
                            "an existing directory or .npz file; pass one of those, e.g. the "
                            "--save_path of a train.py run.") from None
  except ValueError as e:  # a shipped name beside a same-named directory without an optimizer
    raise ValueError(f"{argument}={e}") from None
  net_file = os.path.join(directory, SINGLE_NET_FILE)
  if os.path.isfile(net_file):
    return net_file
  others = sorted(glob.glob(os.path.join(directory, "*.npz")))
  if others:
    raise FileNotFoundError(
        f"{argument}={path!r} holds {len(others)} networks, one per parameter group of the problem "
        f"it was trained on ({', '.join(os.path.basename(f) for f in others)}), and this takes "
        f"one: pass one of those files, e.g. {others[-1]!r}.")
  raise FileNotFoundError(f"{argument}={path!r} is a directory without {SINGLE_NET_FILE}; pass "
                          "the --save_path of a train.py run that trained a coordinatewise "
                          "network, or the .npz file itself.")


# --- Array keys -------------------------------------------------------------------------------

def flat(weights):
  """{"lstm_0": {"w_gates": a}} -> {"lstm_0/w_gates": a}, the keys a file holds."""
  return {f"{layer}/{field}": value for layer, fields in weights.items()
          for field, value in fields.items()}


def nested(arrays):
  """{"lstm_0/w_gates": a} -> {"lstm_0": {"w_gates": a}}, the form `initializer=` accepts."""
  weights = {}
  for key, value in arrays.items():
    layer, field = key.split("/")
    weights.setdefault(layer, {})[field] = value
  return weights


# --- Writing and reading ----------------------------------------------------------------------

def save(network, path):
  """Writes the network's weights and its class and options to `path` (a .npz file)."""
  config = {"net": type(network).__name__, "net_options": network.get_config()}
  # Written beside the target, then renamed over it: a crash mid-write leaves the old file intact.
  partial = f"{path}.partial"
  with open(partial, "wb") as f:  # an open file keeps np.savez from appending ".npz"
    np.savez(f, **{CONFIG_KEY: np.array(json.dumps(config))}, **flat(networks.weights(network)))
  os.replace(partial, path)
  return path


def save_all(nets, directory):
  """Writes each learned network to `<directory>/<key>.npz`; returns key -> file."""
  os.makedirs(directory, exist_ok=True)
  return {key: save(net, path_for(directory, key))
          for key, net in nets.items() if net.trainable_variables}


def _read(path):
  try:
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  except FileNotFoundError:
    raise FileNotFoundError(f"no trained optimizer at {path}: train one with train.py "
                            "--save_path, or name a shipped one") from None
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise ValueError(f"cannot read trained optimizer {path} ({e}); it is not a file written by "
                     "learning_to_learn.optimizer_files.save: retrain or re-download it") from None


def _config_of(data, path):
  # data: what _read returned; None when the file holds weights alone.
  if CONFIG_KEY not in data:
    return None
  try:
    config = json.loads(str(data[CONFIG_KEY]))
  except ValueError as e:
    raise ValueError(f"{path} has a damaged network config ({e}); retrain, or restore the "
                     "file.") from None
  if (not isinstance(config, dict) or not isinstance(config.get("net"), str)
      or not isinstance(config.get("net_options"), dict)):
    raise ValueError(f"{path} has a network config without 'net' and 'net_options'; it was not "
                     "written by learning_to_learn.optimizer_files.save: retrain, or restore the file.")
  return config


def _weights_of(data, path):
  """The arrays of a file as the nested dict that `initializer=` accepts, checked finite."""
  arrays = {}
  for key, value in data.items():
    if key != CONFIG_KEY:
      if key.count("/") != 1:
        raise ValueError(f"{path} holds an array {key!r}, not 'layer/field': it is not a file "
                         "written by learning_to_learn.optimizer_files.save.")
      if np.issubdtype(value.dtype, np.number) and not np.all(np.isfinite(value)):
        raise ValueError(f"{path} holds {int(np.sum(~np.isfinite(value)))} NaN or infinite "
                         f"weights in {key!r}: it was saved from a diverged run or is damaged; "
                         "retrain, or use an earlier save.")
      arrays[key] = value
  return nested(arrays)


def read_weights(path):
  """The weights a file holds, as the nested dict that `initializer=` accepts."""
  return _weights_of(_read(path), path)


def read_config(path):
  """The {"net", "net_options"} saved with the weights, or None for a file of weights alone."""
  return _config_of(_read(path), path)


# --- Building ---------------------------------------------------------------------------------

def build(net, net_options, path):
  """The network `net` with the weights in `path`, and the options it was saved with if any.

  The file's options replace `net_options`: a network trained with output scale 0.1 must not be
  run with 0.01 because a caller assumed other settings.
  """
  return _build_from(net, net_options, _read(path), path)


def _build_from(net, net_options, data, path):
  """`build` on what `_read(path)` returned: the options and the weights of one read."""
  networks.check_name(net)
  config, saved = _config_of(data, path), _weights_of(data, path)
  net_options = dict(net_options)
  if config is not None:
    if config["net"] != net:
      raise ValueError(f"{path} holds a {config['net']}, not a {net}: load it with "
                       "networks.load, or name the class it was saved as.")
    net_options = dict(config["net_options"])
  if saved:  # hand-designed rules have no weights and take no initializer
    net_options["initializer"] = saved
  network = networks.build(net, net_options, source=path)
  if set(saved) != set(networks.weights(network)):
    raise ValueError(f"{path} holds layers {sorted(saved)} but {net} with options "
                     f"{net_options.get('layers')} has {sorted(networks.weights(network))}: the "
                     "checkpoint was trained for another network shape; build it with the same "
                     "layers.")
  return network


def network(net, net_options=(), net_path=None):
  """The network of a net config entry: `networks.factory`'s, or built from `net_path`'s file
  (its options and weights) when one is given."""
  if net_path is None:
    return networks.factory(net, net_options)
  return build(net, net_options, net_path)


def load(path):
  """Rebuilds the network a file holds, shape and weights."""
  data = _read(path)  # once: the class, its options and its weights
  config = _config_of(data, path)
  if config is None:
    raise ValueError(f"{path} holds weights but no network config, so it was not written by "
                     "optimizer_files.save; build the network yourself and pass net_path= to "
                     "factory.")
  return _build_from(config["net"], {}, data, path)  # the file's own options
