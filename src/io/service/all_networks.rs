//! `p2pvpn up` with several joined networks (and the systemd unit `p2pvpn.service`, which runs
//! it): every network's node as a task of this one process and runtime, supervised like the
//! Windows service's (`supervise.rs`). What systemd is told: READY=1 once every network has
//! registered and has its interface (units ordered after `p2pvpn.service` can use all of them),
//! STATUS= with the networks still starting, STOPPING=1 on the way out.
//!
//! Failure policy: a network that fails (bad config, interface or port taken, TUN error) stops
//! the others and the process exits with that error, as the Windows service does. The exit
//! status is then the one signal that something is wrong, and `Restart=on-failure` brings the
//! whole set back; a process that stays "active" with one network silently dead would hide the
//! failure from `systemctl` and from monitoring. Who wants networks to fail independently runs
//! one template unit per network (`p2pvpn@NETWORK.service`). A network stopped on purpose with
//! `p2pvpn down NETWORK` stays down while the others run; the process ends when none is left.
//! There is no start timeout here: systemd's `TimeoutStartSec` is the limit under systemd, and
//! in the foreground a node waits for an unreachable server as `up NETWORK` does.

use super::supervise::{self, Limits, Reporter, ServiceBody};
use crate::io::signals;
use std::time::Duration;

const LIMITS: Limits = Limits {
    // Effectively none (see the header); ~30 years keeps `Instant` arithmetic far from overflow.
    start_timeout: Duration::from_secs(1 << 30),
    tick: Duration::from_secs(5),
    stop_timeout: Duration::from_secs(20),
    exit_when_all_stopped: true,
};

/// Tells systemd (when it started us) and the log how the set of networks is doing.
struct Notify {
    networks: Vec<String>,
}

impl Reporter for Notify {
    fn starting(&mut self, waiting_for: &[String]) {
        tracing::debug!("waiting for {} to come up", waiting_for.join(", "));
        send(&format!(
            "STATUS=starting; waiting for {}",
            waiting_for.join(", ")
        ));
    }

    fn running(&mut self) {
        let line = format!("p2pvpn: every network is up ({})", self.networks.join(", "));
        tracing::info!("{line}");
        send(&format!("READY=1\nSTATUS={line}"));
    }

    fn stopping(&mut self) {
        send("STOPPING=1\nSTATUS=p2pvpn: stopping every network");
    }
}

fn send(state: &str) {
    if let Err(e) = super::notify(state) {
        tracing::warn!(error = %format!("{e:#}"), "cannot notify the service manager");
    }
}

/// Runs every network of `body` until SIGTERM/SIGINT, until each was stopped with `down`, or
/// until one fails (then the others are stopped and that failure is returned).
pub async fn run(body: ServiceBody) -> anyhow::Result<()> {
    tracing::info!(
        "p2pvpn: bringing up {} networks in one process: {}",
        body.networks.len(),
        body.networks.join(", ")
    );
    let mut shutdown = signals::Shutdown::new()?;
    let mut reporter = Notify {
        networks: body.networks.clone(),
    };
    supervise::supervise(
        body.networks,
        body.up,
        async move {
            let why = shutdown.recv().await;
            tracing::info!("p2pvpn: {why}; stopping every network");
        },
        signals::request_stop,
        &mut reporter,
        LIMITS,
    )
    .await
}
