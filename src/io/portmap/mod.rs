//! The port-mapping client: asks the default gateway (and nothing else) to forward a public UDP
//! port to the node's socket, keeps the mapping alive and deletes it on exit.
//!
//! Order: PCP, then NAT-PMP, then UPnP IGD, as Tailscale's portmapper prefers. PCP and NAT-PMP
//! are one small datagram each to the gateway and a refusal or a closed port (ICMP unreachable)
//! answers at once, so trying them first costs nothing on routers without them; PCP first
//! because it is NAT-PMP's standard successor (RFC 6887 Appendix A: servers answer NAT-PMP
//! clients too) with nonce-bound renewals and deletes. UPnP needs SSDP plus HTTP/SOAP round
//! trips and is the most often refused or misconfigured, so it comes last.
//!
//! The mapping is renewed at half its lifetime and at least every two minutes
//! (`core::portmap::renew_after`); a renewal is the same request, so a gateway that forgot the
//! mapping (reboot, flushed table) gets it back, and the driver asks for one at once when a
//! direct path stops answering (`PortMapper::remap`). Failures back off from 30 s to 10 min.

pub mod gateway;
mod pmp;
mod upnp;

use crate::core::portmap::{renew_after, MapProtocol, Mapping, Offered};
use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Deleting on exit waits at most this long.
const DELETE_WAIT: Duration = Duration::from_secs(3);

/// Asks the gateway toward `server` which protocols it speaks (no mapping is made).
pub async fn probe(server: IpAddr) -> Offered {
    let Some(gw) = gateway::find(server) else {
        return Offered::default();
    };
    let mut out = Offered {
        gateway: Some(gw),
        ..Offered::default()
    };
    let (pcp, natpmp, upnp) = tokio::join!(
        async {
            match pmp::Client::new(gw).await {
                Ok(c) => c.probe_pcp().await.is_ok(),
                Err(_) => false,
            }
        },
        async {
            match pmp::Client::new(gw).await {
                Ok(c) => c.probe_natpmp().await.is_ok(),
                Err(_) => false,
            }
        },
        upnp::search(gw),
    );
    out.pcp = pcp;
    out.nat_pmp = natpmp;
    out.upnp = upnp.is_ok();
    out
}

/// The running client.
pub struct PortMapper {
    stop: Option<oneshot::Sender<()>>,
    remap: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

impl PortMapper {
    /// Starts mapping UDP `port` on the gateway toward `server`; `None` when there is no such
    /// gateway (no default route, or the server is on loopback or a local network).
    pub fn spawn(
        server: IpAddr,
        port: u16,
        updates: mpsc::Sender<Option<Mapping>>,
    ) -> Option<PortMapper> {
        let gw = gateway::find(server)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (remap_tx, remap_rx) = mpsc::channel(1);
        let task = tokio::spawn(run(gw, port, updates, stop_rx, remap_rx));
        Some(PortMapper {
            stop: Some(stop_tx),
            remap: remap_tx,
            task,
        })
    }

    /// Asks the gateway again now (a path through the mapping stopped answering).
    pub fn remap(&self) {
        let _ = self.remap.try_send(());
    }

    /// Deletes the mapping (bounded) and ends the task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(DELETE_WAIT + Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// How the current mapping was made, to renew and delete it the same way.
enum Via {
    Pmp,
    Upnp(igd_next::Gateway),
}

struct Current {
    via: Via,
    mapping: Mapping,
}

async fn run(
    gw: Ipv4Addr,
    port: u16,
    updates: mpsc::Sender<Option<Mapping>>,
    mut stop: oneshot::Receiver<()>,
    mut remap: mpsc::Receiver<()>,
) {
    let client = match pmp::Client::new(gw).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(gateway = %gw, "port mapping off: {e:#}");
            return;
        }
    };
    let mut current: Option<Current> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let renewed = match current.take() {
            Some(c) => renew(&client, port, c).await,
            None => Err(anyhow::anyhow!("no mapping yet")),
        };
        let result = match renewed {
            Ok(c) => Ok(c),
            Err(_) => map_first(&client, gw, port).await,
        };
        let wait = match result {
            Ok(c) => {
                tracing::debug!(protocol = %c.mapping.protocol, external = %c.mapping.external,
                    lifetime = c.mapping.lifetime.as_secs(), "port mapping held");
                let _ = updates.send(Some(c.mapping)).await;
                backoff = FIRST_BACKOFF;
                let wait = renew_after(c.mapping.lifetime);
                current = Some(c);
                wait
            }
            Err(e) => {
                tracing::info!(gateway = %gw, "no port mapping: {e:#}; asking again in {}s",
                    backoff.as_secs());
                let _ = updates.send(None).await;
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some(()) = remap.recv() => {
                tracing::debug!("port mapping: asked to map again");
            }
            _ = &mut stop => break,
        }
    }
    if let Some(c) = current {
        match tokio::time::timeout(DELETE_WAIT, delete(&client, port, &c)).await {
            Ok(Ok(())) => tracing::info!(external = %c.mapping.external,
                "port mapping deleted ({})", c.mapping.protocol),
            Ok(Err(e)) => tracing::info!("could not delete the port mapping: {e:#}"),
            Err(_) => {
                tracing::info!("could not delete the port mapping: the gateway did not answer")
            }
        }
    }
}

/// PCP, then NAT-PMP, then UPnP; the errors of all three when none grants a mapping.
async fn map_first(client: &pmp::Client, gw: Ipv4Addr, port: u16) -> Result<Current> {
    let pcp = match client.map_pcp(port, port, pmp::LIFETIME).await {
        Ok(m) => {
            return Ok(Current {
                via: Via::Pmp,
                mapping: m,
            })
        }
        Err(e) => e,
    };
    let natpmp = match client.map_natpmp(port, port, pmp::LIFETIME).await {
        Ok(m) => {
            return Ok(Current {
                via: Via::Pmp,
                mapping: m,
            })
        }
        Err(e) => e,
    };
    let upnp = match upnp::search(gw).await {
        Ok(device) => {
            let local = SocketAddr::new(client.local_ip, port);
            match upnp::map(&device, local, 0).await {
                Ok(m) => {
                    return Ok(Current {
                        via: Via::Upnp(device),
                        mapping: m,
                    })
                }
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    Err(anyhow::anyhow!(
        "PCP: {pcp:#}; NAT-PMP: {natpmp:#}; UPnP: {upnp:#}"
    ))
}

/// The same request again, asking for the same external port.
async fn renew(client: &pmp::Client, port: u16, c: Current) -> Result<Current> {
    let ext = c.mapping.external.port();
    let mapping = match (&c.via, c.mapping.protocol) {
        (Via::Pmp, MapProtocol::Pcp) => client.map_pcp(port, ext, pmp::LIFETIME).await?,
        (Via::Pmp, _) => client.map_natpmp(port, ext, pmp::LIFETIME).await?,
        (Via::Upnp(device), _) => {
            let local = SocketAddr::new(client.local_ip, port);
            upnp::map(device, local, ext).await?
        }
    };
    Ok(Current {
        via: c.via,
        mapping,
    })
}

async fn delete(client: &pmp::Client, port: u16, c: &Current) -> Result<()> {
    match (&c.via, c.mapping.protocol) {
        (Via::Pmp, MapProtocol::Pcp) => client.map_pcp(port, 0, Duration::ZERO).await.map(drop),
        // RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete the mapping.
        (Via::Pmp, _) => client.map_natpmp(port, 0, Duration::ZERO).await.map(drop),
        (Via::Upnp(device), _) => upnp::unmap(device, c.mapping.external.port()).await,
    }
}

/// Prints the line `up` shows when the mapping appears, moves or goes.
pub fn announce(
    network: &str,
    before: Option<crate::core::punch::Candidate>,
    now: Option<Mapping>,
) {
    let line = match (before, now) {
        (None, Some(m)) => format!(
            "p2pvpn {network}: port mapping: {} on the gateway forwards {} to this node",
            m.protocol, m.external
        ),
        (Some(b), Some(m)) if b.addr != m.external => format!(
            "p2pvpn {network}: port mapping moved to {} ({})",
            m.external, m.protocol
        ),
        (Some(b), None) => format!("p2pvpn {network}: port mapping at {} lost", b.addr),
        _ => return,
    };
    super::progress::line(&line);
}
