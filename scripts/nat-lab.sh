#!/usr/bin/env bash
# scripts/nat-lab.sh - bring up a NAT lab from a short description, with the server and a node
# on every host, show what each node measured and which path it found, and tear it all down on
# Enter, Ctrl-C or after --hold seconds.
#
# Usage (as root):  scripts/nat-lab.sh [--hold S] [--shell] HOST:PROFILE...
#   e.g.            scripts/nat-lab.sh alice:PRC bob:SEQ carol:CGN+PRC dave:RND
#   Profiles (../shared/docs/nat-lab.md): OPEN FC RC PRC PRC_INPUT RND BLK SEQ SEQk ADM UDPBLK
#   HAIRPIN, CGN+PROFILE (double NAT), PROFILE@ROUTER (hosts sharing a router); options after a
#   comma: ,LOSSY[=args] ,TIMEOUT=SECS. See scripts/lib/lab.sh for the grammar.
#   --hold S   wait S seconds instead of for Enter (for scripts; default: wait for Enter)
#   --shell    open a shell with `lab`, `p2p` and the namespaces at hand before tearing down
#   P2PVPN_BIN=path   binary (default target/release/p2pvpn); LAB_KEEP=1 keeps logs.
# Everything lives in namespaces with a per-run prefix; nothing is routed outside them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOLD=""
SHELL_AT_END=0
HOSTS=()
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
        --hold) HOLD="${2:?--hold needs seconds}"; shift 2 ;;
        --shell) SHELL_AT_END=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) HOSTS+=("$1"); shift ;;
    esac
done
((${#HOSTS[@]} >= 1)) || { usage >&2; exit 2; }
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=lib/matrix.sh
. "$ROOT/scripts/lib/matrix.sh"
[[ $EUID -eq 0 ]] || { echo "nat-lab.sh needs root (network namespaces, TUN devices)" >&2; exit 2; }
P2P_BIN="$(p2p_bin_default)"
[[ -x "$P2P_BIN" ]] || { echo "p2pvpn binary not found: $P2P_BIN (cargo build --release, or set P2PVPN_BIN)" >&2; exit 2; }

lab_init
mx_setup || exit 1
NET=lab
mx_srv network create "$NET" --cidr 10.88.0.0/24 --state-dir "$MX_STATE" >/dev/null
NAMES=()
for spec in "${HOSTS[@]}"; do
    lab_build "$spec"
    name="${spec%%:*}"
    NAMES+=("$name")
    mkdir -p "$LAB_TMP/$name/etc" "$LAB_TMP/$name/state"
    tok="$(mx_srv network invite "$NET" --uses 1 --state-dir "$MX_STATE" | tail -n 1)"
    p2p "$name" join "$tok" --name "$name" >/dev/null
    p2p_spawn "$name" "$name-up" up --network "$NET"
    echo "[nat-lab] $name: $(lab_describe "$name" 2>/dev/null || echo "$spec")"
done

# Wait (bounded) until every node has measured its NAT and each pair has settled one way or
# the other: direct, or a first failed attempt.
settled() {
    local n
    for n in "${NAMES[@]}"; do
        p2p_status_json "$n" "$NET" 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)["networks"][0]
peers = j.get("peers") or []
ok = j.get("nat") is not None and all(
    p.get("path") == "direct" or (p.get("punch") or {}).get("last_failure") for p in peers)
sys.exit(0 if ok and len(peers) == int(sys.argv[1]) - 1 else 1)' "${#NAMES[@]}" || return 1
    done
}
lab_wait_for 60 settled || echo "[nat-lab] not every pair settled within 60 s; showing what there is"
for n in "${NAMES[@]}"; do
    echo
    echo "==== $n ===="
    p2p "$n" status --network "$NET" || true
done
if ((SHELL_AT_END)); then
    echo "[nat-lab] shell: 'lab_exec NAME CMD' runs in a namespace, 'p2p NAME status --network $NET'; exit to tear down"
    export -f lab_exec lab_ns p2p 2>/dev/null || true
    export LAB_PREFIX LAB_TMP P2P_BIN
    bash -i || true
elif [[ -n "$HOLD" ]]; then
    sleep "$HOLD"
else
    read -r -p "[nat-lab] press Enter to tear down " _ || true
fi
