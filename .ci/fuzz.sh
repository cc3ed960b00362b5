#!/usr/bin/env bash
# CI fuzz pass (issue 9): installs cargo-fuzz if missing (pinned, --locked), replays every
# committed corpus (fuzz/corpus/TARGET) once, then fuzzes each target for a short slice
# (FUZZ_SECONDS, default 10 s). A crash, a hang, an assertion of a target or a leak past the
# limits in scripts/fuzz.sh fails the run; the crashing input is left in fuzz/artifacts/.
# Cost on a fresh two-core machine: the cargo-fuzz install (about 1 CPU-minute) and the ASan
# build of the crate and its dependencies (about 12 CPU-minutes, most of this pass), a few seconds
# of replay, then 11 targets x FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "ci: cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
echo "ci: scripts/fuzz.sh --replay"
bash scripts/fuzz.sh --replay
echo "ci: scripts/fuzz.sh --seconds ${FUZZ_SECONDS:-10}"
bash scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-10}"
