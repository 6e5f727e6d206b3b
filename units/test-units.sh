#!/bin/sh
# test-units.sh verify|security SRCDIR BUILDDIR
#   verify:   `systemd-analyze verify` on every unit (ExecStart= pointing at
#             the build tree's binaries); any diagnostic fails.
#   security: `systemd-analyze security --offline=yes` on
#             raftkv-node@1.service and raftkv-proxy.service; fails when the
#             exposure is above ${RAFTKV_MAX_EXPOSURE:-2.0}.
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
for u in raftkv-node@.socket raftkv-proxy.socket raftkv.target; do
  cp "$src/$u" "$tmp/$u" || exit 1
done
for b in "$build/../src/node/raftkv-node" "$build/../src/proxy/raftkv-proxy"; do
  [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }
done
units="raftkv-node@1.service raftkv-node@1.socket raftkv-proxy.service raftkv-proxy.socket raftkv.target"

case $mode in
verify)
  fail=0
  for u in $units; do
    # Instances are loaded from the template in $tmp; the system unit path
    # stays after it so network-online.target etc. resolve.
    out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice SYSTEMD_UNIT_PATH="$tmp:" \
          systemd-analyze verify --man=no --generators=no "$tmp/$u" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
      echo "FAIL: $u (rc $rc)"; echo "$out"; fail=1
    else
      echo "ok: $u"
    fi
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
*) echo "usage: $0 verify|security SRCDIR BUILDDIR"; exit 2 ;;
esac
