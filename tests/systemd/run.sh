#!/usr/bin/env bash
# tests/systemd/run.sh - install the raftkv .deb in a systemd-nspawn container
# (systemd as PID 1) and check units, sd_notify, journald, restarts, hand-off,
# reboot and upgrade/remove/purge; see README.md next to this file.
# Exit 0 all passed, 1 a failure, 77 skipped (missing prerequisite; with
# CI=true that is a failure instead).
set -u
here=$(cd "$(dirname "$0")" && pwd)
cache=${RAFTKV_ROOTFS_CACHE:-/var/cache/raftkv-test}
mirror=${RAFTKV_MIRROR:-http://deb.debian.org/debian}

missing() {
  if [ "${CI:-}" = true ]; then
    echo "systemd prerequisites: FAIL $* (CI=true: a missing prerequisite fails)"
    echo "systemd: 0 passed, 1 failed"
    exit 1
  fi
  echo "SKIP: systemd container test: $*"
  exit 77
}

[ "$(id -u)" -eq 0 ] || missing "not root"
for t in systemd-nspawn nsenter debootstrap dpkg-buildpackage lintian /usr/bin/python3; do
  command -v "$t" >/dev/null 2>&1 || missing "no $t (scripts/install-deps.sh installs it)"
done
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || missing "no python3-protobuf"
command -v protoc >/dev/null 2>&1 || missing "no protoc"
# The mirror is needed only to make the cached rootfs.
if ! ls "$cache"/bookworm-*.tar >/dev/null 2>&1; then
  /usr/bin/python3 - "$mirror" 2>/dev/null <<'EOF' || missing "mirror $mirror unreachable and no cached rootfs in $cache"
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/dists/bookworm/Release", timeout=15).read(64)
EOF
fi

# The driver is bounded per step; this is the outer bound for the whole run.
exec timeout --kill-after=30 "${RAFTKV_SYSTEMD_TIMEOUT:-3000}" /usr/bin/python3 "$here/driver.py"
