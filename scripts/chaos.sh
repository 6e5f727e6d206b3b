#!/usr/bin/env bash
# chaos.sh - nemesis runs (tests/chaos/nemesis.py) one after another: seeded
# faults against a real cluster + proxy in network namespaces, each run
# checked for linearizability.  Needs root and a built tree.
#
#   scripts/chaos.sh                    one run, random seed
#   scripts/chaos.sh --seed S           re-run seed S (same fault schedule)
#   scripts/chaos.sh --seeds N          N runs with random seeds
#   scripts/chaos.sh --soak MINUTES     random seeds back to back for MINUTES
#   options: --duration SECONDS (per run, default 60)  --nodes 3|5 (default:
#   from the seed)  --membership (also remove, wipe and re-add a follower)
#   BUILD_DIR=build-asan scripts/chaos.sh ...   binaries from another build
#
# Prints each run's line and a summary (runs, ops checked, faults by kind,
# violations); exits non-zero if any run failed.  Histories and node logs of
# failing runs stay in $CHAOS_DIR (default /tmp/raftkv-chaos).
set -u
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

seeds=1 seed="" duration=60 nodes="" soak="" membership=""
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --soak) soak=$2; shift 2 ;;
    --membership) membership=--membership; shift ;;
    -h|--help) usage ;;
    *) echo "chaos.sh: unknown argument $1" >&2; usage ;;
  esac
done

build=${BUILD_DIR:-build}
export RAFTKV_NODE=${RAFTKV_NODE:-$build/src/node/raftkv-node}
export RAFTKV_PROXY=${RAFTKV_PROXY:-$build/src/proxy/raftkv-proxy}
export RAFTKV_PROTO_DIR=${RAFTKV_PROTO_DIR:-proto}
if [ "$(id -u)" != 0 ]; then
  echo "chaos.sh: needs root (network namespaces)" >&2
  exit 1
fi
if [ -z "${CHAOS_NO_BUILD:-}" ]; then
  ninja -C "$build" src/node/raftkv-node src/proxy/raftkv-proxy >/dev/null ||
    { echo "chaos.sh: build failed" >&2; exit 1; }
fi
# Run private copies: a rebuild of the tree during a long soak must not
# swap (or half-write) the binaries under a running schedule.
bindir=$(mktemp -d /tmp/raftkv-chaos-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
cp "$RAFTKV_NODE" "$bindir/raftkv-node" && cp "$RAFTKV_PROXY" "$bindir/raftkv-proxy" ||
  { echo "chaos.sh: cannot copy the binaries" >&2; exit 1; }
export RAFTKV_NODE=$bindir/raftkv-node RAFTKV_PROXY=$bindir/raftkv-proxy

nodes_arg=()
[ -n "$nodes" ] && nodes_arg=(--nodes "$nodes")
[ -n "$membership" ] && nodes_arg+=("$membership")
runs=0 failed=0 violations=0 ops=0 ok=0 fail=0 unknown=0
declare -A faults=([kill]=0 [pause]=0 [partition]=0 [asym]=0 [restart_all]=0 [member]=0)
failures=()
start=$(date +%s)

one_run() {
  local s=$1 line out
  out=$(mktemp /tmp/raftkv-chaos-run.XXXXXX)
  /usr/bin/python3 tests/chaos/nemesis.py --seed "$s" --duration "$duration" "${nodes_arg[@]}" \
    >"$out" 2>&1
  cat "$out"
  line=$(grep '^chaos seed=' "$out" | tail -1)
  rm -f "$out"
  runs=$((runs + 1))
  if [ -z "$line" ]; then
    failed=$((failed + 1))
    failures+=("seed=$s (no result line)")
    return
  fi
  if [[ $line =~ ops=([0-9]+)\ \(ok\ ([0-9]+),\ fail\ ([0-9]+),\ unknown\ ([0-9]+)\) ]]; then
    ops=$((ops + BASH_REMATCH[1])) ok=$((ok + BASH_REMATCH[2]))
    fail=$((fail + BASH_REMATCH[3])) unknown=$((unknown + BASH_REMATCH[4]))
  fi
  for k in "${!faults[@]}"; do
    [[ $line =~ \ $k=([0-9]+) ]] && faults[$k]=$((faults[$k] + BASH_REMATCH[1]))
  done
  if [[ $line != *result=PASS* ]]; then
    failed=$((failed + 1))
    [[ $line == *"NOT linearizable"* || $line == *"counter "* ]] && violations=$((violations + 1))
    failures+=("seed=$s ${line#*result=}")
  fi
}

random_seed() { echo $(( (RANDOM << 15 | RANDOM) + 1 )); }

if [ -n "$seed" ]; then
  one_run "$seed"
elif [ -n "$soak" ]; then
  end=$((start + soak * 60))
  # start a run only if it can finish (load + ~20 s set-up and check) in time
  while [ $(( $(date +%s) + duration + 20 )) -le "$end" ]; do
    one_run "$(random_seed)"
  done
else
  for _ in $(seq "$seeds"); do
    one_run "$(random_seed)"
  done
fi

took=$(( $(date +%s) - start ))
echo "chaos summary: runs=$runs ops checked=$ops (ok $ok, fail $fail, unknown $unknown)" \
     "faults: kill=${faults[kill]} pause=${faults[pause]} partition=${faults[partition]}" \
     "asym=${faults[asym]} restart_all=${faults[restart_all]} member=${faults[member]}" \
     "violations=$violations failed runs=$failed time=${took}s"
for f in "${failures[@]}"; do
  echo "  FAILED $f"
done
[ "$failed" -eq 0 ]
