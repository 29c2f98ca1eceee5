#!/usr/bin/env bash
# Adversarial robustness on MNIST (docs/RESULTS.md, "Adversarial robustness (MNIST)").
#
# Trains a standard cnn-small and a robust model on MNIST -- by default cnn-wong (Wong & Kolter's
# small CNN) with PGD-5 adversarial training (Madry et al.: random start, step 2.5 eps / steps,
# eps = 0.3 ramped up over the first 2 epochs, PGD-10 accuracy on 500 validation images after
# every epoch and the most robust epoch kept) -- then attacks both with PGD-50 and 10 restarts at
# eps = 0.3 (L-inf) on the first $LIMIT test images, with the gradient-masking checks, and draws
# an eps-curve with PGD-20.
#
#   scripts/adversarial-mnist.sh                  # everything (~25 min of training on 2 cores)
#   LIMIT=1000 scripts/adversarial-mnist.sh       # attack the first 1,000 test images only
#   MNIST_DIR=/path/to/idx scripts/adversarial-mnist.sh
#   MODEL=cnn-small METHOD=fgsm-rs scripts/adversarial-mnist.sh
#                                                 # fast FGSM (Wong, Rice & Kolter 2020) on cnn-small
#   MODEL=cnn-madry DEVICE=cuda KEEN=./keen scripts/adversarial-mnist.sh
#                                                 # Madry et al.'s wider CNN on a GPU, with a
#                                                 # keen built with --features cuda
#
# MODEL (default cnn-wong) is the robust model; the standard model is always cnn-small.
# METHOD (default pgd) picks the adversarial training (pgd, trades, fgsm-rs); STEPS (default 5)
# its attack steps where it has several.
#
# A rerun resumes an unfinished training run and retrains nothing that is finished.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

OUT=${OUT:-runs/adversarial-mnist}
LIMIT=${LIMIT:-10000}
CURVE_LIMIT=${CURVE_LIMIT:-1000}
ATTACK_BATCH=${ATTACK_BATCH:-250}
EPOCHS=${EPOCHS:-10}
MODEL=${MODEL:-cnn-wong}
METHOD=${METHOD:-pgd}
[[ "$METHOD" == pgd ]] && STEPS=${STEPS:-5}
DEVICE=${DEVICE:-flex}
ROBUST_NAME=${ROBUST_NAME:-$METHOD${STEPS:-}-$MODEL}
DATA=()
if [[ -n "${MNIST_DIR:-}" ]]; then
    DATA=(--data "$MNIST_DIR")
elif [[ -d /work/shared/data/mnist ]]; then
    DATA=(--data /work/shared/data/mnist)
fi

if [[ -z "${KEEN:-}" ]]; then
    cargo build --release -p keen-cli
    KEEN="$KEEN_BIN"
fi
STEP_ARGS=()
[[ -n "${STEPS:-}" ]] && STEP_ARGS=(--adv-steps "$STEPS")

train() { # name, model, then keen train options
    local name=$1 model=$2
    shift 2
    local dir="$OUT/$name"
    if [[ -f "$dir/model.safetensors" ]]; then
        echo "== $name: already trained ($dir)"
        return
    fi
    echo "== training $name"
    local start=$SECONDS
    "$KEEN" train --model "$model" --dataset mnist "${DATA[@]}" --device "$DEVICE" --out "$dir" \
        $(resume_flag "$dir") "$@"
    echo "$name: training took $((SECONDS - start)) s" | tee "$dir/train-seconds.txt"
}

train standard cnn-small --epochs 3
ALPHA=()
[[ "$METHOD" == fgsm-rs ]] && ALPHA=(--adv-alpha 0.375)
train "$ROBUST_NAME" "$MODEL" --epochs "$EPOCHS" --lr 0.002 --adversarial "$METHOD" --adv-eps 0.3 \
    "${ALPHA[@]}" "${STEP_ARGS[@]}" --adv-ramp-epochs 2 --adv-val-images 500

for name in standard "$ROBUST_NAME"; do
    model="$OUT/$name/model.safetensors"
    # Early stopping against catastrophic overfitting: the epoch with the best validation PGD
    # accuracy.
    [[ -f "$OUT/$name/model-best-robust.safetensors" ]] && model="$OUT/$name/model-best-robust.safetensors"
    echo "== $name: PGD-50, 10 restarts, eps 0.3, first $LIMIT test images ($model)"
    "$KEEN" robust attack --model "$model" "${DATA[@]}" --device "$DEVICE" --attack pgd --norm linf --eps 0.3 \
        --steps 50 --restarts 10 --limit "$LIMIT" --batch-size "$ATTACK_BATCH" --no-progress --out "$OUT/$name/pgd50x10" | tee "$OUT/$name/pgd50x10.txt"
    echo "== $name: eps-curve, PGD-20"
    "$KEEN" robust attack --model "$model" "${DATA[@]}" --device "$DEVICE" --attack pgd --norm linf \
        --eps 0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4 --steps 20 --restarts 1 --limit "$CURVE_LIMIT" \
        --batch-size "$ATTACK_BATCH" --no-progress --out "$OUT/$name/curve" | tee "$OUT/$name/curve.txt"
done
