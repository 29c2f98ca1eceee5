#!/usr/bin/env bash
# keen's main job on a fresh machine: the action plan on Fashion-MNIST. Gets the data, builds, and
# runs recipes/fashion-mnist.toml: train the resnet20 teacher, distil it into resnet8-slim, prune,
# quantize (PTQ and QAT with the teacher), and print the stage table. A rerun resumes at the first
# unfinished stage. Extra arguments go to `keen compress`, e.g.
#   scripts/main.sh --teacher runs/results-resnet20/model.safetensors   # reuse a teacher
# `keen train` alone (cnn-small in ~4 minutes) is `scripts/main.sh train`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup-data.sh
cargo build --release -p keen-cli
if [ "${1:-}" = train ]; then
  shift
  exec "$KEEN_BIN" train "$@"
fi
exec "$KEEN_BIN" compress --recipe recipes/fashion-mnist.toml "$@"
