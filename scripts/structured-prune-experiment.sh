#!/usr/bin/env bash
# Structured pruning of resnet20: remove 50% of the channels of every dependency group (BN-scale
# ranking), fine-tune, and report parameters, MACs, batch-256 latency (prune.json) and test
# accuracy (eval.json) against the dense teacher.
# Usage: scripts/structured-prune-experiment.sh RESNET20_MODEL_FILE [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
model=${1:?usage: $0 RESNET20_MODEL_FILE [EPOCHS]}
epochs=${2:-2}
out=runs/structured-prune-resnet20
"$KEEN_BIN" prune --from "$model" --channels 0.5 --criterion bn-scale --epochs "$epochs" \
  --lr 0.02 --warmup-epochs 0 --crop-padding 0 --hflip false --no-progress --out "$out"
cat "$out/prune.json"
