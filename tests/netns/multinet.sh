#!/usr/bin/env bash
# tests/netns/multinet.sh - one node process serving two networks (issue 14, "Several networks
# in one service"), as root in network namespaces.
#
# Topology: "internet" ns with a bridge; server1 198.51.100.1 runs network "red"
# (10.61.0.0/24), server2 198.51.100.2 runs network "blue" (10.62.0.0/24): two servers, two
# keys. alice 198.51.100.11 joined both as "alice" and runs ONE `p2pvpn up` (no network named)
# with NOTIFY_SOCKET set, as p2pvpn.service runs it. bob 198.51.100.12 joined both as "bob"
# (the member names overlap) and runs them as two processes (`up red`, `up blue`).
#
# Checks: one READY=1 only after both interfaces exist; addresses; `status` (all networks,
# from the one process); pings in both networks, by kernel and by `p2pvpn ping --network`;
# isolation: packets routed from alice into red's interface but addressed to blue's range are
# dropped by red's node and counted, and never appear on any blue (or red) TUN device of bob
# nor on alice's blue device; `down blue` stops only blue; `down red` ends the process; a
# restarted process stops both networks on SIGTERM (STOPPING=1, interfaces removed); with
# blue's server down, red comes up and READY=1 follows after 90 s naming blue (about 2 min).
#
# Prints `ok - NAME` / `not ok - NAME` per check and a summary line; exits 1 if any check
# failed, 77 (after printing `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug
#                binary)
#   LAB_KEEP=1   keep the temp dir (logs, pcaps, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if m="$(lab_missing ip tcpdump python3 ping timeout)"; then
    echo "SKIP: $m not installed"; exit 77
fi
if [[ ! -c /dev/net/tun ]]; then echo "SKIP: no /dev/net/tun"; exit 77; fi
P2P_BIN="$(p2p_bin_default)"
if [[ ! -x "$P2P_BIN" ]]; then echo "p2pvpn binary not found: $P2P_BIN" >&2; exit 2; fi

PORT=7400
declare -A SERVER_IP=([red]=198.51.100.1 [blue]=198.51.100.2)
declare -A CIDR=([red]=10.61.0.0/24 [blue]=10.62.0.0/24)
PATTERN=c0ffee0ddba11e

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_on_exit() {
    local rc="$1" label n net
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    # Nodes leave through `down` (removing their interfaces); lab_cleanup kills what is left.
    for label in alice-up alice-up2 alice-up3 bob-red bob-blue; do
        if [[ ! -e "$LAB_TMP/pids/$label" ]] || ! lab_alive "$label"; then continue; fi
        n="${label%%-*}"
        for net in red blue; do
            P2P_TIMEOUT=5 p2p "$n" down "$net" >/dev/null 2>&1 || true
        done
    done
    return 0
}

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
lab_internet inet
lab_add_host server1 "${SERVER_IP[red]}"
lab_add_host server2 "${SERVER_IP[blue]}"
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12

setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }
server_of() { if [[ "$1" == red ]]; then echo server1; else echo server2; fi; }
srv() {  # srv NETWORK ARGS... : `p2pvpn ARGS` on that network's server host
    local net="$1"; shift
    lab_exec "$(server_of "$net")" timeout 20 "$P2P_BIN" "$@" --state-dir "$LAB_TMP/$net-server"
}

# ---------------------------------------------------------------- setup
for net in red blue; do
    s="$(server_of "$net")"
    lab_spawn "$s" "$s" -- "$P2P_BIN" server --listen "${SERVER_IP[$net]}:$PORT" \
        --state-dir "$LAB_TMP/$net-server"
    rc=0
    lab_wait_ready 30 "$s" "p2pvpn server listening on" || rc=$?
    [[ $rc -eq 0 ]] || setup_fail "$s not ready in 30 s ($rc)"
    srv "$net" network create "$net" --cidr "${CIDR[$net]}" >/dev/null || setup_fail "create $net"
    for n in alice bob; do
        tok="$(srv "$net" network invite "$net" --uses 1 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" ||
            setup_fail "invite $n to $net"
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "$n" >>"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join $net"
    done
done

# The service manager's side of sd_notify: every message, and on READY=1 whether both
# interfaces exist at that moment.
NOTIFY_SOCK="$LAB_TMP/alice-notify.sock"
cat >"$LAB_TMP/notify-recv.py" <<'PY'
import socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("BOUND", flush=True)
while True:
    msg = s.recv(4096).decode()
    print("MSG " + msg.replace("\n", " | "), flush=True)
    if "READY=1" in msg.split("\n"):
        links = [subprocess.run(["ip", "link", "show", "dev", d], capture_output=True).returncode == 0
                 for d in ("p2p-red", "p2p-blue")]
        print("LINKS " + " ".join("yes" if l else "no" for l in links), flush=True)
PY
alice_up() {  # alice_up LABEL NOTIFY_LABEL : the one process for both networks
    rm -f "$NOTIFY_SOCK"
    lab_spawn alice "$2" -- python3 -u "$LAB_TMP/notify-recv.py" "$NOTIFY_SOCK"
    lab_wait_ready 10 "$2" '^BOUND' || setup_fail "notify receiver did not start"
    lab_spawn alice "$1" -- env P2PVPN_CONFIG_DIR="$LAB_TMP/alice/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/alice/state" NOTIFY_SOCKET="$NOTIFY_SOCK" "$P2P_BIN" up
}
alice_up alice-up alice-notify
p2p_spawn bob bob-red up red
p2p_spawn bob bob-blue up blue
for net in red blue; do
    lab_wait_for 30 p2p_peer_is_direct alice "$net" bob ||
        note "alice->bob in $net not direct after 30 s: '$(p2p_peer_path alice "$net" bob 2>/dev/null || true)'"
done
declare -A A_VIP B_VIP
for net in red blue; do
    A_VIP[$net]="$(p2p_field alice "$net" 'j["virtual_ip"]' 2>/dev/null || true)"
    B_VIP[$net]="$(p2p_field bob "$net" 'j["virtual_ip"]' 2>/dev/null || true)"
    note "$net: alice ${A_VIP[$net]}, bob ${B_VIP[$net]}"
    [[ -n "${A_VIP[$net]}" && -n "${B_VIP[$net]}" ]] || setup_fail "no virtual_ip in $net's status"
done

# ---------------------------------------------------------------- s: one process
s_one_process() {
    local log pid tuns
    log="$(lab_logfile alice-up)"
    grep -q 'bringing up 2 networks in one process: blue, red' "$log" ||
        { why "no 'bringing up 2 networks' line in alice's log"; return 1; }
    pid="$(lab_pid alice-up)"
    # Both TUN devices are open in that one process.
    tuns="$(find "/proc/$pid/fd" -lname /dev/net/tun 2>/dev/null | wc -l)"
    [[ "$tuns" -eq 2 ]] || { why "process $pid holds $tuns TUN descriptors, expected 2"; return 1; }
}
check "s1 one process (no network named) brings up blue and red with both TUN devices" s_one_process
s_ready() {
    local nlog; nlog="$(lab_logfile alice-notify)"
    lab_wait_log 10 alice-notify '^LINKS ' || { why "no READY=1"; return 1; }
    note "notifications: $(tr '\n' ' ' <"$nlog")"
    [[ "$(grep -c '^LINKS ' "$nlog")" -eq 1 ]] || { why "READY=1 sent more than once"; return 1; }
    grep -q '^LINKS yes yes$' "$nlog" || { why "READY=1 before both interfaces existed"; return 1; }
}
check "s2 READY=1 once, after both p2p-red and p2p-blue exist" s_ready

# ---------------------------------------------------------------- a: addresses and status
a_iface() {  # a_iface NODE NETWORK
    local n="$1" net="$2" addrs
    addrs="$(lab_exec "$n" ip -4 -o addr show dev "p2p-$net" | awk '{print $4}')"
    [[ "$addrs" == "${A_VIP[$net]}/24" || "$addrs" == "${B_VIP[$net]}/24" ]] ||
        { why "$n p2p-$net: '$addrs'"; return 1; }
    lab_exec "$n" ip -4 route show "${CIDR[$net]}" | grep -q "dev p2p-$net" ||
        { why "$n: no route for ${CIDR[$net]} on p2p-$net"; return 1; }
}
a_both() { a_iface "$1" red && a_iface "$1" blue; }
check "a1 alice's red and blue interfaces carry their own network's address and route" a_both alice
check "a2 bob's two processes: the same for bob" a_both bob
# all_networks EXPR < status.json : EXPR over the whole {"networks": [...]} object `j` (unlike
# p2p_json_get, which picks one network's object).
all_networks() { python3 -c 'import json, sys; print(eval(sys.argv[1], {"j": json.load(sys.stdin)}))' "$1"; }
a_status() {
    local out names
    out="$(P2P_TIMEOUT=10 p2p alice status --json 2>&1)" || { why "status: $out"; return 1; }
    names="$(all_networks '" ".join(sorted(n["network"] + ":" + n["name"] for n in j["networks"]))' <<<"$out")"
    [[ "$names" == "blue:alice red:alice" ]] || { why "status lists '$names'"; return 1; }
    out="$(P2P_TIMEOUT=10 p2p alice status 2>&1)" || { why "status: $out"; return 1; }
    if ! grep -q red <<<"$out" || ! grep -q blue <<<"$out"; then why "status table: $out"; return 1; fi
}
check "a3 status (no network) shows both networks of the one process, alice in each" a_status

# ---------------------------------------------------------------- b: traffic in both
ping3() {  # ping3 FROM TO
    local out
    out="$(lab_exec "$1" ping -c 3 -W 2 "$2" 2>&1)" || { why "ping $1 -> $2: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q '3 received' <<<"$out" || { why "ping $1 -> $2: $(grep transmitted <<<"$out")"; return 1; }
}
check "b1 ping alice -> bob in red (3/3)" ping3 alice "${B_VIP[red]}"
check "b2 ping alice -> bob in blue (3/3)" ping3 alice "${B_VIP[blue]}"
b_back() { ping3 bob "${A_VIP[red]}" && ping3 bob "${A_VIP[blue]}"; }
check "b3 ping bob -> alice in red and in blue (3/3 each)" b_back
b_named() {  # the name "bob" means a different member per network
    local net out
    for net in red blue; do
        out="$(p2p alice ping bob --network "$net" --count 2 --interval 0.2 2>&1)" ||
            { why "p2pvpn ping bob --network $net: $(tr '\n' ' ' <<<"$out")"; return 1; }
        grep -q "reply from bob (${B_VIP[$net]})" <<<"$out" || { why "$net: $(head -n 1 <<<"$out")"; return 1; }
    done
}
check "b4 p2pvpn ping bob --network red / blue reach bob's own address in each network" b_named

# ---------------------------------------------------------------- c: isolation
count_pattern() { python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(bytes.fromhex(sys.argv[2])))' "$1" "$PATTERN"; }
c_isolated() {
    local caps=() label d n drops0 drops1 rc=0
    # Route bob's BLUE address into alice's RED interface: what a packet from network A to
    # B's range would do if anything in the one process mixed the two.
    lab_exec alice ip route add "${B_VIP[blue]}/32" dev p2p-red
    for d in alice:p2p-red alice:p2p-blue bob:p2p-red bob:p2p-blue; do
        label="cap-${d/:/-}"
        lab_spawn "${d%%:*}" "$label" -- timeout 20 tcpdump -i "${d#*:}" -nn -s 0 -U -w "$LAB_TMP/$label.pcap"
        caps+=("$label")
    done
    for label in "${caps[@]}"; do
        lab_wait_log 10 "$label" 'listening on' || { why "$label did not start"; rc=1; }
    done
    drops0="$(p2p_drops_total alice red)"
    lab_exec alice ping -c 5 -i 0.2 -W 1 -p "$PATTERN" "${B_VIP[blue]}" >"$LAB_TMP/logs/ping-cross.log" 2>&1 &&
        { why "bob's blue address answered through alice's red interface"; rc=1; }
    sleep 1
    drops1="$(p2p_drops_total alice red)"
    for label in "${caps[@]}"; do lab_stop "$label" INT 5 || true; done
    lab_exec alice ip route del "${B_VIP[blue]}/32" dev p2p-red
    for label in "${caps[@]}"; do
        n="$(count_pattern "$LAB_TMP/$label.pcap")"
        note "$label: $n packets with the pattern"
        if [[ "$label" == cap-alice-p2p-red ]]; then
            # Control: the packets did enter red's TUN device.
            [[ "$n" -ge 5 ]] || { why "only $n pattern packets on alice's p2p-red (control)"; rc=1; }
        else
            [[ "$n" -eq 0 ]] || { why "$n pattern packets reached ${label#cap-}"; rc=1; }
        fi
    done
    note "red drops at alice: $drops0 -> $drops1"
    [[ "$drops1" -ge $((drops0 + 5)) ]] || { why "red's node did not count the 5 drops"; rc=1; }
    return "$rc"
}
check "c1 packets from red's interface to blue's range are dropped and counted by red and reach no blue (or bob's) TUN" c_isolated

# ---------------------------------------------------------------- d: down per network
d_down_blue() {
    local out
    out="$(p2p alice down blue 2>&1)" || { why "down blue: $out"; return 1; }
    lab_wait_for 10 lab_not lab_exec alice ip link show dev p2p-blue || { why "p2p-blue still there"; return 1; }
    lab_alive alice-up || { why "the process ended with blue"; return 1; }
    ping3 alice "${B_VIP[red]}" || return 1
    out="$(P2P_TIMEOUT=10 p2p alice status --json 2>&1)" || { why "status: $out"; return 1; }
    [[ "$(all_networks '",".join(n["network"] for n in j["networks"])' <<<"$out")" == red ]] ||
        { why "status after down blue: $out"; return 1; }
}
check "d1 down blue removes p2p-blue only; red keeps working in the same process" d_down_blue
d_down_red() {
    local out rc=0
    out="$(p2p alice down red 2>&1)" || { why "down red: $out"; return 1; }
    lab_wait_for 10 lab_exited alice-up || { why "the process still runs with no network left"; return 1; }
    wait "$(lab_pid alice-up)" 2>/dev/null || rc=$?
    [[ $rc -eq 0 ]] || { why "exit status $rc"; return 1; }
    if lab_exec alice ip link show dev p2p-red >/dev/null 2>&1; then why "p2p-red left behind"; return 1; fi
}
check "d2 down red (the last network) ends the process with status 0 and removes p2p-red" d_down_red
lab_stop alice-notify || true

# ---------------------------------------------------------------- e: SIGTERM stops both
e_sigterm() {
    local rc=0 nlog
    alice_up alice-up2 alice-notify2
    nlog="$(lab_logfile alice-notify2)"
    lab_wait_log 40 alice-notify2 '^LINKS ' || { why "no READY=1 after the restart"; return 1; }
    lab_stop alice-up2 TERM 20 || rc=$?
    [[ $rc -eq 0 ]] || { why "exit status $rc on SIGTERM"; return 1; }
    lab_wait_log 5 alice-notify2 'STOPPING=1' || { why "no STOPPING=1"; return 1; }
    [[ "$(grep -c 'STOPPING=1' "$nlog")" -eq 1 ]] || { why "STOPPING=1 sent more than once"; return 1; }
    for d in p2p-red p2p-blue; do
        if lab_exec alice ip link show dev "$d" >/dev/null 2>&1; then why "$d left behind"; return 1; fi
    done
}
check "e1 SIGTERM stops both networks: status 0, one STOPPING=1, both interfaces removed" e_sigterm
lab_stop alice-notify2 || true

# ---------------------------------------------------------------- f: a server unreachable
# blue's server is gone: red must come up and be usable, READY=1 must still come (after 90 s,
# naming blue), and the process must not fail (a failure would restart the healthy red too).
f_unreachable() {
    local rc=0 nlog
    lab_stop server2 TERM 10 || true
    # Let bob see alice's last run go first: a peer gone and back within a second (e1 ran that
    # fast) was seen to leave bob without a tunnel to the new run (see notes/multinet.md).
    lab_wait_for 30 lab_not p2p_peer_is_direct bob red alice || note "bob still sees alice direct"
    alice_up alice-up3 alice-notify3
    nlog="$(lab_logfile alice-notify3)"
    lab_wait_for 30 lab_exec alice ip link show dev p2p-red || { why "p2p-red not up in 30 s"; return 1; }
    lab_wait_for 30 p2p_peer_is_direct alice red bob || note "alice->bob in red not direct after 30 s"
    lab_wait_for 20 lab_exec alice ping -c 1 -W 1 "${B_VIP[red]}" || note "no answer from bob in red in 20 s"
    ping3 alice "${B_VIP[red]}" || return 1
    if grep -q '^LINKS ' "$nlog"; then why "READY=1 before the 90 s with blue not up"; return 1; fi
    lab_wait_log 110 alice-notify3 '^LINKS ' || { why "no READY=1 within 110 s"; return 1; }
    note "notifications: $(tr '\n' ' ' <"$nlog")"
    grep -q 'still connecting: blue' "$nlog" || { why "STATUS does not name blue"; return 1; }
    lab_alive alice-up3 || { why "the process ended"; return 1; }
    ping3 alice "${B_VIP[red]}" || return 1
    lab_stop alice-up3 TERM 20 || rc=$?
    [[ $rc -eq 0 ]] || { why "exit status $rc on SIGTERM"; return 1; }
    if lab_exec alice ip link show dev p2p-red >/dev/null 2>&1; then why "p2p-red left behind"; return 1; fi
}
check "f1 blue's server down: red up and pinging, READY=1 after 90 s naming blue, no failure" f_unreachable
lab_stop alice-notify3 || true

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-multinet: $PASSED passed, $FAILED failed"
((FAILED == 0))
