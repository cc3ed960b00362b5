#!/usr/bin/env bash
# scripts/relay-bench.sh - throughput and latency over the VPN in the NAT lab (docs:
# nat-lab.md) for a direct pair and for pairs that go through the server's relay:
#
#   direct  PRC - PRC          hole-punched, direct path
#   udp     RND - RND          row 7: no direct path, UDP relay through the server
#   tls     UDPBLK443 - PRC    row 9: UDP blocked and TCP only to 80/443, relay inside the
#                              TLS control stream (server --tls-listen 198.51.100.1:443)
#
# One server (198.51.100.1 and .2 port 7400) serves all pairs, which are set up once and
# stay up. Per round and pair: TCP iperf3 for 6 s from A to B's virtual address
# (receiver-side Mbit/s), then 20 pings (-i 0.2, RTT min/avg/max and loss), and the server
# process's CPU use during the iperf3 run. Rounds are interleaved (round 1: every pair,
# round 2: every pair, ...); the table shows medians. A benchmark, not a test: no
# thresholds, exit 0 unless the lab itself cannot be built.
#
# Usage (root): scripts/relay-bench.sh [--rounds N] [--only direct,udp,tls] [--time S]
#                                      [--server-args "--relay-node-mbps 500 ..."]
#   P2PVPN_BIN   p2pvpn binary (default target/release/p2pvpn)
#   LAB_KEEP=1   keep logs and raw results
# All traffic stays inside the namespaces this script creates (torn down on exit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

ROUNDS=1
DURATION=6
ONLY=""
SERVER_EXTRA=""
ALL_KINDS=(direct udp tls)
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
        --only) ONLY="${2:?--only needs a list}"; shift 2 ;;
        --time) DURATION="${2:?--time needs seconds}"; shift 2 ;;
        --server-args) SERVER_EXTRA="${2?--server-args needs a string}"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "--rounds must be 1..99" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "--time must be 1..99 seconds" >&2; exit 2; }
KINDS=()
if [[ -n "$ONLY" ]]; then
    IFS=, read -r -a _want <<<"$ONLY"
    for k in "${_want[@]}"; do
        case "$k" in
            direct | udp | tls) KINDS+=("$k") ;;
            *) echo "unknown pair '$k' (direct, udp, tls)" >&2; exit 2 ;;
        esac
    done
else
    KINDS=("${ALL_KINDS[@]}")
fi

log() { printf '[relay-bench] %s\n' "$*" >&2; }
[[ $EUID -eq 0 ]] || { echo "relay-bench.sh needs root (network namespaces, TUN)" >&2; exit 2; }
if m="$(lab_missing ip nft python3 ping timeout iperf3 ss)"; then echo "missing: $m" >&2; exit 2; fi
P2P_BIN="$(p2p_bin_default)"
[[ -x "$P2P_BIN" ]] || { echo "p2pvpn binary not found: $P2P_BIN (build it or set P2PVPN_BIN)" >&2; exit 2; }
SERVER_HELP="$(timeout 10 "$P2P_BIN" server --help 2>&1 || true)"
HAVE_RELAY=0; HAVE_TLS=0
grep -q -- 'relay-node-mbps' <<<"$SERVER_HELP" && HAVE_RELAY=1
grep -q -- '--tls-listen' <<<"$SERVER_HELP" && HAVE_TLS=1

PORT=7400
declare -A NA=()         # kind -> why it was not measured
declare -A HA=() HB=()   # kind -> host names
declare -A NATS=() EXPECT=() NET=()
declare -A VIP=()        # host -> virtual address
declare -A REACHED=()    # kind -> "path relay after N ms"
NATS=([direct]="PRC - PRC" [udp]="RND - RND" [tls]="UDPBLK443 - PRC")
EXPECT=([direct]="direct -" [udp]="relay udp" [tls]="relay tls")
((HAVE_RELAY)) || { NA[udp]="binary has no relay"; NA[tls]="binary has no relay"; }
((HAVE_TLS)) || NA[tls]="${NA[tls]:-server has no --tls-listen}"

lab_init
RESULTS="$LAB_TMP/results.tsv"     # kind round mbit rtt_min rtt_avg rtt_max loss% srv_cpu% path
: >"$RESULTS"
now_ms() { date +%s%3N; }
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }

# ---------------------------------------------------------------- server
STATE="$LAB_TMP/server/state"
SERVER_ARGS=(server --listen "198.51.100.1:$PORT" --listen "198.51.100.2:$PORT" --state-dir "$STATE")
((HAVE_TLS)) && SERVER_ARGS+=(--tls-listen 198.51.100.1:443)
# shellcheck disable=SC2206  # word splitting of the extra arguments wanted
[[ -n "$SERVER_EXTRA" ]] && SERVER_ARGS+=($SERVER_EXTRA)
lab_build server
lab_spawn server server -- "$P2P_BIN" "${SERVER_ARGS[@]}"
SERVER_PID="$LAB_LAST_PID"
lab_wait_ready 30 server "p2pvpn server listening on" || {
    tail -n 20 "$(lab_logfile server)" >&2; echo "server did not start" >&2; exit 2
}
log "binary $P2P_BIN; server ${SERVER_ARGS[*]:1}; ${#KINDS[@]} pair(s), $ROUNDS round(s)"

# server_cpu_ticks : utime + stime of the server process (clock ticks)
server_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0; }
CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- pairs
# pair_up KIND : build, join and bring up the pair; wait (30 s) for the expected path.
pair_up() {
    local k="$1" i=0 a b net tok n t0 r
    case "$k" in
        direct) a=bda; b=bdb; i=1 ;;
        udp) a=bua; b=bub; i=2 ;;
        tls) a=bta; b=btb; i=3 ;;
    esac
    net="rb$k"; HA[$k]="$a"; HB[$k]="$b"; NET[$k]="$net"
    local pa="${NATS[$k]% - *}" pb="${NATS[$k]#* - }"
    lab_build "$a:$pa" "$b:$pb"
    srv network create "$net" --cidr "10.96.$i.0/24" --state-dir "$STATE" >>"$LAB_TMP/logs/network-create.log" 2>&1 ||
        { NA[$k]="network create failed"; return 1; }
    for n in "$a" "$b"; do
        tok="$(srv network invite "$net" --uses 1 --state-dir "$STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" || true
        [[ -n "$tok" ]] || { NA[$k]="invite failed"; return 1; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        P2P_TIMEOUT=60 p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 ||
            { NA[$k]="$n join failed: $(tail -n 1 "$LAB_TMP/logs/$n-join.log")"; return 1; }
        VIP[$n]="$(grep -oE '\(([0-9]+\.){3}[0-9]+/[0-9]+[,)]' "$LAB_TMP/logs/$n-join.log" | head -n 1 | tr -d '(),' | cut -d/ -f1)"
        [[ -n "${VIP[$n]}" ]] || { NA[$k]="no virtual address for $n"; return 1; }
    done
    t0="$(now_ms)"
    p2p_spawn "$a" "$a-up" up --network "$net"
    p2p_spawn "$b" "$b-up" up --network "$net"
    # shellcheck disable=SC2086  # "PATH RELAY" as two words
    if lab_wait_for 30 p2p_peer_is "$a" "$net" "$b" ${EXPECT[$k]}; then
        REACHED[$k]="$(($(now_ms) - t0)) ms"
    else
        REACHED[$k]="not in 30 s"
    fi
    r="$(p2p_peer_route "$a" "$net" "$b")"
    log "$k (${NATS[$k]}): $a -> $b is '$r' (${REACHED[$k]}), expected '${EXPECT[$k]}'"
}

# measure KIND ROUND : one iperf3 run and 20 pings; appends a line to RESULTS.
measure() {
    local k="$1" rnd="$2" a="${HA[$1]}" b="${HB[$1]}" json mbit="-" c0 c1 t0 t1 cpu="-" out rtt loss route
    json="$LAB_TMP/iperf-$k-$rnd.json"
    route="$(p2p_peer_route "$a" "${NET[$k]}" "$b")"
    lab_spawn "$b" "iperf-s-$k-$rnd" -- timeout $((DURATION + 30)) iperf3 -s -1 -J
    if lab_wait_for 10 iperf_listening "$b"; then
        c0="$(server_cpu_ticks)"; t0="$(now_ms)"
        lab_exec "$a" timeout $((DURATION + 20)) iperf3 -c "${VIP[$b]}" -t "$DURATION" -J \
            --connect-timeout 5000 >"$json" 2>>"$LAB_TMP/logs/iperf-c.log" || true
        c1="$(server_cpu_ticks)"; t1="$(now_ms)"
        cpu="$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", c / hz * 100000 / (ms > 0 ? ms : 1) }')"
        mbit="$(python3 -c '
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    bps = ((j.get("end") or {}).get("sum_received") or {}).get("bits_per_second")
    print("%.1f" % (bps / 1e6) if bps and not j.get("error") else "-")
except Exception:
    print("-")' "$json")"
    else
        log "$k round $rnd: iperf3 -s did not start"
    fi
    lab_stop "iperf-s-$k-$rnd" TERM 2 >/dev/null 2>&1 || true
    out="$(lab_exec "$a" ping -n -c 20 -i 0.2 -W 2 "${VIP[$b]}" 2>&1)" || true
    rtt="$(sed -n 's/^rtt [^=]*= \([0-9.]*\)\/\([0-9.]*\)\/\([0-9.]*\)\/.*/\1 \2 \3/p' <<<"$out")"
    [[ -n "$rtt" ]] || rtt="- - -"
    loss="$(grep -oE '[0-9.]+% packet loss' <<<"$out" | grep -oE '^[0-9.]+' || echo 100)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$rnd" "$mbit" "${rtt// /$'\t'}" "$loss" "$cpu" "$route" >>"$RESULTS"
    log "$k round $rnd: $mbit Mbit/s, rtt min/avg/max ${rtt// //} ms, loss $loss%, server cpu $cpu%, path '$route'"
}
iperf_listening() { [[ -n "$(lab_exec "$1" ss -Hltn 'sport = :5201')" ]]; }

T0=$SECONDS
for k in "${KINDS[@]}"; do
    [[ -n "${NA[$k]:-}" ]] && { log "$k: skipped (${NA[$k]})"; continue; }
    pair_up "$k" || log "$k: ${NA[$k]}"
done
for ((r = 1; r <= ROUNDS; r++)); do
    for k in "${KINDS[@]}"; do
        [[ -n "${NA[$k]:-}" ]] || measure "$k" "$r"
    done
done

# ---------------------------------------------------------------- table
echo
echo "relay-bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), binary $P2P_BIN"
SHOWN_ARGS="${SERVER_ARGS[*]:1}"
echo "  iperf3 TCP ${DURATION} s A -> B (receiver side), 20 pings A -> B; medians over $ROUNDS round(s)"
echo "  server ${SHOWN_ARGS/--state-dir $STATE/--state-dir ...}"
echo
for k in "${KINDS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$k" "${NATS[$k]}" "${EXPECT[$k]}" "${REACHED[$k]:--}" "${NA[$k]:-}"
done >"$LAB_TMP/pairs.tsv"
python3 - "$LAB_TMP/pairs.tsv" "$RESULTS" <<'PY'
import statistics, sys
pairs = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
res = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
def num(xs):
    out = []
    for x in xs:
        try:
            out.append(float(x))
        except ValueError:
            pass
    return out
def med(xs, fmt="%.1f"):
    xs = num(xs)
    return fmt % statistics.median(xs) if xs else "-"
head = ["pair", "NATs", "path (A's view)", "time to path", "Mbit/s", "per round", "RTT avg ms", "RTT min/max", "loss %", "server CPU %"]
rows = [head]
for k, nats, expect, reached, na in pairs:
    rs = [r for r in res if r[0] == k]
    if na or not rs:
        rows.append([k, nats, "-", "-", "-", "-", "-", "-", "-", na or "not measured"])
        continue
    show = lambda p: p[:-2] if p.endswith(" -") else p
    paths = sorted(set(r[8] for r in rs))
    rows.append([k, nats, ", ".join(map(show, paths)) + ("" if paths == [expect] else " (expected %s)" % show(expect)), reached,
                 med([r[2] for r in rs]), " ".join(r[2] for r in rs), med([r[4] for r in rs], "%.2f"),
                 "%s/%s" % (med([r[3] for r in rs], "%.2f"), med([r[5] for r in rs], "%.2f")),
                 med([r[6] for r in rs], "%.0f"), med([r[7] for r in rs], "%.0f")])
w = [max(len(r[i]) for r in rows) for i in range(len(head))]
for n, r in enumerate(rows):
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    if n == 0:
        print("  ".join("-" * x for x in w))
PY
echo
echo "relay-bench: done in $((SECONDS - T0)) s"
