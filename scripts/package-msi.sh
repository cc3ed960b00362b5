#!/usr/bin/env bash
# scripts/package-msi.sh [EXE] - builds the Windows installer target/msi/p2pvpn-VERSION-x86_64.msi
# from packaging/msi/p2pvpn.wxs with wixl (msitools). Prints the .msi's path as the last line.
#
#   EXE     p2pvpn.exe to package (default: built now with scripts/build-windows.sh, release,
#           x86_64-pc-windows-gnu)
#   WXS=... another .wxs (scripts/check-msi.sh's self-test builds broken variants this way)
#   OUT=... the .msi's path
#
# Staging folder target/msi/stage: p2pvpn.exe, wintun.dll + wintun-LICENSE.txt
# (scripts/wintun-dll.sh: WireGuard LLC's signed DLL, unmodified, SHA-256 pinned), README.md.
# wixl writes no Environment table, so the system PATH entry is added to the built database
# with msibuild: packaging/msi/Environment.idt, plus the two standard actions that apply it.
# Installs wixl and msitools with apt-get when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

missing=()
for p in wixl msitools; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "package-msi: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >&2
fi

exe="${1:-}"
if [[ -z "$exe" ]]; then
    # build-windows.sh prints the path, then `file`'s line.
    exe="$(scripts/build-windows.sh | tail -n 2 | head -n 1)"
fi
[[ -f "$exe" ]] || { echo "package-msi: no executable at $exe" >&2; exit 2; }
if ! file -b "$exe" | grep -q '^PE32+ executable.*x86-64'; then
    echo "package-msi: $exe is not a 64-bit Windows executable: $(file -b "$exe")" >&2
    exit 2
fi

# The [package] version (the first `version =` line of Cargo.toml is the package's).
version="$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "package-msi: cannot read a x.y.z version from Cargo.toml (got '$version'); MSI versions are numeric" >&2; exit 2; }

wxs="${WXS:-packaging/msi/p2pvpn.wxs}"
stage=target/msi/stage
out="${OUT:-target/msi/p2pvpn-$version-x86_64.msi}"
rm -rf "$stage"
mkdir -p "$stage" "$(dirname "$out")"
install -m 0755 "$exe" "$stage/p2pvpn.exe"
install -m 0644 README.md "$stage/README.md"
scripts/wintun-dll.sh "$stage"
# wixl takes the files' Source paths relative to the .wxs's folder.
cp "$wxs" "$stage/p2pvpn.wxs"
case "$out" in /*) abs_out="$out" ;; *) abs_out="$root/$out" ;; esac
rm -f "$abs_out"
(cd "$stage" && wixl --arch x64 -D Version="$version" -o "$abs_out" p2pvpn.wxs)

# The system PATH: Environment table ("=-*PATH" = set on install, remove on uninstall, system
# variable; "[~];" = append to the existing value) and the standard actions at their usual
# sequence numbers, which wixl leaves out when it writes no Environment table itself.
msibuild "$abs_out" -i packaging/msi/Environment.idt
msibuild "$abs_out" \
    -q "INSERT INTO InstallExecuteSequence (Action, Sequence) VALUES ('RemoveEnvironmentStrings', 3300)" \
    -q "INSERT INTO InstallExecuteSequence (Action, Sequence) VALUES ('WriteEnvironmentStrings', 5200)"

echo "package-msi: built p2pvpn $version" >&2
echo "$out"
