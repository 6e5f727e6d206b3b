#!/usr/bin/env bash
# apt-install.sh NAME PACKAGE...: install whichever of the Debian packages
# are missing (apt-get update first, only when something is missing).
# Shared by install-deps.sh and install-bench-deps.sh; uses sudo when not
# root.  Idempotent.
set -euo pipefail
name=$1
shift

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$name: all $# packages present"
  exit 0
fi
echo "$name: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
