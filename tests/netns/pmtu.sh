#!/usr/bin/env bash
# tests/netns/pmtu.sh - packet sizes on a path below the usual MTU (issue 11, path MTU part).
#
# Topology (docs: nat-lab.md): alice behind a PRC NAT, bob behind a PRC NAT, the server on the
# internet bridge. Bob's router reaches the internet router over a 1300-byte link (both ends of
# its WAN veth), and the internet router's ICMP "fragmentation needed" toward the NATs' public
# addresses is filtered (as on many real paths): a WireGuard datagram from alice above 1300
# bytes vanishes. Each node's own link is 1500 bytes, so its route MTU (and the TUN MTU
# derived from it) is 1424.
#
#   a  default config: both nodes show each other's probed path MTU in `status --json` and in
#      the `status` table (1200..1240: 1300 minus IPv4/UDP 28 and WireGuard 32, rounded down
#      by the search), the TUN device has the derived MTU (1424), `status` names it
#   b  default config: a 5 MB TCP transfer alice -> bob completes (30 s bound), and an
#      SSH-sized exchange (messages of 21..9000 bytes echoed both ways) completes
#      and a DF ping above the path MTU gets "fragmentation needed" with it (drops.too_big);
#      a 5 MB transfer with a 200-byte MSS (TSO super-packets of ~330 segments, sealed in
#      parts) has under 1% of its segments retransmitted (b4)
#   c  `mtu = 1420` and `path_mtu_discovery = false` (today's fixed size) apply (c1), and the
#      same 5 MB transfer stalls (does not complete in 20 s), which shows the lab really has the
#      black hole that (b) crosses (c2; named and counted as skipped, with the kernel's cached
#      routes, when the lab fails to produce the black hole)
#
# Prints `ok - NAME` / `not ok - NAME` per check; exits 1 if a check failed, 77 (after
# `SKIP: reason`) when it cannot run here, 2 on a setup error. About 1.5 minutes.
#   P2PVPN_BIN        binary to test (tests/netns.rs sets the debug binary)
#   PMTU_ICMP_FILTER  1 (default) drops the routers' "fragmentation needed"; 0 lets it through
#                     (then a and b must hold as well: the node sends with DF and never lets the
#                     host fragment; c is skipped)
#   LAB_KEEP=1        keep the temp dir (logs, state)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_preflight ip nft python3 ping timeout nstat

NET=demo
CIDR=10.77.0.0/24
PORT=7400
LINK_MTU=1300
declare -A VIP=()
M1=""  # alice's path MTU to bob, from a1

# shellcheck disable=SC2317  # called by the EXIT trap
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 25 lines of every process log:"
        lab_dump_logs 25 2>&1 | sed 's/^/# /'
    fi
    return 0
}
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
SERVER_STATE="$LAB_TMP/server/state"
lab_build server alice:PRC bob:PRC

# ---------------------------------------------------------------- the 1300-byte link
BOB_NAT="$(lab_router_of bob)"
WAN_IDX="${_LAB_ROUTER_WANIDX[$BOB_NAT]}"
ip -n "$(lab_ns "$LAB_INTERNET")" link set "wan$WAN_IDX" mtu "$LINK_MTU"
ip -n "$(lab_ns "$BOB_NAT")" link set wan0 mtu "$LINK_MTU"
if [[ "${PMTU_ICMP_FILTER:-1}" == 1 ]]; then
    # Toward the NATs' public addresses only: the server's own TCP (the control channel, not
    # the subject here) still learns the link's size; the tunnel's datagrams do not.
    lab_exec "$LAB_INTERNET" nft -f - <<'NFT'
table ip pmtu_blackhole {
    chain from_router {
        type filter hook output priority 0; policy accept;
        ip daddr 203.0.113.0/24 icmp type destination-unreachable icmp code frag-needed drop
    }
}
NFT
fi
note "bob's WAN link: $LINK_MTU bytes; ICMP frag-needed filtered: ${PMTU_ICMP_FILTER:-1}"

# ---------------------------------------------------------------- server, network, join
p2p_network_up server "198.51.100.1:$PORT" "$SERVER_STATE" "$NET" "$CIDR" alice bob || setup_fail "$P2P_SETUP_ERROR"

# ---------------------------------------------------------------- TCP helpers (bounded)
TCP_PY="$ROOT/tests/netns/tcp.py"

up() { p2p_spawn "$1" "$1-up$2" up --network "$NET"; }
down() { P2P_TIMEOUT=10 p2p "$1" down --network "$NET" >/dev/null 2>&1 || true; }
both_direct() { p2p_peer_is_direct alice "$NET" bob && p2p_peer_is_direct bob "$NET" alice; }
path_mtu() {  # path_mtu NAME PEER : the probed path MTU NAME shows for PEER ("None" if unknown)
    p2p_field "$1" "$NET" "next((p.get('path_mtu') for p in j['peers'] if p['name'] == '$2'), None)" 2>/dev/null
}
has_path_mtu() { [[ "$(path_mtu "$1" "$2")" =~ ^[0-9]+$ ]]; }
# Status "searching" or absent once the nodes are direct: the search of the direct path is done.
search_done() {
    [[ "$(p2p_field "$1" "$NET" "next((p.get('path_mtu_search') for p in j['peers'] if p['name'] == '$2'), None)" 2>/dev/null)" == complete ]]
}

# bulk FROM TO BYTES SECS LABEL [MSS] : a TCP transfer FROM -> TO of BYTES within SECS (with
# segments of at most MSS bytes if given); 0 if the peer got every byte.
bulk() {
    local from="$1" to="$2" bytes="$3" secs="$4" label="$5" mss="${6:-}" out rc=0 t0
    lab_spawn "$to" "$label-srv" -- timeout "$((secs + 5))" python3 "$TCP_PY" serve-bulk "${VIP[$to]}" 5201
    sleep 0.5
    t0=$SECONDS
    # shellcheck disable=SC2086  # $mss: no argument when empty
    out="$(lab_exec "$from" timeout "$secs" python3 "$TCP_PY" send-bulk "${VIP[$to]}" 5201 "$bytes" $mss 2>&1)" || rc=$?
    lab_stop "$label-srv" TERM 2 >/dev/null 2>&1 || true
    BULK_FIG="rc $rc after $((SECONDS - t0)) s: ${out//$'\n'/ }"
    return "$rc"
}

# ================================================================ a, b: default config
up alice ""; up bob ""
lab_wait_for 40 both_direct || note "not direct after 40 s: alice sees $(p2p_peer_path alice "$NET" bob), bob sees $(p2p_peer_path bob "$NET" alice)"
lab_wait_for 30 search_done alice bob || true
lab_wait_for 10 search_done bob alice || true

a_status() {
    local m1 m2 text
    m1="$(path_mtu alice bob)"; m2="$(path_mtu bob alice)"; M1="$m1"
    note "path MTU alice -> bob: $m1, bob -> alice: $m2"
    [[ "$m1" =~ ^[0-9]+$ && "$m2" =~ ^[0-9]+$ ]] || { why "no path_mtu in status --json"; return 1; }
    ((m1 >= 1200 && m1 <= 1240)) || { why "alice -> bob path MTU $m1 outside 1200..1240"; return 1; }
    ((m2 >= 1200 && m2 <= 1240)) || { why "bob -> alice path MTU $m2 outside 1200..1240"; return 1; }
    text="$(p2p alice status --network "$NET" 2>&1)"
    grep -qE "^PEER .* MTU " <<<"$text" || { why "no MTU column: $(head -n 6 <<<"$text" | tr '\n' '|')"; return 1; }
    grep -qE "^bob .* $m1 " <<<"$text" || { why "bob's row does not show $m1: $(grep '^bob' <<<"$text")"; return 1; }
    grep -q "mtu 1424" <<<"$text" || { why "status does not name the TUN MTU 1424: $(head -n 1 <<<"$text")"; return 1; }
}
check "a1 status and status --json show each peer's probed path MTU (1200..1240 over a 1300-byte link)" a_status
a_tun() {
    local got
    got="$(lab_exec alice ip -o link show dev p2p-demo | grep -oE 'mtu [0-9]+')"
    [[ "$got" == "mtu 1424" ]] || { why "alice's p2p-demo has '$got', expected mtu 1424 (1500 - 28 - 48)"; return 1; }
}
check "a2 the TUN MTU is derived from the route MTU (1500 - 28 - 48 = 1424)" a_tun

b_bulk() {
    bulk alice bob 5000000 30 b-bulk || { why "5 MB alice -> bob: $BULK_FIG"; return 1; }
    note "5 MB alice -> bob: $BULK_FIG"
}
check "b1 default: a 5 MB TCP transfer alice -> bob completes through the tunnel" b_bulk
b_echo() {
    local out rc=0
    lab_spawn bob b-echo-srv -- timeout 30 python3 "$TCP_PY" serve-echo "${VIP[bob]}" 5202
    sleep 0.5
    out="$(lab_exec alice timeout 20 python3 "$TCP_PY" echo "${VIP[bob]}" 5202 2>&1)" || rc=$?
    lab_stop b-echo-srv TERM 2 >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] || { why "exchange failed (rc $rc): ${out//$'\n'/ }"; return 1; }
}
check "b2 default: an SSH-sized exchange (21..9000-byte messages echoed) completes" b_echo
b_ptb() {  # a DF packet above the path MTU: the node answers "fragmentation needed"
    local out too_big
    [[ -n "$M1" ]] || { why "no path MTU from a1"; return 1; }
    out="$(lab_exec alice ping -n -M "do" -s 1372 -c 2 -i 0.3 -W 1 "${VIP[bob]}" 2>&1)" || true
    note "ping -M do -s 1372: $(grep -iE 'mtu|frag' <<<"$out" | head -n 2 | tr '\n' '|')"
    grep -Eiq "mtu ?= ?$M1" <<<"$out" || { why "no 'mtu = $M1' in: ${out//$'\n'/ | }"; return 1; }
    too_big="$(p2p_field alice "$NET" "j['drops'].get('too_big', 0)")"
    ((too_big >= 1)) || { why "drops.too_big is $too_big"; return 1; }
    out="$(lab_exec alice ping -n -M "do" -s "$((M1 - 28))" -c 2 -i 0.3 -W 2 "${VIP[bob]}" 2>&1)" || true
    grep -q ' 2 received' <<<"$out" || { why "a DF ping of exactly $M1 bytes: ${out//$'\n'/ | }"; return 1; }
}
check "b3 a DF packet above the path MTU gets ICMP 'fragmentation needed' naming it (counted too_big); one of exactly the path MTU goes through" b_ptb
# tcp_seg NAME FIELD : a TCP counter of NAME's namespace (nstat: TcpOutSegs, TcpRetransSegs).
tcp_seg() { lab_exec "$1" nstat -asz "$2" 2>/dev/null | awk -v f="$2" '$1 == f {print $2}'; }
b_small_mss() {  # a 200-byte MSS: the kernel hands the TUN device super-packets of ~330 segments
    local out0 re0 out1 re1 sent resent
    out0="$(tcp_seg alice TcpOutSegs)"; re0="$(tcp_seg alice TcpRetransSegs)"
    [[ "$out0" =~ ^[0-9]+$ && "$re0" =~ ^[0-9]+$ ]] || { why "no TCP counters from nstat in alice's namespace"; return 1; }
    bulk alice bob 5000000 30 b-mss 200 || { why "5 MB with MSS 200: $BULK_FIG"; return 1; }
    out1="$(tcp_seg alice TcpOutSegs)"; re1="$(tcp_seg alice TcpRetransSegs)"
    sent=$((out1 - out0)); resent=$((re1 - re0))
    note "5 MB alice -> bob, MSS 200: $BULK_FIG; $sent segments, $resent retransmitted"
    # Before the split in parts, every super-packet of more than 128 segments was dropped whole:
    # such a transfer crawled on retransmissions (37565 of about 50000 in 4 s in a bench pair).
    ((resent * 100 <= sent)) || { why "$resent of $sent segments retransmitted (more than 1%)"; return 1; }
}
check "b4 a flow with a 200-byte MSS (super-packets of more segments than one sealed batch) crosses without loss: 5 MB, under 1% retransmitted" b_small_mss

# ================================================================ c: fixed 1420, no discovery
down alice; down bob
lab_wait_for 10 lab_exited alice-up || true
lab_wait_for 10 lab_exited bob-up || true
for n in alice bob; do
    printf 'mtu = 1420\npath_mtu_discovery = false\n' >>"$LAB_TMP/$n/etc/$NET.toml"
done
up alice 2; up bob 2
lab_wait_for 40 both_direct || note "not direct after 40 s (fixed MTU run)"
c_fixed() {
    local got
    got="$(lab_exec alice ip -o link show dev p2p-demo | grep -oE 'mtu [0-9]+')"
    [[ "$got" == "mtu 1420" ]] || { why "the override did not apply: $got"; return 1; }
    has_path_mtu alice bob && { why "discovery off, yet a path MTU is shown"; return 1; }
    return 0
}
check "c1 mtu = 1420 and path_mtu_discovery = false apply: the device has MTU 1420, no path MTU is shown" c_fixed
# The negative control: the same transfer with today's fixed size stalls. It shows the lab
# really has the black hole (b) crosses; it is not a property of p2pvpn. When the lab does not
# produce it (the fixed-size transfer completes: the kernel found a way round the 1300-byte link,
# seen twice in CI's full run and never alone), the check is named and counted as skipped, with
# what the kernel had cached, instead of passing or failing on the lab's behalf.
SKIPPED=0
c_stall() {
    if bulk alice bob 5000000 20 c-bulk; then
        why "the transfer completed with a fixed 1420 MTU ($BULK_FIG)"
        return 1
    fi
    note "fixed 1420: $BULK_FIG"
}
if [[ "${PMTU_ICMP_FILTER:-1}" == 1 ]]; then
    if c_stall_out="$(c_stall)"; then
        printf '%s\n' "$c_stall_out"
        PASSED=$((PASSED + 1)); echo "ok - c2 the same transfer with the fixed 1420 MTU stalls (20 s): the lab has the black hole"
    else
        printf '%s\n' "$c_stall_out"
        note "alice's route to bob: $(lab_exec alice ip route get "${VIP[bob]}" 2>&1 | tr '\n' ' ')"
        note "alice -> bob: $(p2p_peer_route alice "$NET" bob 2>&1); bob -> alice: $(p2p_peer_route bob "$NET" alice 2>&1)"
        note "alice's cached routes: $(lab_exec alice ip route show cache 2>&1 | tr '\n' ' ')"
        SKIPPED=$((SKIPPED + 1))
        echo "ok - c2 the same transfer with the fixed 1420 MTU stalls # SKIP the lab produced no black hole this run (see the notes above)"
    fi
else
    # Without discovery the node leaves the kernel's PMTU handling alone, and with the routers'
    # ICMP let through the kernel fragments the WireGuard datagrams: no black hole to show.
    note "c2 skipped: ICMP not filtered, the kernel fragments without discovery"
fi

down alice; down bob
echo "# $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
