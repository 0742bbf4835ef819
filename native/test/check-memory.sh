#!/usr/bin/env bash
# Memory and descriptor checks of the native engine. Needs root (it mounts) and valgrind.
#  1. The session and mount code in a Node-free harness, under valgrind (memcheck, leaks,
#     descriptors) and under AddressSanitizer + LeakSanitizer + UBSan, with and without FUSE
#     passthrough, and with the event channel closed under the live mount (orphaned).
#  2. Unless --quick: the whole addon built with AddressSanitizer, loaded by the mount daemon,
#     through the native mount tests and the churn test (run `npm run build` first).
# Exits non-zero on any error the tools report.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
quick=${1:-}
work=$(mktemp -d)
trap 'umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/mnt"
head -c $((24 * 1024 * 1024 + 123)) /dev/urandom > "$work/staged"
sources=("$here/harness.c" "$here/../session.c" "$here/../mount.c")
includes=(-I/usr/include/node -I"$here/..")

gcc -g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter "${includes[@]}" "${sources[@]}" -lpthread -o "$work/harness"
gcc -g -O1 -std=gnu11 -fsanitize=address,undefined -fno-omit-frame-pointer "${includes[@]}" "${sources[@]}" -lpthread -o "$work/harness-asan"

status=0
for mode in fastpath passthrough orphaned; do
  echo "== valgrind memcheck, $mode"
  valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
    --track-fds=yes "$work/harness" "$work/mnt" "$work/staged" "$mode" 2>&1 | tee "$work/vg.log" || status=1
  # --track-fds lists every descriptor open at exit; only those the shell passed in may remain.
  open_fds=$(grep -c "Open file descriptor [0-9]*:" "$work/vg.log" || true)
  inherited=$(grep -c "<inherited from parent>" "$work/vg.log" || true)
  if [ "$open_fds" -gt "$inherited" ]; then
    echo "descriptors left open: $((open_fds - inherited))"; status=1
  fi
  echo "== AddressSanitizer + LeakSanitizer + UBSan, $mode"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1 "$work/harness-asan" "$work/mnt" "$work/staged" "$mode" || status=1
done
if [ "$quick" != "--quick" ]; then
  echo "== AddressSanitizer in the mount daemon: native mount tests"
  mkdir -p "$work/addon"
  cp -r "$root/native" "$root/binding.gyp" "$work/addon/"
  (cd "$work/addon" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
    npx --prefix "$root" node-gyp rebuild >/dev/null 2>&1)
  (cd "$root" && STAGEFS_TEST_DAEMON_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS="detect_leaks=0:log_path=$work/asan" \
    STAGEFS_TEST_DAEMON_ADDON="$work/addon/build/Release/stagefs_native.node" \
    npx tap dist/test/mount/native-engine.test.js dist/test/mount/read.test.js dist/test/mount/churn.test.js) | grep -E '^(not )?ok|^# \{' || status=1
  if compgen -G "$work/asan*" >/dev/null; then
    cat "$work"/asan*; status=1
  fi
fi
[ "$status" -eq 0 ] && echo "native memory check: clean" || echo "native memory check: FAILED"
exit "$status"
