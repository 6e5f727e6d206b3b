#!/usr/bin/env bash
# Build the raftkv .deb: copy the source tree (packaging/pkg-lib.sh says which:
# working tree by default, RAFTKV_PKG_SOURCE=head for the last commit) to a
# temporary directory with packaging/debian as debian/, run
# `dpkg-buildpackage -us -uc -b`, then lintian, failing on any lintian error.
#
#   scripts/build-deb.sh [OUTDIR]          default OUTDIR: build-pkg/
#   RAFTKV_PKG_VERSION=0.1.1 scripts/build-deb.sh /tmp/newer
#
# Build and lintian output go to stderr; stdout's last line is the .deb path.
set -euo pipefail
source "$(dirname "$0")/../packaging/pkg-lib.sh"

pkg_begin deb "${1:-}"
src=$work/raftkv-$version
pkg_export_tree "$src"
rm -rf "$src/debian"
cp -a "$pkg_root/packaging/debian" "$src/debian"

# A version other than the newest changelog entry gets an entry of its own
# (dpkg takes the package version from debian/changelog).
top=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
if [ "$top" != "$version" ]; then
  maint=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Maintainer)
  {
    printf 'raftkv (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Package built from the working tree (RAFTKV_PKG_VERSION).\n\n'
    printf ' -- %s  %s\n\n' "$maint" "$(date -R)"
    cat "$src/debian/changelog"
  } >"$src/debian/changelog.new"
  mv "$src/debian/changelog.new" "$src/debian/changelog"
fi

echo "build-deb: dpkg-buildpackage raftkv $version in $src" >&2
(cd "$src" &&
  DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
  dpkg-buildpackage -us -uc -b) >&2

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
changes=$work/raftkv_${version}_${arch}.changes
deb=raftkv_${version}_${arch}.deb
for f in "$changes" "$work/$deb" "$work/raftkv_${version}_${arch}.buildinfo"; do
  cp "$f" "$outdir/"
done
# Debug symbols, when dh_strip made them (name depends on debhelper).
cp "$work"/raftkv-dbgsym_"${version}"_*.deb "$outdir/" 2>/dev/null || true

# --fail-on error: warnings are printed (and kept in OUTDIR/lintian.txt) but
# do not fail the build; packaging/README.md lists them and why they stay.
echo "build-deb: lintian" >&2
rc=0
lintian --fail-on error --display-info "$changes" >"$outdir/lintian.txt" 2>&1 || rc=$?
cat "$outdir/lintian.txt" >&2
if [ "$rc" -ne 0 ]; then
  echo "build-deb: lintian found errors (exit $rc)" >&2
  exit 1
fi
echo "$outdir/$deb"
