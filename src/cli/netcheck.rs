//! `p2pvpn netcheck`: measure this host's NAT behaviour against a STUN server (ours or any RFC
//! 5389 one; RFC 5780 tests need a server with two IPs). Progress on stderr, the report on
//! stdout. No STUN answer at all exits 4 (`exit_code::NO_ANSWER`) after the report, which tells
//! "UDP blocked" (the server answers over TCP) from "server unreachable" (TCP fails too); bad
//! arguments exit 1 with the fix.

use super::exit_code::{self, Exit};
use crate::config::{self, Dirs};
use crate::core::nat::NatProfile;
use crate::io::netcheck::{self, NetcheckOptions};
use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;

/// The server: `--server`, else the first server of the network's config.
async fn pick_server(
    server: Option<&str>,
    network: Option<&str>,
    dirs: &Dirs,
) -> Result<SocketAddr> {
    if let Some(text) = server {
        return resolve(text).await;
    }
    let network = match network {
        Some(n) => n.to_string(),
        None => only_joined_network(dirs)?,
    };
    config::validate_network_name(&network)?;
    let settings = config::load(dirs, &network)?;
    settings.servers.first().copied().ok_or_else(|| {
        anyhow!("network {network} lists no server; give one with --server ADDR:PORT")
    })
}

/// Host names are allowed; IPv4 answers are preferred (most STUN deployments are IPv4).
async fn resolve(text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        bail!("--server {text:?} has no port; write it as ADDRESS:PORT, e.g. 198.51.100.1:7400");
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(text)
        .await
        .with_context(|| {
            format!("--server {text:?} does not resolve; give an IP address and port, or a host name DNS knows")
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("--server {text:?} resolves to no address"))
}

/// The one network with a config file, when --network is not given.
fn only_joined_network(dirs: &Dirs) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dirs.config)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    names.sort();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no STUN server to ask: give --server ADDR:PORT, or join a network first (no config \
             under {})",
            dirs.config.display()
        ),
        many => bail!(
            "several networks are joined ({}); choose one with --network NAME or give --server \
             ADDR:PORT",
            many.join(", ")
        ),
    }
}

pub async fn run(
    server: Option<&str>,
    network: Option<&str>,
    json: bool,
    lifetime: bool,
    samples: usize,
    dirs: &Dirs,
) -> Result<()> {
    if !(3..=64).contains(&samples) {
        bail!("--samples {samples}: use 3 to 64 (it takes three mappings to see a step)");
    }
    let server = pick_server(server, network, dirs).await?;
    let opts = NetcheckOptions {
        server,
        samples,
        lifetime,
    };
    // The gateway is asked in parallel: its answers take at most a few seconds.
    let (report, mapping) = tokio::join!(
        netcheck::run(opts, |line| eprintln!("netcheck: {line}")),
        crate::io::portmap::probe(server.ip())
    );
    let mut report = report?;
    let no_answer = report.profile.udp_blocked;
    if no_answer {
        // Silence over UDP only means UDP is blocked if the server is there at all.
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::TcpStream::connect(server),
        )
        .await;
        let answers_tcp = matches!(tcp, Ok(Ok(_)));
        report.profile = NatProfile::no_answer(answers_tcp);
        report.legacy_name = report.profile.legacy_name().to_string();
        // netcheck's own note cannot tell the two apart; the verdict below replaces it.
        report
            .notes
            .retain(|n| !n.starts_with("no STUN answer from"));
        report.notes.push(if answers_tcp {
            format!("no STUN answer from {server}, which accepts TCP: UDP is blocked on the way")
        } else {
            format!(
                "no STUN answer from {server}, which refuses or drops TCP as well: the server \
                 is down or the address is wrong, so nothing is known about UDP yet"
            )
        });
    }
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("port_mapping".into(), serde_json::to_value(mapping)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}{}", report.render(), mapping.render());
    }
    if no_answer {
        return Err(Exit {
            code: exit_code::NO_ANSWER,
            message: format!("no STUN answer from {server}: {}", report.profile.short()),
        }
        .into());
    }
    Ok(())
}
