#!/usr/bin/env bash
# Distillation pays? Trains the student alone and distilled from the teacher on the same budget,
# for each seed, and writes their test accuracies to runs/distill-experiment/summary.jsonl.
# Usage: scripts/distill-experiment.sh TEACHER_MODEL_FILE [STUDENT] [EPOCHS] [SEEDS...]
# KINDS="alone distilled hint" adds hint (FitNets) distillation on top of the logits.
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
kinds=(${KINDS:-alone distilled})
for seed in "${seeds[@]}"; do
  for kind in "${kinds[@]}"; do
    case $kind in
      alone) "$KEEN_BIN" train "${common[@]}" --seed "$seed" --out "$out/alone-$seed" ;;
      distilled) "$KEEN_BIN" distill --teacher "$teacher" "${common[@]}" --seed "$seed" --out "$out/distilled-$seed" ;;
      hint) "$KEEN_BIN" distill --teacher "$teacher" --hint "${common[@]}" --seed "$seed" --out "$out/hint-$seed" ;;
      *) echo "unknown kind $kind" >&2; exit 2 ;;
    esac
  done
  for kind in "${kinds[@]}"; do
    acc=$(python3 -c "import json;print(json.load(open('$out/$kind-$seed/eval.json'))['accuracy'])")
    echo "{\"student\":\"$student\",\"kind\":\"$kind\",\"seed\":$seed,\"epochs\":$epochs,\"test_accuracy\":$acc}" | tee -a "$out/summary.jsonl"
  done
done
