#!/usr/bin/env bash
# etcd-vs-raftkv.sh - the side-by-side benchmark of issue 4: a 3-member etcd
# cluster (Debian's etcd-server 3.4) and a 3-node raftkv cluster on this
# machine, 127.0.0.1, fsync on, same workload shapes:
#
#   put   64 closed-loop clients, 100-byte values, random keys out of K
#   get   the same with linearizable gets (keys written first, untimed);
#         raftkv's also through raftkv-proxy (issue 17's target: >= 10x etcd)
#   failover  >= 10 trials: 8 continuous writers, kill -9 of the leader,
#         time from the kill to the first successful write sent after it,
#         and the longest gap between successful writes; the member is
#         restarted and the cluster is healthy again before the next trial
#
# etcd's load comes from bench/etcd/loadgen.go (built here, offline, against
# Debian's golang-etcd-server-dev), raftkv's from `raftkvctl bench`; both
# failover writers are loadgen's (same loop, clock and analysis).
#
# --tls: both clusters on TLS 1.3 with mutual TLS on client and peer links
# (issue 15: raftkv >= 3x etcd's writes with etcd also on TLS), every
# certificate from raftkvctl: 'config generate --tls' for raftkv's, 'certs
# add-node 100 --ip 127.0.0.1' for etcd's members (one certificate for the
# three, all on 127.0.0.1, used as server and peer certificate) and 'certs
# add-client admin etcd --ip 127.0.0.1' for etcd's clients.  --ip because Go
# checks a server's certificate against the address it dials, and etcd a
# client certificate's names against the client's address; raftkv's own
# certificates name nodes, not addresses.  etcd runs with --cert-file,
# --key-file, --trusted-ca-file, --client-cert-auth and the --peer-*
# equivalents; loadgen and raftkvctl present client certificates.
#
# Run by hand, not by CI:   bench/etcd-vs-raftkv.sh            (~10 minutes)
# Prerequisites: scripts/install-deps.sh and scripts/install-bench-deps.sh.
# Every process started here is killed by PID on exit; every wait has a
# deadline.  Results go to stdout; the raw outputs stay in the work
# directory with --keep.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

duration=10          # seconds per put/get run
runs=3               # rounds of put/get runs, the systems interleaved
trials=10            # failover trials per configuration
clients=64
conns=8              # etcd: gRPC connections the clients are spread over
keys=10000
value_size=100
fo_clients=8         # failover writers
fo_timeout=100       # ms: failover writers' per-request deadline (see below)
skip_load=0
etcd_fast=1          # also run the failover trials with 25/250 ms
build_dir="$ROOT/build-bench"
do_build=1
keep=0
only=""              # etcd | raftkv | "" (both)
tls=0                # --tls: both on TLS 1.3

usage() {
  cat <<EOF
Usage: bench/etcd-vs-raftkv.sh [OPTIONS]

  --duration S        seconds per put/get run (default $duration)
  --runs R            rounds of put and get runs, etcd's and raftkv's
                      interleaved (default $runs)
  --trials N          failover trials per configuration (default $trials)
  --clients C         concurrent clients for put/get (default $clients)
  --keys K            key space (default $keys)
  --fo-timeout MS     failover writers' per-request deadline, after which
                      they retry (default $fo_timeout)
  --failover-only     skip the put/get runs
  --no-etcd-fast      skip etcd's failover trials with heartbeat 25 ms /
                      election 250 ms (run by default after the default ones)
  --build-dir DIR     raftkv build (default build-bench: meson release build,
                      set up and built here unless --no-build)
  --no-build          use DIR as it is
  --only etcd|raftkv  run one side only
  --tls               both clusters on TLS 1.3, mutual on every link, every
                      certificate made by raftkvctl (see the top of this file)
  --keep              keep the work directory (data, logs, raw outputs)
  -h, --help          this text
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --trials) trials="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --keys) keys="$2"; shift 2 ;;
    --no-etcd-fast) etcd_fast=0; shift ;;
    --fo-timeout) fo_timeout="$2"; shift 2 ;;
    --failover-only) skip_load=1; shift ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --only) only="$2"; shift 2 ;;
    --tls) tls=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "etcd-vs-raftkv: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- prerequisites ----------------------------------------------------------

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v go >/dev/null || missing+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] || missing+=(golang-etcd-server-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "etcd-vs-raftkv: missing Debian packages: ${missing[*]}" >&2
  echo "  install them with: scripts/install-bench-deps.sh" >&2
  echo "  (or: apt-get install ${missing[*]})" >&2
  exit 1
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)" || die "python3 is needed (JSON parsing)"
for t in meson ninja; do
  command -v "$t" >/dev/null || die "$t missing: run scripts/install-deps.sh"
done

# ---- bookkeeping: every process we start is killed on exit ------------------

WORK="$(mktemp -d /tmp/etcd-vs-raftkv.XXXXXX)"
declare -A PIDS=()        # pid -> description
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${!PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
  done
  for pid in "${!PIDS[@]}"; do
    { wait "$pid" || true; } 2>/dev/null
  done
  if [ "$keep" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget() { unset "PIDS[$1]"; }

# wait_for DEADLINE_S DESCRIPTION CMD...: run CMD until it succeeds.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local end=$(( $(date +%s%N) + limit * 1000000000 ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s%N)" -ge "$end" ]; then
      log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.05
  done
}

# n free loopback TCP ports below the kernel's ephemeral range: a port from
# bind(port 0) lies inside it, and a member dialling a peer that does not
# listen yet can get that very port as its source port (a TCP self-connect),
# after which the peer cannot bind it (seen in raftkv's abuse-tls test;
# tests/cluster/harness.py, free_listen_ports)
free_ports() {
  "$PY" - "$1" <<'EOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
socks, ports = [], []
while len(ports) < int(sys.argv[1]):
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue  # taken, by someone else or by us (we hold ours)
    socks.append(s); ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# RESULT line field: field NAME < file
field() { sed -n 's/^RESULT .*[ ]'"$1"'=\([^ ]*\).*/\1/p' | tail -1; }

# median and range of numbers on stdin: "median min max n_ok"; a negative
# number (a trial that never recovered) counts as infinitely long
stats() {
  "$PY" -c '
import sys, statistics
v = [float(x) for x in sys.stdin.read().split()]
ok = [x for x in v if x >= 0]
v = [x if x >= 0 else float("inf") for x in v]
if not v: print("nan nan nan 0")
else: print("%.1f %.1f %.1f %d" % (statistics.median(v), min(v), max(v), len(ok)))'
}

# ---- builds -------------------------------------------------------------------

log "work directory $WORK"
LOADGEN="$WORK/loadgen"
log "building bench/etcd/loadgen (offline, GOPATH mode against /usr/share/gocode)"
( cd "$ROOT/bench/etcd" &&
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$WORK/gocache" GOFLAGS= \
    go build -o "$LOADGEN" . ) || die "building loadgen failed"

NODE_BIN="$build_dir/src/node/raftkv-node"
CTL_BIN="$build_dir/src/ctl/raftkvctl"
PROXY_BIN="$build_dir/src/proxy/raftkv-proxy"
if [ "$only" != etcd ] || [ "$tls" = 1 ]; then
  if [ "$do_build" = 1 ]; then
    if [ ! -d "$build_dir" ]; then
      log "setting up the raftkv release build in $build_dir"
      meson setup "$build_dir" "$ROOT" -Dbuildtype=release -Dtests=disabled >"$WORK/meson.log" 2>&1 ||
        { tail -20 "$WORK/meson.log" >&2; die "meson setup failed"; }
    fi
    log "building raftkv in $build_dir"
    ninja -C "$build_dir" >"$WORK/ninja.log" 2>&1 || { tail -20 "$WORK/ninja.log" >&2; die "ninja failed"; }
  fi
  [ -x "$NODE_BIN" ] || die "no $NODE_BIN"
  [ -x "$CTL_BIN" ] || die "no $CTL_BIN (raftkvctl bench provides raftkv's load)"
  [ -x "$PROXY_BIN" ] || die "no $PROXY_BIN"
  "$CTL_BIN" bench --help >/dev/null 2>&1 || die "$CTL_BIN has no working 'bench' command"
fi

# ---- TLS: every certificate from raftkvctl -----------------------------------------

ES=http                  # etcd's URL scheme
ETCD_TLS=()              # etcd's flags
LG_ETCD_TLS=()           # loadgen -system etcd
LG_RKV_TLS=()            # loadgen -system raftkv
RKV_CTL_TLS=()           # raftkvctl
TLS_DIR="$WORK/tls"
if [ "$tls" = 1 ]; then
  log "TLS: certificates for both clusters from raftkvctl in $TLS_DIR"
  "$CTL_BIN" config generate --nodes 3 --tls-dir "$TLS_DIR" -f "$WORK/tls-generated.conf" 2>>"$WORK/certs.log" ||
    die "raftkvctl config generate --tls failed: $(cat "$WORK/certs.log")"
  "$CTL_BIN" certs add-node 100 --ip 127.0.0.1 --tls-dir "$TLS_DIR" 2>>"$WORK/certs.log" ||
    die "raftkvctl certs add-node failed: $(cat "$WORK/certs.log")"
  "$CTL_BIN" certs add-client admin etcd --ip 127.0.0.1 --tls-dir "$TLS_DIR" 2>>"$WORK/certs.log" ||
    die "raftkvctl certs add-client failed: $(cat "$WORK/certs.log")"
  ES=https
  ETCD_TLS=(--cert-file "$TLS_DIR/node-100.crt" --key-file "$TLS_DIR/node-100.key"
            --trusted-ca-file "$TLS_DIR/ca.crt" --client-cert-auth
            --peer-cert-file "$TLS_DIR/node-100.crt" --peer-key-file "$TLS_DIR/node-100.key"
            --peer-trusted-ca-file "$TLS_DIR/ca.crt" --peer-client-cert-auth)
  export ETCDCTL_CACERT="$TLS_DIR/ca.crt" ETCDCTL_CERT="$TLS_DIR/client-admin-etcd.crt"
  export ETCDCTL_KEY="$TLS_DIR/client-admin-etcd.key"
  LG_ETCD_TLS=(-cacert "$TLS_DIR/ca.crt" -cert "$TLS_DIR/client-admin-etcd.crt" -key "$TLS_DIR/client-admin-etcd.key")
  LG_RKV_TLS=(-cacert "$TLS_DIR/ca.crt" -cert "$TLS_DIR/admin.crt" -key "$TLS_DIR/admin.key")
  RKV_CTL_TLS=(--tls-ca "$TLS_DIR/ca.crt" --tls-cert "$TLS_DIR/admin.crt" --tls-key "$TLS_DIR/admin.key")
fi

# ---- etcd -----------------------------------------------------------------------

ETCD_DIR="$WORK/etcd"
declare -a ECPORT EPPORT EPID
ETCD_HB=100
ETCD_EL=1000
ETCD_TOKEN=""

etcd_endpoints() { echo "$ES://127.0.0.1:${ECPORT[1]},$ES://127.0.0.1:${ECPORT[2]},$ES://127.0.0.1:${ECPORT[3]}"; }

etcd_start_member() {
  local i="$1" cluster="" j
  for j in 1 2 3; do
    cluster+="${cluster:+,}m$j=$ES://127.0.0.1:${EPPORT[$j]}"
  done
  etcd --name "m$i" --data-dir "$ETCD_DIR/m$i" \
    --listen-client-urls "$ES://127.0.0.1:${ECPORT[$i]}" \
    --advertise-client-urls "$ES://127.0.0.1:${ECPORT[$i]}" \
    --listen-peer-urls "$ES://127.0.0.1:${EPPORT[$i]}" \
    --initial-advertise-peer-urls "$ES://127.0.0.1:${EPPORT[$i]}" "${ETCD_TLS[@]}" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "$ETCD_TOKEN" \
    --heartbeat-interval "$ETCD_HB" --election-timeout "$ETCD_EL" \
    --logger zap --log-outputs stderr --log-level warn \
    </dev/null >>"$ETCD_DIR/m$i.log" 2>&1 &
  EPID[$i]=$!
  PIDS[$!]="etcd m$i"
}

etcd_healthy() {
  ETCDCTL_API=3 etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=2s endpoint health >/dev/null 2>&1
}

# etcd_leader: prints the index (1..3) of the member that leads
etcd_leader() {
  local port i
  port="$(ETCDCTL_API=3 etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=2s \
            endpoint status -w json 2>/dev/null | "$PY" -c '
import json, sys
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(s["Endpoint"].rsplit(":", 1)[1]); break' 2>/dev/null)" || true
  for i in 1 2 3; do
    if [ -n "$port" ] && [ "${ECPORT[$i]}" = "$port" ]; then echo "$i"; fi
  done
  return 0
}
etcd_has_leader() { test -n "$(etcd_leader)"; }

etcd_cluster_start() {
  local i
  rm -rf "$ETCD_DIR"; mkdir -p "$ETCD_DIR"
  read -r -a ports <<<"$(free_ports 6)"
  for i in 1 2 3; do
    ECPORT[$i]=${ports[$(( (i - 1) * 2 ))]}
    EPPORT[$i]=${ports[$(( (i - 1) * 2 + 1 ))]}
  done
  ETCD_TOKEN="bench-$$-$RANDOM"
  for i in 1 2 3; do etcd_start_member "$i"; done
  wait_for 60 "etcd cluster healthy" etcd_healthy || die "etcd did not become healthy (logs: $ETCD_DIR)"
  wait_for 30 "etcd leader" etcd_has_leader || die "etcd has no leader"
}

etcd_cluster_stop() {
  local i
  for i in 1 2 3; do
    if [ -n "${EPID[$i]:-}" ]; then
      kill -9 "${EPID[$i]}" 2>/dev/null || true
      { wait "${EPID[$i]}" || true; } 2>/dev/null
      forget "${EPID[$i]}"
      EPID[$i]=""
    fi
  done
}

# ---- raftkv ---------------------------------------------------------------------

RKV_DIR="$WORK/raftkv"
declare -a RCPORT RPPORT RPID
RXPORT=""; RXPID=""

rkv_endpoints() { echo "127.0.0.1:${RCPORT[1]},127.0.0.1:${RCPORT[2]},127.0.0.1:${RCPORT[3]}"; }

rkv_cluster_start() {
  local i
  rm -rf "$RKV_DIR"; mkdir -p "$RKV_DIR"
  read -r -a ports <<<"$(free_ports 7)"
  {
    echo "# written by bench/etcd-vs-raftkv.sh: raftkv's default timing and limits"
    echo "[cluster]"
    echo "name = bench$$"
    echo "log_level = notice"
    echo "log_target = stderr"
    if [ "$tls" = 1 ]; then
      echo "tls_ca = $TLS_DIR/ca.crt"
      echo "tls_crl = $TLS_DIR/crl.pem"
    fi
    for i in 1 2 3; do
      RPPORT[$i]=${ports[$(( (i - 1) * 2 ))]}
      RCPORT[$i]=${ports[$(( (i - 1) * 2 + 1 ))]}
      echo
      echo "[node.$i]"
      echo "peer = 127.0.0.1:${RPPORT[$i]}"
      echo "client = 127.0.0.1:${RCPORT[$i]}"
      echo "admin = $RKV_DIR/node-$i.sock"
      echo "data_dir = $RKV_DIR/data-$i"
      if [ "$tls" = 1 ]; then
        echo "tls_cert = $TLS_DIR/node-$i.crt"
        echo "tls_key = $TLS_DIR/node-$i.key"
      fi
    done
    echo
    echo "[proxy]"
    echo "listen = 127.0.0.1:${ports[6]}"
    echo "unix ="
    if [ "$tls" = 1 ]; then
      echo "tls_cert = $TLS_DIR/proxy.crt"
      echo "tls_key = $TLS_DIR/proxy.key"
    fi
  } >"$RKV_DIR/raftkv.conf"
  RXPORT=${ports[6]}
  for i in 1 2 3; do rkv_start_node "$i"; done
  wait_for 30 "raftkv leader" rkv_has_leader || die "raftkv has no leader (logs: $RKV_DIR)"
  "$PROXY_BIN" --config "$RKV_DIR/raftkv.conf" </dev/null >>"$RKV_DIR/proxy.log" 2>&1 &
  RXPID=$!
  PIDS[$!]="raftkv proxy"
  wait_for 30 "raftkv proxy" "$CTL_BIN" -e "127.0.0.1:$RXPORT" "${RKV_CTL_TLS[@]}" status || die "raftkv proxy not up (logs: $RKV_DIR)"
}

rkv_start_node() {
  local i="$1"
  "$NODE_BIN" --id "$i" --config "$RKV_DIR/raftkv.conf" </dev/null >>"$RKV_DIR/node-$i.log" 2>&1 &
  RPID[$i]=$!
  PIDS[$!]="raftkv node $i"
}

# rkv_leader: prints the index (1..3) of the node that leads
rkv_leader() {
  { "$LOADGEN" -system raftkv -mode leader -endpoints "$(rkv_endpoints)" "${LG_RKV_TLS[@]}" 2>/dev/null || true; } |
    sed -n 's/^LEADER id=\([0-9]*\) .*/\1/p'
}
rkv_has_leader() { test -n "$(rkv_leader)"; }

# every node answers STATUS and they agree on a leader
rkv_healthy() {
  "$LOADGEN" -system raftkv -mode health -endpoints "$(rkv_endpoints)" "${LG_RKV_TLS[@]}" >/dev/null 2>&1
}

rkv_cluster_stop() {
  local i
  if [ -n "$RXPID" ]; then
    kill -9 "$RXPID" 2>/dev/null || true
    { wait "$RXPID" || true; } 2>/dev/null
    forget "$RXPID"
    RXPID=""
  fi
  for i in 1 2 3; do
    if [ -n "${RPID[$i]:-}" ]; then
      kill -9 "${RPID[$i]}" 2>/dev/null || true
      { wait "${RPID[$i]}" || true; } 2>/dev/null
      forget "${RPID[$i]}"
      RPID[$i]=""
    fi
  done
}

# ---- failover trials (both systems) ---------------------------------------------

# failover_trials SYSTEM LABEL: $trials trials; results in $WORK/fo-LABEL.txt
#
# The writers' per-request deadline ($fo_timeout ms, then retry) is short on
# purpose: an etcd follower forwards a proposal to the leader it still
# believes in, and when that leader is dead the proposal is lost and the
# client waits out its whole deadline.  With a 2 s deadline etcd's measured
# failover was deadline-bound (all writers stuck at once); with 500 ms it
# came in 500 ms steps; at 100 ms it tracks the election.  raftkv followers
# answer NOT_LEADER at once, so the deadline does not matter to it.
failover_trials() {
  local sys="$1" label="$2" t leader pid eps out kf deadline_s
  local res="$WORK/fo-$label.txt"
  : >"$res"
  for t in $(seq 1 "$trials"); do
    kf="$WORK/kill-$label-$t"
    out="$WORK/fo-$label-$t.out"
    rm -f "$kf"
    local lgtls=()
    if [ "$sys" = etcd ]; then eps="$(etcd_endpoints)"; lgtls=("${LG_ETCD_TLS[@]}")
    else eps="$(rkv_endpoints)"; lgtls=("${LG_RKV_TLS[@]}"); fi
    # The writer stops by itself 1 s after its first success after the kill
    # (or after 30 s: a trial with no recovery shows as first_ok_ms=-1).
    "$LOADGEN" -system "$sys" -mode failover -endpoints "$eps" -clients "$fo_clients" \
      -conns "$fo_clients" -value-size "$value_size" -duration 30s -after-kill 1s \
      -kill-file "$kf" -op-timeout "${fo_timeout}ms" "${lgtls[@]}" >"$out" 2>&1 &
    pid=$!
    PIDS[$pid]="failover writer"
    sleep 2   # steady writes
    if [ "$sys" = etcd ]; then leader="$(etcd_leader)"; else leader="$(rkv_leader)"; fi
    if [ -z "$leader" ]; then
      log "$label trial $t: no leader found; skipped"
      kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; forget "$pid"
      continue
    fi
    local victim
    if [ "$sys" = etcd ]; then victim="${EPID[$leader]}"; else victim="${RPID[$leader]}"; fi
    # loadgen takes the time and kills in one go (microseconds apart) and
    # writes the time to $kf, which arms the writer; reap the victim before
    # any other command so that bash does not announce its death
    # (bash reports a background job's death after the next foreground
    # command, so both run with the shell's stderr silenced)
    { "$LOADGEN" -mode kill -pid "$victim" -kill-file "$kf" 2>"$kf.err" || true
      wait "$victim" || true; } 2>/dev/null
    [ -s "$kf" ] || die "could not kill $victim: $(cat "$kf.err")"
    forget "$victim"
    # the writer ends by itself; 40 s is its own deadline plus slack
    deadline_s=$(( $(date +%s) + 40 ))
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline_s" ]; do sleep 0.1; done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
    local first gap
    first="$(field first_ok_ms <"$out")"
    gap="$(field max_gap_ms <"$out")"
    log "$label trial $t: killed leader (member $leader): first write after the kill ${first:-?} ms, longest write gap ${gap:-?} ms"
    echo "${first:--1} ${gap:--1}" >>"$res"
    # restart the killed member, wait until the whole cluster is healthy
    if [ "$sys" = etcd ]; then
      etcd_start_member "$leader"
      wait_for 60 "etcd healthy after restarting m$leader" etcd_healthy || die "etcd did not recover"
    else
      rkv_start_node "$leader"
      wait_for 60 "raftkv healthy after restarting node $leader" rkv_healthy || die "raftkv did not recover"
    fi
    sleep 1
  done
}

# ---- memory ---------------------------------------------------------------------

rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# memory_report: one line per running member: RSS and data directory size
memory_report() {
  local i
  for i in 1 2 3; do
    if [ -n "${EPID[$i]:-}" ]; then
      echo "memory etcd m$i: RSS $(rss_mb "${EPID[$i]}") MB, data dir $(du -sm "$ETCD_DIR/m$i" | cut -f1) MB, $keys keys of $value_size B"
    fi
  done
  for i in 1 2 3; do
    if [ -n "${RPID[$i]:-}" ]; then
      echo "memory raftkv node $i: RSS $(rss_mb "${RPID[$i]}") MB, data dir $(du -sm "$RKV_DIR/data-$i" | cut -f1) MB, $keys keys of $value_size B"
    fi
  done
}

# ---- workloads ------------------------------------------------------------------

etcd_load() { # etcd_load LABEL loadgen-args...
  local label="$1"; shift
  log "etcd $label: $clients clients, ${duration}s"
  "$LOADGEN" -system etcd -clients "$clients" -conns "$conns" -keys "$keys" \
    -value-size "$value_size" -duration "${duration}s" -warmup 1s "${LG_ETCD_TLS[@]}" "$@" \
    >"$WORK/etcd-$label.out" 2>&1 || { cat "$WORK/etcd-$label.out" >&2; die "loadgen failed"; }
  grep -v '^RESULT' "$WORK/etcd-$label.out" >&2 || true
}

rkv_load() { # rkv_load LABEL raftkvctl-bench-args...
  local label="$1"; shift
  log "raftkv $label: $clients clients, ${duration}s"
  "$CTL_BIN" -e "${RKV_EP:-$(rkv_endpoints)}" "${RKV_CTL_TLS[@]}" -o json bench --clients "$clients" --duration "${duration}s" \
    --value-size "$value_size" --keys "$keys" "$@" >"$WORK/raftkv-$label.json" 2>"$WORK/raftkv-$label.err" ||
    { cat "$WORK/raftkv-$label.err" >&2; die "raftkvctl bench failed"; }
  cat "$WORK/raftkv-$label.json" >&2
}

# ---- the run --------------------------------------------------------------------

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
fs="$(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
log "machine: $(nproc) CPUs, $cpu, $fs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), $(go version | awk '{print $3}')"
{
  echo "date=$(date -u '+%F %T UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$cpu"
  echo "fs=$fs"
  echo "kernel=$(uname -r)"
  echo "etcd=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$tls" = 1 ]; then echo "tls=TLS 1.3 on both (mutual on client and peer links; certificates from raftkvctl)"
  else echo "tls=plaintext on both"; fi
} >"$WORK/machine.txt"

# Throughput: both clusters up (the idle one only heartbeats), runs
# interleaved so that background load on the machine hits both alike.
# Puts and gets go to the leader's endpoint: etcd followers would forward
# puts (an extra hop), and raftkvctl bench sends everything to the leader
# after the first redirect; gets are linearizable (ReadIndex) on both.
if [ "$skip_load" = 1 ]; then runs=0; fi
if [ "$only" != raftkv ] && [ "$runs" -gt 0 ]; then
  ETCD_HB=100; ETCD_EL=1000
  log "etcd: 3 members, heartbeat ${ETCD_HB} ms, election ${ETCD_EL} ms"
  etcd_cluster_start
fi
if [ "$only" != etcd ] && [ "$runs" -gt 0 ]; then
  log "raftkv: 3 nodes, default timing (config: $RKV_DIR/raftkv.conf)"
  rkv_cluster_start
fi
for r in $(seq 1 "$runs"); do
  nopop=(); noprefill=()
  if [ "$r" -gt 1 ]; then nopop=(-no-populate); noprefill=(--no-prefill); fi
  if [ "$only" != raftkv ]; then
    el="$(etcd_leader)"; [ -n "$el" ] || die "etcd has no leader"
    etcd_load "put-$r" -mode put -endpoints "127.0.0.1:${ECPORT[$el]}"
  fi
  [ "$only" = etcd ] || rkv_load "put-$r" --ratio 1:0
  if [ "$only" != raftkv ]; then
    etcd_load "get-$r" -mode get -endpoints "127.0.0.1:${ECPORT[$el]}" "${nopop[@]}"
  fi
  [ "$only" = etcd ] || rkv_load "get-$r" --ratio 0:1 "${noprefill[@]}"
  [ "$only" = etcd ] || RKV_EP="127.0.0.1:$RXPORT" rkv_load "getpx-$r" --ratio 0:1 --no-prefill
done
if [ "$only" != raftkv ] && [ "$runs" -gt 0 ]; then
  # for the record: etcd's linearizable gets spread over all three members
  etcd_load get-all -mode get -endpoints "$(etcd_endpoints)" -no-populate
fi
# Memory with the whole key space written (the get runs populate every key)
if [ "$runs" -gt 0 ]; then
  memory_report >"$WORK/memory.txt"
  cat "$WORK/memory.txt" >&2
fi
etcd_cluster_stop
rkv_cluster_stop

# Failover: one fresh cluster at a time.
if [ "$only" != raftkv ]; then
  ETCD_HB=100; ETCD_EL=1000
  log "etcd (heartbeat ${ETCD_HB} ms, election ${ETCD_EL} ms): failover, $trials trials"
  etcd_cluster_start
  failover_trials etcd etcd
  etcd_cluster_stop
  if [ "$etcd_fast" = 1 ]; then
    ETCD_HB=25; ETCD_EL=250
    log "etcd (heartbeat ${ETCD_HB} ms, election ${ETCD_EL} ms): failover, $trials trials"
    etcd_cluster_start
    failover_trials etcd etcd-fast
    etcd_cluster_stop
  fi
fi
if [ "$only" != etcd ]; then
  log "raftkv (default timing): failover, $trials trials"
  rkv_cluster_start
  failover_trials raftkv raftkv
  rkv_cluster_stop
fi
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.txt"

# ---- summary --------------------------------------------------------------------

"$PY" - "$WORK" "$runs" "$trials" "$clients" "$value_size" "$keys" "$duration" "$fo_clients" <<'PYEOF'
import json, os, re, statistics, sys

work, runs, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
clients, vsize, keys, dur, fo_clients = sys.argv[4:9]
machine = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(work, "machine.txt")))

def etcd_run(name):
    try:
        text = open(os.path.join(work, "etcd-%s.out" % name)).read()
    except OSError:
        return None
    m = re.findall(r"^RESULT (.*)$", text, re.M)
    if not m:
        return None
    d = dict(kv.split("=", 1) for kv in m[-1].split())
    return {"tput": float(d["ops_per_s"]), "p50": float(d["p50_ms"]), "p99": float(d["p99_ms"]),
            "p999": float(d["p999_ms"]), "errors": int(d["errors"])}

def rkv_run(name):
    try:
        d = json.load(open(os.path.join(work, "raftkv-%s.json" % name)))
    except (OSError, ValueError):
        return None
    a = d["all"]
    return {"tput": a["ops_per_sec"], "p50": a["latency_us"]["p50"] / 1000, "p99": a["latency_us"]["p99"] / 1000,
            "p999": a["latency_us"]["p999"] / 1000, "errors": d["errors"]}

def agg(runs_):
    runs_ = [r for r in runs_ if r]
    if not runs_:
        return None
    out = {}
    for k in ("tput", "p50", "p99", "p999"):
        v = [r[k] for r in runs_]
        out[k] = (statistics.median(v), min(v), max(v))
    out["errors"] = sum(r["errors"] for r in runs_)
    out["n"] = len(runs_)
    return out

res = {}
for w in ("put", "get"):
    res[("etcd", w)] = agg([etcd_run("%s-%d" % (w, r)) for r in range(1, runs + 1)])
    res[("raftkv", w)] = agg([rkv_run("%s-%d" % (w, r)) for r in range(1, runs + 1)])
res[("raftkv", "getpx")] = agg([rkv_run("getpx-%d" % r) for r in range(1, runs + 1)])
getall = etcd_run("get-all")

def fo(label):
    try:
        rows = [l.split() for l in open(os.path.join(work, "fo-%s.txt" % label)) if l.strip()]
    except OSError:
        return None
    if not rows:
        return None
    inf = float("inf")
    first = [float(r[0]) if float(r[0]) >= 0 else inf for r in rows]
    gap = [float(r[1]) if float(r[1]) >= 0 else inf for r in rows]
    return {"first": (statistics.median(first), min(first), max(first)),
            "gap": (statistics.median(gap), min(gap), max(gap)),
            "n": len(rows), "recovered": sum(1 for x in first if x != inf), "rows": rows}

fos = {l: fo(l) for l in ("etcd", "etcd-fast", "raftkv")}

def num(x, d=0):
    if x is None:
        return "n/a"
    if x == float("inf"):
        return "never"
    return "{:,.{}f}".format(x, d).replace(",", " ")

def mr(t, d=0):
    return "n/a" if t is None else "%s (%s-%s)" % (num(t[0], d), num(t[1], d), num(t[2], d))

def ratio(a, b):
    try:
        return "%.2fx" % (a / b)
    except (TypeError, ZeroDivisionError):
        return "n/a"

lines = []
P = lines.append
P("machine: %s CPUs, %s, %s, Linux %s; %s; load average %s at start, %s at end" % (
    machine.get("nproc"), machine.get("cpu"), machine.get("fs"), machine.get("kernel"), machine.get("date"),
    machine.get("load_start"), machine.get("load_end")))
P("security: %s" % machine.get("tls", "?"))
have_load = any(res.values())
if have_load:
    P("put/get: %s closed-loop clients, %s-byte values, %s keys, %s s per run, %d runs each (median, range)" % (
        clients, vsize, keys, dur, runs))
    P("")
    P("| workload | etcd %s | raftkv | raftkv / etcd |" % machine.get("etcd", ""))
    P("|---|---|---|---|")
for w, title in ((("put", "put"), ("get", "linearizable get")) if have_load else ()):
    e, k = res[("etcd", w)], res[("raftkv", w)]
    g = lambda x, f: x[f] if x else None
    P("| %s ops/s | %s | %s | %s |" % (title, mr(g(e, "tput")), mr(g(k, "tput")),
                                       ratio(g(k, "tput") and k["tput"][0], g(e, "tput") and e["tput"][0])))
    for f, name in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        P("| %s %s ms | %s | %s | %s |" % (title, name, mr(g(e, f), 2), mr(g(k, f), 2),
                                           ratio(g(k, f) and k[f][0], g(e, f) and e[f][0])))
    P("| %s errors | %s | %s | |" % (title, e["errors"] if e else "n/a", k["errors"] if k else "n/a"))
kx, eg_ = res[("raftkv", "getpx")], res[("etcd", "get")]
if kx:
    P("| linearizable get through raftkv-proxy ops/s | | %s | %s |" % (
        mr(kx["tput"]), ratio(kx["tput"][0], eg_["tput"][0] if eg_ else None)))
    P("| linearizable get through raftkv-proxy p99 ms | | %s | %s |" % (
        mr(kx["p99"], 2), ratio(kx["p99"][0], eg_["p99"][0] if eg_ else None)))
    P("| linearizable get through raftkv-proxy errors | | %s | |" % kx["errors"])
if getall:
    P("| (etcd linearizable gets spread over all 3 members, 1 run) | %s ops/s, p99 %s ms | | |" % (
        num(getall["tput"]), num(getall["p99"], 2)))
P("")
P("failover: %s continuous writers, kill -9 of the leader, %d trials each (median, range)" % (fo_clients, trials))
P("")
P("| cluster | first write after the kill, ms | longest write gap, ms | trials recovered |")
P("|---|---|---|---|")
names = {"etcd": "etcd, heartbeat 100 / election 1000 ms (defaults)",
         "etcd-fast": "etcd, heartbeat 25 / election 250 ms",
         "raftkv": "raftkv, defaults (heartbeat 20 / election 150 ms)"}
for l in ("etcd", "etcd-fast", "raftkv"):
    f = fos[l]
    if f:
        P("| %s | %s | %s | %d of %d |" % (names[l], mr(f["first"]), mr(f["gap"]), f["recovered"], f["n"]))
if fos["raftkv"]:
    rk = fos["raftkv"]
    P("")
    P("failover ratio raftkv / etcd (first write, median): %s of etcd defaults, %s of etcd 25/250 ms" % (
        ratio(rk["first"][0], fos["etcd"]["first"][0] if fos["etcd"] else None),
        ratio(rk["first"][0], fos["etcd-fast"]["first"][0] if fos["etcd-fast"] else None)))
P("")
P("per-trial (first write ms / longest gap ms):")
for l in ("etcd", "etcd-fast", "raftkv"):
    if fos[l]:
        P("  %s: %s" % (l, ", ".join("%s/%s" % (r[0], r[1]) for r in fos[l]["rows"])))
P("")
def verdict(ok):
    return "met" if ok else "MISSED"
ep, kp = res[("etcd", "put")], res[("raftkv", "put")]
eg, kg = res[("etcd", "get")], res[("raftkv", "get")]
if ep and kp and eg and kg:
    P("targets:")
    P("  writes >= 3x etcd:            %s (%s)" % (verdict(kp["tput"][0] >= 3 * ep["tput"][0]), ratio(kp["tput"][0], ep["tput"][0])))
    P("  linearizable reads >= 10x:    %s (%s)" % (verdict(kg["tput"][0] >= 10 * eg["tput"][0]), ratio(kg["tput"][0], eg["tput"][0])))
    if res[("raftkv", "getpx")]:
        kx = res[("raftkv", "getpx")]
        P("  reads via the proxy >= 10x:   %s (%s)" % (verdict(kx["tput"][0] >= 10 * eg["tput"][0]), ratio(kx["tput"][0], eg["tput"][0])))
    P("  put p99 below etcd's:         %s (%s vs %s ms)" % (verdict(kp["p99"][0] < ep["p99"][0]), num(kp["p99"][0], 2), num(ep["p99"][0], 2)))
if fos["raftkv"]:
    P("  failover median <= 300 ms:    %s (%s ms)" % (verdict(fos["raftkv"]["first"][0] <= 300), num(fos["raftkv"]["first"][0])))
out = "\n".join(lines)
open(os.path.join(work, "summary.md"), "w").write(out + "\n")
print()
print(out)
PYEOF
if [ -s "$WORK/memory.txt" ]; then
  echo
  cat "$WORK/memory.txt"
fi
