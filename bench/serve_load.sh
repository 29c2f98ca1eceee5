#!/usr/bin/env bash
# Load test of `keen serve` on loopback: exports the Fashion-MNIST INT8 student to keen-runtime's
# format, serves it, runs crates/keen-serve/examples/loadgen.rs against it (N clients, bounded
# time and request count, 5% malformed requests, the server's RSS sampled every second), then
# stops the server with SIGTERM and checks that it exits cleanly.
#
#   bash bench/serve_load.sh                         # 60 s, 16 clients
#   DURATION=10 CLIENTS=4 bash bench/serve_load.sh   # a quick look
#   bash bench/serve_load.sh --max-batch 64 --max-wait-ms 5   # extra options go to keen serve
#
# Environment: SOURCE (the quantized student's model file), MODEL (the .keenrt written from it),
# PORT, DURATION (s), CLIENTS, MAX_REQUESTS, BAD_SHARE, OUT (the JSON report).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

SOURCE="${SOURCE:-runs/compress-fmnist-8ep/qat/model.safetensors}"
MODEL="${MODEL:-runs/compress-fmnist-8ep/qat/student.keenrt}"
PORT="${PORT:-18080}"
DURATION="${DURATION:-60}"
CLIENTS="${CLIENTS:-16}"
MAX_REQUESTS="${MAX_REQUESTS:-2000000}"
BAD_SHARE="${BAD_SHARE:-0.05}"
OUT="${OUT:-bench/results/serve_load.json}"

cargo build --release -p keen-cli
cargo build --release -p keen-serve --example loadgen
LOADGEN="$CARGO_TARGET_DIR/release/examples/loadgen"

if [[ ! -f "$MODEL" || "$SOURCE" -nt "$MODEL" ]]; then
  "$KEEN_BIN" export "$SOURCE" --format runtime --out "$MODEL"
fi

# 28x28 images are about 1 KB: a 64 KiB body limit keeps the 413 probes cheap.
"$KEEN_BIN" serve --model "$MODEL" --port "$PORT" --max-body-bytes 65536 "$@" &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true' EXIT

status=0
"$LOADGEN" --addr "127.0.0.1:$PORT" --pid "$SERVER" --clients "$CLIENTS" \
  --duration-s "$DURATION" --max-requests "$MAX_REQUESTS" --bad-share "$BAD_SHARE" \
  --json "$OUT" || status=$?

kill -TERM "$SERVER"
if wait "$SERVER"; then
  echo "server stopped cleanly on SIGTERM"
else
  echo "server exited with status $? on SIGTERM" >&2
  status=1
fi
trap - EXIT
echo "report: $OUT"
exit "$status"
