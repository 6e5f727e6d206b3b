#!/usr/bin/env bash
# The main job: build raftkv and run a local 3-node cluster plus the proxy
# on 127.0.0.1
# with its data under ./data/local, show it working, and keep it running
# until Ctrl-C (every process it started is stopped by PID on the way out).
#
#   scripts/run.sh            run until Ctrl-C
#   scripts/run.sh --once     show it working, then stop
#   NODES=5 BASE_PORT=7400 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${NODES:-3}
base=${BASE_PORT:-7300}
once=0
[ "${1:-}" = "--once" ] && once=1
dir=$PWD/data/local
ctl=build/src/ctl/raftkvctl
node=build/src/node/raftkv-node
proxy=build/src/proxy/raftkv-proxy

[ -d build/meson-private ] || meson setup build >/dev/null
ninja -C build >/dev/null

mkdir -p "$dir/run"
$ctl config generate --nodes "$nodes" --base-port "$base" --data-dir-base "$dir" \
  --run-dir "$dir/run" --name local --file "$dir/raftkv.conf"

pids=()
stop() {
  trap - EXIT INT TERM
  echo "== stopping the cluster and the proxy"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap stop EXIT INT TERM

for i in $(seq "$nodes"); do
  $node --id "$i" --config "$dir/raftkv.conf" 2>"$dir/node-$i.log" &
  pids+=($!)
done
$proxy --config "$dir/raftkv.conf" 2>"$dir/proxy.log" &
pids+=($!)
echo "== started $nodes nodes and the proxy (pids ${pids[*]}); logs in $dir/node-N.log, $dir/proxy.log"

# Clients talk to the proxy only; it finds the leader and spreads reads.
endpoints="unix:$dir/run/proxy.sock,127.0.0.1:$base"
export RAFTKV_ENDPOINT=$endpoints

# wait (bounded) until a leader is elected
for _ in $(seq 100); do
  $ctl -c "$dir/raftkv.conf" -o plain status 2>/dev/null | grep -q leader && break
  sleep 0.1
done

echo "== raftkvctl status"
$ctl -c "$dir/raftkv.conf" status
echo "== raftkvctl set greeting hello; get greeting"
$ctl set greeting hello
$ctl get greeting
echo
echo "Proxy endpoints: $endpoints"
echo "Try: RAFTKV_ENDPOINT=$endpoints $ctl status"
[ "$once" -eq 1 ] && exit 0
echo "Press Ctrl-C to stop."
wait
