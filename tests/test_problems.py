"""Tests for problems.py and configs.py: the optimizees against NumPy re-implementations and closed
forms, the named configurations against the reference.

Every expected value here is computed without the code under test: losses and logits by NumPy
(float64) from the same parameters, gradients by their closed forms, configurations from the
reference's util.get_config, and data files written byte by byte.
"""

import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

import problems
from learning_to_learn import configs
from learning_to_learn import datasets

SEED = tf.constant([1, 2], tf.int32)
OTHER_SEED = tf.constant([3, 4], tf.int32)


def seed(a, b):
  return tf.constant([a, b], tf.int32)


def to_numpy(nest):
  return tf.nest.map_structure(lambda t: np.asarray(t, np.float64), nest)


# --- NumPy re-implementations --------------------------------------------------------------------


def np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_relu(x):
  return np.maximum(x, 0.0)


NP_ACTIVATIONS = {"sigmoid": np_sigmoid, "relu": np_relu}


def np_softmax_xent(logits, labels):
  """Mean softmax cross-entropy, via a stable log-sum-exp."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  return -np.mean(log_probs[np.arange(len(labels)), labels])


def np_mlp(params, images, num_layers, activation):
  """Flatten, then linear layers with `activation` after every one but the last."""
  outputs = np.asarray(images, np.float64).reshape(len(images), -1)
  for i in range(num_layers):
    outputs = outputs @ params[f"mlp/linear_{i}/w"] + params[f"mlp/linear_{i}/b"]
    if i < num_layers - 1:
      outputs = NP_ACTIVATIONS[activation](outputs)
  return outputs


def np_conv2d_same_5x5(x, w):
  """Naive stride-1 SAME cross-correlation (what tf.nn.conv2d computes) for a 5x5 kernel.

  Args:
    x: [N, H, W, Cin].
    w: [5, 5, Cin, Cout].

  Returns:
    [N, H, W, Cout].
  """
  n, h, wd, _ = x.shape
  kh, kw, _, cout = w.shape
  assert (kh, kw) == (5, 5)
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  out = np.zeros((n, h, wd, cout))
  for b in range(n):
    for i in range(h):
      for j in range(wd):
        patch = padded[b, i:i + 5, j:j + 5, :]  # [5, 5, Cin]
        out[b, i, j, :] = np.tensordot(patch, w, axes=([0, 1, 2], [0, 1, 2]))
  return out


def np_batch_norm(x, beta, axes, epsilon=1e-3):
  mean = x.mean(axis=axes, keepdims=True)
  var = x.var(axis=axes, keepdims=True)  # biased, like tf.nn.moments
  return (x - mean) / np.sqrt(var + epsilon) + beta


def np_max_pool_2x2_same(x):
  """2x2 max pool, stride 2, SAME: odd sizes get one padded (ignored) row/column at the end."""
  n, h, w, c = x.shape
  out_h, out_w = -(-h // 2), -(-w // 2)
  padded = np.full((n, 2 * out_h, 2 * out_w, c), -np.inf)
  padded[:, :h, :w, :] = x
  return padded.reshape(n, out_h, 2, out_w, 2, c).max(axis=(2, 4))


def np_conv_net(params, images, num_conv, num_hidden_linear, batch_norm):
  """The reference cifar10 network written again: conv blocks, flatten, MLP."""
  x = np.asarray(images, np.float64)
  for i in range(num_conv):
    prefix = f"conv_net_2d/conv_2d_{i}/"
    x = np_conv2d_same_5x5(x, params[prefix + "w"]) + params[prefix + "b"]
    if batch_norm:
      x = np_batch_norm(x, params[f"conv_net_2d/batch_norm_{i}/beta"], (0, 1, 2))
    x = np_max_pool_2x2_same(np_relu(x))
  x = x.reshape(len(x), -1)
  for i in range(num_hidden_linear + 1):
    x = x @ params[f"mlp/linear_{i}/w"] + params[f"mlp/linear_{i}/b"]
    if i < num_hidden_linear:
      if batch_norm:
        # One Sonnet BatchNorm per hidden layer: mlp/batch_norm, mlp/batch_norm_1, ...
        name = "mlp/batch_norm" if i == 0 else f"mlp/batch_norm_{i}"
        x = np_batch_norm(x, params[name + "/beta"], (0,))
      x = np_relu(x)
  return x


def random_params(shapes, rng, scale=0.5):
  """Parameters of O(1) size so activations and pooling are actually exercised."""
  return {name: (scale * rng.normal(size=shape)).astype(np.float32)
          for name, shape in shapes.items()}


# --- Synthetic datasets ---------------------------------------------------------------------------


def make_dataset(num, height, width, channels, labels, seed_=0):
  """A Dataset of distinct random images in [0, 1) with the given labels."""
  rng = np.random.default_rng(seed_)
  images = rng.random((num, height, width, channels)).astype(np.float32)
  return datasets.Dataset(images=images, labels=np.asarray(labels, np.int32),
                          source="synthetic", split="train")


@pytest.fixture
def mlp_dataset():
  """50 random 4x4x1 images, labels in 0..2 (all three present)."""
  labels = np.random.default_rng(1).integers(0, 3, 50)
  labels[:3] = [0, 1, 2]
  return make_dataset(50, 4, 4, 1, labels)


@pytest.fixture
def conv_dataset():
  """8 random 8x8x3 images whose labels reach 9, so there are 10 classes."""
  return make_dataset(8, 8, 8, 3, [0, 1, 2, 3, 4, 5, 6, 9], seed_=2)


def write_cifar_bin(directory, num_records=20):
  """Writes data_batch_1.bin: records of 1 label byte + 3072 pixel bytes (R, G, B planes)."""
  rng = np.random.default_rng(3)
  records = []
  for k in range(num_records):
    records.append(bytes([k % 10]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes())
  with open(os.path.join(directory, "data_batch_1.bin"), "wb") as f:
    f.write(b"".join(records))


def write_fashion_idx(directory, num=12):
  """Writes gzipped train IDX files: 0,0,8,ndim, big-endian dims, uint8 data."""
  rng = np.random.default_rng(4)
  arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (num, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte.gz": (np.arange(num) % 10).astype(np.uint8)}
  for name, array in arrays.items():
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        ">%dI" % array.ndim, *array.shape)
    with open(os.path.join(directory, name), "wb") as f:
      f.write(gzip.compress(header + array.tobytes()))


# --- Quadratic ------------------------------------------------------------------------------------


def np_quadratic_loss(w, x, y):
  residual = np.einsum("bij,bj->bi", w, x) - y
  return np.mean(np.sum(residual ** 2, axis=1))


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_quadratic_init_shapes(distribution):
  params, constants = problems.Quadratic(distribution=distribution).init(SEED)
  assert problems.Quadratic.param_names == ("x",)
  assert set(params) == {"x"}
  assert params["x"].shape == (128, 10)
  assert constants["w"].shape == (128, 10, 10)
  assert constants["y"].shape == (128, 10)
  assert params["x"].dtype == tf.float32


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_quadratic_loss_matches_numpy(distribution):
  problem = problems.Quadratic(batch_size=16, num_dims=5, distribution=distribution)
  params, constants = problem.init(SEED)
  c = to_numpy(constants)
  # At the initial x and at an x of O(1) size, where every term of W x matters.
  x_big = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
  for x in (params["x"], tf.constant(x_big)):
    loss = problem.loss({"x": x}, constants, problem.sample_batches(SEED, 1)[0])
    assert loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), np_quadratic_loss(c["w"], np.asarray(x, np.float64),
                                                               c["y"]), rtol=1e-5)


def test_quadratic_loss_hand_computed():
  # W = [[1, 2], [3, 4]], x = [1, 1], y = [0, 1]: W x - y = [3, 6], squared norm 45.
  # Second problem: W = I, x = [2, 0], y = [0, 0]: squared norm 4. Mean: 24.5.
  problem = problems.Quadratic(batch_size=2, num_dims=2)
  constants = {"w": tf.constant([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0], [0.0, 1.0]]]),
               "y": tf.constant([[0.0, 1.0], [0.0, 0.0]])}
  loss = problem.loss({"x": tf.constant([[1.0, 1.0], [2.0, 0.0]])}, constants, None)
  assert loss.numpy() == pytest.approx(24.5)


def test_quadratic_gradient_closed_form():
  batch_size = 8
  problem = problems.Quadratic(batch_size=batch_size, num_dims=4, distribution="gaussian")
  params, constants = problem.init(SEED)
  x = tf.constant(np.random.default_rng(1).normal(size=(batch_size, 4)).astype(np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = problem.loss({"x": x}, constants, None)
  grad = tape.gradient(loss, x).numpy()
  c, xn = to_numpy(constants), x.numpy().astype(np.float64)
  for i in range(batch_size):
    w_i = c["w"][i]
    want = 2.0 * w_i.T @ (w_i @ xn[i] - c["y"][i]) / batch_size
    np.testing.assert_allclose(grad[i], want, rtol=1e-4, atol=1e-6)


def test_quadratic_uniform_is_in_unit_interval():
  _, constants = problems.Quadratic(distribution="uniform").init(SEED)
  for name in ("w", "y"):
    values = constants[name].numpy()
    assert values.min() >= 0.0 and values.max() < 1.0
    # 12,800 uniform draws: mean 1/2, std 1/sqrt(12).
    assert values.mean() == pytest.approx(0.5, abs=0.05)
    assert values.std() == pytest.approx(12 ** -0.5, rel=0.1)


def test_quadratic_gaussian_has_negative_values():
  _, constants = problems.Quadratic(distribution="gaussian").init(SEED)
  for name in ("w", "y"):
    values = constants[name].numpy()
    assert values.min() < 0.0
    assert values.mean() == pytest.approx(0.0, abs=0.1)
    assert values.std() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("stddev", [0.01, 0.5])
def test_quadratic_x_stddev(stddev):
  params, _ = problems.Quadratic(stddev=stddev).init(SEED)
  x = params["x"].numpy()
  assert x.std() == pytest.approx(stddev, rel=0.15)
  assert abs(x.mean()) < 0.2 * stddev


def test_quadratic_seeds():
  problem = problems.Quadratic()
  a, b, c = problem.init(SEED), problem.init(tf.constant([1, 2], tf.int32)), problem.init(
      OTHER_SEED)
  for got_a, got_b, got_c in zip(tf.nest.flatten(a), tf.nest.flatten(b), tf.nest.flatten(c)):
    np.testing.assert_array_equal(got_a.numpy(), got_b.numpy())
    assert not np.allclose(got_a.numpy(), got_c.numpy())
  # x, W and y come from different streams of one seed.
  assert not np.allclose(a[1]["w"].numpy()[:, 0, :], a[1]["y"].numpy())


def test_quadratic_bad_distribution():
  with pytest.raises(ValueError, match="distribution"):
    problems.Quadratic(distribution="normal")


def test_data_free_problems_sample_empty_batches():
  for problem in (problems.Quadratic(), problems.Simple(), problems.SimpleMulti()):
    batches = problem.sample_batches(SEED, 3)
    assert tuple(batches.shape) == (3, 0)


# --- Simple, SimpleMulti --------------------------------------------------------------------------


def test_simple():
  problem = problems.Simple()
  params, constants = problem.init(SEED)
  assert problem.param_names == ("x",)
  assert set(params) == {"x"} and params["x"].shape == ()
  assert params["x"].numpy() == 1.0
  assert problem.loss(params, constants, None).numpy() == 1.0
  x = tf.constant(-3.0)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = problem.loss({"x": x}, constants, None)
  assert loss.numpy() == 9.0
  assert tape.gradient(loss, x).numpy() == -6.0


@pytest.mark.parametrize("num_dims", [2, 3])
def test_simple_multi(num_dims):
  problem = problems.SimpleMulti(num_dims)
  names = tuple(f"x_{i}" for i in range(num_dims))
  assert problem.param_names == names
  params, constants = problem.init(SEED)
  assert set(params) == set(names)
  assert all(params[n].shape == () and params[n].numpy() == 1.0 for n in names)
  assert problem.loss(params, constants, None).numpy() == float(num_dims)
  # x_i = i + 1: sum of squares 1 + 4 (+ 9).
  values = {n: tf.constant(float(i + 1)) for i, n in enumerate(names)}
  want = sum((i + 1) ** 2 for i in range(num_dims))
  assert problem.loss(values, constants, None).numpy() == want


def test_simple_multi_default_has_two_dims():
  assert problems.SimpleMulti().param_names == ("x_0", "x_1")


# --- Ensemble -------------------------------------------------------------------------------------


def test_ensemble_names_and_weighted_loss():
  quad = problems.Quadratic(batch_size=4, num_dims=3, distribution="gaussian")
  simple = problems.Simple()
  ensemble = problems.Ensemble([quad, simple], weights=[0.5, 2.0])
  assert ensemble.param_names == ("problem_0/x", "problem_1/x")
  params, constants = ensemble.init(SEED)
  assert set(params) == {"problem_0/x", "problem_1/x"}
  assert params["problem_0/x"].shape == (4, 3) and params["problem_1/x"].shape == ()
  batch = ensemble.sample_batches(SEED, 2)
  params = {"problem_0/x": tf.constant(np.random.default_rng(2).normal(size=(4, 3)), tf.float32),
            "problem_1/x": tf.constant(-1.5)}
  loss = ensemble.loss(params, constants, tf.nest.map_structure(lambda t: t[0], batch))
  c = to_numpy(constants[0])
  want = (0.5 * np_quadratic_loss(c["w"], params["problem_0/x"].numpy().astype(np.float64),
                                  c["y"]) + 2.0 * 1.5 ** 2)
  np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5)


def test_ensemble_default_weights_and_many_parts():
  # With 11 parts "problem_1/" must not also pick up "problem_10/..." parameters.
  parts = [problems.Simple() for _ in range(11)]
  ensemble = problems.Ensemble(parts)
  assert ensemble.param_names == tuple(f"problem_{i}/x" for i in range(11))
  params, constants = ensemble.init(SEED)
  batch = tf.nest.map_structure(lambda t: t[0], ensemble.sample_batches(SEED, 1))
  assert len(batch) == 11
  assert ensemble.loss(params, constants, batch).numpy() == 11.0
  params = {f"problem_{i}/x": tf.constant(float(i)) for i in range(11)}
  want = sum(i ** 2 for i in range(11))
  assert ensemble.loss(params, constants, batch).numpy() == want


def test_ensemble_parts_get_different_seeds():
  quad = problems.Quadratic(batch_size=4, num_dims=3)
  params, constants = problems.Ensemble([quad, quad]).init(SEED)
  assert not np.allclose(params["problem_0/x"].numpy(), params["problem_1/x"].numpy())
  assert not np.allclose(constants[0]["w"].numpy(), constants[1]["w"].numpy())


@pytest.mark.parametrize("weights", [[1.0], [1.0, 2.0, 3.0]], ids=["too_few", "too_many"])
def test_ensemble_wrong_weight_count(weights):
  with pytest.raises(ValueError, match="weight"):
    problems.Ensemble([problems.Simple(), problems.Simple()], weights=weights)


# --- MLPClassifier --------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [(5,), (6, 4)], ids=["one_hidden", "two_hidden"])
def test_mlp_param_names_and_shapes(mlp_dataset, layers):
  problem = problems.MLPClassifier(mlp_dataset, layers=layers, batch_size=8, num_classes=3)
  sizes = [16] + list(layers) + [3]
  want = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    want[f"mlp/linear_{i}/w"] = (fan_in, fan_out)
    want[f"mlp/linear_{i}/b"] = (fan_out,)
  assert set(problem.param_names) == set(want)
  params, constants = problem.init(SEED)
  assert {name: tuple(v.shape) for name, v in params.items()} == want
  assert constants == ()


def test_mlp_init_stddev(mlp_dataset):
  problem = problems.MLPClassifier(mlp_dataset, layers=(500,), batch_size=8, num_classes=3)
  params, _ = problem.init(SEED)
  w = np.concatenate([params[n].numpy().ravel() for n in params if n.endswith("/w")])
  b = np.concatenate([params[n].numpy().ravel() for n in params if n.endswith("/b")])
  assert w.std() == pytest.approx(0.01, rel=0.1) and abs(w.mean()) < 0.002
  assert b.std() == pytest.approx(0.01, rel=0.2) and abs(b.mean()) < 0.003
  # Each tensor has its own stream: not all the same draw.
  assert not np.allclose(params["mlp/linear_0/b"].numpy()[:3], params["mlp/linear_1/b"].numpy())


def test_mlp_init_is_deterministic_per_seed(mlp_dataset):
  problem = problems.MLPClassifier(mlp_dataset, layers=(5,), batch_size=8)
  a, b, c = problem.init(SEED)[0], problem.init(seed(1, 2))[0], problem.init(OTHER_SEED)[0]
  for name in problem.param_names:
    np.testing.assert_array_equal(a[name].numpy(), b[name].numpy())
    assert not np.allclose(a[name].numpy(), c[name].numpy())


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("layers", [(5,), (6, 4)], ids=["one_hidden", "two_hidden"])
def test_mlp_logits_and_loss_match_numpy(mlp_dataset, layers, activation):
  problem = problems.MLPClassifier(mlp_dataset, layers=layers, activation=activation,
                                   batch_size=8, num_classes=3)
  shapes = {name: v.shape for name, v in problem.init(SEED)[0].items()}
  params = random_params(shapes, np.random.default_rng(5), scale=1.0)
  images, labels = mlp_dataset.images[:10], mlp_dataset.labels[:10]
  tf_params = {k: tf.constant(v) for k, v in params.items()}
  logits = problem.logits(tf_params, tf.constant(images))
  want = np_mlp(to_numpy(params), images, len(layers) + 1, activation)
  assert logits.shape == (10, 3)
  np.testing.assert_allclose(logits.numpy(), want, rtol=1e-5, atol=1e-5)
  loss = problem.loss(tf_params, (), (tf.constant(images), tf.constant(labels)))
  np.testing.assert_allclose(loss.numpy(), np_softmax_xent(want, labels), rtol=1e-5)


def test_mlp_activations_differ(mlp_dataset):
  # Guards the test above: with these params sigmoid and relu give different logits.
  shapes = {name: v.shape for name, v in problems.MLPClassifier(
      mlp_dataset, layers=(5,)).init(SEED)[0].items()}
  params = to_numpy(random_params(shapes, np.random.default_rng(5), scale=1.0))
  images = mlp_dataset.images[:10]
  assert not np.allclose(np_mlp(params, images, 2, "sigmoid"), np_mlp(params, images, 2, "relu"))


def test_mlp_sample_batches_are_dataset_rows(mlp_dataset):
  problem = problems.MLPClassifier(mlp_dataset, layers=(5,), batch_size=7)
  images, labels = problem.sample_batches(SEED, 3)
  assert images.shape == (3, 7, 4, 4, 1) and images.dtype == tf.float32
  assert labels.shape == (3, 7) and labels.dtype == tf.int32
  flat_images = images.numpy().reshape(21, -1)
  flat_labels = labels.numpy().ravel()
  dataset_rows = mlp_dataset.images.reshape(50, -1)
  for image, label in zip(flat_images, flat_labels):
    matches = np.flatnonzero(np.all(dataset_rows == image, axis=1))
    assert len(matches) == 1, "a sampled image is not a row of the dataset"
    assert mlp_dataset.labels[matches[0]] == label, "image and label come from different rows"


def test_mlp_sample_batches_cover_every_row(mlp_dataset):
  # 1,000 draws with replacement from 50 rows: each row (first and last included) is missed with
  # probability (49/50)^1000 ~ 2e-9.
  problem = problems.MLPClassifier(mlp_dataset, layers=(5,), batch_size=50)
  images, _ = problem.sample_batches(SEED, 20)
  flat = images.numpy().reshape(1000, -1)
  rows = mlp_dataset.images.reshape(50, -1)
  seen = {int(np.flatnonzero(np.all(rows == image, axis=1))[0]) for image in flat}
  assert seen == set(range(50))


def test_mlp_sample_batches_deterministic_per_seed(mlp_dataset):
  problem = problems.MLPClassifier(mlp_dataset, layers=(5,), batch_size=7)
  a, b, c = (problem.sample_batches(s, 3) for s in (SEED, seed(1, 2), OTHER_SEED))
  np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
  np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
  assert not np.array_equal(a[0].numpy(), c[0].numpy())


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_uint8_pixels_sample_the_floats_of_the_float_path(mode):
  # The fast path (uint8 pixels, floats made per minibatch) against the plain one (the float
  # images NumPy computes, pixels / 255): the same minibatches, bit for bit, under XLA too.
  rng = np.random.default_rng(3)
  # Every image holds each of the 256 pixel values once, so every minibatch checks them all.
  pixels = np.stack([rng.permutation(256) for _ in range(20)]).astype(np.uint8)
  pixels = pixels.reshape(20, 16, 16, 1)
  labels = np.arange(20, dtype=np.int32) % 10
  fast = problems.MLPClassifier(datasets.Dataset(labels=labels, pixels=pixels), batch_size=9)
  plain = problems.MLPClassifier(
      datasets.Dataset(images=pixels.astype(np.float32) / np.float32(255), labels=labels),
      batch_size=9)
  def compiled(fn):
    # Without autograph, as the library traces: with it, one full run of the suite failed here
    # in autograph's conversion of sample_batches (it called the converted `dataset` property),
    # not reproduced since.
    return fn if mode == "eager" else tf.function(fn, jit_compile=mode == "xla", autograph=False)

  for fast_batch, plain_batch in zip(compiled(fast.sample_batches)(SEED, 3),
                                     compiled(plain.sample_batches)(SEED, 3)):
    assert fast_batch.dtype == plain_batch.dtype
    np.testing.assert_array_equal(fast_batch.numpy(), plain_batch.numpy())


def test_dataset_takes_images_or_pixels():
  labels = np.zeros(2, np.int32)
  pixels = np.array([0, 1, 128, 255], np.uint8).reshape(1, 2, 2, 1).repeat(2, axis=0)
  dataset = datasets.Dataset(labels=labels, pixels=pixels)
  assert dataset.image_shape == (2, 2, 1) and "images" not in vars(dataset)  # not made yet
  np.testing.assert_array_equal(dataset.images, pixels.astype(np.float32) / np.float32(255))
  with pytest.raises(ValueError, match="exactly one"):
    datasets.Dataset(images=dataset.images, labels=labels, pixels=pixels)
  with pytest.raises(ValueError, match="pixels of dtype float32"):
    datasets.Dataset(labels=labels, pixels=dataset.images)


def test_mlp_bad_activation(mlp_dataset):
  with pytest.raises(ValueError, match="tanh"):
    problems.MLPClassifier(mlp_dataset, activation="tanh")


@pytest.mark.parametrize("batch_size", [0, -4])
def test_classifier_bad_batch_size(mlp_dataset, conv_dataset, batch_size):
  with pytest.raises(ValueError, match="batch_size"):
    problems.MLPClassifier(mlp_dataset, batch_size=batch_size)
  with pytest.raises(ValueError, match="batch_size"):
    problems.ConvClassifier(conv_dataset, batch_size=batch_size)


# --- ConvClassifier -------------------------------------------------------------------------------


def conv_shapes(height, width, channels, conv_channels, linear_layers, num_classes, batch_norm):
  """The reference's parameter names and shapes, SAME 2x2 pooling after every conv layer."""
  shapes = {}
  for i, out in enumerate(conv_channels):
    shapes[f"conv_net_2d/conv_2d_{i}/w"] = (5, 5, channels, out)
    shapes[f"conv_net_2d/conv_2d_{i}/b"] = (out,)
    if batch_norm:
      shapes[f"conv_net_2d/batch_norm_{i}/beta"] = (out,)
    channels, height, width = out, (height + 1) // 2, (width + 1) // 2
  sizes = [height * width * channels] + list(linear_layers) + [num_classes]
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    shapes[f"mlp/linear_{i}/w"] = (fan_in, fan_out)
    shapes[f"mlp/linear_{i}/b"] = (fan_out,)
  if batch_norm:
    for i, size in enumerate(linear_layers):
      shapes["mlp/batch_norm/beta" if i == 0 else f"mlp/batch_norm_{i}/beta"] = (size,)
  return shapes


@pytest.mark.parametrize("batch_norm", [True, False], ids=["batch_norm", "no_batch_norm"])
def test_conv_param_names_and_shapes(conv_dataset, batch_norm):
  problem = problems.ConvClassifier(conv_dataset, conv_channels=(2, 3), linear_layers=(4,),
                                    batch_norm=batch_norm, batch_size=4)
  # 8x8 -> 4x4 -> 2x2, 3 channels: 12 inputs to the MLP.
  want = conv_shapes(8, 8, 3, (2, 3), (4,), 10, batch_norm)
  assert want["mlp/linear_0/w"] == (12, 4)
  assert set(problem.param_names) == set(want)
  params, constants = problem.init(SEED)
  assert {name: tuple(v.shape) for name, v in params.items()} == want
  assert constants == ()
  assert any("beta" in name for name in params) == batch_norm


def test_conv_odd_image_sizes_use_same_pooling():
  dataset = make_dataset(4, 7, 5, 3, [0, 1, 2, 9])
  problem = problems.ConvClassifier(dataset, conv_channels=(2, 3), linear_layers=(4,),
                                    batch_size=4)
  # 7x5 -> 4x3 -> 2x2: 2 * 2 * 3 = 12 inputs.
  params, _ = problem.init(SEED)
  assert tuple(params["mlp/linear_0/w"].shape) == (12, 4)
  assert problem.logits(params, tf.constant(dataset.images)).shape == (4, 10)


def test_conv_init_stddev_and_seeds(conv_dataset):
  problem = problems.ConvClassifier(conv_dataset, conv_channels=(8, 16), linear_layers=(32,),
                                    batch_size=4)
  params, _ = problem.init(SEED)
  values = np.concatenate([v.numpy().ravel() for v in params.values()])
  assert values.std() == pytest.approx(0.01, rel=0.1)
  again, _ = problem.init(seed(1, 2))
  other, _ = problem.init(OTHER_SEED)
  for name in problem.param_names:
    np.testing.assert_array_equal(params[name].numpy(), again[name].numpy())
    assert not np.allclose(params[name].numpy(), other[name].numpy())


@pytest.mark.parametrize("batch_norm", [True, False], ids=["batch_norm", "no_batch_norm"])
def test_conv_logits_and_loss_match_numpy(conv_dataset, batch_norm):
  problem = problems.ConvClassifier(conv_dataset, conv_channels=(2, 3), linear_layers=(4,),
                                    batch_norm=batch_norm, batch_size=4)
  shapes = {name: v.shape for name, v in problem.init(SEED)[0].items()}
  params = random_params(shapes, np.random.default_rng(6), scale=0.5)
  images, labels = conv_dataset.images, conv_dataset.labels
  tf_params = {k: tf.constant(v) for k, v in params.items()}
  logits = problem.logits(tf_params, tf.constant(images))
  want = np_conv_net(to_numpy(params), images, 2, 1, batch_norm)
  assert logits.shape == (8, 10)
  np.testing.assert_allclose(logits.numpy(), want, rtol=1e-4, atol=1e-4)
  loss = problem.loss(tf_params, (), (tf.constant(images), tf.constant(labels)))
  np.testing.assert_allclose(loss.numpy(), np_softmax_xent(want, labels), rtol=1e-4)


def test_conv_numpy_helpers_hand_computed():
  # Guards the NumPy reference itself: a delta kernel at the centre is the identity, one at
  # offset (0, 0) reads the pixel two up and two left (zero padding outside).
  x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
  centre = np.zeros((5, 5, 1, 1))
  centre[2, 2] = 1.0
  np.testing.assert_array_equal(np_conv2d_same_5x5(x, centre), x)
  corner = np.zeros((5, 5, 1, 1))
  corner[0, 0] = 1.0
  shifted = np_conv2d_same_5x5(x, corner)[0, :, :, 0]
  assert shifted[2, 2] == x[0, 0, 0, 0] and shifted[3, 3] == x[0, 1, 1, 0]
  assert shifted[1, 3] == 0.0
  pooled = np_max_pool_2x2_same(np.arange(15, dtype=np.float64).reshape(1, 3, 5, 1) - 20.0)
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[-14, -12, -11], [-9, -7, -6]])


def test_conv_two_hidden_linear_layers_of_different_sizes(conv_dataset):
  """linear_layers=(4, 6) with batch norm: one BatchNorm (its own beta) per hidden layer.

  The reference builds `tf.nn.relu(snt.BatchNorm()(x))` fresh on every activation call inside
  the MLP, i.e. "mlp/batch_norm/beta" [4] and "mlp/batch_norm_1/beta" [6]. problems.py declares a
  single "mlp/batch_norm/beta" of shape [linear_layers[-1]] = [6] and adds it after every hidden
  layer, so the first hidden layer ([batch, 4] + [6]) cannot even be evaluated.
  """
  problem = problems.ConvClassifier(conv_dataset, conv_channels=(2,), linear_layers=(4, 6),
                                    batch_norm=True, batch_size=4)
  want = conv_shapes(8, 8, 3, (2,), (4, 6), 10, True)
  params, _ = problem.init(SEED)
  assert {name: tuple(v.shape) for name, v in params.items()} == want, (
      "BUG problems.py ConvClassifier: one batch-norm beta per hidden linear layer expected "
      "(mlp/batch_norm/beta [4], mlp/batch_norm_1/beta [6])")
  np_params = random_params(want, np.random.default_rng(7))
  logits = problem.logits({k: tf.constant(v) for k, v in np_params.items()},
                          tf.constant(conv_dataset.images))
  np.testing.assert_allclose(
      logits.numpy(), np_conv_net(to_numpy(np_params), conv_dataset.images, 1, 2, True),
      rtol=1e-4, atol=1e-4)


def test_conv_sample_batches(conv_dataset):
  problem = problems.ConvClassifier(conv_dataset, conv_channels=(2, 3), linear_layers=(4,),
                                    batch_size=5)
  images, labels = problem.sample_batches(SEED, 2)
  assert images.shape == (2, 5, 8, 8, 3) and labels.shape == (2, 5)
  rows = conv_dataset.images.reshape(8, -1)
  for image, label in zip(images.numpy().reshape(10, -1), labels.numpy().ravel()):
    (row,) = np.flatnonzero(np.all(rows == image, axis=1))
    assert conv_dataset.labels[row] == label


# --- get_config -----------------------------------------------------------------------------------


def lstm_config(k, scale, net_path=None):
  return {"net": "CoordinateWiseDeepLSTM",
          "net_options": {"layers": (20, 20), "preprocess_name": "LogAndSign",
                          "preprocess_options": {"k": k}, "scale": scale},
          "net_path": net_path}


SIMPLE_CW = {"net": "CoordinateWiseDeepLSTM", "net_options": {"layers": (), "initializer": "zeros"},
             "net_path": None}


def test_problem_names():
  assert set(configs.PROBLEM_NAMES) == {"simple", "simple-multi", "quadratic", "mnist",
                                         "fashion_mnist", "cifar", "cifar-multi"}


def test_get_config_simple():
  problem, net_config, assignments = configs.get_config("simple")
  assert isinstance(problem, problems.Simple)
  assert net_config == {"cw": SIMPLE_CW}
  assert assignments is None


def test_get_config_simple_multi():
  problem, net_config, assignments = configs.get_config("simple-multi")
  assert isinstance(problem, problems.SimpleMulti)
  assert problem.param_names == ("x_0", "x_1")
  assert net_config["cw"] == SIMPLE_CW
  assert net_config["adam"]["net"] == "Adam"
  assert net_config["adam"]["net_options"] == {"learning_rate": 0.1}
  assert net_config["adam"].get("net_path") is None
  assert set(net_config) == {"cw", "adam"}
  assert [(key, list(names)) for key, names in assignments] == [("cw", ["x_0"]),
                                                                 ("adam", ["x_1"])]


@pytest.mark.parametrize("settings,k,scale,distribution",
                         [("reference", 5, 0.01, "uniform"), ("paper", 10, 0.1, "gaussian")])
def test_get_config_quadratic(settings, k, scale, distribution):
  problem, net_config, assignments = configs.get_config("quadratic", settings=settings)
  assert isinstance(problem, problems.Quadratic)
  assert (problem.batch_size, problem.num_dims, problem.stddev) == (128, 10, 0.01)
  assert problem.distribution == distribution
  assert net_config == {"cw": lstm_config(k, scale)}
  assert assignments is None
  _, constants = problem.init(SEED)
  assert (constants["w"].numpy().min() < 0) == (distribution == "gaussian")


@pytest.mark.parametrize("settings,k,scale", [("reference", 5, 0.01), ("paper", 10, 0.1)])
def test_get_config_mnist(settings, k, scale):
  problem, net_config, assignments = configs.get_config("mnist", settings=settings)
  assert isinstance(problem, problems.MLPClassifier)
  params, _ = problem.init(SEED)
  assert {n: tuple(v.shape) for n, v in params.items()} == {
      "mlp/linear_0/w": (784, 20), "mlp/linear_0/b": (20,),
      "mlp/linear_1/w": (20, 10), "mlp/linear_1/b": (10,)}
  assert problem.batch_size == 128
  assert problem.dataset.split == "train"
  assert problem.dataset.images.shape[1:] == (28, 28, 1)
  assert net_config == {"cw": lstm_config(k, scale)}
  assert assignments is None
  # Sigmoid hidden layer by default, checked against the NumPy forward pass.
  np_params = random_params({n: v.shape for n, v in params.items()}, np.random.default_rng(8))
  images = problem.dataset.images[:5]
  np.testing.assert_allclose(
      problem.logits({n: tf.constant(v) for n, v in np_params.items()}, tf.constant(images)),
      np_mlp(to_numpy(np_params), images, 2, "sigmoid"), rtol=1e-4, atol=1e-4)


def test_get_config_mnist_layers_and_activation():
  problem, _, _ = configs.get_config("mnist", layers=(40,), activation="relu", split="test")
  params, _ = problem.init(SEED)
  assert {n: tuple(v.shape) for n, v in params.items()} == {
      "mlp/linear_0/w": (784, 40), "mlp/linear_0/b": (40,),
      "mlp/linear_1/w": (40, 10), "mlp/linear_1/b": (10,)}
  assert problem.dataset.split == "test"
  np_params = random_params({n: v.shape for n, v in params.items()}, np.random.default_rng(9))
  images = problem.dataset.images[:5]
  logits = problem.logits({n: tf.constant(v) for n, v in np_params.items()}, tf.constant(images))
  np.testing.assert_allclose(logits, np_mlp(to_numpy(np_params), images, 2, "relu"),
                             rtol=1e-4, atol=1e-4)
  assert not np.allclose(logits, np_mlp(to_numpy(np_params), images, 2, "sigmoid"), atol=1e-2)


def test_get_config_fashion_mnist_from_data_dir(tmp_path):
  write_fashion_idx(tmp_path)
  problem, net_config, assignments = configs.get_config("fashion_mnist", data_dir=tmp_path)
  assert isinstance(problem, problems.MLPClassifier)
  # The train split: the 12 training images less their last sixth, the valid split.
  assert problem.dataset.images.shape == (10, 28, 28, 1)
  assert tuple(problem.init(SEED)[0]["mlp/linear_1/w"].shape) == (20, 10)
  assert net_config == {"cw": lstm_config(5, 0.01)}
  assert assignments is None


@pytest.mark.parametrize("name", ["simple", "simple-multi", "quadratic", "mnist"])
def test_get_config_net_path(name):
  _, net_config, _ = configs.get_config(name, path="/some/dir")
  assert net_config["cw"]["net_path"] == "/some/dir/cw.npz"
  if "adam" in net_config:
    assert net_config["adam"].get("net_path") is None


def test_get_config_unknown_problem_lists_valid_names():
  with pytest.raises(ValueError) as error:
    configs.get_config("mnsit")
  message = str(error.value)
  assert "mnsit" in message
  for name in configs.PROBLEM_NAMES:
    assert name in message


def test_get_config_unknown_settings():
  with pytest.raises(ValueError, match="settings"):
    configs.get_config("quadratic", settings="papper")


def test_get_config_cifar(tmp_path):
  write_cifar_bin(tmp_path)
  problem, net_config, assignments = configs.get_config("cifar", data_dir=tmp_path)
  assert isinstance(problem, problems.ConvClassifier)
  assert problem.dataset.images.shape == (20, 32, 32, 3)
  np.testing.assert_array_equal(problem.dataset.labels, np.arange(20) % 10)
  params, _ = problem.init(SEED)
  # 32x32 -> 16 -> 8 -> 4 after three poolings, 16 channels: 256 inputs to the MLP.
  assert {n: tuple(v.shape) for n, v in params.items()} == conv_shapes(
      32, 32, 3, (16, 16, 16), (32,), 10, True)
  assert net_config == {"cw": lstm_config(5, 0.01)}
  assert assignments is None
  images, labels = problem.sample_batches(SEED, 1)
  assert problem.loss(params, (), (images[0], labels[0])).shape == ()


def test_get_config_cifar_multi(tmp_path):
  write_cifar_bin(tmp_path)
  problem, net_config, assignments = configs.get_config(
      "cifar-multi", data_dir=tmp_path, path="/some/dir", settings="paper")
  assert net_config == {"conv": lstm_config(10, 0.1, "/some/dir/conv.npz"),
                        "fc": lstm_config(10, 0.1, "/some/dir/fc.npz")}
  assignments = dict(assignments)
  assert set(assignments) == {"conv", "fc"}
  conv_ws = {f"conv_net_2d/conv_2d_{i}/w" for i in range(3)}
  assert set(assignments["conv"]) == conv_ws and len(assignments["conv"]) == 3
  assert set(assignments["fc"]) == set(problem.param_names) - conv_ws
  assert len(assignments["fc"]) == len(problem.param_names) - 3
  assert "conv_net_2d/conv_2d_0/b" in assignments["fc"]
  assert "conv_net_2d/batch_norm_0/beta" in assignments["fc"]


def test_cifar_multi_builds_cifars_optimizee(tmp_path):
  # Baselines tuned on one serve the other (evaluate.py keys its tuned rates by optimizee_name).
  write_cifar_bin(tmp_path)
  one, _, _ = configs.get_config("cifar", data_dir=tmp_path)
  multi, _, _ = configs.get_config("cifar-multi", data_dir=tmp_path)
  assert configs.optimizee_name("cifar-multi") == configs.optimizee_name("cifar") == "cifar"
  for a, b in zip(one.init(SEED)[0].items(), multi.init(SEED)[0].items()):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
  np.testing.assert_array_equal(one.sample_batches(SEED, 2)[0], multi.sample_batches(SEED, 2)[0])
  assert [configs.optimizee_name(n) for n in ("simple", "simple-multi", "mnist")] == [
      "simple", "simple-multi", "mnist"]


def test_get_config_cifar_needs_data_dir():
  for name in ("cifar", "cifar-multi"):
    with pytest.raises(FileNotFoundError):
      configs.get_config(name)


@pytest.mark.parametrize("make, message", [
    (lambda: problems.Quadratic(batch_size=0), "batch_size"),
    (lambda: problems.Quadratic(num_dims=-3), "num_dims"),
    (lambda: problems.Quadratic(stddev=-1.0), "stddev"),
    (lambda: problems.SimpleMulti(num_dims=0), "num_dims"),
], ids=["quadratic_batch", "quadratic_dims", "quadratic_stddev", "simple_multi_dims"])
def test_constructors_reject_out_of_range_values(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_mlp_rejects_non_positive_layer(mlp_dataset):
  with pytest.raises(ValueError, match=r"layers\[1\]"):
    problems.MLPClassifier(mlp_dataset, layers=(5, 0))


# --- Label subsets (the paper's CIFAR-5 and CIFAR-2, Fig. 7) --------------------------------------


def test_conv_logits_of_a_label_subset_have_one_column_per_label(tmp_path):
  write_cifar_bin(tmp_path)  # labels 0..9, twice each
  subset = datasets.restrict_labels(datasets.load_cifar10(tmp_path), (0, 1, 2, 3, 4))
  problem = problems.ConvClassifier(subset, conv_channels=(2, 3), linear_layers=(4,),
                                    batch_size=4)
  want_shapes = conv_shapes(32, 32, 3, (2, 3), (4,), 5, True)
  params, _ = problem.init(SEED)
  assert {name: tuple(v.shape) for name, v in params.items()} == want_shapes
  np_params = random_params(want_shapes, np.random.default_rng(10))
  logits = problem.logits({k: tf.constant(v) for k, v in np_params.items()},
                          tf.constant(subset.images))
  assert logits.shape == (10, 5)
  np.testing.assert_allclose(logits.numpy(), np_conv_net(to_numpy(np_params), subset.images, 2, 1,
                                                         True), rtol=1e-4, atol=1e-4)


def test_classifiers_take_the_number_of_classes_from_the_dataset(mlp_dataset, conv_dataset):
  three = mlp_dataset._replace(num_classes=3)
  assert tuple(problems.MLPClassifier(three).init(SEED)[0]["mlp/linear_1/w"].shape) == (20, 3)
  assert tuple(problems.MLPClassifier(mlp_dataset).init(SEED)[0]["mlp/linear_1/w"].shape) == (
      20, 10)
  params, _ = problems.ConvClassifier(conv_dataset._replace(num_classes=2), conv_channels=(2,),
                                      linear_layers=(4,)).init(SEED)
  assert tuple(params["mlp/linear_1/w"].shape) == (4, 2)


def cifar_two_label_problem(tmp_path):
  """get_config's cifar on labels 7 and 2 of write_cifar_bin's file, and the labels NumPy expects:
  record k has label k % 10, so records 2, 7, 12, 17 are kept as 1, 0, 1, 0."""
  write_cifar_bin(tmp_path)
  problem, _, _ = configs.get_config("cifar", data_dir=tmp_path, labels=(7, 2))
  return problem, np.array([1, 0, 1, 0])


def test_two_label_loss_matches_numpy_cross_entropy(tmp_path):
  problem, want_labels = cifar_two_label_problem(tmp_path)
  np.testing.assert_array_equal(problem.dataset.labels, want_labels)
  shapes = {name: v.shape for name, v in problem.init(SEED)[0].items()}
  assert shapes["mlp/linear_1/w"] == (32, 2)
  params = random_params(shapes, np.random.default_rng(11))
  images = problem.dataset.images
  batch = (tf.constant(images), tf.constant(problem.dataset.labels))
  loss = problem.loss({k: tf.constant(v) for k, v in params.items()}, (), batch)
  want = np_softmax_xent(np_conv_net(to_numpy(params), images, 3, 1, True), want_labels)
  np.testing.assert_allclose(loss.numpy(), want, rtol=1e-4)
  # A zero output layer gives equal logits: the loss is log 2 whatever the images (closed form).
  params["mlp/linear_1/w"][:] = 0.0
  params["mlp/linear_1/b"][:] = 0.0
  loss = problem.loss({k: tf.constant(v) for k, v in params.items()}, (), batch)
  np.testing.assert_allclose(loss.numpy(), np.log(2.0), rtol=1e-6)


def test_get_config_labels_for_every_classifier(tmp_path):
  write_cifar_bin(tmp_path)
  write_fashion_idx(tmp_path)  # labels 0..9, then 0, 1; the last 2 are the valid split
  problem, _, assignments = configs.get_config("cifar-multi", data_dir=tmp_path,
                                                labels=configs.LABEL_SETS["lstm-sub"])
  np.testing.assert_array_equal(problem.dataset.labels, [0, 1, 2, 3, 4] * 2)  # 5..9 as 0..4
  assert tuple(problem.init(SEED)[0]["mlp/linear_1/w"].shape) == (32, 5)
  assert sorted(sum((list(names) for _, names in assignments), [])) == sorted(problem.param_names)
  problem, _, _ = configs.get_config("fashion_mnist", data_dir=tmp_path, labels=(9, 0, 4))
  np.testing.assert_array_equal(problem.dataset.labels, [1, 2, 0])
  assert tuple(problem.init(SEED)[0]["mlp/linear_1/w"].shape) == (20, 3)
  problem, _, _ = configs.get_config("mnist", labels=(3, 8), layers=(5,))
  assert set(np.unique(problem.dataset.labels)) == {0, 1}
  assert "labels 3,8 of 10" in problem.dataset.source
  assert tuple(problem.init(SEED)[0]["mlp/linear_1/w"].shape) == (5, 2)


@pytest.mark.parametrize("name", ["simple", "simple-multi", "quadratic"])
def test_get_config_labels_only_for_classifiers(name):
  with pytest.raises(ValueError, match=f"labels=0,1 .*not of {name};"):
    configs.get_config(name, labels=(0, 1))


def test_get_config_bad_labels_name_the_list(tmp_path):
  write_cifar_bin(tmp_path)
  with pytest.raises(ValueError, match="labels=0,0 repeats label 0"):
    configs.get_config("cifar", data_dir=tmp_path, labels=(0, 0))


@pytest.mark.parametrize("values, want", [
    (None, None), (["cifar5"], (0, 1, 2, 3, 4)), (["cifar2"], (0, 1)),
    (["lstm-sub"], (5, 6, 7, 8, 9)), (["3", " 1"], (3, 1)), (["12"], (12,))])
def test_parse_labels(values, want):
  assert configs.parse_labels(values) == want


def test_parse_labels_rejects_words():
  with pytest.raises(ValueError, match="labels=cifar7 must be comma-separated integers.*cifar5"):
    configs.parse_labels(["cifar7"])
