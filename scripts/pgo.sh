#!/usr/bin/env bash
# scripts/pgo.sh - the profile-guided (PGO) release build of p2pvpn, the one the .deb ships
# (scripts/package-deb.sh) and the benchmark measures (scripts/bench.sh): the binary is built
# once instrumented (-Cprofile-generate), trained on the namespace benchmark (a direct pair, a
# pair through the server's UDP relay and a pair over an IPv6 underlay; TCP and ping), and built
# again with the merged profile (-Cprofile-use), in the `release-pgo` profile (Cargo.toml: the
# release settings). On 2026-11-27 (2 vCPUs, AMD EPYC) it cut the ping RTT by about 45 us (0.27
# to 0.22 ms), carried more TCP and kept 1.5 MiB less of the binary resident than the plain
# release build (README, Performance, has the runs and the command): the data path's code laid
# out together is most of what a packet after an idle moment costs. The optimised binary is
# linked twice: the second link takes an order (scripts/lib/link_order.py) that puts the code a
# node ran in training first, which keeps about 2 MiB less of the binary resident per node, and
# within it the code a node ran once settled (src/pgo_training.rs splits a training node's
# profile there): what a settled node maps back after giving its pages back (src/os/trim.rs).
#
# Usage (root: the training runs in network namespaces): scripts/pgo.sh
#   Prints the optimised binary's path as the last line: target/release-pgo/p2pvpn.
# Needs llvm-profdata of the LLVM major version rustc was built with (`rustc -vV`); on Debian
# it installs llvm-N (N = that version) when it is missing; python3 and nm (binutils) for the
# link order. Two release builds, about 4 minutes of training and a second link of under a
# minute: 7-10 minutes on 2 cores with the dependencies already built once (290 s on
# 2026-11-27 at 22:56), about 10 with every dependency built anew. The profile stays in target/pgo/ (it
# is tied to the source it was trained on: a later change only loses the profile of what it
# touched). Code the training does not run (the control plane, the TCP/TLS relay, probing
# sockets, `workers = 2`, boringtun in the node's loop) is optimised for size, laid out as cold.
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
# `--cfg p2pvpn_pgo_phases`, for the binary's own crate only (src/pgo_training.rs): a node
# writes what it ran once settled, and its teardown, to files of their own, for the link
# order. The library and the dependencies are built exactly as the optimised build's, so that
# the profile matches their code.
RUSTFLAGS="-Cprofile-generate=$work/data" CARGO_TARGET_DIR="$work/gen" \
    cargo rustc --release --locked --bin p2pvpn -- --cfg p2pvpn_pgo_phases >&2

say "2/4 training: scripts/bench.sh on a direct, a relayed and an IPv6 pair (log: target/pgo/train.log)"
# Code the training never runs is laid out and optimised as cold: the IPv6 underlay is trained
# too, so that a path over it keeps IPv4's speed.
# One profile file per process (%p), so that step 3 can tell the nodes' profiles from the
# server's and the CLI's.
# BENCH_HOLD: the pairs stay up past WireGuard's 120 s rekey, so that the rekey's handshake is
# in a settled node's profile (and its layout), not only in start-up's.
LLVM_PROFILE_FILE="$work/data/%p.profraw" P2PVPN_BIN="$work/gen/release/p2pvpn" BENCH_PINGS=20 \
    BENCH_HOLD=130 bash scripts/bench.sh --only p2pvpn,p2pvpn-relay,p2pvpn-v6 --rounds 2 --time 4 \
    --no-install >"$work/train.log" 2>&1 ||
    die "the training run failed; its log: $work/train.log"
shopt -s nullglob
raw=("$work"/data/*.profraw)
((${#raw[@]} > 0)) || die "the training left no profile in $work/data (log: $work/train.log)"

say "3/4 merging ${#raw[@]} profiles with $profdata"
"$profdata" merge -o "$work/p2pvpn.profdata" "${raw[@]}"

# The link order (scripts/lib/link_order.py says why): the functions a node ran in training
# first, then the standard library's, then what the server and the CLI ran. A node is a process
# whose profile ran the main socket (io::main_socket).
# functions FILE [all]: the name of each function FILE's profile ran (a counter above zero), or
# with `all` of every function it has, once each and as the linker sees it (a local function's
# profile name is "FILE;NAME").
functions() {
    "$profdata" show --all-functions --counts "$1" | awk -v all="${2:-}" '
        /^  [^ ].*:$/ {
            name = substr($0, 3, length($0) - 3); sub(/^.*;/, "", name)
            if (all != "" && !seen[name]++) print name
            next
        }
        all == "" && /Block counts:/ && !seen[name] {
            gsub(/[^0-9,]/, ""); n = split($0, c, ",")
            for (i = 1; i <= n; i++) if (c[i] + 0 > 0) { seen[name] = 1; print name; break }
        }'
}
nodes=()
for f in "${raw[@]}"; do
    # grep -c reads to the end (grep -q would stop early, and pipefail take awk's SIGPIPE).
    if [[ "$(functions "$f" | grep -c '2io11main_socket')" -gt 0 ]]; then nodes+=("$f"); fi
done
((${#nodes[@]} > 0)) || die "no node's profile among the ${#raw[@]} (log: $work/train.log)"
"$profdata" merge -o "$work/node.profdata" "${nodes[@]}"
functions "$work/node.profdata" >"$work/run-node.txt"
# What the nodes ran once settled and until told to stop (src/pgo_training.rs):
# %p.settled.profraw.
settled=("$work"/data/*.settled.profraw)
if ((${#settled[@]} > 0)); then
    "$profdata" merge -o "$work/settled.profdata" "${settled[@]}"
    functions "$work/settled.profdata" >"$work/run-settled.txt"
else
    say "no node settled during the training: the link order has no settled group"
    : >"$work/run-settled.txt"
fi
functions "$work/p2pvpn.profdata" >"$work/run-all.txt"
functions "$work/p2pvpn.profdata" all >"$work/profiled.txt"

say "4/4 optimised build (profile release-pgo), linked twice"
# The profile marks functions hot or unlikely (section prefixes .text.hot/.text.unlikely); the
# linker keeps those groups apart only when asked, which packs the hot code (about 150 KB of a
# 7 MB text) into few pages: 0.5 MiB less resident per node (README, Performance).
# RUSTFLAGS replaces .cargo/config.toml's flags, so its -z pack-relative-relocs comes again here.
export RUSTFLAGS="-Cprofile-use=$work/p2pvpn.profdata -Clink-arg=-Wl,-z,keep-text-section-prefix \
-Clink-arg=-Wl,-z,pack-relative-relocs"
bin="${CARGO_TARGET_DIR:-target}/release-pgo/p2pvpn"
# The first link gives the names the linker sees (ThinLTO's renamed functions, the standard
# library's); the second, of the same objects, takes the order. The order goes to the binary's
# own crate only (`cargo rustc`), so the second pass relinks without rebuilding a dependency.
cargo rustc --profile release-pgo --locked --bin p2pvpn >&2
[[ -x "$bin" ]] || die "no binary at $bin"
python3 scripts/lib/link_order.py "$work/run-settled.txt" "$work/run-node.txt" "$work/run-all.txt" \
    "$work/profiled.txt" "$bin" >"$work/order.txt" || die "could not write the link order"
say "link order: $work/order.txt ($(wc -l <"$work/order.txt") functions; ${#nodes[@]} node profiles, ${#settled[@]} settled)"
cargo rustc --profile release-pgo --locked --bin p2pvpn -- \
    -Clink-arg=-Wl,--symbol-ordering-file="$work/order.txt" -Clink-arg=-Wl,--no-warn-symbol-ordering >&2
[[ -x "$bin" ]] || die "no binary at $bin"
echo "$bin"
