#!/usr/bin/env bash
# scripts/demo.sh - the README demo: a control server and two hosts (alice, bob)
# in network namespaces, a VPN network "demo" (10.77.0.0/24) between them, pings
# both ways over it, then `status` of both. Everything lives in namespaces this
# script creates and is torn down on exit (also on failure or Ctrl-C).
#
# Usage (as root, from anywhere):  scripts/demo.sh
#   P2PVPN_BIN=path/to/p2pvpn   use that binary instead of `cargo build --release`
#   LAB_KEEP=1                  keep the temp dir with logs and state
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

NET=demo
CIDR=10.77.0.0/24
SERVER_IP=198.51.100.1
PORT=7400

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

if [[ $EUID -ne 0 ]]; then
    echo "demo.sh needs root (it creates network namespaces and TUN devices)" >&2
    exit 1
fi
# the package list README's commands and CI share (scripts/setup-deps.sh)
if command -v apt-get >/dev/null 2>&1; then
    bash "$ROOT/scripts/setup-deps.sh" demo || fail "cannot install what the demo needs (see above)"
fi
if m="$(lab_missing ip ping python3 timeout)"; then
    fail "$m not found; install iproute2, iputils-ping, python3 and coreutils, and run again"
fi

if [[ -z "${P2PVPN_BIN:-}" ]]; then
    say "cargo build --release"
    cargo build --release
fi
P2P_BIN="$(p2p_bin_default)"
[[ -x "$P2P_BIN" ]] || fail "p2pvpn binary not found at $P2P_BIN"

lab_on_exit() {
    local rc="$1"
    if [[ "$rc" -ne 0 ]]; then
        echo "demo failed (exit $rc); last 30 lines of every process log:" >&2
        lab_dump_logs 30
    fi
    # stop the nodes the polite way first; lab_cleanup kills whatever is left
    local n
    for n in alice bob; do
        if lab_alive "$n-up" 2>/dev/null; then
            p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
        fi
    done
    for n in alice-up bob-up server; do
        [[ -e "$LAB_TMP/pids/$n" ]] && lab_stop "$n" TERM 3 >/dev/null 2>&1
    done
    return 0
}

lab_init
say "lab in $LAB_TMP, namespaces ${LAB_PREFIX}*"
lab_internet inet
lab_add_host server "$SERVER_IP"
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server "$P2P_BIN" "$@"; }

say "starting server on $SERVER_IP:$PORT"
lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -ne 2 ]] || fail "server exited"
[[ $rc -eq 0 ]] || fail "server not ready within 30 s"

say "network create $NET --cidr $CIDR"
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE"

for n in alice bob; do
    token="$(srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" | tail -n 1)"
    [[ -n "$token" ]] || fail "empty invite token"
    say "$n: p2pvpn join <token> --name $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$token" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 ||
        fail "$n could not join"
done

for n in alice bob; do
    say "$n: p2pvpn up --network $NET"
    p2p_spawn "$n" "$n-up" up --network "$NET"
done

say "waiting (up to 30 s) for a direct path both ways"
lab_wait_for 30 p2p_peer_is_direct alice "$NET" bob ||
    fail "alice does not see bob on a direct path (path: '$(p2p_peer_path alice "$NET" bob 2>/dev/null)')"
lab_wait_for 30 p2p_peer_is_direct bob "$NET" alice ||
    fail "bob does not see alice on a direct path (path: '$(p2p_peer_path bob "$NET" alice 2>/dev/null)')"

ALICE_VIP="$(p2p_field alice "$NET" 'j["virtual_ip"]')"
BOB_VIP="$(p2p_field bob "$NET" 'j["virtual_ip"]')"

say "alice ($ALICE_VIP) -> bob ($BOB_VIP)"
lab_exec alice ping -c 3 -W 2 "$BOB_VIP" || fail "ping alice -> bob"
say "bob ($BOB_VIP) -> alice ($ALICE_VIP)"
lab_exec bob ping -c 3 -W 2 "$ALICE_VIP" || fail "ping bob -> alice"

say "alice: p2pvpn status"
p2p alice status --network "$NET"
say "bob: p2pvpn status"
p2p bob status --network "$NET"

say "tearing down"
for n in alice bob; do p2p "$n" down --network "$NET" || true; done
for n in alice bob; do
    lab_wait_for 10 lab_exited "$n-up" ||
        echo "warning: $n did not stop within 10 s after 'down'" >&2
done
say "demo OK"
