//! The server's UDP side: one socket per primary listen address and one on its alternate port,
//! all in one table so a request that arrives on one socket can be answered from another (RFC
//! 5780 CHANGE-REQUEST). Relay datagrams (`relay::wire::is_relay`) go to the server core, which
//! owns the relay's bindings; every other datagram goes to the sans-IO `StunResponder`, and
//! whatever it does not answer is counted and dropped.

use super::server::bind_error;
use crate::core::stun::StunResponder;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What the UDP sockets did, for the shutdown log line.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub stun_answered: AtomicU64,
    pub dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// Relay datagrams dropped because the server core was behind.
    pub relay_dropped: AtomicU64,
}

/// The bound sockets and the responder that decides what to send from which.
pub struct ServerUdp {
    responder: Arc<StunResponder>,
    sockets: Arc<HashMap<SocketAddr, Arc<UdpSocket>>>,
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
        let mut sockets = HashMap::new();
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
            sockets.insert(addr, Arc::new(socket));
        }
        Ok(ServerUdp {
            responder: Arc::new(responder),
            sockets: Arc::new(sockets),
        })
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

    /// Every socket by its local address, to send relayed datagrams from the right one.
    pub fn table(&self) -> Arc<HashMap<SocketAddr, Arc<UdpSocket>>> {
        self.sockets.clone()
    }

    /// Starts one receive task per socket; relay datagrams go to `relay` (the server core owns
    /// the relay's state). Returns the shared counters.
    pub fn spawn(self, relay: mpsc::Sender<RelayDatagram>) -> Arc<UdpStats> {
        let stats = Arc::new(UdpStats::default());
        for (&local, socket) in self.sockets.iter() {
            tokio::spawn(receive_loop(
                local,
                socket.clone(),
                self.sockets.clone(),
                self.responder.clone(),
                stats.clone(),
                relay.clone(),
            ));
        }
        stats
    }
}

/// A relay datagram for the server core: (our socket, sender, bytes).
pub type RelayDatagram = (SocketAddr, SocketAddr, Vec<u8>);

async fn receive_loop(
    local: SocketAddr,
    socket: Arc<UdpSocket>,
    table: Arc<HashMap<SocketAddr, Arc<UdpSocket>>>,
    responder: Arc<StunResponder>,
    stats: Arc<UdpStats>,
    relay: mpsc::Sender<RelayDatagram>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors from earlier sends surface here on Linux; they are not fatal.
            Err(e) => {
                tracing::debug!(%local, error = %e, "UDP receive error");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if crate::core::relay::wire::is_relay(&buf[..n]) {
            // A full queue means the server is behind: drop, as a router would.
            if relay.try_send((local, from, buf[..n].to_vec())).is_err() {
                stats.relay_dropped.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let Some(reply) = responder.respond(local, from, &buf[..n]) else {
            let total = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(bytes = n, %from, total, "dropped a UDP datagram the server does not speak");
            continue;
        };
        let Some(out) = table.get(&reply.via) else {
            continue;
        };
        match out.send_to(&reply.bytes, reply.to).await {
            Ok(_) => {
                stats.stun_answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(via = %reply.via, to = %reply.to, error = %e, "cannot send a STUN answer");
            }
        }
    }
}
