#!/usr/bin/env bash
# scripts/pgo.sh - a profile-guided (PGO) release build of p2pvpn: the binary is built once
# instrumented (-Cprofile-generate), trained on the namespace benchmark (scripts/bench.sh: a
# direct pair and a pair through the server's UDP relay, TCP and ping), and built again with
# the merged profile (-Cprofile-use), in the `release-pgo` profile (Cargo.toml: the release
# settings). On 2026-11-27 (this 2-core VM) it carried about 15% more TCP than the plain
# release build at 13% less CPU per Gbit (README, Performance, has the table and the command).
#
# Usage (root: the training runs in network namespaces): scripts/pgo.sh
#   Prints the optimised binary's path as the last line: target/release-pgo/p2pvpn.
#   `PROFILE=release-pgo scripts/package-deb.sh` runs this, then packages that binary.
# Needs llvm-profdata of the LLVM major version rustc was built with (`rustc -vV`); on Debian
# it installs llvm-N (N = that version) when it is missing. Two full release builds and about
# 90 s of training: about 12 minutes on 2 cores. The profile stays in target/pgo/ (it is tied to
# the source it was trained on: a later change only loses the profile of what it touched).
# All training traffic stays inside the namespaces bench.sh creates.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'pgo: %s\n' "$*" >&2; }
die() { printf 'pgo: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "needs root: the training runs the namespace benchmark (sudo scripts/pgo.sh)"
major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[[ -n "$major" ]] || die "cannot tell rustc's LLVM version from 'rustc -vV'"

# llvm-profdata of rustc's LLVM: PATH, Debian's llvm-N, rustup's llvm-tools component.
find_profdata() {
    local c
    for c in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata" \
        "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    return 1
}
profdata="$(find_profdata || true)"
if [[ -z "$profdata" ]] && command -v apt-get >/dev/null; then
    say "installing llvm-$major for llvm-profdata"
    apt-get install -y -q "llvm-$major" >&2 || true
    profdata="$(find_profdata || true)"
fi
[[ -n "$profdata" ]] || die "no llvm-profdata for LLVM $major: install llvm-$major (Debian) or \
'rustup component add llvm-tools', then run again"

work="$PWD/target/pgo"
rm -rf -- "$work/data"
mkdir -p "$work/data"
say "1/4 instrumented build (target/pgo/gen)"
RUSTFLAGS="-Cprofile-generate=$work/data" CARGO_TARGET_DIR="$work/gen" \
    cargo build --release --locked --bin p2pvpn >&2

say "2/4 training: scripts/bench.sh on a direct and a relayed pair (log: target/pgo/train.log)"
P2PVPN_BIN="$work/gen/release/p2pvpn" bash scripts/bench.sh --only p2pvpn,p2pvpn-relay \
    --rounds 2 --time 4 --no-install >"$work/train.log" 2>&1 ||
    die "the training run failed; its log: $work/train.log"
shopt -s nullglob
raw=("$work"/data/*.profraw)
((${#raw[@]} > 0)) || die "the training left no profile in $work/data (log: $work/train.log)"

say "3/4 merging ${#raw[@]} profiles with $profdata"
"$profdata" merge -o "$work/p2pvpn.profdata" "${raw[@]}"

say "4/4 optimised build (profile release-pgo)"
RUSTFLAGS="-Cprofile-use=$work/p2pvpn.profdata" cargo build --profile release-pgo --locked \
    --bin p2pvpn >&2
bin="${CARGO_TARGET_DIR:-target}/release-pgo/p2pvpn"
[[ -x "$bin" ]] || die "no binary at $bin"
echo "$bin"
