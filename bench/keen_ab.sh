#!/usr/bin/env bash
# Two keen binaries, back to back: training throughput of the same models on the same machine,
# rounds alternating which binary goes first, so that a change of kernel is measured against
# the build before it rather than against a machine whose load has moved.
#
#   bench/keen_ab.sh BEFORE_BIN AFTER_BIN            # e.g. a copy of the old build, then the new
#
# Per round and binary: `keen bench-train` (batch 128, Adam, random images, no data loading) for
# each of $MODELS, then, when $FIXMATCH_STEPS > 0, a FixMatch training of cnn-small on
# Fashion-MNIST for that many steps (64 labelled + 448 unlabelled images in two views per step,
# data loading and augmentation included; the 6,000-image validation pass after it is timed
# apart by keen and left out). Prints one JSON line per measurement and the medians; the JSON
# lines also go to $OUT (default bench/results/keen-ab.jsonl).
#
# Settings: MODELS ("cnn-small resnet20"), ROUNDS (3), STEPS (20), THREADS (2, as
# RAYON_NUM_THREADS), FIXMATCH_STEPS (40; 0 skips it), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/keen_ab.sh BEFORE_BIN AFTER_BIN}
AFTER=${2:?usage: bench/keen_ab.sh BEFORE_BIN AFTER_BIN}
MODELS=${MODELS:-cnn-small resnet20}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-20}
THREADS=${THREADS:-2}
FIXMATCH_STEPS=${FIXMATCH_STEPS:-40}
OUT=${OUT:-bench/results/keen-ab.jsonl}
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fixmatch_seconds() { # binary -> seconds of the training steps alone
    local dir="$work/fixmatch"
    rm -rf "$dir"
    RAYON_NUM_THREADS=$THREADS "$1" train --model cnn-small --dataset fashion-mnist --no-progress \
        --labels-per-class 100 --batch-size 64 --epochs 1 --steps-per-epoch "$FIXMATCH_STEPS" \
        --crop-padding 2 --hflip true --optimizer sgd --lr 0.03 --weight-decay 5e-4 --seed 1 \
        --fixmatch --out "$dir" >/dev/null 2>"$work/fixmatch.err" || {
        cat "$work/fixmatch.err" >&2
        return 1
    }
    # keen's log gives the epoch's training seconds, validation excluded.
    sed -n 's/.*"train_seconds": *\([0-9.eE+-]*\).*/\1/p' "$dir/log.jsonl" | head -1
}

measure() { # label, binary
    local label=$1 bin=$2 model
    for model in $MODELS; do
        RAYON_NUM_THREADS=$THREADS "$bin" bench-train --model "$model" --steps "$STEPS" \
            --warmup 3 --json | sed "s/^{/{\"binary\":\"$label\",/" | tee -a "$OUT"
    done
    if ((FIXMATCH_STEPS > 0)); then
        local seconds
        seconds=$(fixmatch_seconds "$bin")
        echo "{\"binary\":\"$label\",\"model\":\"cnn-small fixmatch\",\"steps\":$FIXMATCH_STEPS,\"seconds_per_step\":$(awk -v s="$seconds" -v n="$FIXMATCH_STEPS" 'BEGIN { printf "%.4f", s / n }')}" | tee -a "$OUT"
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then
        measure before "$BEFORE"
        measure after "$AFTER"
    else
        measure after "$AFTER"
        measure before "$BEFORE"
    fi
done

echo
echo "| model | before (median) | after (median) | after / before |"
echo "|---|---|---|---|"
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for model in dict.fromkeys(r["model"] for r in rows):
    def median(binary, key):
        return statistics.median(r[key] for r in rows if r["model"] == model and r["binary"] == binary)
    if any("images_per_sec" in r for r in rows if r["model"] == model):
        b, a = median("before", "images_per_sec"), median("after", "images_per_sec")
        print(f"| {model} (img/s) | {b:,.0f} | {a:,.0f} | {a / b:.2f}x |")
    else:
        b, a = median("before", "seconds_per_step"), median("after", "seconds_per_step")
        print(f"| {model} (s/step) | {b:.3f} | {a:.3f} | {b / a:.2f}x faster |")
PY
