"""Meta-trains a learned optimizer: `python train.py --problem=quadratic --save_path=runs/quad`.

Flags keep the reference's names and defaults. This maps them to a training.Settings, the problem
and the networks, and calls training.meta_train, which holds the loop.
"""

import dataclasses
import os
import types

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from learning_to_learn import configs
from learning_to_learn import distribute
from learning_to_learn import limits
from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import reporting
from learning_to_learn import stopping
from learning_to_learn import training

flags.DEFINE_string("problem", "simple", f"One of {', '.join(configs.PROBLEM_NAMES)}, or "
                    "FILE.py:FUNCTION, a function of your own file that returns a problem.")
flags.DEFINE_integer("num_epochs", 10000, "Meta-training epochs.")
flags.DEFINE_integer("log_period", 100, "Epochs between progress statistics.")
flags.DEFINE_integer("evaluation_period", 1000, "Epochs between evaluations.")
flags.DEFINE_boolean("evaluate_start", False, "Score the starting optimizer (say --init_path's) "
                     "before the first epoch, so that the best kept is never worse than it.")
flags.DEFINE_integer("evaluation_epochs", 20, "Problem instances per evaluation.")
flags.DEFINE_integer("num_steps", 100, "Optimizee steps per epoch.")
flags.DEFINE_integer("unroll_length", 20, "Optimizee steps per meta-step (T).")
flags.DEFINE_float("learning_rate", 0.001, "Adam's learning rate for the meta-step.")
flags.DEFINE_boolean("second_derivatives", False, "Backpropagate through optimizee gradients.")
flags.DEFINE_string("save_path", None, "Directory for the best optimizer and checkpoints.")
flags.DEFINE_integer("seed", 0, "Seed of every problem instance and minibatch.")
flags.DEFINE_string("data_dir", None, "Directory with the data files (see README, Data).")
flags.DEFINE_list("labels", None, "Classifiers only: keep these labels, numbered 0..k-1 in this "
                  "order (e.g. 0,1,2,3,4), or a named set: cifar5 (0-4), cifar2 (0,1), lstm-sub "
                  "(5-9, the paper's LSTM-sub); default all.")
flags.DEFINE_enum("settings", "reference", ["reference", "paper"],
                  "reference: LogAndSign k=5, scale 0.01; paper: p=10, scale 0.1.")
flags.DEFINE_string("init_path", None, "Start from this trained optimizer (a --save_path "
                    "directory or a shipped name) instead of fresh weights, e.g. to fine-tune.")
flags.DEFINE_string("logdir", None, "Write TensorBoard summaries here.")
flags.DEFINE_integer("checkpoint_period", 10, "Epochs between full training checkpoints.")
flags.DEFINE_boolean("overwrite", False, "Start afresh even if --save_path holds a checkpoint.")
flags.DEFINE_float("clip_meta_gradient", None, "Clip the meta-gradient to this global norm.")
flags.DEFINE_integer("max_faults", 10, "Consecutive non-finite meta-steps before giving up.")
flags.DEFINE_boolean("jit_compile", None, "XLA for every unroll (--jit_compile), for none "
                     "(--nojit_compile); unset: the faster for each (meta.eval_jit_compile).")
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES),
                  "default: one process, one replica; mirrored: this machine's devices; "
                  "multi_worker: the cluster in TF_CONFIG (see README, Running on a cluster).")
flags.DEFINE_integer("num_instances", 1, "Optimizee instances per meta-step, over all replicas.")
flags.DEFINE_integer("cpu_devices", 0, "With --strategy=mirrored and no GPU: split the CPU into "
                     "this many logical devices, one replica each.")
flags.DEFINE_enum("objective", "sum", list(meta.OBJECTIVES), "Meta-objective of an unroll: the "
                  "sum of its losses (the paper's), of their logs, or late steps weighted more.")
flags.DEFINE_enum("preprocess", None, ["LogAndSign", "AdamNormalized"], "Replace the settings' "
                  "gradient preprocessing (LogAndSign) by this one; AdamNormalized: Lv et al. 2017.")
flags.DEFINE_enum("evaluation_split", "train", ["train", "valid"], "Split the evaluations, which "
                  "choose the best optimizer, draw their minibatches from.")
flags.DEFINE_float("clip_meta_gradient_value", None, "Clip every meta-gradient entry to "
                   "[-value, value].")
flags.DEFINE_enum("meta_lr_schedule", "constant", ["constant", "cosine"], "Meta learning rate "
                  "over the run: constant, or cosine decay from --learning_rate to 0 at "
                  "--num_epochs.")
flags.DEFINE_enum("imitate", None, ["sgd", "rmsprop", "adam", "nag"], "A hand-designed teacher "
                  "whose updates the learned optimizer imitates on its own trajectory (Chen et al. "
                  "2020); needs --imitation_learning_rate.")
flags.DEFINE_float("imitation_learning_rate", None, "The teacher's learning rate (tune it first "
                   "with evaluate.py --compare).")
flags.DEFINE_integer("imitation_epochs", 0, "First epochs that descend the imitation error alone "
                     "(a warm start).")
flags.DEFINE_float("imitation_weight", 0.0, "After those epochs, the imitation error's weight "
                   "beside the meta-objective (a regularizer).")
flags.DEFINE_boolean("recompute", False, "Recompute each optimizee step in the backward pass "
                     "instead of keeping its activations: less memory per unrolled step for more "
                     "time (docs/performance.md); the same meta-gradient to rounding.")
flags.DEFINE_boolean("batch_instances", False, "With --num_instances above 1: one network call a "
                     "step over all of a replica's instances rather than one per instance; the "
                     "same meta-gradient to rounding, faster where a step's overhead dominates "
                     "(small optimizees; docs/performance.md).")
flags.DEFINE_enum("estimator", "backprop", ["backprop", "pes"], "The meta-gradient: backprop "
                  "through each unroll (the paper's), or pes, persistent evolution strategies "
                  "(Vicol et al. 2021): unbiased through the whole history of truncated unrolls, "
                  "from forward unrolls alone (docs/training.md).")
flags.DEFINE_integer("pes_pairs", 8, "With --estimator=pes: antithetic particle pairs, 2 forward "
                     "unrolls each a meta-step.")
flags.DEFINE_float("pes_sigma", 0.01, "With --estimator=pes: the perturbations' standard "
                   "deviation, in the networks' weights' units.")
flags.DEFINE_string("pes_variables", None, "With --estimator=pes: a regular expression; only "
                    "the networks' variables whose names it matches are perturbed and trained "
                    "(e.g. linear, the output layer: fewer weights, a less noisy estimate).")
flags.DEFINE_boolean("stagger", False, "With --num_instances above 1: instance i starts afresh "
                     "at unroll i * U / N of each U-unroll epoch, so that each meta-step mixes "
                     "early and late phases of the horizon (one replica, no --batch_instances).")
flags.DEFINE_list("selection_steps", None, "Optimizee steps whose mean evaluation losses, "
                  "averaged, choose the best optimizer (e.g. 100,200); default: the last step of "
                  "the evaluated horizon.")
flags.DEFINE_list("curriculum", None, "Training horizons of a curriculum (Chen et al. 2020), e.g. "
                  "100,200: train at one horizon, evaluate at the next, and move on after "
                  "--curriculum_patience evaluations without improvement; replaces --num_steps.")
flags.DEFINE_integer("curriculum_patience", 3, "Evaluations without improvement before the "
                     "curriculum moves to its next horizon.")
FLAGS = flags.FLAGS


def _int_list(name):
  """The integers of list flag --name, or a one-line error naming it."""
  try:
    values = [int(v) for v in getattr(FLAGS, name)]
  except ValueError:
    raise ValueError(f"--{name}={','.join(getattr(FLAGS, name))} must be a comma-separated "
                     "list of integers, e.g. 100,200.") from None
  if not values or min(values) <= 0:
    raise ValueError(f"--{name} must list positive step counts, e.g. 100,200.")
  return tuple(values)


SETTING_FLAGS = tuple(f.name for f in dataclasses.fields(training.Settings))


def settings_from_flags():
  """The flags' training.Settings; one-line errors that name the flags."""
  values = {name: getattr(FLAGS, name) for name in SETTING_FLAGS}
  for name in ("selection_steps", "curriculum"):
    if values[name] is not None:
      values[name] = _int_list(name)
  training.check_settings(types.SimpleNamespace(**values), prefix="--")
  configs.parse_labels(FLAGS.labels)  # its form here; its range once the data is read
  if FLAGS.save_path is not None and os.path.exists(FLAGS.save_path) and not os.path.isdir(
      FLAGS.save_path):
    raise ValueError(f"--save_path={FLAGS.save_path} is a file; give a directory.")
  return training.Settings(**values)


def identity():
  """What else defines the run, for its run.json: the problem, its data and the networks' start."""
  labels = configs.parse_labels(FLAGS.labels)  # cifar2 and 0,1 are the same run
  return {"problem": FLAGS.problem, "settings": FLAGS.settings, "data_dir": FLAGS.data_dir,
          "init_path": FLAGS.init_path, "preprocess": FLAGS.preprocess,
          "evaluation_split": FLAGS.evaluation_split,
          "labels": None if labels is None else list(labels)}


def with_preprocess(net_config, name):
  """The net config with every LSTM's gradient preprocessing replaced by `name`, default options."""
  config = {}
  for key, net in net_config.items():
    net = dict(net)
    if net["net"].endswith("DeepLSTM"):
      net["net_options"] = dict(net["net_options"], preprocess_name=name, preprocess_options={})
    config[key] = net
  return config


def problem_config(split, path=None):
  """(problem, net_config, net_assignments) of --problem on `split`."""
  return configs.get_config(FLAGS.problem, path=path, data_dir=FLAGS.data_dir, split=split,
                             settings=FLAGS.settings, labels=configs.parse_labels(FLAGS.labels))


def log_cost(problem, strategy):
  cost = limits.unroll_cost(problem, FLAGS.unroll_length,
                            FLAGS.num_instances // strategy.num_replicas_in_sync,
                            recompute=FLAGS.recompute)
  if FLAGS.unroll_length > limits.QUIET_UNROLL_LENGTH:
    logging.warning("--unroll_length=%d: %s.", FLAGS.unroll_length, cost)
  elif FLAGS.recompute:
    logging.info("--recompute: %s.", cost)


def callbacks(chief):
  chosen = [training.PrintProgress()]
  if FLAGS.logdir and chief:
    chosen.append(training.TensorBoard(FLAGS.logdir))
  return chosen


def train():
  """Restores or starts the run the flags describe, and meta-trains; returns the exit status."""
  settings = settings_from_flags()
  strategy = distribute.make_strategy(FLAGS.strategy, FLAGS.cpu_devices)  # before any other op
  chief = distribute.is_chief(strategy)
  if strategy.num_replicas_in_sync > 1:
    logging.info("Strategy %s: %d replicas, %d optimizee instances each per meta-step.",
                 FLAGS.strategy, strategy.num_replicas_in_sync,
                 FLAGS.num_instances // strategy.num_replicas_in_sync)
  init_path = optimizer_files.resolve(FLAGS.init_path) if FLAGS.init_path else None
  problem, net_config, net_assignments = problem_config("train", init_path)
  family = problem if isinstance(problem, list) else [problem]  # a user's file may give a family
  if len(family) > 1:
    logging.info("A family of %d problems, one drawn per epoch.", len(family))
  elif hasattr(problem, "source"):
    logging.info("Data: %s", problem.source)
  if FLAGS.preprocess:
    net_config = with_preprocess(net_config, FLAGS.preprocess)
  for member in family:
    log_cost(member, strategy)
  evaluation_problem = None
  if FLAGS.evaluation_split != "train":
    evaluation_problem, _, _ = problem_config(FLAGS.evaluation_split)
  result = training.meta_train(
      problem, settings, net_config=net_config, net_assignments=net_assignments,
      save_path=FLAGS.save_path, evaluation_problem=evaluation_problem,
      evaluation_split=FLAGS.evaluation_split, callbacks=callbacks(chief), strategy=strategy,
      overwrite=FLAGS.overwrite,
      identity=identity(),
      stop=stopping.install(), flag_prefix="--")
  return 130 if result.stopped else 0


def main(argv):
  del argv
  tf.get_logger().setLevel("WARNING")  # TF logs every checkpoint write at INFO level
  return reporting.run_cli("train.py", train)


if __name__ == "__main__":
  app.run(main)
