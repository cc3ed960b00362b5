#!/usr/bin/env bash
# scripts/soak.sh - the long soak run: tests/netns/soak.sh (a 10-node mesh in network
# namespaces under churn: nodes leaving and joining, server restarts, a direct path blackholed
# and restored; then no RSS or open-file growth, every pair pings, counters consistent) for
# as long as asked. CI runs the same script for 2 minutes (the netns_soak test).
#
# Usage (as root):  scripts/soak.sh [--minutes N] [--keep]
#   --minutes N   churn time (default 30); the server restarts every 10 minutes (at least once)
#   --keep        keep the lab's temp dir (logs, RSS/fd samples, status JSON)
#   P2PVPN_BIN=path/to/p2pvpn   test that binary instead of `cargo build --release`
#   SOAK_RSS_TOL_KB, SOAK_FD_TOL, SOAK_SERVER_EVERY   see tests/netns/soak.sh
# Exits 0 when every check passed, 1 if one failed, 2 on setup errors.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

minutes=30
while (($#)); do
    case "$1" in
        --minutes)
            [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "soak: --minutes takes a whole number of minutes" >&2; exit 2; }
            minutes="$2"; shift 2 ;;
        --keep) export LAB_KEEP=1; shift ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

if [[ $EUID -ne 0 ]]; then
    echo "soak: needs root (network namespaces and TUN devices): sudo scripts/soak.sh" >&2
    exit 2
fi
if command -v apt-get >/dev/null 2>&1; then
    bash scripts/setup-deps.sh test || echo "soak: some tools are missing (see above)" >&2
fi
if [[ -z "${P2PVPN_BIN:-}" ]]; then
    echo "soak: cargo build --release"
    cargo build --release
    export P2PVPN_BIN="$ROOT/target/release/p2pvpn"
fi

secs=$((minutes * 60))
every="${SOAK_SERVER_EVERY:-600}"
((every <= secs)) || every=$((secs / 2))
echo "soak: ${minutes} min of churn, a server restart every ${every} s; about $((minutes + 2)) min in all"
set +e
SOAK_SECONDS="$secs" SOAK_SERVER_EVERY="$every" bash tests/netns/soak.sh
rc=$?
set -e
if ((rc == 77)); then
    echo "soak: could not run here (see the SKIP line above)" >&2
    exit 2
fi
exit "$rc"
