#!/usr/bin/env bash
# scripts/load.sh - load test of the rendezvous server: a real `p2pvpn server` on loopback and
# the load generator (examples/loadgen: thousands of real control clients, each with its own
# TCP socket, in one process), all nodes in one network. Per size: join rate, registration
# ("hello") rate after all nodes connect at once, time until every node knows every other one
# online, server RSS (and per 1,000 online nodes), server CPU during that storm and when idle,
# peer-update latency p50/p99 (a node changes its endpoints; during the storm: a node learning
# of one that registered after it), punch offers and relay frames forwarded, and with --restart
# a server restart with everyone online (time until all are back, connection attempts, and
# disconnects beyond the restart itself). A benchmark, not a test: no thresholds.
#
# Usage: scripts/load.sh [--nodes "100 1000 10000"] [--restart] [--bin PATH] [--no-build]
#                        [--timeout S]
#   --bin PATH   the server binary (default target/release/p2pvpn), e.g. an older build to
#                compare against
#   --no-build   use the binaries as they are (default: cargo build --release first)
#   --timeout S  bound on each phase of the generator (default 300)
#   LOADGEN=PATH the load generator (default target/release/examples/loadgen)
#   LOAD_KEEP=1  keep the state directories and logs
# Everything listens on and talks to 127.0.0.2 only; every process started here is stopped on
# exit. Needs about two file descriptors per node in each process: the limit is raised to the
# hard limit, and a size that does not fit is refused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SIZES="100 1000 10000"
RESTART=0
BIN="target/release/p2pvpn"
LOADGEN="${LOADGEN:-target/release/examples/loadgen}"
BUILD=1
TIMEOUT=300
ADDR="127.0.0.2"
PORT=17611
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) SIZES="${2:?--nodes needs a list}"; shift 2 ;;
        --restart) RESTART=1; shift ;;
        --bin) BIN="${2:?--bin needs a path}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --timeout) TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ "$TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "--timeout must be 1..9999 seconds" >&2; exit 2; }
for n in $SIZES; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] && ((n >= 2 && n <= 60000)) \
        || { echo "node counts must be 2..60000, not '$n'" >&2; exit 2; }
done

log() { printf '[load] %s\n' "$*" >&2; }

if ((BUILD)); then
    log "building (release)"
    cargo build --release --bin p2pvpn --example loadgen
fi
[[ -x "$BIN" ]] || { echo "no server binary at $BIN (build it, or pass --bin)" >&2; exit 1; }
[[ -x "$LOADGEN" ]] || { echo "no load generator at $LOADGEN (cargo build --release --example loadgen)" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS="$(ulimit -n)"

DIR=""
SERVER_PID=""
GEN_PID=""
cleanup() {
    [[ -n "$GEN_PID" ]] && kill "$GEN_PID" 2>/dev/null && wait "$GEN_PID" 2>/dev/null
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    GEN_PID=""
    SERVER_PID=""
    if [[ -n "$DIR" && -z "${LOAD_KEEP:-}" ]]; then rm -rf "$DIR"; fi
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() {
    "$BIN" --log-level info server --listen "$ADDR:$PORT" --relay-max-nodes "$1" \
        --state-dir "$DIR/server" >>"$DIR/server.out" 2>>"$DIR/server.log" &
    SERVER_PID=$!
    echo "$SERVER_PID" >"$DIR/server.pid"
    for _ in $(seq 100); do
        grep -q "listening on" "$DIR/server.out" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "the server did not start; its log:" >&2
    cat "$DIR/server.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

declare -A R
run_size() {
    local n="$1"
    if ((FDS < n + 200)); then
        log "skipping $n nodes: the file descriptor limit is $FDS"
        return
    fi
    DIR="$(mktemp -d /tmp/p2pvpn-load.XXXXXX)"
    : >"$DIR/server.out"
    "$BIN" network create load --cidr 10.128.0.0/16 --state-dir "$DIR/server" >/dev/null
    start_server "$n"
    local token
    token="$("$BIN" network invite load --uses "$n" --server "$ADDR:$PORT" \
        --state-dir "$DIR/server" 2>/dev/null)"
    local args=(--token "$token" --nodes "$n" --server-pid-file "$DIR/server.pid"
        --phase-timeout-secs "$TIMEOUT")
    ((RESTART)) && args+=(--restart)
    log "$n nodes"
    "$LOADGEN" "${args[@]}" >"$DIR/loadgen.out" 2>"$DIR/loadgen.err" &
    GEN_PID=$!
    local restarted=0
    while kill -0 "$GEN_PID" 2>/dev/null; do
        if ((RESTART && !restarted)) && grep -q "^LOADGEN restart" "$DIR/loadgen.out" 2>/dev/null; then
            log "restarting the server with $n nodes online"
            stop_server
            start_server "$n"
            restarted=1
        fi
        sleep 0.2
    done
    wait "$GEN_PID" || log "the load generator failed for $n nodes: $(tail -3 "$DIR/loadgen.err")"
    GEN_PID=""
    while IFS='=' read -r k v; do
        R["$n.${k#result }"]="$v"
    done < <(grep '^result ' "$DIR/loadgen.out")
    R["$n.not_reading"]="$(grep -c 'node is not reading' "$DIR/server.log" || true)"
    stop_server
    cleanup
}

for n in $SIZES; do run_size "$n"; done

g() { echo "${R[$1.$2]:--}"; }
printf '\n%-28s' "nodes in one network"
for n in $SIZES; do printf '%18s' "$n"; done
printf '\n'
row() {
    local label="$1"; shift
    printf '%-28s' "$label"
    for n in $SIZES; do
        local cell=""
        for k in "$@"; do cell="${cell:+$cell/}$(g "$n" "$k")"; done
        printf '%18s' "$cell"
    done
    printf '\n'
}
row "joins/s" join_rate
row "registrations/s" hello_rate
row "all know all (s)" full_map_secs
row "server RSS online (MB)" server_rss_online_mb
row "server RSS MB/1000 nodes" server_rss_mb_per_1000
row "server CPU s, storm" storm_server_cpu_secs
row "server CPU %, idle" idle_server_cpu_pct
row "loadgen CPU s, storm" storm_loadgen_cpu_secs
row "storm update p50/p99 ms" storm_latency_p50_ms storm_latency_p99_ms
row "update p50/p99 ms" update_latency_p50_ms update_latency_p99_ms
row "punch delivered" punch_delivered
row "punch p50/p99 ms" punch_latency_p50_ms punch_latency_p99_ms
row "relay sent/delivered" relay_sent relay_delivered
row "disconnects in storm" storm_disconnects
row "'not reading' cut-offs" not_reading
if ((RESTART)); then
    row "restart: all back (s)" restart_registered_secs
    row "restart: all know all (s)" restart_full_map_secs
    row "restart: connects" restart_connects
    row "restart: disconnects" restart_disconnects
fi
row "loadgen RSS (MB)" loadgen_rss_mb
