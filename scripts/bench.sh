#!/usr/bin/env bash
# scripts/bench.sh - data-plane benchmark against the anchors (shared/docs/anchors.md).
#
# Two network namespaces a (198.51.100.1) and b (198.51.100.2) joined by one veth
# pair. Each system tunnels between them; per round and system: TCP iperf3 for
# 6 s from a to b (receiver-side Mbit/s), then 50 pings (-i 0.2, avg RTT). Rounds
# are interleaved (round 1: every system, round 2: every system, ...); the table
# shows the median per system, the CPU time both tunnel processes spent per Gbit
# carried (user + system, from /proc/PID/stat around each iperf3 run; for the relayed
# path the server's too), and the RSS of each tunnel process idle (VmRSS once set up and
# settled, before any load), under load (the highest VmRSS sampled every 0.5 s during the TCP
# runs) and at its peak since it started (VmHWM, after all rounds: start-up included).
#
# Systems: raw (no tunnel), p2pvpn (direct path), p2pvpn-relay (p2pvpn through the
# server's UDP relay: its own server on a:7410 with the relay limits raised, and an
# nftables rule that drops the two nodes' direct UDP so punching cannot succeed),
# p2pvpn-v6 (p2pvpn direct over an IPv6 underlay: the veth also carries 2001:db8:be::/64,
# documentation space, and a rule drops the nodes' direct IPv4 UDP so the path is IPv6),
# boringtun (boringtun-cli), wireguard-go, nebula (Debian package `nebula`, static
# host map, no lighthouse).
#
# Usage (root): scripts/bench.sh [--rounds N] [--only SYSTEM[,SYSTEM...]] [--time S] [--no-install]
#   P2PVPN_BIN     p2pvpn binary (default: the shipped build, profile-guided: scripts/pgo.sh,
#                  target/release-pgo/p2pvpn, about 10 minutes; BENCH_BUILD=release for a plain
#                  `cargo build --release`, target/release/p2pvpn)
#   BORINGTUN_BIN  boringtun-cli binary (default: PATH, then $BENCH_TOOLS/bin, else
#                  `cargo install boringtun-cli --version $BORINGTUN_VERSION --root $BENCH_TOOLS`)
#   BORINGTUN_VERSION  default 0.7.1 (the anchors' version)
#   BENCH_TOOLS    where tools are installed (default /tmp/p2p-bench-tools)
#   LAB_KEEP=1     keep logs and raw results
#   LAB_WIREGUARD=boringtun  p2pvpn's nodes run boringtun in the node's loop ([dataplane]
#                  wireguard; the default on Linux is our engine with its data thread)
#   LAB_WORKERS=2  p2pvpn's nodes run a TX and an RX thread ([dataplane] workers; needs
#                  our engine)
#   PING_INTERVAL  seconds between the pings (default 0.2; 0.002 keeps the caches warm,
#                  which shows how much of the RTT is cold-cache cost)
#   BENCH_PINGS    pings per set (default 50); a round's average RTT spread about 10%
#                  between rounds at 20 pings on a 2-vCPU VM
#   BENCH_PING_STAT=1  also count, with `perf stat`, what one echo costs the two tunnel
#                  processes: CPU time, syscalls and context switches per ping, less the
#                  same count over an idle window of the same length (a second set of
#                  pings, after the timed one, and 4 s idle per system and round);
#                  printed under the table
#   BENCH_SMAPS_DIR=DIR  keep each idle tunnel process's /proc/PID/smaps in DIR (and, as
#                  SYSTEM-LABEL.load.smaps, at its highest RSS sampled under load)
#   BENCH_HOLD=S   after the rounds, keep every tunnel up S s more with a ping a second (the
#                  PGO training's, so that its sessions rekey while settled); default 0
#   BENCH_SETTLE   seconds from the last setup ping to the idle RSS reading (default 10): a
#                  p2pvpn node gives back the pages it ran only to start once its control
#                  plane has been quiet for 5 s (src/io/settle.rs); the other systems' RSS
#                  does not move after their setup
#   BENCH_SCHED=1  also record the scheduler (`perf sched record`, system-wide) over a third
#                  set of pings and print, per system, how long its tunnel threads waited
#                  between being woken and running (median and 90th percentile of
#                  `perf sched timehist`'s scheduling delay) and how often they woke on
#                  another CPU than they last ran on
# All traffic stays inside the two namespaces this script creates.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

ROUNDS=3
DURATION=6
ONLY=""
INSTALL=1
PING_INTERVAL="${PING_INTERVAL:-0.2}"
case "${BENCH_BUILD:=pgo}" in pgo | release) ;; *) echo "BENCH_BUILD is pgo (the default) or release" >&2; exit 2 ;; esac
PINGS="${BENCH_PINGS:-50}"
[[ "$PINGS" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "BENCH_PINGS must be a count from 1 to 9999" >&2; exit 2; }
# A set of pings may take its count times the interval, plus the last reply's wait.
PING_LIMIT="$(awk -v n="$PINGS" -v i="$PING_INTERVAL" 'BEGIN { printf "%d", n * i * 1.5 + 10 }')"
ALL_SYSTEMS=(raw p2pvpn p2pvpn-relay p2pvpn-v6 boringtun wireguard-go nebula)
BENCH_TOOLS="${BENCH_TOOLS:-/tmp/p2p-bench-tools}"
BORINGTUN_VERSION="${BORINGTUN_VERSION:-0.7.1}"

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --time) DURATION="$2"; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "--rounds must be 1..99" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "--time must be 1..99 seconds" >&2; exit 2; }
[[ "$PING_INTERVAL" =~ ^(0\.00[2-9]|0\.0[1-9][0-9]*|0\.[1-9][0-9]*|[1-9](\.[0-9]+)?)$ ]] ||
    { echo "PING_INTERVAL must be 0.002..9 seconds" >&2; exit 2; }

SYSTEMS=()
if [[ -n "$ONLY" ]]; then
    IFS=, read -r -a want <<<"$ONLY"
    for s in "${want[@]}"; do
        case "$s" in
            raw | p2pvpn | p2pvpn-relay | p2pvpn-v6 | wireguard-go | nebula) SYSTEMS+=("$s") ;;
            boringtun | boringtun-cli) SYSTEMS+=(boringtun) ;;
            *) echo "unknown system '$s' (raw, p2pvpn, p2pvpn-relay, p2pvpn-v6, boringtun, wireguard-go, nebula)" >&2; exit 2 ;;
        esac
    done
else
    SYSTEMS=("${ALL_SYSTEMS[@]}")
fi
want_system() { local s; for s in "${SYSTEMS[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }

log() { printf '[bench] %s\n' "$*" >&2; }
[[ $EUID -eq 0 ]] || { echo "bench.sh needs root (network namespaces, TUN)" >&2; exit 1; }

declare -A NA=()        # system -> reason it is not available
declare -A TARGET=()    # system -> address in b that a sends to
declare -A TUNPIDS=()   # system -> "label label" of tunnel processes (for VmHWM)

# ---------------------------------------------------------------- tools
apt_install() {
    [[ $INSTALL == 1 ]] || return 1
    log "apt-get install -y $*"
    # No recommends: wireguard-tools recommends a kernel image (for the module), which a
    # userspace benchmark does not need and which would pull in an initramfs and systemd.
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >&2
}
need() {  # need CMD DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_install "$2" || true
    command -v "$1" >/dev/null 2>&1
}
need python3 python3 || { echo "python3 is required" >&2; exit 1; }
need iperf3 iperf3 || { echo "iperf3 is required (apt-get install -y iperf3)" >&2; exit 1; }
need ping iputils-ping || { echo "ping is required (apt-get install -y iputils-ping)" >&2; exit 1; }

if want_system wireguard-go; then
    if ! need wireguard-go wireguard-go; then NA[wireguard-go]="wireguard-go not installed"
    elif ! need wg wireguard-tools; then NA[wireguard-go]="wg (wireguard-tools) not installed"; fi
fi
if want_system boringtun; then
    BT="${BORINGTUN_BIN:-$(command -v boringtun-cli || true)}"
    [[ -z "$BT" && -x "$BENCH_TOOLS/bin/boringtun-cli" ]] && BT="$BENCH_TOOLS/bin/boringtun-cli"
    if [[ -z "$BT" && $INSTALL == 1 ]] && command -v cargo >/dev/null; then
        log "cargo install boringtun-cli --version $BORINGTUN_VERSION --root $BENCH_TOOLS (a few minutes)"
        mkdir -p "$BENCH_TOOLS"
        if (cd "$BENCH_TOOLS" && CARGO_TARGET_DIR="$BENCH_TOOLS/target" cargo install boringtun-cli \
            --version "$BORINGTUN_VERSION" --locked --root "$BENCH_TOOLS") >"$BENCH_TOOLS/install.log" 2>&1; then
            BT="$BENCH_TOOLS/bin/boringtun-cli"
        else
            log "cargo install boringtun-cli failed, see $BENCH_TOOLS/install.log"
        fi
    fi
    if [[ -z "$BT" || ! -x "$BT" ]]; then NA[boringtun]="boringtun-cli not installed"
    elif ! need wg wireguard-tools; then NA[boringtun]="wg (wireguard-tools) not installed"; fi
fi
if want_system nebula; then
    if ! need nebula nebula; then NA[nebula]="nebula not installed (apt-get install -y nebula)"
    elif ! command -v nebula-cert >/dev/null; then NA[nebula]="nebula-cert not installed"; fi
fi
if want_system p2pvpn || want_system p2pvpn-relay || want_system p2pvpn-v6; then
    if [[ -z "${P2PVPN_BIN:-}" && $BENCH_BUILD == release ]]; then
        log "cargo build --release"
        cargo build --release >&2 || NA[p2pvpn]="cargo build --release failed"
    elif [[ -z "${P2PVPN_BIN:-}" ]]; then
        # What scripts/package-deb.sh ships: the benchmark measures the product.
        log "scripts/pgo.sh: the profile-guided build the package ships (about 10 minutes)"
        if P2PVPN_BIN="$(bash scripts/pgo.sh | tail -n 1)"; then export P2PVPN_BIN
        else NA[p2pvpn]="scripts/pgo.sh failed (BENCH_BUILD=release measures a plain build)"; fi
    fi
    P2P_BIN="$(p2p_bin_default)"
    [[ -n "${NA[p2pvpn]:-}" || -x "$P2P_BIN" ]] || NA[p2pvpn]="no binary at $P2P_BIN"
    [[ -z "${NA[p2pvpn]:-}" ]] || NA[p2pvpn-relay]="${NA[p2pvpn]}"
    [[ -z "${NA[p2pvpn]:-}" ]] || NA[p2pvpn-v6]="${NA[p2pvpn]}"
fi

# ---------------------------------------------------------------- lab
WGSOCKS=()
lab_on_exit() {
    local s
    for s in "${WGSOCKS[@]}"; do rm -f "/var/run/wireguard/$s.sock"; done
    if [[ "$1" -ne 0 ]]; then lab_dump_logs 30; fi
    return 0
}
lab_init
log "lab $LAB_TMP, namespaces ${LAB_PREFIX}a/b"
A_IP=198.51.100.1
B_IP=198.51.100.2
lab_add_ns a
lab_add_ns b
lab_veth a eth0 b eth0
lab_addr a eth0 "$A_IP/24"
lab_addr b eth0 "$B_IP/24"
lab_spawn b iperf3-server -- iperf3 -s -B 0.0.0.0 -p 5201
iperf_listening() { lab_exec b ss -Hltn "sport = :5201" | grep -q .; }
lab_wait_for 10 iperf_listening || { echo "iperf3 server did not start" >&2; exit 1; }

# a short per-run tag keeps interface names (and wg UAPI sockets in the shared
# /var/run/wireguard) unique across parallel runs; ifnames are <= 15 chars
TAG="$(printf '%x' $$)"

wait_ping() {  # wait_ping SECONDS NS ADDR : until one ping answers
    lab_wait_for "$1" lab_exec "$2" ping -c 1 -W 1 "$3"
}

# wg_pair SYSTEM IF_A IF_B NET3 PORT_A PORT_B : configure two userspace WireGuard
# interfaces (already created by their daemons) with fresh keys and wg(8).
wg_pair() {
    local sys="$1" ifa="$2" ifb="$3" net="$4"
    local d="$LAB_TMP/$sys"; mkdir -p "$d"
    (umask 077 && wg genkey >"$d/a.key" && wg genkey >"$d/b.key") || return 1
    wg pubkey <"$d/a.key" >"$d/a.pub" && wg pubkey <"$d/b.key" >"$d/b.pub" || return 1
    lab_exec a wg set "$ifa" private-key "$d/a.key" listen-port "$5" \
        peer "$(cat "$d/b.pub")" allowed-ips "$net.2/32" endpoint "$B_IP:$6" || return 1
    lab_exec b wg set "$ifb" private-key "$d/b.key" listen-port "$6" \
        peer "$(cat "$d/a.pub")" allowed-ips "$net.1/32" endpoint "$A_IP:$5" || return 1
    lab_exec a ip addr add "$net.1/24" dev "$ifa" && lab_exec a ip link set "$ifa" mtu 1420 up &&
        lab_exec b ip addr add "$net.2/24" dev "$ifb" && lab_exec b ip link set "$ifb" mtu 1420 up || return 1
    TARGET[$sys]="$net.2"
    wait_ping 10 a "$net.2"
}

setup_raw() { TARGET[raw]="$B_IP"; }

setup_wireguard-go() {
    local ifa="wgo${TAG}a" ifb="wgo${TAG}b" n
    WGSOCKS+=("$ifa" "$ifb")
    for n in a b; do
        local ifn="wgo${TAG}$n"
        lab_spawn "$n" "wireguard-go-$n" -- env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
            LOG_LEVEL=error wireguard-go -f "$ifn"
        TUNPIDS[wireguard-go]+="wireguard-go-$n "
        lab_wait_for 10 test -S "/var/run/wireguard/$ifn.sock" || { NA[wireguard-go]="daemon did not start"; return 1; }
    done
    wg_pair wireguard-go "$ifa" "$ifb" 10.99.1 51821 51822 || { NA[wireguard-go]="tunnel did not pass ping"; return 1; }
}

setup_boringtun() {
    local ifa="bt${TAG}a" ifb="bt${TAG}b" n
    WGSOCKS+=("$ifa" "$ifb")
    for n in a b; do
        local ifn="bt${TAG}$n"
        lab_spawn "$n" "boringtun-$n" -- env WG_SUDO=1 "$BT" --foreground --disable-drop-privileges \
            --log "$LAB_TMP/logs/boringtun-$n.out" "$ifn"
        TUNPIDS[boringtun]+="boringtun-$n "
        lab_wait_for 10 test -S "/var/run/wireguard/$ifn.sock" || { NA[boringtun]="daemon did not start"; return 1; }
    done
    wg_pair boringtun "$ifa" "$ifb" 10.99.2 51831 51832 || { NA[boringtun]="tunnel did not pass ping"; return 1; }
}

setup_p2pvpn() {
    local st="$LAB_TMP/server-state" n tok
    lab_spawn a p2pvpn-server -- "$P2P_BIN" server --listen "$A_IP:7400" --state-dir "$st"
    local rc=0
    lab_wait_ready 30 p2pvpn-server "p2pvpn server listening on" || rc=$?
    case $rc in
        0) ;;
        2) NA[p2pvpn]="server exited: $(tail -n 1 "$(lab_logfile p2pvpn-server)")"; return 1 ;;
        *) NA[p2pvpn]="server not ready in 30 s"; return 1 ;;
    esac
    lab_exec a timeout 20 "$P2P_BIN" network create bench --cidr 10.77.0.0/24 --state-dir "$st" >&2 ||
        { NA[p2pvpn]="network create failed"; return 1; }
    for n in a b; do
        tok="$(lab_exec a timeout 20 "$P2P_BIN" network invite bench --uses 1 --state-dir "$st" 2>>"$LAB_TMP/logs/p2pvpn-invite.log" | tail -n 1)" ||
            { NA[p2pvpn]="invite failed"; return 1; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "node-$n" >"$LAB_TMP/logs/p2pvpn-join-$n.log" 2>&1 ||
            { NA[p2pvpn]="join failed"; return 1; }
        p2p_wireguard "$n" bench
    done
    for n in a b; do
        p2p_spawn "$n" "p2pvpn-$n" up --network bench
        TUNPIDS[p2pvpn]+="p2pvpn-$n "
    done
    lab_wait_for 30 p2p_peer_is_direct a bench node-b || { NA[p2pvpn]="no direct path in 30 s"; return 1; }
    TARGET[p2pvpn]="$(p2p_field b bench 'j["virtual_ip"]')" || { NA[p2pvpn]="no virtual_ip"; return 1; }
    wait_ping 10 a "${TARGET[p2pvpn]}" || { NA[p2pvpn]="tunnel did not pass ping"; return 1; }
}

# join_fixed_ports SYSTEM NETWORK PREFIX PORT STATE_DIR [INVITE ARGS...] : joins a and b to
# NETWORK as PREFIX-a and PREFIX-b with fixed UDP ports PORT (a) and PORT+1 (b), and drops the
# two nodes' direct IPv4 UDP both ways (one nftables rule per side; what comes from the server's
# port passes), so that the pair must take another path. Sets NA[SYSTEM] on failure.
join_fixed_ports() {
    local sys="$1" net="$2" prefix="$3" base="$4" st="$5" n tok port
    shift 5
    for n in a b; do
        tok="$(lab_exec a timeout 20 "$P2P_BIN" network invite "$net" --uses 1 "$@" --state-dir "$st" 2>>"$LAB_TMP/logs/p2pvpn-invite.log" | tail -n 1)" ||
            { NA[$sys]="invite failed"; return 1; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "$prefix-$n" >"$LAB_TMP/logs/$sys-join-$n.log" 2>&1 ||
            { NA[$sys]="join failed"; return 1; }
        p2p_wireguard "$n" "$net"
        port=$((base + $([[ $n == a ]] && echo 0 || echo 1)))
        sed -i "s/^#\{0,1\} *listen_port *=.*/listen_port = $port/" "$LAB_TMP/$n/etc/$net.toml"
        grep -q "^listen_port = $port" "$LAB_TMP/$n/etc/$net.toml" ||
            printf 'listen_port = %s\n' "$port" >>"$LAB_TMP/$n/etc/$net.toml"
    done
    lab_exec b nft -f - <<NFT || { NA[$sys]="nft rule failed"; return 1; }
table inet drop$net {
    chain input { type filter hook input priority 0; ip saddr $A_IP udp sport $base udp dport $((base + 1)) drop; }
}
NFT
    lab_exec a nft -f - <<NFT || { NA[$sys]="nft rule failed"; return 1; }
table inet drop$net {
    chain input { type filter hook input priority 0; ip saddr $B_IP udp sport $((base + 1)) udp dport $base drop; }
}
NFT
}

# start_pair SYSTEM NETWORK PATH_UP WHY : starts a's and b's nodes on NETWORK, waits up to
# 30 s for PATH_UP (else NA[SYSTEM]=WHY), then for the tunnel to pass a ping.
start_pair() {
    local sys="$1" net="$2" n
    for n in a b; do
        p2p_spawn "$n" "$sys-$n" up --network "$net"
        TUNPIDS[$sys]+="$sys-$n "
    done
    lab_wait_for 30 "$3" || { NA[$sys]="$4"; return 1; }
    TARGET[$sys]="$(p2p_field b "$net" 'j["virtual_ip"]')" || { NA[$sys]="no virtual_ip"; return 1; }
    wait_ping 10 a "${TARGET[$sys]}" || { NA[$sys]="tunnel did not pass ping"; return 1; }
}

# Both sides must relay over UDP: the control-stream relay is another path. The server is in
# namespace a, so the drop rules name node ports only (b's node to the server must pass).
relay_path_up() { p2p_peer_is a benchr relay-b relay udp && p2p_peer_is b benchr relay-a relay udp; }
# p2pvpn through the relay: a second server (a:7410, relay limits raised so the relay's
# own rate limit is not what is measured) and network; each node's UDP port is fixed
# so one nftables rule per side can drop the nodes' direct packets (the relay's come
# from port 7410 and pass). The direct p2pvpn pair above is not affected.
setup_p2pvpn-relay() {
    local st="$LAB_TMP/server-relay-state"
    lab_spawn a p2pvpn-relay-server -- "$P2P_BIN" server --listen "$A_IP:7410" --state-dir "$st" \
        --relay-node-mbps 100000 --relay-total-mbps 100000
    local rc=0
    lab_wait_ready 30 p2pvpn-relay-server "p2pvpn server listening on" || rc=$?
    ((rc == 0)) || { NA[p2pvpn-relay]="relay server did not start"; return 1; }
    lab_exec a timeout 20 "$P2P_BIN" network create benchr --cidr 10.77.1.0/24 --state-dir "$st" >&2 ||
        { NA[p2pvpn-relay]="network create failed"; return 1; }
    # Direct node-to-node UDP dropped both ways: a's node is 51900, b's 51901.
    join_fixed_ports p2pvpn-relay benchr relay 51900 "$st" || return 1
    start_pair p2pvpn-relay benchr relay_path_up "no relayed path in 30 s" || return 1
    # The relay server is part of this path: its CPU and memory are counted with the nodes'
    # (listed after them: the table reads a / b / server).
    TUNPIDS[p2pvpn-relay]+="p2pvpn-relay-server "
    [[ "$(p2p_peer_path a benchr relay-b)" == relay ]] || { NA[p2pvpn-relay]="path is not the relay"; return 1; }
}

# p2pvpn over an IPv6 underlay: a third server (a:7420, on both families) and network; the
# veth gets 2001:db8:be::1 and ::2, each node's UDP port is fixed, and one nftables rule per
# side drops the nodes' direct IPv4 UDP, so the pair goes direct over IPv6.
v6_path_up() {
    [[ "$(p2p_peer_path a bench6 v6-b)" == direct ]] &&
        [[ "$(p2p_field a bench6 "next((p.get('endpoint') or '' for p in j.get('peers', []) if p.get('name') == 'v6-b'), '')")" == "[2001:db8:be::2]:"* ]]
}
setup_p2pvpn-v6() {
    local st="$LAB_TMP/server-v6-state"
    lab_exec a ip -6 addr add 2001:db8:be::1/64 dev eth0 nodad &&
        lab_exec b ip -6 addr add 2001:db8:be::2/64 dev eth0 nodad ||
        { NA[p2pvpn-v6]="cannot add IPv6 addresses"; return 1; }
    lab_spawn a p2pvpn-v6-server -- "$P2P_BIN" server --listen "$A_IP:7420" \
        --listen "[2001:db8:be::1]:7420" --state-dir "$st"
    local rc=0
    lab_wait_ready 30 p2pvpn-v6-server "p2pvpn server listening on" || rc=$?
    ((rc == 0)) || { NA[p2pvpn-v6]="IPv6 server did not start"; return 1; }
    lab_exec a timeout 20 "$P2P_BIN" network create bench6 --cidr 10.77.2.0/24 --state-dir "$st" >&2 ||
        { NA[p2pvpn-v6]="network create failed"; return 1; }
    # Direct node-to-node IPv4 UDP dropped both ways: a's node is 51910, b's 51911.
    join_fixed_ports p2pvpn-v6 bench6 v6 51910 "$st" --server "$A_IP:7420" \
        --server "[2001:db8:be::1]:7420" || return 1
    start_pair p2pvpn-v6 bench6 v6_path_up "no direct IPv6 path in 30 s"
}

# nebula: a throwaway CA, one certificate per end, static host map both ways, no
# lighthouse, firewall open for any traffic between the two (as the tunnels above).
setup_nebula() {
    local d="$LAB_TMP/nebula" n peer_ip peer_under
    mkdir -p "$d"
    (cd "$d" && nebula-cert ca -name bench -duration 24h >/dev/null &&
        nebula-cert sign -name a -ip 10.99.3.1/24 >/dev/null &&
        nebula-cert sign -name b -ip 10.99.3.2/24 >/dev/null) || { NA[nebula]="nebula-cert failed"; return 1; }
    for n in a b; do
        if [[ $n == a ]]; then peer_ip=10.99.3.2; peer_under="$B_IP"; else peer_ip=10.99.3.1; peer_under="$A_IP"; fi
        cat >"$d/$n.yml" <<YML
pki: { ca: $d/ca.crt, cert: $d/$n.crt, key: $d/$n.key }
static_host_map: { "$peer_ip": ["$peer_under:4242"] }
lighthouse: { am_lighthouse: false }
listen: { host: 0.0.0.0, port: 4242 }
punchy: { punch: false }
tun: { dev: neb${TAG}$n, mtu: 1420 }
logging: { level: error }
firewall:
  outbound: [ { port: any, proto: any, host: any } ]
  inbound: [ { port: any, proto: any, host: any } ]
YML
        lab_spawn "$n" "nebula-$n" -- nebula -config "$d/$n.yml"
        TUNPIDS[nebula]+="nebula-$n "
    done
    TARGET[nebula]=10.99.3.2
    wait_ping 15 a 10.99.3.2 || { NA[nebula]="tunnel did not pass ping"; return 1; }
}

for s in "${SYSTEMS[@]}"; do
    [[ -n "${NA[$s]:-}" ]] && continue
    log "setting up $s"
    "setup_$s" || { NA[$s]="${NA[$s]:-setup failed}"; log "$s: n/a (${NA[$s]})"; }
done

# ---------------------------------------------------------------- measure
RES="$LAB_TMP/results"; mkdir -p "$RES"
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() {  # cpu_ticks SYSTEM : utime + stime of all the system's tunnel processes
    local l pid t=0
    for l in ${TUNPIDS[$1]:-}; do
        pid="$(lab_pid "$l")"
        [[ -r /proc/$pid/stat ]] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$t"
}
rss_now() {  # rss_now SYSTEM FIELD : VmRSS or VmHWM of each tunnel process, "a / b"
    local l pid out=()
    for l in ${TUNPIDS[$1]:-}; do
        pid="$(lab_pid "$l")"
        if [[ -r /proc/$pid/status ]]; then
            out+=("$(awk -v f="$2:" '$1 == f {printf "%.1f", $2/1024}' "/proc/$pid/status")")
        else
            out+=("exited")
        fi
    done
    if ((${#out[@]})); then (IFS=/; printf '%s' "${out[*]}" | sed 's|/| / |g'); else printf -- '-'; fi
}
# rss_split SYSTEM : RssAnon+RssFile of each tunnel process in MiB, "anon+file / anon+file"
rss_split() {
    local l pid out=()
    for l in ${TUNPIDS[$1]:-}; do
        pid="$(lab_pid "$l")"
        [[ -r /proc/$pid/status ]] &&
            out+=("$(awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 } END { printf "%.1f+%.1f", a / 1024, f / 1024 }' "/proc/$pid/status")")
    done
    if ((${#out[@]})); then (IFS=/; printf '%s' "${out[*]}" | sed 's|/| / |g'); else printf -- '-'; fi
}
declare -A IDLE_RSS=()
declare -A IDLE_SPLIT=()
# Let every tunnel settle after its setup ping before reading idle memory (BENCH_SETTLE above).
sleep "${BENCH_SETTLE:-10}"
for s in "${SYSTEMS[@]}"; do
    [[ -z "${NA[$s]:-}" ]] || continue
    IDLE_RSS[$s]="$(rss_now "$s" VmRSS)"
    IDLE_SPLIT[$s]="$(rss_split "$s")"
    # BENCH_SMAPS_DIR=DIR keeps each idle tunnel process's /proc/PID/smaps, to see which
    # mappings its RSS is made of (notes/mem.md).
    if [[ -n "${BENCH_SMAPS_DIR:-}" ]]; then
        mkdir -p "$BENCH_SMAPS_DIR"
        for l in ${TUNPIDS[$s]:-}; do
            cp "/proc/$(lab_pid "$l")/smaps" "$BENCH_SMAPS_DIR/$s-$l.smaps" 2>/dev/null || true
        done
    fi
done
# ping_stat SYSTEM ROUND KIND CMD... : runs CMD while `perf stat` counts the system's tunnel
# processes (all their threads); the counts go to $RES/SYSTEM.KIND, one CSV line per round.
ping_stat() {
    local s="$1" r="$2" kind="$3" l pids=() out="$LAB_TMP/$1-perf-$3-$2.csv" perf_pid rc=0
    shift 3
    for l in ${TUNPIDS[$s]:-}; do pids+=("$(lab_pid "$l")"); done
    if ((${#pids[@]} == 0)) || ! command -v perf >/dev/null; then "$@"; return; fi
    perf stat -x, -e task-clock,raw_syscalls:sys_enter,context-switches \
        -p "$(IFS=,; printf '%s' "${pids[*]}")" -o "$out" 2>/dev/null &
    perf_pid=$!
    sleep 0.3 # perf attaches
    local t0; t0="$(date +%s%N)"
    "$@" || rc=$?
    local t1; t1="$(date +%s%N)"
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    # task-clock is in ms; one line: ms,syscalls,switches,window seconds (from attach to stop)
    awk -F, -v w="$(((t1 - t0) / 1000000 + 300))" '$3 == "task-clock" { ms = $1 } $3 ~ /sys_enter/ { sc = $1 }
        $3 == "context-switches" { cs = $1 }
        END { if (ms != "") printf "%s,%s,%s,%.3f\n", ms, sc, cs, w / 1000 }' "$out" >>"$RES/$s.$kind" || true
    return "$rc"
}
# sched_stat SYSTEM ROUND CMD... : runs CMD under `perf sched record -a` and appends, for the
# tunnel processes' threads, one line per wake-up to $RES/SYSTEM.sched: scheduling delay in ms
# and 1 if it ran on another CPU than the previous time, else 0.
sched_stat() {
    local s="$1" r="$2" l pids=() data="$LAB_TMP/$1-sched-$2.data" perf_pid rc=0
    shift 2
    for l in ${TUNPIDS[$s]:-}; do pids+=("$(lab_pid "$l")"); done
    if ((${#pids[@]} == 0)) || ! command -v perf >/dev/null; then "$@"; return; fi
    perf sched record -a -o "$data" 2>/dev/null &
    perf_pid=$!
    sleep 0.5 # perf attaches
    "$@" || rc=$?
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    # timehist: time, cpu, task[tid/pid], wait time, sch delay, run time (ms). A main thread is
    # printed as task[pid], without the slash, so it is not counted: the data path's threads
    # (p2pvpn-data, boringtun-cli's workers) are not main threads.
    perf sched timehist -i "$data" 2>/dev/null | awk -v pids=" $(IFS=' '; printf '%s' "${pids[*]}") " '
        { if (match($3, /\[[0-9]+\/[0-9]+\]/)) { split(substr($3, RSTART + 1, RLENGTH - 2), id, "/")
              if (index(pids, " " id[2] " ")) { cpu = $2; gsub(/[\[\]]/, "", cpu)
                  moved = (id[1] in last && last[id[1]] != cpu) ? 1 : 0; last[id[1]] = cpu
                  print $5, moved } } }' >>"$RES/$s.sched" || true
    rm -f "$data"
    return "$rc"
}
ping_set() {  # ping_set TARGET : one set of pings from a (the timed one, and the counted ones)
    lab_exec a timeout "$PING_LIMIT" ping -q -c "$PINGS" -i "$PING_INTERVAL" -W 2 "$1"
}
# load_rss SYSTEM : every 0.5 s until killed (at most DURATION + 30 s), a line of each tunnel
# process's VmRSS in KiB to $RES/SYSTEM.loadrss; with BENCH_SMAPS_DIR, each process's smaps at
# its highest sample so far to DIR/SYSTEM-LABEL.load.smaps.
load_rss() {
    local l pid i line kib
    local -A top=()
    for ((i = 0; i < 2 * (DURATION + 30); i++)); do
        line=""
        for l in ${TUNPIDS[$1]:-}; do
            pid="$(lab_pid "$l")"
            kib="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
            line+=" ${kib:-0}"
            if [[ -n "${BENCH_SMAPS_DIR:-}" && ${kib:-0} -gt ${top[$l]:-0} ]]; then
                top[$l]=$kib
                cp "/proc/$pid/smaps" "$BENCH_SMAPS_DIR/$1-$l.load.smaps" 2>/dev/null || true
            fi
        done
        echo "$line" >>"$RES/$1.loadrss"
        sleep 0.5
    done
}
# rss_load SYSTEM : the highest VmRSS sampled under load per tunnel process, MiB, "a / b"
rss_load() {
    [[ -s "$RES/$1.loadrss" ]] || { printf -- '-'; return; }
    awk '{ for (i = 1; i <= NF; i++) if ($i > m[i]) m[i] = $i; if (NF > n) n = NF }
        END { for (i = 1; i <= n; i++) printf "%s%.1f", (i > 1 ? " / " : ""), m[i] / 1024 }' "$RES/$1.loadrss"
}
measure() {  # measure SYSTEM ROUND
    local s="$1" r="$2" t="${TARGET[$1]}" json mbps rtt c0 c1 cpg="" sampler=""
    json="$LAB_TMP/$s-iperf-$r.json"
    c0="$(cpu_ticks "$s")"
    if [[ -n "${TUNPIDS[$s]:-}" ]]; then load_rss "$s" & sampler=$!; fi
    if lab_exec a timeout $((DURATION + 20)) iperf3 -c "$t" -p 5201 -t "$DURATION" -J >"$json" 2>"$json.err"; then
        mbps="$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.0f" % (j["end"]["sum_received"]["bits_per_second"]/1e6))' "$json" 2>/dev/null || echo "")"
    fi
    if [[ -n "$sampler" ]]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    c1="$(cpu_ticks "$s")"
    # CPU seconds (both ends) per Gbit carried: ticks/HZ over (Mbit/s * seconds / 1000).
    if [[ -n "${mbps:-}" && "$mbps" != 0 && -n "${TUNPIDS[$s]:-}" ]]; then
        cpg="$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v m="$mbps" -v d="$DURATION" 'BEGIN { printf "%.2f", (c / hz) / (m * d / 1000) }')"
    fi
    rtt="$(ping_set "$t" 2>/dev/null |
        awk -F/ '/^(rtt|round-trip)/ {print $5}' || true)"
    # The counted pings are a second run, so that perf's tracepoint does not touch the RTT above.
    if [[ ${BENCH_PING_STAT:-0} == 1 ]]; then
        ping_stat "$s" "$r" idle sleep 4
        ping_stat "$s" "$r" ping ping_set "$t" >/dev/null 2>&1 || true
    fi
    if [[ ${BENCH_SCHED:-0} == 1 ]]; then
        sched_stat "$s" "$r" ping_set "$t" >/dev/null 2>&1 || true
    fi
    log "round $r $s: ${mbps:-fail} Mbit/s, RTT ${rtt:-fail} ms, CPU ${cpg:--} s/Gbit"
    printf '%s\n' "${mbps:-nan}" >>"$RES/$s.tcp"
    printf '%s\n' "${rtt:-nan}" >>"$RES/$s.rtt"
    printf '%s\n' "${cpg:-nan}" >>"$RES/$s.cpu"
}
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$s]:-}" ]] || continue
        measure "$s" "$r"
    done
done
# BENCH_HOLD (pgo.sh's training): every tunnel stays up that many seconds more with a ping a
# second through it (bounded: one ping per second, HOLD of them), so that each session rekeys
# (WireGuard's REKEY_AFTER_TIME, 120 s) while the nodes are settled.
if ((${BENCH_HOLD:-0} > 0)); then
    log "holding every tunnel ${BENCH_HOLD} s more, a ping a second"
    holders=()
    for s in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$s]:-}" && -n "${TARGET[$s]:-}" ]] || continue
        lab_exec a timeout $((BENCH_HOLD + 10)) ping -q -c "$BENCH_HOLD" -i 1 -W 2 "${TARGET[$s]}" \
            >/dev/null 2>&1 &
        holders+=("$!")
    done
    for p in "${holders[@]}"; do wait "$p" || true; done
fi

# ---------------------------------------------------------------- report
median() {  # median FILE : median of the numeric lines, or "fail"
    python3 -c '
import sys, statistics, math
v = [float(x) for x in open(sys.argv[1]) if x.strip() and x.strip() != "nan"]
print(sys.argv[2] % statistics.median(v) if v else "fail")' "$1" "$2"
}
rounds_of() { paste -sd, "$1" | sed 's/,/, /g'; }

echo
echo "Data plane, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), ${ROUNDS} interleaved round(s), iperf3 TCP ${DURATION} s (receiver) + $PINGS pings (-i $PING_INTERVAL); median shown"
[[ -z "${P2P_BIN:-}" ]] || echo "p2pvpn binary: $P2P_BIN"
echo "CPU s/Gbit: user+system CPU seconds of the tunnel processes per Gbit carried. RSS in MiB, a / b (/ relay server):"
echo "idle ${BENCH_SETTLE:-10} s after setup; under load, the highest VmRSS sampled every 0.5 s during TCP; peak, VmHWM since start."
echo
echo "| system | TCP Mbit/s | ping RTT ms | CPU s/Gbit | RSS idle | RSS under load | RSS peak | TCP per round | RTT per round |"
echo "|---|---|---|---|---|---|---|---|---|"
for s in "${SYSTEMS[@]}"; do
    ver=""
    case "$s" in
        raw) name="raw veth, no tunnel" ;;
        p2pvpn) name="p2pvpn"; ver="$(timeout 5 "$P2P_BIN" --version 2>/dev/null | awk 'NR==1 {print $2}' || true)" ;;
        p2pvpn-relay) name="p2pvpn via UDP relay" ;;
        p2pvpn-v6) name="p2pvpn over IPv6" ;;
        nebula) name="nebula"; ver="$(timeout 5 nebula -version 2>/dev/null | awk 'NR==1 {print $2}' || true)" ;;
        boringtun) name="boringtun-cli"; ver="$(timeout 5 "${BT:-false}" --version 2>/dev/null | awk 'NR==1 {print $NF}' || true)" ;;
        wireguard-go) name="wireguard-go"; ver="$(timeout 5 wireguard-go --version 2>/dev/null | awk 'NR==1 {print $2}' || true)" ;;
    esac
    name+="${ver:+ $ver}"
    if [[ -n "${NA[$s]:-}" ]]; then
        echo "| $name | n/a (${NA[$s]}) | n/a | | | | | | |"
        continue
    fi
    cpu="-"; [[ -n "${TUNPIDS[$s]:-}" ]] && cpu="$(median "$RES/$s.cpu" '%.2f')"
    echo "| $name | $(median "$RES/$s.tcp" '%.0f') | $(median "$RES/$s.rtt" '%.3f') | $cpu | ${IDLE_RSS[$s]:--} | $(rss_load "$s") | $(rss_now "$s" VmHWM) | $(rounds_of "$RES/$s.tcp") | $(rounds_of "$RES/$s.rtt") |"
done
echo
echo "RSS idle, anonymous + file-backed MiB (RssAnon + RssFile):"
for s in "${SYSTEMS[@]}"; do
    if [[ -z "${NA[$s]:-}" ]]; then echo "  $s: ${IDLE_SPLIT[$s]:--}"; fi
done
if [[ ${BENCH_SCHED:-0} == 1 ]]; then
    echo
    echo "Scheduler, tunnel threads over $PINGS pings per round (perf sched timehist): delay from wake-up to running, ms"
    for s in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$s]:-}" && -s "$RES/$s.sched" ]] || continue
        python3 - "$s" "$RES/$s.sched" <<'PY'
import statistics, sys
name, f = sys.argv[1], sys.argv[2]
rows = [l.split() for l in open(f) if len(l.split()) == 2]
d = sorted(float(a) for a, _ in rows)
moved = sum(int(b) for _, b in rows)
p90 = d[min(len(d) - 1, int(len(d) * 0.9))]
print(f"  {name}: {len(d)} runs, median {statistics.median(d):.3f}, p90 {p90:.3f}, on another CPU {moved}")
PY
    done
fi
if [[ ${BENCH_PING_STAT:-0} == 1 ]]; then
    echo
    echo "Per echo ($PINGS pings, -i $PING_INTERVAL), both tunnel processes, less an idle window scaled to the same length;"
    echo "median over rounds (perf stat: task-clock, raw_syscalls:sys_enter, context-switches):"
    for s in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$s]:-}" && -s "$RES/$s.ping" && -s "$RES/$s.idle" ]] || continue
        python3 - "$s" "$RES/$s.ping" "$RES/$s.idle" "$PINGS" <<'PY'
import statistics, sys
name, ping, idle, pings = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = lambda f: [[float(x) for x in l.split(",")] for l in open(f) if l.strip()]
per = []
for p, i in zip(rows(ping), rows(idle)):
    k = p[3] / i[3]  # scale the idle window to the ping window's length
    per.append([(p[j] - i[j] * k) / pings for j in range(3)])
med = [statistics.median(v[j] for v in per) for j in range(3)]
print(f"  {name}: {med[0] * 1000:.0f} us CPU, {med[1]:.1f} syscalls, {med[2]:.1f} context switches")
PY
    done
fi
