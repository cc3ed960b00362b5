#!/usr/bin/env bash
# scripts/nat-matrix.sh - run the NAT traversal matrix (docs: nat-lab.md) in network
# namespaces with the real binary and print the result table; optionally write it as
# markdown into a file between the markers
#     <!-- nat-matrix:start -->
#     <!-- nat-matrix:end -->
# together with the command, date and machine that produced it.
#
# Usage (as root):  scripts/nat-matrix.sh [--rows 1,3,7] [--runs N] [--markdown FILE] [--timeout S]
#                                        [--delay MS [--jitter MS]]
#   --runs N          run every pair N times (fresh hosts and routers each time) and report per
#                     pair the success rate and time to direct (median and worst); default 1
#   --delay MS        hold every packet crossing the lab's internet MS ms (one way: RTT between
#                     two NATed hosts, or a host and the server, is 2 x MS; scripts/lib/delay.sh)
#   --jitter MS       vary that delay uniformly by +/- MS (no reordering); needs --delay
#   P2PVPN_BIN=path   binary to use (default target/release/p2pvpn)
#   LAB_KEEP=1        keep the temp dir (logs, state)
# Exit status: 0 if every pair met its expectation, 1 otherwise, 2 on a usage/setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARGS=("$@")
ROWS=""
MD=""
RUNS=1
DELAY=""
JITTER=0
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --rows) ROWS="${2:?--rows needs a list}"; shift 2 ;;
        --rows=*) ROWS="${1#--rows=}"; shift ;;
        --runs) RUNS="${2:?--runs needs a count}"; shift 2 ;;
        --runs=*) RUNS="${1#--runs=}"; shift ;;
        --markdown) MD="${2:?--markdown needs a file}"; shift 2 ;;
        --markdown=*) MD="${1#--markdown=}"; shift ;;
        --timeout) MX_TIMEOUT="${2:?--timeout needs seconds}"; shift 2 ;;
        --delay) DELAY="${2:?--delay needs milliseconds}"; shift 2 ;;
        --delay=*) DELAY="${1#--delay=}"; shift ;;
        --jitter) JITTER="${2:?--jitter needs milliseconds}"; shift 2 ;;
        --jitter=*) JITTER="${1#--jitter=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs needs a positive count, not '$RUNS'" >&2; exit 2; }
if [[ -n "$DELAY" || "$JITTER" != 0 ]]; then
    [[ "$DELAY" =~ ^[0-9]+$ && "$JITTER" =~ ^[0-9]+$ ]] ||
        { echo "--delay and --jitter take whole milliseconds (--jitter needs --delay)" >&2; exit 2; }
    ((JITTER <= DELAY)) || { echo "--jitter ($JITTER ms) cannot exceed --delay ($DELAY ms)" >&2; exit 2; }
fi
if [[ -n "$MD" ]]; then
    MD="$(realpath -- "$MD")"
    [[ -f "$MD" ]] || { echo "no such file: $MD" >&2; exit 2; }
    if ! grep -q '^<!-- nat-matrix:start -->' "$MD" || ! grep -q '^<!-- nat-matrix:end -->' "$MD"; then
        echo "$MD has no <!-- nat-matrix:start --> / <!-- nat-matrix:end --> markers" >&2; exit 2
    fi
fi
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=lib/matrix.sh
. "$ROOT/scripts/lib/matrix.sh"

[[ $EUID -eq 0 ]] || { echo "nat-matrix.sh needs root (network namespaces, TUN devices)" >&2; exit 2; }
if m="$(lab_missing ip nft python3 ping timeout)"; then echo "missing: $m" >&2; exit 2; fi
P2P_BIN="$(p2p_bin_default)"
[[ -x "$P2P_BIN" ]] || { echo "p2pvpn binary not found: $P2P_BIN (build it or set P2PVPN_BIN)" >&2; exit 2; }

# shellcheck disable=SC2317  # called through mx_run_all
progress() { printf '%s %s\n' "$([[ $2 -eq 0 ]] && echo PASS || echo FAIL)" "$1"; }

T0=$SECONDS
lab_init
mx_select_rows "$ROWS"
# Pair indexes name namespaces, networks and the 10.99.IDX.0/24 overlay: they must stay unique.
if ((${#MX_PAIRS[@]} * RUNS > 250)); then
    echo "--runs $RUNS x ${#MX_PAIRS[@]} pairs is more than 250 pair runs; pick fewer rows or runs" >&2; exit 2
fi
mx_note "binary $P2P_BIN, ${#MX_PAIRS[@]} pairs x $RUNS runs, timeout ${MX_TIMEOUT} s"
mx_setup || exit 2
if [[ -n "$DELAY" ]]; then
    lab_delay "$DELAY" "$JITTER"
    mx_note "delay element: ${DELAY} ms one way +/- ${JITTER} ms across the internet (RTT about $((2 * DELAY)) ms)"
fi
rc=0
for ((run = 1; run <= RUNS; run++)); do
    ((RUNS == 1)) || mx_note "run $run of $RUNS"
    MX_IDX_BASE=$(((run - 1) * ${#MX_PAIRS[@]}))
    mx_run_all progress || rc=$?
done
ELAPSED=$((SECONDS - T0))
echo
if ((RUNS == 1)); then mx_table; else mx_summary; fi
echo
if [[ -n "$DELAY" ]]; then mx_note "delay element counters: $(lab_delay_stats)"; fi
echo "$(grep -c $'\tpass\t' < <(printf '%s\n' "${MX_RESULTS[@]}") || true) of $((${#MX_PAIRS[@]} * RUNS)) pair runs as expected, ${ELAPSED} s"

if [[ -n "$MD" ]]; then
    ver="$("$P2P_BIN" --version 2>/dev/null | head -n 1 || true)"
    commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    dirty=""
    if git -C "$ROOT" status --porcelain 2>/dev/null | grep -q .; then dirty=", with local changes"; fi
    block="$(mktemp)"
    {
        if ((RUNS == 1)); then mx_markdown; else mx_summary --markdown; fi
        echo
        # shellcheck disable=SC2016  # the backticks are markdown
        printf 'Produced by `scripts/nat-matrix.sh%s` on %s on %s (Linux %s, %s cores, %s, commit %s%s) in %s s.\n' \
            "$(for a in "${ARGS[@]}"; do [[ "$a" =~ ^[A-Za-z0-9_./,=:+-]+$ ]] && printf ' %s' "$a" || printf " '%s'" "$a"; done)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(hostname)" "$(uname -r)" \
            "$(nproc)" "${ver:-p2pvpn}" "$commit" "$dirty" "$ELAPSED"
    } >"$block"
    python3 - "$MD" "$block" <<'PY'
import sys
path, blockf = sys.argv[1], sys.argv[2]
text = open(path).read()
block = open(blockf).read().rstrip("\n")
start, end = "<!-- nat-matrix:start -->", "<!-- nat-matrix:end -->"
a = text.index(start) + len(start)
b = text.index(end, a)
open(path, "w").write(text[:a] + "\n" + block + "\n" + text[b:])
PY
    rm -f -- "$block"
    echo "wrote the table into $MD"
fi
exit "$rc"
