"""Which tf.distribute strategy meta-training runs under, and which worker writes the files.

- default: no distribution, one replica;
- mirrored: `MirroredStrategy` over this machine's GPUs, or over its CPU split into `cpu_devices`
  logical devices when there is no GPU (useful for tests and for trying the code path);
- multi_worker: `MultiWorkerMirroredStrategy` over the cluster that `TF_CONFIG` describes, one
  process per worker, started with the same flags.
"""

import json
import os
import socket

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices):
  """Splits the first CPU into `num_devices` logical devices (before TensorFlow starts using it)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
  except RuntimeError as e:
    raise ValueError(f"cannot split the CPU into {num_devices} devices once TensorFlow has "
                     "started: create the strategy before any other TensorFlow call.") from e


def _check_tf_config():
  text = os.environ.get("TF_CONFIG")
  if not text:
    raise ValueError("--strategy=multi_worker reads the cluster from the TF_CONFIG environment "
                     "variable, which is not set; see docs/training.md, Running on a cluster.")
  try:
    config = json.loads(text)
    workers = config["cluster"]["worker"]
    task_type, task_index = config["task"]["type"], int(config["task"]["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"TF_CONFIG is not a cluster description ({type(e).__name__}: {e}); it "
                     'needs {"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}.'
                     ) from e
  if task_type not in config["cluster"] or not 0 <= task_index < len(
      config["cluster"][task_type]):
    raise ValueError(f"TF_CONFIG's task ({task_type} {task_index}) is not in its cluster "
                     f"({', '.join(f'{k}: {len(v)}' for k, v in config['cluster'].items())}).")
  for role, addresses in config["cluster"].items():
    for address in addresses if isinstance(addresses, list) else [addresses]:
      _check_address(role, address)
  return len(workers)


def _check_address(role, address):
  """host:port with a port in 1..65535; TensorFlow aborts the process on anything else."""
  host, _, port = str(address).rpartition(":")
  if not isinstance(address, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"TF_CONFIG's {role} address {address!r} is not host:port with a port in "
                     '1..65535; write e.g. "host1:12345".')


def make_strategy(name, cpu_devices=0):
  """The strategy called `name` (one of STRATEGIES); the first TensorFlow call of a program."""
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
  if cpu_devices < 0:
    raise ValueError(f"cpu_devices={cpu_devices} must be 0 (leave the CPU whole) or more.")
  if name == "multi_worker":
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
  if cpu_devices > 1:
    split_cpu(cpu_devices)
  if name == "mirrored":
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  return tf.distribute.get_strategy()


def is_chief(strategy):
  """Whether this process writes checkpoints, the best optimizer and summaries.

  The chief is the `chief` task if the cluster has one, else worker 0; a single process is its own.
  """
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  if "chief" in resolver.cluster_spec().as_dict():
    return resolver.task_type == "chief"
  return resolver.task_type == "worker" and resolver.task_id == 0


def localhost_cluster(num_workers):
  """TF_CONFIG values for `num_workers` workers on 127.0.0.1 (free ports): for tests and bench/."""
  sockets = [socket.socket() for _ in range(num_workers)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
  for s in sockets:
    s.close()
  return [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(num_workers)]
