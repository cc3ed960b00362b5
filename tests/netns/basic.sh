#!/usr/bin/env bash
# tests/netns/basic.sh - root end-to-end test of p2pvpn in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1 (TCP+UDP 7400),
# alice 198.51.100.11, bob 198.51.100.12, mallory 198.51.100.66 (garbage sender),
# carol 198.51.100.13 (unprivileged `up`). Network "demo" 10.77.0.0/24.
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if
# any check failed, 77 (after printing `SKIP: reason`) when it cannot run here
# (not root, or ip/tcpdump/python3/ping missing), 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs
#                sets the debug binary)
#   LAB_KEEP=1   keep the temp dir (logs, pcaps, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

lab_preflight ip tcpdump python3 ping timeout setpriv
P2P_BIN="$(p2p_bin_default)"

NET=demo
CIDR=10.77.0.0/24
SERVER_IP=198.51.100.1
PORT=7400
ALICE_IP=198.51.100.11
BOB_IP=198.51.100.12
PATTERN=deadbeefcafe

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_on_exit() {
    local rc="$1"
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    local n
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
lab_add_host alice "$ALICE_IP"
lab_add_host bob "$BOB_IP"
lab_add_host mallory 198.51.100.66
lab_add_host carol 198.51.100.13

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }
invite() { srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1; }

setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

# ---------------------------------------------------------------- setup
lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -ne 2 ]] || setup_fail "server exited"
[[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s"
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE" >/dev/null ||
    setup_fail "network create"
for n in alice bob; do
    tok="$(invite)" || setup_fail "invite for $n"
    [[ -n "$tok" ]] || setup_fail "empty invite for $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
    p2p_wireguard "$n" "$NET"
done
# Alice also serves metrics on her namespace's loopback (b4).
p2p_spawn alice alice-up up --network "$NET" --metrics 127.0.0.1:9101
p2p_spawn bob bob-up up --network "$NET"
lab_wait_for 30 p2p_peer_is_direct alice "$NET" bob || note "alice->bob not direct after 30 s: '$(p2p_peer_path alice "$NET" bob 2>/dev/null || true)'"
lab_wait_for 30 p2p_peer_is_direct bob "$NET" alice || note "bob->alice not direct after 30 s: '$(p2p_peer_path bob "$NET" alice 2>/dev/null || true)'"
ALICE_VIP="$(p2p_field alice "$NET" 'j["virtual_ip"]' 2>/dev/null || true)"
BOB_VIP="$(p2p_field bob "$NET" 'j["virtual_ip"]' 2>/dev/null || true)"
note "alice $ALICE_VIP, bob $BOB_VIP"
[[ -n "$ALICE_VIP" && -n "$BOB_VIP" ]] || setup_fail "no virtual_ip in status --json"

# ---------------------------------------------------------------- a
iface_ok() {
    local n="$1" vip="$2" addrs route
    lab_wait_for 10 lab_exec "$n" ip link show dev p2p-demo || { why "$n: no interface p2p-demo"; return 1; }
    addrs="$(lab_exec "$n" ip -4 -o addr show dev p2p-demo | awk '{print $4}')"
    grep -Eq '^10\.77\.0\.[0-9]+/' <<<"$addrs" || { why "$n: p2p-demo addresses: '${addrs//$'\n'/ }'"; return 1; }
    grep -q "^$vip/" <<<"$addrs" || { why "$n: status virtual_ip $vip not on p2p-demo ('${addrs//$'\n'/ }')"; return 1; }
    route="$(lab_exec "$n" ip -4 route show 10.77.0.0/24)"
    grep -q 'dev p2p-demo' <<<"$route" || { why "$n: route for 10.77.0.0/24: '$route'"; return 1; }
}
check "a1 alice has a 10.77.0.x address and the 10.77.0.0/24 route on p2p-demo" iface_ok alice "$ALICE_VIP"
check "a2 bob has a 10.77.0.x address and the 10.77.0.0/24 route on p2p-demo" iface_ok bob "$BOB_VIP"

# ---------------------------------------------------------------- b
ping3() {  # ping3 FROM TO : 3 packets, each must answer
    local out
    out="$(lab_exec "$1" ping -c 3 -W 2 "$2" 2>&1)" || { why "ping $1 -> $2 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q '3 received' <<<"$out" || { why "ping $1 -> $2: $(grep 'transmitted' <<<"$out")"; return 1; }
}
check "b1 ping alice -> bob over the VPN (3/3)" ping3 alice "$BOB_VIP"
check "b2 ping bob -> alice over the VPN (3/3)" ping3 bob "$ALICE_VIP"
b_path_ping() {  # the node's own pings name the path of every reply
    local out
    out="$(p2p alice ping bob --count 3 --interval 0.2 2>&1)" || { why "p2pvpn ping failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    note "$(head -n 1 <<<"$out")"
    [[ "$(grep -c "^reply from bob ($BOB_VIP): seq=[0-9]* time=[0-9.]* ms path=direct" <<<"$out")" -eq 3 ]] \
        || { why "expected 3 direct replies: $(tr '\n' ' ' <<<"$out")"; return 1; }
    grep -q '3 sent, 3 received, 0% loss' <<<"$out" || { why "summary: $(tr '\n' ' ' <<<"$out")"; return 1; }
}
check "b3 p2pvpn ping alice -> bob: 3 replies, each naming the direct path" b_path_ping
b_metrics() {  # Prometheus text on alice's loopback: bob direct, traffic counted
    local out
    out="$(lab_exec alice python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9101/metrics", timeout=5).read().decode())' 2>&1)" \
        || { why "scrape failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q '^p2pvpn_peers{network="demo",path="direct"} 1$' <<<"$out" || { why "no direct peer: $(grep '^p2pvpn_peers' <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q "^p2pvpn_peer_rx_bytes_total{network=\"demo\",peer=\"bob\",virtual_ip=\"$BOB_VIP\"} [1-9]" <<<"$out" \
        || { why "no rx bytes for bob: $(grep rx_bytes <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q '^p2pvpn_drops_total{network="demo",reason="malformed"} ' <<<"$out" || { why "no drop counters"; return 1; }
}
check "b4 alice's --metrics 127.0.0.1:9101 serves peers by path, bytes per peer and drops" b_metrics

# ---------------------------------------------------------------- c
PCAP="$LAB_TMP/alice-underlay.pcap"
TUNPCAP="$LAB_TMP/alice-tunnel.pcap"
count_pcap() {  # count_pcap FILE FILTER... : number of packets matching
    tcpdump -nn -r "$1" "${@:2}" 2>/dev/null | wc -l
}
pattern_count() {  # pattern_count FILE : occurrences of the raw pattern bytes
    python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(bytes.fromhex(sys.argv[2])))' "$1" "$PATTERN"
}
underlay_capture() {
    lab_spawn alice tcpdump-underlay -- timeout 30 tcpdump -i eth0 -nn -s 0 -U -w "$PCAP"
    local pid_u="$LAB_LAST_PID"
    lab_spawn alice tcpdump-tunnel -- timeout 30 tcpdump -i p2p-demo -nn -s 0 -U -w "$TUNPCAP"
    local pid_t="$LAB_LAST_PID"
    if ! lab_wait_log 10 tcpdump-underlay 'listening on' || ! lab_wait_log 10 tcpdump-tunnel 'listening on'; then
        why "tcpdump did not start"; return 1
    fi
    local rc=0
    lab_exec alice ping -c 5 -i 0.2 -W 2 -p "$PATTERN" "$BOB_VIP" >"$LAB_TMP/logs/ping-pattern.log" 2>&1 || rc=$?
    sleep 1
    kill -INT "$pid_u" "$pid_t" 2>/dev/null || true
    lab_wait_for 5 lab_exited tcpdump-underlay; lab_wait_for 5 lab_exited tcpdump-tunnel
    [[ $rc -eq 0 ]] || { why "ping -p $PATTERN alice -> bob failed"; return 1; }
    [[ -s "$PCAP" ]] || { why "empty underlay pcap"; return 1; }
}
c_icmp() {
    local n; n="$(count_pcap "$PCAP" "icmp and host $ALICE_IP and host $BOB_IP")"
    [[ "$n" -eq 0 ]] || { why "$n ICMP packets between the hosts on the underlay"; tcpdump -nn -r "$PCAP" icmp 2>/dev/null | head -n 5 | sed 's/^/#     /'; return 1; }
}
c_udp_only() {
    local all udp
    all="$(count_pcap "$PCAP" "not arp and host $ALICE_IP and host $BOB_IP")"
    udp="$(count_pcap "$PCAP" "udp and host $ALICE_IP and host $BOB_IP")"
    note "underlay alice<->bob: $all packets, $udp UDP"
    [[ "$udp" -ge 10 ]] || { why "expected >= 10 UDP packets alice<->bob (5 pings + 5 replies), saw $udp"; return 1; }
    [[ "$all" -eq "$udp" ]] || { why "$((all - udp)) non-UDP packets alice<->bob"; tcpdump -nn -r "$PCAP" "not arp and not udp and host $ALICE_IP and host $BOB_IP" 2>/dev/null | head -n 5 | sed 's/^/#     /'; return 1; }
}
c_only_expected() {
    # everything on alice's underlay is UDP, ARP, IPv6 link housekeeping (ICMPv6
    # router/neighbour solicitations the kernel sends), or TCP with the server's
    # control port: no ICMP and no other TCP
    local f="not arp and not udp and not icmp6 and not (tcp and host $SERVER_IP and port $PORT)" other
    other="$(count_pcap "$PCAP" "$f")"
    [[ "$other" -eq 0 ]] || { why "$other unexpected packets"; tcpdump -nn -r "$PCAP" "$f" 2>/dev/null | head -n 5 | sed 's/^/#     /'; return 1; }
}
c_control() {
    local n; n="$(pattern_count "$TUNPCAP")"
    [[ "$n" -ge 5 ]] || { why "pattern seen $n times on p2p-demo itself (control: the ping payload should be there)"; return 1; }
}
c_pattern() {
    local n hex
    n="$(pattern_count "$PCAP")"
    # second opinion with xxd, as the spec asks (hex dump joined into one line)
    hex="$(xxd -p "$PCAP" | tr -d '\n' | grep -o "$PATTERN" | wc -l || true)"
    [[ "$n" -eq 0 && "$hex" -eq 0 ]] || { why "pattern $PATTERN found in the underlay pcap ($n raw, $hex hex)"; return 1; }
}
c_tcp_pattern() {
    # the TCP control channel (to the server port) must not carry the pattern either
    local tcpfile="$LAB_TMP/alice-tcp.pcap"
    tcpdump -nn -r "$PCAP" -w "$tcpfile" "tcp and host $SERVER_IP and port $PORT" 2>/dev/null
    local n; n="$(pattern_count "$tcpfile")"
    [[ "$n" -eq 0 ]] || { why "pattern in TCP to the server"; return 1; }
}
if underlay_capture; then
    check "c1 no ICMP between alice and bob on the underlay" c_icmp
    check "c2 alice<->bob underlay traffic is UDP only" c_udp_only
    check "c3 alice's underlay carries only UDP, ARP, ICMPv6 link housekeeping and TCP to the server port" c_only_expected
    check "c4 control: pattern visible inside the tunnel interface" c_control
    check "c5 ping pattern $PATTERN absent from the raw underlay pcap" c_pattern
    check "c6 TCP control channel does not contain the pattern" c_tcp_pattern
else
    check "c0 underlay capture during ping -p $PATTERN" false
fi

# ---------------------------------------------------------------- d
BOB_PORT="$(p2p_field bob "$NET" 'j["listen_port"]' 2>/dev/null || true)"
send_garbage() {  # send_garbage HOST PORT : 20 random datagrams of 1..1400 bytes, bounded
    lab_exec mallory timeout 10 python3 - "$1" "$2" <<'PY'
import os, random, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(os.urandom(random.randint(1, 1400)), (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.01)
PY
}
drops_grew() {  # drops_grew NODE BEFORE N : total drops >= BEFORE + N
    local now; now="$(p2p_drops_total "$1" "$NET")" || return 1
    (( now - $2 >= $3 ))
}
spoofed() { p2p_field "$1" "$NET" "int((j.get('drops') or {}).get('spoofed_source', 0))"; }
spoofed_grew() { local now; now="$(spoofed "$1")" || return 1; (( now > $2 )); }
d_bob_drops() {
    [[ "$BOB_PORT" =~ ^[0-9]+$ ]] || { why "bob's listen_port: '$BOB_PORT'"; return 1; }
    local before after
    before="$(p2p_drops_total bob "$NET")" || { why "no drops in bob's status"; return 1; }
    send_garbage "$BOB_IP" "$BOB_PORT" || { why "sending to bob failed"; return 1; }
    send_garbage "$SERVER_IP" "$PORT" || { why "sending to the server failed"; return 1; }
    lab_wait_for 5 drops_grew bob "$before" 20 || true
    after="$(p2p_drops_total bob "$NET" 2>/dev/null || echo "$before")"
    note "bob drops: $before -> $after; $(p2p_field bob "$NET" 'j["drops"]' 2>/dev/null || true)"
    (( after - before >= 20 )) || { why "bob counted $((after - before)) drops for 20 garbage datagrams"; return 1; }
}
d_alive() {
    lab_alive bob-up || { why "bob's p2pvpn up exited"; return 1; }
    lab_alive server || { why "server exited"; return 1; }
    lab_alive alice-up || { why "alice's p2pvpn up exited"; return 1; }
}
check "d1 bob counts >= 20 drops for 20 garbage datagrams (+20 sent to the server)" d_bob_drops
check "d2 bob, alice and the server still run after garbage" d_alive
check "d3 ping alice -> bob still works after garbage" ping3 alice "$BOB_VIP"
check "d4 ping bob -> alice still works after garbage" ping3 bob "$ALICE_VIP"

# ---------------------------------------------------------------- t
# A node whose control plane has been quiet for 5 s gives back the pages it ran only to start
# (src/io/settle.rs, src/os/trim.rs): its RSS falls well below its peak, and it keeps working.
t_trimmed() {  # t_trimmed LABEL : VmRSS at least 1 MiB below VmHWM within 20 s
    local pid rss hwm i
    pid="$(lab_pid "$1")"
    for ((i = 0; i < 40; i++)); do
        rss="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        hwm="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        [[ -n "$rss" && -n "$hwm" ]] || { why "$1 is gone"; return 1; }
        if ((rss + 1024 <= hwm)); then note "$1: VmRSS $rss KiB, VmHWM $hwm KiB"; return 0; fi
        sleep 0.5
    done
    why "$1 still maps $rss KiB against a peak of $hwm KiB after 20 s"
    return 1
}
check "t1 quiet, alice gives back her start-up pages (VmRSS >= 1 MiB below VmHWM)" t_trimmed alice-up
check "t2 quiet, bob gives back his start-up pages (VmRSS >= 1 MiB below VmHWM)" t_trimmed bob-up
check "t3 ping alice -> bob after the trim" ping3 alice "$BOB_VIP"
check "t4 ping bob -> alice after the trim" ping3 bob "$ALICE_VIP"

# ---------------------------------------------------------------- e
SPOOF=10.77.0.200
e_spoof() {
    local before after
    before="$(spoofed bob)" || { why "bob status"; return 1; }
    lab_exec alice ip addr add "$SPOOF/32" dev p2p-demo || { why "cannot add $SPOOF to alice's p2p-demo"; return 1; }
    local rc=0
    lab_exec alice ping -c 2 -W 2 -I "$SPOOF" "$BOB_VIP" >"$LAB_TMP/logs/ping-spoof.log" 2>&1 || rc=$?
    lab_exec alice ip addr del "$SPOOF/32" dev p2p-demo || true
    [[ $rc -ne 0 ]] || { why "bob answered a ping from spoofed $SPOOF"; return 1; }
    lab_wait_for 5 spoofed_grew bob "$before" || true
    after="$(spoofed bob 2>/dev/null || echo "$before")"
    note "bob drops.spoofed_source: $before -> $after"
    (( after >= 1 && after > before )) || { why "bob's drops.spoofed_source did not increase"; return 1; }
}
check "e1 spoofed inner source 10.77.0.200 gets no reply and bob counts spoofed_source" e_spoof

# ---------------------------------------------------------------- g (independent of bob; runs before f)
g_unprivileged() {
    local d="$LAB_TMP/carol" tok
    tok="$(invite)" || { why "invite for carol"; return 1; }
    mkdir -p "$d/etc" "$d/state"
    p2p carol join "$tok" --name carol >"$LAB_TMP/logs/carol-join.log" 2>&1 || { why "carol join failed"; return 1; }
    chown -R 65534:65534 "$d"
    local start=$SECONDS rc=0
    lab_exec carol timeout 15 setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
        env HOME="$d" P2PVPN_CONFIG_DIR="$d/etc" P2PVPN_STATE_DIR="$d/state" \
        "$P2P_BIN" up --network "$NET" >"$LAB_TMP/logs/carol-up.out" 2>"$LAB_TMP/logs/carol-up.log" || rc=$?
    local took=$((SECONDS - start))
    note "unprivileged up: exit $rc after ${took}s; stderr: $(head -c 300 "$LAB_TMP/logs/carol-up.log" | tr '\n' ' ')"
    [[ $rc -ne 0 ]] || { why "unprivileged up exited 0"; return 1; }
    [[ $rc -ne 124 && $took -le 10 ]] || { why "unprivileged up did not exit within 10 s"; return 1; }
    grep -Eq 'CAP_NET_ADMIN|root' "$LAB_TMP/logs/carol-up.log" || { why "stderr mentions neither CAP_NET_ADMIN nor root"; return 1; }
    if lab_exec carol ip link show dev p2p-demo >/dev/null 2>&1; then why "p2p-demo exists in carol's namespace"; return 1; fi
}
check "g1 unprivileged up exits non-zero within 10 s naming CAP_NET_ADMIN or root" g_unprivileged

# As p2pvpn@.service runs it: root with CAP_NET_ADMIN as its only capability, NOTIFY_SOCKET set.
# READY=1 must come only once p2p-demo exists, STOPPING=1 on SIGTERM.
g_service() {
    local d="$LAB_TMP/carol" sock="$LAB_TMP/carol-notify.sock" nlog
    nlog="$(lab_logfile carol-notify)"
    # g1 left carol's files to nobody; `join` as root would have left them to root.
    chown -R 0:0 "$d"
    # (A file, not stdin: lab_spawn gives its command /dev/null as stdin.)
    cat >"$LAB_TMP/notify-recv.py" <<'PY'
import socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("BOUND", flush=True)
while True:
    msg = s.recv(4096).decode()
    print("MSG " + msg.replace("\n", " | "), flush=True)
    if "READY=1" in msg.split("\n"):
        link = subprocess.run(["ip", "link", "show", "dev", "p2p-demo"], capture_output=True)
        print("LINK " + ("yes" if link.returncode == 0 else "no"), flush=True)
PY
    lab_spawn carol carol-notify -- python3 -u "$LAB_TMP/notify-recv.py" "$sock"
    lab_wait_ready 10 carol-notify '^BOUND' || { why "notify receiver did not start"; return 1; }
    lab_spawn carol carol-up -- setpriv --inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin \
        --bounding-set=-all,+net_admin \
        env HOME="$d" P2PVPN_CONFIG_DIR="$d/etc" P2PVPN_STATE_DIR="$d/state" NOTIFY_SOCKET="$sock" \
        "$P2P_BIN" up --network "$NET"
    local rc=0
    lab_wait_ready 20 carol-up 'registered as' || rc=$?
    lab_wait_log 5 carol-notify '^LINK ' || { why "no READY=1 within 20 s (up: $rc)"; lab_stop carol-notify; return 1; }
    note "notifications: $(tr '\n' ' ' <"$nlog")"
    grep -q '^LINK yes' "$nlog" || { why "READY=1 arrived before p2p-demo existed"; lab_stop carol-notify; return 1; }
    rc=0
    lab_stop carol-up TERM 10 || rc=$?
    lab_wait_log 5 carol-notify 'STOPPING=1' || { why "no STOPPING=1 after SIGTERM"; lab_stop carol-notify; return 1; }
    lab_stop carol-notify || true
    [[ $rc -eq 0 ]] || { why "up exited $rc on SIGTERM"; return 1; }
    if lab_exec carol ip link show dev p2p-demo >/dev/null 2>&1; then why "p2p-demo left behind"; return 1; fi
}
check "g2 up as root with only CAP_NET_ADMIN notifies READY=1 after p2p-demo exists, STOPPING=1 on SIGTERM" g_service

# ---------------------------------------------------------------- f
f_remove() {
    srv network remove-member "$NET" bob --state-dir "$SERVER_STATE" >"$LAB_TMP/logs/remove-member.log" 2>&1 ||
        { why "remove-member failed: $(tail -n 3 "$LAB_TMP/logs/remove-member.log")"; return 1; }
    local start=$SECONDS
    lab_wait_for 10 lab_not p2p_has_peer alice "$NET" bob ||
        { why "alice still lists bob 10 s after remove-member"; return 1; }
    note "alice dropped bob after $((SECONDS - start)) s"
    if lab_exec alice ping -c 2 -W 1 "$BOB_VIP" >"$LAB_TMP/logs/ping-removed.log" 2>&1; then
        why "ping alice -> bob still answered after removal"; return 1
    fi
}
check "f1 remove-member bob: alice drops bob within 10 s and ping alice -> bob fails" f_remove

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-basic: $PASSED passed, $FAILED failed"
((FAILED == 0))
