#!/usr/bin/env bash
# The paper's comparisons (sections 3.1-3.2), with the reference's and the paper's settings, then
# RESULTS.md. Each writes results/<name>/{table.md,summary.json,losses.csv,loss.png}.
# The experiments and their flags are listed once, in scripts/experiments.py, which prints their
# commands in the order they run. Every learned optimizer is a shipped one
# (learning_to_learn/pretrained/README.md has its command).
set -euo pipefail
cd "$(dirname "$0")/.."
commands="$(python scripts/experiments.py)"
while IFS= read -r command; do
  # Unquoted on purpose: the words of one command, none of which needs quoting.
  $command < /dev/null
done <<< "$commands"
python scripts/results_page.py
