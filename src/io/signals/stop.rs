//! A process-wide request to stop, on every OS: one process may run several networks' nodes
//! (`p2pvpn up` with several joined, the Windows service), and when one of them fails or the
//! service manager asks, every node's loop must leave through the same path as on Ctrl-C, so
//! that each removes its interface. Each [`super::Shutdown`] also waits on this flag.

use std::sync::LazyLock;
use tokio::sync::watch;

/// Set once a stop is requested; never cleared (the process exits after a stop).
static STOP: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Asks every node of this process to stop (callable from any thread, e.g. the SCM's).
pub fn request_stop() {
    STOP.send_replace(true);
}

/// Resolves once [`request_stop`] was called (at once if it already was).
pub async fn stop_requested() {
    let mut rx = STOP.subscribe();
    // Err only if the sender were dropped, which a static never is.
    let _ = rx.wait_for(|stop| *stop).await;
}
