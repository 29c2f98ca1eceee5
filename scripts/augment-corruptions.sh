#!/usr/bin/env bash
# Does RandAugment make a model more robust to common corruptions? (docs/RESULTS.md,
# "Augmentation against corruptions"; issue 6: "AugMix or RandAugment training lowers mCE
# against the standard model".)
#
# Trains cnn-small on Fashion-MNIST twice with the same seed and epochs -- the standard
# augmentation (none) and RandAugment N=2, M=9 -- then runs the 15 corruptions x 5 severities
# on the test split for both, with the standard model as the mCE baseline.
#
#   scripts/augment-corruptions.sh                      # on this machine (~15 min on 2 quiet cores)
#   DEVICE=cuda KEEN=./keen TRAIN_ONLY=1 scripts/augment-corruptions.sh   # training on a GPU
#   EPOCHS=12 LIMIT=2000 scripts/augment-corruptions.sh
#
# A rerun retrains nothing that is finished.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

OUT=${OUT:-runs/augment-corruptions}
EPOCHS=${EPOCHS:-8}
SEED=${SEED:-1}
LIMIT=${LIMIT:-10000}
DEVICE=${DEVICE:-flex}
RANDAUGMENT=${RANDAUGMENT:-2,9}
DATA=()
[[ -n "${FMNIST_DIR:-}" ]] && DATA=(--data "$FMNIST_DIR")

if [[ -z "${KEEN:-}" ]]; then
    cargo build --release -p keen-cli
    KEEN="$KEEN_BIN"
fi

train() { # name, then keen train options
    local name=$1
    shift
    local dir="$OUT/$name"
    if [[ -f "$dir/model.safetensors" ]]; then
        echo "== $name: already trained ($dir)"
        return
    fi
    echo "== training $name"
    local start=$SECONDS
    "$KEEN" train --model cnn-small "${DATA[@]}" --device "$DEVICE" --epochs "$EPOCHS" \
        --seed "$SEED" --no-progress --out "$dir" $(resume_flag "$dir") "$@"
    echo "$name: training took $((SECONDS - start)) s" | tee "$dir/train-seconds.txt"
}

train standard --randaugment off
train randaugment --randaugment "$RANDAUGMENT"
[[ -n "${TRAIN_ONLY:-}" ]] && exit 0

# The standard model is measured once; RandAugment's mCE is then relative to its table.
for name in standard randaugment; do
    if [[ -f "$OUT/$name/corruptions/corruptions.json" ]]; then
        echo "== $name: already measured ($OUT/$name/corruptions)"
        continue
    fi
    baseline=()
    [[ $name != standard ]] && baseline=(--baseline "$OUT/standard/corruptions/corruptions.json")
    echo "== $name: 15 corruptions x 5 severities, $LIMIT test images"
    "$KEEN" robust corruptions "$OUT/$name/model.safetensors" "${DATA[@]}" "${baseline[@]}" \
        --limit "$LIMIT" --no-progress --out "$OUT/$name/corruptions" \
        | tee "$OUT/$name/corruptions.txt"
done
