#!/usr/bin/env bash
# scripts/check-deb.sh - root check of the Debian package: builds it (or takes a path), checks
# its contents and metadata, installs it with dpkg INTO THIS MACHINE'S ROOT, verifies the
# installed units with systemd-analyze, runs the binary, then removes and purges it and checks
# that nothing of the package or of the data it is responsible for remains.
#
#   scripts/check-deb.sh [PATH.deb]     default: build with scripts/package-deb.sh (the
#                                       profile-guided build, about 8 minutes)
#   PROFILE=dev                         passed to package-deb.sh (CI packages the test build;
#                                       PROFILE=release a plain release build)
#
# Meant for throwaway machines (CI runs as root on one). It refuses to run where p2pvpn is
# installed or its directories exist, so it never purges someone's real keys. A debootstrap
# chroot would isolate it better but costs minutes of mirror downloads per run; `dpkg --root`
# runs the maintainer scripts outside the chroot and so would test the wrong thing.
#
# Prints `ok - NAME` / `not ok - NAME` and a summary; exits 1 if a check failed, 77 after
# `SKIP: reason` when it cannot run here, 2 on a setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/tap.sh
. "$ROOT/scripts/lib/tap.sh"

if [[ $EUID -ne 0 ]]; then echo "SKIP: not root"; exit 77; fi
for tool in dpkg dpkg-deb systemd-analyze runuser; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

# Everything the package or its programs may create; none may exist before we start.
DATA_PATHS=(/var/lib/p2pvpn-server /var/lib/p2pvpn /etc/p2pvpn /etc/default/p2pvpn-server
    /usr/bin/p2pvpn /lib/systemd/system/p2pvpn@.service /lib/systemd/system/p2pvpn.service
    /lib/systemd/system/p2pvpn-server.service)
if dpkg-query -W -f '${Status}' p2pvpn 2>/dev/null | grep -q 'installed\|config-files'; then
    echo "check-deb: p2pvpn is already installed here; refusing to purge it" >&2
    exit 2
fi
for p in "${DATA_PATHS[@]}"; do
    if [[ -e "$p" ]]; then
        echo "check-deb: $p exists; refusing to run (purge would delete it)" >&2
        exit 2
    fi
done

DEB="${1:-}"
if [[ -z "$DEB" ]]; then
    DEB="$(bash scripts/package-deb.sh | tail -n 1)"
fi
if [[ ! -f "$DEB" ]]; then echo "check-deb: no package at $DEB" >&2; exit 2; fi
note "package: $DEB"

TMP="$(mktemp -d /tmp/p2pvpn-check-deb.XXXXXX)"
INSTALLED=0
cleanup() {
    # Leave the machine as we found it even when a check failed half-way.
    if ((INSTALLED)); then dpkg --purge p2pvpn >/dev/null 2>&1 || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

dpkg-deb -c "$DEB" >"$TMP/contents"
dpkg-deb -I "$DEB" >"$TMP/info"

# `dpkg-deb -c` line: MODE OWNER SIZE DATE TIME ./PATH
has_entry() {
    local mode="$1" path="$2"
    awk -v m="$mode" -v p="./$path" '$1 == m && $2 == "0/0" && $6 == p { found = 1 } END { exit !found }' \
        "$TMP/contents" || why "no $path with mode $mode owned by root"
}
c_contents() {
    has_entry -rwxr-xr-x usr/bin/p2pvpn &&
        has_entry -rw-r--r-- lib/systemd/system/p2pvpn@.service &&
        has_entry -rw-r--r-- lib/systemd/system/p2pvpn.service &&
        has_entry -rw-r--r-- lib/systemd/system/p2pvpn-server.service &&
        has_entry -rw-r--r-- etc/default/p2pvpn-server &&
        has_entry -rw-r--r-- usr/share/doc/p2pvpn/examples/node.example.toml &&
        has_entry -rw-r--r-- usr/share/doc/p2pvpn/copyright
}
check "contents: binary 0755, units and defaults 0644, all root-owned" c_contents

c_docs() {
    has_entry -rw-r--r-- usr/share/man/man1/p2pvpn.1.gz &&
        has_entry -rw-r--r-- usr/share/man/man1/p2pvpn-up.1.gz &&
        has_entry -rw-r--r-- usr/share/man/man1/p2pvpn-network-invite.1.gz &&
        has_entry -rw-r--r-- usr/share/bash-completion/completions/p2pvpn &&
        has_entry -rw-r--r-- usr/share/zsh/vendor-completions/_p2pvpn &&
        has_entry -rw-r--r-- usr/share/fish/vendor_completions.d/p2pvpn.fish
}
check "contents: man pages and bash/zsh/fish completions" c_docs

c_no_state() {
    # State directories are systemd's (StateDirectory=); a shipped one would be package-owned
    # and its keys would sit beside files dpkg manages.
    ! grep -E ' \./var/|\./etc/p2pvpn/' "$TMP/contents" || why "the package ships state or config dirs"
}
check "contents: no /var or /etc/p2pvpn in the package" c_no_state

c_info() {
    grep -q '^ Package: p2pvpn$' "$TMP/info" || why "not named p2pvpn" || return 1
    grep -q '^ Depends:.*adduser' "$TMP/info" || why "no Depends on adduser" || return 1
    # the binary's DT_RELR relocations need glibc 2.36 (Cargo.toml, package.metadata.deb)
    grep -q '^ Depends:.*libc6 (>= 2.36)' "$TMP/info" || why "no Depends on libc6 (>= 2.36)" || return 1
    local script
    for script in postinst prerm postrm conffiles; do
        grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +(\* +)?$script( |$)" "$TMP/info" ||
            why "no $script" || return 1
    done
    dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/default/p2pvpn-server ||
        why "/etc/default/p2pvpn-server is not a conffile"
}
check "metadata: name, depends, maintainer scripts, conffile" c_info

c_install() {
    INSTALLED=1
    dpkg -i "$DEB" >"$TMP/install.log" 2>&1 || { sed 's/^/#   /' "$TMP/install.log"; return 1; }
    dpkg-query -W -f '${Status}' p2pvpn | grep -q 'install ok installed' || why "not installed"
}
check "dpkg -i installs it" c_install

c_user() { getent passwd p2pvpn >/dev/null || why "postinst made no p2pvpn user"; }
check "postinst creates the p2pvpn system user" c_user

c_version() {
    local v
    v="$(/usr/bin/p2pvpn --version)" || return 1
    note "$v"
    [[ "$v" == "p2pvpn "* ]] || why "unexpected: $v"
}
check "/usr/bin/p2pvpn --version runs" c_version

c_installed_docs() {
    zcat /usr/share/man/man1/p2pvpn.1.gz | grep -q '^\.SH "EXIT STATUS"' ||
        why "p2pvpn(1) has no EXIT STATUS section" || return 1
    local spec
    spec="$(bash --norc -c '. /usr/share/bash-completion/completions/p2pvpn && complete -p p2pvpn')" ||
        return 1
    [[ "$spec" == *_p2pvpn_with_networks* ]] || why "bash completion not registered: $spec"
}
check "installed man page has EXIT STATUS; bash completion registers" c_installed_docs

c_verify() {
    # verify loads unit files directly, so it works without systemd as PID 1; a template is
    # checked through an instance name. Any output (unknown directive, bad path) is a failure.
    local out
    out="$(cd /lib/systemd/system && systemd-analyze verify --man=no \
        p2pvpn@office.service p2pvpn.service p2pvpn-server.service 2>&1)" || { note "$out"; return 1; }
    [[ -z "$out" ]] || { printf '#   %s\n' "$out"; return 1; }
}
check "systemd-analyze verify: installed units are clean" c_verify

c_security() {
    # Offline scoring needs no running systemd (systemd >= 250). Above 3.0 ("OK" ends at 4.9)
    # means a hardening directive went missing.
    local unit score
    for unit in p2pvpn@office.service p2pvpn.service p2pvpn-server.service; do
        score="$(cd /lib/systemd/system && systemd-analyze security --offline=yes --no-pager \
            "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
        note "$unit exposure $score"
        [[ -n "$score" ]] && awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' ||
            why "$unit exposure ${score:-unknown} > 3.0" || return 1
    done
}
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    check "systemd-analyze security: exposure at most 3.0" c_security
else
    note "systemd-analyze security --offline not supported here; skipped"
fi

# What systemd and `p2pvpn join` would create, so that remove and purge have data to keep
# and to delete: the server's key and database written as its user, a node's state and config,
# an enablement symlink.
c_simulate_use() {
    install -d -o p2pvpn -g p2pvpn -m 0700 /var/lib/p2pvpn-server &&
        # `network create` refuses a directory no server was set up in: start it once.
        { runuser -u p2pvpn -- timeout 3 /usr/bin/p2pvpn server --listen 127.0.0.1:47399 \
            --state-dir /var/lib/p2pvpn-server >/dev/null 2>&1 || true; } &&
        runuser -u p2pvpn -- /usr/bin/p2pvpn network create office --cidr 10.99.0.0/24 \
            --state-dir /var/lib/p2pvpn-server >/dev/null &&
        install -d -m 0700 /var/lib/p2pvpn/office /etc/p2pvpn &&
        cp /usr/share/doc/p2pvpn/examples/node.example.toml /etc/p2pvpn/office.toml &&
        echo key >/var/lib/p2pvpn/office/private.key &&
        mkdir -p /etc/systemd/system/multi-user.target.wants &&
        ln -sf /lib/systemd/system/p2pvpn@.service \
            /etc/systemd/system/multi-user.target.wants/p2pvpn@office.service || return 1
    if [[ -z "$(ls -A /var/lib/p2pvpn-server)" ]]; then why "network create wrote nothing"; fi
}
check "the server's user can create a network in /var/lib/p2pvpn-server" c_simulate_use

dpkg -L p2pvpn >"$TMP/files"

c_remove_keeps_data() {
    dpkg -r p2pvpn >"$TMP/remove.log" 2>&1 || { sed 's/^/#   /' "$TMP/remove.log"; return 1; }
    [[ ! -e /usr/bin/p2pvpn ]] || why "binary still there after remove" || return 1
    local p
    for p in /etc/default/p2pvpn-server /var/lib/p2pvpn-server /var/lib/p2pvpn /etc/p2pvpn; do
        [[ -e "$p" ]] || why "remove (not purge) deleted $p" || return 1
    done
}
check "dpkg -r removes the binary, keeps conffile, keys and configs" c_remove_keeps_data

c_purge() {
    dpkg --purge p2pvpn >"$TMP/purge.log" 2>&1 || { sed 's/^/#   /' "$TMP/purge.log"; return 1; }
    INSTALLED=0
    ! dpkg-query -W -f '${Status}' p2pvpn 2>/dev/null | grep -q 'installed\|config-files' ||
        why "dpkg still knows p2pvpn" || return 1
    local f left=0
    while IFS= read -r f; do
        # Shared directories (/usr/bin, /etc/default, ...) stay; files and our own dirs may not.
        # (-d follows symlinks: on merged-/usr systems /lib is one.)
        if [[ -d "$f" ]]; then
            case "$f" in /usr/share/doc/p2pvpn*) ;; *) continue ;; esac
        fi
        if [[ -e "$f" || -L "$f" ]]; then why "left behind: $f"; left=1; fi
    done <"$TMP/files"
    for f in /var/lib/p2pvpn-server /var/lib/p2pvpn /etc/p2pvpn \
        /etc/systemd/system/multi-user.target.wants/p2pvpn@office.service; do
        if [[ -e "$f" || -L "$f" ]]; then why "purge left $f"; left=1; fi
    done
    ((left == 0))
}
check "dpkg --purge leaves no package file, state dir, config or unit symlink" c_purge

if ((FAILED)); then printf '# failed: %s\n' "${FAILED_NAMES[@]}"; fi
echo "check-deb: $PASSED passed, $FAILED failed"
((FAILED == 0))
