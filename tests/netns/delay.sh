#!/usr/bin/env bash
# tests/netns/delay.sh - the lab's delay element (scripts/lib/delay.sh, delay.py) does what
# nat-matrix.sh --delay relies on: a host behind a NAT router pings the server across the
# routed internet namespace.
#   1. without the element the RTT is well under 5 ms;
#   2. with 20 ms one way (+/- 5 ms) the RTT is 2 x 20 ms: average within 35-60 ms, every
#      reply at least 29 ms (2 x (20 - 5) minus scheduling slack);
#   3. the queue cap holds: with a cap of 20 packets, a burst of 100 pings preloaded at once
#      loses some, the element counts them as dropped, and it never held more than 20;
#   4. lab_delay_off puts the RTT back under 5 ms.
# No p2pvpn binary needed. Prints ok / not ok per check; exits 1 if one failed, 77 (after
# `SKIP: reason`) when it cannot run here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if m="$(lab_missing ip nft python3 ping timeout)"; then echo "SKIP: $m not installed"; exit 77; fi
if [[ ! -c /dev/net/tun ]]; then echo "SKIP: no /dev/net/tun"; exit 77; fi

PASSED=0
FAILED=0
check() {  # check NAME RC
    if [[ "$2" -eq 0 ]]; then PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$1"
    else FAILED=$((FAILED + 1)); printf 'not ok - %s\n' "$1"; fi
}
# rtt HOST COUNT : "min avg max" in ms of COUNT pings to the server (0.1 s apart)
rtt() {
    lab_exec "$1" ping -c "$2" -i 0.1 -W 2 "${LAB_SERVER_IPS[0]}" 2>/dev/null |
        awk -F'[/ =]+' '/^rtt/ { print $6, $7, $8 }'
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

lab_init
lab_build server h:PRC
read -r mn av mx <<<"$(rtt h 5)" || true
rc=0; within "${av:-999}" 0 5 || rc=1
check "no delay element: RTT ${av:-?} ms (under 5)" "$rc"

lab_delay 20 5
read -r mn av mx <<<"$(rtt h 20)" || true
rc=0; within "${av:-0}" 35 60 && within "${mn:-0}" 29 1000 || rc=1
check "20 +/- 5 ms one way: RTT min/avg/max ${mn:-?}/${av:-?}/${mx:-?} ms (avg 35-60, min >= 29)" "$rc"
lab_delay_off

lab_delay 20 0 20
# 100 echo requests at once (ping -l preloads them); at most 20 wait in the element
lab_exec h ping -c 100 -l 100 -i 0.2 -W 1 -q "${LAB_SERVER_IPS[0]}" >/dev/null 2>&1 || true
sleep 1.2   # the counters are written once a second
st="$(lab_delay_stats)"
dropped="$(p2p_json_get - 'j.get("dropped", 0)' <<<"$st")"
maxq="$(p2p_json_get - 'j.get("max_queue", 0)' <<<"$st")"
rc=0; ((dropped > 0 && maxq <= 20)) || rc=1
check "cap of 20 packets: $dropped dropped and counted, at most $maxq held" "$rc"
lab_delay_off

read -r mn av mx <<<"$(rtt h 5)" || true
rc=0; within "${av:-999}" 0 5 || rc=1
check "after lab_delay_off: RTT ${av:-?} ms (under 5)" "$rc"

echo "netns-delay: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
