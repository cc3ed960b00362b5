# shellcheck shell=bash
# scripts/lib/lab.sh - network-namespace lab for p2pvpn scripts and tests.
#
# Source it from a bash script (it is `set -euo pipefail`-safe):
#
#     . "$(dirname "$0")/lib/lab.sh"
#     lab_init                      # per-run prefix, temp dir, cleanup traps
#     lab_internet                  # "internet" ns with bridge br0
#     lab_add_host server 198.51.100.1
#     lab_add_host alice  198.51.100.11
#     lab_spawn alice pinger -- ping -c 3 198.51.100.1
#     lab_wait_for 10 lab_exec alice ip link show eth0
#
# Topology model (NAT routers can be inserted later without changing callers):
#
#     host ns (eth0, 198.51.100.x/24) ──veth── "internet" ns (bridge br0)
#     host ns (eth0, 10.0.x.y/24) ── router ns (lan0 | wan0 198.51.100.x/24) ──veth── internet
#
# lab_add_host puts a host straight on the internet bridge. lab_add_router makes a
# forwarding router namespace (wan0 on the bridge, lan0 towards its LAN) and
# lab_add_host_behind puts a host behind it; NAT profiles (nftables) are later
# applied inside the router namespace with `lab_exec ROUTER nft ...`.
#
# Safety: every address used lives only inside namespaces created here, all
# namespaces carry a per-run prefix (p2p<pid>-), and lab_cleanup (run from the
# EXIT/INT/TERM traps installed by lab_init) kills every process in them and
# deletes them and the temp dir.
#
# Environment knobs:
#   LAB_KEEP=1        keep the temp dir (logs, pcaps) after cleanup and print its path
#   LAB_PREFIX=...    override the namespace prefix (default p2p<pid>-)
#   LAB_TMP_PARENT=.. where the temp dir goes (default /tmp)

if [[ -n "${_LAB_SH_LOADED:-}" ]]; then return 0; fi
_LAB_SH_LOADED=1

LAB_PREFIX="${LAB_PREFIX:-p2p$$-}"
LAB_TMP="${LAB_TMP:-}"
LAB_NAMESPACES=()          # full namespace names, in creation order
LAB_PIDS=()                # pids started by lab_spawn
LAB_INTERNET=""            # short name of the internet namespace
LAB_CLEANED=0
_LAB_VETH_SEQ=0

lab_log() { printf '[lab] %s\n' "$*" >&2; }
lab_die() { printf '[lab] FATAL: %s\n' "$*" >&2; exit 1; }

# lab_require CMD... : die (exit 1) if a command is missing.
lab_require() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || lab_die "required command not found: $c"
    done
}

# lab_missing CMD... : print the first missing command and return 0, or return 1 if all exist.
lab_missing() {
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then printf '%s\n' "$c"; return 0; fi
    done
    return 1
}

# lab_init : create the temp dir and install the cleanup traps.
# A script may define a function `lab_on_exit` taking the exit status; it runs
# before cleanup (e.g. to dump logs on failure).
lab_init() {
    [[ $EUID -eq 0 ]] || lab_die "must run as root (network namespaces)"
    lab_require ip
    if [[ -z "$LAB_TMP" ]]; then
        LAB_TMP="$(mktemp -d "${LAB_TMP_PARENT:-/tmp}/p2p-lab.XXXXXX")"
    fi
    # world-traversable so that an unprivileged test process can reach its own subdir
    chmod 0755 "$LAB_TMP"
    mkdir -p "$LAB_TMP/logs" "$LAB_TMP/pids"
    trap '_lab_exit_trap' EXIT
    trap '_lab_signal_trap INT 130' INT
    trap '_lab_signal_trap TERM 143' TERM
    trap '_lab_signal_trap HUP 129' HUP
}

_lab_exit_trap() {
    local rc=$?
    trap - EXIT
    set +e
    if declare -F lab_on_exit >/dev/null; then lab_on_exit "$rc"; fi
    lab_cleanup
    exit "$rc"
}

_lab_signal_trap() {
    lab_log "caught SIG$1, cleaning up"
    trap - "$1"
    exit "$2"   # runs the EXIT trap
}

# lab_ns NAME : full namespace name for a short name.
lab_ns() { printf '%s%s' "$LAB_PREFIX" "$1"; }

# lab_exec NAME CMD... : run a command inside the namespace.
lab_exec() {
    local ns; ns="$(lab_ns "$1")"; shift
    ip netns exec "$ns" "$@"
}

# lab_add_ns NAME : create an empty namespace with lo up.
lab_add_ns() {
    local ns; ns="$(lab_ns "$1")"
    [[ -n "$LAB_TMP" ]] || lab_die "lab_init first"
    ip netns add "$ns"
    LAB_NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
    mkdir -p "$LAB_TMP/$1"
}

# lab_veth NS1 IF1 NS2 IF2 : a veth pair created directly inside the two
# namespaces (nothing ever appears in the root namespace, so names cannot collide).
lab_veth() {
    local ns1 ns2
    ns1="$(lab_ns "$1")"; ns2="$(lab_ns "$3")"
    ip link add name "$2" netns "$ns1" type veth peer name "$4" netns "$ns2"
    ip -n "$ns1" link set "$2" up
    ip -n "$ns2" link set "$4" up
}

# lab_addr NAME IF ADDR/PREFIX
lab_addr() { ip -n "$(lab_ns "$1")" addr add "$3" dev "$2"; }

# lab_default_route NAME GW
lab_default_route() { ip -n "$(lab_ns "$1")" route add default via "$2"; }

# lab_internet [NAME] : the "internet" namespace holding bridge br0 (default name inet).
lab_internet() {
    LAB_INTERNET="${1:-inet}"
    lab_add_ns "$LAB_INTERNET"
    local ns; ns="$(lab_ns "$LAB_INTERNET")"
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
}

# lab_attach NAME IF : connect namespace NAME to the internet bridge; IF is the
# interface name inside NAME. Echoes the bridge-side port name.
lab_attach() {
    [[ -n "$LAB_INTERNET" ]] || lab_die "lab_internet first"
    _LAB_VETH_SEQ=$((_LAB_VETH_SEQ + 1))
    local port="port${_LAB_VETH_SEQ}"
    lab_veth "$1" "$2" "$LAB_INTERNET" "$port"
    ip -n "$(lab_ns "$LAB_INTERNET")" link set "$port" master br0
    printf '%s\n' "$port"
}

# lab_add_host NAME ADDR [PREFIXLEN=24] : a host directly on the internet, eth0 = ADDR.
lab_add_host() {
    local name="$1" addr="$2" plen="${3:-24}"
    lab_add_ns "$name"
    lab_attach "$name" eth0 >/dev/null
    lab_addr "$name" eth0 "$addr/$plen"
}

# lab_add_router NAME WAN_ADDR LAN_ADDR/PREFIX [WAN_PREFIXLEN=24] :
# a forwarding router namespace: wan0 on the internet bridge, lan0 for hosts
# behind it (created by lab_add_host_behind). No NAT and no filter yet: NAT
# profiles are installed later inside it with nftables.
lab_add_router() {
    local name="$1" wan="$2" lan="$3" plen="${4:-24}"
    lab_add_ns "$name"
    lab_attach "$name" wan0 >/dev/null
    lab_addr "$name" wan0 "$wan/$plen"
    lab_exec "$name" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$(lab_ns "$name")" link add lan0 type bridge
    ip -n "$(lab_ns "$name")" link set lan0 up
    lab_addr "$name" lan0 "$lan"
}

# lab_add_host_behind ROUTER NAME ADDR/PREFIX GW : host behind a router (eth0).
lab_add_host_behind() {
    local router="$1" name="$2" addr="$3" gw="$4"
    lab_add_ns "$name"
    _LAB_VETH_SEQ=$((_LAB_VETH_SEQ + 1))
    local port="lan${_LAB_VETH_SEQ}"
    lab_veth "$name" eth0 "$router" "$port"
    ip -n "$(lab_ns "$router")" link set "$port" master lan0
    lab_addr "$name" eth0 "$addr"
    lab_default_route "$name" "$gw"
}

# lab_spawn NAME LABEL [--] CMD... : start CMD in the background inside namespace
# NAME, stdout+stderr to $LAB_TMP/logs/LABEL.log. Records the pid (LAB_PIDS,
# $LAB_TMP/pids/LABEL) and sets LAB_LAST_PID.
lab_spawn() {
    local name="$1" label="$2"; shift 2
    [[ "${1:-}" == "--" ]] && shift
    local ns log; ns="$(lab_ns "$name")"; log="$LAB_TMP/logs/$label.log"
    # `ip netns exec` execs the command, so $! is the command's own pid.
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    LAB_LAST_PID=$!
    LAB_PIDS+=("$LAB_LAST_PID")
    printf '%s\n' "$LAB_LAST_PID" >"$LAB_TMP/pids/$label"
}

# lab_pid LABEL : pid of a spawned process.
lab_pid() { cat "$LAB_TMP/pids/$1"; }

# lab_logfile LABEL
lab_logfile() { printf '%s/logs/%s.log' "$LAB_TMP" "$1"; }

# lab_alive LABEL : true if the spawned process still runs.
lab_alive() {
    local pid; pid="$(lab_pid "$1" 2>/dev/null)" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # a zombie (exited, not yet reaped) is not alive
    [[ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" != "Z" ]]
}

# lab_not CMD... : negate a command (for lab_wait_for, which takes a simple command).
lab_not() { ! "$@"; }

# lab_exited LABEL : true once the spawned process has exited.
lab_exited() { ! lab_alive "$1"; }

# lab_stop LABEL [SIGNAL=TERM] [TIMEOUT=5] : signal a spawned process, wait
# (bounded), then SIGKILL. Returns the process's exit status when known.
lab_stop() {
    local label="$1" sig="${2:-TERM}" t="${3:-5}" pid i
    pid="$(lab_pid "$label" 2>/dev/null)" || return 0
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do
        lab_alive "$label" || break
        sleep 0.1
    done
    if lab_alive "$label"; then
        lab_log "$label (pid $pid) ignored SIG$sig for ${t}s, killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

# lab_wait_for TIMEOUT_S CMD... : poll CMD every 0.2 s until it succeeds (0) or
# TIMEOUT_S seconds passed (1). CMD output goes to /dev/null.
lab_wait_for() {
    local timeout="$1"; shift
    local deadline=$((SECONDS + timeout))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# lab_wait_log TIMEOUT_S LABEL REGEX : wait for a line matching REGEX in a log.
lab_wait_log() {
    lab_wait_for "$1" grep -Eq -- "$3" "$(lab_logfile "$2")"
}

# lab_wait_ready TIMEOUT_S LABEL REGEX : like lab_wait_log, but gives up at once
# (status 2) if the spawned process LABEL exits first.
lab_wait_ready() {
    local deadline=$((SECONDS + $1)) log; log="$(lab_logfile "$2")"
    while :; do
        grep -Eq -- "$3" "$log" 2>/dev/null && return 0
        lab_alive "$2" || { grep -Eq -- "$3" "$log" 2>/dev/null && return 0; return 2; }
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# lab_dump_logs [LINES=30] : print the last LINES of every log.
lab_dump_logs() {
    local n="${1:-30}" f
    [[ -n "$LAB_TMP" && -d "$LAB_TMP/logs" ]] || return 0
    for f in "$LAB_TMP"/logs/*.log; do
        [[ -e "$f" ]] || continue
        printf '\n===== %s (last %s lines) =====\n' "$(basename "$f" .log)" "$n" >&2
        tail -n "$n" "$f" >&2 || true
    done
}

# lab_cleanup : kill every process in the lab's namespaces, delete them and the
# temp dir. Idempotent; never fails.
lab_cleanup() {
    [[ "$LAB_CLEANED" == 1 ]] && return 0
    LAB_CLEANED=1
    local errexit=0
    [[ $- == *e* ]] && errexit=1
    set +e
    local ns pid pids i
    # 1. politely: SIGTERM to recorded pids and to everything inside our namespaces
    for pid in "${LAB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for ns in "${LAB_NAMESPACES[@]}"; do
        pids="$(ip netns pids "$ns" 2>/dev/null)"
        # shellcheck disable=SC2086  # word splitting wanted: one pid per word
        [[ -n "$pids" ]] && kill -TERM $pids 2>/dev/null
    done
    # 2. wait up to 3 s, then SIGKILL whatever is left
    for ((i = 0; i < 30; i++)); do
        pids=""
        for ns in "${LAB_NAMESPACES[@]}"; do pids+="$(ip netns pids "$ns" 2>/dev/null) "; done
        for pid in "${LAB_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && pids+="$pid "; done
        [[ -z "${pids// /}" ]] && break
        sleep 0.1
    done
    if [[ -n "${pids// /}" ]]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.2
    fi
    for pid in "${LAB_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # 3. namespaces (reverse order), deleting a ns deletes its veths and bridges
    for ((i = ${#LAB_NAMESPACES[@]} - 1; i >= 0; i--)); do
        ip netns del "${LAB_NAMESPACES[$i]}" 2>/dev/null
    done
    # 4. temp dir
    if [[ -n "$LAB_TMP" && -d "$LAB_TMP" ]]; then
        if [[ "${LAB_KEEP:-0}" == 1 ]]; then
            lab_log "kept $LAB_TMP"
        else
            rm -rf -- "$LAB_TMP"
        fi
    fi
    [[ $errexit == 1 ]] && set -e
    return 0
}

# ---------------------------------------------------------------------------
# p2pvpn helpers (used by scripts/demo.sh and tests/netns/*.sh)
# ---------------------------------------------------------------------------

# p2p_bin_default : absolute path of ${P2PVPN_BIN:-target/release/p2pvpn}
p2p_bin_default() {
    local b="${P2PVPN_BIN:-target/release/p2pvpn}"
    if [[ -e "$b" ]]; then realpath -- "$b"; else printf '%s\n' "$b"; fi
}

# p2p NAME ARGS... : run p2pvpn as node NAME (its own config/state dirs) inside ns NAME,
# bounded by P2P_TIMEOUT seconds (default 30). Needs P2P_BIN set.
p2p() {
    local name="$1"; shift
    lab_exec "$name" timeout "${P2P_TIMEOUT:-30}" env P2PVPN_CONFIG_DIR="$LAB_TMP/$name/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/$name/state" "$P2P_BIN" "$@"
}

# p2p_spawn NAME LABEL ARGS... : p2p in the background (see lab_spawn).
p2p_spawn() {
    local name="$1" label="$2"; shift 2
    lab_spawn "$name" "$label" -- env P2PVPN_CONFIG_DIR="$LAB_TMP/$name/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/$name/state" "$P2P_BIN" "$@"
}

# p2p_json_get FILE|- EXPR [NETWORK] : evaluate a python expression over JSON `j`,
# print the result. If the JSON is a list of per-network objects, `j` is the one
# whose "network" is NETWORK (or the only one).
# Example: p2p_json_get status.json 'j["virtual_ip"]'
p2p_json_get() {
    python3 -c '
import json, sys
src = sys.argv[1]
j = json.load(sys.stdin if src == "-" else open(src))
if isinstance(j, list):
    net = sys.argv[3] if len(sys.argv) > 3 else None
    j = next((x for x in j if net is None or x.get("network") == net), None) if len(j) != 1 else j[0]
v = eval(sys.argv[2], {"j": j})
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$1" "$2"
}

# p2p_status_json NAME NETWORK : status --json of a node on stdout (10 s bound).
p2p_status_json() {
    local name="$1" net="$2"
    lab_exec "$name" timeout 10 env P2PVPN_CONFIG_DIR="$LAB_TMP/$name/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/$name/state" "$P2P_BIN" status --network "$net" --json
}

# p2p_field NAME NETWORK EXPR : one value from a node's status --json.
p2p_field() {
    p2p_status_json "$1" "$2" | p2p_json_get - "$3" "$2"
}

# p2p_peer_path NAME NETWORK PEER : the path ("direct"/"relay"/...) NAME sees to PEER,
# or empty if PEER is not listed.
p2p_peer_path() {
    p2p_field "$1" "$2" "next((p.get('path') for p in j.get('peers', []) if p.get('name') == '$3'), '')"
}

# p2p_peer_is_direct NAME NETWORK PEER
p2p_peer_is_direct() { [[ "$(p2p_peer_path "$@")" == direct ]]; }

# p2p_has_peer NAME NETWORK PEER
p2p_has_peer() {
    [[ "$(p2p_field "$1" "$2" "any(p.get('name') == '$3' for p in j.get('peers', []))")" == true ]]
}

# p2p_drops_total NAME NETWORK : sum of the drops object.
p2p_drops_total() {
    p2p_field "$1" "$2" "sum(int(v) for v in (j.get('drops') or {}).values())"
}
