#!/usr/bin/env bash
# Builds the firmware for both boards and reports the flash and RAM it uses, against
# the nRF52840's 1 MB of flash and 256 KB of RAM. Stack use is measured at run time
# (the QEMU firmware logs its high-water mark).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet
cargo build-nrf --quiet
printf '| board | text | data | bss | flash (text + data) | static RAM (data + bss) |\n|---|---|---|---|---|---|\n'
for board in qemu nrf52840dk; do
  elf=target/thumbv7em-none-eabihf/release/microgpt-firmware
  [ "$board" = nrf52840dk ] && elf=target/nrf52840dk/thumbv7em-none-eabihf/release/microgpt-firmware
  read -r text data bss _ < <(size "$elf" | tail -n 1)
  flash=$((text + data)); ram=$((data + bss))
  [ "$flash" -le $((1024 * 1024)) ] || { echo "$board: $flash bytes of flash exceed 1 MB" >&2; exit 1; }
  [ "$ram" -le $((256 * 1024)) ] || { echo "$board: $ram bytes of RAM exceed 256 KB" >&2; exit 1; }
  awk -v b="$board" -v t="$text" -v d="$data" -v s="$bss" -v f="$flash" -v r="$ram" \
    'BEGIN { printf "| %s | %d | %d | %d | %d (%.1f%% of 1 MB) | %d |\n", b, t, d, s, f, f * 100 / 1048576, r }'
done
