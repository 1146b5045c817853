#!/bin/bash
# fuzz.sh [SECONDS] - build the libFuzzer targets of tests/fuzz/ (clang 14,
# build directory build-fuzz, meson -Dfuzz=true) and run each of them:
# first every file of tests/fuzz/regressions/<target>/ as a fixed input,
# then SECONDS (default 30) of fuzzing from a copy of its seed corpus
# tests/fuzz/corpus/<target>/ (the copy grows, the committed corpus does
# not). Each input has a time limit (-timeout), so input that makes a
# parser hang or go super-linear is a failure too.
#
# Prints one line per target and exits non-zero when any target crashed,
# failed its oracle, timed out or leaked, naming the target and the input
# (the crashing input is kept under the work directory it prints).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
case "$seconds" in ''|*[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS]" >&2; exit 64 ;; esac
# Per-input limit: the slowest target (dns_validator, public-key operations
# under ASan) needs well under a second per input.
timeout_s=${FUZZ_TIMEOUT:-10}
targets=(smtp_reply ehlo mta_sts_policy mta_sts_txt tlsrpt_record socketmap submission config local_policy
         dns_validator metrics_http survey_input)

CXX=${FUZZ_CXX:-clang++-14}
if [ ! -f build-fuzz/build.ninja ]; then
  CXX=$CXX meson setup build-fuzz -Dfuzz=true -Dwerror=true >/dev/null || { echo "fuzz: meson setup failed"; exit 1; }
fi
ninja -C build-fuzz >/dev/null || { ninja -C build-fuzz; echo "fuzz: build failed"; exit 1; }

work=$(mktemp -d /tmp/mxsec-fuzz.XXXXXX)
failed=()
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz_$t
  # Regression inputs first: each one once, as a fixed input.
  if [ -d "tests/fuzz/regressions/$t" ] && [ -n "$(ls -A "tests/fuzz/regressions/$t")" ]; then
    for f in "tests/fuzz/regressions/$t"/*; do
      if ! "$bin" -timeout="$timeout_s" "$f" >"$work/$t.regression.log" 2>&1; then
        echo "fuzz: $t FAILED on regression input $f"
        grep -E 'ERROR|oracle|runtime error|SUMMARY|in .*(/src/|/tests/fuzz/)' "$work/$t.regression.log" | head -15
        failed+=("$t:$f")
      fi
    done
  fi
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp "tests/fuzz/corpus/$t"/* "$work/$t/corpus/"
  "$bin" -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t.log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$work/$t.log" | awk '{print $2}')
  if [ $rc -ne 0 ]; then
    input=$(ls "$work/$t/artifacts/" 2>/dev/null | head -1)
    echo "fuzz: $t FAILED after ${runs:-?} runs; input: $work/$t/artifacts/$input"
    grep -E 'ERROR|oracle|runtime error|SUMMARY|in .*(/src/|/tests/fuzz/)' "$work/$t.log" | head -15
    failed+=("$t")
  else
    echo "fuzz: $t ok, ${runs:-?} runs in ${seconds}s"
    rm -rf "$work/$t"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} failed: ${failed[*]} (logs and inputs in $work)"
  exit 1
fi
rm -rf "$work"
echo "fuzz: all ${#targets[@]} targets ok"
