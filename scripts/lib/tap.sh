# shellcheck shell=bash
# scripts/lib/tap.sh - the ok / not ok reporting shared by the netns lab scripts (TAP style, so
# tests/netns.rs and a human read the same lines).
#
#   check NAME CMD...   run CMD; print "ok - NAME" or "not ok - NAME" and count it
#   why MSG             explain a failing step as a TAP comment; returns 1
#   note MSG            a TAP comment
# Counters: PASSED, FAILED, FAILED_NAMES.

if [[ -n "${_TAP_SH_LOADED:-}" ]]; then return 0; fi
_TAP_SH_LOADED=1

PASSED=0
FAILED=0
FAILED_NAMES=()

note() { printf '# %s\n' "$*"; }

check() {
    local name="$1"; shift
    local rc=0
    "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$name"
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); printf 'not ok - %s\n' "$name"
    fi
}

why() { printf '#   %s\n' "$*"; return 1; }
