#!/usr/bin/env bash
# Runs every test of microgpt-rs, and first installs what a fresh machine lacks:
# the microcontroller targets, rustfmt and clippy, numpy for the tests against Python, and
# QEMU (through apt-get, never removing an installed package) and defmt-print for the
# firmware tests, and the wasm32 target, Debian's chromium and playwright-core for the
# page's test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain: the microcontroller targets, rustfmt and clippy"
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf
rustup component add rustfmt clippy

step "python3 with numpy, for the tests against CPython and the numpy peer"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy

# apt-get that never removes an installed package (--no-remove): it refuses instead.
apt_install() { as_root apt-get install -y -qq --no-install-recommends --no-remove "$@"; }

# Debian's QEMU 7.2 conflicts with a newer qemu-utils from bookworm-backports, as some
# machines of this project have preinstalled; then QEMU comes from that same suite, read
# through a private source list so that the system's apt configuration is untouched.
install_qemu() {
  as_root apt-get update -qq
  apt_install qemu-system-arm qemu-system-misc && return
  local utils
  utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [[ $utils == *bpo12* ]]; then
    echo "QEMU from bookworm would remove qemu-utils $utils; taking QEMU from bookworm-backports, as qemu-utils"
    local dir
    dir=$(mktemp -d)
    chmod 755 "$dir" # apt reads the lists as its own user, _apt
    mkdir -p "$dir/lists/partial"
    cp /etc/apt/sources.list.d/*.sources "$dir/" 2>/dev/null || true
    # The backports suite of the mirror the system already uses for bookworm.
    awk 'BEGIN { RS = ""; ORS = "\n\n" } /Suites:[^\n]*bookworm( |\n|$)/ { sub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print }' \
      /etc/apt/sources.list.d/*.sources >"$dir/backports.sources" 2>/dev/null || true
    sed -nE 's/^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+)[[:space:]]+bookworm[[:space:]]+(.*)$/\1 bookworm-backports \3/p' \
      /etc/apt/sources.list >"$dir/backports.list" 2>/dev/null || true
    local private=(-o "Dir::Etc::SourceParts=$dir" -o "Dir::State::Lists=$dir/lists")
    as_root apt-get "${private[@]}" update -qq &&
      as_root apt-get "${private[@]}" install -y -qq --no-install-recommends --no-remove \
        -t bookworm-backports qemu-system-arm qemu-system-misc && return
  fi
  cat >&2 <<'MSG'
error: QEMU (qemu-system-arm, qemu-system-misc) cannot be installed without removing an installed package
(apt-get's reasons are above), and this script never removes one. Install QEMU 7.2 or
later with the mps2-an386, microbit and riscv32 virt machines yourself (for example from the suite that your
conflicting package came from), or remove that package if you do not need it, then run
tests/run-all.sh again.
MSG
  exit 1
}

step "QEMU (Arm and RISC-V) and defmt-print, for the firmware tests"
command -v qemu-system-arm >/dev/null && command -v qemu-system-riscv32 >/dev/null || install_qemu
command -v defmt-print >/dev/null || cargo install defmt-print --locked

step "the page: the wasm32 target, Debian's chromium and playwright-core, for its test in headless Chromium"
rustup target add wasm32-unknown-unknown
if ! command -v chromium >/dev/null; then
  as_root apt-get update -qq
  apt_install chromium || {
    echo "error: chromium cannot be installed without removing an installed package (see above); install Debian's chromium yourself, then run tests/run-all.sh again" >&2
    exit 1
  }
fi
(cd host/web && npm ci --no-audit --no-fund --loglevel=error)

step "format"
cargo fmt --all -- --check
(cd firmware && cargo fmt -- --check)

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
for board in firmware/boards/*/; do firmware/board.sh "$(basename "$board")" clippy -- -D warnings; done
firmware/board.sh mps2-an386 clippy --features train -- -D warnings

step "docs: every intra-doc link resolves, in the public docs and in the private items' docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet --document-private-items

step "the core is no_std: build it for Cortex-M4F (with and without defmt), Cortex-M0 and RISC-V"
cargo build -p microgpt-core --target thumbv7em-none-eabihf
cargo check -p microgpt-core --target thumbv7em-none-eabihf --features defmt
cargo build -p microgpt-core --target thumbv6m-none-eabi
cargo build -p microgpt-core --target riscv32imc-unknown-none-elf

step "all tests, the firmware in QEMU and the page in Chromium included"
MICROGPT_REQUIRE_QEMU=1 MICROGPT_REQUIRE_WEB=1 cargo test --workspace

step "firmware size for every board"
firmware/size-report.sh

printf '\nall tests passed\n'
