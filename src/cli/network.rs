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

/// `name` if the store has that network, else "no network named 'offcie'; networks on this
/// server: office; did you mean 'office'?" (a typo used to print an empty table and exit 0).
fn existing(store: &Store, name: &str) -> Result<()> {
    let names: Vec<String> = store.networks()?.into_iter().map(|(n, _)| n.name).collect();
    if names.iter().any(|n| n == name) {
        return Ok(());
    }
    if names.is_empty() {
        bail!(
            "no network named '{}'; this server has no networks yet: create one with \
             `p2pvpn network create NAME --cidr 10.77.0.0/24`",
            super::printable::printable(name)
        );
    }
    bail!(
        "{}",
        super::resolve::unknown_network(name, &names, "networks on this server")
    )
}

/// Opens the store and checks that `name` is one of its networks.
pub(super) fn open_network(state_dir: &Path, name: &str) -> Result<Store> {
    let store = open(state_dir)?;
    existing(&store, name)?;
    Ok(store)
}

/// "1 day", "7 days", "1 hour 30 minutes": how long a token lasts, as people say it.
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "day"),
        (secs % 86_400 / 3600, "hour"),
        (secs % 3600 / 60, "minute"),
        (secs % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        "0 seconds".into()
    } else {
        words.join(" ")
    }
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
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
            let v6 = store
                .network_info(&name)?
                .and_then(|n| n.ipv6)
                .map(|p| format!(", IPv6 {p}"))
                .unwrap_or_default();
            println!("created network {name} ({cidr}{v6})");
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
        NetworkCommand::List { json, dir } => {
            let store = open(&dir.state_dir)?;
            if json {
                let networks: Vec<serde_json::Value> = store
                    .networks()?
                    .into_iter()
                    .map(|(net, members)| {
                        serde_json::json!({
                            "name": net.name,
                            "cidr": net.cidr,
                            "ipv6": net.ipv6,
                            "members": members,
                        })
                    })
                    .collect();
                return print_json(&serde_json::json!({ "networks": networks }));
            }
            println!("{:<20} {:<18} {:<24} MEMBERS", "NETWORK", "CIDR", "IPV6");
            for (net, members) in store.networks()? {
                println!(
                    "{:<20} {:<18} {:<24} {members}",
                    printable(&net.name),
                    net.cidr.to_string(),
                    net.ipv6.map_or("-".to_string(), |p| p.to_string()),
                );
            }
            Ok(())
        }
        NetworkCommand::Members { name, json, dir } => {
            let store = open_network(&dir.state_dir, &name)?;
            let members = store.members_of(&name)?;
            if json {
                let members: Vec<serde_json::Value> = members
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "name": m.name,
                            "virtual_ip": m.virtual_ip,
                            "ipv6": m.ipv6,
                            "public_key": m.public_key.to_base64(),
                        })
                    })
                    .collect();
                return print_json(&serde_json::json!({ "network": name, "members": members }));
            }
            println!("{:<20} {:<16} {:<24} PUBLIC KEY", "NAME", "ADDRESS", "IPV6");
            for m in members {
                println!(
                    "{:<20} {:<16} {:<24} {}",
                    printable(&m.name),
                    m.virtual_ip.to_string(),
                    m.ipv6.map_or("-".to_string(), |a| a.to_string()),
                    m.public_key
                );
            }
            Ok(())
        }
        NetworkCommand::Tag {
            name,
            member,
            tags,
            dir,
        } => super::network_acl::tag(&name, &member, &tags, &dir),
        NetworkCommand::Acl { name, action } => super::network_acl::acl(&name, action),
        NetworkCommand::RenameMember {
            name,
            old,
            new,
            dir,
        } => rename_member(&open_network(&dir.state_dir, &name)?, &name, &old, &new),
        NetworkCommand::RemoveMember { name, peer, dir } => {
            match open_network(&dir.state_dir, &name)?.remove_member(&name, &peer)? {
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
        NetworkCommand::Invites { name, json, dir } => {
            invites(&open_network(&dir.state_dir, &name)?, &name, json)
        }
        NetworkCommand::Revoke {
            name,
            token_id,
            dir,
        } => {
            let token = open_network(&dir.state_dir, &name)?.revoke_token(&name, &token_id)?;
            println!(
                "revoked token {} of {name} ({} of {} uses spent); joins with it are refused \
                 from now on",
                token.id, token.uses, token.max_uses
            );
            Ok(())
        }
        NetworkCommand::Delete { name, force, dir } => {
            let mut store = open_network(&dir.state_dir, &name)?;
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

/// `network rename-member NAME OLD NEW`, with the name rule the server applies at join.
fn rename_member(store: &Store, network: &str, old: &str, new: &str) -> Result<()> {
    crate::config::validate_node_name(new)?;
    match store.rename_member(network, old, new)? {
        Some(m) => {
            println!(
                "renamed {} ({}) in {network} to {new}; peers see the new name when they next \
                 reconnect",
                printable(&m.name),
                m.virtual_ip
            );
            Ok(())
        }
        None => {
            let names: Vec<String> = store
                .members_of(network)?
                .into_iter()
                .map(|m| m.name)
                .collect();
            let mut msg = format!("network {network} has no member named {old:?}");
            if let Some(near) = super::resolve::did_you_mean(old, &names) {
                msg += &format!("; did you mean '{}'?", printable(near));
            }
            bail!("{msg} (see `p2pvpn network members {network}`)")
        }
    }
}

/// `network invites NAME`: every stored token with what is left of it.
fn invites(store: &Store, name: &str, json: bool) -> Result<()> {
    let now = crate::io::unix_now();
    let tokens = store.tokens_of(name)?;
    if json {
        let tokens: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "uses": t.uses,
                    "max_uses": t.max_uses,
                    "created_unix": t.created_unix,
                    "expires_unix": t.expires_unix,
                    "state": token_state(t, now),
                })
            })
            .collect();
        return print_json(&serde_json::json!({ "network": name, "tokens": tokens }));
    }
    println!("{:<10} {:>9}  {:<22} STATE", "ID", "USES", "EXPIRES (UTC)");
    for t in tokens {
        let state = token_state(&t, now);
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

/// "valid", "expired" or "used up".
fn token_state(t: &crate::store::TokenInfo, now: u64) -> &'static str {
    if t.expires_unix.is_some_and(|e| now >= e) {
        "expired"
    } else if t.uses >= t.max_uses {
        "used up"
    } else {
        "valid"
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
    let store = open_network(state_dir, name)?;
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
        human_duration(expires)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(
            human_duration(Duration::from_secs(90 * 60)),
            "1 hour 30 minutes"
        );
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
    }
}
