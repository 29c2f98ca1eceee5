#!/usr/bin/env bash
# keen's main job on a fresh machine: get the data, build, train cnn-small on Fashion-MNIST,
# evaluate it on the test split. Pass other `keen train` options through, e.g.
#   scripts/main.sh --model resnet20 --epochs 15
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup-data.sh
cargo build --release -p keen-cli
"$KEEN_BIN" train "$@"
