#!/usr/bin/env bash
# Checks that p2pvpn compiles for macOS (aarch64-apple-darwin): `cargo check` of the crate and
# its test targets with Debian's rustc-web and -Zbuild-std, the same recipe as
# scripts/build-windows.sh. No Apple linker or SDK is needed for a check; nothing is linked or
# run, so this proves the macOS code paths type-check, not that they work. The C that ring and
# the bundled SQLite compile in their build scripts is handed to scripts/macos/check-only-cc,
# which writes empty objects (there is no macOS C compiler or SDK here; a check never links).
#
#   scripts/check-macos.sh              check the library, the binary and the tests
#   MAC_TARGET_DIR=DIR                  cargo target dir (default target/macos)
#
# Installs rustc-web cargo-web rust-web-src with apt-get when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-apple-darwin
target_dir="${MAC_TARGET_DIR:-target/macos}"

packages=(rustc-web cargo-web rust-web-src)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || { echo "check-macos: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2; exit 2; }
    echo "check-macos: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >&2
fi

# Debian's toolchain explicitly: rustup's (first on the usual PATH) has no std source for this.
export PATH=/usr/bin:/bin
export RUSTC_BOOTSTRAP=1 # -Zbuild-std is unstable; Debian's stable rustc allows it with this
export CC_aarch64_apple_darwin="$PWD/scripts/macos/check-only-cc"
start=$(date +%s)
cargo check --all-targets --locked -Zbuild-std=std,panic_abort --target "$target" \
    --target-dir "$target_dir" >&2
echo "check-macos: cargo check --all-targets for $target passed in $(($(date +%s) - start)) s"
