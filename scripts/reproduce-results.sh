#!/usr/bin/env bash
# Reproduces docs/RESULTS.md: trains each reference recipe on Fashion-MNIST from scratch, times
# it, evaluates the saved model with `keen eval`, and copies the learning curves and reports
# into docs/results/. Run on a quiet machine: the timings are part of the result.
#   scripts/reproduce-results.sh                 # cnn-small and resnet20
#   scripts/reproduce-results.sh cnn-small       # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup-data.sh
cargo build --release -p keen-cli
out=docs/results
mkdir -p "$out" runs

# name | keen train options (beyond the model's preset)
recipes=(
  "cnn-small|"
  "resnet20|--epochs 10 --steps-per-epoch 720 --batch-size 64 --lr 0.05 --label-smoothing 0.1 --crop-padding 0"
)
wanted=("$@")
for recipe in "${recipes[@]}"; do
  model=${recipe%%|*}
  opts=${recipe#*|}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $model " ]]; then continue; fi
  run=runs/results-$model
  rm -rf "$run"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$KEEN_BIN" train --model "$model" $opts --out "$run" --no-progress
  end=$(date +%s)
  "$KEEN_BIN" eval "$run/model.safetensors" --output "$out/$model-eval.json"
  cp "$run/curves.svg" "$out/$model-curves.svg"
  cp "$run/log.jsonl" "$out/$model-log.jsonl"
  echo "{\"model\": \"$model\", \"options\": \"$opts\", \"wall_seconds\": $((end - start))}" > "$out/$model-time.json"
done
