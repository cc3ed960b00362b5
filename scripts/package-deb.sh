#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (metadata in Cargo.toml, [package.metadata.deb]) and
# prints the .deb's path as the last line. The man pages and the shell completions are generated
# from the built binary first (into target/assets/), so they always match its options.
#
#   scripts/package-deb.sh              release build, then the package
#   scripts/package-deb.sh --no-build   package the existing target/release/p2pvpn
#   PROFILE=release-pgo scripts/package-deb.sh
#                                       a profile-guided build (scripts/pgo.sh, root: it trains
#                                       on the namespace benchmark), then the package
#   PROFILE=dev scripts/package-deb.sh --no-build
#                                       package target/debug/p2pvpn (CI: reuses the test build
#                                       instead of a ~6 min LTO release build)
# Needs cargo-deb: cargo install cargo-deb --locked (about 2-3 min of compiling on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    echo "package-deb: cargo-deb missing; install it with: cargo install cargo-deb --locked" >&2
    exit 2
fi
profile="${PROFILE:-release}"
build=1
args=()
for a in "$@"; do
    if [[ "$a" == --no-build ]]; then build=0; else args+=("$a"); fi
done
# Built here rather than by cargo deb, because the assets below come from the binary.
if ((build)); then
    if [[ "$profile" == release-pgo ]]; then
        bash scripts/pgo.sh >/dev/null
    else
        cargo build --profile "$profile" --locked >&2
    fi
fi
case "$profile" in dev | test) out=debug ;; *) out="$profile" ;; esac
bin="${CARGO_TARGET_DIR:-target}/$out/p2pvpn"
[[ -x "$bin" ]] || { echo "package-deb: no binary at $bin" >&2; exit 2; }
bash scripts/gen-assets.sh "$bin" target/assets >&2
# --strip: the release profile keeps debug info for profiling (about 45 MB of the binary).
# Status goes to stderr so that stdout is just the path.
deb="$(cargo deb --profile "$profile" --strip --locked --no-build ${args[@]+"${args[@]}"} | tail -n 1)"
if [[ ! -f "$deb" ]]; then
    echo "package-deb: cargo deb did not report a package (got: $deb)" >&2
    exit 1
fi
echo "$deb"
