#!/usr/bin/env bash
# Build raftkv twice -- plain, and with AddressSanitizer + UndefinedBehavior-
# Sanitizer -- and run the whole meson test suite in each (unit tests, the
# simulator and its broken-rule checks, storage crash tests); then build the
# libFuzzer targets with clang and run each for a short bounded time
# (scripts/fuzz.sh).  Ends with one line "N passed, N failed" counting meson
# tests over both builds plus one per fuzz target.
#
#   scripts/test.sh            all three: plain asan fuzz
#   TEST_BUILDS=plain scripts/test.sh   only some of: plain asan fuzz
#   SIM_SEEDS=20000 scripts/test.sh     more simulator seeds per cluster size
#   FUZZ_SECONDS=60 scripts/test.sh     longer fuzzing per target (default 20)
set -u
cd "$(dirname "$0")/.."

builds=${TEST_BUILDS:-"plain asan fuzz"}
seeds=${SIM_SEEDS:-1000}
jobs=${TEST_JOBS:-$(nproc)}
passed=0
failed=0

run_build() {
  local name=$1 dir=$2
  shift 2
  echo "== $name build ($dir)"
  local action=setup
  [ -d "$dir/meson-private" ] && action="setup --reconfigure"
  if ! meson $action "$dir" -Dsim_seeds="$seeds" "$@" >"$dir.setup.log" 2>&1; then
    cat "$dir.setup.log"
    echo "test.sh: $name: meson setup failed"
    failed=$((failed + 1))
    return
  fi
  if ! ninja -C "$dir"; then
    echo "test.sh: $name: build failed"
    failed=$((failed + 1))
    return
  fi
  local log="$dir/test-summary.log"
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" 2>&1 | tee "$log"
  # meson's own summary block: "Ok:", "Expected Fail:", "Fail:", ...
  local ok xfail fail xpass timeout
  ok=$(awk '/^Ok:/ {print $2}' "$log")
  xfail=$(awk '/^Expected Fail:/ {print $3}' "$log")
  fail=$(awk '/^Fail:/ {print $2}' "$log")
  xpass=$(awk '/^Unexpected Pass:/ {print $3}' "$log")
  timeout=$(awk '/^Timeout:/ {print $2}' "$log")
  if [ -z "$ok" ]; then
    echo "test.sh: $name: no test summary from meson"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + ok + ${xfail:-0}))
  failed=$((failed + ${fail:-0} + ${xpass:-0} + ${timeout:-0}))
}

# Every fuzz target is one test: a PASS line passed, anything else failed.
run_fuzz() {
  echo "== fuzz build (build-fuzz), ${FUZZ_SECONDS:-20} s per target"
  mkdir -p build-fuzz
  local log=build-fuzz/test-summary.log
  scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee "$log"
  local ok bad
  ok=$(grep -c '^fuzz [a-z]*: PASS' "$log")
  bad=$(grep -c '^fuzz [a-z]*: FAIL' "$log")
  if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
    echo "test.sh: fuzz: no fuzz results (setup or build failed)"
    bad=1
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
}

for b in $builds; do
  case $b in
    plain) run_build plain build ;;
    asan) run_build asan build-asan -Db_sanitize=address,undefined -Db_lundef=false ;;
    fuzz) run_fuzz ;;
    *) echo "test.sh: unknown build '$b'"; failed=$((failed + 1)) ;;
  esac
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
