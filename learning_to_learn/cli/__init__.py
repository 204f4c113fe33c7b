"""The command-line tools, train and evaluate, as modules an installed package can run."""
