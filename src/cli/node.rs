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

pub async fn join(token: &str, name: Option<String>, dirs: &Dirs) -> Result<()> {
    let token = JoinToken::decode(token)?;
    config::validate_network_name(&token.network)?;
    let name = name.unwrap_or_else(host_name);
    config::validate_node_name(&name)?;
    keyfile::ensure_private_dir(&dirs.state)?;
    let key_path = dirs.key_file(&token.network);
    let (secret, created) = keyfile::load_or_create(&key_path)?;
    if created {
        eprintln!(
            "generated a key for network {} in {}",
            token.network,
            key_path.display()
        );
    }
    let via: Vec<String> = ServerAddr::list(&token.servers, &token.tls_servers)
        .iter()
        .map(|s| s.to_string())
        .collect();
    eprintln!("joining {} via {} ...", token.network, via.join(", "));
    let joined = io::join::join(&token, &secret, &name).await?;
    let settings = NodeSettings {
        network: joined.network.clone(),
        name: joined.name.clone(),
        servers: token.servers.clone(),
        tls_servers: token.tls_servers.clone(),
        server_key: token.server_key,
        listen_port: 0,
        interface: config::default_interface(&joined.network),
        mtu: config::DEFAULT_MTU,
        punch: Default::default(),
    };
    let file = config::save(dirs, &settings)?;
    println!(
        "joined network {} as {} ({}/{}); config in {}",
        joined.network,
        joined.name,
        joined.virtual_ip,
        joined.cidr.prefix_len(),
        file.display()
    );
    println!(
        "bring it up with: sudo p2pvpn up --network {}",
        joined.network
    );
    Ok(())
}

pub async fn up(network: &str, dirs: &Dirs, metrics: Option<std::net::SocketAddr>) -> Result<()> {
    config::validate_network_name(network)?;
    if let Some(addr) = metrics {
        io::metrics::check_loopback(addr, "--metrics")?;
    }
    let settings = config::load(dirs, network)?;
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
