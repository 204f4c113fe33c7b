#!/usr/bin/env bash
# The paper's comparisons (sections 3.1-3.2) with the shipped optimizers, then RESULTS.md.
# Each writes results/<name>/{table.md,summary.json,losses.csv,loss.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
compare="python evaluate.py --compare --num_epochs=100 --num_tuning_epochs=10 --seed=0"
$compare --problem=quadratic --path=quadratic --num_steps=200 --output_dir=results/quadratic
$compare --problem=mnist --path=mnist --num_steps=200 --output_dir=results/mnist
$compare --problem=mnist --path=mnist --hidden_layers=40 --output_dir=results/mnist_40
$compare --problem=mnist --path=mnist --hidden_layers=20,20 --output_dir=results/mnist_2layer
$compare --problem=mnist --path=mnist --activation=relu --output_dir=results/mnist_relu
python scripts/results_page.py
