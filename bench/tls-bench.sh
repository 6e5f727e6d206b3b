#!/usr/bin/env bash
# tls-bench.sh - what TLS costs (issue 15): a 3-node raftkv cluster on
# 127.0.0.1, fsync on, once in plaintext and once with TLS on every socket
# ('config generate --tls'), the same workloads against the leader's client
# port with the admin certificate:
#
#   put   64 closed-loop clients, 100-byte values (raftkvctl bench --ratio 1:0)
#   get   the same with linearizable gets (--ratio 0:1, keys written first)
#   handshakes  new TLS connections per second to a node's client port
#         (openssl s_time -new: full TLS 1.3 handshake each, the admin
#         client certificate included), and plaintext connects for contrast
#
# Run by hand on a quiet machine:  bench/tls-bench.sh [--duration S] [--runs R]
# Every process started here is killed by PID on exit; every wait has a
# deadline.  Target (issue 15): TLS costs at most 15% of put and 25% of get
# throughput at 64 clients.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=10
runs=3
clients=64
build_dir="$ROOT/build-bench"
base=7600

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    *) echo "usage: bench/tls-bench.sh [--duration S] [--runs R] [--clients C] [--build-dir DIR]" >&2; exit 2 ;;
  esac
done

if [ ! -d "$build_dir/meson-private" ]; then
  meson setup "$build_dir" "$ROOT" --buildtype=release >/dev/null
fi
ninja -C "$build_dir" src/node/raftkv-node src/ctl/raftkvctl >/dev/null
NODE="$build_dir/src/node/raftkv-node"
CTL="$build_dir/src/ctl/raftkvctl"
work=$(mktemp -d /tmp/raftkv-tls-bench.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  pids=()
}
trap 'cleanup; rm -rf "$work"' EXIT

# start MODE: a fresh cluster in $work/MODE; sets conf, tlsargs, leader_ep
start() {
  local mode=$1 dir="$work/$1"
  mkdir -p "$dir/run"
  local gen=("$CTL" config generate --nodes 3 --base-port "$base" --data-dir-base "$dir/data"
             --run-dir "$dir/run" --name "bench-$mode" -f "$dir/raftkv.conf")
  tlsargs=()
  if [ "$mode" = tls ]; then
    gen+=(--tls-dir "$dir/tls")
    tlsargs=(--tls-ca "$dir/tls/ca.crt" --tls-cert "$dir/tls/admin.crt" --tls-key "$dir/tls/admin.key")
  fi
  "${gen[@]}" 2>/dev/null
  conf="$dir/raftkv.conf"
  for i in 1 2 3; do
    "$NODE" --id "$i" --config "$conf" 2>"$dir/node-$i.log" &
    pids+=($!)
  done
  for _ in $(seq 200); do
    if "$CTL" -c "$conf" "${tlsargs[@]}" -o plain status 2>/dev/null | grep -q leader; then break; fi
    sleep 0.1
  done
  leader_ep=$("$CTL" -c "$conf" "${tlsargs[@]}" -o json status | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([n["address"] for n in d["nodes"] if n.get("role") == "leader"][0])')
}

bench() { # bench RATIO
  "$CTL" -e "$leader_ep" "${tlsargs[@]}" -o json bench --clients "$clients" --duration "${duration}s" \
    --ratio "$1" --value-size 100 --keys 10000
}

for r in $(seq "$runs"); do
  for mode in plain tls; do
    start "$mode"
    echo "== run $r, $mode: put"; bench 1:0
    echo "== run $r, $mode: get"; bench 0:1
    if [ "$mode" = tls ]; then
      host=${leader_ep%:*}; port=${leader_ep##*:}
      echo "== run $r, tls: handshakes/s to $leader_ep (openssl s_time -new, ${duration}s)"
      openssl s_time -connect "$host:$port" -new -CAfile "$work/tls/tls/ca.crt" \
        -cert "$work/tls/tls/admin.crt" -key "$work/tls/tls/admin.key" -time "$duration" 2>&1 |
        grep -E "connections in|connections/user" || true
    fi
    cleanup
    rm -rf "${work:?}/$mode"
  done
done
