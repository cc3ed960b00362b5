//! The node's UDP side follows its control connection from server to server: STUN keepalives,
//! the NAT check and the relay binding go to the server the node is registered with, because
//! that server holds its relay identity (`core::rendezvous::deployment`: every peer meets on it).

use super::Node;
use std::net::SocketAddr;

impl Node {
    /// The node registered: aim STUN and the relay at that server's plain address. A TLS
    /// address carries no UDP (port 443 is TCP), so registering there keeps the UDP server as
    /// it was.
    pub(super) fn follow_server(&mut self) {
        let Some(current) = self.control.current_server() else {
            return;
        };
        let udp: SocketAddr = if current.tls {
            match self
                .control
                .servers()
                .iter()
                .find(|s| !s.tls && s.addr.ip() == current.addr.ip())
            {
                Some(s) => s.addr,
                None => return,
            }
        } else {
            current.addr
        };
        if self.stun_server == Some(udp) {
            return;
        }
        tracing::info!(server = %udp, "STUN and the relay now go to this server");
        self.stun_server = Some(udp);
        self.discovery.set_server(udp, self.now_hint);
        self.relay.set_server(udp);
    }
}

impl Node {
    /// The servers other than the current one, in failover order, one entry per address (a
    /// server's plain and TLS addresses are both listed).
    pub(super) fn other_servers(&self) -> Vec<SocketAddr> {
        let current = self.control.current_server().map(|s| s.addr);
        let mut out: Vec<SocketAddr> = Vec::new();
        for s in self.control.servers() {
            if Some(s.addr) != current && !out.contains(&s.addr) {
                out.push(s.addr);
            }
        }
        out
    }
}

impl Node {
    /// The deployment's server list a previous run learned (`NodeEvent::Servers`, saved by the
    /// driver): tried first, before the token's servers. Call before the first connection.
    pub fn restore_servers(&mut self, learned: &[crate::core::rendezvous::client::ServerAddr]) {
        self.control.restore_servers(learned);
    }
}
