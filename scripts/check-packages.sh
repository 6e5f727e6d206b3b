#!/usr/bin/env bash
# Build the .deb and the .rpm (scripts/build-deb.sh, scripts/build-rpm.sh)
# and check them: lintian and rpmlint without errors, the payload (binaries,
# generator, units, sysusers/tmpfiles snippets, man pages, the conffile), the
# shipped raftkv.conf loads, and the maintainer scripts / scriptlets do what
# packaging/README.md says.  One line per check, "package NAME: PASS" or
# "package NAME: FAIL why"; exit 1 if any check failed, 77 if a tool is
# missing (a failure when CI=true).
#
#   scripts/check-packages.sh [OUTDIR]     default: a temporary directory
# Environment as for the build scripts (RAFTKV_PKG_SOURCE, RAFTKV_PKG_VERSION).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source packaging/pkg-lib.sh

missing=()
for tool in dpkg-buildpackage dh lintian rpmbuild rpmlint pkg-config; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "package tools: FAIL missing ${missing[*]} (scripts/install-deps.sh)"
    exit 1
  fi
  echo "check-packages: skipped, missing ${missing[*]} (scripts/install-deps.sh)" >&2
  exit 77
fi

if [ $# -ge 1 ]; then
  out=$1
  mkdir -p "$out"
else
  out=$(mktemp -d /tmp/raftkv-pkgcheck.XXXXXX)
fi
out=$(cd "$out" && pwd)
version=$(pkg_version) || exit 1
failed=0
pass() { echo "package $1: PASS"; }
fail() { echo "package $1: FAIL $2"; failed=1; }

# Where meson installs units and the generator: systemd.pc of this host.
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd)
gendir=$(pkg-config --variable=systemdsystemgeneratordir systemd)
# The payload both packages must hold (without leading '/').
expected=(
  usr/sbin/raftkv-node usr/bin/raftkv-proxy usr/bin/raftkvctl
  "${gendir#/}/raftkv-system-generator"
  "${unitdir#/}/raftkv-node@.service" "${unitdir#/}/raftkv-node@.socket"
  "${unitdir#/}/raftkv-proxy.service" "${unitdir#/}/raftkv-proxy.socket"
  "${unitdir#/}/raftkv-sockets@.service"
  "${unitdir#/}/raftkv.target"
  usr/lib/sysusers.d/raftkv.conf usr/lib/tmpfiles.d/raftkv.conf
  etc/raftkv/raftkv.conf
  usr/share/man/man1/raftkvctl.1.gz usr/share/man/man5/raftkv.conf.5.gz
  usr/share/man/man8/raftkv-node.8.gz usr/share/man/man8/raftkv-proxy.8.gz
  usr/share/raftkv/raftkv-alerts.yml usr/share/raftkv/raftkv-dashboard.json
)

# missing_from LISTFILE: the expected paths LISTFILE (one absolute path a
# line) does not have, space-separated.
missing_from() {
  local p miss=()
  for p in "${expected[@]}"; do
    grep -qxF "/$p" "$1" || miss+=("/$p")
  done
  echo "${miss[*]}"
}

# grep_all NAME FILE PATTERN...: FAIL NAME unless every (extended) pattern
# occurs in FILE.
grep_all() {
  local name=$1 file=$2 pat
  shift 2
  for pat in "$@"; do
    if ! grep -qE -- "$pat" "$file"; then
      fail "$name" "no /$pat/ in $(basename "$file")"
      return
    fi
  done
  pass "$name"
}

# ---- Debian
mkdir -p "$out/deb"
scripts/build-deb.sh "$out/deb" >"$out/deb/stdout" 2>"$out/deb/build.log"
deb_rc=$?
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$out/deb/raftkv_${version}_${arch}.deb
if [ -f "$deb" ]; then
  pass deb-build
  if grep -q '^E: ' "$out/deb/lintian.txt"; then
    fail deb-lintian "$(grep -c '^E: ' "$out/deb/lintian.txt") error(s), see $out/deb/lintian.txt"
  elif [ "$deb_rc" -ne 0 ]; then
    fail deb-lintian "build-deb.sh exit $deb_rc, see $out/deb/build.log"
  else
    pass deb-lintian
  fi

  dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$out/deb/payload.txt"
  miss=$(missing_from "$out/deb/payload.txt")
  if [ -z "$miss" ]; then pass deb-payload; else fail deb-payload "missing $miss"; fi

  rm -rf "$out/deb/control" "$out/deb/root"
  dpkg-deb -e "$deb" "$out/deb/control"
  dpkg-deb -x "$deb" "$out/deb/root"
  if grep -qxF /etc/raftkv/raftkv.conf "$out/deb/control/conffiles" 2>/dev/null; then
    pass deb-conffile
  else
    fail deb-conffile "/etc/raftkv/raftkv.conf not in DEBIAN/conffiles"
  fi

  # postinst: the user before the directories it owns; raftkv.target
  # enabled; nothing started on a fresh install (only try-restart, which
  # acts on running units, i.e. upgrades); running nodes restarted.
  pi=$out/deb/control/postinst
  if [ ! -f "$pi" ]; then
    fail deb-postinst "no postinst"
  elif grep -qE 'deb-systemd-invoke (start|restart|\$_dh_action) ' "$pi"; then
    fail deb-postinst "starts or restarts a unit unconditionally"
  elif ! awk '/systemd-sysusers/ && !u {u=NR} /systemd-tmpfiles/ && !t {t=NR}
              END {exit !(u && t && u < t)}' "$pi"; then
    fail deb-postinst "systemd-sysusers does not run before systemd-tmpfiles"
  else
    grep_all deb-postinst "$pi" \
      "deb-systemd-helper enable 'raftkv.target'" \
      "try-restart 'raftkv-proxy.service'" \
      "'raftkv-node@\*\.service'" 'deb-systemd-invoke try-restart "\$unit"'
  fi
  if [ -f "$out/deb/control/preinst" ] && grep -q 'stop' "$out/deb/control/preinst"; then
    fail deb-preinst "stops units before an upgrade (raftkv.target would take every node down)"
  else
    pass deb-preinst
  fi
  # prerm on remove: every raftkv socket stopped in a transaction before
  # the one that stops the services (see the comment in raftkv.prerm).
  grep_all deb-prerm "$out/deb/control/prerm" \
    'if \[ "\$1" = "remove" \]' "list-units .*'raftkv\*\.socket'" \
    "list-units .*'raftkv\*\.service'"
  if ! awk '/deb-systemd-invoke stop/ && /\$sockets/ && !s {s=NR}
            /deb-systemd-invoke stop/ && /raftkv\.target/ && /\$services/ && !v {v=NR}
            END {exit !(s && v && s < v)}' "$out/deb/control/prerm"; then
    fail deb-prerm-order "sockets are not stopped before the services"
  else
    pass deb-prerm-order
  fi
  # purge deletes data and configuration; nothing outside the purge branch
  # touches /var/lib/raftkv.
  pr=$out/deb/control/postrm
  if [ -f "$pr" ] && awk '/^if \[ "\$1" = "purge" \]; then$/ {p=1} p && /rm -rf \/var\/lib\/raftkv \/etc\/raftkv/ {ok=1}
        /^fi$/ {p=0} !p && /\/var\/lib\/raftkv/ && !/^#/ {bad=1} END {exit !(ok && !bad)}' "$pr"; then
    pass deb-postrm
  else
    fail deb-postrm "purge does not remove /var/lib/raftkv and /etc/raftkv, or another branch touches them"
  fi

  # The shipped raftkv.conf must load: the packaged generator parses it
  # with the daemons' config code and writes socket units for node 1.
  gen_out=$out/deb/generator
  rm -rf "$gen_out" && mkdir -p "$gen_out"
  if RAFTKV_CONFIG=$out/deb/root/etc/raftkv/raftkv.conf \
      timeout 10 "$out/deb/root${gendir}/raftkv-system-generator" "$gen_out" 2>"$out/deb/generator.log" &&
      [ -f "$gen_out/raftkv-node-peer@1.socket" ]; then
    pass deb-default-config
  else
    fail deb-default-config "the packaged generator rejects the packaged raftkv.conf: $(head -c 300 "$out/deb/generator.log")"
  fi
else
  fail deb-build "build-deb.sh exit $deb_rc, see $out/deb/build.log"
fi

# ---- RPM
mkdir -p "$out/rpm"
scripts/build-rpm.sh "$out/rpm" >"$out/rpm/stdout" 2>"$out/rpm/build.log"
rpm_rc=$?
rpmf=$(tail -n1 "$out/rpm/stdout")
if [ "$rpm_rc" -eq 0 ] && [ -f "$rpmf" ]; then
  pass rpm-build
  rpm -qlp "$rpmf" >"$out/rpm/payload.txt" 2>/dev/null
  miss=$(missing_from "$out/rpm/payload.txt")
  if [ -z "$miss" ]; then pass rpm-payload; else fail rpm-payload "missing $miss"; fi

  # %config(noreplace): file flags "c" (config) and "n" (noreplace).
  flags=$(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpmf" 2>/dev/null |
          awk '$1 == "/etc/raftkv/raftkv.conf" {print $2}')
  if [[ $flags == *c* && $flags == *n* ]]; then
    pass rpm-config-noreplace
  else
    fail rpm-config-noreplace "/etc/raftkv/raftkv.conf flags '${flags}', want %config(noreplace)"
  fi

  rpm -qp --scripts "$rpmf" >"$out/rpm/scripts.txt" 2>/dev/null
  grep_all rpm-scripts "$out/rpm/scripts.txt" \
    'postinstall scriptlet' 'systemd-sysusers .*raftkv\.conf' 'systemd-tmpfiles --create' \
    '(preset|install-system-units) raftkv\.target raftkv-proxy\.service raftkv-proxy\.socket' \
    'preuninstall scriptlet' '(disable --now|remove-system-units) raftkv\.target raftkv-proxy\.service' \
    "stop 'raftkv\*\.socket'" "stop 'raftkv\*\.service'" \
    'postuninstall scriptlet' '(try-restart|mark-restart-system-units) raftkv-proxy\.service' \
    "--state=active" "'raftkv-node@\*\.service'" 'systemctl try-restart "\$unit"'

  # Errors fail; packaging/rpm/rpmlint.toml filters the few that do not
  # apply (reasons there).
  rpmlint -c packaging/rpm/rpmlint.toml "$rpmf" >"$out/rpm/rpmlint.txt" 2>&1
  lint_rc=$?
  nerr=$(grep -c ': E: ' "$out/rpm/rpmlint.txt")
  if [ "$nerr" -gt 0 ] || [ "$lint_rc" -ne 0 ]; then
    fail rpm-rpmlint "$nerr error(s) (rpmlint exit $lint_rc), see $out/rpm/rpmlint.txt"
  else
    pass rpm-rpmlint
  fi
else
  fail rpm-build "build-rpm.sh exit $rpm_rc, see $out/rpm/build.log"
fi

echo "check-packages: logs and packages in $out" >&2
exit $failed
