//! UPnP IGD through the `igd-next` crate (its blocking client, run on tokio's blocking pool under
//! a deadline). Discovery sends the SSDP M-SEARCH to the default gateway's port 1900 only, not
//! to the multicast group (UPnP Device Architecture 1.1 §1.3.2 allows unicast search), and a
//! device description that points anywhere but the gateway is not used.

use crate::core::portmap::{MapProtocol, Mapping};
use anyhow::{anyhow, bail, Context, Result};
use igd_next::{Gateway, PortMappingProtocol, SearchOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// SSDP search and the HTTP requests that fetch the device description.
const SEARCH: Duration = Duration::from_secs(2);
/// One SOAP call (AddPortMapping, DeletePortMapping, GetExternalIPAddress).
const CALL: Duration = Duration::from_secs(3);
/// The lease asked for; a gateway that only grants permanent leases gets 0 and a delete on exit.
pub const LEASE: Duration = Duration::from_secs(3600);
const DESCRIPTION: &str = "p2pvpn";

async fn blocking<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(anyhow!("{what}: {e}")),
        Err(_) => Err(anyhow!("{what}: no answer within {}s", limit.as_secs())),
    }
}

/// Finds the gateway's IGD service.
pub async fn search(gateway: Ipv4Addr) -> Result<Gateway> {
    let options = SearchOptions {
        broadcast_address: SocketAddr::from((gateway, 1900)),
        timeout: Some(SEARCH),
        single_search_timeout: Some(SEARCH),
        ..SearchOptions::default()
    };
    let gw = blocking(SEARCH + Duration::from_secs(1), "UPnP search", move || {
        igd_next::search_gateway(options).map_err(|e| match e {
            // The socket's read timeout: nobody answered the M-SEARCH.
            igd_next::SearchError::IoError(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                anyhow!("no answer to the SSDP search (UPnP off on the gateway?)")
            }
            igd_next::SearchError::IoError(io)
                if io.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                anyhow!("the gateway refused the SSDP search (nothing listens on port 1900)")
            }
            e => anyhow!("{e}"),
        })
    })
    .await?;
    if gw.addr.ip() != gateway {
        bail!(
            "the UPnP device at {} is not the gateway {gateway}; not using it",
            gw.addr
        );
    }
    Ok(gw)
}

/// Maps UDP `local` on the gateway, at `suggest` when nonzero (a renewal), else at any port.
pub async fn map(gw: &Gateway, local: SocketAddr, suggest: u16) -> Result<Mapping> {
    let g = gw.clone();
    let external = blocking(CALL * 2, "UPnP mapping", move || {
        let ip = g.get_external_ip().context("GetExternalIPAddress")?;
        let lease = u32::try_from(LEASE.as_secs()).unwrap_or(0);
        let mut lifetime = LEASE;
        let port = if suggest != 0 {
            g.add_port(PortMappingProtocol::UDP, suggest, local, lease, DESCRIPTION)
                .context("AddPortMapping")?;
            suggest
        } else {
            match g.add_any_port(PortMappingProtocol::UDP, local, lease, DESCRIPTION) {
                Ok(p) => p,
                Err(igd_next::AddAnyPortError::OnlyPermanentLeasesSupported) => {
                    lifetime = Duration::ZERO;
                    g.add_any_port(PortMappingProtocol::UDP, local, 0, DESCRIPTION)
                        .context("AddAnyPortMapping (permanent lease)")?
                }
                Err(e) => return Err(anyhow!("AddAnyPortMapping: {e}")),
            }
        };
        Ok((SocketAddr::new(ip, port), lifetime))
    })
    .await?;
    Ok(Mapping {
        protocol: MapProtocol::Upnp,
        external: external.0,
        lifetime: external.1,
    })
}

/// Deletes the mapping at `external_port`.
pub async fn unmap(gw: &Gateway, external_port: u16) -> Result<()> {
    let g = gw.clone();
    blocking(CALL, "UPnP delete", move || {
        g.remove_port(PortMappingProtocol::UDP, external_port)
            .context("DeletePortMapping")
    })
    .await
}
