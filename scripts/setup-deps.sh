#!/usr/bin/env bash
# scripts/setup-deps.sh - the Debian packages the demo, the test command and CI need, in one
# list, so that `sudo scripts/demo.sh`, `sudo scripts/test.sh` and .ci/run install the same
# things and a new user gets the run CI gets.
#
# Usage: scripts/setup-deps.sh [--check] [demo|test|ci]      (default: test)
#   demo   what scripts/demo.sh needs: ip, ping, python3, timeout
#   test   demo + what the network-namespace lab (tests/netns/*.sh) needs: tcpdump, nft,
#          conntrack, iperf3, xxd, setpriv, ss, the STUN client and coturn (tests/netns/stun.sh)
#          and PostgreSQL (initdb, pg_ctl: tests/pgstore.rs starts a throwaway cluster)
#   ci     test + what scripts/check-deb.sh needs: systemd (for systemd-analyze), adduser
#   --check  only list what is missing (exit 1 if anything is), install nothing
#
# As root on a machine with apt-get, it installs the missing packages (apt-get update first,
# only when something is missing) and exits 0, or 1 if apt-get failed. Without root or
# apt-get it prints the command to run and exits 1 if something is missing.
# Rust (cargo) is not installed here: see README.md.
set -euo pipefail

check_only=0
set_name=test
for a in "$@"; do
    case "$a" in
        --check) check_only=1 ;;
        demo | test | ci) set_name="$a" ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-deps: unknown argument '$a' (try --help)" >&2; exit 2 ;;
    esac
done

# package list (one place); systemd only for systemd-analyze, it does not become init
demo_pkgs=(iproute2 iputils-ping python3 coreutils)
test_pkgs=("${demo_pkgs[@]}" tcpdump nftables conntrack iperf3 xxd util-linux procps stun-client coturn miniupnpd-nftables postgresql)
ci_pkgs=("${test_pkgs[@]}" systemd adduser)
case "$set_name" in
    demo) pkgs=("${demo_pkgs[@]}") ;;
    test) pkgs=("${test_pkgs[@]}") ;;
    ci) pkgs=("${ci_pkgs[@]}") ;;
esac

if ! command -v dpkg >/dev/null 2>&1; then
    echo "setup-deps: no dpkg here (not Debian?): install the equivalents of ${pkgs[*]} yourself" >&2
    exit 1
fi
missing=()
for p in "${pkgs[@]}"; do
    # `dpkg -s` also succeeds for a removed package whose config files remain: ask for the status
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0

if ((check_only)); then
    echo "setup-deps: missing: ${missing[*]}"
    exit 1
fi
if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-deps: missing ${missing[*]}; install them as root with:" >&2
    echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "setup-deps: apt-get could not install ${missing[*]} (offline? see the messages above)" >&2
    exit 1
fi
