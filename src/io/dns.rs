//! The node's DNS responder socket: UDP port 53 on the node's overlay address, answered by
//! `core::dns::Responder` from the node's current names, and the split-DNS registration that
//! points the host's resolver at it for the network's suffix only (`split_dns`). TCP is not
//! served: answers are a few dozen bytes and never truncated, so no resolver needs to retry
//! over TCP.

use super::split_dns::{self, Registration};
use crate::core::dns::{DnsStatus, Host, Responder, MAX_QUERY};
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::UdpSocket;

/// DNS's port (RFC 1035 §4.2.1): resolvers, systemd-resolved included, cannot be told another
/// one for a link.
const PORT: u16 = 53;

pub struct DnsServer {
    socket: UdpSocket,
    responder: Responder,
    suffix: String,
    addr: SocketAddr,
    /// Registering runs beside the event loop: resolvectl waits on D-Bus, and a slow or hung
    /// resolved must not hold up packets (seen: a 25 s D-Bus activation timeout).
    registration: tokio::task::JoinHandle<Option<Registration>>,
    network: String,
    interface: String,
}

impl DnsServer {
    /// Opens the responder on `addr` and registers it for `suffix` on `interface`. A node
    /// whose port 53 is taken keeps running without names: the failure is logged with what to
    /// do, and the tunnel does not depend on DNS.
    pub async fn start(
        network: &str,
        addr: Ipv4Addr,
        suffix: &str,
        interface: &str,
    ) -> Option<Self> {
        let responder = match Responder::new(suffix) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("p2pvpn {network}: DNS responder not started: {e}");
                return None;
            }
        };
        let socket = match UdpSocket::bind((addr, PORT)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "p2pvpn {network}: cannot answer DNS for {suffix} on {addr}:{PORT}: {e}; \
                     names of peers will not resolve. Free UDP port {PORT} on {addr} (a DNS \
                     server listening on every address takes it) and restart the node"
                );
                return None;
            }
        };
        let addr = SocketAddr::from((addr, PORT));
        let registration = tokio::spawn(split_dns::register(
            network.to_string(),
            interface.to_string(),
            addr,
            suffix.to_string(),
        ));
        Some(DnsServer {
            socket,
            responder,
            suffix: suffix.to_string(),
            addr,
            registration,
            network: network.to_string(),
            interface: interface.to_string(),
        })
    }

    /// Answers one query read by [`recv`]; a dropped query is only counted.
    pub async fn handle<'a>(
        &mut self,
        query: &[u8],
        from: SocketAddr,
        hosts: impl IntoIterator<Item = Host<'a>>,
    ) {
        if let Some(reply) = self.responder.answer(query, hosts) {
            if let Err(e) = self.socket.send_to(&reply, from).await {
                tracing::debug!(error = %e, %from, "DNS reply not sent");
            }
        }
    }

    pub fn status(&self) -> DnsStatus {
        DnsStatus {
            suffix: self.suffix.clone(),
            address: self.addr,
            counters: self.responder.counters(),
        }
    }

    /// Removes what `start` registered with the host's resolver (on `down` and on signals).
    /// A registration still under way is cut short and whatever part of it went through is
    /// reverted.
    pub async fn stop(self) {
        let finished = self.registration.is_finished();
        self.registration.abort();
        match self.registration.await {
            Ok(Some(r)) => r.revert().await,
            Ok(None) => {}
            Err(_) if !finished => {
                Registration::new(self.network, self.interface)
                    .revert()
                    .await
            }
            Err(_) => {}
        }
    }
}

/// A buffer for [`recv`]: one byte more than the largest query answered, so a longer one is
/// seen as too long rather than cut to a valid-looking prefix.
pub fn buffer() -> Vec<u8> {
    vec![0u8; MAX_QUERY + 1]
}

/// The next query, or never when the responder is not running.
pub async fn recv(dns: &Option<DnsServer>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match dns {
        Some(d) => d.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
