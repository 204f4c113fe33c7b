"""Every random stream of a run, derived from its one integer seed, so that no two draw alike.

A stream is named by a tuple of non-negative ints and drawn with stateless random ops from
`make_seed(*tuple)`. NumPy's SeedSequence hashes the whole tuple, its length included, so two
tuples that differ anywhere give unrelated seeds; each stream below has a tuple of its own:

- An epoch is (seed, purpose, epoch): TRAINING epochs meta-train, EVALUATION epochs choose the best
  optimizer during training, TUNING epochs tune a baseline's learning rate, TEST epochs report.
  The purpose sits in every tuple, so an instance drawn for one purpose is never drawn for another
  and no test instance played a part in training or tuning. A training epoch retried after a
  non-finite meta-step appends its attempt, (seed, TRAINING, epoch, attempt), since the fault may
  lie in the instance itself.
- Within an epoch, (*epoch, 0) draws the instance (initial parameters and problem constants) and
  (*epoch, i + 1) the minibatches of its unroll i: the last element tells them apart.
- A run with staggered instances (training.Settings.stagger) starts some of them afresh at
  unroll i of an epoch from (*epoch, 0, i): one element longer than the epoch's own streams.
- Within a meta-step of N instances, instance 0 keeps the unroll's seed and instance i > 0 folds
  i into it (`instance_seed`): an instance's seed depends on its index alone, never on which
  replica unrolls it.
- Which problem of a family an epoch trains on is NumPy's generator seeded with the training
  epoch's own tuple (`family_member`): an index, never an instance draw.

The networks' initial weights come from TensorFlow's global generator, set to the seed when a run
starts (training.meta_train): a generator apart from all of these stateless streams.
"""

import numpy as np
import tensorflow as tf

# Seed purposes: the middle of an epoch's tuple (seed, purpose, epoch).
TRAINING = 0  # meta-training epochs
EVALUATION = 1  # evaluations during training, which choose the best optimizer
TUNING = 2  # a baseline's learning-rate sweep (evaluation.compare)
TEST = 3  # test runs, which played no part in training or tuning


def make_seed(*values):
  """A stateless-RNG seed ([2] int32) determined by a tuple of non-negative ints."""
  words = np.random.SeedSequence([int(v) for v in values]).generate_state(2)
  return tf.constant(words.astype(np.uint32).view(np.int32))


def epoch_seeds(seed, num_epochs, purpose):
  """The tuples of the first `num_epochs` epochs of one purpose (TRAINING .. TEST, 0 to 3)."""
  return [(int(seed), int(purpose), e) for e in range(num_epochs)]


def training_epoch(seed, epoch, attempt=0):
  """The tuple of meta-training epoch `epoch`; a retry (attempt > 0) draws a new instance."""
  return (seed, TRAINING, epoch) + ((attempt,) if attempt else ())


def initial_seed(epoch):
  """The seed of an epoch's instance: its initial parameters and problem constants."""
  return make_seed(*epoch, 0)


def restart_seed(epoch, index):
  """The seed of the instances a staggered run starts afresh at unroll `index` of an epoch."""
  return make_seed(*epoch, 0, index)


def unroll_seed(epoch, index):
  """The seed of the minibatches of unroll (or evaluation chunk) `index` of an epoch."""
  return make_seed(*epoch, index + 1)


def instance_seed(seed, index):
  """The seed of optimizee instance `index` of a meta-step, from the meta-step's `seed`.

  Instance 0 keeps `seed` itself, so one instance per meta-step draws what it always drew; the
  others fold their index in. R replicas holding N / R instances each see the very instances one
  replica holding N does.
  """
  index = tf.cast(index, tf.int32)
  return tf.where(tf.equal(index, 0), seed, tf.random.experimental.stateless_fold_in(seed, index))


def family_member(epoch, num_problems):
  """Which of `num_problems` problems training epoch `epoch` (its tuple) trains on."""
  return int(np.random.default_rng(list(epoch)).integers(num_problems))
