#!/usr/bin/env bash
# tests/netns/restart.sh - a node restarted at once (`systemctl restart`) is reachable at once,
# as root in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1 (TCP+UDP 7400), alice
# 198.51.100.11, bob 198.51.100.12. Network "rst" 10.79.0.0/24.
#
# Each round stops one node's `up` and starts it again within a second, then, as soon as the
# new run lists its peer: one ping each way (`ping -c 1 -W 2`) must be answered, and both
# must show each other "direct" within 5 s of the new start. Rounds: alice (SIGTERM, a new
# random port, listen_port = 0), bob (the other key order), alice killed (SIGKILL), alice on a
# fixed port (listen_port = 51820, the same port again). Before the fix the peer that stayed
# up answered the new run's handshake but sent everything else to the old run's port for
# ~5 s, or (the new run holding the higher key) started no handshake for 4 s.
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if any check
# failed, 77 (after printing `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug
#                binary)
#   LAB_KEEP=1   keep the temp dir (logs, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

lab_preflight ip python3 ping timeout

NET=rst
CIDR=10.79.0.0/24
SERVER_IP=198.51.100.1
PORT=7400

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

# The label of each node's current `up` process.
declare -A RUN=([alice]=alice-up0 [bob]=bob-up0)
declare -A VIP=()
SEQ=0

lab_on_exit() {
    local rc="$1" n
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    # Nodes leave through `down` (removing their interfaces); lab_cleanup kills what is left.
    for n in alice bob; do
        if [[ -e "$LAB_TMP/pids/${RUN[$n]}" ]] && lab_alive "${RUN[$n]}"; then
            P2P_TIMEOUT=5 p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
        fi
    done
    return 0
}

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
lab_internet inet
lab_add_host server "$SERVER_IP"
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }
other() { if [[ "$1" == alice ]]; then echo bob; else echo alice; fi; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- setup
lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s ($rc)"
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE" >/dev/null || setup_fail "network create"
for n in alice bob; do
    tok="$(srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" ||
        setup_fail "invite $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
done
for n in alice bob; do p2p_spawn "$n" "${RUN[$n]}" up --network "$NET"; done
for n in alice bob; do
    lab_wait_for 30 p2p_peer_is_direct "$n" "$NET" "$(other "$n")" || setup_fail "$n: peer not direct in 30 s"
    VIP[$n]="$(p2p_field "$n" "$NET" 'j["virtual_ip"]')" || setup_fail "$n: no virtual_ip"
done
note "alice ${VIP[alice]}, bob ${VIP[bob]}"
ping1() {  # ping1 FROM TO : one echo, answered within 2 s
    local out
    out="$(lab_exec "$1" ping -c 1 -W 2 "${VIP[$2]}" 2>&1)" ||
        { why "ping $1 -> $2: $(grep -E 'transmitted|unreachable' <<<"$out" | tr '\n' ' ')"; return 1; }
}
# Traffic has flowed both ways before any restart: the peers hold a live session.
{ ping1 alice bob && ping1 bob alice; } || setup_fail "no ping before the restarts"

# ---------------------------------------------------------------- rounds
# restart NODE SIGNAL : stop NODE's `up` with SIGNAL and start a new one at once; GAP is the
# time in ms between the old process's end and the new start, T_START when it started.
GAP=0
T_START=0
restart() {
    local n="$1" sig="$2" t0
    lab_stop "${RUN[$n]}" "$sig" 10 || true
    t0="$(now_ms)"
    SEQ=$((SEQ + 1))
    RUN[$n]="$n-up$SEQ"
    p2p_spawn "$n" "${RUN[$n]}" up --network "$NET"
    T_START="$(now_ms)"
    GAP=$((T_START - t0))
}

# round NODE SIGNAL : one restart of NODE, then the checks.
round() {
    local n="$1" sig="$2" peer t_up t_direct
    peer="$(other "$n")"
    restart "$n" "$sig"
    ((GAP < 1000)) || { why "the new run started $GAP ms after the old one ended"; return 1; }
    # The new run is up once it lists its peer (its interface exists and it registered).
    lab_wait_for 30 p2p_has_peer "$n" "$NET" "$peer" || { why "$n's new run never listed $peer"; return 1; }
    t_up=$(($(now_ms) - T_START))
    ping1 "$n" "$peer" || { why "(new run up after $t_up ms)"; return 1; }
    ping1 "$peer" "$n" || return 1
    lab_wait_for 5 p2p_peer_is_direct "$n" "$NET" "$peer" || { why "$n: $peer not direct 5 s after the restart"; return 1; }
    lab_wait_for 5 p2p_peer_is_direct "$peer" "$NET" "$n" || { why "$peer: $n not direct 5 s after the restart"; return 1; }
    t_direct=$(($(now_ms) - T_START))
    ((t_direct <= 5000)) || { why "both direct only $t_direct ms after the new start"; return 1; }
    note "$n restarted ($sig, gap $GAP ms): new run up after $t_up ms, pings answered, both direct after $t_direct ms, port $(p2p_field "$n" "$NET" 'j.get("listen_port")' 2>/dev/null || echo '?')"
}

check "r1 alice restarted within 1 s (SIGTERM, new port): pings both ways answered within 2 s, direct" round alice TERM
check "r2 bob restarted within 1 s (SIGTERM, new port): pings both ways answered within 2 s, direct" round bob TERM
check "r3 alice killed and restarted within 1 s (SIGKILL): pings both ways answered within 2 s, direct" round alice KILL

# Fixed port: alice's config names one, a first restart takes it, the second reuses it.
fixed_port() {
    local conf="$LAB_TMP/alice/etc/$NET.toml"
    [[ -f "$conf" ]] || { why "no $conf"; return 1; }
    if grep -q '^listen_port' "$conf"; then
        sed -i 's/^listen_port = .*/listen_port = 51820/' "$conf"
    else
        printf 'listen_port = 51820\n' >>"$conf"
    fi
    round alice TERM || return 1
    round alice TERM || return 1
    local port
    port="$(p2p_field alice "$NET" 'j.get("listen_port")' 2>/dev/null || true)"
    [[ "$port" == 51820 ]] || { why "alice's listen_port is '$port', not 51820"; return 1; }
}
check "r4 alice on a fixed port restarted within 1 s on the same port: pings answered within 2 s, direct" fixed_port

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-restart: $PASSED passed, $FAILED failed"
((FAILED == 0))
