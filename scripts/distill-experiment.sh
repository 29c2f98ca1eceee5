#!/usr/bin/env bash
# Distillation pays? Trains the student alone and distilled from the teacher on the same budget,
# for each seed, and writes their test accuracies to runs/distill-experiment/summary.jsonl.
# Usage: scripts/distill-experiment.sh TEACHER_MODEL_FILE [STUDENT] [EPOCHS] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
teacher=${1:?usage: $0 TEACHER_MODEL_FILE [STUDENT] [EPOCHS] [SEEDS...]}
student=${2:-resnet8-slim}
epochs=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
seeds=("${@:-1}")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
out=runs/distill-experiment
mkdir -p "$out"
common=(--model "$student" --epochs "$epochs" --warmup-epochs 0.3 --crop-padding 0 --hflip false --no-progress)
for seed in "${seeds[@]}"; do
  "$KEEN_BIN" train "${common[@]}" --seed "$seed" --out "$out/alone-$seed"
  "$KEEN_BIN" distill --teacher "$teacher" "${common[@]}" --seed "$seed" --out "$out/distilled-$seed"
  for kind in alone distilled; do
    acc=$(python3 -c "import json;print(json.load(open('$out/$kind-$seed/eval.json'))['accuracy'])")
    echo "{\"student\":\"$student\",\"kind\":\"$kind\",\"seed\":$seed,\"epochs\":$epochs,\"test_accuracy\":$acc}" | tee -a "$out/summary.jsonl"
  done
done
