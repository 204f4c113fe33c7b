"""Keras 3 models as optimizees: a model's trainable variables are the problem's parameters.

`KerasProblem(build_model, (x, y), loss)` is a problems.Problem like the built-in ones, so
`training.meta_train` meta-trains on it and `evaluation.Evaluator` runs any rule on it. The model
runs through `model.stateless_call`, a pure function of the variables' values: nothing is assigned
during an unroll, and a compiled unroll is traced once.

Every instance starts from fresh weights: `init(seed)` draws each trainable variable again from its
layer's own initializer (GlorotUniform, HeNormal, RandomNormal, Orthogonal, ...), seeded by the
instance's seed; deterministic initializers (zeros, ones, LSTM's unit forget bias) give the values
the model was built with.

Non-trainable state:
- seed generators (Dropout, GaussianNoise, ...) get a fresh seed at every optimizee step, drawn
  from the minibatch's seed, so their masks differ from step to step and repeat for the same seed;
- BatchNormalization runs in training mode, normalizing by each minibatch's own statistics, as the
  reference's CIFAR network does: its moving statistics do not enter the training loss and are
  held at their initial values (Keras updates them as usual in `model.fit`);
- any other non-trainable variable is refused with a one-line error: the unroll carries no
  optimizee state besides the parameters, and such a variable would silently stay put.
"""

import fnmatch
import hashlib

import keras
import numpy as np
import tensorflow as tf

from learning_to_learn import problems

# A tf.data.Dataset is read into memory once; beyond this it is more than meta-training needs.
MAX_DATA_BYTES = 2 << 30


def _to_tensor(array):
  if isinstance(array, tf.Tensor):  # shared by several problems: no copy
    return tf.cast(array, tf.float32) if array.dtype == tf.float64 else array
  array = np.asarray(array)
  if array.dtype == np.float64:
    array = array.astype(np.float32)
  if array.dtype.kind not in "fiub":
    raise ValueError(f"KerasProblem data of dtype {array.dtype} cannot be a tensor; give numeric "
                     "arrays (encode strings as integer ids first).")
  return tf.constant(array)


def _batched(spec):
  """Whether a tf.data element spec has an unknown leading dimension, i.e. holds batches."""
  shapes = [s.shape for s in tf.nest.flatten(spec)]
  return all(len(s) > 0 and s[0] is None for s in shapes)


def _read_dataset(dataset):
  """(x, y) NumPy nests of a tf.data.Dataset of (x, y) examples or batches."""
  spec = dataset.element_spec
  if not isinstance(spec, tuple) or len(spec) != 2:
    raise ValueError("KerasProblem's tf.data.Dataset must yield (x, y) pairs; map it to that "
                     "form first, e.g. dataset.map(lambda d: (d['image'], d['label'])).")
  batched = _batched(spec)
  elements, size = [], 0
  for element in dataset.as_numpy_iterator():
    elements.append(element)
    size += sum(np.asarray(a).nbytes for a in tf.nest.flatten(element))
    if size > MAX_DATA_BYTES:
      raise ValueError(f"KerasProblem's tf.data.Dataset holds more than {MAX_DATA_BYTES >> 30} GB; "
                       "meta-training needs far less: pass dataset.take(n).")
  if not elements:
    raise ValueError("KerasProblem's tf.data.Dataset is empty; give it examples.")
  join = np.concatenate if batched else np.stack
  return tf.nest.map_structure(lambda *parts: join(parts), *elements)


_DIGESTS = {}  # id(tensor) -> (tensor, digest): tasks that share their data hash it once


def _digest(tensor):
  if id(tensor) not in _DIGESTS:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(tensor.dtype).encode() + str(tensor.shape).encode())
    digest.update(tensor.numpy().tobytes())
    _DIGESTS[id(tensor)] = (tensor, digest.hexdigest())
  return _DIGESTS[id(tensor)][1]


def _loss_function(loss):
  if isinstance(loss, str):
    try:
      return keras.losses.get(loss)
    except ValueError:
      raise ValueError(f"loss={loss!r} is not a Keras loss name; give one such as "
                       "'sparse_categorical_crossentropy' or 'mse', or a function.") from None
  if not callable(loss):
    raise ValueError(f"loss={loss!r} is not callable; give a Keras loss, its name, or a function "
                     "(y_true, y_pred) -> losses.")
  return loss


def _model_of(build_model):
  model = build_model if isinstance(build_model, keras.Model) else build_model()
  if not isinstance(model, keras.Model):
    raise ValueError(f"build_model returned {type(model).__name__}, not a keras.Model; return "
                     "the model it builds.")
  return model


def _variable_initializers(model):
  """id(variable) -> the Initializer its layer created it with, where the layer says so."""
  found = {}
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    for attribute, value in vars(layer).items():
      if not attribute.endswith("_initializer") or not isinstance(
          value, keras.initializers.Initializer):
        continue
      stem = attribute[:-len("_initializer")]
      for name in (stem, f"{stem}_kernel", f"_{stem}"):  # recurrent -> recurrent_kernel
        variable = getattr(layer, name, None)
        if isinstance(variable, keras.Variable):
          found.setdefault(id(variable), value)
          break
  # LSTM's unit forget bias is built by a function of its own, not the stored initializer.
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    if getattr(layer, "unit_forget_bias", False) and isinstance(
        getattr(layer, "bias", None), keras.Variable):
      found.pop(id(layer.bias), None)
  return found


def _seed_states(model):
  """The state variables of every seed generator the model's layers hold (Dropout's, ...)."""
  states = []
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    for generator in getattr(layer, "_seed_generators", []):
      if all(generator.state is not s for s in states):
        states.append(generator.state)
  return states


def _moving_statistics(model):
  found = []
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      found += [layer.moving_mean, layer.moving_variance]
  return found


class KerasProblem(problems.Problem):
  """A Keras 3 model, data and a loss as an optimizee.

  The loss of an instance is `loss(y, model(x, training=True))` averaged over a minibatch of
  `batch_size` examples drawn uniformly with replacement, plus the model's own losses
  (regularizers), as `model.fit` would descend.

  Args:
    build_model: a function returning a keras.Model (called once, here), or the model itself. Its
      architecture is the problem's; every instance draws fresh weights (see the module docstring).
    data: (x, y) NumPy arrays or nests of them (several inputs), or a tf.data.Dataset of (x, y)
      examples or batches, read into memory once.
    loss: a Keras loss, its name ("sparse_categorical_crossentropy", "mse", ...), or a function
      (y_true, y_pred) -> per-example or mean losses.
    batch_size: examples per minibatch (reference: 128).
    name: what the problem is called in logs and run.json; default: the model's name.

  Attributes:
    model: the Keras model (its variables are never assigned here).
    param_names: the trainable variables' paths ("dense/kernel", ...), in the model's order.
  """

  def __init__(self, build_model, data, loss, batch_size=128, name=None):
    problems._check_positive(batch_size=batch_size)  # pylint: disable=protected-access
    self.batch_size = int(batch_size)
    if isinstance(data, tf.data.Dataset):
      data = _read_dataset(data)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
      raise ValueError("KerasProblem's data must be (x, y) arrays or a tf.data.Dataset of (x, y) "
                       "pairs.")
    self._x = tf.nest.map_structure(_to_tensor, data[0])
    self._y = tf.nest.map_structure(_to_tensor, data[1])
    sizes = {int(t.shape[0]) for t in tf.nest.flatten((self._x, self._y)) if t.shape.rank}
    if len(sizes) != 1 or 0 in sizes:
      raise ValueError(f"KerasProblem's x and y hold {sorted(sizes)} examples; give the same "
                       "positive number of examples in every array.")
    self.num_examples = sizes.pop()
    self._loss = _loss_function(loss)
    self.model = _model_of(build_model)
    if not self.model.built:
      self.model(tf.nest.map_structure(lambda t: t[:1], self._x))
    self._check_variables()
    self.name = name or self.model.name
    self.param_names = tuple(v.path for v in self.model.trainable_variables)

  def _check_variables(self):
    trainable = self.model.trainable_variables
    if not trainable:
      raise ValueError(f"model {self.model.name} has no trainable variables: nothing to optimize.")
    paths = [v.path for v in trainable]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
      raise ValueError(f"model {self.model.name} has several trainable variables named "
                       f"{repeated[0]}; give its layers distinct names.")
    if any(v.dtype != "float32" for v in trainable):
      raise ValueError(f"model {self.model.name} has {trainable[0].dtype} variables; learned "
                       "optimizers here run in float32: build the model with float32 weights.")
    self._seed_states = _seed_states(self.model)
    known = self._seed_states + _moving_statistics(self.model)
    other = [v.path for v in self.model.non_trainable_variables
             if all(v is not k for k in known)]
    if other:
      raise ValueError(
          f"model {self.model.name} has non-trainable variable {other[0]}, which a training step "
          "may read and update; meta-training carries no optimizee state but the parameters (and "
          "the seeds of Dropout-like layers): make it trainable, or drop its layer.")
    # A seeded copy of each random initializer, its seed generator's state given at each draw.
    self._draws = {}
    for variable_id, initializer in _variable_initializers(self.model).items():
      if getattr(initializer, "seed", None) is None:
        continue  # deterministic (zeros, ones, constants): the values as built
      generator = keras.random.SeedGenerator(0)
      draw = initializer.__class__.from_config(initializer.get_config())
      draw.seed = generator
      self._draws[variable_id] = (draw, generator)
    self._held = [v for v in self.model.non_trainable_variables
                  if all(v is not s for s in self._seed_states)]

  @property
  def source(self):
    """What the problem is, for the logs."""
    return (f"Keras model {self.name} ({sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)} "
            f"parameters) on {self.num_examples} examples")

  @property
  def data_digest(self):
    """A digest of the data, so that a resumed run can tell it is the same."""
    return ",".join(_digest(t) for t in tf.nest.flatten((self._x, self._y)))

  def init(self, seed):
    """Fresh weights from the layers' initializers, seeded by `seed`; the held state."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(self.param_names)))
    params = {}
    for variable, variable_seed in zip(self.model.trainable_variables, seeds):
      params[variable.path] = self._draw(variable, variable_seed)
    return params, tuple(tf.convert_to_tensor(v.value) for v in self._held)

  def _draw(self, variable, seed):
    if id(variable) not in self._draws:
      return tf.convert_to_tensor(variable.value)  # deterministic, or not known: as built
    draw, generator = self._draws[id(variable)]
    with keras.StatelessScope(state_mapping=[(generator.state, tf.cast(seed, "int64"))]):
      return tf.convert_to_tensor(draw(tuple(variable.shape), dtype=variable.dtype))

  def sample_batches(self, seed, num_batches):
    index_seed, step_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    indices = tf.random.stateless_uniform([num_batches, self.batch_size], index_seed, 0,
                                          self.num_examples, dtype=tf.int32)
    take = lambda t: tf.gather(t, indices)  # [num_batches, batch_size, ...]
    step_seeds = tf.random.experimental.stateless_split(step_seed, num_batches)  # [n, 2]
    return (tf.nest.map_structure(take, self._x), tf.nest.map_structure(take, self._y),
            step_seeds)

  def outputs(self, params, constants, x, seed):
    """The model's outputs and own losses on `x` with weights `params`, in training mode."""
    trainable = [params[name] for name in self.param_names]
    held = iter(constants)
    state_seeds = tf.unstack(tf.random.experimental.stateless_split(
        seed, max(1, len(self._seed_states))))
    non_trainable = []
    for variable in self.model.non_trainable_variables:
      position = next((i for i, s in enumerate(self._seed_states) if s is variable), None)
      if position is None:
        non_trainable.append(next(held))
      else:
        non_trainable.append(tf.cast(state_seeds[position], variable.dtype))
    outputs, _, losses = self.model.stateless_call(trainable, non_trainable, x, training=True,
                                                   return_losses=True)
    return outputs, losses

  def loss(self, params, constants, batch):
    x, y, seed = batch
    outputs, losses = self.outputs(params, constants, x, seed)
    loss = tf.reduce_mean(tf.cast(self._loss(y, outputs), tf.float32))
    return loss + tf.add_n(losses) if losses else loss


def assign_nets(problem, patterns):
  """Net assignments from name patterns: {net key: fnmatch pattern(s) of parameter names}.

  For example `{"kernels": "*kernel", "biases": ["*bias", "*beta", "*gamma"]}` gives one network
  the kernels and another the rest. Patterns are tried in order, the first match wins; every
  parameter must match one. Returns a list of (key, names), as meta.NetAssignments takes it.
  """
  chosen = {key: [] for key in patterns}
  for name in problem.param_names:
    for key, pattern in patterns.items():
      if any(fnmatch.fnmatchcase(name, p) for p in ([pattern] if isinstance(pattern, str)
                                                     else pattern)):
        chosen[key].append(name)
        break
    else:
      raise ValueError(f"parameter {name} matches none of the patterns {dict(patterns)}; add a "
                       "pattern for it, e.g. '*'.")
  empty = [key for key, names in chosen.items() if not names]
  if empty:
    raise ValueError(f"network {empty[0]!r} is assigned no parameter (patterns {dict(patterns)}); "
                     "drop it or fix its pattern.")
  return list(chosen.items())
