//! SIGTERM (systemd's stop, `kill`) and SIGINT (Ctrl-C); and the process-wide stop request
//! (`stop.rs`) that ends every network's node when one of several in one process fails.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    /// Installs the handlers; from here on these signals no longer kill the process outright.
    pub fn new() -> Result<Shutdown> {
        Ok(Shutdown {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// Waits for the next request to stop and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = super::stop_requested() => "stop requested",
        }
    }
}
