#!/usr/bin/env bash
# Fuzzes every parser of network or user bytes, and the node/server state machines, with
# cargo-fuzz (libFuzzer + AddressSanitizer) on the stable toolchain (RUSTC_BOOTSTRAP=1 lets
# stable take cargo-fuzz's -Z flags; stable ships the ASan runtime).
#
#   scripts/fuzz.sh                      every target for 10 minutes each
#   scripts/fuzz.sh --seconds 60 stun    one target for 60 s
#   scripts/fuzz.sh --replay             only run the committed corpora once (what CI does first)
#
# The committed seeds (fuzz/corpus/TARGET) are read, never written: what the fuzzer finds goes to
# fuzz/target/corpus/TARGET, and a crashing input to fuzz/artifacts/TARGET/ (reproduce it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`). A table of
# executions and findings per target is printed at the end and kept in fuzz/target/summary.txt.
# Exit status: 0 when no target found anything, 1 otherwise, 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(datagram stun probe relay_udp relay_stream control noise_frames token config ipv4_icmp
  state_machine dns)
seconds=600
replay=0
picked=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      seconds="${2:-}"
      shift 2
      ;;
    --replay) replay=1; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) picked+=("$1"); shift ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "fuzz.sh: --seconds takes a whole number of seconds, at least 1" >&2
  exit 2
fi
if [ ${#picked[@]} -gt 0 ]; then
  for t in "${picked[@]}"; do
    if ! printf '%s\n' "${TARGETS[@]}" | grep -qx "$t"; then
      echo "fuzz.sh: no target $t; the targets are: ${TARGETS[*]}" >&2
      exit 2
    fi
  done
  TARGETS=("${picked[@]}")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

export RUSTC_BOOTSTRAP=1
# Release code with overflow checks and debug assertions on (-O -a): fast, and an overflow is a
# finding. Sixteen codegen units halve the build on two cores for a few percent of speed.
BUILD=(-O -a --codegen-units 16)
echo "fuzz.sh: building ${#TARGETS[@]} targets (ASan)"
if [ ${#picked[@]} -eq 0 ]; then
  cargo fuzz build "${BUILD[@]}"
else
  for t in "${TARGETS[@]}"; do
    cargo fuzz build "${BUILD[@]}" "$t"
  done
fi

# libFuzzer limits: a run over 10 s or 1 GiB of memory is a finding (a hang or a leak), and so
# is a single allocation over 256 MiB.
LIMITS=(-timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256)
summary=fuzz/target/summary.txt
mkdir -p fuzz/target
printf '%-14s %10s %10s %8s  %s\n' target executions exec/s corpus result >"$summary"
failed=()
for t in "${TARGETS[@]}"; do
  log="fuzz/target/$t.log"
  if [ "$replay" = 1 ]; then
    echo "fuzz.sh: $t: replaying fuzz/corpus/$t"
    args=("fuzz/corpus/$t" -- -runs=0 -print_final_stats=1 "${LIMITS[@]}")
  else
    echo "fuzz.sh: $t: fuzzing for $seconds s"
    mkdir -p "fuzz/target/corpus/$t"
    args=("fuzz/target/corpus/$t" "fuzz/corpus/$t" -- -max_total_time="$seconds"
      -print_final_stats=1 "${LIMITS[@]}")
  fi
  if cargo fuzz run "${BUILD[@]}" "$t" "${args[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="FOUND (see $log and fuzz/artifacts/$t/)"
    failed+=("$t")
    grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" | head -n 3 >&2 || true
  fi
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)"
  rate="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)"
  units="$(grep -oE 'corp: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)"
  printf '%-14s %10s %10s %8s  %s\n' "$t" "${execs:--}" "${rate:--}" "${units:--}" "$result" |
    tee -a "$summary"
done
echo
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in: ${failed[*]}" >&2
  exit 1
fi
