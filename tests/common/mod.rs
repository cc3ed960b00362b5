//! What the loopback integration tests (`cli`, `stun`, `tls`) share: the binary under test, a
//! fresh temp directory per test, and running a command the way a user would.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_p2pvpn");

/// An empty directory for one test of one suite, unique per process.
pub fn temp_dir(suite: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pvpn-{suite}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args` and extra environment, without the caller's RUST_LOG.
pub fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A spawned server and its directory: killed and removed on drop, so a failed assertion
/// leaves nothing behind.
pub struct Spawned {
    pub child: std::process::Child,
    pub dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `p2pvpn join TOKEN --name NODE` with the node's config and state under `dir/NODE`.
pub fn join(dir: &Path, token: &str, node: &str) -> Output {
    let etc = dir.join(node).join("etc");
    let state = dir.join(node).join("state");
    run(
        &["join", token, "--name", node],
        &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", &state)],
    )
}
