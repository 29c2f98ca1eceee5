#!/usr/bin/env bash
# keen's test command: formatting, lints, the GPU feature type-check, and every test.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup-data.sh
# The report card's test renders it in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y chromium >/dev/null || (apt-get update && apt-get install -y chromium >/dev/null); else sudo apt-get install -y chromium >/dev/null; fi
fi
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The CUDA path must keep compiling even though no machine here has a GPU.
# burn-cuda 0.22 downloads an LLVM bundle in its build script; DOCS_RS makes that script stand
# down, which is all a type-check needs.
DOCS_RS=1 cargo check --release -p keen-cli --features cuda
cargo test --release --workspace
# The keen-runtime model-file parser is fuzzed briefly; cargo-fuzz is installed once when a nightly
# toolchain is there to run it.
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || echo "could not install cargo-fuzz"
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then (cd fuzz && mkdir -p corpus/parse_model && cargo +nightly fuzz run parse_model corpus/parse_model seeds/parse_model -- -max_total_time=20 -rss_limit_mb=2048); else echo "skipping the keen-runtime parser fuzz run: needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)"; fi
