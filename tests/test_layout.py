"""No function of the package is longer than MAX_LINES, so that each can be read in one screen.

A function's length counts from its `def` to the end of its body, docstring included, read from
the source with `ast`.
"""

import ast
import glob
import os

from conftest import ROOT

MAX_LINES = 60


def _long_functions(path, max_lines=MAX_LINES):
  """(name, first line, length) of each function in `path` longer than `max_lines`."""
  with open(path) as f:
    tree = ast.parse(f.read())
  return [(node.name, node.lineno, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.end_lineno - node.lineno + 1 > max_lines]


def test_no_function_is_longer_than_the_limit():
  paths = sorted(glob.glob(os.path.join(ROOT, "learning_to_learn", "**", "*.py"), recursive=True))
  assert paths
  long = [f"{os.path.relpath(path, ROOT)}:{line} {name} ({length} lines)" for path in paths
          for name, line, length in _long_functions(path)]
  assert not long, f"split these functions to at most {MAX_LINES} lines: {', '.join(long)}"


def test_the_check_finds_a_long_function(tmp_path):
  source = tmp_path / "long.py"
  body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
  source.write_text(f"def short():\n  pass\n\n\nclass A:\n\n  def long(self):\n{body}")
  assert _long_functions(str(source)) == [("long", 7, MAX_LINES + 1)]
