# Sourced by keen's scripts: one cargo target folder kept between runs, so a rebuild after a
# change takes seconds instead of the many minutes a clean build of burn takes on 2 cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
KEEN_BIN="$CARGO_TARGET_DIR/release/keen"
