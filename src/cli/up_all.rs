//! `p2pvpn up` with no network named and several joined: every joined network in this one
//! process (`io::service::all_networks`), each node the same code as `p2pvpn up NETWORK`, with
//! its own interface, UDP socket and control socket (`STATE/NETWORK/control.sock`), so that
//! `status`, `down NETWORK`, `ping --network` and `doctor --network` reach each one as before.

use super::node;
use crate::config::Dirs;
use crate::io::service::supervise::ServiceBody;
use anyhow::{bail, Result};

/// The body run by the service (Windows) or by `up` (here): `node::up` for each network.
pub fn body(
    networks: Vec<String>,
    dirs: &Dirs,
    allow_overlap: bool,
    mtu: Option<u16>,
) -> ServiceBody {
    let dirs = dirs.clone();
    ServiceBody {
        networks,
        up: Box::new(move |network| {
            let dirs = dirs.clone();
            Box::pin(async move { node::up(&network, &dirs, None, allow_overlap, mtu).await })
        }),
    }
}

/// Runs `networks` until SIGTERM/SIGINT, `down` of each, or the failure of one. The options
/// are `up`'s: `--allow-overlap` and `--mtu` apply to every network.
#[cfg(unix)]
pub async fn run(
    networks: Vec<String>,
    dirs: &Dirs,
    metrics: Option<std::net::SocketAddr>,
    allow_overlap: bool,
    mtu: Option<u16>,
) -> Result<()> {
    if metrics.is_some() {
        // One address cannot serve several networks' metrics (each node binds its own).
        bail!(
            "--metrics serves one network; with several joined ({}), name one: `p2pvpn up \
             NETWORK --metrics ADDR:PORT`",
            networks.join(", ")
        );
    }
    let body = body(networks, dirs, allow_overlap, mtu);
    crate::io::service::all_networks::run(body).await
}

/// The nodes' futures are large in a debug build and Windows' main thread has a 1 MiB stack;
/// the service runs them on a thread of its own (`windows_scm.rs`), so it is the way here.
#[cfg(windows)]
pub async fn run(
    networks: Vec<String>,
    _dirs: &Dirs,
    _metrics: Option<std::net::SocketAddr>,
    _allow_overlap: bool,
    _mtu: Option<u16>,
) -> Result<()> {
    bail!(
        "several networks are joined ({}); on Windows the service `p2pvpn` runs all of them \
         (`sc start p2pvpn`); in the foreground say which: `p2pvpn up NETWORK`",
        networks.join(", ")
    )
}
