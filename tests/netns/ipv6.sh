#!/usr/bin/env bash
# tests/netns/ipv6.sh - root end-to-end test of the IPv6 overlay in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1 (TCP+UDP 7400), alice
# 198.51.100.11, bob 198.51.100.12. Network "six" 10.78.0.0/24 with the ULA /64 the server
# picks at `network create` (RFC 4193). IPv6 is enabled inside the namespaces; the underlay
# stays IPv4.
#
# Checks: both addresses in status (JSON and table) and in `network members`; the TUN device
# holds the IPv6 address and the /64 route; `ping -6` both ways; a 1 MiB TCP transfer over
# IPv6 arrives intact; a spoofed IPv6 inner source is dropped and counted.
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if any check
# failed, 77 (after `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug one)
#   LAB_KEEP=1   keep the temp dir (logs, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

lab_preflight ip python3 ping timeout sysctl
if [[ ! -d /proc/sys/net/ipv6 ]]; then echo "SKIP: the kernel has no IPv6"; exit 77; fi

NET=six
IFACE=p2p-six
CIDR=10.78.0.0/24
SERVER_IP=198.51.100.1
PORT=7400
TCP_PORT=5601

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_on_exit() {
    local rc="$1" n
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    for n in alice bob carol; do
        if [[ -e "$LAB_TMP/pids/$n-up" ]] && lab_alive "$n-up"; then
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
lab_add_host carol 198.51.100.13
for n in alice bob; do
    lab_exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
done
# Carol's administrator turned IPv6 off: her node must leave it off and keep IPv4 working.
lab_exec carol sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

# ---------------------------------------------------------------- setup
lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -ne 2 ]] || setup_fail "server exited"
[[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s"
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE" >"$LAB_TMP/logs/create.log" 2>&1 ||
    setup_fail "network create: $(cat "$LAB_TMP/logs/create.log")"
note "$(cat "$LAB_TMP/logs/create.log")"
for n in alice bob carol; do
    tok="$(srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" ||
        setup_fail "invite for $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
    note "$(head -n 1 "$LAB_TMP/logs/$n-join.log")"
done
p2p_spawn alice alice-up up --network "$NET"
p2p_spawn bob bob-up up --network "$NET"
p2p_spawn carol carol-up up --network "$NET"
lab_wait_for 30 p2p_peer_is_direct alice "$NET" bob || note "alice->bob not direct after 30 s"
lab_wait_for 30 p2p_peer_is_direct bob "$NET" alice || note "bob->alice not direct after 30 s"
# The node's own address is "ADDR/64"; a peer's is a bare address.
ALICE6="$(p2p_field alice "$NET" '(j.get("ipv6") or "").split("/")[0]' 2>/dev/null || true)"
BOB6="$(p2p_field bob "$NET" '(j.get("ipv6") or "").split("/")[0]' 2>/dev/null || true)"
PREFIX="$(p2p_field alice "$NET" 'j.get("ipv6") or ""' 2>/dev/null || true)"
note "alice $ALICE6, bob $BOB6 ($PREFIX)"
[[ -n "$ALICE6" && -n "$BOB6" ]] || setup_fail "no ipv6 in status --json"

# ---------------------------------------------------------------- a: addresses everywhere
a_status() {
    local n="$1" me="$2" peer="$3" peer6="$4" seen table
    [[ "$me" == fd* ]] || { why "$n: $me is not a ULA (fd00::/8)"; return 1; }
    seen="$(p2p_field "$n" "$NET" "next((p.get('ipv6') for p in j['peers'] if p['name'] == '$peer'), None)")"
    [[ "$seen" == "$peer6" ]] || { why "$n sees $peer at '$seen', $peer says $peer6"; return 1; }
    table="$(p2p "$n" status --network "$NET" 2>&1)" || { why "$n status failed"; return 1; }
    grep -Eq "address 10\.78\.0\.[0-9]+/24 $me/64 " <<<"$table" || { why "$n table header: $(head -n 1 <<<"$table")"; return 1; }
    grep -q "ipv6 $peer6;" <<<"$table" || { why "$n table lacks '$peer ipv6 $peer6': $(tr '\n' '|' <<<"$table")"; return 1; }
}
check "a1 alice's status (JSON and table) shows her IPv4 and IPv6 addresses and bob's" a_status alice "$ALICE6" bob "$BOB6"
check "a2 bob's status (JSON and table) shows his IPv4 and IPv6 addresses and alice's" a_status bob "$BOB6" alice "$ALICE6"
a_members() {
    local out
    out="$(srv network members "$NET" --state-dir "$SERVER_STATE" 2>&1)" || { why "members failed: $out"; return 1; }
    if ! grep -Eq "^alice +10\.78\.0\.[0-9]+ +$ALICE6 " <<<"$out" ||
        ! grep -Eq "^bob +10\.78\.0\.[0-9]+ +$BOB6 " <<<"$out"; then
        why "network members: $(tr '\n' '|' <<<"$out")"; return 1
    fi
}
check "a3 network members lists both addresses of alice and bob" a_members
a_iface() {
    local n="$1" me="$2" addrs route
    addrs="$(lab_exec "$n" ip -6 -o addr show dev "$IFACE" scope global)"
    grep -q "inet6 $me/64 " <<<"$addrs" || { why "$n $IFACE: '$addrs'"; return 1; }
    if grep -q tentative <<<"$addrs"; then why "$n: address still tentative: $addrs"; return 1; fi
    route="$(lab_exec "$n" ip -6 route show "$PREFIX_NET")"
    grep -q "dev $IFACE" <<<"$route" || { why "$n: route for $PREFIX_NET: '$route'"; return 1; }
}
PREFIX_NET="$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$PREFIX" 2>/dev/null || echo "?")"
check "a4 alice's $IFACE holds her IPv6 address and the $PREFIX_NET route" a_iface alice "$ALICE6"
check "a5 bob's $IFACE holds his IPv6 address and the $PREFIX_NET route" a_iface bob "$BOB6"

# ---------------------------------------------------------------- b: ping -6
ping6_3() {  # ping6_3 FROM TO : 3 packets, each must answer
    local out
    out="$(lab_exec "$1" ping -6 -c 3 -W 2 "$2" 2>&1)" || {
        why "ping -6 $1 -> $2 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        why "drops: alice $(p2p_field alice "$NET" 'j["drops"]' 2>&1 | tr -d ' '), bob $(p2p_field bob "$NET" 'j["drops"]' 2>&1 | tr -d ' ')"
        return 1
    }
    grep -q '3 received' <<<"$out" || { why "ping -6 $1 -> $2: $(grep 'transmitted' <<<"$out")"; return 1; }
}
check "b1 ping -6 alice -> bob over the overlay (3/3)" ping6_3 alice "$BOB6"
check "b2 ping -6 bob -> alice over the overlay (3/3)" ping6_3 bob "$ALICE6"

# ---------------------------------------------------------------- c: TCP over IPv6
c_tcp() {
    local size=1048576 got sent
    cat >"$LAB_TMP/tcp-recv.py" <<'PY'
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
print("LISTENING", flush=True)
c, peer = s.accept()
c.settimeout(20)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
print("GOT %d %s from %s" % (n, h.hexdigest(), peer[0]), flush=True)
PY
    lab_spawn bob tcp-recv -- timeout 30 python3 -u "$LAB_TMP/tcp-recv.py" "$BOB6" "$TCP_PORT"
    lab_wait_ready 10 tcp-recv '^LISTENING' || { why "receiver did not listen on [$BOB6]:$TCP_PORT"; return 1; }
    sent="$(lab_exec alice timeout 30 python3 - "$BOB6" "$TCP_PORT" "$size" <<'PY'
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(data)
s.close()
print("%d %s" % (len(data), hashlib.sha256(data).hexdigest()))
PY
)" || { why "sender failed"; return 1; }
    lab_wait_log 20 tcp-recv '^GOT ' || { why "receiver got no complete stream"; return 1; }
    got="$(grep '^GOT ' "$(lab_logfile tcp-recv)")"
    note "sent $sent; bob: $got"
    [[ "$got" == "GOT $sent from $ALICE6" ]] || { why "mismatch: sent '$sent', $got"; return 1; }
}
check "c1 1 MiB over TCP/IPv6 alice -> bob arrives intact (sha256) from alice's IPv6 address" c_tcp

# With our engine's data thread (the Linux default), IPv6 overlay packets are sealed there, not
# on the node task: alice's `workers.tx` counted the transfer's ~750 segments.
sealed() { p2p_field alice "$NET" "int((j.get('workers') or {}).get('tx', {}).get('crypto_packets', 0))"; }
c_worker() {
    local got
    got="$(sealed)" || { why "alice status"; return 1; }
    note "alice's data thread sealed $got packets"
    ((got > 500)) || { why "alice's workers.tx sealed $got packets: IPv6 went through the node task"; return 1; }
}
if [[ "${LAB_WIREGUARD:-}" == boringtun ]]; then
    note "c2 skipped: LAB_WIREGUARD=boringtun has no data thread"
else
    check "c2 alice's data thread sealed the IPv6 transfer (workers.tx over 500 packets)" c_worker
fi

# ---------------------------------------------------------------- d: the source rule holds for IPv6
spoofed() { p2p_field "$1" "$NET" "int((j.get('drops') or {}).get('spoofed_source', 0))"; }
spoofed_grew() { local now; now="$(spoofed "$1")" || return 1; (( now > $2 )); }
d_spoof() {
    local spoof="${BOB6%:*}:beef" before after rc=0
    before="$(spoofed bob)" || { why "bob status"; return 1; }
    lab_exec alice ip -6 addr add "$spoof/128" dev "$IFACE" nodad || { why "cannot add $spoof to alice's $IFACE"; return 1; }
    lab_exec alice ping -6 -c 2 -W 2 -I "$spoof" "$BOB6" >"$LAB_TMP/logs/ping6-spoof.log" 2>&1 || rc=$?
    lab_exec alice ip -6 addr del "$spoof/128" dev "$IFACE" || true
    [[ $rc -ne 0 ]] || { why "bob answered a ping from spoofed $spoof"; return 1; }
    lab_wait_for 5 spoofed_grew bob "$before" || true
    after="$(spoofed bob 2>/dev/null || echo "$before")"
    note "bob drops.spoofed_source: $before -> $after"
    (( after > before )) || { why "bob's drops.spoofed_source did not increase"; return 1; }
}
check "d1 a spoofed inner IPv6 source gets no reply and bob counts spoofed_source" d_spoof
check "d2 ping -6 alice -> bob still works after" ping6_3 alice "$BOB6"

# ---------------------------------------------------------------- e: a host without IPv6
e_no_ipv6() {
    local addrs out
    lab_wait_ready 20 carol-up 'registered as carol' || { why "carol did not register"; return 1; }
    grep -q 'IPv6 is disabled on this host' "$(lab_logfile carol-up)" ||
        { why "carol's log does not say why she has no IPv6: $(tail -n 5 "$(lab_logfile carol-up)" | tr '\n' '|')"; return 1; }
    if grep -q 'registered as carol with .* and fd' "$(lab_logfile carol-up)"; then
        why "carol's log claims an IPv6 address: $(grep 'registered as' "$(lab_logfile carol-up)")"; return 1
    fi
    addrs="$(lab_exec carol ip -6 -o addr show dev "$IFACE" scope global 2>&1)"
    [[ -z "$addrs" ]] || { why "carol's $IFACE has IPv6 addresses: $addrs"; return 1; }
    out="$(lab_exec alice ping -c 3 -W 2 10.78.0.3 2>&1)" || { why "IPv4 ping alice -> carol: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
}
check "e1 with IPv6 disabled on carol's host her node says so, adds no IPv6 address, and IPv4 to her works" e_no_ipv6

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-ipv6: $PASSED passed, $FAILED failed"
((FAILED == 0))
