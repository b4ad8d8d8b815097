#!/usr/bin/env bash
# Builds the firmware for every board of boards/ and reports the flash and RAM it uses,
# against each chip's memory (its memory.x). Stack use is measured at run time (the
# firmware logs its high-water mark).
set -euo pipefail
cd "$(dirname "$0")"
printf '| board | text | data | bss | flash (text + data) | static RAM (data + bss) |\n|---|---|---|---|---|---|\n'
for dir in boards/*/; do
  board=$(basename "$dir")
  elf=$(./board.sh "$board" build --quiet | tail -n 1)
  read -r text data bss _ < <(size "$elf" | tail -n 1)
  # Static RAM by section: riscv-rt's stack region counts as bss in the summary.
  bss=$(size -A "$elf" | awk '$1 == ".bss" || $1 == ".uninit" || $1 == ".heap" { n += $2 } END { print n + 0 }')
  flash=$((text + data)); ram=$((data + bss))
  flash_max=$(sed -n 's/.*FLASH.*LENGTH = \([0-9]*\)K.*/\1/p' "$dir/memory.x")
  awk -v b="$board" -v t="$text" -v d="$data" -v s="$bss" -v f="$flash" -v r="$ram" -v m="$flash_max" \
    'BEGIN { printf "| %s | %d | %d | %d | %d (%.1f%% of %d KB) | %d |\n", b, t, d, s, f, f * 100 / (m * 1024), m, r }'
done
