#!/bin/sh
# Installs the system packages stagefs needs at run time when they are missing:
# fuse3 (fusermount3, the mount helper), libfuse2 (the library fuse-native links) and
# libcurl4-openssl-dev (the headers the native addon's fetch threads build against).
# Extra package names given as arguments (the benchmark's peers, the Ceph RGW of
# scripts/rgw.sh, ...) are checked too. Recommended packages are left out: they would double
# the Ceph install and nothing here needs them.
set -eu

missing=""
need() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing="$missing $1"
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  if ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2' && command -v fusermount3 >/dev/null 2>&1; then
    exit 0
  fi
  echo "stagefs: needs libfuse2 and fuse3 (fusermount3); install them with your system's package manager" >&2
  exit 1
fi

need fuse3
need libfuse2
need libcurl4-openssl-dev
for extra in "$@"; do need "$extra"; done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  run="sudo"
else
  echo "stagefs: missing system packages:$missing" >&2
  echo "stagefs: run: sudo apt-get update && sudo apt-get install -y$missing" >&2
  exit 1
fi

echo "stagefs: installing system packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$run apt-get update -qq >&2
# shellcheck disable=SC2086
$run apt-get install -y -qq --no-install-recommends $missing >&2
