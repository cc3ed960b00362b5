#!/usr/bin/env bash
# tests/netns/servers.sh - several servers on one PostgreSQL (issue 15) with the real binary in
# the NAT lab (docs: nat-lab.md). A PostgreSQL cluster (initdb/pg_ctl into the lab's temp dir,
# as the `postgres` user) runs in its own namespace at 198.51.100.50:5432; server A listens on
# 198.51.100.1/.2:7400, server B on 198.51.100.3/.4:7400, both with --store on that database
# and the same server.key (copied from A). Four nodes behind NATs: n1 FC, n2 PRC, n3 and n4 RND
# (n3 - n4 is row 7: relayed). n1 and n2 join with tokens naming A first, n3 and n4 with tokens
# naming B first, so they start on different servers.
#
#   a  every node registers, on the deployment's primary (A: up longest), and knows the other
#      server to fail over to (status `server.others`); every node pings every other
#   b  SIGKILL A while an iperf3 TCP transfer runs over the relayed pair n3 -> n4: every pair
#      pings again within 5 s of the kill, every node is on B, and the transfer survives (iperf3
#      ends well, and no second after the first 6 s of the kill carries nothing)
#   c  A restarts: every node keeps its address, B stays the primary (nobody moves), every
#      pair pings; the servers' metrics show each other and the store up
#   d  `network remove-member` through A cuts n4, registered with B, within 2 s: B drops it
#      (its peers forget it) and n4 is refused
#   e  n1 saved the deployment's list (B first) in its state directory; stopped, its config
#      rewritten to name only A (as if it joined before B existed), A killed, n1 started again:
#      it registers with B within 20 s and pings n2
# Prints `ok - ...` / `not ok - ...` per check and a summary line; exits 1 if a check failed,
# 77 (after `SKIP: reason`) when it cannot run here (not root, a tool or PostgreSQL missing),
# 2 on setup errors.
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn; tests/netns.rs sets the debug one)
#   LAB_KEEP=1   keep the temp dir (logs, state, database)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if m="$(lab_missing ip nft python3 ping timeout iperf3 runuser curl)"; then echo "SKIP: $m not installed"; exit 77; fi
if [[ ! -c /dev/net/tun ]]; then echo "SKIP: no /dev/net/tun"; exit 77; fi
PG_BIN="$(dirname "$(find /usr/lib/postgresql -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)")"
if [[ ! -x "$PG_BIN/initdb" ]]; then echo "SKIP: PostgreSQL is not installed (apt-get install postgresql)"; exit 77; fi
if ! id postgres >/dev/null 2>&1; then echo "SKIP: no postgres user (apt-get install postgresql)"; exit 77; fi
P2P_BIN="$(p2p_bin_default)"
if [[ ! -x "$P2P_BIN" ]]; then echo "p2pvpn binary not found: $P2P_BIN" >&2; exit 2; fi
if ! timeout 10 "$P2P_BIN" server --help 2>&1 | grep -q -- '--store'; then echo "SKIP: p2pvpn has no --store"; exit 77; fi

PORT=7400
A1=198.51.100.1; A2=198.51.100.2; B1=198.51.100.3; B2=198.51.100.4; DB=198.51.100.50
NET=mesh
NODES=(n1 n2 n3 n4)
declare -A VIP=()
T_START=$SECONDS

pg() { lab_exec db runuser -u postgres -- "$PG_BIN/$1" "${@:2}"; }

# shellcheck disable=SC2317  # called by the EXIT trap
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]] && [[ "${MX_DUMP_LOGS:-1}" != 0 ]]; then
        echo "# last 25 lines of every process log:"
        lab_dump_logs 25 2>&1 | sed 's/^/# /'
    fi
    if [[ -d "${LAB_TMP:-}/pg/data" ]]; then pg pg_ctl -D "$LAB_TMP/pg/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
    return 0
}

now_ms() { date +%s%3N; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
lab_build server n1:FC n2:PRC n3:RND n4:RND
lab_add_server srvb "$B1" "$B2"
lab_add_open_host db "$DB"
URL="postgres://postgres@$DB:5432/postgres"

# ---------------------------------------------------------------- PostgreSQL
mkdir -p "$LAB_TMP/pg"; chown postgres:postgres "$LAB_TMP/pg"
pg initdb -D "$LAB_TMP/pg/data" -U postgres --auth=trust --no-sync --no-locale -E UTF8 \
    >"$LAB_TMP/logs/initdb.log" 2>&1 || setup_fail "initdb failed: $(tail -n 3 "$LAB_TMP/logs/initdb.log")"
echo "host all all 198.51.100.0/24 trust" >>"$LAB_TMP/pg/data/pg_hba.conf"
pg pg_ctl -D "$LAB_TMP/pg/data" -l "$LAB_TMP/pg/log" -w -t 60 \
    -o "-h $DB -p 5432 -k $LAB_TMP/pg -F -c max_connections=40" start >/dev/null 2>&1 ||
    setup_fail "PostgreSQL did not start: $(tail -n 5 "$LAB_TMP/pg/log" 2>/dev/null)"

# ---------------------------------------------------------------- servers
STATE_A="$LAB_TMP/srva/state"; STATE_B="$LAB_TMP/srvb/state"
mkdir -p "$STATE_A" "$STATE_B"
srv_start() {  # srv_start NS LABEL STATE IP1 IP2 [METRICS]
    lab_spawn "$1" "$2" -- "$P2P_BIN" server --listen "$4:$PORT" --listen "$5:$PORT" \
        --store "$URL" --state-dir "$3" --metrics "127.0.0.1:9102"
    lab_wait_ready 30 "$2" "p2pvpn server listening on"
}
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@" --store "$URL" --state-dir "$STATE_A"; }
metrics() { lab_exec "$1" curl -s --max-time 3 http://127.0.0.1:9102/metrics; }

srv_start server srva "$STATE_A" "$A1" "$A2" || setup_fail "server A did not start: $(tail -n 5 "$(lab_logfile srva)" | tr '\n' ' ')"
cp "$STATE_A/server.key" "$STATE_B/server.key"
srv_start srvb srvb "$STATE_B" "$B1" "$B2" || setup_fail "server B did not start: $(tail -n 5 "$(lab_logfile srvb)" | tr '\n' ' ')"
# both heartbeats in the list before the invites name them
lab_wait_for 10 bash -c "curl_out=\$(ip netns exec $(lab_ns server) curl -s http://127.0.0.1:9102/metrics); grep -q 'p2pvpn_server_peer_servers 1' <<<\"\$curl_out\"" ||
    setup_fail "server A does not see server B in the store"

srv network create "$NET" --cidr 10.77.0.0/24 >"$LAB_TMP/logs/network-create.log" 2>&1 ||
    setup_fail "network create failed: $(cat "$LAB_TMP/logs/network-create.log")"
for n in "${NODES[@]}"; do
    case "$n" in
        n1 | n2) order=(--server "$A1:$PORT" --server "$B1:$PORT") ;;
        *) order=(--server "$B1:$PORT" --server "$A1:$PORT") ;;
    esac
    tok="$(srv network invite "$NET" --uses 1 "${order[@]}" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" || true
    [[ -n "$tok" ]] || setup_fail "invite for $n failed: $(tail -n 2 "$LAB_TMP/logs/invite.log")"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join failed: $(tail -n 2 "$LAB_TMP/logs/$n-join.log")"
    VIP[$n]="$(grep -oE '\(([0-9]+\.){3}[0-9]+/[0-9]+[,)]' "$LAB_TMP/logs/$n-join.log" | head -n 1 | tr -d '(),' | cut -d/ -f1)"
    [[ -n "${VIP[$n]}" ]] || setup_fail "no virtual address in $n's join output"
done
# a token made without --server names every live server, primary first
AUTO="$(srv network invite "$NET" --uses 1 2>/dev/null | tail -n 1)"
AUTO_SERVERS="$(python3 -c 'import base64,json,sys; t=sys.argv[1].split("-",1)[1]; t+="="*(-len(t)%4); print(",".join(json.loads(base64.urlsafe_b64decode(t))["s"]))' "$AUTO" 2>/dev/null || echo '?')"
note "a token made without --server names: $AUTO_SERVERS"
for n in "${NODES[@]}"; do p2p_spawn "$n" "$n-up" up --network "$NET"; done

server_of() { p2p_field "$1" "$NET" "j['server']['address'] if j['server']['connected'] else ''" 2>/dev/null; }
on_server() { [[ "$(server_of "$1")" == "$2:$PORT" ]]; }
all_on() { local n; for n in "${NODES[@]}"; do on_server "$n" "$1" || return 1; done; }
addr_of() { p2p_field "$1" "$NET" "j.get('virtual_ip') or ''" 2>/dev/null; }

# ping_all_within SECS : every pair (both ways) answers one ping within SECS, in parallel.
# Sets WORST_MS (the slowest first reply) and names the pairs that did not answer.
ping_all_within() {
    local secs="$1" a b t0 pids=() labels=() i rc=0 out
    t0="$(now_ms)"
    mkdir -p "$LAB_TMP/pings"
    for a in "${NODES[@]}"; do for b in "${NODES[@]}"; do
        [[ "$a" != "$b" ]] || continue
        ( if lab_exec "$a" ping -n -i 0.2 -c 1 -w "$secs" "${VIP[$b]}" >/dev/null 2>&1; then
              echo "$(($(now_ms) - t0))" >"$LAB_TMP/pings/$a-$b"
          else echo fail >"$LAB_TMP/pings/$a-$b"; fi ) &
        pids+=("$!"); labels+=("$a-$b")
    done; done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || true; done
    WORST_MS=0
    PAIR_MS=""
    for i in "${labels[@]}"; do
        out="$(cat "$LAB_TMP/pings/$i")"
        PAIR_MS+="$i $out, "
        if [[ "$out" == fail ]]; then why "$i: no reply within $secs s"; rc=1
        elif ((out > WORST_MS)); then WORST_MS="$out"; fi
    done
    return "$rc"
}

# ================================================================ a
a_primary() {
    lab_wait_for 30 all_on "$A1" || { why "servers: n1 $(server_of n1), n2 $(server_of n2), n3 $(server_of n3), n4 $(server_of n4); expected all on $A1:$PORT"; return 1; }
    local others; others="$(p2p_field n3 "$NET" "','.join(j['server'].get('others', []))")"
    note "n3 (token: B first) is on $(server_of n3), fails over to $others"
    [[ "$others" == *"$B1:$PORT"* ]] || { why "n3 does not list B as a server to fail over to: '$others'"; return 1; }
}
check "a1 every node meets on the primary (A), B known to fail over to" a_primary
a_ping() {
    ping_all_within 30 || return 1
    note "every pair answered; slowest first reply ${WORST_MS} ms"
}
check "a2 every node pings every other" a_ping
lab_wait_for 20 p2p_peer_is n3 "$NET" n4 relay || true
note "n3 -> n4: $(p2p_peer_route n3 "$NET" n4) (row 7: relay expected)"

# ================================================================ b
b_kill() {
    local t0 ms rc=0
    lab_spawn n4 iperf-server -- timeout 60 iperf3 -s -1 -B "${VIP[n4]}"
    sleep 1
    lab_spawn n3 iperf-client -- timeout 60 iperf3 -c "${VIP[n4]}" -t 20 -i 1 -b 4M -J
    sleep 5
    t0="$(now_ms)"
    kill -KILL "$(lab_pid srva)"
    note "SIGKILLed server A"
    ping_all_within 5 || rc=1
    note "first reply per pair (ms after the pings started): ${PAIR_MS%, }"
    note "after the kill, every pair's first reply within $(( $(now_ms) - t0 )) ms of the kill (slowest pair ${WORST_MS} ms after the pings started)"
    lab_wait_for 5 all_on "$B1" || { why "not every node on B: n1 $(server_of n1), n2 $(server_of n2), n3 $(server_of n3), n4 $(server_of n4)"; rc=1; }
    lab_wait_for 30 lab_exited iperf-client || true
    local ipf; ipf="$(lab_logfile iperf-client)"
    python3 - "$ipf" <<'PY' || rc=1
import json, sys
j = json.load(open(sys.argv[1]))
if "error" in j:
    print("#   iperf3: " + j["error"]); sys.exit(1)
secs = [i["sum"]["bytes"] for i in j["intervals"]]
print("#   relayed transfer, bytes per second: " + " ".join(str(b // 1000) + "k" for b in secs))
# the kill came ~5 s in; allow the failover (reconnect, relay rebind, TCP's retransmit
# backoff) 6 s, after that every second must carry data
late = secs[11:]
if not late or min(late) == 0:
    print("#   a second without data more than 6 s after the kill"); sys.exit(1)
print("#   received %.1f MB in %d s" % (j["end"]["sum_received"]["bytes"] / 1e6, len(secs)))
PY
    return "$rc"
}
check "b1 SIGKILL A: every pair pings within 5 s, all on B, the relayed transfer survives" b_kill

# ================================================================ c
c_restart() {
    local n rc=0
    declare -A BEFORE=()
    for n in "${NODES[@]}"; do BEFORE[$n]="$(addr_of "$n")"; done
    srv_start server srva2 "$STATE_A" "$A1" "$A2" || { why "server A did not start again"; return 1; }
    sleep 3
    for n in "${NODES[@]}"; do
        [[ "$(addr_of "$n")" == "${BEFORE[$n]}" && "${BEFORE[$n]}" == "${VIP[$n]}" ]] ||
            { why "$n: address ${VIP[$n]} at join, ${BEFORE[$n]} before, $(addr_of "$n") after the restart"; rc=1; }
        on_server "$n" "$B1" || { why "$n moved to $(server_of "$n") (B should stay primary)"; rc=1; }
    done
    [[ "$(srv network members "$NET" 2>/dev/null | grep -c '10\.77\.0\.')" == 4 ]] || { why "members through A: $(srv network members "$NET" 2>&1 | tr '\n' ' ')"; rc=1; }
    ping_all_within 10 || rc=1
    local ma mb; ma="$(metrics server)"; mb="$(metrics srvb)"
    grep -q "p2pvpn_server_peer_server{address=\"$B1:$PORT\"} 1" <<<"$ma" || { why "A's metrics do not show B"; rc=1; }
    grep -q "p2pvpn_server_peer_server{address=\"$A1:$PORT\"} 1" <<<"$mb" || { why "B's metrics do not show A"; rc=1; }
    grep -q "p2pvpn_server_primary 1" <<<"$mb" || { why "B is not the primary in its metrics"; rc=1; }
    grep -q "p2pvpn_server_store_up 1" <<<"$ma" || { why "A's metrics: store not up"; rc=1; }
    return "$rc"
}
check "c1 A restarts: no address changed, nobody moves, every pair pings, metrics show the peers" c_restart

# ================================================================ d
d_remove() {
    local t0 t1 ms
    t0="$(now_ms)"
    srv network remove-member "$NET" n4 >"$LAB_TMP/logs/remove.log" 2>&1 || { why "remove-member failed: $(cat "$LAB_TMP/logs/remove.log")"; return 1; }
    t1="$(now_ms)"
    lab_wait_for 4 lab_not p2p_has_peer n1 "$NET" n4 || { why "n1 (on B) still lists n4 4 s after remove-member through A"; return 1; }
    ms=$(($(now_ms) - t1))
    note "n1 (on B) forgot n4 ${ms} ms after remove-member through A returned ($(($(now_ms) - t0)) ms after it started; status polled every 0.2 s)"
    ((ms <= 2000)) || { why "took ${ms} ms (> 2 s)"; return 1; }
    lab_wait_for 3 grep -q "was removed from network" "$(lab_logfile n4-up)" ||
        { why "n4 was not told it was removed: $(tail -n 2 "$(lab_logfile n4-up)" | tr '\n' ' ')"; return 1; }
}
check "d1 remove-member through A cuts n4 (on B) within 2 s" d_remove

# ================================================================ e
e_learned() {
    local conf="$LAB_TMP/n1/etc/$NET.toml" saved="$LAB_TMP/n1/state/$NET/servers" t0 ms
    # n1 keeps the deployment's list, primary (B) first, for its next start.
    [[ -f "$saved" ]] || { why "n1 saved no server list at $saved"; return 1; }
    head -n 3 "$saved" | grep -q "^plain $B1:$PORT" || { why "n1's saved list does not start with B: $(tr '\n' ' ' <"$saved")"; return 1; }
    # As if n1 had joined before B existed: its config names only A. A goes away; n1 restarts.
    p2p n1 down --network "$NET" >/dev/null 2>&1 || true
    lab_wait_for 10 lab_exited n1-up || { why "n1 did not stop"; return 1; }
    sed -i "s|^servers = .*|servers = [\"$A1:$PORT\"]|" "$conf"
    grep -q "^servers = \[\"$A1:$PORT\"\]" "$conf" || { why "could not rewrite n1's servers in $conf"; return 1; }
    kill -KILL "$(lab_pid srva2)"
    note "n1 stopped, its config names only A ($A1:$PORT), A SIGKILLed; n1 starts again"
    t0="$(now_ms)"
    p2p_spawn n1 n1-up2 up --network "$NET"
    lab_wait_for 20 on_server n1 "$B1" || { why "n1 is on '$(server_of n1)', not B, 20 s after starting: $(tail -n 3 "$(lab_logfile n1-up2)" | tr '\n' ' ')"; return 1; }
    ms=$(($(now_ms) - t0))
    note "n1 registered with B (learned on its previous run) ${ms} ms after starting"
    lab_exec n1 ping -n -c 1 -w 10 "${VIP[n2]}" >/dev/null 2>&1 || { why "n1 cannot ping n2 after the restart"; return 1; }
}
check "e1 a node whose token names only a dead server reaches the deployment through the list it saved" e_learned

echo "netns-servers: $PASSED passed, $FAILED failed in $((SECONDS - T_START)) s"
((FAILED == 0))
