#!/usr/bin/env bash
# scripts/check-systemd.sh - the .deb's systemd units run under a real systemd (PID 1 in a
# systemd-nspawn container), in a network-namespace lab: a server and two nodes.
#
#   scripts/check-systemd.sh PATH.deb
#
# What it does: debootstraps a minimal Debian bookworm with systemd ONCE into a cache
# (P2PVPN_CI_CACHE, default /var/cache/p2pvpn-ci; reused when complete), builds the lab (an
# "internet" bridge namespace; server 198.51.100.1, alice .11, bob .12: addresses exist only in
# namespaces made here), and boots three containers (server, alice, bob), each from its own
# overlay of the cached root (upper layer on a tmpfs, so a run never changes the cache) and each
# inside its lab namespace with /dev/net/tun bound in. It installs the package in each with
# dpkg -i and checks, through systemctl inside the containers:
#   1  p2pvpn-server.service: `systemctl start` returns with the unit active (running) and the
#      listener already bound (Type=notify readiness), running as the p2pvpn user
#   2  network create / invite as the p2pvpn user, join on both nodes, `systemctl start
#      p2pvpn@office` returns active (running) with p2p-office already addressed
#   3  the nodes ping each other's 10.x addresses over the VPN
#   3b split DNS through systemd-resolved: the node registered its responder and ~office.p2p on
#      p2p-office (and nothing else goes there), getent and ping bob.office.p2p work on alice
#   4  `systemctl stop p2pvpn@office` exits cleanly and leaves no p2p-* interface and nothing
#      in resolved
#   5  kill -9 of a node's main process: systemd restarts it (NRestarts grows) and the peer
#      answers again
#   6  the sandbox holds in the running unit's mount namespace: / and /etc/p2pvpn read-only,
#      the state directory writable, only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE effective
#
# Prints `ok N - NAME` / `not ok N - NAME`, `N passed, N failed`, and the run time; exits 1 if a
# check failed, 2 on a setup error, 77 after `SKIP: reason` when it cannot run here. Cleans up
# on every exit: containers stopped (killed after 20 s), overlays and namespaces removed; only
# the cache stays. Needs root, /dev/net/tun, and (first run only) Debian's package mirror:
# the one apt uses, or P2PVPN_DEBIAN_MIRROR. Installs systemd-container and debootstrap with
# apt-get when missing. LAB_KEEP=1 keeps the logs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/lab.sh
. "$ROOT/scripts/lib/lab.sh"
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

START=$SECONDS
NUM=0
NET=office
CIDR=10.88.0.0/24
SERVER_IP=198.51.100.1
PORT=7400
CONTAINERS=(server alice bob)
declare -A HOST_IP=([server]=$SERVER_IP [alice]=198.51.100.11 [bob]=198.51.100.12)
# Packages beyond minbase: systemd as init, iproute2 for `ip`/`ss`, the package's own
# dependency (adduser), ping, and systemd-resolved (the nodes register their DNS responder
# with it). Part of the cache key: a changed list rebuilds the cache, which is why the cache's
# name changed with the list (runs of an older list keep their own cache instead of rebuilding
# each other's).
INCLUDE=systemd,systemd-sysv,dbus,iproute2,adduser,iputils-ping,systemd-resolved
CACHE_DIR="${P2PVPN_CI_CACHE:-/var/cache/p2pvpn-ci}"
CACHE="$CACHE_DIR/bookworm-systemd-resolved"

bail() { echo "Bail out! $*"; exit 2; }

# tcheck NAME CMD... : run CMD, print a numbered TAP line, count it (tap.sh's counters).
tcheck() {
    local name="$1"; shift
    local rc=0
    "$@" || rc=$?
    NUM=$((NUM + 1))
    if ((rc == 0)); then
        PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$NUM" "$name"
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); printf 'not ok %d - %s\n' "$NUM" "$name"
    fi
}

# ---------------------------------------------------------------- prerequisites
if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
if [[ ! -c /dev/net/tun ]]; then echo "SKIP: no /dev/net/tun"; exit 77; fi
DEB="${1:-}"
[[ -n "$DEB" && -f "$DEB" ]] || { echo "usage: $0 PATH.deb (build one with scripts/package-deb.sh)" >&2; exit 2; }
DEB="$(realpath "$DEB")"
if lab_missing systemd-nspawn debootstrap >/dev/null; then
    note "installing systemd-container and debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q systemd-container debootstrap >/dev/null ||
        { timeout 300 apt-get update -q >/dev/null && timeout 600 apt-get install -y -q systemd-container debootstrap >/dev/null; } ||
        bail "apt-get install systemd-container debootstrap failed"
fi
if m="$(lab_missing ip nsenter timeout flock mountpoint)"; then echo "SKIP: $m not installed"; exit 77; fi

# The mirror apt already uses (deb822 `URIs:` or one-line `deb URL`), not the security one.
debian_mirror() {
    [[ -n "${P2PVPN_DEBIAN_MIRROR:-}" ]] && { printf '%s\n' "$P2PVPN_DEBIAN_MIRROR"; return; }
    local url
    url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i } /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
        grep -v -e security -e '^cdrom:' | head -n 1)"
    printf '%s\n' "${url:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- the cached root
DEBOOTSTRAP_S=0
cache_ok() { [[ "$(cat "$CACHE.stamp" 2>/dev/null)" == "$INCLUDE" && -x "$CACHE/lib/systemd/systemd" ]]; }

# A run holds a shared lock on the cache until it exits (its overlays read it); a rebuild
# holds it exclusively.
ensure_cache() {
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.lock"
    timeout 1200 flock -s 9 || bail "cache lock $CACHE_DIR/.lock held for 20 min"
    if cache_ok; then note "cached root $CACHE"; return 0; fi
    timeout 1200 flock -x 9 || bail "cache lock $CACHE_DIR/.lock held for 20 min"
    if cache_ok; then
        note "cached root $CACHE (built by another run)"
    else
        local mirror t0=$SECONDS
        mirror="$(debian_mirror)"
        note "debootstrap bookworm from $mirror into $CACHE (once; 1-3 min)"
        rm -rf "$CACHE.new" "$CACHE" "$CACHE.stamp"
        # Two attempts: a mirror has been seen failing every download for half a minute.
        local attempt
        for attempt in 1 2; do
            timeout 900 debootstrap --variant=minbase --include="$INCLUDE" bookworm "$CACHE.new" "$mirror" \
                >"$CACHE_DIR/debootstrap.log" 2>&1 && break
            tail -n 5 "$CACHE_DIR/debootstrap.log" | sed 's/^/#   /'
            rm -rf "$CACHE.new"
            ((attempt == 2)) && bail "debootstrap failed twice (log: $CACHE_DIR/debootstrap.log)"
            note "debootstrap failed; trying again in 20 s"
            sleep 20
        done
        # No apt lists or downloaded .debs in the cache: nothing in a run fetches packages.
        rm -rf "$CACHE.new"/var/cache/apt/archives/*.deb "$CACHE.new"/var/lib/apt/lists/*_Packages
        mv "$CACHE.new" "$CACHE"
        printf '%s\n' "$INCLUDE" >"$CACHE.stamp"
        DEBOOTSTRAP_S=$((SECONDS - t0))
        note "debootstrap took ${DEBOOTSTRAP_S}s"
    fi
    flock -s 9
}
ensure_cache

# ---------------------------------------------------------------- containers
RUN=""
NSPAWN_TMPFS=0
declare -A NSPAWN_PID=() INIT_PID=()

# cexec NAME CMD... : run CMD inside container NAME (all its namespaces), bounded by CT seconds.
cexec() {
    local c="$1"; shift
    timeout -k 5 "${CT:-60}" nsenter -t "${INIT_PID[$c]}" -m -u -i -n -p -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# prop NAME UNIT PROPERTY : one `systemctl show` value.
prop() { cexec "$1" systemctl show -p "$3" --value "$2"; }

# props NAME UNIT PROPERTY... : the values joined by |, in the order asked (systemctl show
# prints them in its own order).
props() {
    local c="$1" unit="$2" p out=""
    shift 2
    for p in "$@"; do out+="$(prop "$c" "$unit" "$p")|"; done
    printf '%s\n' "${out%|}"
}

stop_containers() {
    local c i alive
    for c in "${!NSPAWN_PID[@]}"; do kill -TERM "${NSPAWN_PID[$c]}" 2>/dev/null || true; done
    # SIGTERM makes nspawn power the container off in order; give that 20 s.
    for ((i = 0; i < 200; i++)); do
        alive=0
        for c in "${!NSPAWN_PID[@]}"; do kill -0 "${NSPAWN_PID[$c]}" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for c in "${!NSPAWN_PID[@]}"; do
        if kill -0 "${NSPAWN_PID[$c]}" 2>/dev/null; then
            note "container $c did not power off in 20 s; killing it"
            # Killing the container's init ends its whole PID namespace.
            [[ -n "${INIT_PID[$c]:-}" ]] && kill -KILL "${INIT_PID[$c]}" 2>/dev/null
            kill -KILL "${NSPAWN_PID[$c]}" 2>/dev/null
        fi
        wait "${NSPAWN_PID[$c]}" 2>/dev/null || true
    done
    NSPAWN_PID=()
}

unmount_all() {
    local c
    if [[ -n "$RUN" && -d "$RUN" ]]; then
        for c in "${CONTAINERS[@]}"; do
            mountpoint -q "$RUN/$c/root" && { umount "$RUN/$c/root" || umount -l "$RUN/$c/root"; }
        done
        mountpoint -q "$RUN" && { umount "$RUN" || umount -l "$RUN"; }
        # Only an empty directory or one we own is left now: nothing of the cache is below it.
        mountpoint -q "$RUN" || rm -rf "$RUN"
    fi
    if ((NSPAWN_TMPFS)); then umount /run/systemd/nspawn 2>/dev/null || true; fi
}

lab_on_exit() {
    local rc="$1" c
    if [[ "$rc" -ne 0 || "$FAILED" -ne 0 ]]; then
        for c in "${!INIT_PID[@]}"; do
            echo "# --- $c: journal of the p2pvpn units (last 25 lines)"
            CT=10 cexec "$c" journalctl --no-pager -q -n 25 -u p2pvpn-server.service -u "p2pvpn@$NET.service" 2>&1 | sed 's/^/#   /' || true
        done
    fi
    stop_containers
    remove_cgroups
    unmount_all
    echo "# run time $((SECONDS - START))s (debootstrap ${DEBOOTSTRAP_S}s)"
    return 0
}

lab_init
note "lab $LAB_TMP, namespaces ${LAB_PREFIX}*, package $DEB"
lab_internet inet
for c in "${CONTAINERS[@]}"; do lab_add_host "$c" "${HOST_IP[$c]}"; done

# nspawn keeps its per-machine state here and refuses to start unless it is a tmpfs.
mkdir -p /run/systemd/nspawn
if ! mountpoint -q /run/systemd/nspawn; then
    mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn || bail "cannot mount a tmpfs on /run/systemd/nspawn"
    NSPAWN_TMPFS=1
fi

# Per-run writable layers on a tmpfs: unmounting it removes every trace of the run.
RUN="$(mktemp -d /run/p2pvpn-check-systemd.XXXXXX)"
mount -t tmpfs -o mode=0700,size=1g tmpfs "$RUN" || bail "cannot mount a tmpfs on $RUN"

# With --keep-unit (no systemd on the host to ask for a scope) nspawn puts the container in
# "payload" below its own cgroup; three containers started from one cgroup would share one
# tree, and one container's systemd would kill the others' services (seen: "Failed to kill
# control group", then 219/CGROUP on the next start). So each starts from its own cgroup, in
# every hierarchy systemd uses: cgroup2 alone, or name=systemd plus cgroup2 (hybrid).
CGROUPS=()
cgroup_roots() {
    if [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]]; then echo /sys/fs/cgroup; return; fi
    local h
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do mountpoint -q "$h" && echo "$h"; done
}
for r in $(cgroup_roots); do CGROUPS+=("$r/p2pvpn-check-systemd-${LAB_PREFIX%-}"); done

# join_cgroup NAME : move this (sub)shell into NAME's cgroup in every hierarchy.
join_cgroup() {
    local g
    for g in "${CGROUPS[@]}"; do
        mkdir -p "$g/$1" && echo "$BASHPID" >"$g/$1/cgroup.procs" || return 1
    done
}

remove_cgroups() {
    local g
    # Depth first: nspawn and the containers' systemd made the groups below ours.
    for g in "${CGROUPS[@]}"; do [[ -d "$g" ]] && find "$g" -depth -type d -exec rmdir {} + 2>/dev/null; done
    return 0
}

boot() {
    local c="$1" d="$RUN/$1" i pid
    mkdir -p "$d/upper" "$d/work" "$d/root"
    mount -t overlay overlay -o "lowerdir=$CACHE,upperdir=$d/upper,workdir=$d/work" "$d/root" ||
        bail "overlay mount for $c failed"
    cp "$DEB" "$d/root/root/p2pvpn.deb"
    printf '%s\n' "$c" >"$d/root/etc/hostname"
    # nspawn keeps CAP_NET_ADMIN only for --private-network; a joined namespace needs it asked
    # for (a real machine's PID 1 has it; without it TUNSETIFF fails with EPERM in every unit).
    # A cgroup of its own for each container (below): exec keeps the pid, so nspawn starts in it.
    (join_cgroup "$c" && exec systemd-nspawn -q -D "$d/root" -M "${LAB_PREFIX}$c" --hostname="$c" --boot \
        --register=no --keep-unit --console=passive --link-journal=no \
        --resolv-conf=off --timezone=off \
        --network-namespace-path="/run/netns/$(lab_ns "$c")" --bind=/dev/net/tun \
        --capability=CAP_NET_ADMIN \
        ) >"$LAB_TMP/logs/nspawn-$c.log" 2>&1 </dev/null &
    NSPAWN_PID[$c]=$!
    # The container's init is the nspawn process's child running systemd.
    for ((i = 0; i < 150; i++)); do
        for pid in $(pgrep -P "${NSPAWN_PID[$c]}" 2>/dev/null); do
            [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == systemd ]] && INIT_PID[$c]=$pid
        done
        [[ -n "${INIT_PID[$c]:-}" ]] && break
        kill -0 "${NSPAWN_PID[$c]}" 2>/dev/null || break
        sleep 0.2
    done
    [[ -n "${INIT_PID[$c]:-}" ]] || { sed 's/^/#   /' "$LAB_TMP/logs/nspawn-$c.log"; bail "container $c did not start systemd"; }
}
for c in "${CONTAINERS[@]}"; do boot "$c"; done

for c in "${CONTAINERS[@]}"; do
    # Until systemd has its private socket, systemctl answers nothing: poll, then --wait for the
    # boot to finish. `degraded` (a unit of the minimal image failed) still means systemd serves.
    deadline=$((SECONDS + 90)) state=""
    while :; do
        state="$(CT=90 cexec "$c" systemctl is-system-running --wait 2>/dev/null)" || true
        [[ -n "$state" ]] || ((SECONDS >= deadline)) || { sleep 0.3; continue; }
        break
    done
    note "$c: systemd (host pid ${INIT_PID[$c]}) is $state"
    case "$state" in
        running) ;;
        degraded) note "$c failed units: $(CT=10 cexec "$c" systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')" ;;
        *) bail "systemd in $c is not up: '${state}'" ;;
    esac
done

# ---------------------------------------------------------------- install
c_install() {
    local c out
    for c in "${CONTAINERS[@]}"; do
        out="$(CT=120 cexec "$c" dpkg -i /root/p2pvpn.deb 2>&1)" ||
            { why "$c: dpkg -i failed:"; printf '#   %s\n' "$(tail -n 5 <<<"$out")"; return 1; }
    done
}
tcheck "dpkg -i installs the package in all three containers" c_install
((FAILED == 0)) || bail "the package did not install"

# ---------------------------------------------------------------- 1 server
# start_probe NAME UNIT CMD : `systemctl start UNIT`, then CMD at once in the same shell (no
# nsenter or systemctl round trip in between: a Type=simple unit would still be starting).
# Prints CMD's output (whatever its status); fails only if start failed.
start_probe() {
    # shellcheck disable=SC2016  # expanded by the inner sh
    CT=150 cexec "$1" sh -c 'systemctl start "$1" || exit 1; shift; "$@" 2>&1; exit 0' sh "$2" "${@:3}"
}

# ready_ms NAME UNIT : milliseconds from the main process's start to active (READY=1).
ready_ms() {
    local a b
    a="$(prop "$1" "$2" ExecMainStartTimestampMonotonic)"; b="$(prop "$1" "$2" ActiveEnterTimestampMonotonic)"
    echo $(((b - a) / 1000))
}

c_server() {
    cexec server sh -c "printf 'P2PVPN_SERVER_ARGS=\"--listen %s:%s\"\n' $SERVER_IP $PORT >/etc/default/p2pvpn-server"
    local listen state
    # Type=notify: start returns only after READY=1, so at this moment the listener is bound
    # and the unit active (running), not activating; STATUS= came over the notify socket.
    listen="$(start_probe server p2pvpn-server.service ss -Hltn "sport = :$PORT")" ||
        why "systemctl start failed: $listen" || return 1
    state="$(props server p2pvpn-server.service Type ActiveState SubState StatusText)"
    note "server right after start: $state; listening: ${listen:-nothing}; ready after $(ready_ms server p2pvpn-server.service) ms"
    [[ "$state" == "notify|active|running|"?* ]] || why "want notify|active|running|STATUS..., got $state" || return 1
    grep -q "$SERVER_IP:$PORT" <<<"$listen" || why "nothing listened on $SERVER_IP:$PORT when start returned" || return 1
    local pid user
    pid="$(prop server p2pvpn-server.service MainPID)"
    user="$(cexec server stat -c %U "/proc/$pid")"
    [[ "$user" == p2pvpn ]] || why "main process $pid runs as '$user', not p2pvpn"
}
tcheck "p2pvpn-server.service: start returns active (running), listener bound, user p2pvpn" c_server

# ---------------------------------------------------------------- 2 nodes
declare -A VIP=()
srv() { cexec server runuser -u p2pvpn -- p2pvpn "$@" --state-dir /var/lib/p2pvpn-server; }

node_started() {  # node_started NAME : start returned with the unit active and p2p-NET addressed
    local c="$1" unit="p2pvpn@$NET.service" addr state
    addr="$(start_probe "$c" "$unit" ip -4 -o addr show dev "p2p-$NET")" ||
        why "$c: systemctl start failed: $addr" || return 1
    addr="$(awk '{print $4}' <<<"$addr")"
    state="$(props "$c" "$unit" Type ActiveState SubState)"
    note "$c right after start: $state, p2p-$NET ${addr:-unaddressed}; ready after $(ready_ms "$c" "$unit") ms"
    [[ "$state" == "notify|active|running" ]] || why "$c: want notify|active|running, got $state" || return 1
    [[ "$addr" == 10.88.0.* ]] || why "$c: p2p-$NET had no 10.88.0.x address when start returned ('$addr')" || return 1
    VIP[$c]="${addr%/*}"
}

c_nodes() {
    srv network create "$NET" --cidr "$CIDR" >/dev/null 2>"$LAB_TMP/logs/network-create.log" ||
        why "network create as user p2pvpn: $(tail -n 2 "$LAB_TMP/logs/network-create.log")" || return 1
    local c tok
    for c in alice bob; do
        tok="$(srv network invite "$NET" 2>>"$LAB_TMP/logs/invite.log" | tail -n 1)"
        [[ -n "$tok" ]] || why "invite for $c: $(tail -n 2 "$LAB_TMP/logs/invite.log")" || return 1
        cexec "$c" p2pvpn join "$tok" --name "$c" >"$LAB_TMP/logs/join-$c.log" 2>&1 ||
            why "$c: join: $(tail -n 3 "$LAB_TMP/logs/join-$c.log")" || return 1
    done
    for c in alice bob; do node_started "$c" || return 1; done
    note "alice ${VIP[alice]}, bob ${VIP[bob]}"
}
tcheck "p2pvpn@$NET on alice and bob: start returns active (running) with p2p-$NET addressed" c_nodes

# ---------------------------------------------------------------- 3 ping
# reach FROM TO WAIT : one echo answered within WAIT seconds, then 3 of 3.
reach() {
    local from="$1" to="$2" deadline=$((SECONDS + $3)) out
    [[ -n "$to" ]] || why "no address for the peer" || return 1
    until CT=5 cexec "$from" ping -n -q -c 1 -W 1 "$to" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || why "$from -> $to: no reply in $3 s" || return 1
    done
    out="$(CT=15 cexec "$from" ping -n -q -c 3 -i 0.3 -W 2 "$to" 2>&1)" || true
    grep -q ' 3 received' <<<"$out" || why "$from -> $to: $(grep transmitted <<<"$out")"
}
c_ping() { reach alice "${VIP[bob]:-}" 30 && reach bob "${VIP[alice]:-}" 10; }
tcheck "alice and bob ping each other's 10.88.0.x over the VPN" c_ping

# ---------------------------------------------------------------- 3b split DNS
# The unit registers its responder in the background once p2p-office exists: wait for it.
dns_registered() { cexec alice resolvectl status "p2p-$NET" 2>/dev/null | grep -q "DNS Domain: ~$NET.p2p"; }
c_dns() {
    lab_wait_for 15 dns_registered || why "no ~$NET.p2p on p2p-$NET: $(cexec alice resolvectl status "p2p-$NET" 2>&1 | tr '\n' ' ')" || return 1
    local out
    out="$(cexec alice resolvectl status "p2p-$NET" 2>&1)"
    grep -q "DNS Servers: ${VIP[alice]}" <<<"$out" || why "p2p-$NET's DNS server is not ${VIP[alice]}: $(tr '\n' ' ' <<<"$out")" || return 1
    grep -q -- "-DefaultRoute" <<<"$out" || why "p2p-$NET takes names outside ~$NET.p2p: $(tr '\n' ' ' <<<"$out")" || return 1
    # ahostsv4: bob also has an IPv6 overlay address, which `getent hosts` would list first.
    out="$(cexec alice getent ahostsv4 "bob.$NET.p2p" 2>&1)" || true
    [[ "$(awk 'NR == 1 {print $1}' <<<"$out")" == "${VIP[bob]}" ]] || why "getent ahostsv4 bob.$NET.p2p on alice: '$out'" || return 1
    out="$(CT=15 cexec alice ping -4 -n -c 1 -W 3 "bob.$NET.p2p" 2>&1)" || why "ping -4 bob.$NET.p2p on alice: $(tr '\n' ' ' <<<"$out")"
}
tcheck "split DNS: resolved sends ~$NET.p2p (only) to alice's responder; getent and ping bob.$NET.p2p work" c_dns

# ---------------------------------------------------------------- 4 stop
c_stop() {
    local c out res links
    for c in alice bob; do
        out="$(CT=60 cexec "$c" systemctl stop "p2pvpn@$NET.service" 2>&1)" || { why "$c: stop: $out"; return 1; }
        res="$(props "$c" "p2pvpn@$NET.service" ActiveState Result)"
        links="$(cexec "$c" ip -o link show | awk -F': ' '$2 ~ /^p2p-/ {print $2}')"
        [[ "$res" == "inactive|success" ]] || why "$c: after stop: $res" || return 1
        [[ -z "$links" ]] || why "$c: left behind: $links" || return 1
        out="$(cexec "$c" resolvectl status 2>&1)" || true
        ! grep -q "$NET\.p2p" <<<"$out" || why "$c: resolved still has $NET.p2p: $(tr '\n' ' ' <<<"$out")" || return 1
    done
}
tcheck "systemctl stop p2pvpn@$NET: inactive, result success, no p2p-* interface or DNS registration left" c_stop

# ---------------------------------------------------------------- 5 restart on kill -9
c_restart() {
    local c
    for c in alice bob; do node_started "$c" || return 1; done
    local unit="p2pvpn@$NET.service" n0 pid0 n pid state deadline
    n0="$(prop alice "$unit" NRestarts)"; pid0="$(prop alice "$unit" MainPID)"
    # From outside systemd (a crash, the OOM killer), not `systemctl kill`; the shell builtin,
    # as minbase has no kill(1).
    cexec alice sh -c "kill -KILL $pid0" || why "kill -9 $pid0 failed" || return 1
    # RestartSec=5s: a new process within 40 s.
    deadline=$((SECONDS + 40))
    while :; do
        n="$(prop alice "$unit" NRestarts)"; pid="$(prop alice "$unit" MainPID)"
        state="$(props alice "$unit" ActiveState SubState)"
        [[ "$n" -gt "$n0" && "$pid" != "$pid0" && "$pid" != 0 && "$state" == "active|running" ]] && break
        ((SECONDS < deadline)) || why "after 40 s: NRestarts $n0 -> $n, MainPID $pid0 -> $pid, $state" || return 1
        sleep 0.5
    done
    note "NRestarts $n0 -> $n, MainPID $pid0 -> $pid"
    reach alice "${VIP[bob]}" 30 && reach bob "${VIP[alice]}" 10
}
tcheck "kill -9 of alice's node: systemd restarts it (NRestarts grows), bob answers again" c_restart

# ---------------------------------------------------------------- 6 sandbox
# In the unit's own mount namespace (what the running node sees), as the container's root
# (so only mount flags, not permissions, can refuse a write).
c_sandbox() {
    local pid caps
    pid="$(prop alice "p2pvpn@$NET.service" MainPID)"
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] || why "no main process ($pid)" || return 1
    cexec alice sh -c 'touch /usr/p2pvpn-probe && rm /usr/p2pvpn-probe' ||
        why "control: /usr is not writable outside the unit either" || return 1
    ! cexec alice nsenter -t "$pid" -m -- touch /usr/p2pvpn-probe 2>/dev/null ||
        why "the node's mount namespace lets it write /usr (ProtectSystem=strict)" || return 1
    ! cexec alice nsenter -t "$pid" -m -- touch "/etc/p2pvpn/probe" 2>/dev/null ||
        why "the node can write /etc/p2pvpn (ReadOnlyPaths=)" || return 1
    cexec alice nsenter -t "$pid" -m -- sh -c "touch /var/lib/p2pvpn/$NET/probe && rm /var/lib/p2pvpn/$NET/probe" ||
        why "the node cannot write its state directory /var/lib/p2pvpn/$NET" || return 1
    # shellcheck disable=SC2016  # awk's $2
    caps="$(cexec alice awk '/^CapEff:/ {print $2}' "/proc/$pid/status")"
    # CAP_NET_ADMIN is bit 12, CAP_NET_BIND_SERVICE (the DNS responder on port 53) bit 10.
    [[ "$caps" == 0000000000001400 ]] || why "effective capabilities $caps, want only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (0000000000001400)"
}
tcheck "sandbox of the running node: / and /etc/p2pvpn read-only, state dir writable, only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE" c_sandbox

if ((FAILED)); then printf '# failed: %s\n' "${FAILED_NAMES[@]}"; fi
echo "check-systemd: $PASSED passed, $FAILED failed"
((FAILED == 0))
