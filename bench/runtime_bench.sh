#!/usr/bin/env bash
# Inference benchmark: keen-runtime vs ONNX Runtime vs tract on one exported student.
#
#   bench/runtime_bench.sh                       # the Fashion-MNIST QAT student of the recipe
#   bench/runtime_bench.sh --model runs/qat/model.safetensors --runs 400
#
# Builds `keen` (shared target folder, see scripts/env.sh) and keen-onnx's `runtime_bench`
# example (tract and keen-runtime, its own target folder so it never rebuilds burn), installs
# onnxruntime, onnx and numpy from PyPI into a venv under ~/.cache/keen-bench, then runs
# bench/runtime_bench.py, which prints the table and writes bench/results/runtime_bench.json.
# Every engine runs on 2 threads (RAYON_NUM_THREADS=2, ORT intra_op_num_threads=2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ONNX_TARGET="${KEEN_ONNX_TARGET_DIR:-$HOME/.cache/keen/target-onnx}"
VENV="$HOME/.cache/keen-bench/venv"

cargo build --release -q -p keen-cli
CARGO_TARGET_DIR="$ONNX_TARGET" cargo build --release -q -p keen-onnx --example runtime_bench

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import onnxruntime, onnx, numpy" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q onnxruntime onnx numpy
fi

exec "$VENV/bin/python" bench/runtime_bench.py \
    --keen "$CARGO_TARGET_DIR/release/keen" \
    --helper "$ONNX_TARGET/release/examples/runtime_bench" "$@"
