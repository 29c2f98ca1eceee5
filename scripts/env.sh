# Sourced by keen's scripts: one cargo target folder kept between runs, so a rebuild after a
# change takes seconds instead of the many minutes a clean build of burn takes on 2 cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keen/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
KEEN_BIN="$CARGO_TARGET_DIR/release/keen"
# Prints --resume when the run folder $1 holds a run cut short (keen writes its state.json after
# every epoch), nothing otherwise: `keen train ... $(resume_flag "$dir")` goes on where a killed
# script left it.
resume_flag() { if [[ -f "$1/state.json" ]]; then echo --resume; fi; }
