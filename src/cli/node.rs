//! `p2pvpn join | up | status | down`: the node's commands (`ping` is in ping.rs).

use super::table;
use crate::config::{self, Dirs, NodeSettings};
use crate::core::node::NodeStatus;
use crate::core::rendezvous::client::ServerAddr;
use crate::core::rendezvous::token::JoinToken;
use crate::io::control_socket::{self, Request};
use crate::{io, keyfile};
use anyhow::{bail, Context, Result};

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// The config of an earlier join of the token's network with the same server, when its key is
/// still there: joining again is then the same membership (same key, name and address).
fn joined_before(dirs: &Dirs, token: &JoinToken) -> Option<NodeSettings> {
    let network = &token.network;
    if !dirs.config_file(network).exists() || !dirs.key_file(network).exists() {
        return None;
    }
    config::load(dirs, network)
        .ok()
        .filter(|s| s.server_key == token.server_key)
}

pub async fn join(token: &str, name: Option<String>, dirs: &Dirs) -> Result<()> {
    let token = JoinToken::decode(token)?;
    config::validate_network_name(&token.network)?;
    let before = joined_before(dirs, &token);
    let name = match (name, &before) {
        // The server gives a key that is already a member its old record back, name included:
        // say so instead of printing "joined as alice" after `--name bob`.
        (Some(new), Some(old)) if new != old.name => bail!(
            "this host already joined network {net} as {old_name} ({file}); the server keeps a \
             member's name when the same key joins again, so --name {new} would not rename it. \
             To join as {new}: on the server run `p2pvpn network remove-member {net} \
             {old_name}`, here delete {file} and {keys}, then join with a new token",
            net = token.network,
            old_name = old.name,
            file = dirs.config_file(&token.network).display(),
            keys = dirs.network_state(&token.network).display(),
        ),
        (Some(new), _) => new,
        (None, Some(old)) => old.name.clone(),
        (None, None) => host_name(),
    };
    config::validate_node_name(&name)?;
    if before.is_some() {
        eprintln!(
            "already joined network {} as {name}: joining again with the same key keeps the \
             name and address and rewrites {}",
            token.network,
            dirs.config_file(&token.network).display()
        );
    }
    keyfile::ensure_private_dir(&dirs.state)?;
    let key_path = dirs.key_file(&token.network);
    let (secret, created) = keyfile::load_or_create(&key_path)?;
    let via: Vec<String> = ServerAddr::list(&token.servers, &token.tls_servers)
        .iter()
        .map(|s| s.to_string())
        .collect();
    eprintln!("joining {} via {} ...", token.network, via.join(", "));
    let joined = match io::join::join(&token, &secret, &name).await {
        Ok(j) => j,
        Err(e) => {
            // A key the server never accepted is no membership: leave nothing behind, so that
            // the host does not look joined and a later join starts clean.
            if created {
                let _ = std::fs::remove_file(&key_path);
                let _ = std::fs::remove_dir(dirs.network_state(&token.network));
            }
            return Err(e);
        }
    };
    if created {
        eprintln!(
            "generated a key for network {} in {}",
            token.network,
            key_path.display()
        );
    }
    let interface = match &before {
        Some(old) => old.interface.clone(),
        None => {
            let taken: Vec<String> = config::other_networks(dirs, &joined.network)
                .into_iter()
                .map(|(_, s)| s.interface)
                .collect();
            config::unique_interface(&joined.network, &taken)
        }
    };
    let settings = NodeSettings {
        network: joined.network.clone(),
        name: joined.name.clone(),
        servers: token.servers.clone(),
        tls_servers: token.tls_servers.clone(),
        server_key: token.server_key,
        listen_port: before.as_ref().map_or(0, |b| b.listen_port),
        interface,
        mtu: before.as_ref().and_then(|b| b.mtu),
        path_mtu_discovery: before.as_ref().is_none_or(|b| b.path_mtu_discovery),
        portmap: before.as_ref().is_none_or(|b| b.portmap),
        punch: before.as_ref().map(|b| b.punch).unwrap_or_default(),
        cidr: Some(joined.cidr),
        allow_route_overlap: before.as_ref().is_some_and(|b| b.allow_route_overlap),
        dns_suffix: before.as_ref().map_or_else(
            || crate::core::dns::default_suffix(&joined.network),
            |b| b.dns_suffix.clone(),
        ),
        wireguard: before
            .as_ref()
            .map_or_else(crate::config::default_engine, |b| b.wireguard),
        workers: before.as_ref().map_or(1, |b| b.workers),
    };
    let file = config::save(dirs, &settings)?;
    let v6 = joined.ipv6.map(|n| format!(", {n}")).unwrap_or_default();
    println!(
        "joined network {} as {} ({}/{}{v6}) on interface {}; config in {}",
        joined.network,
        joined.name,
        joined.virtual_ip,
        joined.cidr.prefix_len(),
        settings.interface,
        file.display()
    );
    println!(
        "bring it up with: sudo p2pvpn up --network {}",
        joined.network
    );
    Ok(())
}

pub async fn up(
    network: &str,
    dirs: &Dirs,
    metrics: Option<std::net::SocketAddr>,
    allow_overlap: bool,
    mtu: Option<u16>,
    no_portmap: bool,
) -> Result<()> {
    config::validate_network_name(network)?;
    if let Some(addr) = metrics {
        io::metrics::check_loopback(addr, "--metrics")?;
    }
    let mut settings = config::load(dirs, network)?;
    settings.allow_route_overlap |= allow_overlap;
    settings.mtu = mtu.or(settings.mtu);
    settings.portmap &= !no_portmap;
    // Every local precondition before registering and the NAT check, which take seconds.
    super::preflight::check(&settings, dirs)?;
    crate::os::malloc::tune_for_node();
    io::node::run(settings, dirs.clone(), metrics).await
}

/// Networks with a control socket under the state directory ("run with sudo" when it is
/// root's).
pub(super) fn running_networks(dirs: &Dirs) -> Result<Vec<String>> {
    control_socket::running_networks(&dirs.state)
}

pub async fn status(network: Option<&str>, json: bool, dirs: &Dirs) -> Result<()> {
    let networks = match network {
        Some(n) => vec![n.to_string()],
        None => running_networks(dirs)?,
    };
    if networks.is_empty() {
        bail!(
            "no network is running (no control socket under {}); start one with `p2pvpn up \
             --network NAME`",
            dirs.state.display()
        );
    }
    let mut statuses = Vec::new();
    for net in &networks {
        let reply =
            control_socket::request(&dirs.control_socket(net), net, Request::Status).await?;
        let status: NodeStatus = serde_json::from_str(&reply)
            .with_context(|| format!("the node for {net} sent an unreadable status"))?;
        statuses.push(status);
    }
    if json {
        // One shape with or without --network: {"networks": [NodeStatus, ...]}.
        let text = serde_json::to_string_pretty(&serde_json::json!({ "networks": statuses }))?;
        println!("{text}");
    } else {
        for s in &statuses {
            print!("{}", table::render(s, io::unix_now()));
        }
    }
    Ok(())
}

pub async fn down(network: &str, dirs: &Dirs) -> Result<()> {
    let reply =
        control_socket::request(&dirs.control_socket(network), network, Request::Down).await?;
    // The node removes its socket as it exits; wait (bounded) so `down` returns when it is gone.
    for _ in 0..50 {
        if !dirs.control_socket(network).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("{network}: {}", reply.trim());
    Ok(())
}
