#!/usr/bin/env bash
# Build raftkv twice -- plain, and with AddressSanitizer + UndefinedBehavior-
# Sanitizer -- and run the whole meson test suite in each (unit tests, the
# simulator and its broken-rule checks, storage crash tests, cluster, proxy
# and nemesis tests); then build the libFuzzer targets with clang and run
# each for a short bounded time (scripts/fuzz.sh); build and check the .deb
# and .rpm (scripts/check-packages.sh); and install the .deb into a booted
# systemd container (tests/systemd/run.sh).  Ends with one line
# "N passed, N failed" counting meson tests over both builds plus one per
# fuzz target, package check and container step.
#
#   scripts/test.sh            all: plain asan fuzz packages systemd
#   TEST_BUILDS=plain scripts/test.sh   only some of them
#   SIM_SEEDS=20000 scripts/test.sh     more simulator seeds per cluster size
#   FUZZ_SECONDS=60 scripts/test.sh     longer fuzzing per target (default 20)
set -u
cd "$(dirname "$0")/.."

builds=${TEST_BUILDS:-"plain asan fuzz packages systemd"}
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

# A step whose command prints one "<prefix> <name>: PASS" or
# "<prefix> <name>: FAIL ..." line per check (fuzz targets, package checks,
# container steps): each line is one test.  A failing exit status with no
# FAIL line (setup broke, the run was cut short) counts as one failure.
run_lines() {
  local prefix=$1 log=$2
  shift 2
  mkdir -p "$(dirname "$log")"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} ok bad
  ok=$(grep -c "^$prefix [^:]*: PASS" "$log")
  bad=$(grep -c "^$prefix [^:]*: FAIL" "$log")
  if [ "$rc" -eq 77 ] && [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
    echo "test.sh: $prefix: skipped (CI=true makes this a failure)"
    return
  fi
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
    echo "test.sh: $prefix: exit status $rc without a FAIL line"
    bad=1
  fi
  if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
    echo "test.sh: $prefix: no results"
    bad=1
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
}

for b in $builds; do
  case $b in
    plain) run_build plain build ;;
    asan) run_build asan build-asan -Db_sanitize=address,undefined -Db_lundef=false ;;
    fuzz)
      echo "== fuzz build (build-fuzz), ${FUZZ_SECONDS:-20} s per target"
      run_lines fuzz build-fuzz/test-summary.log scripts/fuzz.sh "${FUZZ_SECONDS:-20}" ;;
    packages)
      echo "== packages (.deb and .rpm, into build-pkg)"
      run_lines package build-pkg/test-summary.log scripts/check-packages.sh build-pkg ;;
    systemd)
      echo "== the .deb under a real systemd (tests/systemd/run.sh)"
      run_lines systemd build-systemd/test-summary.log tests/systemd/run.sh ;;
    *) echo "test.sh: unknown build '$b'"; failed=$((failed + 1)) ;;
  esac
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
