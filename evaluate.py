"""Evaluates a learned or hand-designed optimizer: `python evaluate.py --path=DIR --compare`.

The code is in learning_to_learn/cli/evaluate.py, so that the installed package carries it as the
`l2l-evaluate` command; this script keeps the design card's entry point, with the same flags.
"""

from learning_to_learn import cli

if __name__ == "__main__":
  cli.evaluate_main()
