#!/usr/bin/env bash
# tests/netns/code_pages.sh - a node started from a cold page cache maps less of the binary
# with read-ahead off on its own code (src/os/code_pages.rs) than with the kernel's default,
# as root in network namespaces.
#
# Topology: "internet" ns with a bridge; server 198.51.100.1 (TCP+UDP 7400), alice
# 198.51.100.11, bob 198.51.100.12. Network "cpg" 10.81.0.0/24.
#
# Per run: the binary's pages are dropped from the page cache (posix_fadvise DONTNEED; only
# pages no process maps go, so the run stops every p2pvpn process first), then the server and
# both nodes start, the nodes reach each other directly and ping, and after 2 s idle the
# script reads each node's RssFile / RssAnon / VmRSS (/proc/PID/status). Runs alternate:
# default (advice on) and P2PVPN_KEEP_READAHEAD=1 (the kernel's read-ahead), ROUNDS times
# each. Check: the median of the two nodes' summed RssFile is at least MIN_SAVED_KIB lower
# with the advice. It cannot fall with warm caches, which is why every run starts cold; a
# process elsewhere running the same binary file would warm it and fail the check.
#
# Prints `ok - NAME` / `not ok - NAME` per check and the per-run figures as comments; exits 1
# if a check failed, 77 (after `SKIP: reason`) when it cannot run here, 2 on a setup error.
#
#   P2PVPN_BIN     binary to test (default target/release/p2pvpn; tests/netns.rs sets the
#                  debug binary)
#   ROUNDS         runs per mode (default 2)
#   MIN_SAVED_KIB  the least RssFile saved over both nodes (default 1024)
#   LAB_KEEP=1     keep the temp dir (logs, state) for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

lab_preflight ip python3 ping timeout

NET=cpg
CIDR=10.81.0.0/24
SERVER_IP=198.51.100.1
PORT=7400
ROUNDS="${ROUNDS:-2}"
MIN_SAVED_KIB="${MIN_SAVED_KIB:-1024}"
[[ "$ROUNDS" =~ ^[1-5]$ ]] || { echo "ROUNDS must be 1..5" >&2; exit 2; }
[[ "$MIN_SAVED_KIB" =~ ^[0-9]{1,6}$ ]] || { echo "MIN_SAVED_KIB must be a number of KiB" >&2; exit 2; }

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

SEQ=0
declare -A RUN=()

lab_on_exit() {
    local rc="$1" n
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        echo "# last 30 lines of every process log:"
        lab_dump_logs 30 2>&1 | sed 's/^/# /'
    fi
    # Nodes leave through `down` (removing their interfaces); lab_cleanup kills what is left.
    for n in alice bob; do
        if [[ -n "${RUN[$n]:-}" ]] && lab_alive "${RUN[$n]}"; then
            P2P_TIMEOUT=5 p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
        fi
    done
    return 0
}

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, binary $P2P_BIN"
lab_internet inet
lab_add_host server "$SERVER_IP"
lab_add_host alice 198.51.100.11
lab_add_host bob 198.51.100.12

SERVER_STATE="$LAB_TMP/server/state"
srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }
setup_fail() { echo "# setup failed: $*"; echo "Bail out! $*"; exit 2; }
other() { if [[ "$1" == alice ]]; then echo bob; else echo alice; fi; }

start_server() {
    SEQ=$((SEQ + 1))
    RUN[server]="server$SEQ"
    lab_spawn server "${RUN[server]}" -- "$P2P_BIN" server --listen "$SERVER_IP:$PORT" --state-dir "$SERVER_STATE"
    local rc=0
    lab_wait_ready 30 "${RUN[server]}" "p2pvpn server listening on" || rc=$?
    [[ $rc -eq 0 ]] || setup_fail "server not ready in 30 s ($rc)"
}

# cached_kib [drop] : how many KiB of the binary the page cache holds; with `drop`, after
# dropping its unmapped pages.
cached_kib() {
    python3 - "$P2P_BIN" "${1:-}" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
if sys.argv[2] == "drop":
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
size = os.fstat(fd).st_size
# mincore over a read-only mapping of the file: which of its pages are still cached.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
page = mmap.PAGESIZE
vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec)
libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
print(sum(b & 1 for b in vec) * page // 1024)
PY
}

# status_kib PID FIELD : a /proc/PID/status field in KiB.
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# binary_rss PID : "PERMS SIZE/RSS KiB" of each of PID's mappings of the binary.
binary_rss() {
    python3 - "$1" "$P2P_BIN" <<'PY'
import re, sys
pid, exe = sys.argv[1], sys.argv[2]
out, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
        parts = line.split(None, 5)
        cur = [parts[1], 0, 0] if len(parts) > 5 and parts[5].strip() == exe else None
        if cur is not None:
            out.append(cur)
    elif cur is not None and line.startswith("Size:"):
        cur[1] = int(line.split()[1])
    elif cur is not None and line.startswith("Rss:"):
        cur[2] = int(line.split()[1])
print(", ".join(f"{p} {s}/{r}" for p, s, r in out) + " (size/resident KiB)")
PY
}

# ---------------------------------------------------------------- setup
start_server
srv network create "$NET" --cidr "$CIDR" --state-dir "$SERVER_STATE" >/dev/null || setup_fail "network create"
for n in alice bob; do
    tok="$(srv network invite "$NET" --uses 1 --state-dir "$SERVER_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" ||
        setup_fail "invite $n"
    mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
    p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || setup_fail "$n join"
done

# ---------------------------------------------------------------- runs
RESULTS="$LAB_TMP/results"
: >"$RESULTS"
# one_run MODE (advise|keep) : a cold start of server and nodes; appends "MODE file anon rss"
# (KiB, both nodes summed) to $RESULTS.
one_run() {
    local mode="$1" n cached pid file=0 anon=0 rss=0 vip
    for n in alice bob; do
        if [[ -n "${RUN[$n]:-}" ]]; then
            P2P_TIMEOUT=10 p2p "$n" down --network "$NET" >/dev/null 2>&1 || true
            lab_stop "${RUN[$n]}" TERM 10 || true
        fi
    done
    lab_stop "${RUN[server]}" TERM 10 || true
    cached="$(cached_kib drop)"
    if [[ "$mode" == keep ]]; then export P2PVPN_KEEP_READAHEAD=1; else unset P2PVPN_KEEP_READAHEAD; fi
    start_server
    for n in alice bob; do
        SEQ=$((SEQ + 1))
        RUN[$n]="$n-up$SEQ"
        p2p_spawn "$n" "${RUN[$n]}" up --network "$NET"
    done
    unset P2PVPN_KEEP_READAHEAD
    for n in alice bob; do
        lab_wait_for 30 p2p_peer_is_direct "$n" "$NET" "$(other "$n")" || setup_fail "$n: peer not direct in 30 s ($mode)"
    done
    vip="$(p2p_field bob "$NET" 'j["virtual_ip"]')" || setup_fail "bob: no virtual_ip"
    lab_wait_for 10 lab_exec alice ping -c 1 -W 1 "$vip" || setup_fail "no ping alice -> bob ($mode)"
    sleep 2
    for n in alice bob; do
        pid="$(lab_pid "${RUN[$n]}")"
        file=$((file + $(status_kib "$pid" RssFile)))
        anon=$((anon + $(status_kib "$pid" RssAnon)))
        rss=$((rss + $(status_kib "$pid" VmRSS)))
    done
    note "$mode: $(cached_kib) KiB of the binary cached with the server and both nodes up"
    note "$mode alice, the binary's mappings: $(binary_rss "$(lab_pid "${RUN[alice]}")")"
    note "$(printf '%-6s RssFile %6d KiB  RssAnon %6d KiB  VmRSS %6d KiB (alice + bob; %d KiB of the binary cached before the start)' \
        "$mode" "$file" "$anon" "$rss" "$cached")"
    echo "$mode $file $anon $rss" >>"$RESULTS"
}
for ((r = 1; r <= ROUNDS; r++)); do
    one_run keep
    one_run advise
done

median_of() {  # median_of MODE COLUMN : the median over the runs of MODE
    awk -v m="$1" -v c="$2" '$1 == m { print $c }' "$RESULTS" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
KEEP_FILE="$(median_of keep 2)"
ADVISE_FILE="$(median_of advise 2)"
note "median RssFile over both nodes: $KEEP_FILE KiB with the kernel's read-ahead, $ADVISE_FILE KiB with MADV_RANDOM"
saved_enough() {
    ((KEEP_FILE - ADVISE_FILE >= MIN_SAVED_KIB)) ||
        why "saved $((KEEP_FILE - ADVISE_FILE)) KiB, want at least $MIN_SAVED_KIB"
}
check "read-ahead off on the binary's code lowers the nodes' file-backed RSS" saved_enough

echo "# $PASSED passed, $FAILED failed"
((FAILED == 0)) || exit 1
