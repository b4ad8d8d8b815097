#!/usr/bin/env bash
# Builds, runs, checks or sizes the firmware for one board of boards/, each in its own
# target directory. Usage: ./board.sh BOARD build|run|clippy [cargo args...]
# `build` prints the ELF's path last. Boards: the folders of boards/.
set -euo pipefail
cd "$(dirname "$0")"
board="${1:-}"
cmd="${2:-}"
if [ -z "$board" ] || [ ! -f "boards/$board/board.env" ] || [ -z "$cmd" ]; then
  echo "usage: ./board.sh BOARD build|run|clippy [cargo args...]; boards: $(ls boards | tr '\n' ' ')" >&2
  exit 2
fi
shift 2
# TARGET (the Rust target) and RUNNER (what `cargo run` runs the ELF with).
source "boards/$board/board.env"
# Panic messages name source files; written relative to this checkout and to cargo's
# registry, they make the same bytes wherever the repository and cargo live.
root=$(cd .. && pwd)
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
args=(--release --no-default-features --features "$board" --target "$TARGET" --target-dir "target/$board"
  --config "target.$TARGET.runner='$RUNNER'"
  --config "build.rustflags=['--remap-path-prefix=$root/=', '--remap-path-prefix=$registry/=']")
case "$cmd" in
  build) cargo build "${args[@]}" "$@" && echo "target/$board/$TARGET/release/microgpt-firmware" ;;
  run) cargo run "${args[@]}" "$@" ;;
  clippy) cargo clippy "${args[@]}" "$@" ;;
  *) echo "unknown command $cmd: build, run or clippy" >&2; exit 2 ;;
esac
