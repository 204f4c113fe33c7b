"""Named configurations: a problem name -> (problem, net config, net assignments), as the CLIs take.

The reference's util.get_config: each name pairs an optimizee of problems.py with the learned
networks that train on it and which parameters each network updates. The optimizees themselves
know nothing of these names.
"""

from learning_to_learn import meta
from learning_to_learn import optimizer_files
from learning_to_learn import problem_files
from learning_to_learn import problems


SETTINGS = {
    # LogAndSign exponent and output scale: the reference's configs vs the paper's Appendix A.
    "reference": {"k": 5, "scale": 0.01, "distribution": "uniform"},
    "paper": {"k": 10, "scale": 0.1, "distribution": "gaussian"},
}

PROBLEM_NAMES = ("simple", "simple-multi", "quadratic", "mnist", "fashion_mnist", "cifar",
                 "cifar-multi")
# Problem names that build the same optimizee as another and differ only in how the learned
# optimizer is split across its parameters: a baseline's tuned rate and runs on one hold for both.
SAME_OPTIMIZEE = {"cifar-multi": "cifar"}


def optimizee_name(problem_name):
  """The name of the optimizee `problem_name` builds (cifar-multi builds cifar's network)."""
  return SAME_OPTIMIZEE.get(problem_name, problem_name)


# The problems a `labels` subset applies to: the classifiers.
LABELLED_PROBLEMS = ("mnist", "fashion_mnist", "cifar", "cifar-multi")

# Named label subsets for Fig. 7 of the paper, which does not say which labels its CIFAR-5 and
# CIFAR-2 keep: here the first ones, and LSTM-sub is meta-trained on the 5 labels CIFAR-5 leaves
# out.
LABEL_SETS = {"cifar5": (0, 1, 2, 3, 4), "cifar2": (0, 1), "lstm-sub": (5, 6, 7, 8, 9)}


def parse_labels(values):
  """Labels from their text: None (all), one name of LABEL_SETS, or integers, e.g. ["0", "1"].

  Returns a tuple of ints, or None; only the form is checked here, their range by
  datasets.restrict_labels once the data says how many classes there are.
  """
  if values is None:
    return None
  values = [str(v).strip() for v in values]
  if len(values) == 1 and values[0] in LABEL_SETS:
    return LABEL_SETS[values[0]]
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f"labels={','.join(values)} must be comma-separated integers, e.g. "
                     f"0,1,2,3,4, or one of {', '.join(LABEL_SETS)}.") from None


# The key of a problem's one learned network; its file is `<path>/cw.npz`, which the Keras wrapper
# reads.
_SINGLE = optimizer_files.SINGLE_NET_KEY


def _lstm_config(settings):
  return meta.lstm_config(preprocess_options={"k": settings["k"]}, scale=settings["scale"])


def _user_config(spec, path, data_dir, split, settings):
  """get_config for FILE.py:FUNCTION: its problem, one LSTM per assigned key (one in all by
  default, under the key the Keras optimizer reads)."""
  if settings not in SETTINGS:
    raise ValueError(f"unknown settings {settings!r}; choose reference or paper.")
  problem, net_assignments = problem_files.build(spec, split=split, data_dir=data_dir)
  keys = [key for key, _ in net_assignments] if net_assignments else [_SINGLE]
  net_config = {key: _lstm_config(SETTINGS[settings]) for key in keys}
  _set_net_paths(net_config, path)
  return problem, net_config, net_assignments


def _set_net_paths(net_config, path):
  """Points every learned network of `net_config` at its file in `path` (None: fresh weights)."""
  for key, config in net_config.items():
    if config["net"] != "Adam":
      config["net_path"] = None if path is None else optimizer_files.path_for(path, key)


def _check_named(problem_name, settings, labels):
  """Raises a one-line ValueError unless get_config can build `problem_name` so."""
  if problem_name not in PROBLEM_NAMES:
    raise ValueError(f"unknown problem {problem_name!r}; choose one of "
                     f"{', '.join(PROBLEM_NAMES)}.")
  if settings not in SETTINGS:
    raise ValueError(f"unknown settings {settings!r}; choose reference or paper.")
  if labels is not None and problem_name not in LABELLED_PROBLEMS:
    raise ValueError(f"labels={','.join(map(str, labels))} choose the classes of "
                     f"{', '.join(LABELLED_PROBLEMS)}, not of {problem_name}; drop the labels.")


def _simple_config(problem_name):
  """The reference's `simple` and `simple-multi`: a zero-initialized LSTM with no hidden layer,
  and in simple-multi Adam for the second coordinate."""
  problem = problems.simple() if problem_name == "simple" else problems.simple_multi_optimizer()
  net_config = {_SINGLE: {"net": "CoordinateWiseDeepLSTM",
                          "net_options": {"layers": (), "initializer": "zeros"}}}
  net_assignments = None
  if problem_name == "simple-multi":
    net_config["adam"] = {"net": "Adam", "net_options": {"learning_rate": 0.1}}
    net_assignments = [(_SINGLE, ["x_0"]), ("adam", ["x_1"])]
  return problem, net_config, net_assignments


def _cifar_config(problem_name, chosen, data_dir, split, labels):
  """The reference's CIFAR-10 network with one LSTM (cifar), or one for the convolutional
  filters and one for every other parameter (cifar-multi)."""
  problem = problems.cifar10(data_dir, conv_channels=(16, 16, 16), linear_layers=(32,),
                             mode=split, labels=labels)
  if problem_name == "cifar":
    return problem, {_SINGLE: _lstm_config(chosen)}, None
  net_config = {"conv": _lstm_config(chosen), "fc": _lstm_config(chosen)}
  conv = [name for name in problem.param_names if name.startswith("conv_net_2d/conv_2d_")
          and name.endswith("/w")]
  net_assignments = [("conv", conv),
                     ("fc", [name for name in problem.param_names if name not in conv])]
  return problem, net_config, net_assignments


def get_config(problem_name, path=None, data_dir=None, split="train", settings="reference",
               layers=None, activation=None, labels=None):
  """Returns (problem, net_config, net_assignments) for a named configuration.

  Args:
    problem_name: one of PROBLEM_NAMES, or FILE.py:FUNCTION (see problem_files).
    path: a directory of trained networks (`<key>.npz`) to start from, or None for fresh ones.
    data_dir: where the data files are (see learning_to_learn.datasets).
    split: "train" or "test": which split the classifiers draw minibatches from.
    settings: "reference" (LogAndSign k = 5, output scale 0.01, uniform quadratics) or "paper"
      (p = 10, scale 0.1, Gaussian quadratics).
    layers, activation: override the MNIST MLP's hidden sizes and activation.
    labels: for the classifiers (LABELLED_PROBLEMS), keep only these labels, numbered 0..k-1 in
      the order given, with k outputs (see datasets.restrict_labels); None keeps all.

  One departure from the reference: its `quadratic` config fed raw gradients to the LSTM with output
  scale 1; here every LSTM config uses the chosen settings' LogAndSign and scale, so the reference
  and paper settings can be compared on every problem alike.
  """
  if problem_files.is_spec(problem_name):
    return _user_config(problem_name, path, data_dir, split, settings)
  _check_named(problem_name, settings, labels)
  chosen = SETTINGS[settings]
  net_assignments = None
  if problem_name in ("simple", "simple-multi"):
    problem, net_config, net_assignments = _simple_config(problem_name)
  elif problem_name == "quadratic":
    problem = problems.quadratic(batch_size=128, num_dims=10, distribution=chosen["distribution"])
    net_config = {_SINGLE: _lstm_config(chosen)}
  elif problem_name in ("mnist", "fashion_mnist"):
    make = problems.mnist if problem_name == "mnist" else problems.fashion_mnist
    problem = make(layers=(20,) if layers is None else tuple(layers),
                   activation=activation or "sigmoid",
                   mode=split, data_dir=data_dir, labels=labels)
    net_config = {_SINGLE: _lstm_config(chosen)}
  else:
    problem, net_config, net_assignments = _cifar_config(problem_name, chosen, data_dir, split,
                                                         labels)
  _set_net_paths(net_config, path)
  return problem, net_config, net_assignments
