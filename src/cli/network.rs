//! `p2pvpn network ...`: manage networks, tokens and members in the server's store. These work
//! whether or not the server is running; a running server picks the changes up within a second.

use super::NetworkCommand;
use crate::config::validate_network_name;
use crate::core::rendezvous::token::{Credential, JoinToken};
use crate::{keyfile, store::Store};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;

fn open(state_dir: &Path) -> Result<Store> {
    keyfile::ensure_private_dir(state_dir)?;
    Store::open(state_dir)
        .with_context(|| format!("cannot open the server database in {}", state_dir.display()))
}

pub fn run(cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create { name, cidr, dir } => {
            validate_network_name(&name)?;
            if cidr.prefix_len() > 30 {
                bail!("{cidr} is too small for a network: use a /30 or larger, e.g. /24");
            }
            if cidr.trunc() != cidr {
                bail!("{cidr} has host bits set; did you mean {}?", cidr.trunc());
            }
            open(&dir.state_dir)?.create_network(&name, cidr)?;
            println!("created network {name} ({cidr})");
            Ok(())
        }
        NetworkCommand::Invite {
            name,
            uses,
            expires,
            server,
            tls_server,
            dir,
        } => invite(
            &name,
            uses,
            expires.into(),
            server,
            tls_server,
            &dir.state_dir,
        ),
        NetworkCommand::List { dir } => {
            let store = open(&dir.state_dir)?;
            println!("{:<20} {:<18} MEMBERS", "NETWORK", "CIDR");
            for (net, members) in store.networks()? {
                println!("{:<20} {:<18} {members}", net.name, net.cidr.to_string());
            }
            Ok(())
        }
        NetworkCommand::Members { name, dir } => {
            let store = open(&dir.state_dir)?;
            let members = store.members_of(&name)?;
            println!("{:<20} {:<16} PUBLIC KEY", "NAME", "ADDRESS");
            for m in members {
                println!(
                    "{:<20} {:<16} {}",
                    m.name,
                    m.virtual_ip.to_string(),
                    m.public_key
                );
            }
            Ok(())
        }
        NetworkCommand::RemoveMember { name, peer, dir } => {
            match open(&dir.state_dir)?.remove_member(&name, &peer)? {
                Some(m) => {
                    println!(
                        "removed {} ({}) from {name}; a running server cuts it off within seconds",
                        m.name, m.virtual_ip
                    );
                    Ok(())
                }
                None => bail!(
                    "network {name} has no member named {peer:?} (see `p2pvpn network members \
                     {name}`)"
                ),
            }
        }
    }
}

fn invite(
    name: &str,
    uses: u32,
    expires: std::time::Duration,
    servers: Vec<SocketAddr>,
    tls_servers: Vec<SocketAddr>,
    state_dir: &Path,
) -> Result<()> {
    if uses == 0 {
        bail!("--uses must be at least 1");
    }
    let key_path = state_dir.join("server.key");
    if !key_path.exists() {
        bail!(
            "no server identity in {}: start `p2pvpn server --state-dir {}` once first",
            state_dir.display(),
            state_dir.display()
        );
    }
    let secret = keyfile::load(&key_path)?;
    let store = open(state_dir)?;
    let servers = if servers.is_empty() {
        let listen = store.setting("listen")?.unwrap_or_default();
        let addrs: Vec<SocketAddr> = listen.split(',').filter_map(|s| s.parse().ok()).collect();
        if addrs.is_empty() || addrs.iter().any(|a| a.ip().is_unspecified()) {
            bail!(
                "the server listens on {listen:?}, which nodes cannot dial; pass the address \
                 they should use with --server PUBLIC_IP:PORT"
            );
        }
        addrs
    } else {
        servers
    };
    let credential = Credential::generate(&mut rand::rngs::OsRng);
    let expires_unix = crate::io::unix_now() + expires.as_secs();
    store.create_token(name, &credential.hash(), uses, Some(expires_unix))?;
    let tls_servers = if tls_servers.is_empty() {
        recorded_tls_servers(&store)?
    } else {
        tls_servers
    };
    let token = JoinToken {
        network: name.to_string(),
        servers,
        tls_servers,
        server_key: secret.public_key(),
        credential,
    };
    eprintln!(
        "token for {name}: {uses} use(s), expires in {}",
        humantime::format_duration(expires)
    );
    println!("{}", token.encode());
    Ok(())
}

/// The TLS addresses the server recorded (`server --tls-listen`), if any. Unlike the plain ones
/// they are optional, so an address nodes cannot dial (0.0.0.0) is left out with a warning
/// instead of refusing the invite.
fn recorded_tls_servers(store: &Store) -> Result<Vec<SocketAddr>> {
    let recorded = store.setting("tls_listen")?.unwrap_or_default();
    let (dialable, unspecified): (Vec<SocketAddr>, Vec<SocketAddr>) = recorded
        .split(',')
        .filter_map(|s| s.parse().ok())
        .partition(|a: &SocketAddr| !a.ip().is_unspecified());
    for addr in unspecified {
        eprintln!(
            "note: the server's TLS address {addr} is not one nodes can dial, so the token has \
             no TLS fallback for it; pass --tls-server PUBLIC_IP:{} to include one",
            addr.port()
        );
    }
    Ok(dialable)
}
