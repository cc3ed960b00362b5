#!/usr/bin/env bash
# Cross-builds p2pvpn.exe for Windows on Debian with Debian's Rust (rustc-web 1.96, whose
# standard library source comes with rust-web-src) and MinGW, rebuilding the standard library
# for the target with -Zbuild-std (rustup cannot install the Windows std here). Prints the PE
# file's path and `file`'s view of it as the last lines.
#
#   scripts/build-windows.sh            release build of x86_64-pc-windows-gnu (the one to ship)
#   scripts/build-windows.sh --check    cargo check only (no linking; about a third of the time)
#   TARGET=x86_64-win7-windows-gnu scripts/build-windows.sh
#                                       the Windows 7 target: what runs under Debian's wine 8,
#                                       which lacks bcryptprimitives.dll that the current
#                                       x86_64-pc-windows-gnu standard library imports
#
# Installs rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 with apt-get when missing
# (needs root). Output goes to target/windows/, so the Linux target/ stays valid.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${TARGET:-x86_64-pc-windows-gnu}"
check=0
for a in "$@"; do
    case "$a" in
        --check) check=1 ;;
        *) echo "build-windows: unknown option $a (only --check)" >&2; exit 2 ;;
    esac
done

packages=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "build-windows: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >&2
fi

# Debian's toolchain explicitly: rustup's (first on the usual PATH) has no std source for this.
export PATH=/usr/bin:/bin
export RUSTC_BOOTSTRAP=1 # -Zbuild-std is unstable; Debian's stable rustc allows it with this
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_WIN7_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
target_dir=target/windows
args=(-Zbuild-std=std,panic_abort --target "$target" --target-dir "$target_dir" --locked)

start=$(date +%s)
if ((check)); then
    cargo check "${args[@]}" >&2
    echo "build-windows: cargo check for $target passed in $(($(date +%s) - start)) s"
    exit 0
fi
# No debug info: the release profile keeps it for profiling on Linux; in a MinGW PE it would
# add tens of MB to the shipped file.
CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release "${args[@]}" >&2
exe="$target_dir/$target/release/p2pvpn.exe"
[[ -f "$exe" ]] || { echo "build-windows: no executable at $exe" >&2; exit 2; }
echo "build-windows: built $target in $(($(date +%s) - start)) s"
echo "$exe"
file "$exe"
