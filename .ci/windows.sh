#!/usr/bin/env bash
# CI step for the other operating systems, called from .ci/run after the Linux tests. On a fresh
# Debian machine (as root: it installs rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64
# wine64 jq), it
#   1. cross-builds the Windows test binaries and p2pvpn.exe (dev profile) for
#      x86_64-pc-windows-gnu, the target we ship (scripts/test-windows.sh --no-run),
#   2. runs the Windows tests under wine (scripts/test-windows.sh: every suite built, default
#      proptest cases; CI runs the same as the full script, about 90 s of wine time),
#   3. checks that the crate and its tests compile for macOS (scripts/check-macos.sh),
#   4. (the lead's hook) packages and checks the .msi from the built exe,
# and prints the time of each step. Budget: about 15 min on a fresh 2-core machine; see
# notes/win-tests.md for the measured times.
set -euo pipefail
cd "$(dirname "$0")/.."
export WIN_TARGET_DIR="${WIN_TARGET_DIR:-target/windows}"
export MAC_TARGET_DIR="${MAC_TARGET_DIR:-target/macos}"

step() {
    local name=$1
    shift
    echo "ci-windows: $name"
    local t0=$SECONDS
    "$@"
    echo "ci-windows: $name took $((SECONDS - t0)) s"
}

step "build the Windows test binaries and p2pvpn.exe" bash scripts/test-windows.sh --no-run
exe="$WIN_TARGET_DIR/x86_64-pc-windows-gnu/debug/p2pvpn.exe"
[[ -f $exe ]] || { echo "ci-windows: no $exe after the build" >&2; exit 1; }

# Unit + property tests, the simulator and the loopback CLI/server suites: everything built runs
# (the whole run takes about 90 s under wine, so no smaller slice is needed); SUITE_TIMEOUT
# bounds a hung binary.
SUITE_TIMEOUT="${SUITE_TIMEOUT:-300}" step "run the Windows tests under wine" bash scripts/test-windows.sh

step "cargo check for macOS" bash scripts/check-macos.sh

# The .msi from the exe just built: the dev build stripped of its debug info (208 MB → a few
# MB; the release build for shipping comes from scripts/build-windows.sh), packaged with
# wixl, its tables and files checked, and the checker's own self-test (broken variants fail).
msi_exe="$WIN_TARGET_DIR/msi-stage/p2pvpn.exe"
mkdir -p "$(dirname "$msi_exe")"
x86_64-w64-mingw32-strip -o "$msi_exe" "$exe"
package_msi() { bash scripts/package-msi.sh "$msi_exe" | tee "$WIN_TARGET_DIR/msi-stage/package.log"; }
step "package the .msi" package_msi
msi="$(tail -n 1 "$WIN_TARGET_DIR/msi-stage/package.log")"
step "check the .msi" bash scripts/check-msi.sh "$msi"
step "check that check-msi.sh fails on broken .msi files" bash scripts/check-msi.sh --self-test "$msi_exe"
