//! `p2pvpn server`: lock the state directory, load or create the identity key (and, with `--tls-listen`,
//! the TLS certificate), record where the server listens for `network invite`, and run the
//! server loop.

use crate::io;
use anyhow::{bail, Result};
use std::net::SocketAddr;

/// Caps on control connections (TCP, plain and TLS together), so that connections that send
/// nothing cannot use up the server's file descriptors and lock nodes out.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Control connections open at once, in all. Lowered to fit the file descriptor limit. At the
    /// cap, a new connection replaces the oldest one that has not registered yet.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns: u32,
    /// Control connections open at once from one IPv4 address or IPv6 /64; raise it if more
    /// nodes than this share one public address.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns_per_ip: u32,
}

impl ConnArgs {
    pub fn limits(&self) -> io::server::ConnLimits {
        io::server::ConnLimits {
            total: self.max_conns as usize,
            per_source: self.max_conns_per_ip as usize,
        }
    }
}

pub async fn run(
    listen: Vec<SocketAddr>,
    tls_listen: Vec<SocketAddr>,
    alternate_port: Option<u16>,
    limits: io::server::Limits,
    dir: &super::ServerDir,
    metrics: Option<SocketAddr>,
) -> Result<()> {
    let state_dir = dir.state_dir.as_path();
    if let Some(addr) = metrics {
        io::metrics::check_loopback(addr, "--metrics")?;
    }
    if let Some(bad) = limits.advertise.iter().find(|a| a.ip().is_unspecified()) {
        bail!("--advertise {bad}: give the address nodes dial, not an unspecified one");
    }
    if let Some(both) = tls_listen.iter().find(|a| listen.contains(a)) {
        bail!(
            "{both} is given both as --listen and as --tls-listen; one TCP port carries either \
             plain or TLS connections, so pick another port for one of them"
        );
    }
    // Locked, and the key checked against the database, before anything in it is written.
    let state = io::server_state::open(state_dir, dir.store.as_deref())?;
    let tls = if tls_listen.is_empty() {
        None
    } else {
        Some(io::server::TlsListen {
            addrs: tls_listen.clone(),
            acceptor: io::tls::acceptor(state_dir)?,
        })
    };
    let store = state.store;
    // What `network invite` puts in tokens when not told: the advertised addresses if given.
    let named = if limits.advertise.is_empty() {
        &listen
    } else {
        &limits.advertise
    };
    store.set_setting("listen", &join(named))?;
    // Written even when empty, so tokens stop naming TLS addresses from an earlier run.
    store.set_setting("tls_listen", &join(&tls_listen))?;
    let _lock = state.lock;
    io::server::run(
        listen,
        tls,
        alternate_port,
        limits,
        store,
        state.secret,
        metrics,
    )
    .await
}

/// The comma-separated form `network invite` reads back.
fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
