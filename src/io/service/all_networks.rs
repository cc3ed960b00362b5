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
//! A network that cannot reach its server is not a failure (`up NETWORK` keeps trying too):
//! after 90 s (under the unit's TimeoutStartSec=2min) READY=1 is sent for the networks that are
//! up, STATUS= names the ones still connecting, and those keep trying. Failing the unit instead
//! would have systemd restart it every few seconds, taking the healthy networks down each time.

use super::supervise::{self, Limits, Reporter, ServiceBody};
use crate::io::signals;
use std::time::Duration;

const LIMITS: Limits = Limits {
    // Under the unit's TimeoutStartSec=2min: READY=1 for the networks that are up before
    // systemd gives up on the start (see the header).
    start_timeout: Duration::from_secs(90),
    tick: Duration::from_secs(5),
    stop_timeout: Duration::from_secs(20),
    exit_when_all_stopped: true,
    slow_start_fails: false,
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

    fn running_without(&mut self, still_starting: &[String]) {
        let up: Vec<&str> = self
            .networks
            .iter()
            .filter(|n| !still_starting.contains(n))
            .map(String::as_str)
            .collect();
        let line = format!(
            "p2pvpn: up: {}; still connecting: {}",
            if up.is_empty() {
                "none".to_string()
            } else {
                up.join(", ")
            },
            still_starting.join(", ")
        );
        tracing::warn!("{line}");
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
