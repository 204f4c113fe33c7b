"""limits: the memory estimates and refusals, against sizes and byte counts worked out by hand."""

import types

import pytest
import tensorflow as tf

from learning_to_learn import limits

# 3 x 4 + 5 = 17 coordinates.
PROBLEM = types.SimpleNamespace(
    init=lambda seed: ({"w": tf.zeros([3, 4]), "b": tf.zeros([5])}, None))


def test_gigabytes_from_a_tenth_of_a_gigabyte_else_megabytes():
  assert limits.gigabytes(2**30) == "1.0 GB"
  assert limits.gigabytes(3 * 2**29) == "1.5 GB"
  assert limits.gigabytes(2**30 / 10) == "0.1 GB"
  assert limits.gigabytes(5 * 2**20) == "5.0 MB"
  assert limits.gigabytes(2048 * 2**30) == "2,048.0 GB"


def test_num_coordinates_counts_every_parameter_entry():
  assert limits.num_coordinates(PROBLEM) == 17


def test_unroll_cost_is_steps_times_coordinates_times_bytes(monkeypatch):
  monkeypatch.setattr(limits, "available_memory", lambda: None)
  # 20 steps x (17 x 3 instances) x 1900 bytes = 1,938,000 bytes = 1.85 MB.
  words = limits.unroll_cost(PROBLEM, 20, instances_per_replica=3)
  assert "about 1.8 MB" in words and "(51 coordinates)" in words, words
  # Recomputed: 20 x 51 x 520 = 530,400 bytes = 0.51 MB.
  assert "about 0.5 MB" in limits.unroll_cost(PROBLEM, 20, 3, recompute=True)


def test_a_run_above_the_free_memory_or_the_longest_unroll_is_refused(monkeypatch):
  monkeypatch.setattr(limits, "available_memory", lambda: 2**20)  # 1 MB free
  with pytest.raises(ValueError, match=r"needs about 1\.8 MB of memory but 1\.0 MB is available; "
                     r"lower --unroll_length"):
    limits.unroll_cost(PROBLEM, 20, instances_per_replica=3)
  monkeypatch.setattr(limits, "available_memory", lambda: None)
  limits.check_fits(2**40, "anything", "no limit known, so no refusal")
  with pytest.raises(ValueError, match="--unroll_length=1001 is above 1000"):
    limits.unroll_cost(PROBLEM, 1001)


def test_available_memory_is_at_most_what_the_kernel_reports():
  with open("/proc/meminfo") as f:
    fields = dict(line.split(":", 1) for line in f)
  available = int(fields["MemAvailable"].split()[0]) * 1024
  assert 0 < limits.available_memory() <= available
