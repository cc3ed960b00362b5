#!/usr/bin/env bash
# scripts/check-msi.sh MSI - checks a p2pvpn .msi (from scripts/package-msi.sh) without Windows:
# its tables with `msiinfo export` and its files with `msiextract`.
#
#   scripts/check-msi.sh target/msi/p2pvpn-0.1.0-x86_64.msi
#   scripts/check-msi.sh --self-test [EXE]
#       builds broken variants of packaging/msi/p2pvpn.wxs (no ServiceInstall, no
#       ServiceControl, no wintun.dll, no Environment table) and passes only if this check
#       fails on each of them and passes on the real one
#
# What an installed p2pvpn needs, table by table: the files p2pvpn.exe, wintun.dll and
# wintun-LICENSE.txt in one 64-bit component folder "p2pvpn" under ProgramFiles64Folder
# (File, Component, Directory); the service "p2pvpn" as LocalSystem, automatic start, command
# `service run`, in the component of p2pvpn.exe (ServiceInstall); started on install, stopped and
# removed on uninstall (ServiceControl); the install folder appended to the system PATH and
# removed on uninstall (Environment, and the actions that apply it); the fixed UpgradeCode with a
# major upgrade (Property, Upgrade, RemoveExistingProducts). msiextract must yield the files
# under their names, p2pvpn.exe a PE32+ x86-64 executable and wintun.dll byte for byte the
# pinned signed DLL.
#
# Prints `ok - NAME` / `not ok - NAME` and a summary; exits 1 if a check failed, 2 on a setup
# error (missing tools are installed with apt-get when root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

UPGRADE_CODE='{6D3C2F0E-8B1A-4C57-9E2D-4F1B7A90C3E5}'
WINTUN_SHA256=e5da8447dc2c320edc0fc52fa01885c103de8c118481f683643cacc3220dafce

if ! command -v msiinfo >/dev/null || ! command -v msiextract >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y msitools >&2 ||
        { echo "check-msi: msitools (msiinfo, msiextract) is missing and cannot be installed" >&2; exit 2; }
fi

self_test() {
    local exe="${1:-}" work variant out rc bad=0
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    local wxs="$ROOT/packaging/msi/p2pvpn.wxs"
    # Each variant: a name and a perl substitution that breaks the .wxs.
    local -a names=(no-service-install no-service-control no-wintun-dll)
    local -a edits=(
        's{<ServiceInstall .*?/>}{}s'
        's{<ServiceControl .*?/>}{}gs'
        's{<File Id="wintun.dll".*?/>}{}s'
    )
    for i in "${!names[@]}"; do
        variant="$work/${names[$i]}.wxs"
        perl -0pe "${edits[$i]}" "$wxs" >"$variant"
        if cmp -s "$variant" "$wxs"; then
            echo "check-msi: self-test edit ${names[$i]} changed nothing" >&2; return 2
        fi
        out="$work/${names[$i]}.msi"
        WXS="$variant" OUT="$out" "$ROOT/scripts/package-msi.sh" ${exe:+"$exe"} >/dev/null
        rc=0; "$0" "$out" >"$work/${names[$i]}.log" 2>&1 || rc=$?
        if [[ $rc -eq 1 ]]; then
            echo "ok - the check fails on an msi with ${names[$i]}: $(grep '^not ok' "$work/${names[$i]}.log" | tr '\n' ' ')"
        else
            echo "not ok - the check exits $rc (not 1) on an msi with ${names[$i]}"; bad=1
        fi
    done
    # The Environment table is added after wixl: build the real one and drop that table.
    out="$work/no-environment.msi"
    OUT="$out" "$ROOT/scripts/package-msi.sh" ${exe:+"$exe"} >/dev/null
    cp "$out" "$work/good.msi"
    msibuild "$out" -q "DROP TABLE Environment"
    rc=0; "$0" "$out" >"$work/no-environment.log" 2>&1 || rc=$?
    if [[ $rc -eq 1 ]]; then
        echo "ok - the check fails on an msi with no-environment: $(grep '^not ok' "$work/no-environment.log" | tr '\n' ' ')"
    else
        echo "not ok - the check exits $rc (not 1) on an msi with no-environment"; bad=1
    fi
    rc=0; "$0" "$work/good.msi" >"$work/good.log" 2>&1 || rc=$?
    if [[ $rc -eq 0 ]]; then
        echo "ok - the check passes on the msi built from packaging/msi/p2pvpn.wxs"
    else
        echo "not ok - the check fails on the real msi:"; sed 's/^/#   /' "$work/good.log"; bad=1
    fi
    return $bad
}

if [[ "${1:-}" == "--self-test" ]]; then
    rc=0; self_test "${2:-}" || rc=$?
    exit "$rc"
fi

msi="${1:?usage: scripts/check-msi.sh MSI | --self-test [EXE]}"
[[ -f "$msi" ]] || { echo "check-msi: no file $msi" >&2; exit 2; }
msi="$(realpath "$msi")"

# A table's rows (tab-separated), without msiinfo's three header lines; empty if absent.
rows() { msiinfo export "$msi" "$1" 2>/dev/null | tail -n +4 | tr -d '\r'; }
# A failed condition: explained as a TAP comment; the check function then returns 1.
BAD=0
fail() { printf '#   %s\n' "$*"; BAD=1; }
# Field N (1-based) of one tab-separated row (empty fields kept, unlike `read`).
field() { awk -F'\t' -v n="$2" '{ print $n; exit }' <<<"$1"; }
# Column N (1-based) of the row whose column K is V.
col_where() { rows "$1" | awk -F'\t' -v k="$2" -v v="$3" -v n="$4" '$k == v { print $n; exit }'; }

EXE_COMPONENT=""
files_in_place() {
    BAD=0
    local name comp dir attrs
    for name in p2pvpn.exe wintun.dll wintun-LICENSE.txt; do
        # FileName may be "SHORT|long": match the long name.
        comp="$(rows File | awk -F'\t' -v f="$name" '{ n = $3; sub(/^.*\|/, "", n) } n == f { print $2; exit }')"
        [[ -n "$comp" ]] || fail "File table has no $name"
        dir="$(col_where Component 1 "$comp" 3)"
        attrs="$(col_where Component 1 "$comp" 4)"
        [[ "$dir" == INSTALLDIR ]] || fail "$name's component $comp is in directory '$dir', not INSTALLDIR"
        (( (attrs & 256) != 0 )) || fail "$name's component $comp is not 64-bit (Attributes $attrs)"
        [[ "$name" != p2pvpn.exe ]] || EXE_COMPONENT="$comp"
    done
    return "$BAD"
}

install_dir() {
    BAD=0
    [[ "$(col_where Directory 1 INSTALLDIR 2)" == ProgramFiles64Folder ]] ||
        fail "INSTALLDIR is not under ProgramFiles64Folder"
    local name; name="$(col_where Directory 1 INSTALLDIR 3)"
    [[ "${name##*|}" == p2pvpn ]] || fail "INSTALLDIR is named '$name', not p2pvpn"
    return "$BAD"
}

service_installed() {
    BAD=0
    local row type start account args comp
    row="$(rows ServiceInstall | awk -F'\t' '$2 == "p2pvpn"')"
    [[ -n "$row" ]] || { fail "no ServiceInstall row for the service p2pvpn"; return 1; }
    type="$(field "$row" 4)"; start="$(field "$row" 5)"; account="$(field "$row" 9)"
    args="$(field "$row" 11)"; comp="$(field "$row" 12)"
    # 16 = SERVICE_WIN32_OWN_PROCESS, 2 = SERVICE_AUTO_START.
    [[ "$type" == 16 ]] || fail "ServiceType $type, not 16 (own process)"
    [[ "$start" == 2 ]] || fail "StartType $start, not 2 (automatic)"
    [[ "$account" == LocalSystem || -z "$account" ]] || fail "runs as '$account', not LocalSystem"
    [[ "$args" == "service run" ]] || fail "Arguments '$args', not 'service run'"
    [[ "$comp" == "$EXE_COMPONENT" ]] || fail "installed with component '$comp', not p2pvpn.exe's '$EXE_COMPONENT'"
    return "$BAD"
}

service_controlled() {
    BAD=0
    # Event bits (msidbServiceControlEvent*): 1 start on install, 0x20 stop on uninstall,
    # 0x80 delete on uninstall; OR'd over every row for the service.
    local events=0 e
    for e in $(rows ServiceControl | awk -F'\t' '$2 == "p2pvpn" { print $3 }'); do
        events=$((events | e))
    done
    (( (events & 1) != 0 )) || fail "the service is not started on install (events $events)"
    (( (events & 0x20) != 0 )) || fail "the service is not stopped on uninstall (events $events)"
    (( (events & 0x80) != 0 )) || fail "the service is not removed on uninstall (events $events)"
    return "$BAD"
}

system_path() {
    BAD=0
    local row name value comp
    row="$(rows Environment | awk -F'\t' '{ n = $2; gsub(/[=+!*-]/, "", n) } toupper(n) == "PATH"')"
    [[ -n "$row" ]] || { fail "no Environment row for PATH"; return 1; }
    name="$(field "$row" 2)"; value="$(field "$row" 3)"; comp="$(field "$row" 4)"
    [[ "$name" == *'*'* ]] || fail "PATH entry '$name' is not the system variable (*)"
    [[ "$name" == *-* ]] || fail "PATH entry '$name' is not removed on uninstall (-)"
    [[ "$value" == '[~];[INSTALLDIR]' ]] || fail "PATH value '$value' does not append [INSTALLDIR]"
    [[ -n "$(col_where Component 1 "$comp" 1)" ]] || fail "PATH entry's component '$comp' does not exist"
    local seq; seq="$(rows InstallExecuteSequence | cut -f1)"
    grep -qx WriteEnvironmentStrings <<<"$seq" || fail "WriteEnvironmentStrings is not sequenced"
    grep -qx RemoveEnvironmentStrings <<<"$seq" || fail "RemoveEnvironmentStrings is not sequenced"
    return "$BAD"
}

major_upgrade() {
    BAD=0
    [[ "$(col_where Property 1 UpgradeCode 2)" == "$UPGRADE_CODE" ]] ||
        fail "UpgradeCode is not $UPGRADE_CODE"
    rows Upgrade | awk -F'\t' -v c="$UPGRADE_CODE" '$1 == c && $7 == "WIX_UPGRADE_DETECTED"' | grep -q . ||
        fail "no Upgrade row finds older versions"
    rows InstallExecuteSequence | cut -f1 | grep -qx RemoveExistingProducts ||
        fail "RemoveExistingProducts is not sequenced"
    return "$BAD"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
extracted() {
    BAD=0
    msiextract -C "$work" "$msi" >/dev/null || { fail "msiextract failed"; return 1; }
    # msiextract names the folder after INSTALLDIR (Program Files itself is ".").
    local dir="$work/p2pvpn" f
    for f in p2pvpn.exe wintun.dll wintun-LICENSE.txt; do
        [[ -f "$dir/$f" ]] || fail "msiextract gave no $f (got: $(cd "$work" && find . -type f | tr '\n' ' '))"
    done
    [[ -f "$dir/p2pvpn.exe" && -f "$dir/wintun.dll" ]] || return 1
    file -b "$dir/p2pvpn.exe" | grep -q '^PE32+ executable.*x86-64' ||
        fail "p2pvpn.exe is not a PE32+ x86-64 executable: $(file -b "$dir/p2pvpn.exe")"
    [[ "$(sha256sum "$dir/wintun.dll" | cut -d' ' -f1)" == "$WINTUN_SHA256" ]] ||
        fail "wintun.dll is not the pinned signed DLL (SHA-256 differs)"
    return "$BAD"
}

check "files p2pvpn.exe, wintun.dll, wintun-LICENSE.txt in 64-bit components in INSTALLDIR" files_in_place
check "INSTALLDIR is Program Files\\p2pvpn" install_dir
check "service p2pvpn installed (own process, automatic, LocalSystem, 'service run')" service_installed
check "service started on install, stopped and removed on uninstall" service_controlled
check "install folder appended to the system PATH, removed on uninstall" system_path
check "fixed UpgradeCode with a major upgrade" major_upgrade
check "msiextract yields the files; wintun.dll unmodified" extracted

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]] || exit 1
