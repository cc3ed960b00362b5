//! The server's UDP side: one socket per primary listen address and one on its alternate port,
//! all in one table so a request that arrives on one socket can be answered from another (RFC
//! 5780 CHANGE-REQUEST). This file binds them; the server's event loop reads and writes them
//! (`server_relay`): relay datagrams (`relay::wire::is_relay`) go to the server core, which
//! owns the relay's bindings, and are forwarded in place; every other datagram goes to the
//! sans-IO `StunResponder`, and whatever it does not answer is counted and dropped.

use super::server::bind_error;
use super::server_relay::UdpSockets;
use super::udp_batch::UdpBatch;
use crate::core::stun::StunResponder;
use anyhow::{anyhow, bail, Result};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

/// What the UDP sockets did, for metrics and the shutdown log line.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub stun_answered: AtomicU64,
    pub dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// Relay datagrams the relay let through that could not be sent (the send failed). A full
    /// receive buffer drops in the kernel instead: /proc/net/udp's `drops` column.
    pub relay_dropped: AtomicU64,
    /// Relayed datagrams sent, and the `sendmsg` calls that carried them (fewer with GSO).
    pub relay_forwarded: AtomicU64,
    pub relay_sends: AtomicU64,
}

/// The bound sockets and the responder that decides what to send from which.
pub struct ServerUdp {
    responder: StunResponder,
    sockets: Vec<(SocketAddr, UdpBatch)>,
}

impl ServerUdp {
    /// Binds every primary and alternate-port socket. A busy alternate port names the flag that
    /// moves it.
    pub async fn bind(listen: &[SocketAddr], alternate_port: Option<u16>) -> Result<Self> {
        if let Some(addr) = listen.iter().find(|a| a.port() == 0) {
            bail!("--listen {addr}: give a fixed port; TCP, UDP and STUN must share it");
        }
        let responder = StunResponder::new(listen, alternate_port).map_err(|e| {
            anyhow!("cannot lay out the STUN sockets: {e}; choose another --alternate-port PORT")
        })?;
        let mut sockets = Vec::new();
        for addr in responder.sockets() {
            let socket = super::v6only::udp(addr).map_err(|e| {
                if listen.contains(&addr) {
                    bind_error(addr, "UDP", "--listen", e)
                } else if e.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow!(
                        "UDP {addr} (the alternate STUN port) is already in use by another \
                         program; stop it or choose another port with --alternate-port PORT"
                    )
                } else {
                    anyhow!("cannot bind the alternate STUN port UDP {addr}: {e}; choose another with --alternate-port PORT")
                }
            })?;
            let batch = UdpBatch::new(socket)
                .map_err(|e| anyhow!("cannot set up UDP {addr} for batched I/O: {e}"))?;
            sockets.push((addr, batch));
        }
        Ok(ServerUdp { responder, sockets })
    }

    /// Startup lines for the operator: where STUN answers and whether RFC 5780 works.
    pub fn describe(&self) -> Vec<String> {
        let all: Vec<String> = self
            .responder
            .sockets()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut lines = vec![format!("STUN answers on UDP {}", all.join(", "))];
        let paired = self.responder.rfc5780_addresses();
        if paired.is_empty() {
            lines.push(
                "RFC 5780 NAT behaviour discovery: no (it needs a second --listen address with \
                 another IP); mapping and filtering tests will report unknown"
                    .into(),
            );
        } else {
            let names: Vec<String> = paired.iter().map(|a| a.to_string()).collect();
            lines.push(format!(
                "RFC 5780 NAT behaviour discovery: yes, on {}",
                names.join(" and ")
            ));
        }
        lines
    }

    /// Hands the sockets to the server's event loop, which reads them itself
    /// (`server_relay`): relay datagrams are forwarded in place, STUN answered.
    pub fn into_loop(self) -> UdpSockets {
        UdpSockets::new(self.sockets, self.responder)
    }
}
