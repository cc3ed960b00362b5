#!/usr/bin/env bash
# tests/netns/netcheck.sh - `p2pvpn netcheck --server ADDR:PORT --json` from behind
# every NAT profile of the lab (scripts/lib/lab.sh), compared with what the profile
# is: OPEN, FC, RC, PRC, PRC_INPUT, RND, BLK, SEQ, SEQ4, ADM, CGN+PRC, UDPBLK, HAIRPIN.
# The server listens on 198.51.100.1:7400 and 198.51.100.2:7400 (RFC 5780). All
# netchecks run at once (each host has its own NAT router).
#
# Prints a table (profile, expected, got), `ok - PROFILE` / `not ok - PROFILE` and a
# summary; exits 1 if a profile was misreported, 77 (after `SKIP: reason`) when it
# cannot run here or the binary has no netcheck subcommand, 2 on a setup error.
#   P2PVPN_BIN   binary to test (default target/release/p2pvpn)
#   LAB_KEEP=1   keep the temp dir (netcheck JSON and logs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if m="$(lab_missing ip nft python3 timeout)"; then echo "SKIP: $m not installed"; exit 77; fi
P2P_BIN="$(p2p_bin_default)"
if [[ ! -x "$P2P_BIN" ]]; then echo "p2pvpn binary not found: $P2P_BIN" >&2; exit 2; fi
if ! "$P2P_BIN" netcheck --help >/dev/null 2>&1; then
    echo "SKIP: p2pvpn has no netcheck yet"; exit 77
fi

PORT=7400
PROFILES=(OPEN FC RC PRC PRC_INPUT RND BLK SEQ SEQ4 ADM CGN+PRC UDPBLK HAIRPIN)
PASSED=0
FAILED=0
FAILED_NAMES=()
note() { printf '# %s\n' "$*"; }
hostname_of() { printf 'n%s' "$(tr -c 'A-Za-z0-9\n' _ <<<"$1" | tr '[:upper:]' '[:lower:]')"; }
lab_on_exit() {
    if [[ "$1" -ne 0 || "$FAILED" -ne 0 ]]; then lab_dump_logs 15 2>&1 | sed 's/^/# /'; fi
    return 0
}

T0=$SECONDS
lab_init
specs=(server)
for p in "${PROFILES[@]}"; do specs+=("$(hostname_of "$p"):$p"); done
lab_build "${specs[@]}"
note "lab $LAB_TMP, binary $P2P_BIN"
SERVER_STATE="$LAB_TMP/server/state"
lab_spawn server server -- "$P2P_BIN" server --listen "${LAB_SERVER_IPS[0]}:$PORT" \
    --listen "${LAB_SERVER_IPS[1]}:$PORT" --state-dir "$SERVER_STATE"
rc=0
lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
[[ $rc -eq 0 ]] || { echo "Bail out! server did not start"; exit 2; }

for p in "${PROFILES[@]}"; do
    h="$(hostname_of "$p")"
    mkdir -p "$LAB_TMP/$h/etc" "$LAB_TMP/$h/state"
    # JSON to $h/netcheck.json, stderr to the log
    # shellcheck disable=SC2016  # expanded by the inner sh
    lab_spawn "$h" "netcheck-$h" -- timeout 60 env P2PVPN_CONFIG_DIR="$LAB_TMP/$h/etc" \
        P2PVPN_STATE_DIR="$LAB_TMP/$h/state" sh -c 'exec "$0" netcheck --server "$1" --json >"$2"' \
        "$P2P_BIN" "${LAB_SERVER_IPS[0]}:$PORT" "$LAB_TMP/$h/netcheck.json"
done
for p in "${PROFILES[@]}"; do lab_wait_for 65 lab_exited "netcheck-$(hostname_of "$p")" || true; done
note "netchecks done after $((SECONDS - T0)) s"

# judge PROFILE JSONFILE PUBLIC_IP : prints "expected<TAB>got<TAB>problems" and exits 1 on mismatch
judge() {
    python3 - "$@" <<'PY'
import json, sys
p, f, pub = sys.argv[1:4]
EIM, ADM, APDM = "endpoint_independent", "address_dependent", "address_and_port_dependent"
EIF, ADF, APDF = EIM, ADM, APDM
short = {EIM: "EI", ADM: "AD", APDM: "APD", "unknown": "?"}
# expected: key -> value, or a function returning an error string (or None)
def alloc(kind, **kw):
    def f(a):
        a = a or {}
        if a.get("kind") != kind:
            return "allocation %s, expected %s" % (json.dumps(a), kind)
        if kind == "sequential" and a.get("delta") != kw["delta"]:
            return "delta %s, expected %d" % (a.get("delta"), kw["delta"])
        if kind == "random_in_range":
            lo, hi = a.get("low"), a.get("high")
            if not (isinstance(lo, int) and isinstance(hi, int) and kw["low"] <= lo <= hi <= kw["high"]):
                return "range %s-%s not within %d-%d" % (lo, hi, kw["low"], kw["high"])
        return None
    f.desc = kind + ("" if not kw else " " + ",".join("%s=%s" % x for x in kw.items()))
    return f
cone = lambda filt, cls: {"udp_blocked": False, "behind_nat": True, "mapping": EIM, "filtering": filt,
                          "allocation": alloc("preserving"), "legacy_class": cls}
sym = lambda m, a, cls: {"udp_blocked": False, "behind_nat": True, "mapping": m, "filtering": APDF,
                         "allocation": a, "legacy_class": cls}
E = {
    "OPEN": {"udp_blocked": False, "behind_nat": False, "legacy_class": 0},
    "FC": cone(EIF, 1),
    "RC": cone(ADF, 3),
    "PRC": dict(cone(APDF, 5), hairpin=False),
    # the router itself accepts unsolicited input, but a packet for the host still needs
    # a conntrack/NAT entry: the host sees address+port-dependent filtering
    "PRC_INPUT": cone(APDF, 5),
    "RND": sym(APDM, alloc("random"), 8),
    "BLK": sym(APDM, alloc("random_in_range", low=20000, high=20511), 8),
    "SEQ": sym(APDM, alloc("sequential", delta=1), 7),
    "SEQ4": sym(APDM, alloc("sequential", delta=4), 7),
    "ADM": sym(ADM, alloc("random_in_range", low=20000, high=21023), 8),
    "CGN+PRC": {"udp_blocked": False, "behind_nat": True, "mapping": EIM, "filtering": APDF, "legacy_class": 5},
    "UDPBLK": {"udp_blocked": True},
    "HAIRPIN": {"udp_blocked": False, "behind_nat": True, "mapping": EIM, "hairpin": True},
}[p]
def desc(k, v):
    return "%s=%s" % (k, v.desc if callable(v) else short.get(v, v) if isinstance(v, str) else json.dumps(v))
expected = " ".join(desc(k, v) for k, v in E.items() if k not in ("udp_blocked", "behind_nat") or
                    p in ("OPEN", "UDPBLK") and k in ("udp_blocked", "behind_nat"))
problems = []
try:
    j = json.loads(open(f).read())
    assert isinstance(j, dict)
except Exception as e:
    print("%s\tno JSON (%s)\tno JSON" % (expected, str(e)[:60])); sys.exit(1)
a = j.get("allocation") or {}
astr = a.get("kind", "-") if isinstance(a, dict) else str(a)
if isinstance(a, dict) and a.get("kind") == "sequential": astr += " %s" % a.get("delta")
if isinstance(a, dict) and a.get("kind") == "random_in_range": astr += " %s-%s" % (a.get("low"), a.get("high"))
got = "blocked=%s nat=%s map=%s filt=%s alloc=%s class=%s hairpin=%s public=%s rfc5780=%s" % (
    j.get("udp_blocked"), j.get("behind_nat"), short.get(j.get("mapping"), j.get("mapping")),
    short.get(j.get("filtering"), j.get("filtering")), astr, j.get("legacy_class"), j.get("hairpin"),
    j.get("public"), j.get("rfc5780"))
for k, v in E.items():
    if callable(v):
        err = v(j.get(k))
        if err: problems.append(err)
    elif j.get(k) != v:
        problems.append("%s=%s, expected %s" % (k, json.dumps(j.get(k)), json.dumps(v)))
if not j.get("udp_blocked"):
    pu = j.get("public") or ""
    if pu.rsplit(":", 1)[0] != pub:
        problems.append("public %s, the lab's public address is %s" % (pu, pub))
    if j.get("rfc5780") is not True:
        problems.append("rfc5780=%s although the server has two addresses" % j.get("rfc5780"))
print("%s\t%s\t%s" % (expected, got, "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
}

TABLE=()
for p in "${PROFILES[@]}"; do
    h="$(hostname_of "$p")"
    rc=0
    line="$(judge "$p" "$LAB_TMP/$h/netcheck.json" "$(lab_public_ip "$h")")" || rc=$?
    IFS=$'\t' read -r exp got prob <<<"$line"
    TABLE+=("$p"$'\t'"$exp"$'\t'"$got")
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1)); printf 'ok - netcheck behind %s\n' "$p"
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$p"); printf 'not ok - netcheck behind %s\n' "$p"
        printf '#   %s\n' "${prob:-?}"
        printf '#   raw: %s\n' "$(head -c 600 "$LAB_TMP/$h/netcheck.json" 2>/dev/null | tr '\n' ' ')"
    fi
done
echo "#"
printf '%s\n' "profile"$'\t'"expected"$'\t'"got" "${TABLE[@]}" | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin]
w = [max(len(r[i]) for r in rows) for i in range(2)]
for r in rows:
    print("# " + r[0].ljust(w[0]) + "  " + r[1].ljust(w[1]) + "  " + r[2])
'
if ((FAILED)); then printf '# failed: %s\n' "${FAILED_NAMES[*]}"; fi
echo "netns-netcheck: $PASSED passed, $FAILED failed in $((SECONDS - T0)) s"
((FAILED == 0))
