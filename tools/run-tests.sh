#!/bin/bash
# run-tests.sh - build mxsec and run every test: the unit tests (plain, and
# again under AddressSanitizer + UndefinedBehaviorSanitizer) and the
# integration tests against the loopback test bed, and the libFuzzer targets
# for a short bounded time each (tools/fuzz.sh, FUZZ_SECONDS, default 20). Prints one closing line
# "N passed, N failed" and exits non-zero if anything failed or did not run.
set -uo pipefail
cd "$(dirname "$0")/.."

# A fresh machine gets the Debian packages first (a no-op when present).
bash tools/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
count() {  # count NAME PASSED FAILED
  echo "== $1: $2 passed, $3 failed"
  passed=$((passed + $2))
  failed=$((failed + $3))
}

build() {  # build DIR [meson options]
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

run_unit() {  # run_unit NAME BINARY
  local out
  out=$("$2" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ]; then
    # The failing checks with their test case, and any sanitizer report.
    echo "$out" | grep -B4 -A8 -E 'ERROR|runtime error|Sanitizer' | head -200
  fi
  echo "$out" | tail -4
  local line
  line=$(echo "$out" | grep -E '^\[doctest\] test cases:' | tail -1)
  if [ -z "$line" ]; then
    count "$1" 0 1
    return
  fi
  local p f
  p=$(echo "$line" | sed -E 's/.*\| *([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.*\| *([0-9]+) failed.*/\1/')
  [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1
  count "$1" "$p" "$f"
}

# The tree's structural rules: layers, self-contained headers, no citation
# of documents outside the repository.
if tools/check-layers.sh; then count layers 1 0; else count layers 0 1; fi

if build build -Dwerror=true; then
  run_unit unit build/unit_tests
else
  echo "build failed"; count build 0 1
fi

# The sanitizer build has libstdc++'s assertions too (meson.build adds
# -D_GLIBCXX_ASSERTIONS to every build).
if build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_unit unit-asan-ubsan build-asan/unit_tests
else
  echo "sanitizer build failed"; count build-asan 0 1
fi

# Fuzzing: every target's regression inputs, then FUZZ_SECONDS of fuzzing
# each (10 targets: about 4 minutes with the build). One count per target.
fuzz_out=$(bash tools/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1)
fuzz_rc=$?
echo "$fuzz_out" | tail -60
fuzz_ok=$(echo "$fuzz_out" | grep -cE '^fuzz: [a-z_]+ ok,')
fuzz_bad=$(echo "$fuzz_out" | grep -cE '^fuzz: [a-z_]+ FAILED')
[ $fuzz_rc -ne 0 ] && [ "$fuzz_bad" = 0 ] && fuzz_bad=1
count fuzz "$fuzz_ok" "$fuzz_bad"

run_integration() {  # run_integration NAME SCRIPT [MXSEC]
  local tb out line
  tb=$(mktemp -d /tmp/mxsec-tb.XXXXXX)
  # The test bed's addresses are fixed: one test bed at a time on a machine.
  out=$(flock /tmp/mxsec-testbed.lock /usr/bin/python3 "$2" --mxsec "${3:-build/mxsec}" --testbed "$tb" 2>&1)
  echo "$out" | grep -vE '\.\.\. ok$' | tail -40
  line=$(echo "$out" | grep -E '^integration: [0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -n "$line" ]; then
    count "$1" "$(echo "$line" | awk '{print $2}')" "$(echo "$line" | awk '{print $4}')"
  else
    count "$1" 0 1
  fi
  tools/testbed/testbed.sh stop "$tb" >/dev/null 2>&1 || true
  rm -rf "$tb"
}

if [ -x build/mxsec ]; then
  for suite in tests/integration/test_*.py; do
    run_integration "integration $(basename "$suite" .py)" "$suite"
  done
fi

# The binary a user installs is an optimised one, linked by lld in the order of tools/link_order.txt
# (meson.build): what the debug build above does not exercise. tools/setup.sh installs lld, so a
# binary linked by anything else here is a failure, not a fallback.
if build build-release -Dbuildtype=release -Dwerror=true; then
  if readelf -p .comment build-release/mxsec | grep -q 'Linker: .*LLD'; then count "release build linked by lld" 1 0
  else echo "build-release/mxsec was not linked by lld (meson.build: link_order_args)"; count "release build linked by lld" 0 1
  fi
  for suite in deliver sendmail; do
    run_integration "integration test_$suite (release build)" "tests/integration/test_$suite.py" build-release/mxsec
  done
else
  echo "release build failed"; count build-release 0 1
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
