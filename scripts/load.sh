#!/usr/bin/env bash
# scripts/load.sh - load test of the rendezvous server: real `p2pvpn server`s on loopback and
# the load generator (examples/loadgen: thousands of real control clients, each with its own
# TCP socket, in one process), all nodes in one network. Per size: join rate, registration
# ("hello") rate after all nodes connect at once, time until every node knows every other one
# online, server RSS (and per 1,000 online nodes), server CPU during that storm and when idle,
# peer-update latency p50/p99 (a node changes its endpoints; during the storm: a node learning
# of one that registered after it), punch offers and relay frames forwarded, and with --restart
# a server restart with everyone online (time until all are back, connection attempts, and
# disconnects beyond the restart itself). A benchmark, not a test: no thresholds.
#
# Usage: scripts/load.sh [--nodes "100 1000 10000"] [--store sqlite|pg] [--servers 1|2]
#                        [--compare] [--restart] [--bin PATH] [--no-build] [--timeout S]
#   --store pg   keep the server's records in a throwaway PostgreSQL (initdb + pg_ctl into a
#                temp dir, 127.0.0.1 only, as the `postgres` user when run as root) instead
#                of server.db
#   --servers 2  two servers on one PostgreSQL (implies --store pg), 127.0.0.2 and 127.0.0.3,
#                the same server.key; the token names both (from `network invite` without
#                --server) and node i joins through and first registers with server i mod 2,
#                so half the joins go to the standby and its nodes move to the primary
#   --compare    run each size three times: 1 server on SQLite, 1 on PostgreSQL, 2 on
#                PostgreSQL, side by side in one table
#   --bin PATH   the server binary (default target/release/p2pvpn), e.g. an older build to
#                compare against
#   --no-build   use the binaries as they are (default: cargo build --release first)
#   --timeout S  bound on each phase of the generator (default 300)
#   LOADGEN=PATH the load generator (default target/release/examples/loadgen)
#   PG_BIN=DIR   PostgreSQL's programs (default: the newest /usr/lib/postgresql/*/bin)
#   LOAD_KEEP=1  keep the state directories and logs
# Everything listens on and talks to 127.0.0.1-3 only; every process started here (servers,
# generator, PostgreSQL) is stopped on exit. Needs about two file descriptors per node in each
# process: the limit is raised to the hard limit, and a size that does not fit is refused.
# Server CPU and RSS rows are the primary's (the server on 127.0.0.2); "CPU s, run" gives every
# server's and PostgreSQL's CPU over the whole generator run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SIZES="100 1000 10000"
RESTART=0
BIN="target/release/p2pvpn"
LOADGEN="${LOADGEN:-target/release/examples/loadgen}"
BUILD=1
TIMEOUT=300
STORE=""
NSERVERS=1
COMPARE=0
ADDRS=(127.0.0.2 127.0.0.3)
PORT=17611
PGPORT=17640
usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) SIZES="${2:?--nodes needs a list}"; shift 2 ;;
        --store) STORE="${2:?--store needs sqlite or pg}"; shift 2 ;;
        --servers) NSERVERS="${2:?--servers needs 1 or 2}"; shift 2 ;;
        --compare) COMPARE=1; shift ;;
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
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || ((n < 2 || n > 60000)); then
        echo "node counts must be 2..60000, not '$n'" >&2
        exit 2
    fi
done
[[ "$NSERVERS" == 1 || "$NSERVERS" == 2 ]] || { echo "--servers must be 1 or 2" >&2; exit 2; }
case "$STORE" in
    "") if ((NSERVERS == 2)); then STORE=pg; else STORE=sqlite; fi ;;
    sqlite) ((NSERVERS == 1)) || { echo "two servers need --store pg (they share it)" >&2; exit 2; } ;;
    pg) ;;
    *) echo "--store must be sqlite or pg" >&2; exit 2 ;;
esac
# A setup is STORE:SERVERS; --compare runs the three side by side.
if ((COMPARE)); then SETUPS=(sqlite:1 pg:1 pg:2); else SETUPS=("$STORE:$NSERVERS"); fi
if ((RESTART)) && [[ " ${SETUPS[*]} " == *":2 "* ]]; then
    # With two servers a restart of the primary is a failover, which the generator's restart
    # phase (all down, then all back) does not measure; tests/netns/servers.sh covers it.
    echo "--restart is for one server; not with --servers 2 or --compare" >&2
    exit 2
fi

log() { printf '[load] %s\n' "$*" >&2; }

if ((BUILD)); then
    log "building (release)"
    cargo build --release --bin p2pvpn --example loadgen
fi
[[ -x "$BIN" ]] || { echo "no server binary at $BIN (build it, or pass --bin)" >&2; exit 1; }
[[ -x "$LOADGEN" ]] || { echo "no load generator at $LOADGEN (cargo build --release --example loadgen)" >&2; exit 1; }

NEED_PG=0
[[ " ${SETUPS[*]} " == *" pg:"* ]] && NEED_PG=1
if ((NEED_PG)); then
    PG_BIN="${PG_BIN:-$(dirname "$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)")}"
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] \
        || { echo "PostgreSQL is not installed (apt-get install postgresql, or set PG_BIN)" >&2; exit 1; }
    if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
        echo "as root, PostgreSQL runs as the 'postgres' user, which does not exist (apt-get install postgresql)" >&2
        exit 1
    fi
    if (echo >"/dev/tcp/127.0.0.1/$PGPORT") 2>/dev/null; then
        echo "127.0.0.1:$PGPORT is in use; this script starts its own PostgreSQL there" >&2
        exit 1
    fi
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS="$(ulimit -n)"

DIR=""
PGDIR=""
SERVER_PIDS=()
GEN_PID=""
# `|| true` after each wait: a process stopped by a signal makes `wait` fail, and under set -e
# that would end the cleanup there, leaving the rest running.
stop_all_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        if [[ -n "$pid" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    SERVER_PIDS=()
}
cleanup_run() {
    if [[ -n "$GEN_PID" ]]; then
        kill "$GEN_PID" 2>/dev/null || true
        wait "$GEN_PID" 2>/dev/null || true
    fi
    GEN_PID=""
    stop_all_servers
    if [[ -n "$DIR" && -z "${LOAD_KEEP:-}" ]]; then rm -rf "$DIR"; fi
    DIR=""
    true
}
# PostgreSQL's programs run as `postgres` when we are root (it refuses root), from its own
# directory (ours may be unreadable to that user).
pg_run() {
    if ((EUID == 0)); then
        (cd "$PGDIR" && timeout 90 runuser -u postgres -- "$PG_BIN/$1" "${@:2}")
    else
        (cd "$PGDIR" && timeout 90 "$PG_BIN/$1" "${@:2}")
    fi
}
cleanup() {
    trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
    cleanup_run
    if [[ -n "$PGDIR" ]]; then
        pg_run pg_ctl -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        if [[ -z "${LOAD_KEEP:-}" ]]; then rm -rf "$PGDIR"; else log "kept PostgreSQL's files in $PGDIR"; fi
    fi
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_postgres() {
    PGDIR="$(mktemp -d /tmp/p2pvpn-load-pg.XXXXXX)"
    chmod 0755 "$PGDIR"
    ((EUID == 0)) && chown postgres:postgres "$PGDIR"
    log "starting PostgreSQL on 127.0.0.1:$PGPORT ($PGDIR)"
    pg_run initdb -D "$PGDIR/data" -U postgres --auth=trust --no-sync --no-locale -E UTF8 \
        >"$PGDIR/initdb.log" 2>&1 || { echo "initdb failed:" >&2; tail -n 5 "$PGDIR/initdb.log" >&2; exit 1; }
    # fsync off (-F): the figures are the server's cost, not this disk's.
    pg_run pg_ctl -D "$PGDIR/data" -l "$PGDIR/log" -w -t 60 \
        -o "-h 127.0.0.1 -p $PGPORT -k $PGDIR -F -c max_connections=100" start >/dev/null 2>&1 \
        || { echo "PostgreSQL did not start:" >&2; tail -n 5 "$PGDIR/log" >&2; exit 1; }
}
# A fresh database per run (sets PG_URL; not in a subshell, the counter must stick).
PG_DBS=0
PG_URL=""
new_database() {
    PG_DBS=$((PG_DBS + 1))
    pg_run createdb -h 127.0.0.1 -p "$PGPORT" -U postgres "load$PG_DBS" >/dev/null
    PG_URL="postgres://postgres@127.0.0.1:$PGPORT/load$PG_DBS"
}

# CPU ticks (user + system) of a process; for PostgreSQL also of its live children and of the
# children it has reaped, so a backend that came and went is counted.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
    local main child sum
    main="$(head -n 1 "$PGDIR/data/postmaster.pid" 2>/dev/null)" || { echo 0; return; }
    sum="$(awk '{print $14 + $15 + $16 + $17}' "/proc/$main/stat" 2>/dev/null || echo 0)"
    for child in $(pgrep -P "$main" 2>/dev/null); do
        sum=$((sum + $(ticks "$child")))
    done
    echo "$sum"
}
HZ="$(getconf CLK_TCK)"
secs() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }'; }

STORE_ARGS=()
start_server() { # start_server INDEX NODES
    local i="$1"
    : >"$DIR/server$i.out"
    # Every generated node connects from 127.0.0.1: lift the per-address cap (default 256)
    # above the node count, or the rest are refused and the storm never settles.
    "$BIN" --log-level info server --listen "${ADDRS[$i]}:$PORT" --relay-max-nodes "$2" \
        --max-conns "$(($2 + 256))" --max-conns-per-ip "$(($2 + 256))" \
        --state-dir "$DIR/server$i" "${STORE_ARGS[@]}" \
        >>"$DIR/server$i.out" 2>>"$DIR/server$i.log" &
    SERVER_PIDS[i]=$!
    echo "${SERVER_PIDS[$i]}" >"$DIR/server$i.pid"
    for _ in $(seq 300); do
        grep -q "listening on" "$DIR/server$i.out" 2>/dev/null && return 0
        kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $i did not start; its log:" >&2
    cat "$DIR/server$i.log" >&2
    exit 1
}

stop_server() { # stop_server INDEX
    kill -TERM "${SERVER_PIDS[$1]}" 2>/dev/null || true
    wait "${SERVER_PIDS[$1]}" 2>/dev/null || true
    SERVER_PIDS[$1]=""
}

# The servers a token names (its JSON's "s"), one per line.
token_servers() {
    local b64="${1#*-}"
    b64="$(printf '%s' "$b64" | tr '_-' '/+')"
    while ((${#b64} % 4)); do b64="$b64="; done
    printf '%s' "$b64" | base64 -d 2>/dev/null | grep -oE '"s":\[[^]]*\]' | grep -oE '[0-9.]+:[0-9]+' || true
}

declare -A R
run_size() { # run_size SETUP NODES
    local setup="$1" n="$2" store="${1%:*}" nservers="${1#*:}" i
    if ((FDS < n + 200)); then
        log "skipping $n nodes: the file descriptor limit is $FDS"
        return
    fi
    DIR="$(mktemp -d /tmp/p2pvpn-load.XXXXXX)"
    STORE_ARGS=()
    if [[ "$store" == pg ]]; then
        new_database
        STORE_ARGS=(--store "$PG_URL")
    fi
    local admin=(--state-dir "$DIR/server0" "${STORE_ARGS[@]}")
    start_server 0 "$n"
    for ((i = 1; i < nservers; i++)); do
        # One deployment, one identity: every server has the first one's key.
        mkdir -p "$DIR/server$i"
        cp "$DIR/server0/server.key" "$DIR/server$i/server.key"
        start_server "$i" "$n"
    done
    # After the first server started: it creates the state (key, database) the command checks.
    "$BIN" network create load --cidr 10.128.0.0/16 "${admin[@]}" >/dev/null
    local token="" named=0
    if ((nservers == 1)); then
        token="$("$BIN" network invite load --uses "$n" --server "${ADDRS[0]}:$PORT" \
            "${admin[@]}" 2>/dev/null | tail -n 1)"
    else
        # Without --server the token names every live server, primary first; each server
        # records itself within a second of starting.
        for _ in $(seq 50); do
            token="$("$BIN" network invite load --uses "$n" "${admin[@]}" 2>/dev/null | tail -n 1)"
            named="$(token_servers "$token" | wc -l)"
            ((named >= nservers)) && break
            sleep 0.2
        done
        if ((named < nservers)); then
            echo "the token names $named servers, not $nservers: $(token_servers "$token" | tr '\n' ' ')" >&2
            exit 1
        fi
        log "the token names $(token_servers "$token" | tr '\n' ' ')"
    fi
    local args=(--token "$token" --nodes "$n" --server-pid-file "$DIR/server0.pid"
        --phase-timeout-secs "$TIMEOUT")
    ((RESTART)) && args+=(--restart)
    ((nservers > 1)) && args+=(--spread)
    log "$n nodes, $nservers server(s) on $store"
    local -a t0=()
    for ((i = 0; i < nservers; i++)); do t0[i]="$(ticks "${SERVER_PIDS[$i]}")"; done
    local pg0=0
    [[ "$store" == pg ]] && pg0="$(pg_ticks)"
    "$LOADGEN" "${args[@]}" >"$DIR/loadgen.out" 2>"$DIR/loadgen.err" &
    GEN_PID=$!
    local restarted=0
    while kill -0 "$GEN_PID" 2>/dev/null; do
        if ((RESTART && !restarted)) && grep -q "^LOADGEN restart" "$DIR/loadgen.out" 2>/dev/null; then
            log "restarting the server with $n nodes online"
            stop_server 0
            start_server 0 "$n"
            restarted=1
        fi
        sleep 0.2
    done
    wait "$GEN_PID" || log "the load generator failed for $n nodes: $(tail -3 "$DIR/loadgen.err")"
    GEN_PID=""
    local k="$setup.$n" cpu="" not_reading=0
    while IFS='=' read -r key v; do
        R["$k.${key#result }"]="$v"
    done < <(grep '^result ' "$DIR/loadgen.out")
    for ((i = 0; i < nservers; i++)); do
        # A restarted server's ticks start again from zero; then only its second life counts.
        local d=$(($(ticks "${SERVER_PIDS[$i]}") - t0[i]))
        ((d < 0)) && d=$(($(ticks "${SERVER_PIDS[$i]}")))
        cpu="${cpu:+$cpu/}$(secs "$d")"
        not_reading=$((not_reading + $(grep -c 'node is not reading' "$DIR/server$i.log" || true)))
    done
    R["$k.run_server_cpu"]="$cpu"
    [[ "$store" == pg ]] && R["$k.run_pg_cpu"]="$(secs $(($(pg_ticks) - pg0)))"
    R["$k.not_reading"]="$not_reading"
    cleanup_run
}

((NEED_PG)) && start_postgres
for n in $SIZES; do
    for setup in "${SETUPS[@]}"; do run_size "$setup" "$n"; done
done

W=17
g() { echo "${R[$1.$2]:--}"; }
printf '\n%-30s' "nodes in one network"
for n in $SIZES; do for setup in "${SETUPS[@]}"; do printf "%${W}s" "$n"; done; done
printf '\n%-30s' "store, servers"
for n in $SIZES; do
    for setup in "${SETUPS[@]}"; do
        [[ "$setup" == sqlite:1 ]] && label="SQLite, 1" || label="PostgreSQL, ${setup#*:}"
        printf "%${W}s" "$label"
    done
done
printf '\n'
row() {
    local label="$1"; shift
    printf '%-30s' "$label"
    for n in $SIZES; do
        for setup in "${SETUPS[@]}"; do
            local cell=""
            for k in "$@"; do cell="${cell:+$cell/}$(g "$setup.$n" "$k")"; done
            printf "%${W}s" "$cell"
        done
    done
    printf '\n'
}
row "joins/s" join_rate
row "registrations/s" hello_rate
row "all know all (s)" full_map_secs
row "storm update p50/p99 ms" storm_latency_p50_ms storm_latency_p99_ms
row "update p50/p99 ms" update_latency_p50_ms update_latency_p99_ms
row "connects in storm" storm_connects
row "disconnects in storm" storm_disconnects
row "server RSS online (MB)" server_rss_online_mb
row "server RSS MB/1000 nodes" server_rss_mb_per_1000
row "server CPU s, joins" join_server_cpu_secs
row "server CPU s, storm" storm_server_cpu_secs
row "server CPU %, idle" idle_server_cpu_pct
row "CPU s, run: server(s)" run_server_cpu
row "CPU s, run: PostgreSQL" run_pg_cpu
row "loadgen CPU s, storm" storm_loadgen_cpu_secs
row "punch delivered" punch_delivered
row "punch p50/p99 ms" punch_latency_p50_ms punch_latency_p99_ms
row "relay sent/delivered" relay_sent relay_delivered
row "'not reading' cut-offs" not_reading
if ((RESTART)); then
    row "restart: all back (s)" restart_registered_secs
    row "restart: all know all (s)" restart_full_map_secs
    row "restart: connects" restart_connects
    row "restart: disconnects" restart_disconnects
fi
row "loadgen RSS (MB)" loadgen_rss_mb
