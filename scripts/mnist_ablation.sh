#!/usr/bin/env bash
# The MNIST levers one at a time, each meta-trained for the same number of epochs on the 50,000
# training digits of the full MNIST and selected on the valid split (the last 10,000), then run on
# 100 valid instances beside the tuned baselines, which are tuned and run once on the same
# instances (results/mnist_ablation/baselines). Each variant's kept optimizer and its best.json
# (epoch, evaluation loss, wall seconds) are copied into results/mnist_ablation/<name>/, so the
# published comparison names a file in the repository, not a scratch directory.
# Rerunning resumes unfinished training (runs/ablation/<name>) and redoes the comparisons.
#
# Usage: scripts/mnist_ablation.sh [epochs] [variant ...]   (default 200, every variant)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/mnist}
EPOCHS=${1:-200}
shift || true
declare -A VARIANTS=(
  [paper]="--settings=paper"
  [paper_log]="--settings=paper --objective=log"
  [adam_normalized]="--settings=paper --preprocess=AdamNormalized"
  [adam_normalized_log]="--settings=paper --preprocess=AdamNormalized --objective=log"
  [imitation]="--settings=paper --preprocess=AdamNormalized --objective=log --imitate=adam
    --imitation_learning_rate=0.0316 --imitation_epochs=100 --imitation_weight=0.1"
)
ORDER=(paper paper_log adam_normalized adam_normalized_log imitation)
[ $# -gt 0 ] && ORDER=("$@")
compare="python evaluate.py --compare --problem=mnist --data_dir=$DATA --split=valid
  --num_epochs=100 --num_tuning_epochs=10 --num_steps=200 --seed=0"
if [ ! -f results/mnist_ablation/baselines/summary.json ]; then
  $compare --output_dir=results/mnist_ablation/baselines
fi
# The long run kept in git (ongoing/README.md), one folder per curriculum stage:
# long_run = stage 1 (ongoing/mnist, whose best optimizer ships as `mnist`), curriculum = stage 2
# (ongoing/mnist_200). Each compares its best optimizer in place (no copy); its best.json goes beside
# the comparison. With a variant list, only the stages it names
# (`scripts/mnist_ablation.sh 200 long_run curriculum`).
declare -A STAGES=([long_run]=ongoing/mnist [curriculum]=ongoing/mnist_200)
declare -A OPTIMIZERS=([long_run]=mnist [curriculum]=ongoing/mnist_200)
stages=()
[ $# -eq 0 ] && stages=(long_run curriculum)
for name in "${ORDER[@]}"; do
  if [ -n "${STAGES[$name]:-}" ]; then stages+=("$name"); continue; fi
  flags=${VARIANTS[$name]:?unknown variant $name}
  # shellcheck disable=SC2086
  python train.py --problem=mnist --data_dir="$DATA" $flags --evaluation_split=valid \
    --evaluation_epochs=32 --evaluation_period=100 --num_epochs="$EPOCHS" --log_period=50 \
    --checkpoint_period=20 --seed=0 --save_path="runs/ablation/$name"
  out="results/mnist_ablation/$name"
  mkdir -p "$out"
  cp "runs/ablation/$name/cw.npz" "runs/ablation/$name/best.json" "$out/"
  $compare --path="$out" --baselines= --output_dir="$out"
done
for name in "${stages[@]}"; do
  run=${STAGES[$name]}
  [ -f "$run/best.json" ] || continue
  out="results/mnist_ablation/$name"
  mkdir -p "$out"
  cp "$run/best.json" "$out/"
  $compare --path="${OPTIMIZERS[$name]}" --baselines= --output_dir="$out"
done
