#!/usr/bin/env bash
# Reproduces the DeiT result of docs/RESULTS.md ("A teacher that saw RandAugment"): trains the
# resnet20 teacher with the students' RandAugment (2,5), crop and flip (~25 min on 2 cores), then
# for seeds 1-3 trains vit-tiny alone and deit-tiny with hard and soft distillation from that
# teacher on 5,000 training images for 20 epochs at batch 32 without augmentation (~30 min on
# 2 cores), and prints the means and each distilled kind's gain over the ViT.
#   scripts/reproduce-deit.sh            # everything; a rerun resumes where it stopped
#   scripts/reproduce-deit.sh 1          # seed 1 only
# Environment: TEACHER_OUT [runs/teacher-ra]  OUT [runs/attn/deit-b32-20-rat]
#   PARALLEL [2]  RAYON_NUM_THREADS [1] (two one-thread runs side by side train about twice the
#   images per second of one run on both of 2 cores; docs/BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup-data.sh
cargo build --release -p keen-cli
teacher=${TEACHER_OUT:-runs/teacher-ra}
if [ ! -f "$teacher/eval.json" ]; then
  "$KEEN_BIN" train --model resnet20 --epochs 10 --steps-per-epoch 720 --batch-size 64 --lr 0.05 \
    --label-smoothing 0.1 --crop-padding 2 --randaugment 2,5 --out "$teacher" \
    $(resume_flag "$teacher")
fi
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
PARALLEL=${PARALLEL:-2} OUT=${OUT:-runs/attn/deit-b32-20-rat} EPOCHS=20 MAX_IMAGES=5000 \
  TRAIN_ARGS="--val-fraction 0 --batch-size 32" \
  scripts/deit-experiment.sh "$teacher/model.safetensors" "$@"
