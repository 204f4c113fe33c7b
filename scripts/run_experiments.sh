#!/usr/bin/env bash
# The paper's comparisons (sections 3.1-3.2), with the reference's and the paper's settings, then
# RESULTS.md. Each writes results/<name>/{table.md,summary.json,losses.csv,loss.png}.
# Every learned optimizer is a shipped one (learning_to_learn/pretrained/README.md has its command).
set -euo pipefail
cd "$(dirname "$0")/.."
compare="python evaluate.py --compare --num_epochs=100 --num_tuning_epochs=10 --seed=0"
$compare --problem=quadratic --path=quadratic --num_steps=200 --output_dir=results/quadratic
$compare --problem=quadratic --settings=paper --path=quadratic_paper --num_steps=200 \
  --output_dir=results/quadratic_paper
$compare --problem=mnist --settings=paper --path=mnist --num_steps=200 \
  --output_dir=results/mnist
$compare --problem=mnist --path=mnist_reference --num_steps=200 --output_dir=results/mnist_reference
generalization="$compare --problem=mnist --settings=paper --path=mnist"
$generalization --hidden_layers=40 --output_dir=results/mnist_40
$generalization --hidden_layers=20,20 --output_dir=results/mnist_2layer
$generalization --activation=relu --output_dir=results/mnist_relu
reference="$compare --problem=mnist --path=mnist_reference"
$reference --hidden_layers=40 --output_dir=results/mnist_reference_40
$reference --hidden_layers=20,20 --output_dir=results/mnist_reference_2layer
$reference --activation=relu --output_dir=results/mnist_reference_relu
python scripts/results_page.py
