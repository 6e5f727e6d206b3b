#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz) in build-fuzz with clang and run
# each for SECONDS (default 60) over a working copy of its seed corpus.
# Prints one line per target:
#   fuzz <target>: PASS <execs> execs in <s> s, corpus <n>
#   fuzz <target>: FAIL (<reason>) ... input kept in <path>
# and exits non-zero if any target crashed, leaked, timed out or failed to
# build.  Crashing inputs stay in build-fuzz/fuzz-crashes/<target>/.
#
#   scripts/fuzz.sh             every target, 60 s each
#   scripts/fuzz.sh 600         longer
#   FUZZ_TARGETS="frame peer" scripts/fuzz.sh 30
#   FUZZ_JOBS=1 scripts/fuzz.sh  targets one at a time (default: nproc at once)
set -u
cd "$(dirname "$0")/.."

secs=${1:-60}
dir=${FUZZ_DIR:-build-fuzz}
targets=${FUZZ_TARGETS:-"frame request peer snaprx config segment snapshot meta tlsname pxframe"}
jobs=${FUZZ_JOBS:-$(nproc)}

if [ ! -d "$dir/meson-private" ]; then
  # Everything instrumented for coverage (fuzzer-no-link) and ASan+UBSan;
  # the fuzz targets add -fsanitize=fuzzer themselves (tests/fuzz/meson.build).
  if ! CC=clang meson setup "$dir" -Dfuzz=true -Dwerror=false \
      -Db_sanitize=address,undefined -Db_lundef=false \
      -Dc_args=-fsanitize=fuzzer-no-link -Dc_link_args=-fsanitize=fuzzer-no-link \
      >"$dir.setup.log" 2>&1; then
    cat "$dir.setup.log"
    echo "fuzz.sh: meson setup failed"
    exit 2
  fi
fi
build=()
for t in $targets; do build+=("tests/fuzz/fuzz-$t"); done
if ! ninja -C "$dir" "${build[@]}"; then
  echo "fuzz.sh: build failed"
  exit 2
fi

work="$dir/fuzz-work"
crashes="$dir/fuzz-crashes"
mkdir -p "$work" "$crashes"

run_one() {
  local t=$1
  local corpus="$work/corpus-$t" art="$crashes/$t/"
  mkdir -p "$corpus" "$art"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
  local dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  "$dir/tests/fuzz/fuzz-$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$art" "${dict[@]}" "$corpus" \
    >"$work/$t.log" 2>&1
  echo $? >"$work/$t.rc"
}

rm -f "$work"/*.rc
running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

bad=0
for t in $targets; do
  log="$work/$t.log"
  rc=$(cat "$work/$t.rc" 2>/dev/null || echo 99)
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log")
  corpus=$(find "$work/corpus-$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: PASS ${execs:-?} execs in $secs s, corpus $corpus"
  else
    bad=$((bad + 1))
    reason=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z -]+|runtime error: .*|deadly signal|timeout' "$log")
    input=$(grep -m1 -oE 'Test unit written to .*' "$log" | sed 's/Test unit written to //')
    echo "fuzz $t: FAIL (rc $rc: ${reason:-see $log}) ${execs:-?} execs; input kept in ${input:-$crashes/$t/}; log $log"
  fi
done
[ "$bad" -eq 0 ]
