#!/usr/bin/env bash
# scripts/wine-service.sh EXE - runs p2pvpn's Windows service under Wine, in a throwaway Wine
# prefix: registers it with `sc create`, starts it, watches the states it reports to Wine's
# service control manager, stops it, and makes it fail. EXE must run under Debian's Wine 8: the
# x86_64-win7-windows-gnu build (TARGET=x86_64-win7-windows-gnu scripts/build-windows.sh); the
# x86_64-pc-windows-gnu one imports bcryptprimitives.dll, which Wine 8 lacks.
#
# EXE may also be the x86_64-pc-windows-gnu build: its only import Wine 8 lacks is
# bcryptprimitives.dll's ProcessPrng, so this script compiles a test-only stand-in (ProcessPrng
# over advapi32's RtlGenRandom, with MinGW) into the prefix's copy of the program folder. The
# stand-in is never packaged; on Windows the real DLL is part of the system.
#
# What Wine can show: the service protocol (RUNNING once every network is up, with none joined
# at once; STOPPED after `sc stop`), the log file, a failing network stopping the service with a
# service-specific exit code, and the message when started from a prompt. What it cannot: wintun
# (no driver), the recovery actions firing (Wine's SCM does not run them), file ACLs.
#
# Prints `ok - NAME` / `not ok - NAME` and a summary; exits 1 if a check failed, 77 after
# `SKIP: reason` when Wine is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"
exe="$(realpath "${1:?usage: scripts/wine-service.sh EXE}")"
command -v wine >/dev/null || { echo "SKIP: wine not installed (apt-get install wine64)"; exit 77; }

WINEPREFIX="$(mktemp -d /tmp/p2pvpn-wine.XXXXXX)"
export WINEPREFIX WINEDEBUG=-all
keepalive=""
cleanup() {
    [[ -z "$keepalive" ]] || kill "$keepalive" 2>/dev/null || true
    timeout 60 wineserver -k >/dev/null 2>&1 || true
    rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
timeout 300 wineboot -i >/dev/null 2>&1
# Wine ends its services once no ordinary process is left (as at logoff): a prompt that waits on
# its input keeps the session open for the length of the test.
timeout 120 wineserver -w || true
mkfifo "$WINEPREFIX/keepalive"
timeout 420 wine cmd <"$WINEPREFIX/keepalive" >/dev/null 2>&1 &
sleep 400 >"$WINEPREFIX/keepalive" 2>/dev/null &
keepalive=$!
sleep 3
# A folder without spaces keeps the service's command line free of quoting.
dir="$WINEPREFIX/drive_c/p2pvpn"
mkdir -p "$dir"
cp "$exe" "$dir/p2pvpn.exe"
"$ROOT/scripts/wintun-dll.sh" "$dir" 2>/dev/null
if command -v x86_64-w64-mingw32-gcc >/dev/null; then
    cat >"$WINEPREFIX/prng.c" <<'C'
#include <windows.h>
BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000 ? 0x10000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
C
    x86_64-w64-mingw32-gcc -shared -O2 -o "$dir/bcryptprimitives.dll" "$WINEPREFIX/prng.c" -ladvapi32
fi
# %ProgramData% of Wine's services is not the prompt's (C:\users\Public in Wine 8): the
# service's data folder is wherever its log appears.
data="" log=/nonexistent
find_log() {
    local found
    found="$(find "$WINEPREFIX/drive_c" -path '*/p2pvpn/state/service.log' 2>/dev/null | head -n 1)"
    [[ -n "$found" ]] || return 0
    log="$found"
    data="$(dirname "$(dirname "$log")")"
}

sc() { timeout 60 wine sc "$@" 2>/dev/null | tr -d '\r'; }
field() { sc query p2pvpn | awk -v f="$1" '$1 == f { print $3; exit }'; }
# Waits (at most 30 s) for the service to report state $1 (RUNNING, STOPPED, ...).
wait_state() {
    local want="$1" state=""
    for _ in $(seq 1 60); do
        state="$(sc query p2pvpn | awk '$1 == "STATE" { print $4; exit }')"
        [[ "$state" == "$want" ]] && return 0
        sleep 0.5
    done
    why "state '$state' after 30 s, not $want"
}

created() {
    timeout 60 wine sc create p2pvpn binpath= 'C:\p2pvpn\p2pvpn.exe service run' >/dev/null 2>&1 ||
        why "sc create failed"
}
check "sc create p2pvpn" created

started() {
    local rc=0
    sc start p2pvpn >/dev/null
    wait_state RUNNING || rc=1
    find_log
    return "$rc"
}
check "with no network joined the service starts and reports RUNNING" started
check "its log says it runs no network and is running" \
    grep -q "p2pvpn service: running" "$log"

stopped() { sc stop p2pvpn >/dev/null; wait_state STOPPED; }
check "sc stop: the service reports STOPPED" stopped
clean_exit() { [[ "$(field WIN32_EXIT_CODE)" == 0 ]] || why "exit code $(field WIN32_EXIT_CODE), not 0"; }
check "a requested stop exits with code 0" clean_exit
check "its log says it stopped on request" grep -q "Stop requested; stopping every network" "$log"

# A joined network whose config cannot be read: `up` fails for it, so the service must stop
# with an error (what triggers the recovery actions on Windows) rather than report RUNNING.
[[ -n "$data" ]] || data="$WINEPREFIX/drive_c/ProgramData/p2pvpn"
mkdir -p "$data/config"
echo 'this is not a p2pvpn config' >"$data/config/lab.toml"
failed() {
    sc start p2pvpn >/dev/null
    wait_state STOPPED || return 1
    # 1066 = ERROR_SERVICE_SPECIFIC_ERROR, with the service's own code 1.
    [[ "$(field WIN32_EXIT_CODE)" == 1066 ]] || why "WIN32_EXIT_CODE $(field WIN32_EXIT_CODE), not 1066"
    [[ "$(field SERVICE_EXIT_CODE)" == 1 ]] || why "SERVICE_EXIT_CODE $(field SERVICE_EXIT_CODE), not 1"
}
check "a network that cannot start stops the service with a service-specific error" failed
check "its log names the network that failed" grep -q "network lab" "$log"

from_prompt() {
    local out
    out="$(timeout 60 wine "$dir/p2pvpn.exe" service run 2>&1 | tr -d '\r' || true)"
    grep -q "sc start p2pvpn" <<<"$out" || why "got: $out"
}
check "service run from a prompt says to use sc start" from_prompt

note "service log:"
sed 's/^/#   /' "$log" 2>/dev/null | tail -n 20 || true
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]] || exit 1
