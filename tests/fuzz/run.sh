#!/usr/bin/env bash
# Runs every fuzz target for a number of executions (10 million by default) and reports
# executions, crashes and time per target. Usage: tests/fuzz/run.sh [RUNS] [TARGET...]
#
# Each target starts from its committed corpus (corpus/TARGET) and grows a working copy
# under target/; with MINIMIZE=1 the committed corpus is then replaced by the minimal
# set of inputs that covers what the working copy covers. A crash leaves its input in
# artifacts/TARGET/ and makes the script fail: turn it into a regular test.
# Needs nightly Rust and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-10000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(weight_file state_dict checkpoint dataset)
# No sanitizer: the parsers are safe Rust, and without one they run five times as fast.
# Debug assertions on, so that an integer overflow is a crash, not a wrong length.
flags=(--fuzz-dir . --sanitizer none --debug-assertions)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 127; }

cargo +nightly fuzz build "${flags[@]}"
report=()
failed=0
for t in "${targets[@]}"; do
  work="target/corpus/$t"
  mkdir -p "$work" "artifacts/$t"
  cp -n corpus/"$t"/* "$work"/ 2>/dev/null || true
  log="target/$t.log"
  start=$(date +%s)
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$t" "$work" -- -runs="$runs" -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  secs=$(($(date +%s) - start))
  done_runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo "?")
  crashes=$(find "artifacts/$t" -type f | wc -l)
  if [ "$status" -ne 0 ]; then failed=1; done_runs="${done_runs} (stopped: see $log)"; fi
  report+=("| $t | $done_runs | $crashes | $secs s | $(find "$work" -type f | wc -l) |")
  if [ "${MINIMIZE:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    cargo +nightly fuzz cmin "${flags[@]}" "$t" "$work" >/dev/null 2>&1
    rm -f corpus/"$t"/* && cp "$work"/* corpus/"$t"/
  fi
done
printf '| target | executions | crashes | time | corpus |\n|---|---|---|---|---|\n'
printf '%s\n' "${report[@]}"
exit "$failed"
