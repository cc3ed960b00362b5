#!/usr/bin/env bash
# tests/netns/workers.sh - the data workers (`[dataplane] workers`, issue 11) end to end.
#
# Topology: server, alice and bob on the lab's internet bridge (no NAT); network "demo". Both
# nodes run our WireGuard engine (LAB_WIREGUARD=own unless set) with LAB_WORKERS threads: 2 (the
# default here) is a TX and an RX thread, 1 the single data thread.
#
#   a  both nodes are direct and run the threads p2pvpn-tx and p2pvpn-rx (2), or p2pvpn-data (1)
#   b  ping both ways, `p2pvpn ping` (ICMP the workers hand to the node) naming the direct
#      path, and a 20 MB TCP transfer each way within 30 s
#   c  the worker threads of both nodes did the crypto: `status --json` workers.tx and
#      workers.rx crypto_packets over 1000 each, and each thread used CPU time
#      (/proc/PID/task/TID/stat utime + stime)
#      and, with the data thread (1), the node task's own thread slept through the transfers
#      (under 500 wakes of its main thread: it no longer watches the data path's descriptors)
#
# Prints `ok - NAME` / `not ok - NAME` per check; exits 1 if a check failed, 77 (after
# `SKIP: reason`) when it cannot run here, 2 on a setup error. About 40 s.
#   P2PVPN_BIN   binary to test (tests/netns.rs sets the debug binary)
#   LAB_KEEP=1   keep the temp dir (logs, state)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_preflight ip python3 ping timeout
P2P_BIN="$(p2p_bin_default)"
export LAB_WIREGUARD="${LAB_WIREGUARD:-own}" LAB_WORKERS="${LAB_WORKERS:-2}"
case "$LAB_WORKERS" in
    1) THREADS=(p2pvpn-data) ;;
    2) THREADS=(p2pvpn-tx p2pvpn-rx) ;;
    *) echo "Bail out! LAB_WORKERS must be 1 or 2, not $LAB_WORKERS"; exit 2 ;;
esac

NET=demo
CIDR=10.77.0.0/24
PORT=7400
declare -A VIP=()

# shellcheck disable=SC2317  # called by the EXIT trap
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 25 lines of every process log:"
        lab_dump_logs 25 2>&1 | sed 's/^/# /'
    fi
    local n
    for n in alice bob; do
        if [[ -e "$LAB_TMP/pids/$n-up" ]] && lab_alive "$n-up"; then
            P2P_TIMEOUT=5 p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
        fi
    done
    return 0
}
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN, workers $LAB_WORKERS, engine $LAB_WIREGUARD"
lab_internet inet
lab_add_host server 198.51.100.1
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12
SERVER_STATE="$LAB_TMP/server/state"

p2p_network_up server "198.51.100.1:$PORT" "$SERVER_STATE" "$NET" "$CIDR" alice bob || setup_fail "$P2P_SETUP_ERROR"

TCP_PY="$ROOT/tests/netns/tcp.py"

for n in alice bob; do p2p_spawn "$n" "$n-up" up --network "$NET"; done
both_direct() { p2p_peer_is_direct alice "$NET" bob && p2p_peer_is_direct bob "$NET" alice; }
lab_wait_for 30 both_direct || note "not direct after 30 s: alice sees $(p2p_peer_path alice "$NET" bob), bob sees $(p2p_peer_path bob "$NET" alice)"

# The p2pvpn process of node NAME: the spawned pid or, if that is a wrapper, its descendant.
node_pid() {
    local pid todo
    todo="$(lab_pid "$1-up")"
    while [[ -n "$todo" ]]; do
        pid="${todo%% *}"; todo="${todo#"$pid"}"; todo="${todo# }"
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == p2pvpn ]]; then echo "$pid"; return 0; fi
        todo="$todo $(cat /proc/"$pid"/task/*/children 2>/dev/null | tr '\n' ' ')"
        todo="$(echo "$todo" | xargs)"
    done
    return 1
}
# thread_cpu PID NAME : utime + stime (clock ticks) of PID's thread called NAME, or nothing.
thread_cpu() {
    local t
    for t in /proc/"$1"/task/*; do
        if [[ "$(cat "$t/comm" 2>/dev/null)" == "$2" ]]; then
            # Fields after the ")" of the name: utime and stime are the 12th and 13th.
            sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}'
            return 0
        fi
    done
}

# ---------------------------------------------------------------- a
a_threads() {
    local n pid t
    both_direct || { why "not direct: alice sees $(p2p_peer_path alice "$NET" bob), bob sees $(p2p_peer_path bob "$NET" alice)"; return 1; }
    for n in alice bob; do
        pid="$(node_pid "$n")" || { why "$n: no p2pvpn process"; return 1; }
        for t in "${THREADS[@]}"; do
            [[ -n "$(thread_cpu "$pid" "$t")" ]] ||
                { why "$n (pid $pid) has no thread $t: $(cat /proc/"$pid"/task/*/comm | tr '\n' ' ')"; return 1; }
        done
    done
}
check "a1 both nodes direct, each with the thread(s) ${THREADS[*]}" a_threads

# ---------------------------------------------------------------- b
ping3() {
    local out
    out="$(lab_exec "$1" ping -c 3 -W 2 "${VIP[$2]}" 2>&1)" || { why "ping $1 -> $2: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    grep -q '3 received' <<<"$out" || { why "ping $1 -> $2: $(grep transmitted <<<"$out")"; return 1; }
}
check "b1 ping alice -> bob (3/3)" ping3 alice bob
check "b2 ping bob -> alice (3/3)" ping3 bob alice
b_path_ping() {
    local out
    out="$(p2p alice ping bob --count 3 --interval 0.2 2>&1)" || { why "p2pvpn ping: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    [[ "$(grep -c 'path=direct' <<<"$out")" -eq 3 ]] || { why "expected 3 direct replies: $(tr '\n' ' ' <<<"$out")"; return 1; }
}
check "b3 p2pvpn ping alice -> bob: 3 replies on the direct path" b_path_ping
bulk() {  # bulk FROM TO BYTES SECS
    local from="$1" to="$2" out rc=0 t0
    lab_spawn "$to" "bulk-$from-srv" -- timeout "$(($4 + 5))" python3 "$TCP_PY" serve-bulk "${VIP[$to]}" 5201
    sleep 0.5
    t0=$SECONDS
    out="$(lab_exec "$from" timeout "$4" python3 "$TCP_PY" send-bulk "${VIP[$to]}" 5201 "$3" 2>&1)" || rc=$?
    lab_stop "bulk-$from-srv" TERM 2 >/dev/null 2>&1 || true
    note "$from -> $to: rc $rc after $((SECONDS - t0)) s: ${out//$'\n'/ }"
    ((rc == 0)) || why "the transfer did not complete"
}
# main_wakes PID : voluntary context switches of PID's main thread (the node task's), which
# sleeps in tokio's epoll_wait and counts one per wake.
main_wakes() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/task/$1/status" 2>/dev/null || echo 0; }
declare -A WAKES0=()
for n in alice bob; do
    pid="$(node_pid "$n")" && WAKES0[$n]="$(main_wakes "$pid")"
done
check "b4 20 MB TCP alice -> bob within 30 s" bulk alice bob 20000000 30
check "b5 20 MB TCP bob -> alice within 30 s" bulk bob alice 20000000 30

# ---------------------------------------------------------------- c
c_counters() {
    local n w got
    for n in alice bob; do
        for w in tx rx; do
            got="$(p2p_field "$n" "$NET" "(j.get('workers') or {}).get('$w', {}).get('crypto_packets', 0)" 2>/dev/null || echo 0)"
            note "$n $w worker: $got packets"
            ((got > 1000)) || { why "$n's $w worker did $got packets: $(p2p_field "$n" "$NET" "j.get('workers')" 2>&1)"; return 1; }
        done
    done
}
check "c1 status --json: each node's workers sealed and opened over 1000 packets each" c_counters
c_cpu() {
    local n pid t cpu
    for n in alice bob; do
        pid="$(node_pid "$n")" || { why "$n: no p2pvpn process"; return 1; }
        for t in "${THREADS[@]}"; do
            cpu="$(thread_cpu "$pid" "$t")"
            note "$n $t: ${cpu:-none} ticks"
            if [[ -z "$cpu" ]] || ((cpu == 0)); then why "$n's $t used no CPU time"; return 1; fi
        done
    done
}
check "c2 each worker thread of each node (${THREADS[*]}) used CPU time" c_cpu
# The data thread waits on the TUN device and the main socket itself and took them out of the
# node task's reactor (io::workers::withdraw): the 40 MB above must not wake the node task's
# thread per batch (thousands of wakes when it still watched them) but only for its timers,
# the control stream and what the data thread hands it (handshakes, SYNs: a few hundred).
c_main_idle() {
    local n pid wakes
    for n in alice bob; do
        pid="$(node_pid "$n")" || { why "$n: no p2pvpn process"; return 1; }
        wakes=$(( $(main_wakes "$pid") - ${WAKES0[$n]:-0} ))
        note "$n: the node task's thread woke $wakes times during the two transfers"
        ((wakes < MAIN_WAKES_MAX)) || { why "$n's node task woke $wakes times (at most $MAIN_WAKES_MAX expected)"; return 1; }
    done
}
if [[ "$LAB_WORKERS" == 1 ]]; then
    MAIN_WAKES_MAX=500
    check "c3 the node task's thread did not wake per batch (under $MAIN_WAKES_MAX wakes for 40 MB)" c_main_idle
fi

echo "# $PASSED passed, $FAILED failed"
((FAILED == 0))
