#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (metadata in Cargo.toml, [package.metadata.deb]) and
# prints the .deb's path as the last line. The man pages and the shell completions are generated
# from the built binary first (into target/assets/), so they always match its options.
#
#   sudo scripts/package-deb.sh         the profile-guided release build (scripts/pgo.sh: it
#                                       trains on the namespace benchmark, so it needs root;
#                                       about 8 minutes), then the package: what ships
#   PROFILE=release scripts/package-deb.sh
#                                       a plain release build (no root), then the package; also
#                                       the default without root, with a notice
#   PROFILE=release scripts/package-deb.sh --no-build
#                                       package the existing target/release/p2pvpn
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
profile="${PROFILE:-}"
if [[ -z "$profile" ]]; then
    if [[ $EUID -eq 0 ]]; then
        profile=release-pgo
    else
        # The training needs namespaces; a package is still worth having without them.
        echo "package-deb: not root, so a plain release build: the shipped package is the" >&2
        echo "package-deb: profile-guided one (sudo scripts/package-deb.sh), with a lower ping RTT" >&2
        echo "package-deb: and more throughput (README, Performance)" >&2
        profile=release
    fi
fi
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
