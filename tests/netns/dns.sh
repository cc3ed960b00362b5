#!/usr/bin/env bash
# tests/netns/dns.sh - root test of the node's DNS responder in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1, alice .11, bob .12. Network "demo"
# 10.77.0.0/24, so alice answers for demo.p2p; bob's config sets dns_suffix = "lab.example".
# Alice's namespace gets /etc/netns/NS/resolv.conf with "nameserver ALICE_VIP" (bind-mounted by
# `ip netns exec`): test scaffolding standing in for the line the node logs, since these
# namespaces have no systemd-resolved. The node itself never writes a resolv.conf.
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if any check failed,
# 77 (after printing `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug one)
#   LAB_KEEP=1   keep the temp dir (logs, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

lab_preflight ip python3 ping getent timeout sha256sum ss
if [[ ! -f /etc/resolv.conf ]]; then echo "SKIP: no /etc/resolv.conf for ip netns exec to cover"; exit 77; fi

NET=demo
CIDR=10.77.0.0/24
SERVER_IP=198.51.100.1
PORT=7400
DNSQ="$ROOT/tests/netns/dns.py"

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

NETNS_ETC=""
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    local n
    for n in alice bob; do
        if [[ -e "$LAB_TMP/pids/$n-up" ]] && lab_alive "$n-up"; then
            P2P_TIMEOUT=5 p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
        fi
    done
    if [[ -n "$NETNS_ETC" ]]; then
        rm -rf -- "$NETNS_ETC"
        rmdir /etc/netns 2>/dev/null || true
    fi
    return 0
}

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
HOST_RESOLV_SHA="$(sha256sum /etc/resolv.conf | cut -d' ' -f1)"
lab_internet inet
lab_add_host server "$SERVER_IP"
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }
invite() { srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1; }

lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s"
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE" >/dev/null || setup_fail "network create"
for n in alice bob; do
    tok="$(invite)" || setup_fail "invite for $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
done
echo 'dns_suffix = "lab.example"' >>"$LAB_TMP/bob/etc/$NET.toml"
p2p_spawn alice alice-up up --network "$NET"
p2p_spawn bob bob-up up --network "$NET"
lab_wait_ready 30 alice-up 'registered as' || setup_fail "alice did not register"
lab_wait_ready 30 bob-up 'registered as' || setup_fail "bob did not register"
ALICE_VIP="$(p2p_field alice "$NET" 'j["virtual_ip"]' 2>/dev/null || true)"
BOB_VIP="$(p2p_field bob "$NET" 'j["virtual_ip"]' 2>/dev/null || true)"
note "alice $ALICE_VIP, bob $BOB_VIP"
[[ -n "$ALICE_VIP" && -n "$BOB_VIP" ]] || setup_fail "no virtual_ip in status --json"
lab_wait_for 30 p2p_has_peer alice "$NET" bob || setup_fail "alice does not list bob"
lab_wait_for 30 p2p_has_peer bob "$NET" alice || setup_fail "bob does not list alice"

NETNS_ETC="/etc/netns/$(lab_ns alice)"
mkdir -p "$NETNS_ETC"
printf 'nameserver %s\noptions timeout:2 attempts:1\n' "$ALICE_VIP" >"$NETNS_ETC/resolv.conf"

dnsq() {  # dnsq NODE SERVER NAME [TYPE] : one query from NODE's namespace
    lab_exec "$1" timeout 10 python3 "$DNSQ" query "$2" "$3" "${4:-A}"
}
expect() {  # expect NODE SERVER NAME TYPE WANT : the reply line equals WANT
    local got; got="$(dnsq "$1" "$2" "$3" "$4" 2>&1)" || true
    [[ "$got" == "$5" ]] || { why "$1 asks $2 for $3 $4: got '$got', want '$5'"; return 1; }
}

# ---------------------------------------------------------------- answers
check "1 alice's responder: bob.demo.p2p A is bob's overlay address, authoritative, no recursion" \
    expect alice "$ALICE_VIP" bob.demo.p2p A "rcode=NOERROR aa=1 ra=0 answers=$BOB_VIP"
check "2 alice's own name resolves, in any case" \
    expect alice "$ALICE_VIP" ALICE.Demo.P2P A "rcode=NOERROR aa=1 ra=0 answers=$ALICE_VIP"
check "3 an unknown member is NXDOMAIN" \
    expect alice "$ALICE_VIP" carol.demo.p2p A "rcode=NXDOMAIN aa=1 ra=0 answers="
check "4 a name outside the suffix is REFUSED (no recursion)" \
    expect alice "$ALICE_VIP" example.com A "rcode=REFUSED aa=0 ra=0 answers="
# bob's overlay IPv6 address (the network's ULA /64), as his status shows it.
BOB6="$(p2p_field bob "$NET" '(j.get("ipv6") or "").split("/")[0]' 2>/dev/null || true)"
check "5 AAAA for bob is his overlay IPv6 address" \
    expect alice "$ALICE_VIP" bob.demo.p2p AAAA "rcode=NOERROR aa=1 ra=0 answers=$BOB6"
check "5b AAAA for bob is not empty (the server gave him an IPv6 address)" test -n "$BOB6"
bob_suffix() {
    expect bob "$BOB_VIP" alice.lab.example A "rcode=NOERROR aa=1 ra=0 answers=$ALICE_VIP" &&
        expect bob "$BOB_VIP" alice.demo.p2p A "rcode=REFUSED aa=0 ra=0 answers="
}
check "6 bob's configured dns_suffix: alice.lab.example resolves, demo.p2p is refused there" bob_suffix
check "7 bob asks alice's responder through the tunnel" \
    expect bob "$ALICE_VIP" bob.demo.p2p A "rcode=NOERROR aa=1 ra=0 answers=$BOB_VIP"

# ---------------------------------------------------------------- the system resolver
getent_bob() {  # getent_bob DATABASE WANT
    local out; out="$(lab_exec alice timeout 10 getent "$1" bob.demo.p2p 2>&1)" || { why "getent $1 bob.demo.p2p: '$out'"; return 1; }
    [[ "$(awk 'NR == 1 {print $1}' <<<"$out")" == "$2" ]] || { why "getent $1 bob.demo.p2p: '$out', want $2"; return 1; }
}
check "8 getent ahostsv4 bob.demo.p2p from alice gives bob's IPv4 address" getent_bob ahostsv4 "$BOB_VIP"
check "8b getent ahostsv6 bob.demo.p2p from alice gives bob's IPv6 address" getent_bob ahostsv6 "$BOB6"
ping_bob() {
    local out; out="$(lab_exec alice timeout 15 ping -4 -c 1 -W 3 bob.demo.p2p 2>&1)" || { why "ping bob.demo.p2p: $(tr '\n' ' ' <<<"$out")"; return 1; }
    grep -q "($BOB_VIP)" <<<"$out" || { why "ping did not resolve to $BOB_VIP: $(head -n 1 <<<"$out")"; return 1; }
}
check "9 ping -4 -c1 bob.demo.p2p from alice works" ping_bob
outside_fails() {
    if lab_exec alice timeout 10 getent hosts example.com >/dev/null 2>&1; then
        why "example.com resolved through alice's responder"; return 1
    fi
}
check "10 a name outside the suffix does not resolve through the responder" outside_fails
logged_line() {
    grep -q "nameserver $ALICE_VIP" "$(lab_logfile alice-up)" || { why "alice's log does not give the nameserver line"; return 1; }
}
check "11 without systemd-resolved, alice's log gives the one line to add" logged_line

# ---------------------------------------------------------------- garbage
malformed() { p2p_field alice "$NET" "int((j.get('dns') or {}).get('malformed', 0))"; }
garbage() {
    local before after replies
    before="$(malformed)" || { why "no dns in alice's status"; return 1; }
    replies="$(lab_exec alice timeout 20 python3 "$DNSQ" garbage "$ALICE_VIP" 30)" || { why "garbage sender failed"; return 1; }
    after="$(malformed)" || { why "no dns in alice's status"; return 1; }
    note "30 garbage datagrams: $replies replies, malformed $before -> $after"
    # A random datagram may happen to parse as a query; the rest must be dropped and counted.
    (( after - before + replies >= 30 )) || { why "only $((after - before)) counted and $replies answered of 30"; return 1; }
    (( replies <= 3 )) || { why "$replies replies to random bytes"; return 1; }
    lab_alive alice-up || { why "alice's node exited"; return 1; }
}
check "12 random datagrams to port 53 are dropped and counted; the node keeps running" garbage
check "13 alice still answers after the garbage" \
    expect alice "$ALICE_VIP" bob.demo.p2p A "rcode=NOERROR aa=1 ra=0 answers=$BOB_VIP"

status_line() {
    local out; out="$(P2P_TIMEOUT=10 p2p alice status --network "$NET" 2>&1)" || { why "status failed: $out"; return 1; }
    grep -Eq "^dns +names under demo\.p2p on $ALICE_VIP:53 \([0-9]+ answered, .*[0-9]+ malformed\)" <<<"$out" ||
        { why "no dns line with counters in status: $(grep -i dns <<<"$out" || echo none)"; return 1; }
}
check "14 status shows the responder, its suffix and its counters" status_line

# ---------------------------------------------------------------- down
down_clean() {
    P2P_TIMEOUT=15 p2p alice down --network "$NET" >"$LAB_TMP/logs/alice-down.log" 2>&1 || { why "down failed: $(cat "$LAB_TMP/logs/alice-down.log")"; return 1; }
    lab_wait_for 10 lab_exited alice-up || { why "alice's node still runs after down"; return 1; }
    if lab_exec alice ip link show dev p2p-demo >/dev/null 2>&1; then why "p2p-demo left behind"; return 1; fi
    local sock; sock="$(lab_exec alice ss -Hlun 'sport = :53' 2>/dev/null || true)"
    [[ -z "$sock" ]] || { why "something still listens on UDP 53: $sock"; return 1; }
    [[ "$(sha256sum /etc/resolv.conf | cut -d' ' -f1)" == "$HOST_RESOLV_SHA" ]] || { why "/etc/resolv.conf changed"; return 1; }
    grep -qx "nameserver $ALICE_VIP" "$NETNS_ETC/resolv.conf" || { why "the lab's own resolv.conf was touched"; return 1; }
    [[ "$(find "$NETNS_ETC" -mindepth 1 | wc -l)" -eq 1 ]] || { why "files appeared in $NETNS_ETC"; return 1; }
}
check "15 down: no listener on port 53, no interface, /etc/resolv.conf untouched" down_clean

if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-dns: $PASSED passed, $FAILED failed"
((FAILED == 0))
