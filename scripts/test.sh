#!/usr/bin/env bash
# The test command: unit and property tests, the in-process simulator, the CLI bad-input tests,
# and (as root) the network-namespace lab tests with the real binary. Non-root runs print SKIP
# for the lab tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  # The lab tests create namespaces and TUN devices; one at a time keeps 2-core runs stable.
  exec cargo nextest run --all-targets --no-fail-fast --test-threads 2 \
    --success-output never --failure-output final "$@"
else
  exec cargo test --all-targets --no-fail-fast "$@"
fi
