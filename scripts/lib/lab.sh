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
# NAT lab (docs: nat-lab.md). A routed internet and NAT routers with nftables profiles:
#
#     server ns (198.51.100.1 + .2) ─┐
#     open host (198.51.100.11, ...) ┴─ br0 198.51.100.254 ┐
#                                            "inet" ns (ip_forward, no filter/NAT)
#     host 192.168.N.10 ── NAT router (lan0 192.168.N.1 | wan0 203.0.113.4i+2/30) ┘
#     host ── home router (PRC) ── CGN router (LAN 100.64.M.0/24) ── inet     (CGN)
#
# Between any two NAT routers' WANs there is one routed hop (inet), so a packet with
# TTL 2 sent by a host leaves its own NAT (and creates the mapping there) but dies in
# inet before reaching the other NAT (low-TTL priming).
#
#     lab_build SPEC...              declarative: "server" "alice:PRC" "bob:SEQ4"
#                                    "carol:CGN+PRC" "dave" / "dave:OPEN"
#                                    "erin:PRC@shared" "frank:PRC@shared" (one router,
#                                    no hairpin), options ",LOSSY[=netem args]",
#                                    ",TIMEOUT=SECS" (see lab_build below)
#     lab_host_ip NAME               the host's own address (192.168.N.x behind NAT)
#     lab_public_ip NAME             the address the internet sees for it
#     lab_router_of NAME / lab_profile_of NAME / lab_describe / LAB_SERVER_IPS=(ip1 ip2)
#     lab_internet_routed [NAME]     the routed inet namespace (lab_build calls it)
#     lab_add_server NAME [IP1 IP2]  server host with two addresses
#     lab_add_open_host NAME [IP]    public host on the bridge
#     lab_add_nat_router NAME [UP]   router (WAN /30 on inet, or on router UP's LAN)
#     lab_add_cgn_router NAME        router whose LAN is 100.64.M.0/24
#     lab_add_nat_host ROUTER NAME   host on a router's LAN
#     lab_add_cgn_host NAME [HOME=PRC] [CGN=PRC]   host -> NAME-nat -> NAME-cgn -> inet
#     lab_nat ROUTER PROFILE [ARG]   PRC PRC_INPUT RC FC RND RNDF BLK [L-H] SEQ SEQk
#                                    ADM [N] UDPBLK UDPBLK443 HAIRPIN (see lab_nat below)
#     lab_block_udp IP1 IP2 [TABLE]  drop UDP between two public addresses in inet
#     lab_unblock [TABLE]            remove such a drop again
#     lab_lossy ROUTER [NETEM]       netem on wan0+lan0 (loss-only nftables fallback
#                                    when the kernel has no sch_netem)
#     lab_nat_timeout ROUTER SECS    nf_conntrack_udp_timeout(_stream) in ROUTER
#     lab_nat_flush ROUTER           conntrack -F (forces new mappings: rebinding)
#     lab_remove HOST...             tear down hosts and their now unused routers
#     lab_del_ns NAME                kill a namespace's processes and delete it
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
# lab_preflight TOOL... : the checks a lab script starts with. Not root, a TOOL missing or no
# TUN device: prints `SKIP: reason` and exits 77 (tests/netns.rs counts it as skipped, by name).
# Then sets P2P_BIN (p2p_bin_default) and exits 2 if it is not an executable.
lab_preflight() {
    if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
    local m
    if m="$(lab_missing "$@")"; then
        echo "SKIP: $m not installed (scripts/setup-deps.sh test installs it)"; exit 77
    fi
    if [[ ! -c /dev/net/tun ]]; then echo "SKIP: no /dev/net/tun"; exit 77; fi
    P2P_BIN="$(p2p_bin_default)"
    if [[ ! -x "$P2P_BIN" ]]; then echo "p2pvpn binary not found: $P2P_BIN" >&2; exit 2; fi
}

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

# p2p_wireguard NAME NETWORK : after `join`, sets node NAME's `[dataplane] wireguard` from
# LAB_WIREGUARD_<NAME> (e.g. LAB_WIREGUARD_BOB=boringtun), else LAB_WIREGUARD, else leaves the
# default (ours on Linux, `config::default_engine`). LAB_WIREGUARD_BOB=boringtun runs a mixed
# pair: ours against boringtun.
# LAB_WORKERS_<NAME> / LAB_WORKERS set `[dataplane] workers` the same way.
p2p_wireguard() {
    local name="$1" net="$2" var engine workers
    var="LAB_WIREGUARD_${name^^}"
    engine="${!var:-${LAB_WIREGUARD:-}}"
    # LAB_WORKERS_<NAME>, else LAB_WORKERS: `[dataplane] workers` (2 needs engine "own").
    var="LAB_WORKERS_${name^^}"
    workers="${!var:-${LAB_WORKERS:-}}"
    # A dotted key on the first line, not a [dataplane] table at the end: labs append top-level
    # keys (mtu = ...) later, which would land inside a table.
    local file="$LAB_TMP/$name/etc/$net.toml"
    if [[ -n "$workers" ]]; then
        printf 'dataplane.workers = %s\n%s\n' "$workers" "$(cat "$file")" >"$file"
        lab_log "$name: [dataplane] workers = $workers"
    fi
    [[ -n "$engine" ]] || return 0
    printf 'dataplane.wireguard = "%s"\n%s\n' "$engine" "$(cat "$file")" >"$file"
    lab_log "$name: [dataplane] wireguard = \"$engine\""
}

# p2p_network_up SERVER LISTEN STATE NET CIDR NODE... : starts `p2pvpn server` in namespace
# SERVER (label SERVER) on LISTEN with its state in STATE, creates NET with CIDR, then joins each
# NODE by a one-use invite (its own etc/ and state/ under $LAB_TMP, p2p_wireguard applied) and
# sets VIP[NODE] to the address the join printed (the caller declares `declare -A VIP`). On the
# first failure it returns 1 with what failed in P2P_SETUP_ERROR; logs go to $LAB_TMP/logs.
# Not in $(...): VIP must reach the caller.
p2p_network_up() {
    local server="$1" listen="$2" state="$3" net="$4" cidr="$5" n tok rc=0
    shift 5
    lab_spawn "$server" "$server" -- "$P2P_BIN" server --listen "$listen" --state-dir "$state"
    lab_wait_ready 30 "$server" "p2pvpn server listening on" || rc=$?
    [[ $rc -eq 0 ]] || { P2P_SETUP_ERROR="server did not start ($rc)"; return 1; }
    lab_exec "$server" timeout 20 "$P2P_BIN" network create "$net" --cidr "$cidr" --state-dir "$state" \
        >"$LAB_TMP/logs/create.log" 2>&1 || { P2P_SETUP_ERROR="network create: $(tail -n 3 "$LAB_TMP/logs/create.log")"; return 1; }
    for n in "$@"; do
        tok="$(lab_exec "$server" timeout 20 "$P2P_BIN" network invite "$net" --uses 1 --state-dir "$state" \
            2>>"$LAB_TMP/logs/invite.log" | tail -n 1)"
        [[ -n "$tok" ]] || { P2P_SETUP_ERROR="invite for $n"; return 1; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || { P2P_SETUP_ERROR="$n join"; return 1; }
        p2p_wireguard "$n" "$net"
        VIP[$n]="$(grep -oE '\(([0-9]+\.){3}[0-9]+/[0-9]+[,)]' "$LAB_TMP/logs/$n-join.log" | head -n 1 | tr -d '(),' | cut -d/ -f1)"
        [[ -n "${VIP[$n]}" ]] || { P2P_SETUP_ERROR="no virtual address for $n"; return 1; }
    done
}

# p2p_spawn NAME LABEL ARGS... : p2p in the background (see lab_spawn).
p2p_spawn() {
    local name="$1" label="$2"; shift 2
    lab_spawn "$name" "$label" -- env P2PVPN_CONFIG_DIR="$LAB_TMP/$name/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/$name/state" "$P2P_BIN" "$@"
}

# p2p_json_get FILE|- EXPR [NETWORK] : evaluate a python expression over JSON `j`,
# print the result. If the JSON is `status --json` ({"networks": [...]}) or a list of
# per-network objects, `j` is the one whose "network" is NETWORK (or the only one).
# Example: p2p_json_get status.json 'j["virtual_ip"]'
p2p_json_get() {
    python3 -c '
import json, sys
src = sys.argv[1]
j = json.load(sys.stdin if src == "-" else open(src))
if isinstance(j, dict) and isinstance(j.get("networks"), list):
    j = j["networks"]
if isinstance(j, list):
    net = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    j = next((x for x in j if net is None or x.get("network") == net), None) if len(j) != 1 else j[0]
v = eval(sys.argv[2], {"j": j})
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$1" "$2" "${3:-}"
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

# p2p_peer_relay NAME NETWORK PEER : the relay transport ("udp"/"tcp"/"tls") NAME uses
# to PEER while its path is "relay", or empty (direct, not listed, or no such field).
p2p_peer_relay() {
    p2p_field "$1" "$2" "next(((p.get('relay') or '') for p in j.get('peers', []) if p.get('name') == '$3'), '')"
}

# p2p_peer_route NAME NETWORK PEER : "PATH RELAY" from one status call, "-" for what
# is missing ("relay udp", "direct -", "connecting -", "- -" when PEER is not listed).
p2p_peer_route() {
    p2p_field "$1" "$2" "(lambda p: (p.get('path') or '-') + ' ' + (p.get('relay') or '-'))(next((p for p in j.get('peers', []) if p.get('name') == '$3'), {}))" 2>/dev/null ||
        echo "- -"
}

# p2p_peer_is NAME NETWORK PEER PATH [RELAY] : true if NAME's path to PEER is PATH (and,
# if given, the relay transport is RELAY). For lab_wait_for.
p2p_peer_is() {
    local r; r="$(p2p_peer_route "$1" "$2" "$3")"
    [[ "${r% *}" == "$4" ]] || return 1
    [[ -z "${5:-}" || "${r#* }" == "$5" ]]
}

# p2p_has_peer NAME NETWORK PEER
p2p_has_peer() {
    [[ "$(p2p_field "$1" "$2" "any(p.get('name') == '$3' for p in j.get('peers', []))")" == true ]]
}

# p2p_drops_total NAME NETWORK : sum of the drops object.
p2p_drops_total() {
    p2p_field "$1" "$2" "sum(int(v) for v in (j.get('drops') or {}).values())"
}

# ---------------------------------------------------------------------------
# The NAT lab: a routed internet, NAT router profiles, a declarative builder
# (see docs: /work/shared/docs/nat-lab.md and the "NAT lab" part of the header)
# ---------------------------------------------------------------------------

LAB_INET_GW=""               # 198.51.100.254 once lab_internet_routed ran
LAB_SERVER_IPS=()            # addresses of the server host (lab_add_server)
LAB_HOSTS=()                 # short names of hosts made by lab_add_server/open/nat host
_LAB_WAN_SEQ=0               # /30 links inet <-> NAT router WAN (203.0.113.0/24)
_LAB_WAN_FREE=()             # /30 indexes given back by lab_remove
_LAB_LAN_SEQ=0               # 192.168.N.0/24 home LANs, 100.64.N.0/24 CGN LANs
_LAB_OPEN_SEQ=10             # open hosts 198.51.100.11, .12, ...
declare -gA LAB_HOST_IP=()        # host -> its own address (eth0)
declare -gA LAB_PUBLIC_IP=()      # host -> address the internet sees (outermost NAT's WAN)
declare -gA LAB_ROUTER_OF=()      # host -> first router (its gateway), "" for open hosts
declare -gA LAB_PROFILE_OF=()     # host -> profile spec as given to lab_build (OPEN, PRC, CGN+PRC...)
declare -gA LAB_ROUTER_WAN=()     # router -> WAN address
declare -gA LAB_ROUTER_LAN=()     # router -> LAN prefix, e.g. 192.168.3 (router is .1)
declare -gA LAB_ROUTER_UP=()      # router -> upstream router ("" = the internet)
declare -gA LAB_ROUTER_PROFILE=() # router -> installed profile
declare -gA LAB_ROUTER_NEXT=()    # router -> next host number on its LAN
declare -gA _LAB_ROUTER_WANIDX=() # router -> its /30 index

# _lab_sysctl NAME KEY=VALUE... : sysctl inside a namespace, ignoring keys that do not exist.
_lab_sysctl() {
    local name="$1" kv; shift
    for kv in "$@"; do
        lab_exec "$name" sysctl -qw "$kv" >/dev/null 2>&1 || true
    done
}

# _lab_no_bridge_nf NAME : bridged frames must not traverse the IP hooks (br_netfilter
# defaults to on in new namespaces here, and would send LAN-to-LAN frames through the
# router's forward filter).
_lab_no_bridge_nf() {
    _lab_sysctl "$1" net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
        net.bridge.bridge-nf-call-arptables=0
}

# lab_internet_routed [NAME=inet] : the internet as a router. NAME holds bridge br0
# (198.51.100.0/24, gateway 198.51.100.254: server and open hosts) and one routed /30
# per NAT router (203.0.113.4i+1 on inet's side, 203.0.113.4i+2 the router's WAN), with
# ip_forward on and no filter or NAT. A packet from one NAT's WAN to another's crosses
# inet as a router (TTL - 1). inet has no link to the root namespace, so anything
# addressed outside the lab dies there.
lab_internet_routed() {
    lab_internet "${1:-inet}"
    LAB_INET_GW=198.51.100.254
    lab_addr "$LAB_INTERNET" br0 "$LAB_INET_GW/24"
    _lab_no_bridge_nf "$LAB_INTERNET"
    lab_exec "$LAB_INTERNET" sysctl -qw net.ipv4.ip_forward=1
    # no ICMP rate limit, so that every TTL-expired probe gets its time-exceeded
    _lab_sysctl "$LAB_INTERNET" net.ipv4.icmp_ratelimit=0
}

# lab_add_server NAME [IP1=198.51.100.1] [IP2=198.51.100.2] : the server host, on the
# internet bridge with two addresses (RFC 5780 needs two).
lab_add_server() {
    local name="$1" ip1="${2:-198.51.100.1}" ip2="${3:-198.51.100.2}"
    lab_add_host "$name" "$ip1"
    lab_addr "$name" eth0 "$ip2/24"
    [[ -z "$LAB_INET_GW" ]] || lab_default_route "$name" "$LAB_INET_GW"
    # shellcheck disable=SC2034  # read by the scripts that source this file
    LAB_SERVER_IPS=("$ip1" "$ip2")
    LAB_HOSTS+=("$name")
    LAB_HOST_IP[$name]="$ip1"; LAB_PUBLIC_IP[$name]="$ip1"; LAB_ROUTER_OF[$name]=""
    LAB_PROFILE_OF[$name]=SERVER
}

# lab_add_open_host NAME [IP] : a host with a public address on the internet bridge
# (no NAT, no firewall); IP defaults to the next of 198.51.100.11, .12, ...
lab_add_open_host() {
    local name="$1" ip="${2:-}"
    if [[ -z "$ip" ]]; then _LAB_OPEN_SEQ=$((_LAB_OPEN_SEQ + 1)); ip="198.51.100.$_LAB_OPEN_SEQ"; fi
    lab_add_host "$name" "$ip"
    [[ -z "$LAB_INET_GW" ]] || lab_default_route "$name" "$LAB_INET_GW"
    LAB_HOSTS+=("$name")
    LAB_HOST_IP[$name]="$ip"; LAB_PUBLIC_IP[$name]="$ip"; LAB_ROUTER_OF[$name]=""
    LAB_PROFILE_OF[$name]=OPEN
}

# lab_add_nat_router NAME [UPSTREAM] : a router namespace (wan0, bridge lan0) without
# rules yet (install them with lab_nat). Without UPSTREAM its WAN is a routed /30 to
# the internet namespace (lab_internet_routed first); with UPSTREAM (a router made by
# lab_add_cgn_router) its WAN sits on that router's 100.64.N.0/24 LAN. Its own LAN is
# 192.168.N.0/24 with the router at .1.
lab_add_nat_router() { _lab_router "$1" "${2:-}" home; }

# lab_add_cgn_router NAME : like lab_add_nat_router, but its LAN is 100.64.N.0/24
# (shared address space, RFC 6598) for home routers behind it.
lab_add_cgn_router() { _lab_router "$1" "" cgn; }

_lab_router() {
    local name="$1" up="$2" kind="$3" wan lan
    [[ -n "$LAB_INET_GW" ]] || lab_die "lab_internet_routed first"
    lab_add_ns "$name"
    _lab_no_bridge_nf "$name"
    if [[ -z "$up" ]]; then
        local i
        if ((${#_LAB_WAN_FREE[@]})); then
            i="${_LAB_WAN_FREE[0]}"; _LAB_WAN_FREE=("${_LAB_WAN_FREE[@]:1}")
        else
            i=$_LAB_WAN_SEQ
            ((i < 64)) || lab_die "out of WAN /30s"
            _LAB_WAN_SEQ=$((i + 1))
        fi
        _LAB_ROUTER_WANIDX[$name]=$i
        wan="203.0.113.$((4 * i + 2))"
        lab_veth "$name" wan0 "$LAB_INTERNET" "wan$i"
        lab_addr "$LAB_INTERNET" "wan$i" "203.0.113.$((4 * i + 1))/30"
        lab_addr "$name" wan0 "$wan/30"
        lab_default_route "$name" "203.0.113.$((4 * i + 1))"
    else
        [[ -n "${LAB_ROUTER_LAN[$up]:-}" ]] || lab_die "unknown upstream router $up"
        local n="${LAB_ROUTER_NEXT[$up]}"
        LAB_ROUTER_NEXT[$up]=$((n + 1))
        wan="${LAB_ROUTER_LAN[$up]}.$n"
        _LAB_VETH_SEQ=$((_LAB_VETH_SEQ + 1))
        lab_veth "$name" wan0 "$up" "lan${_LAB_VETH_SEQ}"
        ip -n "$(lab_ns "$up")" link set "lan${_LAB_VETH_SEQ}" master lan0
        lab_addr "$name" wan0 "$wan/24"
        lab_default_route "$name" "${LAB_ROUTER_LAN[$up]}.1"
    fi
    # Wraps after 250 LANs (nat-matrix.sh --runs builds hundreds of routers one pair at a
    # time), which is safe while fewer than 250 routers are up at once.
    _LAB_LAN_SEQ=$((_LAB_LAN_SEQ % 250 + 1))
    if [[ $kind == cgn ]]; then lan="100.64.$_LAB_LAN_SEQ"; else lan="192.168.$_LAB_LAN_SEQ"; fi
    ip -n "$(lab_ns "$name")" link add lan0 type bridge
    ip -n "$(lab_ns "$name")" link set lan0 up
    lab_addr "$name" lan0 "$lan.1/24"
    lab_exec "$name" sysctl -qw net.ipv4.ip_forward=1
    LAB_ROUTER_WAN[$name]="$wan"; LAB_ROUTER_LAN[$name]="$lan"; LAB_ROUTER_UP[$name]="$up"
    LAB_ROUTER_NEXT[$name]=10; LAB_ROUTER_PROFILE[$name]=""
}

# lab_add_nat_host ROUTER NAME : a host on ROUTER's LAN (next free .10, .11, ...),
# default route via the router.
lab_add_nat_host() {
    local router="$1" name="$2" n ip
    [[ -n "${LAB_ROUTER_LAN[$router]:-}" ]] || lab_die "unknown router $router"
    n="${LAB_ROUTER_NEXT[$router]}"; LAB_ROUTER_NEXT[$router]=$((n + 1))
    ip="${LAB_ROUTER_LAN[$router]}.$n"
    lab_add_host_behind "$router" "$name" "$ip/24" "${LAB_ROUTER_LAN[$router]}.1"
    LAB_HOSTS+=("$name")
    LAB_HOST_IP[$name]="$ip"; LAB_ROUTER_OF[$name]="$router"
    LAB_PUBLIC_IP[$name]="$(lab_router_public_ip "$router")"
}

# lab_router_public_ip ROUTER : the WAN address of the outermost router above ROUTER.
lab_router_public_ip() {
    local r="$1"
    while [[ -n "${LAB_ROUTER_UP[$r]:-}" ]]; do r="${LAB_ROUTER_UP[$r]}"; done
    printf '%s\n' "${LAB_ROUTER_WAN[$r]}"
}

# _lab_port_map N BASE STEP : "0 : BASE, 1 : BASE+STEP, ..." (N entries) for nft maps.
_lab_port_map() {
    local n="$1" base="$2" step="$3" i out=""
    for ((i = 0; i < n; i++)); do out+="$i : $((base + step * i)), "; done
    printf '%s' "${out%, }"
}

# _lab_nat_ruleset PROFILE WANIP LANPREFIX [ARG] : the nftables ruleset of a profile.
_lab_nat_ruleset() {
    local profile="$1" wan="$2" lan="$3" arg="${4:-}"
    local in_policy=drop sets="" fwd="" pre="" post="" masq='oifname "wan0" masquerade'
    case "$profile" in
        PRC) post="$masq" ;;
        PRC_INPUT) in_policy=accept; post="$masq" ;;
        FC)
            sets='map fcmap { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 5m; }'
            fwd='iifname "lan0" oifname "wan0" meta l4proto udp update @fcmap { udp sport : ip saddr }'
            pre='iifname "wan0" meta l4proto udp dnat ip to udp dport map @fcmap'
            post="$masq" ;;
        RC)
            sets='map rcmap { type ipv4_addr . inet_service : ipv4_addr; flags dynamic,timeout; timeout 5m; }'
            fwd='iifname "lan0" oifname "wan0" meta l4proto udp update @rcmap { ip daddr . udp sport : ip saddr }'
            pre='iifname "wan0" meta l4proto udp dnat ip to ip saddr . udp dport map @rcmap'
            post="$masq" ;;
        HAIRPIN)
            sets='map hpmap { type inet_service : ipv4_addr; flags dynamic,timeout; timeout 5m; }'
            fwd='iifname "lan0" oifname "wan0" meta l4proto udp update @hpmap { udp sport : ip saddr }'
            pre="iifname \"lan0\" ip daddr $wan meta l4proto udp dnat ip to udp dport map @hpmap"
            post="iifname \"lan0\" oifname \"lan0\" ip saddr $lan.0/24 snat ip to $wan
        $masq" ;;
        RND) post='oifname "wan0" masquerade random' ;;
        RNDF) post='oifname "wan0" masquerade fully-random' ;;
        BLK)
            local range="${arg:-20000-20511}"
            post="oifname \"wan0\" meta l4proto udp masquerade to :$range random
        $masq" ;;
        SEQ*)
            local k="${profile#SEQ}"
            k="${arg:-${k:-1}}"
            [[ "$k" =~ ^[0-9]+$ && "$k" -ge 1 ]] || lab_die "bad SEQ delta: $profile $arg"
            local n=$(((65535 - 20000) / k + 1)); ((n > 4096)) && n=4096
            post="oifname \"wan0\" meta l4proto udp snat ip to $wan : numgen inc mod $n map { $(_lab_port_map "$n" 20000 "$k") }
        $masq" ;;
        ADM)
            local n="${arg:-1024}"
            post="oifname \"wan0\" meta l4proto udp snat ip to $wan : jhash ip saddr . udp sport . ip daddr mod $n seed 0x5 map { $(_lab_port_map "$n" 20000 1) }
        $masq" ;;
        UDPBLK)
            fwd='iifname "lan0" meta l4proto udp udp dport != 53 drop'
            post="$masq" ;;
        UDPBLK443)
            fwd='iifname "lan0" meta l4proto udp udp dport != 53 drop
        iifname "lan0" meta l4proto tcp tcp dport != { 80, 443 } drop'
            post="$masq" ;;
        *) lab_die "unknown NAT profile: $profile" ;;
    esac
    cat <<NFT
table ip lab {
    $sets
    chain input {
        type filter hook input priority 0; policy $in_policy;
        ct state established,related accept
        iifname { "lo", "lan0" } accept
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
        $fwd
        ct state established,related accept
        ct status dnat accept
        iifname "lan0" oifname "wan0" accept
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        $pre
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        $post
    }
}
NFT
}

# lab_nat ROUTER PROFILE [ARG] : install a NAT profile in a router namespace (replacing
# any earlier one). PROFILE is one of
#   PRC        endpoint-independent mapping, port kept, address+port-dependent filtering
#   PRC_INPUT  PRC, but the router accepts every input (conntrack-poisoning case, row 11)
#   RC         EIM, address-dependent filtering (restricted cone)
#   FC         EIM, endpoint-independent filtering (full cone)
#   RND        symmetric, `masquerade random`;  RNDF: `masquerade fully-random`
#   BLK [L-H]  symmetric, random in a port block (default 20000-20511)
#   SEQ, SEQk  symmetric, sequential ports from 20000 with delta 1 / k (SEQ4: delta 4)
#   ADM [N]    address-dependent mapping, ports 20000..20000+N-1 (default 1024)
#   UDPBLK     UDP dropped except to port 53; TCP out allowed
#   UDPBLK443  UDPBLK, and TCP out only to ports 80 and 443 (row 9: relay over TLS)
#   HAIRPIN    PRC plus hairpinning (LAN hosts reach each other's public mappings)
# Every profile has the home-router input filter (policy drop; established,related
# accept; iifname {lo, lan0} accept), the forward filter and a nat prerouting chain.
lab_nat() {
    local router="$1" profile="$2" arg="${3:-}"
    local wan="${LAB_ROUTER_WAN[$router]:-}" lan="${LAB_ROUTER_LAN[$router]:-}"
    [[ -n "$wan" ]] || lab_die "lab_nat: unknown router $router"
    lab_require nft
    local rules; rules="$(_lab_nat_ruleset "$profile" "$wan" "$lan" "$arg")" || return 1
    lab_exec "$router" nft flush ruleset
    lab_exec "$router" nft -f - <<<"$rules" || lab_die "lab_nat $router $profile: nft rejected the ruleset"
    # shellcheck disable=SC2034  # for callers
    LAB_ROUTER_PROFILE[$router]="$profile"
}

# lab_lossy ROUTER [NETEM ARGS="delay 20ms 5ms loss 1%"] : netem on the router's wan0
# and lan0 (both directions through the router). Kernels without sch_netem (this
# machine kind: CONFIG_NET_SCH_NETEM unset) get the loss part only, as an nftables
# `numgen random` drop in the router's forward path (delay/jitter cannot be emulated
# then; a warning says so). Returns 0 either way.
lab_lossy() {
    local router="$1"; shift
    local args=("$@"); ((${#args[@]})) || args=(delay 20ms 5ms loss 1%)
    # a single string is split into words
    ((${#args[@]} == 1)) && read -r -a args <<<"${args[0]}"
    local dev ok=1
    for dev in wan0 lan0; do
        lab_exec "$router" tc qdisc replace dev "$dev" root netem "${args[@]}" 2>/dev/null || { ok=0; break; }
    done
    ((ok)) && return 0
    local i loss=""
    for ((i = 0; i < ${#args[@]}; i++)); do
        [[ "${args[$i]}" == loss ]] && loss="${args[$((i + 1))]:-}"
    done
    loss="${loss%\%}"
    lab_log "lab_lossy $router: no netem in this kernel; delay/jitter ignored${loss:+, loss $loss% via nftables}"
    [[ -n "$loss" ]] || return 0
    # per ten thousand, so 0.5% works
    local per10k; per10k="$(awk -v l="$loss" 'BEGIN { printf "%d", l * 100 + 0.5 }')"
    lab_exec "$router" nft -f - <<NFT
table ip lab_lossy {
    chain forward {
        type filter hook forward priority -10; policy accept;
        numgen random mod 10000 < $per10k counter drop
    }
}
NFT
}

# lab_nat_timeout ROUTER SECS : UDP conntrack timeouts (mapping lifetime) in ROUTER.
lab_nat_timeout() {
    lab_exec "$1" sysctl -qw "net.netfilter.nf_conntrack_udp_timeout=$2" \
        "net.netfilter.nf_conntrack_udp_timeout_stream=$2"
}

# lab_nat_flush ROUTER : forget every conntrack entry (NAT rebinding: mappings change).
lab_nat_flush() { lab_exec "$1" conntrack -F >/dev/null 2>&1 || true; }

# lab_block_udp IP1 IP2 [TABLE=lab_block] : in the routed internet namespace, drop every
# UDP datagram between IP1 and IP2 (both directions; e.g. two NATs' public addresses,
# so a direct path goes dark while both still reach the server). Other traffic passes.
lab_block_udp() {
    local a="$1" b="$2" t="${3:-lab_block}"
    [[ -n "$LAB_INTERNET" ]] || lab_die "lab_block_udp: no internet namespace"
    lab_exec "$LAB_INTERNET" nft -f - <<NFT
table ip $t {
    chain forward {
        type filter hook forward priority -5; policy accept;
        ip saddr $a ip daddr $b meta l4proto udp counter drop
        ip saddr $b ip daddr $a meta l4proto udp counter drop
    }
}
NFT
}

# lab_unblock [TABLE=lab_block] : remove a lab_block_udp table (no error if absent).
lab_unblock() {
    lab_exec "$LAB_INTERNET" nft delete table ip "${1:-lab_block}" 2>/dev/null || true
}

# lab_blocked_packets [TABLE=lab_block] : datagrams the block dropped so far.
lab_blocked_packets() {
    lab_exec "$LAB_INTERNET" nft list table ip "${1:-lab_block}" 2>/dev/null |
        awk '/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }'
}

# lab_add_cgn_host NAME [HOME=PRC] [CGN=PRC] : host NAME behind home router NAME-nat
# (profile HOME, LAN 192.168.N.0/24) behind CGN router NAME-cgn (profile CGN, LAN
# 100.64.M.0/24, WAN on the internet).
lab_add_cgn_host() {
    local name="$1" home="${2:-PRC}" cgn="${3:-PRC}"
    lab_add_cgn_router "$name-cgn"
    lab_nat "$name-cgn" "$cgn"
    lab_add_nat_router "$name-nat" "$name-cgn"
    lab_nat "$name-nat" "$home"
    lab_add_nat_host "$name-nat" "$name"
}

# lab_build SPEC... : build a whole lab declaratively (calls lab_internet_routed first
# if needed). SPEC is
#   server                  the server host (198.51.100.1 and .2)
#   NAME | NAME:OPEN        an open host on the internet bridge
#   NAME:PROFILE            NAME behind its own router NAME-nat with lab_nat PROFILE
#   NAME:CGN+PROFILE        NAME behind NAME-nat (PROFILE) behind NAME-cgn (PRC)
#   NAME:CGN=P2+PROFILE     the same with profile P2 on the CGN router
#   NAME:UPNP_MODE          NAME behind a RND router running miniupnpd (MODE IGD, PCP,
#                           PMP or DENY; scripts/lib/upnp.sh)
#   NAME:PROFILE@ROUTER     NAME behind the shared router ROUTER (made with PROFILE by
#                           the first host naming it; no hairpin unless PROFILE is HAIRPIN)
# optionally followed by comma-separated options:
#   ,LOSSY[=netem args]     lab_lossy on the host's router(s) (default delay 20ms 5ms loss 1%)
#   ,TIMEOUT=SECS           lab_nat_timeout on the host's router(s)
# Example: lab_build server alice:PRC bob:SEQ4 carol:CGN+PRC dave:OPEN \
#              erin:PRC@shared frank:PRC@shared gina:RND,LOSSY=delay\ 50ms
lab_build() {
    [[ -n "$LAB_INET_GW" ]] || lab_internet_routed inet
    local spec name rest opts profile router routers opt
    for spec in "$@"; do
        name="${spec%%:*}"; rest=""
        [[ "$spec" == *:* ]] && rest="${spec#*:}"
        opts=""
        if [[ "$rest" == *,* ]]; then opts="${rest#*,}"; rest="${rest%%,*}"; fi
        profile="${rest:-OPEN}"; router=""
        if [[ "$profile" == *@* ]]; then router="${profile#*@}"; profile="${profile%%@*}"; fi
        routers=()
        if [[ "$name" == server ]]; then
            lab_add_server server; continue
        fi
        case "$profile" in
            OPEN) lab_add_open_host "$name" ;;
            CGN+* | CGN=*)
                local cgnp=PRC homep="${profile#*+}"
                [[ "$profile" == CGN=* ]] && { cgnp="${profile#CGN=}"; cgnp="${cgnp%%+*}"; }
                lab_add_cgn_host "$name" "$homep" "$cgnp"
                routers=("$name-nat" "$name-cgn") ;;
            UPNP_*) lab_add_upnp_host "$name" "${profile#UPNP_}"; routers=("$name-nat") ;;
            *)
                if [[ -n "$router" ]]; then
                    if [[ -z "${LAB_ROUTER_WAN[$router]:-}" ]]; then
                        lab_add_nat_router "$router"; lab_nat "$router" "$profile"
                    fi
                else
                    router="$name-nat"; lab_add_nat_router "$router"; lab_nat "$router" "$profile"
                fi
                lab_add_nat_host "$router" "$name"
                routers=("$router") ;;
        esac
        LAB_PROFILE_OF[$name]="$profile"
        if [[ -n "$opts" ]]; then
            local r opts_a
            IFS=',' read -r -a opts_a <<<"$opts"
            for opt in "${opts_a[@]}"; do
                case "$opt" in
                    LOSSY) for r in "${routers[@]}"; do lab_lossy "$r"; done ;;
                    LOSSY=*) for r in "${routers[@]}"; do lab_lossy "$r" "${opt#LOSSY=}"; done ;;
                    TIMEOUT=*) for r in "${routers[@]}"; do lab_nat_timeout "$r" "${opt#TIMEOUT=}"; done ;;
                    *) lab_die "lab_build: unknown option $opt in $spec" ;;
                esac
            done
        fi
    done
}

# lab_del_ns NAME : kill every process inside namespace NAME (TERM, then KILL after
# 2 s) and delete it (and with it its veths; the peer ends vanish too).
lab_del_ns() {
    local ns; ns="$(lab_ns "$1")"
    local pids i
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    # shellcheck disable=SC2086
    [[ -n "${pids// /}" ]] && kill -TERM $pids 2>/dev/null
    for ((i = 0; i < 20; i++)); do
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
        [[ -z "${pids// /}" ]] && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    [[ -n "${pids// /}" ]] && kill -KILL $pids 2>/dev/null
    # delete the veths first: that is synchronous, while a namespace's links vanish
    # asynchronously after `ip netns del` (and their peer names could be reused at once)
    local l
    for l in $(ip -n "$ns" -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        ip -n "$ns" link del "$l" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
    local keep=() n
    for n in "${LAB_NAMESPACES[@]}"; do [[ "$n" == "$ns" ]] || keep+=("$n"); done
    LAB_NAMESPACES=("${keep[@]}")
    return 0
}

# lab_remove HOST... : tear down hosts made by lab_build / lab_add_*_host and every
# router above them that no remaining host uses (WAN /30s are reused later).
lab_remove() {
    local h r up used other keep=()
    local routers=()
    for h in "$@"; do
        r="${LAB_ROUTER_OF[$h]-}"
        while [[ -n "$r" ]]; do routers+=("$r"); r="${LAB_ROUTER_UP[$r]-}"; done
        lab_del_ns "$h"
        unset "LAB_HOST_IP[$h]" "LAB_PUBLIC_IP[$h]" "LAB_ROUTER_OF[$h]" "LAB_PROFILE_OF[$h]"
    done
    for h in "${LAB_HOSTS[@]}"; do [[ -n "${LAB_HOST_IP[$h]:-}" ]] && keep+=("$h"); done
    LAB_HOSTS=("${keep[@]}")
    for r in "${routers[@]}"; do
        [[ -n "${LAB_ROUTER_WAN[$r]:-}" ]] || continue
        used=0
        for other in "${LAB_HOSTS[@]}"; do
            up="${LAB_ROUTER_OF[$other]-}"
            while [[ -n "$up" ]]; do [[ "$up" == "$r" ]] && used=1; up="${LAB_ROUTER_UP[$up]-}"; done
        done
        ((used)) && continue
        lab_del_ns "$r"
        [[ -n "${_LAB_ROUTER_WANIDX[$r]:-}" ]] && _LAB_WAN_FREE+=("${_LAB_ROUTER_WANIDX[$r]}")
        unset "LAB_ROUTER_WAN[$r]" "LAB_ROUTER_LAN[$r]" "LAB_ROUTER_UP[$r]" "LAB_ROUTER_PROFILE[$r]" \
            "LAB_ROUTER_NEXT[$r]" "_LAB_ROUTER_WANIDX[$r]"
    done
}

# lab_host_ip NAME / lab_public_ip NAME / lab_router_of NAME / lab_profile_of NAME
lab_host_ip() { printf '%s\n' "${LAB_HOST_IP[$1]:?unknown host $1}"; }
lab_public_ip() { printf '%s\n' "${LAB_PUBLIC_IP[$1]:?unknown host $1}"; }
lab_router_of() { printf '%s\n' "${LAB_ROUTER_OF[$1]-}"; }
lab_profile_of() { printf '%s\n' "${LAB_PROFILE_OF[$1]:?unknown host $1}"; }

# lab_describe : one line per host: name, profile, own address, public address, router.
lab_describe() {
    local h
    for h in "${LAB_HOSTS[@]}"; do
        printf '%-10s %-10s %-15s %-15s %s\n' "$h" "${LAB_PROFILE_OF[$h]}" "${LAB_HOST_IP[$h]}" \
            "${LAB_PUBLIC_IP[$h]}" "${LAB_ROUTER_OF[$h]:--}"
    done
}

# The UPNP router profile (miniupnpd in front of a RND NAT): scripts/lib/upnp.sh.
# shellcheck source-path=SCRIPTDIR source=upnp.sh
. "$(dirname "${BASH_SOURCE[0]}")/upnp.sh"

# Delay and jitter in the routed internet namespace (lab_delay): scripts/lib/delay.sh.
# shellcheck source-path=SCRIPTDIR source=delay.sh
. "$(dirname "${BASH_SOURCE[0]}")/delay.sh"
