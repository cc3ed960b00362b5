# shellcheck shell=bash disable=SC2034,SC2004,SC2153  # the lab arrays are declared in lab.sh
# scripts/lib/upnp.sh - the UPNP router profile of the NAT lab (docs: nat-lab.md, row 12):
# a RND (random symmetric) NAT router running a real miniupnpd (Debian
# miniupnpd-nftables) that grants port mappings. Sourced by scripts/lib/lab.sh;
# lab_build "NAME:UPNP_IGD" (or _PCP, _PMP, _DENY) calls lab_add_upnp_host.
#
#   lab_add_upnp_host NAME MODE   host NAME behind router NAME-nat running miniupnpd
#       (returns once it listens; lab_upnp_wait_ready LABEL MODE waits for a restarted one):
#       IGD   UPnP IGD only (enable_upnp=yes, enable_natpmp=no)
#       PCP   PCP and NAT-PMP (enable_upnp=no, enable_natpmp=yes: one switch for both)
#       PMP   NAT-PMP only: as PCP, but the router drops PCP requests (version 2)
#       DENY  all three on, but the permission rules refuse every mapping
#
# miniupnpd 2.3 grants nothing when its WAN address is reserved (RFC 1918, 100.64/10,
# the TEST-NETs, 198.18/15 ...), so this router's WAN is moved from 203.0.113.x to the
# same /30 slot in 11.0.0.0/24. Like every lab address it exists only inside the lab's
# namespaces (inet has no link to the root namespace). miniupnpd writes its rules to
# `table inet filter` (chains miniupnpd, prerouting_miniupnpd, postrouting_miniupnpd,
# as Debian's nft_init.sh creates them); the NAT profile's own forward chain accepts
# `ct status dnat`, so mapped traffic passes both.

LAB_UPNP_NET=11.0.0     # unreserved, lab-only; one /30 per router as for 203.0.113.x

# _lab_upnp_readdress ROUTER : move ROUTER's WAN /30 from 203.0.113.x to $LAB_UPNP_NET.x.
_lab_upnp_readdress() {
    local r="$1" i; i="${_LAB_ROUTER_WANIDX[$r]:?router $r has no WAN /30}"
    local inet_side="$LAB_UPNP_NET.$((4 * i + 1))" wan="$LAB_UPNP_NET.$((4 * i + 2))"
    ip -n "$(lab_ns "$LAB_INTERNET")" addr flush dev "wan$i"
    lab_addr "$LAB_INTERNET" "wan$i" "$inet_side/30"
    ip -n "$(lab_ns "$r")" addr flush dev wan0
    lab_addr "$r" wan0 "$wan/30"
    lab_exec "$r" ip route replace default via "$inet_side"
    LAB_ROUTER_WAN[$r]="$wan"
}

# _lab_upnp_conf ROUTER MODE : miniupnpd.conf for ROUTER.
_lab_upnp_conf() {
    local r="$1" mode="$2" lan="${LAB_ROUTER_LAN[$1]}" upnp=no pmp=no perm
    case "$mode" in
        IGD) upnp=yes ;;
        PCP | PMP) pmp=yes ;;
        DENY) upnp=yes; pmp=yes ;;
        *) lab_die "unknown UPNP mode: $mode (IGD, PCP, PMP, DENY)" ;;
    esac
    perm="allow 1024-65535 $lan.0/24 1024-65535"
    [[ "$mode" == DENY ]] && perm=""
    cat <<CONF
ext_ifname=wan0
listening_ip=lan0
port=0
enable_upnp=$upnp
enable_natpmp=$pmp
secure_mode=yes
system_uptime=no
notify_interval=60
clean_ruleset_interval=600
uuid=3d3cec3a-8cf0-11e0-98ee-001a6b$(printf '%06x' "$RANDOM")
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
$perm
deny 0-65535 0.0.0.0/0 0-65535
CONF
}

# lab_upnp_wait_ready LABEL MODE : waits (15 s at most, status 1 then) until the miniupnpd
# spawned as LABEL listens. A node that asks first is refused and tries again only after its
# 30 s backoff (io::portmap), which on a loaded machine failed a pair that must turn direct.
# NAT-PMP/PCP open last when on; with UPnP alone, the HTTP socket is the last logged.
lab_upnp_wait_ready() {
    local ready="Listening for NAT-PMP/PCP"
    [[ "$2" == IGD ]] && ready="HTTP listening on port"
    lab_wait_ready 15 "$1" "$ready"
}

# lab_add_upnp_host NAME MODE : see the header.
lab_add_upnp_host() {
    local name="$1" mode="$2" r="$1-nat"
    lab_require miniupnpd
    lab_add_nat_router "$r"
    _lab_upnp_readdress "$r"
    lab_nat "$r" RND
    # the chains miniupnpd fills (nft_init.sh's layout); its NAT chains run just before
    # the profile's (priority 99 / -101) so a mapping's own translation wins
    lab_exec "$r" nft -f - <<NFT
table inet filter {
    chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -101; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority 99; policy accept; jump postrouting_miniupnpd; }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
NFT
    if [[ "$mode" == PMP ]]; then
        # PCP and NAT-PMP share port 5351; the first payload byte is the version (2: PCP)
        lab_exec "$r" nft -f - <<'NFT'
table ip lab_nopcp {
    chain input {
        type filter hook input priority -10; policy accept;
        udp dport 5351 @th,64,8 2 counter drop
    }
}
NFT
    fi
    mkdir -p "$LAB_TMP/$r"
    _lab_upnp_conf "$r" "$mode" >"$LAB_TMP/$r/miniupnpd.conf"
    lab_spawn "$r" "$r-miniupnpd" -- miniupnpd -d -f "$LAB_TMP/$r/miniupnpd.conf" \
        -P "$LAB_TMP/$r/miniupnpd.pid"
    lab_upnp_wait_ready "$r-miniupnpd" "$mode" ||
        lab_die "miniupnpd on $r did not start within 15 s (log: $(lab_logfile "$r-miniupnpd"))"
    LAB_ROUTER_PROFILE[$r]="UPNP_$mode"
    lab_add_nat_host "$r" "$name"
}
