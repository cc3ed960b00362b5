#!/usr/bin/env bash
# scripts/profile.sh - where a bulk transfer through the tunnel spends its CPU, and where a
# node's memory goes.
#
# Two network namespaces a (198.51.100.1) and b (198.51.100.2) on one veth pair, as in
# scripts/bench.sh: a server on a, two nodes on a direct path (with --relay: through the
# server's UDP relay, the nodes' direct UDP dropped by nftables). Then:
#   1. memory of each node idle: VmRSS, RssAnon, RssFile, threads, and the largest
#      mappings by RSS (/proc/PID/smaps);
#   2. one iperf3 TCP transfer a -> b for --time seconds while `perf record -g` samples both
#      nodes (and the server with --relay) at --freq Hz (cpu-cycles, else cpu-clock where
#      the PMU is not available);
#   3. memory again (VmHWM: the peak under load);
#   4. per process, the top symbols and the shares of crypto, copies, checksums, syscall
#      entry and the rest of the kernel, user space else (`perf report`, grouped by name
#      patterns listed below in classify()).
#
# With --ping, the load in step 2 is pings instead of iperf3: one every 2 ms for --time seconds
# (at most 400 a second, bounded), so the profile shows what one echo costs, the path the ping
# RTT of scripts/bench.sh goes through.
#
# Usage (root): scripts/profile.sh [--time S] [--freq HZ] [--relay] [--ping] [--top N]
#   P2PVPN_BIN   p2pvpn binary (default target/release/p2pvpn; build it with
#                `cargo build --release`: a debug binary profiles the wrong code)
#   PROFILE_OUT  where perf.data and the reports go (default /tmp/p2p-profile.PID, kept)
#   PERF_CALL_GRAPH  perf's --call-graph mode (default fp; dwarf gives real callers for a
#                binary without frame pointers: then report-callers-NAME.txt has them)
# Exits 77 after `SKIP: reason` when it cannot run here (not root, perf or iperf3 missing).
# All traffic stays inside the two namespaces this script creates; they are removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

DURATION=10
FREQ=999
RELAY=0
PING=0
TOP=15
usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --time) DURATION="$2"; shift 2 ;;
        --freq) FREQ="$2"; shift 2 ;;
        --relay) RELAY=1; shift ;;
        --ping) PING=1; shift ;;
        --top) TOP="$2"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ "$DURATION" =~ ^[1-9][0-9]?$ && "$DURATION" -ge 4 ]] || { echo "--time must be 4..99 seconds" >&2; exit 2; }
[[ "$FREQ" =~ ^[1-9][0-9]{1,3}$ ]] || { echo "--freq must be 10..9999 Hz" >&2; exit 2; }
[[ "$TOP" =~ ^[1-9][0-9]?$ ]] || { echo "--top must be 1..99" >&2; exit 2; }

skip() { echo "SKIP: $*"; exit 77; }
[[ $EUID -eq 0 ]] || skip "needs root (network namespaces, TUN, perf on other processes)"
command -v perf >/dev/null || skip "perf not installed (apt-get install -y linux-perf)"
command -v iperf3 >/dev/null || skip "iperf3 not installed (apt-get install -y iperf3)"
command -v python3 >/dev/null || skip "python3 not installed"
P2P_BIN="$(p2p_bin_default)"
[[ -x "$P2P_BIN" ]] || { echo "no p2pvpn binary at $P2P_BIN: cargo build --release, or set P2PVPN_BIN" >&2; exit 2; }
OUT="${PROFILE_OUT:-/tmp/p2p-profile.$$}"
mkdir -p "$OUT"

log() { printf '[profile] %s\n' "$*" >&2; }

lab_init
A_IP=198.51.100.1
B_IP=198.51.100.2
lab_add_ns a
lab_add_ns b
lab_veth a eth0 b eth0
lab_addr a eth0 "$A_IP/24"
lab_addr b eth0 "$B_IP/24"
lab_spawn b iperf3-server -- iperf3 -s -B 0.0.0.0 -p 5201
iperf_listening() { lab_exec b ss -Hltn "sport = :5201" | grep -q .; }
lab_wait_for 10 iperf_listening || lab_die "iperf3 server did not start"

# ---------------------------------------------------------------- p2pvpn pair
st="$LAB_TMP/server-state"
server_args=(server --listen "$A_IP:7400" --state-dir "$st")
((RELAY)) && server_args+=(--relay-node-mbps 100000 --relay-total-mbps 100000)
lab_spawn a p2pvpn-server -- "$P2P_BIN" "${server_args[@]}"
lab_wait_ready 30 p2pvpn-server "p2pvpn server listening on" || lab_die "server did not start"
lab_exec a timeout 20 "$P2P_BIN" network create prof --cidr 10.77.0.0/24 --state-dir "$st" >/dev/null
for n in a b; do
    tok="$(lab_exec a timeout 20 "$P2P_BIN" network invite prof --uses 1 --state-dir "$st" | tail -n 1)"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "node-$n" >"$LAB_TMP/logs/join-$n.log" 2>&1 || lab_die "join $n failed"
done
if ((RELAY)); then
    # Fixed node ports (a 51900, b 51901) and their direct UDP dropped both ways, so punching
    # fails and the server's UDP relay carries the traffic, as in scripts/bench.sh.
    for n in a b; do
        port=$((51900 + $([[ $n == a ]] && echo 0 || echo 1)))
        sed -i "s/^#\{0,1\} *listen_port *=.*/listen_port = $port/" "$LAB_TMP/$n/etc/prof.toml"
        grep -q "^listen_port = $port" "$LAB_TMP/$n/etc/prof.toml" ||
            printf 'listen_port = %s\n' "$port" >>"$LAB_TMP/$n/etc/prof.toml"
    done
    lab_exec b nft -f - <<NFT || lab_die "nft rule failed"
table inet profrelay {
    chain input { type filter hook input priority 0; ip saddr $A_IP udp sport 51900 udp dport 51901 drop; }
}
NFT
    lab_exec a nft -f - <<NFT || lab_die "nft rule failed"
table inet profrelay {
    chain input { type filter hook input priority 0; ip saddr $B_IP udp sport 51901 udp dport 51900 drop; }
}
NFT
fi
for n in a b; do p2p_spawn "$n" "node-$n" up --network prof; done
want_path=direct; ((RELAY)) && want_path=relay
# Through the relay the transport must be UDP (not the control stream) on both sides.
path_is() {
    if ((RELAY)); then
        p2p_peer_is a prof node-b relay udp && p2p_peer_is b prof node-a relay udp
    else
        p2p_peer_is_direct a prof node-b
    fi
}
lab_wait_for 30 path_is ||
    lab_die "no $want_path path in 30 s (a sees: $(p2p_peer_route a prof node-b); b sees: $(p2p_peer_route b prof node-a))"
TARGET="$(p2p_field b prof 'j["virtual_ip"]')"
lab_wait_for 10 lab_exec a ping -c 1 -W 1 "$TARGET" || lab_die "tunnel did not pass ping"
PIDS=("$(lab_pid node-a)" "$(lab_pid node-b)")
NAMES=(node-a node-b)
if ((RELAY)); then PIDS+=("$(lab_pid p2pvpn-server)"); NAMES+=(server); fi
log "path $want_path; pids ${PIDS[*]}; output in $OUT"

# ---------------------------------------------------------------- memory
memory() {  # memory WHEN : one line per process, then its largest mappings
    local i pid
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        printf '%s %s: ' "$1" "${NAMES[$i]}"
        awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|Threads):$/ {
                 v = ($1 == "Threads:") ? $2 : sprintf("%.2f MiB", $2 / 1024); printf "%s %s  ", $1, v }
             END { print "" }' "/proc/$pid/status"
        python3 - "$pid" <<'PY'
import re, sys
pid = sys.argv[1]
maps, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
        parts = line.split()
        cur = [parts[5] if len(parts) > 5 else "[anon]", 0, parts[1]]
        maps.append(cur)
    elif line.startswith("Rss:") and cur is not None:
        cur[1] = int(line.split()[1])
total = {}
for name, rss, perms in maps:
    key = (name.rsplit("/", 1)[-1], "x" in perms)
    total[key] = total.get(key, 0) + rss
for (name, x), rss in sorted(total.items(), key=lambda kv: -kv[1])[:6]:
    print(f"    {rss:7d} KiB  {name}{' (code)' if x else ''}")
PY
    done
}
sleep 2
memory idle | tee "$OUT/memory.txt"

# ---------------------------------------------------------------- profile
event=cpu-cycles
if ! perf stat -e cpu-cycles -p "${PIDS[0]}" -- sleep 0.1 >/dev/null 2>&1 ||
    perf stat -e cpu-cycles -p "${PIDS[0]}" -- sleep 0.1 2>&1 | grep -q "not supported"; then
    event=cpu-clock
fi
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A T0=()
for pid in "${PIDS[@]}"; do T0[$pid]="$(cpu_ticks "$pid")"; done
if ((PING)); then
    log "ping every 2 ms for ${DURATION} s a -> b, perf record -e $event -F $FREQ -g on ${NAMES[*]}"
    lab_exec a timeout $((DURATION + 20)) ping -q -c $((DURATION * 400)) -i 0.002 -W 1 "$TARGET" >"$OUT/ping.txt" 2>&1 &
else
    log "iperf3 ${DURATION} s a -> b, perf record -e $event -F $FREQ -g on ${NAMES[*]}"
    lab_exec a timeout $((DURATION + 20)) iperf3 -c "$TARGET" -p 5201 -t "$DURATION" -J >"$OUT/iperf.json" 2>"$OUT/iperf.err" &
fi
load_pid=$!
sleep 1
pid_list="$(IFS=,; echo "${PIDS[*]}")"
CALL_GRAPH="${PERF_CALL_GRAPH:-fp}"
timeout $((DURATION + 10)) perf record -q -e "$event" -F "$FREQ" --call-graph "$CALL_GRAPH" -p "$pid_list" -o "$OUT/perf.data" \
    -- sleep $((DURATION - 2)) 2>"$OUT/perf-record.err" ||
    { cat "$OUT/perf-record.err" >&2; lab_die "perf record failed (perf_event_paranoid? see above)"; }
if ((PING)); then
    wait "$load_pid" || log "ping: $(tail -n 2 "$OUT/ping.txt")"
    echoes="$(awk '/packets transmitted/ { print $4 }' "$OUT/ping.txt")"
    load="ping every 2 ms a -> b: ${echoes:-0} echoes, RTT min/avg/max/mdev $(awk -F' = ' '/^rtt/ { print $2 }' "$OUT/ping.txt")"
    # CPU microseconds per echo, per process (user + system over the whole run).
    cpu_line="CPU us/echo:"
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        cpu_line+=" ${NAMES[$i]} $(awk -v c="$(($(cpu_ticks "$pid") - T0[$pid]))" -v hz="$(getconf CLK_TCK)" \
            -v n="${echoes:-0}" 'BEGIN { if (n + 0 > 0) printf "%.0f", c / hz / n * 1e6; else print "-" }')"
    done
else
    wait "$load_pid" || log "iperf3 failed: $(tail -n 2 "$OUT/iperf.err")"
    mbps="$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.0f" % (j["end"]["sum_received"]["bits_per_second"]/1e6))' "$OUT/iperf.json" 2>/dev/null || echo fail)"
    load="iperf3 TCP a -> b ${DURATION} s: $mbps Mbit/s"
    # CPU seconds per Gbit carried, per process (user + system over the whole transfer).
    cpu_line="CPU s/Gbit:"
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        cpu_line+=" ${NAMES[$i]} $(awk -v c="$(($(cpu_ticks "$pid") - T0[$pid]))" -v hz="$(getconf CLK_TCK)" \
            -v m="$mbps" -v d="$DURATION" 'BEGIN { if (m + 0 > 0) printf "%.2f", (c / hz) / (m * d / 1000); else print "-" }')"
    done
fi
memory "after load" | tee -a "$OUT/memory.txt"

# ---------------------------------------------------------------- report
classify() {  # classify PID NAME : top symbols and shares for one process
    # Percentages relative to this process's own samples.
    perf report -i "$OUT/perf.data" --pid "$1" --no-children --sort sym --stdio -g none \
        --percentage relative --percent-limit 0 2>/dev/null >"$OUT/report-$2.txt" || true
    if [[ "$CALL_GRAPH" == dwarf* ]]; then
        perf report -i "$OUT/perf.data" --pid "$1" --no-children --sort sym --stdio -g caller,0.5,callee \
            --percentage relative --percent-limit 1 2>/dev/null >"$OUT/report-callers-$2.txt" || true
    fi
    python3 - "$OUT/report-$2.txt" "$2" "$TOP" <<'PY'
import re, sys
path, name, top = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for line in open(path, errors="replace"):
    m = re.match(r"^\s+([0-9.]+)%\s+\[([k.])\]\s+(.*\S)\s*$", line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(3)))
if not rows:
    print(f"{name}: no samples"); sys.exit(0)
# Name patterns per share; the first match wins. Kernel and user space apart.
classes = [
    ("crypto", "", r"chacha|poly1305|aead|blake2|x25519|curve25519|ring_core|aes|sha2|hmac"),
    ("copies", "", r"memcpy|memmove|copy_user|copy_to_iter|copy_from_iter|copy_page|_copy_|rep_movs"),
    ("checksums", "", r"csum"),
    ("syscall entry/exit", "k", r"entry_SYSCALL|syscall_exit|do_syscall|syscall_return|__x64_sys|__sys_|ksys_"),
    ("kernel other (net stack, TUN, scheduler)", "k", r"."),
    ("user other (our code, tokio, boringtun)", ".", r"."),
]
share = {c[0]: 0.0 for c in classes}
for pct, space, sym in rows:
    for cname, want, pat in classes:
        if (not want or want == space) and re.search(pat, sym, re.I):
            share[cname] += pct
            break
print(f"{name}: top {top} symbols (self %, [k] kernel / [.] user)")
for pct, space, sym in rows[:top]:
    print(f"  {pct:6.2f}%  [{space}] {sym[:90]}")
print(f"{name}: shares")
for cname, _, _ in classes:
    print(f"  {share[cname]:6.1f}%  {cname}")
PY
}
{
    echo "Profile, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "path $want_path, $load; perf -e $event -F $FREQ -g over $((DURATION - 2)) s"
    echo "$cpu_line"
    for i in "${!PIDS[@]}"; do classify "${PIDS[$i]}" "${NAMES[$i]}"; done
} | tee "$OUT/summary.txt"
log "perf.data, reports and memory in $OUT (perf report -i $OUT/perf.data)"
