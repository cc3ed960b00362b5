//! Where a peer's packets go: the verified direct path when there is one, else the server's
//! relay (UDP when the relay binding works, else the control stream), so traffic flows as soon as
//! a peer is known and moves to the direct path, inside the same WireGuard session, the moment
//! one is verified. Also the node's side of relayed receive. The relay protocol itself is
//! `core::relay`.

use super::{DatagramOutcome, Node, Transmit};
use crate::core::counters::DropReason;
use crate::core::peers::{Path, Peer};
use crate::core::relay::client::{RelayClient, RelayTransport};
use crate::core::relay::wire::{self, RelayDatagram};
use crate::core::rendezvous::client::ControlClient;
use crate::core::transmit::SocketId;
use crate::core::wire::{classify, DatagramKind};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// How one packet to a peer travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct { socket: SocketId, dst: SocketAddr },
    RelayUdp { server: SocketAddr, id: u32 },
    RelayStream { id: u32 },
}

impl Route {
    pub fn path(self) -> Path {
        match self {
            Route::Direct { .. } => Path::Direct,
            _ => Path::Relay,
        }
    }

    /// The relay transport, for `status`.
    pub fn relay_name(self, tls: bool) -> Option<&'static str> {
        match self {
            Route::Direct { .. } => None,
            Route::RelayUdp { .. } => Some("udp"),
            Route::RelayStream { .. } if tls => Some("tls"),
            Route::RelayStream { .. } => Some("tcp"),
        }
    }
}

/// The route for `peer` now: a nominated direct path first, then the relay.
pub fn route(
    peer: &Peer,
    relay: &RelayClient,
    control: &ControlClient,
    server: Option<SocketAddr>,
) -> Option<Route> {
    if let Some(n) = peer.punch.nominated() {
        return Some(Route::Direct {
            socket: n.socket,
            dst: n.addr,
        });
    }
    relay_route(peer, relay, control, server)
}

/// The relay route to `peer`, whatever its direct path.
pub fn relay_route(
    peer: &Peer,
    relay: &RelayClient,
    control: &ControlClient,
    server: Option<SocketAddr>,
) -> Option<Route> {
    let id = peer.relay_id.filter(|_| peer.online)?;
    match relay.transport(control.is_registered())? {
        RelayTransport::Udp => Some(Route::RelayUdp {
            server: server?,
            id,
        }),
        RelayTransport::Stream => Some(Route::RelayStream { id }),
    }
}

/// The peer's path as `status` shows it: a route and a live session.
pub fn path(peer: &Peer, route: Option<Route>, now: Instant) -> Path {
    match route {
        Some(r) if peer.session_fresh(now) => r.path(),
        _ => Path::Connecting,
    }
}

/// Sends one WireGuard message along `route` (not the per-packet path: this allocates).
pub fn send(
    route: Route,
    payload: &[u8],
    transmits: &mut VecDeque<Transmit>,
    control: &mut ControlClient,
) {
    match route {
        Route::Direct { socket, dst } => transmits.push_back(Transmit {
            socket,
            dst,
            payload: payload.to_vec(),
            ttl: None,
        }),
        Route::RelayUdp { server, id } => {
            let mut datagram = vec![0u8; wire::DATA_HEADER + payload.len()];
            datagram[wire::DATA_HEADER..].copy_from_slice(payload);
            wire::write_to_peer_header(&mut datagram, id);
            transmits.push_back(Transmit::main(server, datagram));
        }
        Route::RelayStream { id } => control.send_relay_frame(&wire::stream_frame(id, payload)),
    }
}

impl Node {
    pub(super) fn route_to(&self, peer: &Peer) -> Option<Route> {
        route(peer, &self.relay, &self.control, self.stun_server)
    }

    /// A relay datagram from the server on our UDP socket.
    pub(super) fn handle_relay_datagram<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> DatagramOutcome<'a> {
        if Some(from) != self.stun_server {
            // Relayed traffic only ever comes from the server we bound to.
            return DatagramOutcome::Dropped(DropReason::Malformed);
        }
        match wire::parse(datagram) {
            Some(RelayDatagram::BindOk(ok)) => {
                self.relay.handle_bind_ok(&ok, now);
                self.after_relay_progress();
                DatagramOutcome::Consumed
            }
            Some(RelayDatagram::Challenge(c)) => {
                self.relay.handle_challenge(&c, &mut self.transmits);
                DatagramOutcome::Consumed
            }
            Some(RelayDatagram::FromPeer { src, payload }) => {
                self.receive_relayed(src, payload, "udp", now, out)
            }
            _ => DatagramOutcome::Dropped(DropReason::Malformed),
        }
    }

    /// A packet relayed through the control stream: decrypted here, queued for the TUN device.
    pub(super) fn handle_relay_frame(&mut self, src: u32, payload: &[u8], now: Instant) {
        let mut out = std::mem::take(&mut self.relay_scratch);
        let transport = match self.control.current_server() {
            Some(s) if s.tls => "tls",
            _ => "tcp",
        };
        // Counted here: unlike datagrams, these do not pass through `handle_datagram`.
        match self.receive_relayed(src, payload, transport, now, &mut out) {
            DatagramOutcome::WriteTun(packet) => {
                if self.tun_queue.len() < 1024 {
                    self.tun_queue.push_back(packet.to_vec());
                }
            }
            DatagramOutcome::Dropped(reason) => self.drops.bump(reason),
            DatagramOutcome::Consumed => {}
        }
        self.relay_scratch = out;
    }

    fn receive_relayed<'a>(
        &mut self,
        src: u32,
        payload: &[u8],
        transport: &'static str,
        now: Instant,
        out: &'a mut [u8],
    ) -> DatagramOutcome<'a> {
        let Some(key) = self.peers.by_relay_id(src) else {
            return DatagramOutcome::Dropped(DropReason::UnknownPeer);
        };
        let DatagramKind::WireGuard(kind) = classify(payload) else {
            return DatagramOutcome::Dropped(DropReason::Malformed);
        };
        self.receive_wireguard(
            super::Origin::Relay(key, transport),
            kind,
            payload,
            now,
            out,
        )
    }

    /// The last relay Bind this node sent, byte for byte as on the wire: what someone watching
    /// its traffic would see (tests replay it).
    #[doc(hidden)]
    pub fn last_relay_bind(&self) -> Option<Vec<u8>> {
        self.relay.last_bind().map(<[u8]>::to_vec)
    }

    pub(super) fn after_relay_progress(&mut self) {
        while let Some(line) = self.relay.progress.pop_front() {
            self.events.push_back(super::NodeEvent::Progress(line));
        }
    }
}
