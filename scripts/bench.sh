#!/usr/bin/env bash
# scripts/bench.sh - data-plane benchmark against the anchors (shared/docs/anchors.md).
#
# Two network namespaces a (198.51.100.1) and b (198.51.100.2) joined by one veth
# pair. Each system tunnels between them; per round and system: TCP iperf3 for
# 6 s from a to b (receiver-side Mbit/s), then 20 pings (-i 0.2, avg RTT). Rounds
# are interleaved (round 1: every system, round 2: every system, ...); the table
# shows the median per system and the peak RSS (VmHWM) of each tunnel process.
#
# Systems: raw (no tunnel), p2pvpn, boringtun (boringtun-cli), wireguard-go.
#
# Usage (root): scripts/bench.sh [--rounds N] [--only SYSTEM[,SYSTEM...]] [--time S] [--no-install]
#   P2PVPN_BIN     p2pvpn binary (default: cargo build --release, target/release/p2pvpn)
#   BORINGTUN_BIN  boringtun-cli binary (default: PATH, then $BENCH_TOOLS/bin, else
#                  `cargo install boringtun-cli --version $BORINGTUN_VERSION --root $BENCH_TOOLS`)
#   BORINGTUN_VERSION  default 0.7.1 (the anchors' version)
#   BENCH_TOOLS    where tools are installed (default /tmp/p2p-bench-tools)
#   LAB_KEEP=1     keep logs and raw results
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
ALL_SYSTEMS=(raw p2pvpn boringtun wireguard-go)
BENCH_TOOLS="${BENCH_TOOLS:-/tmp/p2p-bench-tools}"
BORINGTUN_VERSION="${BORINGTUN_VERSION:-0.7.1}"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
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

SYSTEMS=()
if [[ -n "$ONLY" ]]; then
    IFS=, read -r -a want <<<"$ONLY"
    for s in "${want[@]}"; do
        case "$s" in
            raw | p2pvpn | wireguard-go) SYSTEMS+=("$s") ;;
            boringtun | boringtun-cli) SYSTEMS+=(boringtun) ;;
            *) echo "unknown system '$s' (raw, p2pvpn, boringtun, wireguard-go)" >&2; exit 2 ;;
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
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2
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
if want_system p2pvpn; then
    if [[ -z "${P2PVPN_BIN:-}" ]]; then
        log "cargo build --release"
        cargo build --release >&2 || NA[p2pvpn]="cargo build --release failed"
    fi
    P2P_BIN="$(p2p_bin_default)"
    [[ -n "${NA[p2pvpn]:-}" || -x "$P2P_BIN" ]] || NA[p2pvpn]="no binary at $P2P_BIN"
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
    done
    for n in a b; do
        p2p_spawn "$n" "p2pvpn-$n" up --network bench
        TUNPIDS[p2pvpn]+="p2pvpn-$n "
    done
    lab_wait_for 30 p2p_peer_is_direct a bench node-b || { NA[p2pvpn]="no direct path in 30 s"; return 1; }
    TARGET[p2pvpn]="$(p2p_field b bench 'j["virtual_ip"]')" || { NA[p2pvpn]="no virtual_ip"; return 1; }
    wait_ping 10 a "${TARGET[p2pvpn]}" || { NA[p2pvpn]="tunnel did not pass ping"; return 1; }
}

for s in "${SYSTEMS[@]}"; do
    [[ -n "${NA[$s]:-}" ]] && continue
    log "setting up $s"
    "setup_$s" || { NA[$s]="${NA[$s]:-setup failed}"; log "$s: n/a (${NA[$s]})"; }
done

# ---------------------------------------------------------------- measure
RES="$LAB_TMP/results"; mkdir -p "$RES"
measure() {  # measure SYSTEM ROUND
    local s="$1" r="$2" t="${TARGET[$1]}" json mbps rtt
    json="$LAB_TMP/$s-iperf-$r.json"
    if lab_exec a timeout $((DURATION + 20)) iperf3 -c "$t" -p 5201 -t "$DURATION" -J >"$json" 2>"$json.err"; then
        mbps="$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.0f" % (j["end"]["sum_received"]["bits_per_second"]/1e6))' "$json" 2>/dev/null || echo "")"
    fi
    rtt="$(lab_exec a timeout 30 ping -q -c 20 -i 0.2 -W 2 "$t" 2>/dev/null |
        awk -F/ '/^(rtt|round-trip)/ {print $5}' || true)"
    log "round $r $s: ${mbps:-fail} Mbit/s, RTT ${rtt:-fail} ms"
    printf '%s\n' "${mbps:-nan}" >>"$RES/$s.tcp"
    printf '%s\n' "${rtt:-nan}" >>"$RES/$s.rtt"
}
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SYSTEMS[@]}"; do
        [[ -z "${NA[$s]:-}" ]] || continue
        measure "$s" "$r"
    done
done

# ---------------------------------------------------------------- report
rss_of() {  # peak RSS (VmHWM) of a system's tunnel processes, "a / b"
    local l pid out=()
    for l in ${TUNPIDS[$1]:-}; do
        pid="$(lab_pid "$l")"
        if [[ -r /proc/$pid/status ]]; then
            out+=("$(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")")
        else
            out+=("exited")
        fi
    done
    if ((${#out[@]})); then (IFS=/; printf '%s' "${out[*]}" | sed 's|/| / |g'); else printf -- '-'; fi
}
median() {  # median FILE : median of the numeric lines, or "fail"
    python3 -c '
import sys, statistics, math
v = [float(x) for x in open(sys.argv[1]) if x.strip() and x.strip() != "nan"]
print(sys.argv[2] % statistics.median(v) if v else "fail")' "$1" "$2"
}
rounds_of() { paste -sd, "$1" | sed 's/,/, /g'; }

echo
echo "Data plane, $(date -u +%Y-%m-%d), $(nproc) CPUs, kernel $(uname -r), ${ROUNDS} interleaved round(s), iperf3 TCP ${DURATION} s (receiver) + 20 pings; median shown"
echo
echo "| system | TCP Mbit/s | ping RTT ms | peak RSS a / b | TCP per round | RTT per round |"
echo "|---|---|---|---|---|---|"
for s in "${SYSTEMS[@]}"; do
    ver=""
    case "$s" in
        raw) name="raw veth, no tunnel" ;;
        p2pvpn) name="p2pvpn"; ver="$(timeout 5 "$P2P_BIN" --version 2>/dev/null | awk 'NR==1 {print $NF}' || true)" ;;
        boringtun) name="boringtun-cli"; ver="$(timeout 5 "${BT:-false}" --version 2>/dev/null | awk 'NR==1 {print $NF}' || true)" ;;
        wireguard-go) name="wireguard-go"; ver="$(timeout 5 wireguard-go --version 2>/dev/null | awk 'NR==1 {print $2}' || true)" ;;
    esac
    name+="${ver:+ $ver}"
    if [[ -n "${NA[$s]:-}" ]]; then
        echo "| $name | n/a (${NA[$s]}) | n/a | $(rss_of "$s") | | |"
        continue
    fi
    echo "| $name | $(median "$RES/$s.tcp" '%.0f') | $(median "$RES/$s.rtt" '%.3f') | $(rss_of "$s") | $(rounds_of "$RES/$s.tcp") | $(rounds_of "$RES/$s.rtt") |"
done
