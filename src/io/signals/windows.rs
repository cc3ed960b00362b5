//! Console control events: Ctrl-C, Ctrl-Break and system shutdown (`CTRL_SHUTDOWN_EVENT`), and
//! the service control manager's Stop/Shutdown, which reach the process through the service's
//! control handler (`io::service::windows_scm`) calling [`request_stop`]: one service process
//! runs every network, and each node's loop waits on the same flag.

use anyhow::{Context, Result};
use std::sync::LazyLock;
use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_shutdown, CtrlBreak, CtrlC, CtrlShutdown};
use tokio::sync::watch;

pub struct Shutdown {
    c: CtrlC,
    brk: CtrlBreak,
    shutdown: CtrlShutdown,
}

impl Shutdown {
    /// Installs the handlers; from here on these events no longer end the process outright.
    pub fn new() -> Result<Shutdown> {
        Ok(Shutdown {
            c: ctrl_c().context("cannot handle Ctrl-C")?,
            brk: ctrl_break().context("cannot handle Ctrl-Break")?,
            shutdown: ctrl_shutdown().context("cannot handle system shutdown")?,
        })
    }

    /// Waits for the next request to stop and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.c.recv() => "Ctrl-C",
            _ = self.brk.recv() => "Ctrl-Break",
            _ = self.shutdown.recv() => "system shutdown",
            _ = stop_requested() => "service stop",
        }
    }
}

/// Set once the service is asked to stop; never cleared (the process exits after a stop).
static SERVICE_STOP: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Asks every node of this process to stop (callable from any thread, e.g. the SCM's).
pub fn request_stop() {
    SERVICE_STOP.send_replace(true);
}

/// Resolves once [`request_stop`] was called (at once if it already was).
pub async fn stop_requested() {
    let mut rx = SERVICE_STOP.subscribe();
    // Err only if the sender were dropped, which a static never is.
    let _ = rx.wait_for(|stop| *stop).await;
}
