#!/usr/bin/env bash
# scripts/gen-assets.sh BIN DIR - the files the .deb ships that come from the binary itself:
# DIR/man/*.1.gz (p2pvpn(1) and one page per subcommand, gzipped as Debian policy wants) and
# DIR/completions/{p2pvpn.bash,_p2pvpn,p2pvpn.fish}. Run by scripts/package-deb.sh; paths match
# [package.metadata.deb] assets in Cargo.toml.
set -euo pipefail
bin="$1" dir="$2"
rm -rf "$dir/man" "$dir/completions"
mkdir -p "$dir/man" "$dir/completions"
"$bin" man --out-dir "$dir/man" >/dev/null
# -n: no name or time stamp inside, so the same binary gives the same package.
gzip -9nf "$dir"/man/*.1
"$bin" completions bash >"$dir/completions/p2pvpn.bash"
"$bin" completions zsh >"$dir/completions/_p2pvpn"
"$bin" completions fish >"$dir/completions/p2pvpn.fish"
echo "gen-assets: $(ls "$dir/man" | wc -l) man pages and 3 completion scripts in $dir"
