#!/usr/bin/env bash
# The paper's comparisons (sections 3.1-3.2), with the reference's and the paper's settings, then
# RESULTS.md. Each writes results/<name>/{table.md,summary.json,losses.csv,loss.png}.
# runs/mnist_paper/cw.npz is the file shipped as `mnist` (its command: learning_to_learn/pretrained/
# README.md). runs/quadratic_paper is not shipped; it was trained (stopped by SIGTERM at epoch 1,888,
# best evaluation 0.1885 at epoch 1,200; the same command with --num_epochs=1200 reproduces it) by:
#   python train.py --problem=quadratic --settings=paper --num_epochs=3000 --log_period=100 \
#     --evaluation_period=100 --evaluation_epochs=20 --checkpoint_period=50 --learning_rate=0.001 \
#     --seed=0 --save_path=runs/quadratic_paper --logdir=runs/quadratic_paper/tb
set -euo pipefail
cd "$(dirname "$0")/.."
compare="python evaluate.py --compare --num_epochs=100 --num_tuning_epochs=10 --seed=0"
$compare --problem=quadratic --path=quadratic --num_steps=200 --output_dir=results/quadratic
$compare --problem=quadratic --settings=paper --path=runs/quadratic_paper --num_steps=200 \
  --output_dir=results/quadratic_paper
$compare --problem=mnist --settings=paper --path=runs/mnist_paper --num_steps=200 \
  --output_dir=results/mnist
$compare --problem=mnist --path=mnist_reference --num_steps=200 --output_dir=results/mnist_reference
generalization="$compare --problem=mnist --settings=paper --path=runs/mnist_paper"
$generalization --hidden_layers=40 --output_dir=results/mnist_40
$generalization --hidden_layers=20,20 --output_dir=results/mnist_2layer
$generalization --activation=relu --output_dir=results/mnist_relu
reference="$compare --problem=mnist --path=mnist_reference"
$reference --hidden_layers=40 --output_dir=results/mnist_reference_40
$reference --hidden_layers=20,20 --output_dir=results/mnist_reference_2layer
$reference --activation=relu --output_dir=results/mnist_reference_relu
python scripts/results_page.py
