"""Tests for seeds.py: each stream's seed against the tuple it is documented to come from."""

import numpy as np
import tensorflow as tf

from learning_to_learn import seeds


def _words(tuple_of_ints):
  # The documented derivation, by NumPy alone: SeedSequence's two words read as int32.
  state = np.random.SeedSequence(list(tuple_of_ints)).generate_state(2)
  return state.astype(np.uint32).view(np.int32).tolist()


def test_make_seed_is_numpys_seed_sequence():
  assert seeds.make_seed(0).numpy().tolist() == _words([0])
  assert seeds.make_seed(3, 1, 7).numpy().tolist() == _words([3, 1, 7])


def test_the_purposes_never_share_an_epoch():
  tuples = [t for purpose in (seeds.TRAINING, seeds.EVALUATION, seeds.TUNING, seeds.TEST)
            for t in seeds.epoch_seeds(5, 4, purpose)]
  assert len(set(tuples)) == 16
  assert seeds.epoch_seeds(5, 2, seeds.TEST) == [(5, 3, 0), (5, 3, 1)]
  words = {tuple(seeds.initial_seed(t).numpy().tolist()) for t in tuples}
  assert len(words) == 16


def test_training_epochs_and_their_retries():
  assert seeds.training_epoch(2, 9) == (2, seeds.TRAINING, 9) == seeds.epoch_seeds(2, 10, 0)[9]
  assert seeds.training_epoch(2, 9, attempt=1) == (2, 0, 9, 1)


def test_an_epochs_instance_and_unrolls_are_its_tuple_with_a_last_element():
  epoch = (0, seeds.TEST, 4)
  assert seeds.initial_seed(epoch).numpy().tolist() == _words([0, 3, 4, 0])
  assert seeds.unroll_seed(epoch, 0).numpy().tolist() == _words([0, 3, 4, 1])
  assert seeds.unroll_seed(epoch, 6).numpy().tolist() == _words([0, 3, 4, 7])


def test_a_staggered_restart_is_the_epochs_instance_tuple_one_longer():
  epoch = (0, seeds.TRAINING, 4)
  assert seeds.restart_seed(epoch, 3).numpy().tolist() == _words([0, 0, 4, 0, 3])
  # Never the epoch's instance, its unrolls', or a retry's instance (whose 4th element is >= 1).
  assert seeds.restart_seed(epoch, 0).numpy().tolist() != seeds.initial_seed(epoch).numpy().tolist()


def test_instance_zero_keeps_the_seed_and_others_fold_their_index_in():
  seed = seeds.make_seed(1, 2)
  assert seeds.instance_seed(seed, 0).numpy().tolist() == seed.numpy().tolist()
  folded = tf.random.experimental.stateless_fold_in(seed, 3)
  assert seeds.instance_seed(seed, 3).numpy().tolist() == folded.numpy().tolist()


def test_family_member_is_numpys_generator_on_the_epoch():
  epoch = seeds.training_epoch(0, 5, attempt=2)
  assert seeds.family_member(epoch, 7) == int(np.random.default_rng([0, 0, 5, 2]).integers(7))
