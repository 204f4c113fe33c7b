"""Optimizees: the problems a learned optimizer is trained and tested on.

Each problem is functional, which is what TF2 wants: `init(seed)` draws parameters and problem
constants with stateless random ops, `sample_batches(seed, n)` draws n minibatches, and
`loss(params, constants, batch)` is a scalar. Nothing the loss reads changes behind its back, so a
compiled unroll is traced once. The problems and defaults are those of the reference
(deepmind/learning-to-learn, problems.py); the named configurations that pair them with networks
are in configs.py.
"""

import functools
import hashlib
import inspect

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

from learning_to_learn import datasets


NUM_CLASSES = datasets.NUM_CLASSES  # MNIST, Fashion-MNIST and CIFAR-10 alike


def _split_seed(seed, num):
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _check_positive(**values):
  for name, value in values.items():
    if int(value) != value or value <= 0:
      raise ValueError(f"{name}={value} must be a positive integer.")


def _with_autograph(method):
  """`method`, its Python control flow on tensors (`if`, `while` on a tensor) made graph ops by
  autograph when it is called in a graph; as it is when called eagerly. Converted at first use.
  """
  converted = None

  @functools.wraps(method)
  def call(*args, **kwargs):
    nonlocal converted
    if tf.executing_eagerly():
      return method(*args, **kwargs)
    if converted is None:
      try:
        converted = tf.autograph.to_graph(method)
      except Exception:  # pylint: disable=broad-except
        # No source to convert (a function made by exec, say): run as written, as tf.function's
        # autograph does.
        converted = method
    return converted(*args, **kwargs)

  return call


class Problem:
  """Base of every optimizee.

  The library traces its compiled functions without autograph (most of their tracing time), so a
  problem's methods run as written; those of a subclass defined outside this package are
  converted by autograph as `tf.function` would convert them: a user's loss may branch on a
  tensor with Python's `if`.

  Attributes:
    param_names: the names of the parameters `init` returns, in a fixed order.
  """

  param_names = ()

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if cls.__module__.split(".")[0] != __name__.split(".")[0]:
      for name in ("init", "sample_batches", "loss"):
        if inspect.isfunction(vars(cls).get(name)):  # not a staticmethod or classmethod
          setattr(cls, name, _with_autograph(vars(cls)[name]))

  def init(self, seed):
    """Returns (params: name -> tensor, constants: any nest) drawn from `seed` ([2] int32)."""
    raise NotImplementedError

  def sample_batches(self, seed, num_batches):
    """A nest of tensors with leading dimension num_batches; data-free problems return [n, 0]."""
    del seed
    return tf.zeros([num_batches, 0])

  def loss(self, params, constants, batch):
    raise NotImplementedError


class Simple(Problem):
  """f(x) = x^2 for a scalar x starting at 1 (the reference's `simple`)."""

  param_names = ("x",)

  def init(self, seed):
    del seed
    return {"x": tf.ones([])}, ()

  def loss(self, params, constants, batch):
    return tf.square(params["x"])


class SimpleMulti(Problem):
  """f(x) = sum_i x_i^2 over num_dims scalars x_0, x_1, ... each starting at 1."""

  def __init__(self, num_dims=2):
    _check_positive(num_dims=num_dims)
    self.param_names = tuple(f"x_{i}" for i in range(num_dims))

  def init(self, seed):
    del seed
    return {name: tf.ones([]) for name in self.param_names}, ()

  def loss(self, params, constants, batch):
    return tf.add_n([tf.square(params[name]) for name in self.param_names])


class Quadratic(Problem):
  """f(x) = mean_b ||W_b x_b - y_b||^2 over batch_size independent num_dims-dimensional problems.

  Shapes: x [batch_size, num_dims] ~ N(0, stddev^2); W [batch_size, num_dims, num_dims] and
  y [batch_size, num_dims] drawn once per epoch. The reference draws W and y uniform on [0, 1),
  the paper (section 3.1) IID Gaussian: `distribution` chooses.

  Args:
    batch_size: independent problems in one instance (reference: 128).
    num_dims: dimensions of each (reference and paper: 10).
    stddev: scale of the initial x (reference: 0.01).
    distribution: "uniform" (reference) or "gaussian" (paper).
  """

  param_names = ("x",)

  def __init__(self, batch_size=128, num_dims=10, stddev=0.01, distribution="uniform"):
    _check_positive(batch_size=batch_size, num_dims=num_dims)
    if stddev < 0:
      raise ValueError(f"stddev={stddev} must be non-negative (reference: 0.01).")
    if distribution not in ("uniform", "gaussian"):
      raise ValueError(f"distribution={distribution!r}; choose uniform (reference) or gaussian "
                       "(paper).")
    self.batch_size, self.num_dims, self.stddev = batch_size, num_dims, stddev
    self.distribution = distribution

  def init(self, seed):
    x_seed, w_seed, y_seed = _split_seed(seed, 3)
    b, d = self.batch_size, self.num_dims
    draw = (tf.random.stateless_uniform if self.distribution == "uniform"
            else tf.random.stateless_normal)
    x = tf.random.stateless_normal([b, d], x_seed, stddev=self.stddev)
    return {"x": x}, {"w": draw([b, d, d], w_seed), "y": draw([b, d], y_seed)}

  def loss(self, params, constants, batch):
    product = tf.linalg.matvec(constants["w"], params["x"])  # [batch_size, num_dims]
    return tf.reduce_mean(tf.reduce_sum(tf.square(product - constants["y"]), axis=1))


class Ensemble(Problem):
  """A weighted sum of problems; parameter names get a "problem_<i>/" prefix."""

  def __init__(self, problems, weights=None):
    if weights is not None and len(weights) != len(problems):
      raise ValueError(f"Ensemble: {len(weights)} weights for {len(problems)} problems; give one "
                       "weight per problem or none.")
    self.problems = list(problems)
    self.weights = list(weights) if weights is not None else [1.0] * len(self.problems)
    self.param_names = tuple(f"problem_{i}/{name}" for i, p in enumerate(self.problems)
                             for name in p.param_names)

  def init(self, seed):
    params, constants = {}, []
    for i, (problem, s) in enumerate(zip(self.problems, _split_seed(seed, len(self.problems)))):
      p, c = problem.init(s)
      params.update({f"problem_{i}/{name}": value for name, value in p.items()})
      constants.append(c)
    return params, tuple(constants)

  def sample_batches(self, seed, num_batches):
    return tuple(p.sample_batches(s, num_batches)
                 for p, s in zip(self.problems, _split_seed(seed, len(self.problems))))

  def loss(self, params, constants, batch):
    total = 0.0
    for i, problem in enumerate(self.problems):
      prefix = f"problem_{i}/"
      own = {name[len(prefix):]: v for name, v in params.items() if name.startswith(prefix)}
      total += self.weights[i] * problem.loss(own, constants[i], batch[i])
    return total


_ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu}


def _check_activation(activation):
  if activation not in _ACTIVATIONS:
    raise ValueError(f"activation {activation!r} is not supported; choose sigmoid or relu.")
  return _ACTIVATIONS[activation]


def _normal(shape, seed, stddev=0.01):
  # The reference initializes every weight and bias of its optimizees N(0, 0.01^2).
  return tf.random.stateless_normal(shape, seed, stddev=stddev)


def _tensor(array, dtype):
  """A tensor holding one copy of `array`.

  In eager TensorFlow 2.21 on CPU, tf.constant(array) keeps two copies of a NumPy array alive (see
  docs/performance.md, Memory); the output of an op on it is a single tensor of TF's own.
  """
  return tf.identity(tf.constant(array, dtype))


def _to_float(images):
  """uint8 pixels -> the float32 values in [0, 1] of datasets.PIXEL_VALUES, exactly; floats as is.

  In float32, grappler and XLA turn a division by 255 into a multiplication by its rounded inverse,
  which misses NumPy's quotient for pixels 3, 6, 7, 12, ... Grappler leaves `divide_no_nan` a
  division, exact in two passes over the pixels; XLA rewrites that too, but fuses the float64
  route into one loop (p / 255 repeats p's 8 bits, never near a float32 halfway point, so float64
  rounds to the float32 quotient). The test checks all 256 values eagerly, in graphs and under
  XLA. A lookup in PIXEL_VALUES is exact too, but TensorFlow's gather is slower
  (docs/performance.md).
  """
  if images.dtype != tf.uint8:
    return images
  if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
    return tf.cast(tf.cast(images, tf.float64) / 255.0, tf.float32)
  return tf.math.divide_no_nan(tf.cast(images, tf.float32), 255.0)


class _Classifier(Problem):
  """Shared by the image classifiers: minibatches drawn uniformly with replacement, softmax loss."""

  def __init__(self, dataset, batch_size):
    if batch_size <= 0:
      raise ValueError(f"batch_size={batch_size} must be positive (reference: 128).")
    self.batch_size = batch_size
    self._source, self._split = dataset.source, dataset.split
    # Data read from files stays uint8 here too, a quarter of float32's memory, and each
    # minibatch becomes floats as it is drawn (`_to_float`).
    if dataset.pixels is not None:
      self._images = _tensor(dataset.pixels, tf.uint8)
    else:
      self._images = _tensor(dataset.images, tf.float32)
    self._labels = _tensor(dataset.labels, tf.int32)

  @property
  def source(self):
    """Which data and split the minibatches come from (its Dataset's source), without a copy."""
    return self._source

  @property
  def data_digest(self):
    """A digest of the images and labels, so that a resumed run can tell it is the same data."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (self._images, self._labels):
      digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()

  @property
  def dataset(self):
    """The datasets.Dataset the minibatches are drawn from, made again from the tensors at each read.

    The tensors are the problem's only copy of the data: the NumPy arrays it was built from are
    not kept.
    """
    arrays = ({"pixels": self._images.numpy()} if self._images.dtype == tf.uint8
              else {"images": self._images.numpy()})
    return datasets.Dataset(labels=self._labels.numpy(), source=self._source, split=self._split,
                            **arrays)

  def sample_batches(self, seed, num_batches):
    num_examples = tf.shape(self._labels)[0]
    indices = tf.random.stateless_uniform([num_batches, self.batch_size], seed, 0, num_examples,
                                          dtype=tf.int32)
    return _to_float(tf.gather(self._images, indices)), tf.gather(self._labels, indices)

  def loss(self, params, constants, batch):
    images, labels = batch
    logits = self.logits(params, images)
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


class MLPClassifier(_Classifier):
  """An MLP on flattened images, softmax cross-entropy (the reference's `mnist`).

  Parameters "mlp/linear_<i>/w" [fan_in, fan_out] and "mlp/linear_<i>/b" [fan_out], all N(0, 0.01^2)
  as in the reference; the activation follows every layer but the last.

  Args:
    dataset: a datasets.Dataset.
    layers: hidden sizes (paper: (20,); generalization runs: (40,) and (20, 20)).
    activation: "sigmoid" (paper) or "relu".
    batch_size: minibatch size (reference: 128).
    num_classes: outputs; None: the dataset's num_classes (10, or k after
      datasets.restrict_labels), not read off the labels present, so that a small data file
      missing a class still builds the same network.
  """

  def __init__(self, dataset, layers=(20,), activation="sigmoid", batch_size=128,
               num_classes=None):
    super().__init__(dataset, batch_size)
    self._activation = _check_activation(activation)
    num_classes = dataset.num_classes if num_classes is None else num_classes
    _check_positive(num_classes=num_classes, **{f"layers[{i}]": s for i, s in enumerate(layers)})
    input_size = int(np.prod(dataset.image_shape))
    self._sizes = [input_size] + [int(s) for s in layers] + [int(num_classes)]
    self.param_names = tuple(f"mlp/linear_{i}/{f}" for i in range(len(self._sizes) - 1)
                             for f in ("w", "b"))

  def init(self, seed):
    seeds = _split_seed(seed, 2 * (len(self._sizes) - 1))
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(self._sizes[:-1], self._sizes[1:])):
      params[f"mlp/linear_{i}/w"] = _normal([fan_in, fan_out], seeds[2 * i])
      params[f"mlp/linear_{i}/b"] = _normal([fan_out], seeds[2 * i + 1])
    return params, ()

  def logits(self, params, images):
    outputs = tf.reshape(images, [tf.shape(images)[0], -1])  # [batch, H W C]
    num_layers = len(self._sizes) - 1
    for i in range(num_layers):
      outputs = tf.matmul(outputs, params[f"mlp/linear_{i}/w"]) + params[f"mlp/linear_{i}/b"]
      if i < num_layers - 1:
        outputs = self._activation(outputs)
    return outputs


def _batch_norm(inputs, beta, axes, epsilon=1e-3):
  # Normalized with the minibatch's own statistics, then offset by beta (no scale), as the
  # reference's Sonnet 1 BatchNorm does in training mode.
  mean, variance = tf.nn.moments(inputs, axes=axes)
  return (inputs - mean) * tf.math.rsqrt(variance + epsilon) + beta


def _mlp_batch_norm(i):
  # The reference builds a fresh Sonnet BatchNorm per hidden layer: batch_norm, batch_norm_1, ...
  return "mlp/batch_norm/beta" if i == 0 else f"mlp/batch_norm_{i}/beta"


class ConvClassifier(_Classifier):
  """The reference's `cifar10` network: conv layers then an MLP.

  Each conv layer: 5x5 SAME convolution + bias -> batch norm (offset beta) -> ReLU -> 2x2 max-pool.
  Then flatten -> linear -> batch norm -> ReLU ... -> linear to num_classes outputs. Parameter
  names follow the reference ("conv_net_2d/conv_2d_<i>/w", ".../batch_norm_<i>/beta",
  "mlp/linear_<i>/w", "mlp/batch_norm/beta"), which the `cifar-multi` net assignments use.

  num_classes: outputs; None: the dataset's num_classes (10, or k for CIFAR-k, the paper's label
  subsets), as for MLPClassifier.
  """

  def __init__(self, dataset, conv_channels=(16, 16, 16), linear_layers=(32,), batch_norm=True,
               batch_size=128, num_classes=None):
    super().__init__(dataset, batch_size)
    num_classes = dataset.num_classes if num_classes is None else num_classes
    _check_positive(num_classes=num_classes,
                    **{f"conv_channels[{i}]": c for i, c in enumerate(conv_channels)},
                    **{f"linear_layers[{i}]": s for i, s in enumerate(linear_layers)})
    self.conv_channels = [int(c) for c in conv_channels]
    self.linear_layers = [int(s) for s in linear_layers]
    self.batch_norm = batch_norm
    height, width, channels = dataset.image_shape
    shapes = {}
    for i, out in enumerate(self.conv_channels):
      shapes[f"conv_net_2d/conv_2d_{i}/w"] = [5, 5, channels, out]
      shapes[f"conv_net_2d/conv_2d_{i}/b"] = [out]
      if batch_norm:
        shapes[f"conv_net_2d/batch_norm_{i}/beta"] = [out]
      channels = out
      height, width = -(-height // 2), -(-width // 2)  # SAME 2x2 pooling, stride 2
    sizes = [height * width * channels] + self.linear_layers + [int(num_classes)]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      shapes[f"mlp/linear_{i}/w"] = [fan_in, fan_out]
      shapes[f"mlp/linear_{i}/b"] = [fan_out]
    if batch_norm:
      for i, size in enumerate(self.linear_layers):
        shapes[_mlp_batch_norm(i)] = [size]
    self._shapes = shapes
    self.param_names = tuple(shapes)

  def init(self, seed):
    seeds = _split_seed(seed, len(self._shapes))
    return {name: _normal(shape, s) for (name, shape), s in zip(self._shapes.items(), seeds)}, ()

  def logits(self, params, images):
    outputs = images
    for i in range(len(self.conv_channels)):
      prefix = f"conv_net_2d/conv_2d_{i}/"
      outputs = tf.nn.conv2d(outputs, params[prefix + "w"], 1, "SAME") + params[prefix + "b"]
      if self.batch_norm:
        outputs = _batch_norm(outputs, params[f"conv_net_2d/batch_norm_{i}/beta"], [0, 1, 2])
      outputs = tf.nn.max_pool2d(tf.nn.relu(outputs), 2, 2, "SAME")
    outputs = tf.reshape(outputs, [tf.shape(outputs)[0], -1])  # [batch, h w c]
    num_linear = len(self.linear_layers) + 1
    for i in range(num_linear):
      outputs = tf.matmul(outputs, params[f"mlp/linear_{i}/w"]) + params[f"mlp/linear_{i}/b"]
      if i < num_linear - 1:
        if self.batch_norm:
          outputs = _batch_norm(outputs, params[_mlp_batch_norm(i)], [0])
        outputs = tf.nn.relu(outputs)
    return outputs


def simple():
  return Simple()


def simple_multi_optimizer(num_dims=2):
  return SimpleMulti(num_dims)


def quadratic(batch_size=128, num_dims=10, stddev=0.01, distribution="uniform"):
  return Quadratic(batch_size, num_dims, stddev, distribution)


def ensemble(problems, weights=None):
  return Ensemble(problems, weights)


def _subset(dataset, labels):
  return dataset if labels is None else datasets.restrict_labels(dataset, labels)


def mnist(layers=(20,), activation="sigmoid", batch_size=128, mode="train", data_dir=None,
          labels=None):
  """The MNIST MLP; `mode` is the split; `labels`: keep only these digits (all if None)."""
  return MLPClassifier(_subset(datasets.load_mnist(data_dir, mode), labels), layers, activation,
                       batch_size)


def fashion_mnist(layers=(20,), activation="sigmoid", batch_size=128, mode="train",
                  data_dir=None, labels=None):
  return MLPClassifier(_subset(datasets.load_fashion_mnist(data_dir, mode), labels), layers,
                       activation, batch_size)


def cifar10(data_dir=None, conv_channels=(16, 16, 16), linear_layers=(32,), batch_norm=True,
            batch_size=128, mode="train", labels=None):
  """The reference's CIFAR-10 network; `labels`: CIFAR-k on these k labels (all if None)."""
  return ConvClassifier(_subset(datasets.load_cifar10(data_dir, mode), labels), conv_channels,
                        linear_layers, batch_norm, batch_size)
