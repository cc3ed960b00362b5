#!/usr/bin/env bash
# Runs the Windows test slice under wine: cross-compiles every test binary for
# x86_64-pc-windows-gnu (the target we ship, same recipe as scripts/build-windows.sh: Debian's
# rustc-web with -Zbuild-std and MinGW), then runs the unit, property and simulator tests and the
# loopback CLI/server tests under wine64 in a wine prefix of its own.
#
#   scripts/test-windows.sh [SUITE...]   SUITE: lib, bin, sim, cli, tls, ... (default: all built)
#   scripts/test-windows.sh --no-run     build only, print the test executables
#
# What cannot run under wine is excluded BY NAME in scripts/wine/skips.txt, each with its reason;
# a name there that no longer exists fails the run (the list cannot rot silently). Tests that
# are Unix-only are #[cfg(unix)] and not built for Windows; skips.txt lists them too, and the run
# fails if one of them shows up in a Windows binary. Prints passed / failed / skipped-by-name /
# not built and exits non-zero on any failure, crash or timeout.
#
# Wine 8 (Debian bookworm) has no bcryptprimitives.dll, which std on x86_64-pc-windows-gnu
# imports for ProcessPrng; scripts/wine/bcryptprimitives.c is a test-only shim put into the test
# prefix's system32 (never shipped, never beside the built exe).
#
# Environment: WIN_TARGET_DIR (cargo target dir, default target/windows), PROPTEST_CASES
# (passed through; CI lowers it for time), SUITE_TIMEOUT (seconds per test binary, default 900),
# TEST_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=x86_64-pc-windows-gnu
target_dir="${WIN_TARGET_DIR:-target/windows}"
suite_timeout="${SUITE_TIMEOUT:-900}"
threads="${TEST_THREADS:-2}"
skips_file=scripts/wine/skips.txt
no_run=0
suites=()
for a in "$@"; do
    case "$a" in
        --no-run) no_run=1 ;;
        -*) echo "test-windows: unknown option $a (only --no-run)" >&2; exit 2 ;;
        *) suites+=("$a") ;;
    esac
done

packages=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 jq)
((no_run)) || packages+=(wine64)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || { echo "test-windows: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2; exit 2; }
    echo "test-windows: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >&2
fi

# Build: Debian's toolchain explicitly (rustup's, first on the usual PATH, has no std source).
# Not the examples: loadgen is a Linux load generator (it reads /proc).
start=$(date +%s)
execs=$(
    export PATH=/usr/bin:/bin RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
    cargo test --no-run --lib --bins --tests --locked -Zbuild-std=std,panic_abort --target "$target" \
        --target-dir "$target_dir" --message-format=json-render-diagnostics |
        jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
               | "\(.target.kind[0])/\(.target.name) \(.executable)"'
)
echo "test-windows: built the test binaries for $target in $(($(date +%s) - start)) s"
if ((no_run)); then
    echo "$execs"
    exit 0
fi

# A wine prefix of our own (first use: about 15 s), with the test-only ProcessPrng shim.
wine=/usr/lib/wine/wine64
export WINEPREFIX="$root/$target_dir/wine-prefix"
[[ $target_dir == /* ]] && WINEPREFIX="$target_dir/wine-prefix"
export WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n;mscoree,mshtml="
stop_wine() { /usr/lib/wine/wineserver -k 2>/dev/null || true; }
trap stop_wine EXIT
if [[ ! -f $WINEPREFIX/system.reg ]]; then
    echo "test-windows: creating the wine prefix $WINEPREFIX" >&2
    "$wine" wineboot -i >/dev/null 2>&1
    /usr/lib/wine/wineserver -w
fi
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [[ ! -f $shim || scripts/wine/bcryptprimitives.c -nt $shim ]]; then
    x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" scripts/wine/bcryptprimitives.c \
        scripts/wine/bcryptprimitives.def -lbcrypt
fi

# skips.txt: "SUITE TEST_NAME REASON..." (skipped under wine), "unix SUITE TEST_NAME REASON..."
# (not built for Windows) or "unix SUITE * REASON..." (a whole file not built for Windows).
declare -A skip_args=() unix_only=() unix_files=()
while read -r first rest; do
    [[ -z $first || $first == \#* ]] && continue
    if [[ $first == unix ]]; then
        read -r s name _ <<<"$rest"
        if [[ $name == '*' ]]; then
            unix_files[$s]=1
        else
            unix_only[$s]+="$name "
        fi
    else
        read -r name _ <<<"$rest"
        skip_args[$first]+="$name "
    fi
done <"$skips_file"

passed=0 failed=0 skipped=0 not_built=0 ignored=0
bad=()
selected() {
    ((${#suites[@]} == 0)) && return 0
    local s
    for s in "${suites[@]}"; do [[ $s == "$1" || $s == "${1#*/}" ]] && return 0; done
    return 1
}
log_dir="$target_dir/wine-logs"
mkdir -p "$log_dir"
while read -r suite exe; do
    [[ -n $suite ]] || continue
    selected "$suite" || continue
    list=$("$wine" "$exe" --list --format terse 2>/dev/null | sed -n 's/: test$//p') || {
        echo "test-windows: $suite: cannot list its tests under wine" >&2
        bad+=("$suite (does not start)")
        continue
    }
    if [[ -n ${unix_files[$suite]:-} ]]; then
        [[ -z $list ]] || bad+=("$suite (listed as a Unix-only file but has Windows tests)")
        continue
    fi
    args=(--exact --test-threads "$threads")
    for name in ${skip_args[$suite]:-}; do
        if ! grep -qxF "$name" <<<"$list"; then
            echo "test-windows: $suite has no test $name any more: update $skips_file" >&2
            bad+=("$suite::$name (stale skip)")
            continue
        fi
        args+=(--skip "$name")
        skipped=$((skipped + 1))
    done
    for name in ${unix_only[$suite]:-}; do
        if grep -qxF "$name" <<<"$list"; then
            echo "test-windows: $suite::$name is listed as Unix-only but was built: update $skips_file" >&2
            bad+=("$suite::$name (listed as unix-only)")
        fi
        not_built=$((not_built + 1))
    done
    log="$log_dir/${suite//\//-}.log"
    t0=$(date +%s)
    set +e
    timeout -k 10 "$suite_timeout" "$wine" "$exe" "${args[@]}" >"$log" 2>&1
    rc=$?
    set -e
    result=$(grep -E '^test result: ' "$log" | tail -n 1)
    p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$result")
    f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$result")
    i=$(sed -nE 's/.* ([0-9]+) ignored.*/\1/p' <<<"$result")
    passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0})) ignored=$((ignored + ${i:-0}))
    echo "test-windows: $suite: ${p:-0} passed, ${f:-0} failed, ${i:-0} ignored, rc $rc, $(($(date +%s) - t0)) s (log: $log)"
    if ((rc != 0)) || [[ -z $result ]]; then
        grep -E '^test .* FAILED$|^---- |panicked at' "$log" | head -n 40 >&2 || true
        ((rc == 124)) && bad+=("$suite (timed out after $suite_timeout s)") || bad+=("$suite (rc $rc)")
    fi
done <<<"$execs"

# Whole files that are Unix-only build an empty Windows binary (no tests in its list).
files_not_built=0
for s in "${!unix_files[@]}"; do
    selected "$s" && files_not_built=$((files_not_built + 1))
done

echo "test-windows: $passed passed, $failed failed, $skipped skipped by name, $ignored ignored;" \
    "not built for Windows: $not_built Unix-only tests and $files_not_built Unix-only files" \
    "(all listed with reasons in $skips_file)"
if ((${#bad[@]})); then
    printf 'test-windows: FAILED: %s\n' "${bad[@]}" >&2
    exit 1
fi
