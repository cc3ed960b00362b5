#!/usr/bin/env bash
# tests/netns/roam.sh - roaming with the real binary (issue 13 part 4; nat-lab.md, "NAT
# rebinding mid-session"). Host a sits behind PRC router a-nat, host b behind PRC router
# b-nat; a also has a second interface on the LAN of a second PRC router, a-nat2, unused at
# first. Once the pair is direct, a paced TCP transfer (tests/netns/roam_tcp.py, 256 KiB/s)
# runs from a to b over the VPN, and meanwhile:
#   flush  a's router forgets every mapping (`conntrack -F` in a-nat);
#   move   a moves to a-nat2: its address on the old LAN is removed, the old link goes down
#          and its default route points to a-nat2 (a new underlay address and public IP,
#          as when a laptop changes networks).
# After each event both nodes must report the pair direct within 5 s (status --json, polled
# every 0.2 s, and staying direct from then on; after the move b must see a at a-nat2's
# public address), and at the end the one TCP connection must have carried every byte and
# closed cleanly. The receiver's longest silence shows how well the relay covered the gap;
# it must stay under ROAM_MAX_GAP seconds (default 3). A timeline of both sides' paths per
# event is printed.
#
# Prints ok / not ok per check; exits 1 if one failed, 77 (after `SKIP: reason`) when it
# cannot run here, 2 on a setup error.
#   P2PVPN_BIN       binary (default target/release/p2pvpn; tests/netns.rs sets the debug one)
#   ROAM_DELAY=MS    run it with the delay element (scripts/lib/delay.sh): MS one way, and
#   ROAM_JITTER=MS   +/- jitter (default 0)
#   ROAM_BACK=5      seconds allowed to be direct again;  ROAM_MAX_GAP=3
#   LAB_KEEP=1       keep the temp dir (logs, state, the transfer's result)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/matrix.sh
. "$ROOT/scripts/lib/matrix.sh"

lab_preflight ip nft python3 timeout conntrack

BACK="${ROAM_BACK:-5}"
MAX_GAP="${ROAM_MAX_GAP:-3}"
# steady 3 s, each event watched for 10 s, 2 s to spare
TRANSFER_S=25
PORT=5001
PASSED=0
FAILED=0
check() {  # check NAME RC
    if [[ "$2" -eq 0 ]]; then PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$1"
    else FAILED=$((FAILED + 1)); printf 'not ok - %s\n' "$1"; fi
}
# shellcheck disable=SC2317  # called from the EXIT trap
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then lab_dump_logs 40 2>&1 | sed 's/^/# /'; fi
    return 0
}

T0=$SECONDS
lab_init
mx_note "lab $LAB_TMP, binary $P2P_BIN"
mx_setup || { echo "Bail out! server did not start"; exit 2; }
if [[ -n "${ROAM_DELAY:-}" ]]; then lab_delay "$ROAM_DELAY" "${ROAM_JITTER:-0}"; fi

a=ra; b=rb; net=roam
lab_build "$a:PRC" "$b:PRC"
r2="$a-nat2"
lab_add_nat_router "$r2"
lab_nat "$r2" PRC
lan2="${LAB_ROUTER_LAN[$r2]}"
lab_veth "$a" eth1 "$r2" lanroam
ip -n "$(lab_ns "$r2")" link set lanroam master lan0
lab_addr "$a" eth1 "$lan2.10/24"
pub1="$(lab_public_ip "$a")"; pub2="${LAB_ROUTER_WAN[$r2]}"
mx_note "$a $(lab_host_ip "$a") behind $pub1, later $lan2.10 behind $pub2; $b $(lab_host_ip "$b") behind $(lab_public_ip "$b")"

mx_srv network create "$net" --cidr 10.99.70.0/24 --state-dir "$MX_STATE" >/dev/null 2>&1 ||
    { echo "Bail out! network create failed"; exit 2; }
for n in "$a" "$b"; do
    tok="$(mx_srv network invite "$net" --uses 1 --state-dir "$MX_STATE" 2>/dev/null | tail -n 1)"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 ||
        { echo "Bail out! $n could not join"; exit 2; }
done
p2p_spawn "$a" "$a-up" up --network "$net"
p2p_spawn "$b" "$b-up" up --network "$net"
both_direct() { p2p_peer_is "$a" "$net" "$b" direct && p2p_peer_is "$b" "$net" "$a" direct; }
rc=0; lab_wait_for "$MX_TIMEOUT" both_direct || rc=$?
check "$a - $b direct before the events" "$rc"
((rc == 0)) || exit 1
vip_b="$(p2p_field "$b" "$net" 'j["virtual_ip"]')"

lab_spawn "$b" rx -- timeout 120 python3 "$ROOT/tests/netns/roam_tcp.py" recv "$vip_b" "$PORT" \
    "$LAB_TMP/rx.json" --max-seconds 100
lab_wait_ready 10 rx '^listening' || { echo "Bail out! the receiver did not start"; exit 2; }
lab_spawn "$a" tx -- timeout 100 python3 "$ROOT/tests/netns/roam_tcp.py" send "$vip_b" "$PORT" "$TRANSFER_S"
sleep 3

# watch EVENT WANT_B_SEES : poll both nodes' status every 0.2 s for 10 s after the event.
# Prints the timeline (time, a's path to b, b's path to a, b's endpoint for a, on change)
# and sets BACK_AT: the time from which both stayed direct to the end (with b seeing a at
# an address starting with WANT_B_SEES), or "" if they did not settle on direct.
watch() {
    local event="$1" want="$2" t0 now t line last="" pa pb ep
    BACK_AT=""
    t0="$(mx_now_ms)"
    while :; do
        now="$(mx_now_ms)"; t=$((now - t0))
        ((t <= 10000)) || break
        pa="$(p2p_peer_route "$a" "$net" "$b")"
        pb="$(p2p_peer_route "$b" "$net" "$a")"
        ep="$(p2p_field "$b" "$net" "next((p.get('endpoint') or '-') for p in j.get('peers', []) if p.get('name') == '$a')" 2>/dev/null || echo '?')"
        line="$pa | $pb | $ep"
        if [[ "$line" != "$last" ]]; then
            mx_note "  $event +${t} ms: $a sees $pa, $b sees $pb, $b has $a at $ep"
            last="$line"
        fi
        if [[ "$pa" == "direct "* && "$pb" == "direct "* && "$ep" == "$want"* ]]; then
            [[ -n "$BACK_AT" ]] || BACK_AT="$t"
        else
            BACK_AT=""
        fi
        sleep 0.2
    done
}

mx_note "event flush: conntrack -F in $a-nat"
lab_nat_flush "$a-nat"
watch flush "$pub1:"
rc=0; [[ -n "$BACK_AT" && "$BACK_AT" -le $((BACK * 1000)) ]] || rc=1
check "flush: both direct again within $BACK s (from +${BACK_AT:-never} ms on)" "$rc"

mx_note "event move: $a leaves $(lab_host_ip "$a") for $lan2.10 behind $r2"
ip -n "$(lab_ns "$a")" addr flush dev eth0
ip -n "$(lab_ns "$a")" link set eth0 down
ip -n "$(lab_ns "$a")" route replace default via "$lan2.1" dev eth1
watch move "$pub2:"
rc=0; [[ -n "$BACK_AT" && "$BACK_AT" -le $((BACK * 1000)) ]] || rc=1
check "move: both direct again within $BACK s, $b seeing $a at $pub2 (from +${BACK_AT:-never} ms on)" "$rc"

# the transfer ends by itself (TRANSFER_S after it began); bounded wait
lab_wait_for 40 lab_exited tx || true
lab_wait_for 40 lab_exited rx || true
result="$(cat "$LAB_TMP/rx.json" 2>/dev/null || echo '{}')"
mx_note "receiver: $result"
mx_note "sender: $(tail -n 1 "$(lab_logfile tx)")"
rc=0; grep -q '^sent [0-9]*, receiver: OK' "$(lab_logfile tx)" &&
    [[ "$(p2p_json_get - 'j.get("clean")' <<<"$result")" == true ]] || rc=1
check "the TCP connection survived both events and carried every byte" "$rc"
gap="$(p2p_json_get - 'j.get("longest_gap_s", 999)' <<<"$result")"
rc=0; awk -v g="$gap" -v m="$MAX_GAP" 'BEGIN { exit !(g < m) }' || rc=1
check "the longest silence in the transfer was ${gap} s (under $MAX_GAP s)" "$rc"

P2P_TIMEOUT=5 p2p "$a" down --network "$net" >/dev/null 2>&1 || true
P2P_TIMEOUT=5 p2p "$b" down --network "$net" >/dev/null 2>&1 || true
lab_stop "$a-up" TERM 3 >/dev/null 2>&1 || true
lab_stop "$b-up" TERM 3 >/dev/null 2>&1 || true
if [[ -n "${ROAM_DELAY:-}" ]]; then mx_note "delay element: $(lab_delay_stats)"; fi
echo "netns-roam: $PASSED passed, $FAILED failed in $((SECONDS - T0)) s"
[[ $FAILED -eq 0 ]]
