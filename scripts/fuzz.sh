#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) over its committed corpus
# (fuzz/corpus/<target>), one after another.
#
#   ./scripts/fuzz.sh            30 s each
#   ./scripts/fuzz.sh 10         10 s each: the smoke run of the test command
#   ./scripts/fuzz.sh 1800       a campaign (docs/DEVELOPMENT.md records figures)
#   RUNS=10000000 ./scripts/fuzz.sh 1800   stop each at 10 million executions
#   TARGETS="segment_open peer_message" ./scripts/fuzz.sh 1800   only those
#
# Needs the nightly toolchain and cargo-fuzz (scripts/test.sh installs
# cargo-fuzz). Prints one line per target: executions, and ok or FAILED;
# exits non-zero if any target found a crash (its input is then in
# fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
runs=${RUNS:--1}
failed=0
passed=0
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O || exit 1
for t in ${TARGETS:-$(cargo +nightly fuzz list)}; do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  # libFuzzer adds the inputs it finds to its first corpus directory. A
  # smoke run (60 s or less) reads the committed corpus but writes to a
  # scratch one, so the test command leaves the tree as it was; a campaign
  # grows the committed corpus (minimise it with `cargo fuzz cmin` before
  # committing).
  new_inputs="fuzz/corpus/$t"
  if [ "$secs" -le 60 ]; then
    new_inputs=$(mktemp -d)
  fi
  # -rss_limit_mb: an input that makes a parser reserve gigabytes is a bug.
  cargo +nightly fuzz run -O "$t" "$new_inputs" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -runs="$runs" -rss_limit_mb=1024 -malloc_limit_mb=512 \
    -print_final_stats=1 >"$log" 2>&1
  status=$?
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  execs=$(grep -E 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ${execs:-?} executions ($done_line): ok"
  else
    failed=$((failed + 1))
    echo "fuzz $t: FAILED (exit $status)"
    grep -E 'SUMMARY|panicked|ERROR' "$log" | head -5
  fi
  rm -f "$log"
  if [ "$new_inputs" != "fuzz/corpus/$t" ]; then
    rm -rf "$new_inputs"
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
