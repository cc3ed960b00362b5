# shellcheck shell=bash
# scripts/lib/matrix.sh - the NAT traversal matrix of docs/nat-lab.md, shared by
# tests/netns/matrix.sh (ok / not ok per pair) and scripts/nat-matrix.sh (table,
# --markdown). Needs scripts/lib/lab.sh sourced first, lab_init done and P2P_BIN set.
#
#   mx_setup                  routed lab with the server (198.51.100.1 and .2, port 7400)
#   mx_select_rows "1,3,7"    keep only those rows in MX_PAIRS (empty = all)
#   mx_run_all                every pair in MX_PAIRS in turn; returns 1 if any failed
#   mx_pair IDX ROW A B EXPECT
#                             one pair: build hosts NAME-a/b behind profiles A and B,
#                             network create/invite/join/up, wait for a direct path
#                             (MX_TIMEOUT s, default 30) or, for EXPECT=relay|nodirect, watch
#                             MX_RELAY_WAIT s (default 20) that it never turns direct,
#                             ping -c 3 over the VPN, record, tear the pair down
#   mx_table                  plain-text table of MX_RESULTS
#   mx_markdown               markdown table of MX_RESULTS
#   mx_summary [--markdown]   one line per pair over all runs in MX_RESULTS: runs, as expected,
#                             direct, ms to direct median and worst, techniques seen
#   MX_IDX_BASE               added to each pair's index (names, network, CIDR), so repeated
#                             runs of the same pairs never share a name (nat-matrix.sh --runs)
#
# Each result (MX_RESULTS, tab-separated): row, A, B, expected, outcome, ms to direct
# (measured from `up` by polling status), time_to_direct_ms reported by A/B, probes
# sent A/B, technique A->B / B->A, pass|FAIL, detail. Missing status keys show "-".

if [[ -n "${_MX_SH_LOADED:-}" ]]; then return 0; fi
_MX_SH_LOADED=1

MX_PORT=7400
MX_TIMEOUT="${MX_TIMEOUT:-30}"
MX_RELAY_WAIT="${MX_RELAY_WAIT:-20}"
MX_RESULTS=()
MX_STATE=""
# ROW|A|B|EXPECT ; A and B are lab_build profiles, "@shared" = both behind one router
MX_PAIRS=(
    "1|FC|PRC|direct"
    "1|RC|PRC|direct"
    "1|PRC|PRC|direct"
    "1|OPEN|PRC|direct"
    "2|RC|RND|direct"
    "2|FC|SEQ|direct"
    "3|PRC|SEQ|direct"
    "4|PRC|BLK|direct"
    "5|PRC|RND|direct"
    "5|PRC|ADM|direct"
    "6|SEQ|SEQ|direct"
    "7|RND|RND|relay"
    "7|SEQ|RND|relay"
    "8|CGN+PRC|PRC|direct"
    "10|PRC@shared|PRC@shared|direct"
    "11|PRC_INPUT|PRC_INPUT|direct"
    "11|PRC_INPUT|PRC|direct"
)

mx_note() { printf '# %s\n' "$*"; }
mx_now_ms() { date +%s%3N; }

# mx_select_rows LIST : keep the pairs whose row is in the comma-separated LIST.
mx_select_rows() {
    [[ -n "${1:-}" ]] || return 0
    local keep=() p r
    for p in "${MX_PAIRS[@]}"; do
        r="${p%%|*}"
        [[ ",$1," == *",$r,"* ]] && keep+=("$p")
    done
    ((${#keep[@]})) || lab_die "no matrix pair in rows $1 (rows: 1-8, 10, 11)"
    MX_PAIRS=("${keep[@]}")
}

# mx_srv ARGS : p2pvpn on the server host (20 s bound).
mx_srv() { lab_exec server timeout 20 "$P2P_BIN" "$@"; }

mx_setup() {
    lab_build server
    MX_STATE="$LAB_TMP/server/state"
    lab_spawn server server -- "$P2P_BIN" server --listen "${LAB_SERVER_IPS[0]}:$MX_PORT" \
        --listen "${LAB_SERVER_IPS[1]}:$MX_PORT" --state-dir "$MX_STATE"
    local rc=0
    lab_wait_ready 30 server "p2pvpn server listening on" || rc=$?
    [[ $rc -eq 0 ]] || { mx_note "server did not start:"; tail -n 20 "$(lab_logfile server)" | sed 's/^/#   /'; return 1; }
}

# mx_peer_fields NODE NET PEER : tab-separated fields of PEER in NODE's status (or "-"):
# path technique technique_detail probes_sent time_to_direct_ms attempts last_failure
# endpoint own-nat-legacy-name
mx_peer_fields() {
    local js; js="$(p2p_status_json "$1" "$2" 2>/dev/null)" || js='{}'
    python3 -c '
import json, sys
net, peer = sys.argv[1], sys.argv[2]
try:
    j = json.loads(sys.stdin.read() or "{}")
except ValueError:
    j = {}
if isinstance(j, dict) and isinstance(j.get("networks"), list):  # status --json
    j = j["networks"]
if isinstance(j, list):
    j = next((x for x in j if x.get("network") == net), j[0] if j else {})
p = next((x for x in j.get("peers", []) or [] if x.get("name") == peer), {}) or {}
pu = p.get("punch") or {}
nat = j.get("nat") or {}
def s(v):
    if v is None or v == "":
        return "-"
    return str(v).replace("\t", " ").replace("\n", " ")
print("\t".join(s(v) for v in (p.get("path"), p.get("technique"), p.get("technique_detail"),
      pu.get("probes_sent"), pu.get("time_to_direct_ms"), pu.get("attempts"), pu.get("last_failure"),
      p.get("endpoint"), nat.get("legacy_name") if isinstance(nat, dict) else None)))
' "$2" "$3" <<<"$js"
}

# mx_pair IDX ROW A B EXPECT : run one pair, append to MX_RESULTS, 0 if it met EXPECT.
mx_pair() {
    local idx="$1" row="$2" pa="$3" pb="$4" expect="$5"
    local a="p${idx}a" b="p${idx}b" net="mx$idx" n tok
    local sa="$a:${pa/@shared/@p${idx}r}" sb="$b:${pb/@shared/@p${idx}r}"
    local detail="" outcome="none" ms="-" result=FAIL
    mx_note "pair $idx: row $row, $pa <-> $pb, expect $expect"
    lab_build "$sa" "$sb"
    mx_note "  $a $(lab_host_ip "$a") public $(lab_public_ip "$a"); $b $(lab_host_ip "$b") public $(lab_public_ip "$b")"
    local setup_ok=1
    mx_srv network create "$net" --cidr "10.99.$idx.0/24" --state-dir "$MX_STATE" \
        >>"$LAB_TMP/logs/network-create.log" 2>&1 || { setup_ok=0; detail="network create failed"; }
    for n in "$a" "$b"; do
        ((setup_ok)) || break
        tok="$(mx_srv network invite "$net" --uses 1 --state-dir "$MX_STATE" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)" || true
        [[ -n "$tok" ]] || { setup_ok=0; detail="invite for $n failed"; break; }
        mkdir -p "$LAB_TMP/$n/etc" "$LAB_TMP/$n/state"
        p2p "$n" join "$tok" --name "$n" >"$LAB_TMP/logs/$n-join.log" 2>&1 || {
            setup_ok=0
            # the log goes with the lab: its last line is what join said
            detail="$n join failed: $(tail -n 1 "$LAB_TMP/logs/$n-join.log")"
        }
    done
    local fa fb
    fa="$(printf -- "-\t%.0s" 1 2 3 4 5 6 7 8)-"; fb="$fa"
    if ((setup_ok)); then
        local t0 now deadline ever_direct=0 wait_s="$MX_TIMEOUT" pathA pathB
        [[ "$expect" == relay || "$expect" == nodirect ]] && wait_s="$MX_RELAY_WAIT"
        t0="$(mx_now_ms)"
        p2p_spawn "$a" "$a-up" up --network "$net"
        p2p_spawn "$b" "$b-up" up --network "$net"
        deadline=$((t0 + wait_s * 1000))
        while :; do
            # A cheap check per poll (no python: it costs ~0.2 s a call on a loaded host, which
            # would be the resolution of "ms to direct"); each host has this one peer.
            pathA=other; pathB=other
            [[ "$(p2p_status_json "$a" "$net" 2>/dev/null)" =~ \"path\":\ *\"direct\" ]] && pathA=direct
            [[ "$(p2p_status_json "$b" "$net" 2>/dev/null)" =~ \"path\":\ *\"direct\" ]] && pathB=direct
            now="$(mx_now_ms)"
            if [[ "$pathA" == direct && "$pathB" == direct ]]; then
                ever_direct=1; [[ "$ms" == - ]] && ms=$((now - t0))
                [[ "$expect" == relay || "$expect" == nodirect ]] || break
            fi
            ((now < deadline)) || break
            lab_alive "$a-up" || { detail="$a's up exited"; break; }
            lab_alive "$b-up" || { detail="$b's up exited"; break; }
            sleep 0.1
        done
        fa="$(mx_peer_fields "$a" "$net" "$b")"; fb="$(mx_peer_fields "$b" "$net" "$a")"
        local vip_b; vip_b="$(p2p_field "$b" "$net" 'j["virtual_ip"]' 2>/dev/null || true)"
        if [[ "$expect" == nodirect ]]; then
            # Row 7 before the relay exists: no direct path may be claimed, and the node must
            # say why (status punch.last_failure).
            local why; why="$(cut -f7 <<<"$fa")"
            if ((ever_direct)); then
                outcome=direct; detail="became direct after ${ms} ms, expected no direct path"
            elif [[ -z "$why" || "$why" == - ]]; then
                outcome="no path"; detail="no direct path, but status gives no reason"
            else
                outcome="no direct"; result=pass; detail="$why"
            fi
        elif [[ "$expect" == direct && $ever_direct -eq 0 ]]; then
            outcome="${pathA:--}/${pathB:--}"
            detail="${detail:-not direct after ${wait_s} s}"
        elif [[ -z "$vip_b" ]]; then
            outcome="no-vip"; detail="${detail:-no virtual_ip in the status of $b}"
        else
            local out
            out="$(lab_exec "$a" ping -c 3 -W 2 "$vip_b" 2>&1)" || true
            if grep -q ' 3 received' <<<"$out"; then
                if ((ever_direct)); then outcome=direct; else outcome=relay; fi
                if [[ "$outcome" == "$expect" ]]; then
                    result=pass
                    # A relayed pair: say why no direct path (status punch.last_failure).
                    if [[ "$outcome" == relay ]]; then detail="$(cut -f7 <<<"$fa")"; fi
                else
                    detail="${detail:-became direct after ${ms} ms, expected relay}"
                fi
            else
                if ((ever_direct)); then outcome="direct, ping failed"; else outcome="no path"; fi
                detail="${detail:+$detail; }ping $a -> $b: $(grep -o '[0-9]* received' <<<"$out" || echo failed)"
            fi
        fi
        P2P_TIMEOUT=5 p2p "$a" down --network "$net" >/dev/null 2>&1 || true
        P2P_TIMEOUT=5 p2p "$b" down --network "$net" >/dev/null 2>&1 || true
        lab_stop "$a-up" TERM 3 >/dev/null 2>&1 || true
        lab_stop "$b-up" TERM 3 >/dev/null 2>&1 || true
    fi
    # fields: path technique detail probes ttd attempts last_failure endpoint nat
    local -a A B
    IFS=$'\t' read -r -a A <<<"$fa"; IFS=$'\t' read -r -a B <<<"$fb"
    local tech_a="${A[2]:--}" tech_b="${B[2]:--}"
    [[ "$tech_a" == - ]] && tech_a="${A[1]:--}"
    [[ "$tech_b" == - ]] && tech_b="${B[1]:--}"
    if [[ "$result" != pass && -z "$detail" ]]; then detail="-"; fi
    [[ "$result" != pass && "${A[6]:--}" != - ]] && detail+="; $a: ${A[6]}"
    [[ "$result" != pass && "${B[6]:--}" != - ]] && detail+="; $b: ${B[6]}"
    MX_RESULTS+=("$(printf '%s\t' "$row" "$pa" "$pb" "$expect" "$outcome" "$ms" \
        "${A[4]:--}/${B[4]:--}" "${A[3]:--}/${B[3]:--}" "$tech_a / $tech_b" "$result")${detail:--}")
    mx_note "  -> $outcome, ${ms} ms, probes ${A[3]:--}/${B[3]:--}, technique $tech_a / $tech_b, own NAT ${A[8]:--}/${B[8]:--}${detail:+; $detail}"
    lab_remove "$a" "$b"
    [[ "$result" == pass ]]
}

# mx_run_all [CALLBACK] : every pair; CALLBACK NAME RC is called after each.
mx_run_all() {
    local i=0 p row pa pb ex failed=0 rc name
    for p in "${MX_PAIRS[@]}"; do
        i=$((i + 1))
        IFS='|' read -r row pa pb ex <<<"$p"
        rc=0
        mx_pair "$((${MX_IDX_BASE:-0} + i))" "$row" "$pa" "$pb" "$ex" || rc=$?
        ((rc == 0)) || failed=1
        name="row $row: $pa - $pb"
        [[ "$pa" == *@shared ]] && name="row $row: two PRC hosts behind one NAT (no hairpin)"
        if declare -F "${1:-}" >/dev/null; then "$1" "$name, expect $ex" "$rc"; fi
    done
    return "$failed"
}

_mx_cols() { printf '%s\n' "row" "A" "B" "expected" "outcome" "ms to direct" "ttd A/B (status)" "probes A/B" "technique A->B / B->A" "result" "detail"; }

mx_table() {
    {
        _mx_cols | paste -sd $'\t'
        printf '%s\n' "${MX_RESULTS[@]}"
    } | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
w = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(rows[0]))]
w[-1] = 0
for n, r in enumerate(rows):
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    if n == 0:
        print("  ".join("-" * x for x in w[:-1]) + "  ------")
'
}

mx_markdown() {
    {
        _mx_cols | paste -sd $'\t'
        printf '%s\n' "${MX_RESULTS[@]}"
    } | python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
esc = lambda c: c.replace("|", "\\|")
print("| " + " | ".join(rows[0]) + " |")
print("|" + "---|" * len(rows[0]))
for r in rows[1:]:
    print("| " + " | ".join(esc(c) for c in r) + " |")
'
}

# mx_summary [--markdown] : aggregate MX_RESULTS per pair (row, A, B) over repeated runs.
# "nodes ms" is the later of the two nodes' own time_to_direct_ms (status: from learning of the
# peer to a verified path, so without process start and registration).
# "ms to direct" is measured from `up` of the first host (both are started one after the other)
# by polling status every 0.1 s, so it is an upper bound with about that resolution plus the
# cost of two status calls.
mx_summary() {
    local md=0
    [[ "${1:-}" == --markdown ]] && md=1
    printf '%s\n' "${MX_RESULTS[@]}" | python3 -c '
import sys
md = sys.argv[1] == "1"
order, agg = [], {}
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    if len(f) < 10:
        continue
    key = (f[0], f[1], f[2], f[3])
    if key not in agg:
        order.append(key)
        agg[key] = {"runs": 0, "ok": 0, "direct": 0, "ms": [], "ttd": [], "tech": {}}
    a = agg[key]
    a["runs"] += 1
    a["ok"] += f[9] == "pass"
    if f[5] != "-":
        a["direct"] += 1
        a["ms"].append(int(f[5]))
        ttd = [int(x) for x in f[6].split("/") if x.isdigit()]
        if len(ttd) == 2:
            a["ttd"].append(max(ttd))
    # "direct (birthday, 470 probes)" counts as "direct (birthday)"
    t = f[8].split(" / ")[0] if f[5] != "-" else ""
    if "," in t:
        t = t.split(",")[0] + ")"
    if t and t != "-":
        a["tech"][t] = a["tech"].get(t, 0) + 1
def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) // 2
head = ["row", "A", "B", "expected", "runs", "as expected", "direct", "ms to direct median", "worst",
        "nodes ms median", "worst", "technique A->B (runs)"]
rows = []
for key in order:
    a = agg[key]
    ms = a["ms"]
    rows.append(list(key) + [str(a["runs"]), "%d/%d (%d%%)" % (a["ok"], a["runs"], round(100 * a["ok"] / a["runs"])),
        "%d/%d" % (a["direct"], a["runs"]), str(median(ms)) if ms else "-", str(max(ms)) if ms else "-",
        str(median(a["ttd"])) if a["ttd"] else "-", str(max(a["ttd"])) if a["ttd"] else "-",
        ", ".join("%s (%d)" % kv for kv in sorted(a["tech"].items(), key=lambda kv: -kv[1])) or "-"])
if md:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
else:
    allr = [head] + rows
    w = [max(len(r[i]) for r in allr) for i in range(len(head))]
    for n, r in enumerate(allr):
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            print("  ".join("-" * x for x in w))
' "$md"
}
