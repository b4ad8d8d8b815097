#!/usr/bin/env bash
# Cargo's runner for the QEMU boards: runs a firmware ELF on a QEMU machine
# (`mps2-an386`, Cortex-M4F; `microbit`, Cortex-M0; `virt`, riscv32) and decodes its
# defmt output with defmt-print. The firmware's exit status (semihosting) becomes this
# script's.
# Usage: qemu-run.sh MACHINE ELF
#
# -icount shift=0 makes every instruction take 1 ns of virtual time, so the SysTick
# timer advances once per 40 instructions on mps2-an386 (25 MHz) and once per 62.5 on
# microbit (16 MHz), the same on every run; the riscv32 firmware counts instructions
# itself.
set -euo pipefail
machine="$1"
elf="$2"
case "$machine" in
  virt) qemu=(qemu-system-riscv32 -machine virt -bios none) package=qemu-system-misc ;;
  *) qemu=(qemu-system-arm -machine "$machine") package=qemu-system-arm ;;
esac
command -v "${qemu[0]}" >/dev/null || { echo "${qemu[0]} is missing: apt-get install -y --no-install-recommends $package (or tests/run-all.sh)" >&2; exit 127; }
command -v defmt-print >/dev/null || { echo "defmt-print is missing: cargo install defmt-print --locked" >&2; exit 127; }
timeout "${QEMU_TIMEOUT:-120}" "${qemu[@]}" \
  -display none -monitor none -serial none \
  -semihosting-config enable=on,target=native \
  -icount shift=0 \
  -kernel "$elf" \
  | defmt-print --log-format '{s}' -e "$elf"
