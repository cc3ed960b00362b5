//! `p2pvpn server`: open the state, load or create the identity key, and run the server loop.

use crate::{io, keyfile, store::Store};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;

pub async fn run(
    listen: Vec<SocketAddr>,
    alternate_port: Option<u16>,
    relay: crate::core::relay::server::RelayLimits,
    state_dir: &Path,
) -> Result<()> {
    keyfile::ensure_private_dir(state_dir)?;
    let (secret, created) = keyfile::load_or_create(&state_dir.join("server.key"))?;
    if created {
        tracing::info!(key = %secret.public_key(), "generated the server identity key");
    }
    let store = Store::open(state_dir)
        .with_context(|| format!("cannot open the server database in {}", state_dir.display()))?;
    let listen_text: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
    store.set_setting("listen", &listen_text.join(","))?;
    io::server::run(listen, alternate_port, relay, store, secret).await
}
