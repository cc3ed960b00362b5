//! The node's IPv6 underlay socket and addresses (issue 13 part 3). The main socket is IPv4
//! (batched, `io::udp_batch`); beside it the node keeps one IPv6-only UDP socket on the same
//! port (`io::v6only`), which the core sees as `SocketId::MAIN` too: the driver sends a
//! datagram for an IPv6 destination from it, and its reader hands what arrives to the core like
//! any datagram of the main socket. It is batched like the IPv4 half (`io::udp_batch`: GSO
//! sends, `recvmmsg` with GRO), and the data thread and the RX worker read it as they read the
//! IPv4 half: a peer reached over IPv6 (often the only direct path past two hard IPv4 NATs)
//! gets the same data path as one reached over IPv4.
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

use super::udp_batch::UdpBatch;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Binds the IPv6 socket on `port` (the main socket's), else on any port; `None` when the host
/// has no IPv6 at all. With `dont_fragment` datagrams leave unfragmented, as on IPv4, so the
/// path MTU search measures the IPv6 path's 20 extra header bytes (RFC 8200 §5: routers never
/// fragment IPv6; only the sender could); without it, the kernel's defaults, which the batched
/// setup changes and [`imp::set_fragmentation`] puts back.
pub fn bind(port: u16, dont_fragment: bool) -> Option<Arc<UdpBatch>> {
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
    let socket = match UdpBatch::new(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "no IPv6 underlay: cannot set up the IPv6 UDP socket");
            return None;
        }
    };
    if let Err(e) = imp::set_fragmentation(socket.socket(), dont_fragment) {
        tracing::debug!(error = %e, "cannot set the IPv6 socket's fragmentation options");
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
