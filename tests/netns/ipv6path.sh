#!/usr/bin/env bash
# tests/netns/ipv6path.sh - IPv6 underlay paths (issue 13 part 3; nat-lab.md row 13, V6FW).
# alice and bob sit behind random symmetric IPv4 NATs (RND, row 7: nothing direct is
# affordable over IPv4, so today the pair is relayed). Their routers also route a global IPv6
# /64 each (2001:db8::/32, documentation space, only inside this lab's namespaces) through a
# stateful nftables firewall that lets in established/related traffic only (RFC 6092). The
# server listens on IPv4 and IPv6 with one port. The pair must go direct over IPv6: status
# --json shows path "direct", technique detail "direct (IPv6)" and an IPv6 endpoint, and
# `status`/`doctor` name it; ping and a TCP transfer over the overlay cross the routers as
# IPv6 UDP (the firewalls' counters), not through the relay. The firewall is checked to drop
# what nobody asked for (an unsolicited ping -6 from alice to bob).
#
# Prints ok / not ok per check; exits 1 if one failed, 77 (after `SKIP: reason`) when it
# cannot run here. P2PVPN_BIN, MX_TIMEOUT (30), LAB_KEEP=1 as in tests/netns/matrix.sh.
# V6_OFF=1 runs the same pair without IPv6 in the lab (it must stay relayed: the control).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/matrix.sh
. "$ROOT/scripts/lib/matrix.sh"

lab_preflight ip nft python3 ping timeout
if [[ ! -d /proc/sys/net/ipv6 ]]; then echo "SKIP: this kernel has no IPv6"; exit 77; fi

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

SRV6=2001:db8:ff::1
ip6_in() { local ns="$1"; shift; ip -n "$(lab_ns "$ns")" -6 "$@"; }

# v6_router ROUTER HOST SITE : global IPv6 for ROUTER's WAN (a /64 routed from inet), its
# LAN 2001:db8:SITE::/64 with HOST at ::10, and the stateful firewall (V6FW).
v6_router() {
    local r="$1" h="$2" site="$3" i
    i="${_LAB_ROUTER_WANIDX[$r]}"
    _lab_sysctl "$r" net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_dad=0
    _lab_sysctl "$h" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.eth0.accept_dad=0
    ip6_in "$LAB_INTERNET" addr add "2001:db8:100:$i::1/64" dev "wan$i" nodad
    ip6_in "$r" addr add "2001:db8:100:$i::2/64" dev wan0 nodad
    ip6_in "$r" route add default via "2001:db8:100:$i::1"
    ip6_in "$r" addr add "2001:db8:$site::1/64" dev lan0 nodad
    ip6_in "$h" addr add "2001:db8:$site::10/64" dev eth0 nodad
    ip6_in "$h" route add default via "2001:db8:$site::1"
    ip6_in "$LAB_INTERNET" route add "2001:db8:$site::/64" via "2001:db8:100:$i::2"
    lab_exec "$r" nft -f - <<NFT
table ip6 v6fw {
    counter udp_in {}
    counter unsolicited {}
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        iifname { "lo", "lan0" } accept
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
        iifname "wan0" meta l4proto udp ct state established counter name "udp_in" accept
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
        counter name "unsolicited" drop
    }
}
NFT
}

# fw_counter ROUTER NAME : the packets counted by the firewall's named counter.
fw_counter() {
    lab_exec "$1" nft list counter ip6 v6fw "$2" | awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
# worker_count NODE tx|rx : packets NODE's data thread sealed (tx) or opened (rx) so far.
worker_count() {
    p2p_field "$1" "$net" "int((j.get('workers') or {}).get('$2', {}).get('crypto_packets', 0))"
}
fw_bytes() {
    lab_exec "$1" nft list counter ip6 v6fw "$2" | awk '/bytes/ { for (i = 1; i < NF; i++) if ($i == "bytes") print $(i + 1) }'
}

T0=$SECONDS
lab_init
mx_note "lab $LAB_TMP, binary $P2P_BIN"
lab_build server "alice:RND" "bob:RND"
ra="$(lab_router_of alice)"; rb="$(lab_router_of bob)"
V6=1; [[ "${V6_OFF:-0}" == 1 ]] && V6=0
listen=(--listen "${LAB_SERVER_IPS[0]}:$MX_PORT" --listen "${LAB_SERVER_IPS[1]}:$MX_PORT")
servers=(--server "${LAB_SERVER_IPS[0]}:$MX_PORT")
if ((V6)); then
    _lab_sysctl "$LAB_INTERNET" net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.accept_dad=0
    _lab_sysctl server net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0
    ip6_in "$LAB_INTERNET" addr add 2001:db8:ff::254/64 dev br0 nodad
    ip6_in server addr add "$SRV6/64" dev eth0 nodad
    ip6_in server route add default via 2001:db8:ff::254
    v6_router "$ra" alice a
    v6_router "$rb" bob b
    listen+=(--listen "[$SRV6]:$MX_PORT")
    servers+=(--server "[$SRV6]:$MX_PORT")
    rc=0; lab_wait_for 5 lab_exec alice ping -6 -c 1 -W 1 "$SRV6" >/dev/null 2>&1 || rc=$?
    check "lab: alice reaches the server over IPv6 through her firewall" "$rc"
fi
MX_STATE="$LAB_TMP/server/state"
lab_spawn server server -- "$P2P_BIN" server "${listen[@]}" --state-dir "$MX_STATE"
lab_wait_ready 30 server "p2pvpn server listening on" || { echo "Bail out! server did not start"; exit 2; }
if ((V6)); then
    rc=0; grep -q "$SRV6" "$(lab_logfile server)" || rc=1
    check "server: listens on IPv4 and [$SRV6]:$MX_PORT with one port" "$rc"
fi

net=v6p
mx_srv network create "$net" --cidr 10.99.70.0/24 --state-dir "$MX_STATE" >/dev/null 2>&1
for n in alice bob; do
    tok="$(mx_srv network invite "$net" --uses 1 "${servers[@]}" --state-dir "$MX_STATE" 2>/dev/null | tail -n 1)"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1
done
t_up=$SECONDS
p2p_spawn alice alice-up up --network "$net"
p2p_spawn bob bob-up up --network "$net"
MX_TIMEOUT="${MX_TIMEOUT:-30}"

if ((V6 == 0)); then
    # The control: RND with RND and no IPv6 is relayed (row 7).
    rc=0; lab_wait_for "$MX_TIMEOUT" p2p_peer_is alice "$net" bob relay || rc=$?
    check "control (no IPv6): alice - bob relayed" "$rc"
    rc=0; lab_wait_for 10 p2p_peer_is alice "$net" bob direct && rc=1
    check "control (no IPv6): not direct 10 s later" "$rc"
else
    rc=0; lab_wait_for "$MX_TIMEOUT" p2p_peer_is alice "$net" bob direct || rc=$?
    mx_note "alice sees bob direct after $((SECONDS - t_up)) s"
    check "alice - bob direct (both behind RND IPv4 NATs)" "$rc"
    rc=0; lab_wait_for 10 p2p_peer_is bob "$net" alice direct || rc=$?
    check "bob - alice direct" "$rc"
    for pair in "alice bob b" "bob alice a"; do
        read -r me peer site <<<"$pair"
        f="$(mx_peer_fields "$me" "$net" "$peer")"
        IFS=$'\t' read -r -a F <<<"$f"
        mx_note "$me sees $peer: path ${F[0]}, detail '${F[2]}', endpoint ${F[7]}"
        rc=0; [[ "${F[7]}" == "[2001:db8:$site::10]:"* ]] || rc=1
        check "$me: status --json endpoint of $peer is its IPv6 address (${F[7]})" "$rc"
        rc=0; [[ "${F[2]}" == "direct (IPv6)" ]] || rc=1
        check "$me: technique detail 'direct (IPv6)' (got '${F[2]}')" "$rc"
    done
    out="$(p2p alice status 2>&1 || true)"
    rc=0; grep -q "direct (IPv6)" <<<"$out" || rc=1
    check "alice: status names the IPv6 path" "$rc"
    grep -E "bob" <<<"$out" | sed 's/^/#   status: /' || true
    out="$(P2P_TIMEOUT=40 p2p alice doctor bob 2>&1 || true)"
    rc=0; grep -q "underlay   IPv6, to \[2001:db8:b::10\]" <<<"$out" && grep -q "path       direct (IPv6)" <<<"$out" || rc=1
    ((rc == 0)) || tail -n 30 <<<"$out" | sed "s/^/#   doctor: /"
    check "alice: doctor names the IPv6 path" "$rc"
    grep -E "IPv6" <<<"$out" | head -n 4 | sed 's/^/#   doctor: /' || true

    # Data over it: the firewalls count established IPv6 UDP coming in.
    vip_b="$(p2p_field bob "$net" 'j["virtual_ip"]')"
    before="$(fw_counter "$rb" udp_in)"
    rc=0; lab_exec alice ping -c 5 -i 0.2 -W 2 "$vip_b" >/dev/null 2>&1 || rc=$?
    check "alice pings bob's overlay address $vip_b" "$rc"
    after="$(fw_counter "$rb" udp_in)"
    mx_note "bob's firewall let in $((after - before)) IPv6 UDP packets during 5 pings"
    rc=0; ((after - before >= 5)) || rc=1
    check "the pings crossed bob's firewall as IPv6 UDP (>= 5 packets)" "$rc"
    # TCP: 2 MB from alice to bob over the overlay.
    lab_spawn bob tcp-sink -- python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
print("received", n, flush=True)
' "$vip_b"
    sleep 0.5
    before_b="$(fw_bytes "$rb" udp_in)"
    sealed_a0="$(worker_count alice tx)"; opened_b0="$(worker_count bob rx)"
    rc=0; lab_exec alice timeout 20 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 5201), timeout=10)
s.sendall(b"x" * 2_000_000); s.close()
' "$vip_b" || rc=$?
    lab_wait_log 10 tcp-sink "received" || true
    got="$(grep -o 'received [0-9]*' "$(lab_logfile tcp-sink)" | awk '{print $2}' || true)"
    check "TCP: 2 MB from alice to bob over the overlay (received ${got:-0})" "$([[ "${got:-0}" == 2000000 ]] && echo 0 || echo 1)"
    after_b="$(fw_bytes "$rb" udp_in)"
    mx_note "bob's firewall let in $((after_b - before_b)) bytes of IPv6 UDP during the transfer"
    rc=0; ((after_b - before_b >= 2000000)) || rc=1
    check "the TCP transfer crossed bob's firewall as IPv6 UDP (>= 2 MB)" "$rc"
    # The IPv6 half of the main socket is batched and read by the data thread like the IPv4
    # half (io::main_socket): the transfer's ~1400 segments are sealed and opened there, not
    # one datagram at a time on the node task.
    sealed_a=$(( $(worker_count alice tx) - sealed_a0 )); opened_b=$(( $(worker_count bob rx) - opened_b0 ))
    mx_note "alice's data thread sealed $sealed_a packets, bob's opened $opened_b"
    rc=0; ((sealed_a > 1000 && opened_b > 1000)) || rc=1
    check "the IPv6 transfer went through both data threads (sealed $sealed_a, opened $opened_b; over 1000 each)" "$rc"

    # The firewall is stateful: an unsolicited ping -6 from alice to bob is dropped.
    before="$(fw_counter "$rb" unsolicited)"
    rc=0; lab_exec alice ping -6 -c 2 -W 1 2001:db8:b::10 >/dev/null 2>&1 && rc=1
    after="$(fw_counter "$rb" unsolicited)"
    ((after > before)) || rc=1
    check "bob's firewall drops unsolicited IPv6 (ping -6 from alice: $((after - before)) dropped)" "$rc"
fi

P2P_TIMEOUT=10 p2p alice down --network "$net" >/dev/null 2>&1 || true
P2P_TIMEOUT=10 p2p bob down --network "$net" >/dev/null 2>&1 || true

# Row 5 (PRC with RND) needs birthday probing over IPv4 (256 sockets, thousands of probes).
# With IPv6 on both sides the ladder takes IPv6 first and spends none of that.
if ((V6)); then
    lab_build "carol:PRC" "dave:RND"
    v6_router "$(lab_router_of carol)" carol c
    v6_router "$(lab_router_of dave)" dave d
    for n in carol dave; do
        tok="$(mx_srv network invite "$net" --uses 1 "${servers[@]}" --state-dir "$MX_STATE" 2>/dev/null | tail -n 1)"
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1
    done
    p2p_spawn carol carol-up up --network "$net"
    p2p_spawn dave dave-up up --network "$net"
    rc=0; lab_wait_for "$MX_TIMEOUT" p2p_peer_is carol "$net" dave direct || rc=$?
    check "row 5 with IPv6: carol (PRC) - dave (RND) direct" "$rc"
    lab_wait_for 10 p2p_peer_is dave "$net" carol direct || true
    sleep 3  # an attempt that would probe by birthday would have sent its thousands by now
    for pair in "carol dave" "dave carol"; do
        read -r me peer <<<"$pair"
        IFS=$'\t' read -r -a F <<<"$(mx_peer_fields "$me" "$net" "$peer")"
        mx_note "$me sees $peer: detail '${F[2]}', probes ${F[3]}, endpoint ${F[7]}"
        rc=0; [[ "${F[2]}" == "direct (IPv6)" && "${F[3]}" =~ ^[0-9]+$ ]] && ((F[3] < 100)) || rc=1
        check "row 5 with IPv6: $me takes IPv6, no birthday probing (${F[3]} probes)" "$rc"
    done
    P2P_TIMEOUT=10 p2p carol down --network "$net" >/dev/null 2>&1 || true
    P2P_TIMEOUT=10 p2p dave down --network "$net" >/dev/null 2>&1 || true
fi
echo "netns-ipv6path: $PASSED passed, $FAILED failed in $((SECONDS - T0)) s"
[[ $FAILED -eq 0 ]]
