"""The problems, under the design card's top-level name: `import problems` as before.

They live in learning_to_learn/problems.py, because the library (and an installed package) must
not depend on a top-level module with a name as generic as `problems`. The named configurations
that pair them with networks (`get_config`) are learning_to_learn/configs.py's.
"""

from learning_to_learn.problems import *  # noqa: F401,F403  pylint: disable=wildcard-import
