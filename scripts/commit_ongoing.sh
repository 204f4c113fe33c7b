#!/bin/sh
# Stages an ongoing run's state for a commit while it runs: its records, best optimizer (one .npz
# per network) and newest checkpoint only (the older ones the run keeps on disk stay out of git).
# Usage: scripts/commit_ongoing.sh ongoing/mnist_200
set -e
run="$1"
newest=$(ls "$run"/checkpoints/ckpt-*.index | sed 's/.*ckpt-\([0-9]*\)\.index/\1/' | sort -n | tail -1)
git rm -q -r --cached --ignore-unmatch "$run/checkpoints" > /dev/null
# A run whose best files were moved to learning_to_learn/pretrained (shipped) has none left here.
git add "$run/run.json" "$run/best.json" $(ls "$run"/*.npz 2>/dev/null) "$run/checkpoints/checkpoint" \
  "$run"/checkpoints/ckpt-"$newest".*
echo "staged $run at checkpoint $newest"
