# shellcheck shell=bash
# scripts/lib/delay.sh - delay and jitter in the lab's routed internet namespace (sourced by
# scripts/lib/lab.sh). This kernel has no sch_netem, so a small userspace element does it:
# scripts/lib/delay.py holds every packet the internet namespace forwards for DELAY ms (+/-
# JITTER) in a TUN device and hands it back.
#
#     lab_delay DELAY_MS [JITTER_MS=0] [LIMIT=1000]
#                            start it in the routed internet namespace (lab_internet_routed
#                            first). DELAY is one way, per crossing of the internet: two hosts
#                            behind different routers, or a host and the server, then see an
#                            RTT of 2 x DELAY. Hosts on the same bridge as the server (open
#                            hosts) reach it bridged, not routed, so without delay; an open
#                            host's traffic to a NAT router's WAN is delayed.
#     lab_delay_stats        the element's counters as JSON (held, forwarded, dropped at the
#                            queue cap, write_errors, max_queue)
#     lab_delay_off          stop it; forwarding goes back to undelayed
#
# How: the device dly0 in the internet namespace, a routing table with only `default dev
# dly0`, and rules: what comes back out of dly0 and what the namespace itself sends (ICMP
# errors) use the main table; everything else the other table. Local delivery (the local
# table, rule 0) is untouched. IPv4 only: IPv6 crosses undelayed. The element goes away with
# the namespace (lab_cleanup kills every process in the lab's namespaces).

if [[ -n "${_LAB_DELAY_SH_LOADED:-}" ]]; then return 0; fi
_LAB_DELAY_SH_LOADED=1

LAB_DELAY_TABLE=4242
LAB_DELAY_DEV=dly0

lab_delay() {
    local delay="${1:?lab_delay DELAY_MS [JITTER_MS] [LIMIT]}" jitter="${2:-0}" limit="${3:-1000}"
    [[ -n "$LAB_INET_GW" && -n "$LAB_INTERNET" ]] || lab_die "lab_delay: lab_internet_routed first"
    [[ "$delay" =~ ^[0-9]+$ && "$jitter" =~ ^[0-9]+$ && "$limit" =~ ^[1-9][0-9]*$ ]] ||
        lab_die "lab_delay: DELAY, JITTER (ms) and LIMIT must be whole numbers"
    ((jitter <= delay)) || lab_die "lab_delay: jitter ($jitter ms) larger than the delay ($delay ms)"
    lab_require python3
    local dir; dir="$(dirname "${BASH_SOURCE[0]}")"
    # a "ready" line left from an earlier run must not count (lab_spawn truncates the log in
    # the background)
    rm -f -- "$(lab_logfile delay)"
    lab_spawn "$LAB_INTERNET" delay -- python3 "$dir/delay.py" --dev "$LAB_DELAY_DEV" \
        --delay "$delay" --jitter "$jitter" --limit "$limit" --stats "$LAB_TMP/delay-stats.json"
    local rc=0
    lab_wait_ready 10 delay "^ready " || rc=$?
    ((rc == 0)) || { tail -n 5 "$(lab_logfile delay)" >&2; lab_die "lab_delay: the delay element did not start"; }
    local ns; ns="$(lab_ns "$LAB_INTERNET")"
    ip -n "$ns" link set "$LAB_DELAY_DEV" up
    # packets come back on dly0 with addresses the device has no route for: no reverse-path check
    _lab_sysctl "$LAB_INTERNET" net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$LAB_DELAY_DEV.rp_filter=0"
    ip -n "$ns" route add default dev "$LAB_DELAY_DEV" table "$LAB_DELAY_TABLE"
    ip -n "$ns" -4 rule add pref 100 iif "$LAB_DELAY_DEV" lookup main
    ip -n "$ns" -4 rule add pref 101 iif lo lookup main
    ip -n "$ns" -4 rule add pref 102 lookup "$LAB_DELAY_TABLE"
    lab_log "delay element: ${delay} ms one way (+/- ${jitter} ms), at most $limit packets held"
}

lab_delay_stats() { cat "$LAB_TMP/delay-stats.json" 2>/dev/null || echo '{}'; }

lab_delay_off() {
    local ns; ns="$(lab_ns "$LAB_INTERNET")"
    ip -n "$ns" -4 rule del pref 102 2>/dev/null || true
    ip -n "$ns" -4 rule del pref 101 2>/dev/null || true
    ip -n "$ns" -4 rule del pref 100 2>/dev/null || true
    lab_stop delay TERM 3 >/dev/null 2>&1 || true
}
