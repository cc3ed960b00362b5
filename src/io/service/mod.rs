//! Readiness notification for service managers (the systemd `sd_notify` protocol): one datagram
//! of `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET`. Written here rather than
//! pulled in as a crate because the protocol is a single `sendto`. Without `NOTIFY_SOCKET` (run
//! by hand, in tests, under another supervisor) every call is a no-op.

use anyhow::Result;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix::notify_to;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::notify_to;

#[cfg(unix)]
pub mod all_networks;
pub mod supervise;
#[cfg(windows)]
mod windows_scm;
#[cfg(unix)]
pub use unix::run_service;
#[cfg(windows)]
pub use windows_scm::run_service;

/// The environment variable systemd sets for `Type=notify` services.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=VALUE` assignments such as `READY=1`) to the service
/// manager. Returns whether anything was sent: `false` when no manager is listening.
pub fn notify(state: &str) -> Result<bool> {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    if socket.is_empty() {
        return Ok(false);
    }
    notify_to(&socket, state)?;
    Ok(true)
}

/// Tells the manager the service is ready, with a human-readable status line
/// (`systemctl status` shows it).
pub fn ready(status: &str) {
    // Several networks in one process: the supervisor waits for this from every one of them and
    // tells the manager itself once all are up (one READY=1 for the process).
    if supervise::mark_ready() {
        return;
    }
    send_or_warn(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// Tells the manager the service is shutting down, so that `systemctl` reports "deactivating"
/// rather than a crash while the TUN device and routes are removed.
pub fn stopping(status: &str) {
    // One of several networks stopping (`down NETWORK`) is not the process stopping.
    if supervise::supervised() {
        return;
    }
    send_or_warn(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
}

/// A failed notification must not stop a working VPN: systemd's start timeout reports a missing
/// READY=1 on its own, so a warning in the log is enough here.
fn send_or_warn(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %format!("{e:#}"), "cannot notify the service manager");
    }
}

/// A newline would start a new assignment; status text must stay one line.
fn one_line(status: &str) -> String {
    status.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_stays_one_line() {
        assert_eq!(super::one_line("a\nb"), "a b");
    }
}
