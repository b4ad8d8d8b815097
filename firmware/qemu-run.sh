#!/usr/bin/env bash
# Cargo's runner for the QEMU board: runs a firmware ELF on mps2-an386 (Cortex-M4F) and
# decodes its defmt output with defmt-print. The firmware's exit status (semihosting)
# becomes this script's.
#
# -icount shift=0 makes every instruction take 1 ns of virtual time, so the SysTick
# timer (25 MHz) advances once per 40 instructions, the same on every run.
set -euo pipefail
elf="$1"
command -v qemu-system-arm >/dev/null || { echo "qemu-system-arm is missing: apt-get install -y --no-install-recommends qemu-system-arm" >&2; exit 127; }
command -v defmt-print >/dev/null || { echo "defmt-print is missing: cargo install defmt-print --locked" >&2; exit 127; }
timeout "${QEMU_TIMEOUT:-120}" qemu-system-arm \
  -machine mps2-an386 -cpu cortex-m4 \
  -display none -monitor none -serial none \
  -semihosting-config enable=on,target=native \
  -icount shift=0 \
  -kernel "$elf" \
  | defmt-print --log-format '{s}' -e "$elf"
