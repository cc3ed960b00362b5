#!/usr/bin/env bash
# tests/netns/matrix.sh - the NAT traversal matrix (docs: nat-lab.md, "Techniques and
# the matrix they must win") with the real binary: for each pair of NAT profiles, a
# server, two hosts, `network create` / `invite` / `join` / `up`, then the peer's path
# must turn "direct" within 30 s (row 7, RND-RND: must stay off direct for 20 s) and
# ping -c 3 over the VPN must answer. Pairs run one after another; the server is
# shared, every pair's hosts and routers are torn down after it.
#
# Prints `ok - row N: A - B, expect X` / `not ok - ...` per pair, the result table, a
# summary; exits 1 if a pair failed, 77 (after `SKIP: reason`) when it cannot run here.
#   P2PVPN_BIN     binary to test (default target/release/p2pvpn)
#   MX_ROWS=1,3,7  only these rows          MX_TIMEOUT / MX_RELAY_WAIT  seconds (30 / 20)
#   LAB_KEEP=1     keep the temp dir (logs, state)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/matrix.sh
. "$ROOT/scripts/lib/matrix.sh"

lab_preflight ip nft python3 ping timeout conntrack

PASSED=0
FAILED=0
# shellcheck disable=SC2317  # called through mx_run_all / the EXIT trap
report() {  # report NAME RC
    if [[ "$2" -eq 0 ]]; then PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$1"
    else FAILED=$((FAILED + 1)); printf 'not ok - %s\n' "$1"; fi
}
# shellcheck disable=SC2317
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]] && [[ "${MX_DUMP_LOGS:-0}" == 1 ]]; then
        lab_dump_logs 20 2>&1 | sed 's/^/# /'
    fi
    return 0
}

T0=$SECONDS
lab_init
mx_select_rows "${MX_ROWS:-}"
mx_note "lab $LAB_TMP, binary $P2P_BIN, ${#MX_PAIRS[@]} pairs, timeout ${MX_TIMEOUT} s (relay rows ${MX_RELAY_WAIT} s)"
mx_setup || { echo "Bail out! server did not start"; exit 2; }
rc=0
mx_run_all report || rc=$?
echo
mx_table | sed 's/^/# /'
echo "netns-matrix: $PASSED passed, $FAILED failed in $((SECONDS - T0)) s"
exit "$rc"
