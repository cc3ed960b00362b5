#!/usr/bin/env bash
# tests/netns/acl.sh - root end-to-end test of access rules (issue 14) in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1 (TCP+UDP 7400), alice
# 198.51.100.11 (tag admin), bob 198.51.100.12 (tag server). Network "acl" 10.79.0.0/24.
#
# Checks: without rules ping passes (as before); the rule "tcp 22 from tag:admin to tag:server"
# reaches bob within 2 s of `network acl add` with no restart; an SSH-sized TCP exchange on 22
# passes both ways; ping and TCP 80 are dropped, counted (drops.access_denied) and explained by
# `status` and `doctor alice` on bob; adding "tcp 80 ..." opens port 80 within 2 s and removing
# the port 22 rule closes 22 within 2 s; a UDP flow opened before any rule keeps its replies
# once rules arrive; the node processes are the ones started at the beginning.
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

lab_preflight ip python3 ping timeout
P2P_BIN="$(p2p_bin_default)"

NET=acl
CIDR=10.79.0.0/24
SERVER_IP=198.51.100.1
PORT=7400

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_on_exit() {
    local rc="$1" n
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    for n in alice bob; do
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

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@" --state-dir "$SERVER_STATE"; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

# ---------------------------------------------------------------- setup
lab_spawn server server -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -ne 2 ]] || setup_fail "server exited"
[[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s"
srv network create "$NET" --cidr "$CIDR" >"$LAB_TMP/logs/create.log" 2>&1 ||
    setup_fail "network create: $(cat "$LAB_TMP/logs/create.log")"
for n in alice bob; do
    tok="$(srv network invite "$NET" --uses 1 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" ||
        setup_fail "invite for $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
done
p2p_spawn alice alice-up up --network "$NET"
p2p_spawn bob bob-up up --network "$NET"
lab_wait_for 30 p2p_peer_is_direct alice "$NET" bob || note "alice->bob not direct after 30 s"
lab_wait_for 30 p2p_peer_is_direct bob "$NET" alice || note "bob->alice not direct after 30 s"
BOB="$(p2p_field bob "$NET" 'j["virtual_ip"]')" || setup_fail "bob's address"
ALICE="$(p2p_field alice "$NET" 'j["virtual_ip"]')" || setup_fail "alice's address"
PIDS="$(lab_pid alice-up) $(lab_pid bob-up)"
note "alice $ALICE, bob $BOB, node pids $PIDS"
srv network tag "$NET" alice admin >/dev/null || setup_fail "tag alice"
srv network tag "$NET" bob server >/dev/null || setup_fail "tag bob"

# Bob listens on 22 (echoes what it gets: an SSH-sized exchange) and on 80.
cat >"$LAB_TMP/listen.py" <<'PY'
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(8)
    while True:
        c, _ = s.accept()
        c.settimeout(10)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        c.close()
for p in (22, 80):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("LISTENING", flush=True)
threading.Event().wait(120)
PY
lab_spawn bob listen -- timeout 150 python3 -u "$LAB_TMP/listen.py" "$BOB"
lab_wait_ready 10 listen '^LISTENING' || setup_fail "bob's listener"

# tcp_exchange PORT [TIMEOUT]: alice sends 20 KiB to bob:PORT and reads the echo back.
tcp_exchange() {
    lab_exec alice timeout 10 python3 - "$BOB" "$1" "${2:-3}" <<'PY'
import os, socket, sys
data = os.urandom(20480)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.sendall(data)
got = b""
while len(got) < len(data):
    b = s.recv(65536)
    if not b:
        break
    got += b
sys.exit(0 if got == data else 3)
PY
}
ping1() { lab_exec alice ping -c 1 -W 1 "$BOB" >/dev/null 2>&1; }
denied() { p2p_field bob "$NET" "int(j['drops'].get('access_denied', 0))"; }
enforced_rules() { p2p_field bob "$NET" "len((j.get('access') or {}).get('rules') or []) if (j.get('access') or {}).get('enforced') else -1"; }
# within_2s CMD... : CMD succeeds within 2 s (polled every 100 ms); notes how long it took.
within_2s() {
    local start end
    start="$(date +%s%N)"
    while true; do
        if "$@" >/dev/null 2>&1; then
            end="$(date +%s%N)"
            note "took $(( (end - start) / 1000000 )) ms: $*"
            return 0
        fi
        if (( ($(date +%s%N) - start) > 2000000000 )); then
            why "not within 2 s: $*"; return 1
        fi
        sleep 0.1
    done
}
rules_are() { [[ "$(enforced_rules)" == "$1" ]]; }

# ---------------------------------------------------------------- a: no rules, all passes
check "a1 without rules ping alice -> bob passes (as before)" ping1
check "a2 without rules TCP 80 alice -> bob passes" tcp_exchange 80

# ---------------------------------------------------------------- b: tcp 22 from admin to server
b_add() {
    srv network acl "$NET" add "tcp 22 from tag:admin to tag:server" >/dev/null || { why "acl add failed"; return 1; }
    within_2s rules_are 1
}
check "b1 the rule reaches bob within 2 s of \`network acl add\`" b_add
check "b2 an SSH-sized exchange on TCP 22 alice -> bob passes both ways" tcp_exchange 22
b_dropped() {
    local before after out
    before="$(denied)"
    if ping1; then why "ping passed"; return 1; fi
    if tcp_exchange 80 1 2>/dev/null; then why "TCP 80 passed"; return 1; fi
    after="$(denied)"
    note "bob drops.access_denied: $before -> $after"
    (( after >= before + 2 )) || { why "access_denied did not grow by 2"; return 1; }
    out="$(p2p bob status --network "$NET" 2>&1)"
    grep -q "rule 1   allow tcp 22 from tag:admin to tag:server" <<<"$out" || { why "status: $(tr '\n' '|' <<<"$out")"; return 1; }
    grep -q "dropped  alice: tcp 80" <<<"$out" || { why "status lacks the tcp 80 drop: $(tr '\n' '|' <<<"$out")"; return 1; }
    grep -q "dropped  alice: icmp" <<<"$out" || { why "status lacks the icmp drop"; return 1; }
    out="$(p2p bob doctor alice --network "$NET" 2>&1)" || true
    grep -q "dropped from alice: tcp 80" <<<"$out" || { why "doctor: $(tr '\n' '|' <<<"$out")"; return 1; }
}
check "b3 ping and TCP 80 are dropped, counted, and explained by status and doctor on bob" b_dropped
b_sender() {
    local out
    out="$(p2p alice doctor bob --network "$NET" 2>&1)" || true
    grep -q "this node may connect to bob under rule 1: tcp 22 from tag:admin to tag:server" <<<"$out" ||
        { why "alice's doctor bob: $(tr '\n' '|' <<<"$out")"; return 1; }
}
check "b4 doctor bob on alice names the rule that lets her connect to bob" b_sender

# ---------------------------------------------------------------- c: changes apply within 2 s
c_open80() {
    srv network acl "$NET" add "tcp 80 from tag:admin to tag:server" >/dev/null || { why "acl add failed"; return 1; }
    within_2s tcp_exchange 80 0.3
}
check "c1 adding \"tcp 80 ...\" lets TCP 80 through within 2 s" c_open80
c_close22() {
    srv network acl "$NET" remove 1 >/dev/null || { why "acl remove failed"; return 1; }
    within_2s lab_not tcp_exchange 22 0.3
}
check "c2 removing the port 22 rule stops TCP 22 within 2 s" c_close22
c_clear() {
    srv network acl "$NET" remove 1 >/dev/null || { why "acl remove failed"; return 1; }
    within_2s rules_are -1 || return 1
    ping1 || why "ping alice -> bob still dropped"
}
check "c3 removing the last rule allows all again (ping) within 2 s" c_clear
# ---------------------------------------------------------------- e: flows opened before rules
# Bob sends one UDP datagram from 7000 to alice's port 6000 while the network has no rules
# (bob's data thread carries it); alice streams datagrams back to it for 6 s. Meanwhile the
# owner adds a rule that lets servers reach admins on UDP 6000 and nothing reach bob: bob admits
# the stream only because his node remembered the flow he opened, so the data thread must
# record flows with or without rules (bob sends nothing more that could record it later).
e_flow() {
    local added replies after
    cat >"$LAB_TMP/udp-echo.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 6000))
s.settimeout(15)
print("LISTENING", flush=True)
b, a = s.recvfrom(2048)
for i in range(60):  # a stream back to the sender, 6 s at most
    s.sendto(b"stream %d" % i, a)
    time.sleep(0.1)
PY
    cat >"$LAB_TMP/udp-client.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7000))
s.settimeout(1.5)
s.sendto(b"start", (sys.argv[2], 6000))  # the only datagram bob sends
end = time.time() + 8
while time.time() < end:
    try:
        s.recvfrom(2048)
        print("REPLY %.3f" % time.time(), flush=True)
    except socket.timeout:
        pass
print("DONE", flush=True)
PY
    lab_spawn alice udp-echo -- timeout 20 python3 -u "$LAB_TMP/udp-echo.py" "$ALICE"
    lab_wait_ready 10 udp-echo '^LISTENING' || { why "alice's UDP echo"; return 1; }
    lab_spawn bob udp-client -- timeout 20 python3 -u "$LAB_TMP/udp-client.py" "$BOB" "$ALICE"
    sleep 1
    srv network acl "$NET" add "udp 6000 from tag:server to tag:admin" >/dev/null || { why "acl add failed"; return 1; }
    within_2s rules_are 0 || return 1
    added="$(date +%s.%N)"
    lab_wait_log 12 udp-client '^DONE' || { why "bob's client did not finish"; return 1; }
    replies="$(grep -c '^REPLY' "$(lab_logfile udp-client)" || true)"
    after="$(awk -v t="$added" '$1 == "REPLY" && $2 > t + 0.3 { n++ } END { print n + 0 }' "$(lab_logfile udp-client)")"
    note "bob's flow: $replies datagrams of the stream in all, $after after the rule reached bob"
    srv network acl "$NET" remove 1 >/dev/null || { why "acl remove failed"; return 1; }
    within_2s rules_are -1 || return 1
    (( after >= 5 )) || { why "alice's stream to bob's own flow was dropped under the rule"; return 1; }
}
check "e1 a UDP stream to a flow bob opened before any rule still reaches him once rules arrive" e_flow
d_same() { [[ "$(lab_pid alice-up) $(lab_pid bob-up)" == "$PIDS" ]] && lab_alive alice-up && lab_alive bob-up; }
check "d1 no node was restarted" d_same

# ---------------------------------------------------------------- summary
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-acl: $PASSED passed, $FAILED failed"
((FAILED == 0))
