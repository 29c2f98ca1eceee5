#!/usr/bin/env bash
# FixMatch on Fashion-MNIST with 100 labels per class (issue 6; docs/RESULTS.md, "FixMatch
# (issue 6)").
#
# Trains the same model twice on the same 1,000 labelled images (100 per class, chosen by the
# seed after the validation split is held out) with the same steps, schedule and weak
# augmentation (crop with padding 2 + horizontal flip):
#   supervised  cross-entropy on the 1,000 labels only (the baseline);
#   fixmatch    plus FixMatch on the other 53,000 training images as unlabelled data
#               (mu = 7 unlabelled images per labelled one, tau = 0.95, lambda_u = 1).
# then evaluates both on the 10,000 test images with `keen eval --json` and prints the gap.
#
#   scripts/fixmatch-fmnist.sh                               # CPU (flex); slow at full size
#   DEVICE=cuda KEEN=target/release/keen scripts/fixmatch-fmnist.sh   # a keen built with --features cuda
#   EPOCHS=2 STEPS_PER_EPOCH=50 BATCH=32 scripts/fixmatch-fmnist.sh   # a CPU smoke run
#
# Settings (environment): DEVICE (flex | cuda | wgpu, passed to --device), KEEN (a prebuilt keen;
# else it is built here, with --features cuda/wgpu when DEVICE asks for them), OUT (run folder,
# default runs/fixmatch-fmnist), MODEL (cnn-small), SEEDS ("1"; several give one pair each),
# LABELS (per class, 100), BATCH (labelled batch B, 64), MU (7), THRESHOLD (0.95), LAMBDA (1),
# CUTOUT (side of the strong view's Cutout square as a fraction of the image side, 0.5),
# STRONG (the strong view's RandAugment N,M: N ops, magnitudes up to M, or off; 2,10),
# PSEUDO (who pseudo-labels: model, the one being trained, or ema, the weight average; model),
# EMA (decay of the weight average both runs validate and save, as the paper evaluates; 0.999;
# "off" for none), TRAIN_ARGS (more keen train options for both runs, e.g. "--optimizer sgd
# --lr 0.03 --weight-decay 5e-4" for the paper's optimizer), EPOCHS (6) and STEPS_PER_EPOCH (250): 1,500 steps, sized for ~3 minutes of FixMatch on one
# H200 (a step is 64 labelled + 448 strong images forward and backward and 448 weak images
# forward). DATA (a folder with the Fashion-MNIST files; else keen's search order).
#
# A rerun skips finished trainings and resumes unfinished ones.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DEVICE=${DEVICE:-flex}
OUT=${OUT:-runs/fixmatch-fmnist}
MODEL=${MODEL:-cnn-small}
SEEDS=${SEEDS:-1}
LABELS=${LABELS:-100}
BATCH=${BATCH:-64}
MU=${MU:-7}
THRESHOLD=${THRESHOLD:-0.95}
LAMBDA=${LAMBDA:-1}
CUTOUT=${CUTOUT:-0.5}
STRONG=${STRONG:-2,10}
PSEUDO=${PSEUDO:-model}
EPOCHS=${EPOCHS:-6}
STEPS_PER_EPOCH=${STEPS_PER_EPOCH:-250}
EMA=${EMA:-0.999}
read -r -a EXTRA_ARGS <<<"${TRAIN_ARGS:-}"
[[ "$EMA" != off ]] && EXTRA_ARGS+=(--ema-decay "$EMA")
DATA_ARGS=()
[[ -n "${DATA:-}" ]] && DATA_ARGS=(--data "$DATA")

if [[ -z "${KEEN:-}" ]]; then
    features=()
    case "$DEVICE" in
    cuda*) features=(--features cuda) ;;
    wgpu*) features=(--features wgpu) ;;
    esac
    cargo build --release -p keen-cli "${features[@]}"
    KEEN="$KEEN_BIN"
fi
mkdir -p "$OUT"
echo "keen: $KEEN; device: $DEVICE; $MODEL, $LABELS labels/class, B=$BATCH, mu=$MU, tau=$THRESHOLD, lambda=$LAMBDA, cutout=$CUTOUT, strong=$STRONG, pseudo-labels: $PSEUDO, $EPOCHS x $STEPS_PER_EPOCH steps, seeds: $SEEDS, ema: $EMA, more: ${TRAIN_ARGS:-none}"

COMMON=(--model "$MODEL" --dataset fashion-mnist "${DATA_ARGS[@]}" --device "$DEVICE" --no-progress
    --labels-per-class "$LABELS" --batch-size "$BATCH" --epochs "$EPOCHS"
    --steps-per-epoch "$STEPS_PER_EPOCH" --crop-padding 2 --hflip true "${EXTRA_ARGS[@]}")

train() { # name, seed, then extra keen train options
    local name=$1 seed=$2
    shift 2
    local dir="$OUT/$name-seed$seed"
    if [[ -f "$dir/model.safetensors" ]]; then
        echo "== $name (seed $seed): already trained ($dir)"
        return
    fi
    echo "== training $name (seed $seed)"
    local start=$SECONDS
    "$KEEN" train "${COMMON[@]}" --seed "$seed" --out "$dir" $(resume_flag "$dir") "$@"
    echo "$name (seed $seed): training took $((SECONDS - start)) s" | tee "$dir/train-seconds.txt"
}

accuracy() { # eval.json -> accuracy in percent
    sed -n 's/.*"accuracy": *\([0-9.eE+-]*\).*/\1/p' "$1" | head -1 | awk '{printf "%.2f", 100 * $1}'
}

total_start=$SECONDS
for seed in $SEEDS; do
    train supervised "$seed"
    train fixmatch "$seed" --fixmatch --fixmatch-mu "$MU" --fixmatch-threshold "$THRESHOLD" \
        --fixmatch-lambda "$LAMBDA" --fixmatch-cutout "$CUTOUT" \
        --fixmatch-strong "$STRONG" --fixmatch-pseudo-labels "$PSEUDO"
    for name in supervised fixmatch; do
        dir="$OUT/$name-seed$seed"
        start=$SECONDS
        "$KEEN" eval "$dir/model.safetensors" "${DATA_ARGS[@]}" --device "$DEVICE" --json \
            --output "$dir/test-eval.json" >/dev/null
        echo "$name (seed $seed): test accuracy $(accuracy "$dir/test-eval.json")% (eval $((SECONDS - start)) s)"
    done
    tail -n 1 "$OUT/fixmatch-seed$seed/log.jsonl" | tr ',' '\n' | grep -E 'mask_rate|pseudo_label' || true
done

echo
echo "| seed | supervised (1,000 labels) | FixMatch | gap (points) |"
echo "|---|---|---|---|"
for seed in $SEEDS; do
    sup=$(accuracy "$OUT/supervised-seed$seed/test-eval.json")
    fm=$(accuracy "$OUT/fixmatch-seed$seed/test-eval.json")
    echo "| $seed | $sup% | $fm% | $(awk -v a="$fm" -v b="$sup" 'BEGIN { printf "%+.2f", a - b }') |"
done | tee "$OUT/summary.md"
# Over several seeds, the mean of each column: the recipe's figure, not one seed's.
if [[ $(wc -w <<<"$SEEDS") -gt 1 ]]; then
    awk -F'|' '{ s += $3; f += $4; n++ }
        END { printf "| mean of %d | %.2f%% | %.2f%% | %+.2f |\n", n, s / n, f / n, (f - s) / n }' \
        "$OUT/summary.md" | tee -a "$OUT/summary.md"
fi
echo "total: $((SECONDS - total_start)) s"
