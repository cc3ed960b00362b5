//! A reader that goes away early (`p2pvpn ... | head -3`): the command ends quietly with the
//! status a shell gives a process SIGPIPE ended (141), not with a panic message on stderr.
#![cfg(unix)]

use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_p2pvpn");

/// A pipe whose reading end is already closed, as stdout: the first print fails with EPIPE,
/// whatever its size and however fast the process starts (no race with a reader).
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: fds[0] is ours and closed once here; fds[1] is owned by the Stdio from now on.
    unsafe {
        libc::close(fds[0]);
        Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_with_141() {
    let out = Command::new(BIN)
        .arg("version")
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("run p2pvpn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
}
