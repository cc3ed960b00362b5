#!/usr/bin/env bash
# tests/netns/relay.sh - the relay through the server ("relay first, then upgrade") with the
# real binary in the NAT lab (docs: nat-lab.md, rows 7 and 9 of the matrix, and the
# "direct path goes dark" cross-cutting case). One server (198.51.100.1 and .2 port 7400,
# TLS on 198.51.100.1:443) serves every check; each check has its own network and hosts.
#
#   a  row 7, RND - RND: `up` on both sides while a ping runs from the first moment; the
#      first reply must come within 20 s, both sides must show path "relay" over "udp",
#      and ping must answer both ways. Reports the time from `up` to the first reply.
#   b  row 9, UDPBLK443 (UDP blocked except dport 53, TCP only to 80/443) - PRC: the
#      blocked side must reach the server over TLS on 443 (server.tls true), show path
#      "relay" over "tls" to its peer, get a first ping reply < 20 s after `up` (it must
#      not hang on UDP or plain TCP attempts), and ping must answer both ways.
#   c  blackhole, PRC - PRC (direct): iperf3 TCP for 24 s over the VPN; at ~6 s every UDP
#      datagram between the two NATs' public addresses is dropped in the internet router
#      (the server stays reachable), at ~14 s the drop goes. The TCP connection must
#      survive, no stretch of zero throughput may last more than 4 s (receiver side, per
#      second), both sides must show path "relay" during the block and "direct" again
#      within 30 s after it. Reports per-second throughput (min/median) in and out of it.
#   d  server restart: with pair P (c's PRC - PRC, direct) and pair Q (a's RND - RND,
#      relay) up, the server gets SIGTERM; ping over P must still answer during the outage;
#      the server restarts with the same state dir and Q must ping again within 40 s.
# Ends with a summary table (check, result, figure). Runs in about 1.5 minutes (2 CPUs,
# debug binary; a node behind UDPBLK443 needs ~14 s to give up on the plain addresses).
#
# Prints `ok - ...` / `not ok - ...` per check and a summary line; exits 1 if a check
# failed, 77 (after `SKIP: reason`) when it cannot run here - not root, a tool missing, or
# a binary without the relay (`server --help` has no --relay-node-mbps) - 2 on setup errors.
#   P2PVPN_BIN          binary to test (default target/release/p2pvpn; tests/netns.rs sets
#                       the debug binary)
#   RELAY_SERVER_ARGS   extra `p2pvpn server` arguments (e.g. "--relay-node-mbps 50")
#   RELAY_ONLY=a,c      run only these checks (d needs a and c; it runs them if asked)
#   LAB_KEEP=1          keep the temp dir (logs, iperf3 JSON, state)
#   MX_DUMP_LOGS=0      do not print the process logs when a check failed (default: print)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

lab_preflight ip nft python3 ping timeout iperf3
# (captured first: `grep -q` on a pipe would stop reading early and fail the pipeline)
SERVER_HELP="$(timeout 10 "$P2P_BIN" server --help 2>&1 || true)"
if ! grep -q -- 'relay-node-mbps' <<<"$SERVER_HELP"; then echo "SKIP: p2pvpn has no relay yet"; exit 77; fi
# a relay without TLS yet: row 9 fails (clearly), the rest runs
HAVE_TLS=0; TLS_ARGS=()
if grep -q -- '--tls-listen' <<<"$SERVER_HELP"; then HAVE_TLS=1; TLS_ARGS=(--tls-listen 198.51.100.1:443); fi

PORT=7400
ONLY="${RELAY_ONLY:-a,b,c,d}"
[[ ",$ONLY," == *,d,* ]] && ONLY="$ONLY,a,c"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

declare -A VIP=()      # host -> its virtual address (from `join`)
SUMMARY=()             # "id<TAB>result<TAB>figure"
FIG="-"                # set by a check function: the figure for the summary table
T_START=$SECONDS

# shellcheck disable=SC2317  # called by the EXIT trap
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]] && [[ "${MX_DUMP_LOGS:-1}" != 0 ]]; then
        echo "# last 25 lines of every process log:"
        lab_dump_logs 25 2>&1 | sed 's/^/# /'
    fi
    return 0
}

now_ms() { date +%s%3N; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

# rcheck ID DESCRIPTION FUNC ARGS... : check, plus a summary row with FIG.
rcheck() {
    local id="$1" desc="$2" before="$FAILED" res=ok; shift 2
    FIG="-"
    check "$id $desc" "$@"
    ((FAILED == before)) || res="not ok"
    SUMMARY+=("$id $desc"$'\t'"$res"$'\t'"$FIG")
}

# ---------------------------------------------------------------- server
# shellcheck disable=SC2206  # word splitting of the extra arguments wanted
EXTRA_SERVER_ARGS=(${RELAY_SERVER_ARGS:-})
SERVER_N=0
server_start() {  # server_start : spawn the server (label server, server2, ...), wait until it listens
    SERVER_N=$((SERVER_N + 1))
    SERVER_LABEL=server; ((SERVER_N == 1)) || SERVER_LABEL="server$SERVER_N"
    lab_spawn server "$SERVER_LABEL" -- "$P2P_BIN" server --listen "198.51.100.1:$PORT" \
        --listen "198.51.100.2:$PORT" "${TLS_ARGS[@]}" --state-dir "$SERVER_STATE" \
        "${EXTRA_SERVER_ARGS[@]}"
    local rc=0
    lab_wait_ready 30 "$SERVER_LABEL" "p2pvpn server listening on" || rc=$?
    return "$rc"
}
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }

# pair_setup NET CIDR A B : network create, an invite and a join for A and B; VIP[A/B].
pair_setup() {
    local net="$1" cidr="$2" n tok t0
    srv network create "$net" --cidr "$cidr" --state-dir "$SERVER_STATE" \
        >>"$LAB_TMP/logs/network-create.log" 2>&1 || { why "network create $net failed"; return 1; }
    for n in "$3" "$4"; do
        tok="$(srv network invite "$net" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" || true
        [[ -n "$tok" ]] || { why "invite for $n failed"; return 1; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        # (60 s: a node without UDP or plain TCP to the server tries every address first)
        t0="$(now_ms)"
        P2P_TIMEOUT=60 p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || { why "$n join failed: $(tail -n 2 "$LAB_TMP/logs/$n-join.log" | tr '\n' ' ')"; return 1; }
        note "$n joined $net in $(($(now_ms) - t0)) ms"
        p2p_wireguard "$n" "$net"
        VIP[$n]="$(grep -oE '\(([0-9]+\.){3}[0-9]+/[0-9]+[,)]' "$LAB_TMP/logs/$n-join.log" | head -n 1 | tr -d '(),' | cut -d/ -f1)"
        [[ -n "${VIP[$n]}" ]] || { why "no virtual address in $n's join output"; return 1; }
    done
}

# up NAME NET : `p2pvpn up` in the background (label NAME-up).
up() { p2p_spawn "$1" "$1-up" up --network "$2"; }

# pinger NAME DST SECS LABEL : ping -D -i 0.2 DST from NAME for at most SECS, restarted while
# it cannot send yet (no interface or route) - so it can start together with `up`. Before
# the VPN route exists the echo requests follow the host's default route into the lab's
# internet namespace, which has no route for 10.x and answers "net unreachable".
pinger() {
    # shellcheck disable=SC2016  # expanded by the inner bash
    lab_spawn "$1" "$4" -- timeout "$(($3 + 5))" bash -c '
        trap "kill \$p 2>/dev/null; exit 0" TERM
        end=$((SECONDS + $2))
        while ((SECONDS < end)); do
            ping -D -n -i 0.2 -W 1 -w "$((end - SECONDS))" "$1" & p=$!
            wait "$p" || true
            sleep 0.2
        done' _ "$2" "$3"
}
# first_reply_ms LABEL T0_MS : ms from T0 to the first echo reply in a pinger's log, or empty.
first_reply_ms() {
    awk -v t0="$2" '/bytes from/ && match($0, /^\[[0-9.]+\]/) {
        printf "%d\n", substr($0, 2, RLENGTH - 2) * 1000 - t0; exit }' "$(lab_logfile "$1")"
}
has_reply() { grep -q 'bytes from' "$(lab_logfile "$1")"; }

# pingn FROM DST N : N pings (0.2 s apart); prints "received/N"; 0 if all answered.
pingn() {
    local out got
    out="$(lab_exec "$1" ping -n -c "$3" -i 0.2 -W 2 "$2" 2>&1)" || true
    got="$(grep -oE '[0-9]+ received' <<<"$out" | grep -oE '^[0-9]+' || echo 0)"
    printf '%s/%s\n' "$got" "$3"
    [[ "$got" == "$3" ]]
}

# route_of NAME NET PEER : "PATH RELAY" (see p2p_peer_route)
route_of() { p2p_peer_route "$@"; }

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
SERVER_STATE="$LAB_TMP/server/state"
lab_build server
server_start || setup_fail "server did not start: $(tail -n 5 "$(lab_logfile server)" | tr '\n' ' ')"

# up_and_time_first_reply A B NET LABEL : bring A and B up on NET and ping B from A from that
# moment (20 s at most); sets TTFR_MS to the ms from `up` to the first reply, or empty. (Not a
# command substitution: the processes it starts must stay the script's own.)
up_and_time_first_reply() {
    local t0
    t0="$(now_ms)"
    up "$1" "$3"; up "$2" "$3"
    pinger "$1" "${VIP[$2]}" 20 "$4"
    lab_wait_for 21 has_reply "$4" || true
    sleep 1
    lab_stop "$4" TERM 3 || true
    TTFR_MS="$(first_reply_ms "$4" "$t0")"
}

# ================================================================ a: row 7, RND - RND
A_OK=0
a_ttfr() {
    local ms
    up_and_time_first_reply r7a r7b r7 r7-ping
    ms="$TTFR_MS"
    [[ -n "$ms" ]] || { why "no reply from ${VIP[r7b]} within 20 s of up; A sees $(route_of r7a r7 r7b), B sees $(route_of r7b r7 r7a)"; return 1; }
    FIG="first reply ${ms} ms after up"
    note "r7a -> r7b: $FIG"
}
a_relay_udp() {
    local ra rb
    lab_wait_for 10 p2p_peer_is r7a r7 r7b relay udp || true
    lab_wait_for 5 p2p_peer_is r7b r7 r7a relay udp || true
    ra="$(route_of r7a r7 r7b)"; rb="$(route_of r7b r7 r7a)"
    FIG="A: $ra, B: $rb"
    note "path/relay: $FIG; r7a technique_detail $(p2p_field r7a r7 "next((p.get('technique_detail') for p in j['peers'] if p['name'] == 'r7b'), None)" 2>/dev/null || echo '?'), last_failure $(p2p_field r7a r7 "next(((p.get('punch') or {}).get('last_failure') for p in j['peers'] if p['name'] == 'r7b'), None)" 2>/dev/null || echo '?')"
    [[ "$ra" == "relay udp" ]] || { why "r7a -> r7b: '$ra', expected 'relay udp'"; return 1; }
    [[ "$rb" == "relay udp" ]] || { why "r7b -> r7a: '$rb', expected 'relay udp'"; return 1; }
}
a_ping() {
    local x y rc=0
    x="$(pingn r7a "${VIP[r7b]}" 5)" || rc=1
    y="$(pingn r7b "${VIP[r7a]}" 5)" || rc=1
    FIG="A->B $x, B->A $y"
    ((rc == 0)) || why "ping over the relay: $FIG"
}
# path_ping FROM NET PEER WANT : `p2pvpn ping` 3 times; every reply must name path WANT.
path_ping() {
    local out n
    out="$(p2p "$1" ping "$3" --network "$2" --count 3 --interval 0.2 2>&1)" || { why "p2pvpn ping $3 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    n="$(grep -cF "path=$4" <<<"$out" || true)"
    FIG="$(head -n 1 <<<"$out")"
    ((n == 3)) || { why "expected 3 replies with path=$4: $(tr '\n' ' ' <<<"$out")"; return 1; }
}
if want a; then
    note "--- a: row 7, RND - RND through the UDP relay"
    lab_build r7a:RND r7b:RND
    if pair_setup r7 10.97.7.0/24 r7a r7b; then
        rcheck a1 "row 7 RND-RND: ping answers within 20 s of up" a_ttfr
        rcheck a2 "row 7 RND-RND: both sides show path relay over udp" a_relay_udp
        rcheck a3 "row 7 RND-RND: ping both ways over the relay (5/5)" a_ping
        rcheck a4 "row 7 RND-RND: p2pvpn ping names the path relay (udp)" path_ping r7a r7 r7b "relay (udp)"
        A_OK=1
    else
        rcheck a0 "row 7 RND-RND: network and joins" false
    fi
fi

# ================================================================ b: row 9, UDP blocked
b_lab() {
    # the lab itself: from r9a, TCP 443 to the server connects, TCP 7400 does not
    lab_exec r9a timeout 3 bash -c "exec 3<>/dev/tcp/198.51.100.1/443" 2>/dev/null ||
        { why "r9a cannot open TCP 198.51.100.1:443"; return 1; }
    if lab_exec r9a timeout 3 bash -c "exec 3<>/dev/tcp/198.51.100.1/$PORT" 2>/dev/null; then
        why "r9a reaches TCP 198.51.100.1:$PORT despite UDPBLK443"; return 1
    fi
    FIG="443 open, $PORT blocked"
}
b_ttfr() {
    local ms
    up_and_time_first_reply r9a r9b r9 r9-ping
    ms="$TTFR_MS"
    [[ -n "$ms" ]] || { why "no reply from ${VIP[r9b]} within 20 s of up; A sees $(route_of r9a r9 r9b), server.tls $(p2p_field r9a r9 "(j.get('server') or {}).get('tls')" 2>/dev/null || echo '?')"; return 1; }
    FIG="first reply ${ms} ms after up"
    note "r9a -> r9b: $FIG"
    ((ms < 20000)) || { why "first reply after ${ms} ms (>= 20 s)"; return 1; }
}
b_tls() {
    local ra rb tls
    lab_wait_for 10 p2p_peer_is r9a r9 r9b relay tls || true
    ra="$(route_of r9a r9 r9b)"; rb="$(route_of r9b r9 r9a)"
    tls="$(p2p_field r9a r9 "(j.get('server') or {}).get('tls')" 2>/dev/null || echo '?')"
    FIG="A: $ra, server.tls $tls; B: $rb"
    note "$FIG"
    [[ "$tls" == true ]] || { why "r9a server.tls is '$tls'"; return 1; }
    [[ "$ra" == "relay tls" ]] || { why "r9a -> r9b: '$ra', expected 'relay tls'"; return 1; }
}
b_ping() {
    local x y rc=0
    x="$(pingn r9a "${VIP[r9b]}" 5)" || rc=1
    y="$(pingn r9b "${VIP[r9a]}" 5)" || rc=1
    FIG="A->B $x, B->A $y"
    ((rc == 0)) || why "ping over the TLS relay: $FIG"
}
if want b; then
    note "--- b: row 9, UDPBLK443 - PRC through the TLS relay"
    lab_build r9a:UDPBLK443 r9b:PRC
    if ((!HAVE_TLS)); then
        rcheck b0 "row 9: the server has --tls-listen" why "p2pvpn server --help shows no --tls-listen"
    elif pair_setup r9 10.97.9.0/24 r9a r9b; then
        rcheck b0 "row 9 lab: UDPBLK443 host reaches TCP 443 but not TCP $PORT" b_lab
        rcheck b1 "row 9 UDPBLK443-PRC: first ping reply < 20 s after up" b_ttfr
        rcheck b2 "row 9 UDPBLK443-PRC: server.tls true, path relay over tls" b_tls
        rcheck b3 "row 9 UDPBLK443-PRC: ping both ways over the TLS relay (5/5)" b_ping
        rcheck b4 "row 9 UDPBLK443-PRC: p2pvpn ping names the path relay (tls)" path_ping r9a r9 r9b "relay (tls)"
    else
        rcheck b0 "row 9: network and joins" false
    fi
    # not needed any more
    P2P_TIMEOUT=5 p2p r9a down --network r9 >/dev/null 2>&1 || true
    P2P_TIMEOUT=5 p2p r9b down --network r9 >/dev/null 2>&1 || true
    lab_stop r9a-up TERM 3 >/dev/null 2>&1 || true
    lab_stop r9b-up TERM 3 >/dev/null 2>&1 || true
    lab_remove r9a r9b
fi

# ================================================================ c: blackhole
C_OK=0
C_IPERF_RC="-"
C_RELAY_A=""; C_RELAY_B=""; C_FLAP=""; C_DIRECT_AFTER=""; C_T_BLOCK=0; C_T_UNBLOCK=0; C_T_IPERF=0; C_BLOCK_DROPS=0
c_direct() {
    local t0; t0="$(now_ms)"
    up bha bh; up bhb bh
    lab_wait_for 30 p2p_peer_is bha bh bhb direct || true
    lab_wait_for 10 p2p_peer_is bhb bh bha direct || true
    local ra rb; ra="$(route_of bha bh bhb)"; rb="$(route_of bhb bh bha)"
    FIG="A: $ra, B: $rb after $(($(now_ms) - t0)) ms"
    [[ "${ra% *}" == direct && "${rb% *}" == direct ]] || { why "not direct before the block: $FIG"; return 1; }
}
# iperf_listening NAME : an iperf3 server listens on TCP 5201 in NAME.
iperf_listening() { [[ -n "$(lab_exec "$1" ss -Hltn 'sport = :5201')" ]]; }
# c_run : iperf3 with the block in the middle, polling status; sets the C_* figures.
c_run() {
    local pa pb json="$LAB_TMP/iperf-blackhole.json" t ra rb
    pa="$(lab_public_ip bha)"; pb="$(lab_public_ip bhb)"
    lab_spawn bhb iperf-s -- timeout 90 iperf3 -s -1 -J
    lab_wait_for 10 iperf_listening bhb || { why "iperf3 -s did not start: $(tail -n 3 "$(lab_logfile iperf-s)" | tr '\n' ' ')"; return 1; }
    C_T_IPERF="$(now_ms)"
    # shellcheck disable=SC2016  # expanded by the inner bash
    lab_spawn bha iperf-c -- bash -c 'exec timeout 60 iperf3 -c "$1" -t 24 -i 1 --json --get-server-output --connect-timeout 5000 >"$2"' _ "${VIP[bhb]}" "$json"
    local deadline=$((C_T_IPERF + 50000)) blocked=0 unblocked=0 done=0
    while :; do
        t="$(now_ms)"
        ((t < deadline)) || break
        lab_alive iperf-c || done=1
        if ((!blocked && t - C_T_IPERF >= 6000)); then
            lab_block_udp "$pa" "$pb" lab_block || { why "nft block failed"; lab_stop iperf-c KILL 1 || true; return 1; }
            C_T_BLOCK="$(now_ms)"; blocked=1
            note "blocked UDP $pa <-> $pb at +$((C_T_BLOCK - C_T_IPERF)) ms"
        elif ((blocked && !unblocked && t - C_T_IPERF >= 14000)); then
            C_BLOCK_DROPS="$(lab_blocked_packets lab_block)"
            lab_unblock lab_block
            C_T_UNBLOCK="$(now_ms)"; unblocked=1
            note "unblocked at +$((C_T_UNBLOCK - C_T_IPERF)) ms ($C_BLOCK_DROPS datagrams dropped)"
        fi
        if ((!blocked)); then
            ((done)) && { why "iperf3 ended before the block: $(head -c 300 "$json" | tr '\n' ' ')"; break; }
        elif ((!unblocked)); then
            # (the time of the poll that first showed it: up to ~0.7 s late)
            if [[ -z "$C_RELAY_A" ]]; then
                ra="$(route_of bha bh bhb)"
                [[ "${ra% *}" == relay ]] && C_RELAY_A="$(($(now_ms) - C_T_BLOCK)) ms (${ra#* })"
            fi
            if [[ -z "$C_RELAY_B" ]]; then
                rb="$(route_of bhb bh bha)"
                [[ "${rb% *}" == relay ]] && C_RELAY_B="$(($(now_ms) - C_T_BLOCK)) ms (${rb#* })"
            fi
            if [[ -n "$C_RELAY_A" && -n "$C_RELAY_B" ]]; then
                # once on the relay, a blocked direct path must not come back
                ra="$(route_of bha bh bhb)"
                [[ "${ra% *}" == direct ]] && C_FLAP+=" +$(($(now_ms) - C_T_BLOCK))ms"
            fi
        else
            if [[ -z "$C_DIRECT_AFTER" ]] && ((t - C_T_UNBLOCK <= 30000)); then
                ra="$(route_of bha bh bhb)"; rb="$(route_of bhb bh bha)"
                if [[ "${ra% *}" == direct && "${rb% *}" == direct ]]; then
                    C_DIRECT_AFTER="$(($(now_ms) - C_T_UNBLOCK))"
                    note "direct again on both sides $C_DIRECT_AFTER ms after unblocking"
                fi
            fi
            if ((done)) && [[ -n "$C_DIRECT_AFTER" ]] || ((done && t - C_T_UNBLOCK > 30000)); then break; fi
        fi
        sleep 0.4
    done
    ((unblocked)) || { C_BLOCK_DROPS="$(lab_blocked_packets lab_block)"; lab_unblock lab_block; }
    lab_wait_for 5 lab_exited iperf-c || lab_stop iperf-c KILL 1 || true
    C_IPERF_RC=0; lab_stop iperf-c TERM 1 || C_IPERF_RC=$?
    lab_stop iperf-s TERM 2 >/dev/null 2>&1 || true
}
# c_analyse : per-second receiver throughput from the iperf3 JSON -> C_ANALYSIS (key=value lines)
C_ANALYSIS=""
c_analyse() {
    C_ANALYSIS="$(python3 - "$LAB_TMP/iperf-blackhole.json" "$((C_T_BLOCK - C_T_IPERF))" "$((C_T_UNBLOCK - C_T_IPERF))" <<'PY'
import json, statistics, sys
path, b0, b1 = sys.argv[1], int(sys.argv[2]) / 1000, int(sys.argv[3]) / 1000
try:
    j = json.load(open(path))
except Exception as e:
    print("error=cannot read iperf3 JSON: %s" % str(e).replace("\n", " ")); sys.exit(0)
if j.get("error"):
    print("error=%s" % j["error"])
srv = j.get("server_output_json") or {}
side = "receiver"
iv = srv.get("intervals") or []
if not iv:
    side, iv = "sender", j.get("intervals") or []
rows = [(x["sum"]["start"], x["sum"]["end"], x["sum"]["bytes"]) for x in iv]
print("side=%s" % side)
print("intervals=%d" % len(rows))
streak = best = 0.0
for s, e, b in rows:
    if b == 0:
        streak += e - s; best = max(best, streak)
    else:
        streak = 0.0
print("max_zero_s=%.1f" % best)
mb = lambda s, e, b: b * 8 / 1e6 / max(e - s, 1e-3)
inb = [mb(*r) for r in rows if b0 <= (r[0] + r[1]) / 2 < b1]
out = [mb(*r) for r in rows if not b0 <= (r[0] + r[1]) / 2 < b1]
f = lambda xs: "%.1f/%.1f" % (min(xs), statistics.median(xs)) if xs else "-"
print("block=%s" % f(inb))
print("outside=%s" % f(out))
print("series=%s" % " ".join("%.0f" % mb(*r) for r in rows))
end = j.get("end") or {}
print("received_mbit=%.1f" % ((end.get("sum_received") or {}).get("bits_per_second", 0) / 1e6))
print("sent_bytes=%d" % (end.get("sum_sent") or {}).get("bytes", 0))
print("retransmits=%s" % (end.get("sum_sent") or {}).get("retransmits", "-"))
PY
)"
}
cget() { sed -n "s/^$1=//p" <<<"$C_ANALYSIS" | head -n 1; }
c_survived() {
    c_run || return 1
    c_analyse
    note "iperf3 exit $C_IPERF_RC; $(cget side) Mbit/s per second: $(cget series)"
    note "block: min/median $(cget block) Mbit/s; outside: $(cget outside) Mbit/s; average $(cget received_mbit) Mbit/s, retransmits $(cget retransmits)"
    FIG="avg $(cget received_mbit) Mbit/s, exit $C_IPERF_RC"
    [[ "$C_IPERF_RC" == 0 ]] || { why "iperf3 exited $C_IPERF_RC"; }
    [[ -z "$(cget error)" ]] || { why "iperf3: $(cget error)"; return 1; }
    [[ "$C_IPERF_RC" == 0 ]] || return 1
    [[ "$(cget intervals)" -ge 20 ]] || { why "only $(cget intervals) intervals"; return 1; }
    [[ "$C_BLOCK_DROPS" -gt 0 ]] || { why "the block dropped nothing: the path was not where we thought"; return 1; }
}
c_gap() {
    local z; z="$(cget max_zero_s)"
    FIG="longest zero stretch ${z:-?} s; block $(cget block), outside $(cget outside) Mbit/s min/median"
    [[ -n "$z" ]] || { why "no throughput data"; return 1; }
    awk -v z="$z" 'BEGIN { exit !(z <= 4.0) }' || {
        why "$(cget side) saw zero throughput for $z s in a row; Mbit/s per second: $(cget series)"
        why "relay after the block began: A ${C_RELAY_A:-never}, B ${C_RELAY_B:-never}"
        return 1
    }
}
c_relay() {
    FIG="relay after A: ${C_RELAY_A:-never}, B: ${C_RELAY_B:-never}"
    [[ -z "$C_FLAP" ]] || note "bha showed direct again while still blocked at$C_FLAP"
    [[ -n "$C_RELAY_A" ]] || { why "bha never showed path relay during the 8 s block"; return 1; }
    [[ -n "$C_RELAY_B" ]] || { why "bhb never showed path relay during the 8 s block"; return 1; }
}
c_upgrade() {
    FIG="${C_DIRECT_AFTER:-not} ms after unblocking"
    [[ -n "$C_DIRECT_AFTER" ]] || { why "not direct on both sides 30 s after unblocking: A $(route_of bha bh bhb), B $(route_of bhb bh bha)"; return 1; }
}
if want c; then
    note "--- c: blackhole, PRC - PRC: direct -> relay -> direct under iperf3"
    lab_build bha:PRC bhb:PRC
    if pair_setup bh 10.97.12.0/24 bha bhb; then
        rcheck c0 "blackhole PRC-PRC: direct before the block" c_direct
        if [[ "${SUMMARY[-1]}" == *$'\t'ok$'\t'* ]]; then
            rcheck c1 "blackhole: iperf3 TCP survives an 8 s UDP block of the direct path" c_survived
            rcheck c2 "blackhole: no zero-throughput stretch longer than 4 s" c_gap
            rcheck c3 "blackhole: both sides show path relay during the block" c_relay
            rcheck c4 "blackhole: direct again on both sides within 30 s of unblocking" c_upgrade
        fi
        C_OK=1
    else
        rcheck c0 "blackhole: network and joins" false
    fi
fi

# ================================================================ d: server restart
d_before() {
    local p q rc=0
    p="$(pingn bha "${VIP[bhb]}" 3)" || rc=1
    q="$(pingn r7a "${VIP[r7b]}" 3)" || rc=1
    FIG="P $p, Q $q"
    ((rc == 0)) || why "before the restart: $FIG"
}
d_outage() {
    lab_stop "$SERVER_LABEL" TERM 5 || true
    lab_alive "$SERVER_LABEL" && { why "server still running"; return 1; }
    sleep 2
    local p q rc=0 pa
    p="$(pingn bha "${VIP[bhb]}" 5)" || rc=1
    q="$(pingn r7a "${VIP[r7b]}" 2)" || true
    pa="$(route_of bha bh bhb)"
    FIG="P $p ($pa), Q $q"
    note "server down: ping P (direct) $p, path $pa; ping Q (relay) $q"
    ((rc == 0)) || why "ping over the direct pair during the outage: $p"
}
ping1() { lab_exec "$1" ping -n -c 1 -W 1 "$2" >/dev/null 2>&1; }
d_restart() {
    local t0 rc=0
    t0="$(now_ms)"
    server_start || rc=$?
    ((rc == 0)) || { why "server did not restart ($rc): $(tail -n 5 "$(lab_logfile "$SERVER_LABEL")" | tr '\n' ' ')"; return 1; }
    note "server listening again after $(($(now_ms) - t0)) ms"
    lab_wait_for 40 ping1 r7a "${VIP[r7b]}" || true
    local took=$(($(now_ms) - t0))
    if ((took > 40000)) || ! ping1 r7a "${VIP[r7b]}"; then
        FIG="Q not answering after ${took} ms"
        why "Q (RND-RND) does not ping 40 s after the restart: A $(route_of r7a r7 r7b), server.connected $(p2p_field r7a r7 "(j.get('server') or {}).get('connected')" 2>/dev/null || echo '?')"
        return 1
    fi
    FIG="Q pings ${took} ms after restart ($(route_of r7a r7 r7b)); P $(route_of bha bh bhb)"
}
if want d; then
    note "--- d: server restart with P (PRC-PRC, direct) and Q (RND-RND, relay) up"
    if ((A_OK && C_OK)); then
        rcheck d0 "restart: P and Q ping before the restart" d_before
        rcheck d1 "restart: ping over the direct pair P works while the server is down" d_outage
        rcheck d2 "restart: the relayed pair Q pings again within 40 s of the restart" d_restart
    else
        rcheck d0 "restart: pairs P and Q exist (checks a and c set up)" false
    fi
fi

# ---------------------------------------------------------------- summary
echo
note "summary:"
{
    printf 'check\tresult\tfigure\n'
    printf '%s\n' "${SUMMARY[@]}"
} | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
w = [max(len(r[i]) for r in rows) for i in range(2)]
for n, r in enumerate(rows):
    print("# " + "  ".join([r[0].ljust(w[0]), r[1].ljust(w[1]), r[2]]))
    if n == 0:
        print("# " + "  ".join(["-" * w[0], "-" * w[1], "------"]))
'
if ((FAILED)); then
    printf '# failed: %s\n' "${FAILED_NAMES[@]}"
fi
echo "netns-relay: $PASSED passed, $FAILED failed in $((SECONDS - T_START)) s"
((FAILED == 0))
