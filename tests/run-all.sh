#!/usr/bin/env bash
# Runs every test of microgpt-rs, and first installs what a fresh machine lacks:
# the thumbv7em target, rustfmt and clippy, numpy for the tests against Python, and
# QEMU (through apt-get) and defmt-print for the firmware tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain: the thumbv7em-none-eabihf target, rustfmt and clippy"
rustup target add thumbv7em-none-eabihf
rustup component add rustfmt clippy

step "python3 with numpy, for the tests against CPython and the numpy peer"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy

step "QEMU and defmt-print, for the firmware tests"
if ! command -v qemu-system-arm >/dev/null; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends qemu-system-arm
fi
command -v defmt-print >/dev/null || cargo install defmt-print --locked

step "format"
cargo fmt --all -- --check
(cd firmware && cargo fmt -- --check)

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
(cd firmware && cargo clippy --release -- -D warnings)
(cd firmware && cargo clippy --release --no-default-features --features nrf52840dk --target-dir target/nrf52840dk -- -D warnings)

step "the core is no_std: build it for thumbv7em-none-eabihf, with and without defmt"
cargo build -p microgpt-core --target thumbv7em-none-eabihf
cargo check -p microgpt-core --target thumbv7em-none-eabihf --features defmt

step "all tests, the firmware in QEMU included"
MICROGPT_REQUIRE_QEMU=1 cargo test --workspace

step "firmware size for both boards"
firmware/size-report.sh

printf '\nall tests passed\n'
