#!/usr/bin/env bash
# Build the raftkv .rpm from packaging/rpm/raftkv.spec: make the source
# tarball raftkv-VERSION.tar.gz from the working tree (default; tracked and
# new files, ignored build*/ excluded) or, with RAFTKV_PKG_SOURCE=head, from
# `git archive HEAD` (packaging/pkg-lib.sh), then `rpmbuild -bb`.
#
#   scripts/build-rpm.sh [OUTDIR]          default OUTDIR: build-pkg/
#   RAFTKV_PKG_VERSION=0.1.1 scripts/build-rpm.sh
#
# Build output goes to stderr; stdout's last line is the .rpm path.
set -euo pipefail
source "$(dirname "$0")/../packaging/pkg-lib.sh"

pkg_begin rpm "${1:-}"
top=$work/rpmbuild
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
pkg_export_tree "$work/raftkv-$version"
tar -C "$work" -czf "$top/SOURCES/raftkv-$version.tar.gz" "raftkv-$version"
cp "$pkg_root/packaging/rpm/raftkv.spec" "$top/SPECS/"

# Without an rpm database of build dependencies (Debian: they are dpkg
# packages, which rpm cannot see), BuildRequires cannot be checked: skip the
# check there with --nodeps.  scripts/install-deps.sh installs the Debian
# equivalents.  On an rpm-based host the BuildRequires are checked.
#
# Debian's rpm also runs its brp-compress (man page compression) with
# /bin/sh = dash, which fails on the script's bash-only `read -d` and leaves
# the man pages uncompressed: run that one step with bash.
debian=()
if [ -e /etc/debian_version ]; then
  post=$(rpm --eval '%__os_install_post' | sed -e '/^[[:space:]]*$/d' \
    -e 's/^[[:space:]]*//' \
    -e 's#^/usr/lib/rpm/brp-compress#bash /usr/lib/rpm/brp-compress#' | paste -sd';')
  debian=(--nodeps --define "__os_install_post $post")
fi
# Packager: the maintainer of the Debian package (one place for the name).
packager=$(sed -n 's/^Maintainer: *//p' "$pkg_root/packaging/debian/control")

echo "build-rpm: rpmbuild raftkv $version in $top" >&2
rpmbuild -bb "${debian[@]}" \
  --define "_topdir $top" \
  --define "packager $packager" \
  --define "pkg_version $version" \
  "$top/SPECS/raftkv.spec" >&2

shopt -s nullglob
rpms=("$top"/RPMS/*/raftkv-"$version"-*.rpm)
if [ ${#rpms[@]} -eq 0 ]; then
  echo "build-rpm: rpmbuild made no raftkv-$version rpm" >&2
  exit 1
fi
main=""
for r in "${rpms[@]}"; do
  cp "$r" "$outdir/"
  case $(basename "$r") in
    raftkv-debuginfo-*|raftkv-debugsource-*) ;;
    *) main=$outdir/$(basename "$r") ;;
  esac
done
echo "$main"
