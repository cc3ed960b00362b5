//! Build script: records the git commit the binary is built from, for `p2pvpn version` and
//! `--version`. Outside a git checkout (a source tarball) it says "unknown" rather than failing.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=P2PVPN_GIT_COMMIT={commit}");
    // Re-run when HEAD moves: a commit or checkout appends to logs/HEAD (the git dir of a
    // worktree is its own, under .git/worktrees/). Without git, only when this file changes.
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for file in ["HEAD", "logs/HEAD"] {
            println!("cargo:rerun-if-changed={dir}/{file}");
        }
    }
}
