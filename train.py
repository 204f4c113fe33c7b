"""Meta-trains a learned optimizer: `python train.py --problem=quadratic --save_path=runs/quad`.

The code is in learning_to_learn/cli/train.py, so that the installed package carries it as the
`l2l-train` command; this script keeps the design card's entry point, with the same flags.
"""

from learning_to_learn import cli

if __name__ == "__main__":
  cli.train_main()
