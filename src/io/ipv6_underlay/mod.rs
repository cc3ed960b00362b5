//! The node's IPv6 underlay socket and addresses (issue 13 part 3). The main socket is IPv4
//! (batched, `io::udp_batch`); beside it the node keeps one IPv6-only UDP socket on the same
//! port (`io::v6only`), which the core sees as `SocketId::MAIN` too: the driver sends a
//! datagram for an IPv6 destination from it, and its reader hands what arrives to the core like
//! any datagram of the main socket. It sends one datagram per call (no GSO): IPv6 paths carry
//! what IPv4 NATs would otherwise relay, so correctness comes first here.
//!
//! The host's global IPv6 addresses (2000::/3) are its IPv6 host candidates; reading them is
//! per OS (`linux`: /proc/net/if_inet6; elsewhere none yet, so such a node offers only the
//! reflexive address the server sees).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod other;

#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(not(target_os = "linux"))]
use other as imp;

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Binds the IPv6 socket on `port` (the main socket's), else on any port; `None` when the host
/// has no IPv6 at all. With `dont_fragment` datagrams leave unfragmented, as on IPv4, so the
/// path MTU search measures the IPv6 path's 20 extra header bytes (RFC 8200 §5: routers never
/// fragment IPv6; only the sender could).
pub fn bind(port: u16, dont_fragment: bool) -> Option<Arc<UdpSocket>> {
    let any = |port| SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let socket = match super::v6only::udp(any(port)) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, port, "cannot bind the IPv6 socket on the main port");
            match super::v6only::udp(any(0)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(error = %e, "no IPv6 underlay: cannot open an IPv6 UDP socket");
                    return None;
                }
            }
        }
    };
    if dont_fragment {
        if let Err(e) = imp::set_dont_fragment(&socket) {
            tracing::debug!(error = %e, "cannot set IPV6_PMTUDISC_PROBE on the IPv6 socket");
        }
    }
    Some(Arc::new(socket))
}

/// The host's global IPv6 addresses with `port`: its IPv6 host candidates.
pub fn host_candidates(port: u16) -> Vec<SocketAddr> {
    imp::global_addresses()
        .into_iter()
        .filter(|ip| crate::core::punch::ipv6::is_global(*ip))
        .map(|ip| SocketAddr::from((ip, port)))
        .collect()
}
