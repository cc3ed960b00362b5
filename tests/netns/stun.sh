#!/usr/bin/env bash
# tests/netns/stun.sh - root test of the STUN server and `p2pvpn netcheck` through real kernel
# NATs, with Debian's RFC 3489 `stun` client and coturn as independent implementations.
#
# Topology: "internet" ns with bridge br0, 198.51.100.0/24 (documentation range, namespaces only).
#   server  198.51.100.1 + .2   p2pvpn server, UDP 3478 and 3479 on both IPs (RFC 5780)
#   turn1   198.51.100.3        coturn with one IP (no RFC 5780)
#   turn2   198.51.100.4 + .5   coturn with two IPs (RFC 5780)
#   pub     198.51.100.11       a host without NAT
#   prc     198.51.100.20       NAT router, plain masquerade: port-restricted cone; host prch 10.0.1.2
#   seq     198.51.100.30       NAT router, symmetric with sequential ports (delta 1); host seqh 10.0.2.2
#   blk     198.51.100.40       router that drops UDP except DNS; host blkh 10.0.3.2
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if any check failed,
# 77 (after printing `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug one)
#   LAB_KEEP=1   keep the temp dir (logs, reports) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if m="$(lab_missing ip nft python3 timeout)"; then
    echo "SKIP: $m not installed"; exit 77
fi
if ! command -v stun >/dev/null 2>&1 || ! command -v turnserver >/dev/null 2>&1; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends stun-client coturn; } >/dev/null 2>&1; then
        echo "SKIP: stun-client and coturn are not installed and apt-get could not install them"
        exit 77
    fi
fi
P2P_BIN="$(p2p_bin_default)"
if [[ ! -x "$P2P_BIN" ]]; then echo "p2pvpn binary not found: $P2P_BIN" >&2; exit 2; fi

PORT=3478
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    return 0
}

# nat_router NAME WAN_IP LAN_PREFIX HOST POSTROUTING_RULES [FORWARD_EXTRA] : a router with the
# home-router filter of docs/nat-lab.md and the given NAT rules, and one host behind it.
nat_router() {
    local name="$1" wan="$2" lan="$3" host="$4" post="$5" fwd_extra="${6:-}"
    lab_add_router "$name" "$wan" "$lan.1/24"
    lab_add_host_behind "$name" "$host" "$lan.2/24" "$lan.1"
    lab_exec "$name" nft -f - <<EOF
table inet filter {
  chain input { type filter hook input priority 0; policy drop;
    ct state established,related accept; iifname { "lo", "lan0" } accept; }
  chain forward { type filter hook forward priority 0; policy drop;
    $fwd_extra
    ct state established,related accept; ct status dnat accept;
    iifname "lan0" oifname "wan0" accept; }
}
table ip nat {
  chain prerouting { type nat hook prerouting priority -100; }
  chain postrouting { type nat hook postrouting priority 100;
    $post
  }
}
EOF
}

# ---------------------------------------------------------------- setup
lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
lab_internet inet
lab_add_host server 198.51.100.1
lab_addr server eth0 198.51.100.2/24
lab_add_host turn1 198.51.100.3
lab_add_host turn2 198.51.100.4
lab_addr turn2 eth0 198.51.100.5/24
lab_add_host pub 198.51.100.11
nat_router prc 198.51.100.20 10.0.1 prch 'oifname "wan0" masquerade'
seq_map="$(python3 -c 'print(", ".join(f"{i} : {20000 + i}" for i in range(256)))')"
nat_router seq 198.51.100.30 10.0.2 seqh \
    "oifname \"wan0\" meta l4proto udp snat ip to 198.51.100.30 : numgen inc mod 256 map { $seq_map }; oifname \"wan0\" masquerade"
nat_router blk 198.51.100.40 10.0.3 blkh 'oifname "wan0" masquerade' \
    'meta l4proto udp udp dport != 53 drop;'

lab_spawn server server -- "$P2P_BIN" server --listen "198.51.100.1:$PORT" \
    --listen "198.51.100.2:$PORT" --state-dir "$LAB_TMP/server/state"
for n in turn1 turn2; do
    ips=(-L 198.51.100.3)
    [[ $n == turn2 ]] && ips=(-L 198.51.100.4 -L 198.51.100.5)
    lab_spawn "$n" "$n" -- turnserver -n -S "${ips[@]}" --listening-port "$PORT" --no-tls \
        --no-dtls --no-cli --log-file stdout --simple-log --userdb "$LAB_TMP/$n/turndb" \
        --pidfile "$LAB_TMP/$n/turnserver.pid"
done
rc=0
lab_wait_ready 30 server "RFC 5780 NAT behaviour discovery" || rc=$?
[[ $rc -eq 0 ]] || setup_fail "p2pvpn server not ready (status $rc)"
for n in turn1 turn2; do
    rc=0
    lab_wait_ready 30 "$n" "Total General servers" || rc=$?
    [[ $rc -eq 0 ]] || setup_fail "coturn $n not ready (status $rc)"
done

# netcheck HOST SERVER LABEL [ARGS...] : run netcheck --json in HOST; report in LABEL.json.
netcheck() {
    local host="$1" server="$2" label="$3"; shift 3
    lab_exec "$host" timeout 60 "$P2P_BIN" netcheck --server "$server" --json "$@" \
        >"$LAB_TMP/$label.json" 2>"$LAB_TMP/logs/$label.log"
}
# field LABEL EXPR : a value from a saved report.
field() { p2p_json_get "$LAB_TMP/$1.json" "$2"; }
# expect LABEL EXPR WANT : the report's EXPR prints WANT.
expect() {
    local got; got="$(field "$1" "$2")"
    [[ "$got" == "$3" ]] || why "$1: $2 is '$got', expected '$3'"
}

# ---------------------------------------------------------------- Debian's stun (RFC 3489)
# The stun tool prints its verdict and exits with it: bits 0x0e hold the type (0 open, 2 full
# cone, 4 restricted, 6 port-restricted, 8 symmetric, 0x0a firewall, 0x0c blocked), 0x01 means
# ports are preserved, 0x10 that the NAT does not hairpin (seen here: 0x01 open, 0x17 behind
# masquerade, 0x18 behind the sequential NAT). Checked through the text and the status agreeing.
stun_run() {
    local host="$1" label="$2" src="$3" rc=0
    lab_exec "$host" timeout 30 stun "198.51.100.1:$PORT" -v -i "$src" \
        >"$LAB_TMP/logs/$label.log" 2>&1 || rc=$?
    STUN_RC=$rc
    STUN_OUT="$(grep -E '^Primary:' "$LAB_TMP/logs/$label.log" || true)"
    note "$label: '$STUN_OUT', exit status $rc"
}
a_stun_open() {
    stun_run pub stun-pub 198.51.100.11
    [[ "$STUN_OUT" == *Open* ]] || why "expected Open"
    (( (STUN_RC & 0x0e) == 0 )) || why "exit status $STUN_RC does not say open"
}
check "a1 Debian stun client: a host without NAT is Open" a_stun_open

a_stun_prc() {
    stun_run prch stun-prc 10.0.1.2
    [[ "$STUN_OUT" == *"Independent Mapping, Port Dependent Filter"* ]] ||
        why "expected port-dependent filtering"
    (( (STUN_RC & 0x0e) == 6 )) || why "exit status $STUN_RC does not say port-restricted"
}
check "a2 Debian stun client: behind masquerade it sees a port-restricted cone" a_stun_prc

a_stun_seq() {
    stun_run seqh stun-seq 10.0.2.2
    [[ "$STUN_OUT" == *"Dependent Mapping"* && "$STUN_OUT" != *Independent* ]] ||
        why "expected dependent mapping"
    (( (STUN_RC & 0x0e) == 8 )) || why "exit status $STUN_RC does not say symmetric"
}
check "a3 Debian stun client: behind the sequential NAT it sees dependent mapping" a_stun_seq

# ---------------------------------------------------------------- netcheck vs p2pvpn server
b_open() {
    netcheck pub "198.51.100.1:$PORT" nc-pub || why "netcheck failed: $(tail -n 3 "$LAB_TMP/logs/nc-pub.log")" || return 1
    expect nc-pub 'j["behind_nat"]' false &&
        expect nc-pub 'j["public"]' 198.51.100.11:"$(field nc-pub 'j["local"].split(":")[1]')" &&
        expect nc-pub 'j["legacy_class"]' 0 &&
        expect nc-pub 'j["rfc5780"]' true &&
        expect nc-pub 'j["other_address"]' "198.51.100.2:$((PORT + 1))"
}
check "b1 netcheck on a host without NAT: open internet, RFC 5780" b_open

b_prc() {
    netcheck prch "198.51.100.1:$PORT" nc-prc || why "netcheck failed" || return 1
    expect nc-prc 'j["behind_nat"]' true &&
        expect nc-prc 'j["public"].split(":")[0]' 198.51.100.20 &&
        expect nc-prc 'j["mapping"]' endpoint_independent &&
        expect nc-prc 'j["filtering"]' address_and_port_dependent &&
        expect nc-prc 'j["allocation"]["kind"]' preserving &&
        expect nc-prc 'j["hairpin"]' false &&
        expect nc-prc 'j["legacy_class"]' 5
}
check "b2 netcheck behind masquerade: port-restricted cone (5), ports kept" b_prc

b_seq() {
    local start=$SECONDS
    netcheck seqh "198.51.100.1:$PORT" nc-seq || why "netcheck failed" || return 1
    note "netcheck behind the sequential NAT took $((SECONDS - start)) s"
    expect nc-seq 'j["mapping"]' address_and_port_dependent &&
        expect nc-seq 'j["filtering"]' address_and_port_dependent &&
        expect nc-seq 'j["allocation"]["kind"]' sequential &&
        expect nc-seq 'j["allocation"]["delta"]' 1 &&
        expect nc-seq 'j["legacy_class"]' 7 &&
        expect nc-seq 'min(j["observed_ports"]) >= 20000' true
}
check "b3 netcheck behind the sequential NAT: symmetric, delta +1 (7)" b_seq

b_blocked() {
    local rc=0
    netcheck blkh "198.51.100.1:$PORT" nc-blk || rc=$?
    # No STUN answer exits 4 (src/cli/exit_code.rs, NO_ANSWER) and still prints the report.
    [[ $rc -eq 4 ]] || why "netcheck exited $rc; no STUN answer must exit 4" || return 1
    expect nc-blk 'j["udp_blocked"]' true
}
check "b4 netcheck with UDP blocked: says so and exits 4" b_blocked

b_lifetime() {
    # RFC 5780 §4.6 through a real conntrack: idle UDP mappings die after 12 s in this router.
    lab_exec prc sysctl -qw net.netfilter.nf_conntrack_udp_timeout=12 \
        net.netfilter.nf_conntrack_udp_timeout_stream=12 || why "cannot set conntrack timeouts" || return 1
    local start=$SECONDS rc=0
    netcheck prch "198.51.100.1:$PORT" nc-life --lifetime --samples 3 || rc=$?
    lab_exec prc sysctl -qw net.netfilter.nf_conntrack_udp_timeout=30 \
        net.netfilter.nf_conntrack_udp_timeout_stream=120 || true
    [[ $rc -eq 0 ]] || why "netcheck --lifetime failed: $(tail -n 3 "$LAB_TMP/logs/nc-life.log")" || return 1
    note "netcheck --lifetime took $((SECONDS - start)) s"
    expect nc-life 'j["lifetime_secs"]' 10
}
check "b5 netcheck --lifetime: a 12 s conntrack timeout measures as 10 s" b_lifetime

# ---------------------------------------------------------------- netcheck vs coturn
c_turn_single() {
    netcheck prch "198.51.100.3:$PORT" nc-turn1 || why "netcheck failed" || return 1
    expect nc-turn1 'j["public"].split(":")[0]' 198.51.100.20 &&
        expect nc-turn1 'j["rfc5780"]' false &&
        expect nc-turn1 'j["mapping"]' unknown &&
        expect nc-turn1 'j["filtering"]' unknown &&
        expect nc-turn1 'any("OTHER-ADDRESS" in n for n in j["notes"])' true &&
        expect nc-turn1 'j["allocation"]["kind"]' preserving
}
check "c1 netcheck against single-IP coturn: public address, notes the RFC 5780 limits" c_turn_single

c_turn_double() {
    netcheck prch "198.51.100.4:$PORT" nc-turn2 || why "netcheck failed" || return 1
    expect nc-turn2 'j["rfc5780"]' true &&
        expect nc-turn2 'j["mapping"]' endpoint_independent &&
        expect nc-turn2 'j["filtering"]' address_and_port_dependent &&
        expect nc-turn2 'j["legacy_class"]' 5
}
check "c2 netcheck against two-IP coturn: RFC 5780 works, same verdict as ours" c_turn_double

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
    for f in "$LAB_TMP"/*.json; do [[ -e "$f" ]] && { echo "# $(basename "$f"):"; sed 's/^/#   /' "$f"; }; done
fi
echo "netns-stun: $PASSED passed, $FAILED failed"
((FAILED == 0))
