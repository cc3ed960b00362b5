//! `p2pvpn network ...`: manage networks, tokens and members in the server's store. These work
//! whether or not the server is running; a running server picks the changes up within a second.

use super::printable::printable;
use super::NetworkCommand;
use crate::config::validate_network_name;
use crate::core::rendezvous::token::{token_id, Credential, JoinToken};
use crate::io::server_state::KEY_FILE;
use crate::store::DB_FILE;
use crate::{keyfile, store::Store};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;

fn open(state_dir: &Path) -> Result<Store> {
    // A directory no server was ever started in: opening it would create a database that no
    // server reads, and `network list` would print an empty list as if all were well.
    if !state_dir.join(DB_FILE).exists() && !state_dir.join(KEY_FILE).exists() {
        bail!(
            "no server state in {dir} (no {DB_FILE}, no {KEY_FILE}): no server was set up \
             there. Start `p2pvpn server --listen ADDR:PORT --state-dir {dir}` once, or pass \
             --state-dir (P2PVPN_SERVER_STATE_DIR) with the server's state directory",
            dir = state_dir.display()
        );
    }
    keyfile::ensure_private_dir(state_dir)?;
    Store::open(state_dir)
        .with_context(|| format!("cannot open the server database in {}", state_dir.display()))
}

pub fn run(cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create {
            name,
            cidr,
            allow_public_range,
            dir,
        } => {
            validate_network_name(&name)?;
            super::create_check::range(cidr, allow_public_range)?;
            let store = open(&dir.state_dir)?;
            super::create_check::against_store(&store, &name, cidr)?;
            store.create_network(&name, cidr)?;
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
        // Names are printed through `printable`: an older server stored whatever a node sent.
        NetworkCommand::List { dir } => {
            let store = open(&dir.state_dir)?;
            println!("{:<20} {:<18} MEMBERS", "NETWORK", "CIDR");
            for (net, members) in store.networks()? {
                println!(
                    "{:<20} {:<18} {members}",
                    printable(&net.name),
                    net.cidr.to_string()
                );
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
                    printable(&m.name),
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
                        printable(&m.name),
                        m.virtual_ip
                    );
                    Ok(())
                }
                None => bail!(
                    "network {name} has no member named {peer:?} (see `p2pvpn network members \
                     {name}`)"
                ),
            }
        }
        NetworkCommand::Invites { name, dir } => invites(&open(&dir.state_dir)?, &name),
        NetworkCommand::Revoke {
            name,
            token_id,
            dir,
        } => {
            let token = open(&dir.state_dir)?.revoke_token(&name, &token_id)?;
            println!(
                "revoked token {} of {name} ({} of {} uses spent); joins with it are refused \
                 from now on",
                token.id, token.uses, token.max_uses
            );
            Ok(())
        }
        NetworkCommand::Delete { name, force, dir } => {
            let mut store = open(&dir.state_dir)?;
            let members = store.members_of(&name)?.len();
            if members > 0 && !force {
                bail!(
                    "network {name} has {members} member(s) (see `p2pvpn network members {name}`); \
                     deleting it cuts them off and they must join again. To go ahead, run \
                     `p2pvpn network delete {name} --force`"
                );
            }
            let deleted = store.delete_network(&name)?;
            println!(
                "deleted network {name} with {} member(s) and {} token(s); a running server cuts \
                 its members off within seconds",
                deleted.members, deleted.tokens
            );
            Ok(())
        }
    }
}

/// `network invites NAME`: every stored token with what is left of it.
fn invites(store: &Store, name: &str) -> Result<()> {
    let now = crate::io::unix_now();
    println!("{:<10} {:>9}  {:<22} STATE", "ID", "USES", "EXPIRES (UTC)");
    for t in store.tokens_of(name)? {
        let expired = t.expires_unix.is_some_and(|e| now >= e);
        let state = if expired {
            "expired"
        } else if t.uses >= t.max_uses {
            "used up"
        } else {
            "valid"
        };
        let expires = t
            .expires_unix
            .map(|e| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(e);
                humantime::format_rfc3339_seconds(at).to_string()
            })
            .unwrap_or_else(|| "never".into());
        println!(
            "{:<10} {:>9}  {:<22} {state}",
            t.id,
            format!("{}/{}", t.uses, t.max_uses),
            expires
        );
    }
    Ok(())
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
    // A token that is dead on arrival helps nobody: `--expires 0s` used to print one.
    if expires.as_secs() == 0 {
        bail!("--expires must be at least 1s (e.g. 30m, 24h, 7d)");
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
    if let Some(recorded) = store.identity()? {
        if recorded != secret.public_key() {
            bail!(
                "{} is not the identity the server's database was made with ({recorded}); a \
                 token with it would not work. Restore the original key (see `p2pvpn server`)",
                key_path.display()
            );
        }
    }
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
    let expires_unix = crate::io::unix_now().saturating_add(expires.as_secs());
    store.create_token(name, &credential.hash(), uses, Some(expires_unix))?;
    let id = token_id(&credential.hash());
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
        "token {id} for {name}: {uses} use(s), expires in {}; revoke it with `p2pvpn network \
         revoke {name} {id}`",
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
