# Shared by scripts/build-deb.sh and scripts/build-rpm.sh (sourced, not run):
# which source tree a package is built from, and its version.
#
# RAFTKV_PKG_SOURCE=worktree (default): the files of the working tree that git
#   tracks or would track (modified and new files included, ignored files
#   such as build*/ excluded) -- what `meson` in this checkout builds.
# RAFTKV_PKG_SOURCE=head: `git archive HEAD`, the last commit only.
# RAFTKV_PKG_VERSION=X: package version X instead of meson's project version
#   (the systemd container test builds a "newer" package with it).

pkg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Upstream version from meson.build's project(... version : 'X').
pkg_meson_version() {
  sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$pkg_root/meson.build" | head -n1
}

pkg_version() {
  local v=${RAFTKV_PKG_VERSION:-$(pkg_meson_version)}
  if [ -z "$v" ]; then
    echo "pkg-lib: no version in meson.build" >&2
    return 1
  fi
  # Both formats take this: a Debian native version (no '-') that is also a
  # valid RPM Version: (no '-', no '~' surprises needed here).
  if ! [[ $v =~ ^[0-9][0-9A-Za-z.+]*$ ]]; then
    echo "pkg-lib: RAFTKV_PKG_VERSION '$v': want digits, letters, '.' and '+' only, starting with a digit" >&2
    return 1
  fi
  echo "$v"
}

# pkg_export_tree DEST: copy the source tree selected by RAFTKV_PKG_SOURCE.
pkg_export_tree() {
  local dest=$1
  mkdir -p "$dest"
  case ${RAFTKV_PKG_SOURCE:-worktree} in
    head)
      git -C "$pkg_root" archive --format=tar HEAD | tar -x -C "$dest"
      ;;
    worktree)
      # ls-files also lists tracked files deleted in the working tree.
      (cd "$pkg_root" &&
        git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
          [ -f "$f" ] && printf '%s\0' "$f"
        done | tar --null -T - -cf -) | tar -x -C "$dest"
      ;;
    *)
      echo "pkg-lib: RAFTKV_PKG_SOURCE must be worktree or head" >&2
      return 1
      ;;
  esac
  echo "pkg-lib: source tree: ${RAFTKV_PKG_SOURCE:-worktree} of $pkg_root" >&2
}

# pkg_begin KIND [OUTDIR]: sets outdir (created, absolute; default
# build-pkg/), version, and work, a temporary directory removed on exit.
pkg_begin() {
  outdir=${2:-$pkg_root/build-pkg}
  mkdir -p "$outdir"
  outdir=$(cd "$outdir" && pwd)
  version=$(pkg_version) || exit 1
  work=$(mktemp -d "/tmp/raftkv-$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
}
