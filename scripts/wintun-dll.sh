#!/usr/bin/env bash
# scripts/wintun-dll.sh DIR - puts wintun.dll (amd64) and its licence (as wintun-LICENSE.txt)
# into DIR, for the .msi's staging folder.
#
# The DLL is WireGuard LLC's signed prebuilt wintun.dll, taken unmodified from the
# wintun-bindings crate's package on crates.io (it carries wintun/bin/amd64/wintun.dll and
# wintun/LICENSE.txt). Its licence allows shipping the unmodified DLL with software that uses it
# only through its API, which p2pvpn does (through tun-rs). The crate version and the DLL's
# SHA-256 are pinned: a different DLL is refused, never shipped.
set -euo pipefail
dest="${1:?usage: scripts/wintun-dll.sh DIR}"
CRATE_VERSION=0.7.40
# wintun 0.14 (its version resource), amd64, as shipped in wintun-bindings 0.7.40.
DLL_SHA256=e5da8447dc2c320edc0fc52fa01885c103de8c118481f683643cacc3220dafce

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
find_crate() {
    find "$cargo_home/registry/cache" -name "wintun-bindings-$CRATE_VERSION.crate" 2>/dev/null |
        head -n 1
}
crate="$(find_crate)"
if [[ -z "$crate" ]]; then
    # A throwaway project whose only dependency is the pinned crate: `cargo fetch` downloads
    # its package into cargo's cache (nothing is built).
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$scratch/src"
    printf '[package]\nname = "wintun-dll"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nwintun-bindings = "=%s"\n' \
        "$CRATE_VERSION" >"$scratch/Cargo.toml"
    echo 'fn main() {}' >"$scratch/src/main.rs"
    echo "wintun-dll: fetching wintun-bindings $CRATE_VERSION from crates.io" >&2
    (cd "$scratch" && cargo fetch --quiet) >&2
    crate="$(find_crate)"
    [[ -n "$crate" ]] || { echo "wintun-dll: cargo fetch left no wintun-bindings-$CRATE_VERSION.crate under $cargo_home/registry/cache" >&2; exit 2; }
fi

unpack="$(mktemp -d)"
trap 'rm -rf "$unpack" "${scratch:-}"' EXIT
prefix="wintun-bindings-$CRATE_VERSION/wintun"
tar -xzf "$crate" -C "$unpack" "$prefix/bin/amd64/wintun.dll" "$prefix/LICENSE.txt"
dll="$unpack/$prefix/bin/amd64/wintun.dll"
got="$(sha256sum "$dll" | cut -d' ' -f1)"
if [[ "$got" != "$DLL_SHA256" ]]; then
    echo "wintun-dll: $crate holds a wintun.dll with SHA-256 $got, not the pinned $DLL_SHA256; refusing to ship it" >&2
    exit 1
fi
mkdir -p "$dest"
install -m 0644 "$dll" "$dest/wintun.dll"
install -m 0644 "$unpack/$prefix/LICENSE.txt" "$dest/wintun-LICENSE.txt"
echo "wintun-dll: wintun.dll ($DLL_SHA256) and wintun-LICENSE.txt in $dest" >&2
