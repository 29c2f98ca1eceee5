#!/usr/bin/env bash
# Trains and times keen on a GPU (wgpu/Vulkan or CUDA build): training throughput of the
# reference models, then resnet20 with its full preset recipe, then `keen eval`.
#   KEEN_BIN=path/to/keen-built-with-wgpu DEVICE=wgpu DATA=dir-with-fashion-mnist \
#     OUT=results-dir EPOCHS=15 bash bench/gpu_train.sh
set -euo pipefail
: "${KEEN_BIN:?path of a keen built with --features wgpu or cuda}"
DEVICE=${DEVICE:-wgpu}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-runs/gpu}
EPOCHS=${EPOCHS:-15}
RUN=${RUN:-$OUT/resnet20}   # the run folder (checkpoints); summaries go to $OUT
mkdir -p "$OUT"
for model in cnn-small vit-tiny resnet20; do
  "$KEEN_BIN" bench-train --model "$model" --device "$DEVICE" --steps 30 --warmup 5 --json \
    | tee -a "$OUT/bench-train.jsonl"
done
start=$(date +%s)
"$KEEN_BIN" train --model resnet20 --epochs "$EPOCHS" --device "$DEVICE" --data "$DATA" \
  --out "$RUN" --no-progress
echo "{\"device\": \"$DEVICE\", \"epochs\": $EPOCHS, \"wall_seconds\": $(( $(date +%s) - start ))}" \
  > "$OUT/resnet20-time.json"
cp "$RUN/log.jsonl" "$OUT/resnet20-log.jsonl"
cp "$RUN/curves.svg" "$OUT/resnet20-curves.svg"
"$KEEN_BIN" eval "$RUN/model.safetensors" --device "$DEVICE" --data "$DATA" \
  --output "$OUT/resnet20-eval.json"
