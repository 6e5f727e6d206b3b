#!/bin/sh
# test-units.sh verify|security|generator SRCDIR BUILDDIR
#   verify:   `systemd-analyze verify` on every unit (ExecStart= pointing at
#             the build tree's binaries); any diagnostic fails.
#   security: `systemd-analyze security --offline=yes` on
#             raftkv-node@1.service and raftkv-proxy.service; fails when the
#             exposure is above ${RAFTKV_MAX_EXPOSURE:-2.0}.
#   generator: run raftkv-system-generator on a 3-node config, check the
#             socket units and drop-ins it writes, and `systemd-analyze
#             verify` them together with the shipped units; then add
#             [node.4] with `raftkvctl config generate --add-node 4` and
#             check a rerun (what daemon-reload does) adds node 4's units
#             and leaves the others byte for byte.
# Exits 77 (meson: skipped) when systemd-analyze is missing or too old.
set -u
mode=$1 src=$2 build=$3
skip() { echo "SKIP: $*"; exit 77; }
command -v systemd-analyze >/dev/null 2>&1 || skip "no systemd-analyze"
ver=$(systemd-analyze --version | awk 'NR==1 {print $2}')
[ "${ver:-0}" -ge 252 ] 2>/dev/null || skip "systemd $ver: need 252 for --offline"

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
for u in raftkv-node@.service raftkv-proxy.service; do
  cp "$build/test-$u" "$tmp/$u" || exit 1
done
for u in raftkv-node@.socket raftkv-proxy.socket raftkv.target raftkv-sockets@.service; do
  cp "$src/$u" "$tmp/$u" || exit 1
done
for b in "$build/../src/node/raftkv-node" "$build/../src/proxy/raftkv-proxy"; do
  [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }
done
units="raftkv-node@1.service raftkv-node@1.socket raftkv-proxy.service raftkv-proxy.socket raftkv.target
       raftkv-sockets@node-1.service raftkv-sockets@proxy.service"

# Every diagnostic of `systemd-analyze verify` on unit $1 (loaded with
# SYSTEMD_UNIT_PATH=$2) fails it.
verify_unit() {
  local diag rc
  diag=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice SYSTEMD_UNIT_PATH="$2" \
         systemd-analyze verify --man=no --generators=no "$1" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$diag" ]; then
    echo "FAIL: $1 (rc $rc)"; echo "$diag"; return 1
  fi
  echo "ok: $1"
}

case $mode in
generator)
  gen="$build/../src/generator/raftkv-system-generator"
  [ -x "$gen" ] || { echo "FAIL: $gen not built"; exit 1; }
  out="$tmp/gen"
  mkdir -p "$out" "$tmp/early" "$tmp/late"
  cat >"$tmp/raftkv.conf" <<'CONF'
[cluster]
name = gentest
[node.1]
peer = 127.0.0.1:7001
client = 127.0.0.1:7101
admin = /run/raftkv/one.sock
[node.2]
peer = [::1]:7002
client = 127.0.0.1:7102
[node.3]
peer = 127.0.0.1:7003
client = localhost:7103
[proxy]
listen = 127.0.0.1:7000
unix = /run/raftkv/px.sock
CONF
  fail=0
  RAFTKV_CONFIG="$tmp/raftkv.conf" "$gen" "$out" "$tmp/early" "$tmp/late" 2>"$tmp/gen.err" \
    || { echo "FAIL: generator exited $?"; cat "$tmp/gen.err"; fail=1; }
  # has FILE LINE: FILE (under $out) holds exactly the line LINE
  has() {
    grep -qxF -- "$2" "$out/$1" 2>/dev/null && return 0
    echo "FAIL: $1 lacks '$2'"; [ -f "$out/$1" ] && cat "$out/$1"; fail=1
  }
  has raftkv-node-peer@1.socket "ListenStream=127.0.0.1:7001"
  has raftkv-node-peer@1.socket "FileDescriptorName=peer"
  has raftkv-node-peer@1.socket "Service=raftkv-sockets@node-1.service"
  has raftkv-node-client@1.socket "ListenStream=127.0.0.1:7101"
  has raftkv-node-client@1.socket "FileDescriptorName=client"
  has raftkv-node-peer@2.socket "ListenStream=[::1]:7002"
  has raftkv-node@1.socket.d/50-raftkv-admin.conf "ListenStream=/run/raftkv/one.sock"
  has raftkv-node@2.socket.d/50-raftkv-admin.conf "ListenStream=/run/raftkv/node-2.sock"
  has raftkv-node@1.service.d/50-raftkv-sockets.conf \
      "Sockets=raftkv-node-peer@1.socket raftkv-node-client@1.socket"
  has raftkv-proxy-client.socket "ListenStream=127.0.0.1:7000"
  has raftkv-proxy-client.socket "FileDescriptorName=client"
  has raftkv-proxy-client.socket "Service=raftkv-sockets@proxy.service"
  has raftkv-proxy.socket.d/50-raftkv-unix.conf "ListenStream=/run/raftkv/px.sock"
  has raftkv-proxy.service.d/50-raftkv-sockets.conf \
      "Sockets=raftkv-proxy-client.socket"
  # A host name cannot be a ListenStream=: no unit, and a word on stderr.
  if [ -e "$out/raftkv-node-client@3.socket" ] || ! grep -q 'node.3.client' "$tmp/gen.err"; then
    echo "FAIL: node.3.client (a host name) should be left to the node"; fail=1
  fi
  for u in raftkv-node-peer@1.socket raftkv-node-client@1.socket raftkv-node@1.socket \
           raftkv-node@1.service raftkv-proxy-client.socket raftkv-proxy.socket \
           raftkv-proxy.service; do
    verify_unit "$u" "$out:$tmp:" || fail=1
  done
  # Growing a running deployment: [node.4] appended to the same file, the
  # generator run again into an empty directory (as daemon-reload does).
  ctl="$build/../src/ctl/raftkvctl"
  cp -r "$out" "$tmp/gen3"
  "$ctl" config generate --add-node 4 --file "$tmp/raftkv.conf" 2>"$tmp/ctl.err" \
    || { echo "FAIL: config generate --add-node 4: $(cat "$tmp/ctl.err")"; fail=1; }
  rm -rf "$out" && mkdir "$out"
  RAFTKV_CONFIG="$tmp/raftkv.conf" "$gen" "$out" "$tmp/early" "$tmp/late" 2>"$tmp/gen.err" \
    || { echo "FAIL: generator exited $? after --add-node"; cat "$tmp/gen.err"; fail=1; }
  has raftkv-node-peer@4.socket "ListenStream=127.0.0.1:7004"
  has raftkv-node-client@4.socket "ListenStream=127.0.0.1:7104"
  has raftkv-node-peer@4.socket "Service=raftkv-sockets@node-4.service"
  has raftkv-node@4.socket.d/50-raftkv-admin.conf "ListenStream=/run/raftkv/node-4.sock"
  has raftkv-node@4.service.d/50-raftkv-sockets.conf \
      "Sockets=raftkv-node-peer@4.socket raftkv-node-client@4.socket"
  # Every unit of nodes 1-3 and the proxy is unchanged: a reload does not
  # move the running members' sockets.
  (cd "$tmp/gen3" && find . -type f) | while read -r f; do
    cmp -s "$tmp/gen3/$f" "$out/$f" || { echo "FAIL: $f changed by adding node 4"; exit 1; }
  done || fail=1
  for u in raftkv-node-peer@4.socket raftkv-node-client@4.socket raftkv-node@4.socket \
           raftkv-node@4.service; do
    verify_unit "$u" "$out:$tmp:" || fail=1
  done
  # No config (not set up yet): nothing written, success.
  rm -rf "$out" && mkdir "$out"
  RAFTKV_CONFIG="$tmp/absent.conf" "$gen" "$out" "$tmp/early" "$tmp/late" \
    || { echo "FAIL: generator failed without a config"; fail=1; }
  [ -z "$(ls -A "$out")" ] || { echo "FAIL: files written without a config"; fail=1; }
  # A broken config: an error naming the line, no units, boot goes on.
  printf '[cluster]\nbogus = 1\n' >"$tmp/bad.conf"
  RAFTKV_CONFIG="$tmp/bad.conf" "$gen" "$out" "$tmp/early" "$tmp/late" 2>"$tmp/gen.err" \
    && { echo "FAIL: generator accepted a bad config"; fail=1; }
  grep -q 'bad.conf:2' "$tmp/gen.err" || { echo "FAIL: no line number: $(cat "$tmp/gen.err")"; fail=1; }
  [ -z "$(ls -A "$out")" ] || { echo "FAIL: files written for a bad config"; fail=1; }
  [ $fail -eq 0 ] && echo "ok: generator"
  exit $fail
  ;;
verify)
  fail=0
  for u in $units; do
    # Instances are loaded from the template in $tmp; the system unit path
    # stays after it so network-online.target etc. resolve.
    verify_unit "$u" "$tmp:" || fail=1
  done
  exit $fail
  ;;
security)
  fail=0
  max=${RAFTKV_MAX_EXPOSURE:-2.0}
  for u in raftkv-node@1.service raftkv-proxy.service; do
    out=$(cd "$tmp" && SYSTEMD_UNIT_PATH="$tmp:" systemd-analyze security --offline=yes \
          --no-pager "$tmp/$u" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep 'Overall exposure level')
    exp=$(printf '%s\n' "$line" | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$exp" ]; then
      echo "FAIL: $u: no exposure figure (rc $rc)"; printf '%s\n' "$out" | tail -20; fail=1
      continue
    fi
    echo "$u: exposure $exp (max $max)"
    if awk -v e="$exp" -v m="$max" 'BEGIN { exit !(e > m) }'; then
      printf '%s\n' "$out" | grep -v '^  ✓' | head -60
      fail=1
    fi
  done
  exit $fail
  ;;
*) echo "usage: $0 verify|security|generator SRCDIR BUILDDIR"; exit 2 ;;
esac
