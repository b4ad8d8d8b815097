#!/usr/bin/env bash
# Runs every test of microgpt-rs, and first installs what a fresh machine lacks:
# the thumbv7em target, rustfmt and clippy, and numpy for the tests against Python.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain: the thumbv7em-none-eabihf target, rustfmt and clippy"
rustup target add thumbv7em-none-eabihf
rustup component add rustfmt clippy

step "python3 with numpy, for the tests against CPython and the numpy peer"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "the core is no_std: build it for thumbv7em-none-eabihf, with and without defmt"
cargo build -p microgpt-core --target thumbv7em-none-eabihf
cargo check -p microgpt-core --target thumbv7em-none-eabihf --features defmt

step "all host tests"
cargo test --workspace

printf '\nall tests passed\n'
