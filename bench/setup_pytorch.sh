#!/usr/bin/env bash
# Install PyTorch + numpy for bench/train_throughput.py into a reusable cache
# folder (never the system site-packages). Idempotent: exits at once when torch
# already imports from there.
#
# PyPI only serves the CUDA build of torch; it needs its nvidia-* runtime wheels
# to import, but then runs fine on a CPU-only machine. About 5 GB, 5-7 minutes.
#
#   KEEN_BENCH_DIR  cache root (default ~/.cache/keen-bench); torch goes to $KEEN_BENCH_DIR/torch
#   PYTHON          interpreter (default python3)
set -euo pipefail

target="${KEEN_BENCH_DIR:-$HOME/.cache/keen-bench}/torch"
py="${PYTHON:-python3}"
check='import torch, numpy; print("torch", torch.__version__, "mkldnn", torch.backends.mkldnn.is_available())'

if PYTHONPATH="$target" "$py" -c "$check" 2>/dev/null; then
    echo "PyTorch already installed in $target"
    exit 0
fi

mkdir -p "$target"
# --upgrade lets a re-run replace a partial install left in the target folder.
"$py" -m pip install --upgrade --target "$target" torch numpy
PYTHONPATH="$target" "$py" -c "$check"
echo "PyTorch installed in $target"
echo "bench/train_throughput.py finds it there; elsewhere use: export PYTHONPATH=$target"
