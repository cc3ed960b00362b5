#!/usr/bin/env bash
# The test command: unit and property tests, the in-process simulator, the CLI bad-input tests,
# and the network-namespace lab tests with the real binary (tests/netns.rs), which need root.
#
# As root on Debian it first installs what the lab needs (scripts/setup-deps.sh, the list CI
# uses). A lab test that cannot run here (not root, a tool missing) FAILS, unless
# P2PVPN_ALLOW_SKIP=1: then it counts as skipped, and since nextest counts such a test as
# passed, the last line gives the lab's own tally, naming every skipped test and why:
#   lab: 6 passed, 0 failed, 1 skipped: netns_nat_traversal_matrix (conntrack not installed)
# When something failed, a digest of why follows that line: each failed lab test's failed checks
# and the ends of its output, then each other failed test's panic (from nextest's JUnit report).
# Extra arguments go to `cargo nextest run` (or `cargo test` without nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -eq 0 ]]; then
    if command -v apt-get >/dev/null 2>&1; then
        bash scripts/setup-deps.sh test ||
            echo "test: some lab tools are missing (see above); the lab tests that need them will fail" >&2
    fi
else
    echo "test: not root: the network-namespace lab tests (tests/netns.rs) need root for namespaces" >&2
    echo "test: and TUN devices and will FAIL. Run 'sudo scripts/test.sh' for the whole run, or" >&2
    echo "test: 'P2PVPN_ALLOW_SKIP=1 scripts/test.sh' to count them as skipped." >&2
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "test: cargo not found. Install Rust (https://rustup.rs); under sudo, PATH may not reach" >&2
    echo "test: ~/.cargo/bin: try 'sudo -E env \"PATH=\$PATH\" scripts/test.sh'." >&2
    exit 1
fi

# Each lab test leaves one marker here: NAME.pass, NAME.fail, or NAME.skip holding the reason.
P2PVPN_LAB_REPORT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/p2pvpn-lab-report.XXXXXX")"
export P2PVPN_LAB_REPORT_DIR
trap 'rm -rf -- "$P2PVPN_LAB_REPORT_DIR"' EXIT
# the test processes may run as another user than the one who made the dir (sudo -u ...)
chmod 0777 "$P2PVPN_LAB_REPORT_DIR"

rc=0
junit="${CARGO_TARGET_DIR:-target}/nextest/default/junit.xml"
rm -f -- "$junit" # a report from an earlier run must not be digested as this one's
if cargo nextest --version >/dev/null 2>&1; then
    # The lab tests create namespaces and TUN devices; two at a time keeps 2-core runs stable.
    cargo nextest run --all-targets --no-fail-fast --test-threads 2 \
        --success-output never --failure-output final "$@" || rc=$?
else
    cargo test --all-targets --no-fail-fast "$@" || rc=$?
fi
# The simulator once more with every node on our WireGuard engine ([dataplane] wireguard =
# "own", core::wg::session), so it cannot rot while boringtun is the default (about 40 s).
SIM_WIREGUARD=own cargo test --test sim --no-fail-fast || rc=$?

# lab tally
shopt -s nullglob
pass=("$P2PVPN_LAB_REPORT_DIR"/*.pass)
fail=("$P2PVPN_LAB_REPORT_DIR"/*.fail)
skip=("$P2PVPN_LAB_REPORT_DIR"/*.skip)
if ((${#pass[@]} + ${#fail[@]} + ${#skip[@]} == 0)); then
    echo "lab: no lab test ran"
else
    line="lab: ${#pass[@]} passed, ${#fail[@]} failed, ${#skip[@]} skipped"
    names=()
    for f in "${skip[@]}"; do names+=("$(basename "$f" .skip) ($(head -c 200 "$f" | tr '\n' ' ' | sed 's/ *$//'))"); done
    ((${#names[@]} == 0)) || line+=": $(printf '%s, ' "${names[@]}" | sed 's/, $//')"
    names=()
    for f in "${fail[@]}"; do names+=("$(basename "$f" .fail)"); done
    ((${#names[@]} == 0)) || line+="; failed: ${names[*]}"
    echo "$line"
    # why each failed, last, where a truncated CI log still shows it
    for f in "${fail[@]}"; do
        echo "lab failure $(basename "$f" .fail):"
        head -n 30 "$f" | sed 's/^/    /'
    done
fi
if ((rc != 0)) && [[ -f "$junit" ]] && command -v python3 >/dev/null; then
    python3 scripts/lib/failure_digest.py "$junit"
fi
exit "$rc"
