"""Problems defined in a user's own Python file: `--problem=my_problems.py:build`.

The function is called with the keyword arguments it accepts of `split` ("train", "valid" or
"test") and `data_dir` (the `--data_dir` flag), and returns a problems.Problem (a
keras_problems.KerasProblem, say), a list of them (a family: meta-training draws one per epoch),
or (problem, net_assignments) to give several networks their parameters (see
keras_problems.assign_nets).
"""

import importlib.util
import inspect
import os
import sys


def is_spec(name):
  """Whether a problem name is FILE.py:FUNCTION rather than a built-in name."""
  file_name, _, function = str(name).rpartition(":")
  return file_name.endswith(".py") and bool(function)


def _load_function(spec):
  file_name, _, function_name = spec.rpartition(":")
  if not os.path.isfile(file_name):
    raise ValueError(f"--problem={spec}: no file {file_name}; give FILE.py:FUNCTION with a file "
                     "that exists (relative to the current directory).")
  module_name = "l2l_user_problem_" + "".join(c if c.isalnum() else "_"
                                              for c in os.path.abspath(file_name))
  module = sys.modules.get(module_name)
  if module is None:
    loader_spec = importlib.util.spec_from_file_location(module_name, file_name)
    module = importlib.util.module_from_spec(loader_spec)
    try:
      loader_spec.loader.exec_module(module)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"--problem={spec}: importing {file_name} failed: "
                       f"{type(e).__name__}: {e}; fix the file.") from None
    sys.modules[module_name] = module
  function = getattr(module, function_name, None)
  if not callable(function):
    found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                   and getattr(v, "__module__", None) == module_name)
    raise ValueError(f"--problem={spec}: {file_name} defines no function {function_name}"
                     f"{'; it defines ' + ', '.join(found) if found else ''}.")
  return function


def build(spec, split="train", data_dir=None):
  """(problem, net_assignments or None) from FILE.py:FUNCTION, for the data split `split`."""
  function = _load_function(spec)
  offered = {"split": split, "data_dir": data_dir}
  parameters = inspect.signature(function).parameters
  takes_all = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
  kwargs = {k: v for k, v in offered.items() if takes_all or k in parameters}
  result = function(**kwargs)
  net_assignments = None
  if isinstance(result, tuple) and len(result) == 2:
    result, net_assignments = result
  family = result if isinstance(result, list) else [result]
  for problem in family:
    if not all(callable(getattr(problem, m, None)) for m in ("init", "sample_batches", "loss")):
      raise ValueError(f"--problem={spec} returned {type(problem).__name__}, not a problem; "
                       "return a keras_problems.KerasProblem (or another problems.Problem), a "
                       "list of them (a family), or (problem, net_assignments).")
  if not family:
    raise ValueError(f"--problem={spec} returned an empty list; return at least one problem.")
  return result, net_assignments
