//! Console control events: Ctrl-C, Ctrl-Break and system shutdown (`CTRL_SHUTDOWN_EVENT`), and
//! the service control manager's Stop/Shutdown, which reach the process through the service's
//! control handler (`io::service::windows_scm`) calling `signals::request_stop` (`stop.rs`):
//! one service process runs every network, and each node's loop waits on the same flag.

use super::stop_requested;
use anyhow::{Context, Result};
use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_shutdown, CtrlBreak, CtrlC, CtrlShutdown};

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
