//! A node: the control client and the peer table composed. It routes TUN packets to peers'
//! sessions and datagrams back to the TUN device, and turns control events into peer changes. It
//! owns no algorithm of its own beyond that routing and the checks on it: a peer may only send
//! from its own virtual address, and only to ours.

/// Lends a punch session the node's clock reading, RNG, transmit queue and socket pool. A macro,
/// not a method, so the borrows stay on those four fields while a peer is borrowed too.
macro_rules! punch_ctx {
    ($node:ident, $now:expr) => {
        $crate::core::punch::session::Ctx {
            now: $now,
            rng: &mut $node.rng,
            transmits: &mut $node.transmits,
            sockets: &mut $node.sockets,
        }
    };
}

mod discovery;
mod punching;
mod status;

pub use crate::core::punch::session::PunchConfig;
pub use crate::core::transmit::{SocketCommand, SocketId, Transmit};
pub use status::{NodeStatus, PeerStatus, ServerStatus};

use super::counters::{DropCounters, DropReason};
use super::crypto::{initiator_of, Decapsulated, Encapsulated};
use super::ip::{ipv4_endpoints, IpError};
use super::keys::{PublicKey, SecretKey};
use super::peers::{Path, PeerTable, Upsert};
use super::rendezvous::client::{ControlClient, ControlEvent, ServerAddr};
use super::rendezvous::messages::Refusal;
use super::wire::{classify, receiver_index, DatagramKind, WgMessage};
use crate::core::punch::session::SocketPool;
use discovery::{Discovery, FIRST_PUNCH_SOCKET};
use ipnet::Ipv4Net;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How often session timers run (boringtun expects a tick every few hundred ms).
pub const TIMER_TICK: Duration = Duration::from_millis(250);
/// A new handshake initiation goes out this often while a verified path has no session (the
/// first may be lost; WireGuard's REKEY_TIMEOUT is 5 s, whitepaper §6.4).
pub const HANDSHAKE_RETRY: Duration = Duration::from_secs(2);
/// A buffer this large holds any datagram the node sends or receives.
pub const MAX_DATAGRAM: usize = 65535;

/// What a node needs to start.
pub struct NodeConfig {
    pub network: String,
    pub secret: SecretKey,
    pub server_key: PublicKey,
    pub servers: Vec<SocketAddr>,
    /// TLS addresses of the server, tried when the plain ones fail.
    pub tls_servers: Vec<SocketAddr>,
    pub punch: PunchConfig,
}

/// The address the server gave this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub virtual_ip: Ipv4Addr,
    pub cidr: Ipv4Net,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    Registered(Assignment),
    ServerDisconnected,
    CloseControlStream,
    Refused {
        refusal: Refusal,
        permanent: bool,
    },
    PeerAdded {
        name: String,
        virtual_ip: Ipv4Addr,
    },
    PeerRemoved {
        name: String,
        virtual_ip: Ipv4Addr,
    },
    PathChanged {
        name: String,
        virtual_ip: Ipv4Addr,
        path: Path,
        endpoint: Option<SocketAddr>,
    },
    /// A line for the user about a slow step (NAT discovery, punching).
    Progress(String),
}

/// What to do with a packet read from the TUN device.
#[derive(Debug, PartialEq, Eq)]
pub enum TunOutcome<'a> {
    Send {
        socket: SocketId,
        dst: SocketAddr,
        datagram: &'a [u8],
    },
    /// Held until a handshake completes.
    Queued,
    Dropped(DropReason),
}

/// What to do with a datagram read from the UDP socket.
#[derive(Debug, PartialEq, Eq)]
pub enum DatagramOutcome<'a> {
    WriteTun(&'a [u8]),
    /// Handled; any replies are in `poll_transmit`.
    Consumed,
    Dropped(DropReason),
}

pub struct Node {
    network: String,
    secret: SecretKey,
    public: PublicKey,
    control: ControlClient,
    peers: PeerTable,
    assignment: Option<Assignment>,
    drops: DropCounters,
    transmits: VecDeque<Transmit>,
    events: VecDeque<NodeEvent>,
    next_tick: Instant,
    /// The time of the call being handled, for code paths that are not passed `now`.
    now_hint: Instant,
    scratch: Vec<u8>,
    discovery: Discovery,
    sockets: SocketPool,
    rng: ChaCha8Rng,
    local_endpoints: Vec<SocketAddr>,
    punch_config: PunchConfig,
}

impl Node {
    pub fn new(config: NodeConfig, mut rng: ChaCha8Rng, now: Instant) -> Self {
        let mut own =
            ChaCha8Rng::from_rng(&mut rng).unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(1));
        let discovery_rng =
            ChaCha8Rng::from_rng(&mut own).unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(2));
        let stun_server = config.servers.first().copied();
        let control = ControlClient::new(
            config.secret.clone(),
            config.server_key,
            ServerAddr::list(&config.servers, &config.tls_servers),
            config.network.clone(),
            rng,
            now,
        );
        Node {
            network: config.network,
            public: config.secret.public_key(),
            secret: config.secret,
            control,
            peers: PeerTable::default(),
            assignment: None,
            drops: DropCounters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now,
            now_hint: now,
            scratch: vec![0u8; MAX_DATAGRAM],
            discovery: Discovery::new(stun_server, discovery_rng, now),
            sockets: SocketPool::new(FIRST_PUNCH_SOCKET),
            rng: own,
            local_endpoints: Vec::new(),
            punch_config: config.punch,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.as_ref()
    }

    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Counts a drop the driver decided on (e.g. an oversized read).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops.bump(reason);
    }

    /// The UDP addresses this node can be reached at, as the driver sees them.
    pub fn set_local_endpoints(&mut self, endpoints: Vec<SocketAddr>) {
        self.local_endpoints = endpoints;
        self.publish_endpoints();
    }

    /// Tells the server our candidates (local, then server-reflexive) and NAT profile.
    fn publish_endpoints(&mut self) {
        let addrs = self
            .discovery
            .candidates(&self.local_endpoints)
            .into_iter()
            .map(|c| c.addr)
            .collect();
        self.control
            .set_endpoints(addrs, self.discovery.profile().cloned());
    }

    /// The driver opened a socket (the main one included) bound at `local`, the address it uses
    /// toward the server.
    pub fn handle_socket_opened(&mut self, socket: SocketId, local: SocketAddr, now: Instant) {
        if socket == SocketId::MAIN {
            self.discovery.handle_main_socket(local, now);
        } else {
            self.discovery.handle_socket_opened(socket, local);
        }
        self.discovery.flush(&mut self.sockets, &mut self.transmits);
    }

    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.sockets.commands.pop_front()
    }

    pub fn nat_profile(&self) -> Option<&crate::core::nat::NatProfile> {
        self.discovery.profile()
    }

    // ---- control stream -------------------------------------------------------------------

    pub fn poll_connect(&mut self, now: Instant) -> Option<ServerAddr> {
        self.control.poll_connect(now)
    }

    pub fn handle_control_connected(&mut self, now: Instant) {
        self.now_hint = now;
        self.control.handle_connected(now);
        self.pump_control();
    }

    pub fn handle_control_connect_failed(&mut self, now: Instant) {
        self.now_hint = now;
        self.control.handle_connect_failed(now);
        self.pump_control();
    }

    pub fn handle_control_bytes(&mut self, bytes: &[u8], now: Instant) {
        self.now_hint = now;
        self.control.handle_bytes(bytes, now);
        self.pump_control();
    }

    pub fn handle_control_closed(&mut self, now: Instant) {
        self.now_hint = now;
        self.control.handle_closed(now);
        self.pump_control();
    }

    pub fn poll_control_bytes(&mut self) -> Option<Vec<u8>> {
        self.control.poll_bytes()
    }

    fn pump_control(&mut self) {
        while let Some(event) = self.control.poll_event() {
            self.handle_control_event(event);
        }
    }

    fn handle_control_event(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::Registered {
                name,
                virtual_ip,
                cidr,
            } => {
                let assignment = Assignment {
                    name,
                    virtual_ip,
                    cidr,
                };
                self.assignment = Some(assignment.clone());
                self.events.push_back(NodeEvent::Registered(assignment));
            }
            ControlEvent::Peer(info) => match self.peers.upsert(&info, &self.secret, self.now_hint)
            {
                Upsert::Added => {
                    self.events.push_back(NodeEvent::PeerAdded {
                        name: info.name.clone(),
                        virtual_ip: info.virtual_ip,
                    });
                }
                Upsert::Updated => {}
                Upsert::AddressConflict => tracing::warn!(
                    peer = info.name,
                    ip = %info.virtual_ip,
                    "server sent a peer claiming an address another peer owns; ignored"
                ),
            },
            ControlEvent::PeerGone(key) => {
                if let Some(mut peer) = self.peers.remove(&key) {
                    peer.punch.close(&mut self.sockets);
                    self.events.push_back(NodeEvent::PeerRemoved {
                        name: peer.name,
                        virtual_ip: peer.virtual_ip,
                    });
                }
            }
            ControlEvent::Refused { refusal, permanent } => {
                if permanent {
                    // Removed or never admitted: no peer may keep a session with us.
                    for peer in self.peers.iter_mut() {
                        peer.punch.close(&mut self.sockets);
                    }
                    self.peers.clear();
                }
                self.events
                    .push_back(NodeEvent::Refused { refusal, permanent });
            }
            ControlEvent::Punch { peer, offer } => self.handle_punch_offer(peer, offer),
            ControlEvent::CloseStream => self.events.push_back(NodeEvent::CloseControlStream),
            ControlEvent::Disconnected => self.events.push_back(NodeEvent::ServerDisconnected),
        }
    }

    /// Brings the session up as soon as a path is verified, before traffic needs it. Only the
    /// side with the lower key initiates, so two nodes don't race two handshakes.
    fn maybe_initiate(&mut self, key: &PublicKey) {
        if self.public >= *key {
            return;
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some((socket, dst)) = peer.primary_target() else {
            return;
        };
        if peer.path() == Path::Direct {
            return;
        }
        peer.handshake_retry = Some(self.now_hint + HANDSHAKE_RETRY);
        if let Some(init) = peer.tunnel.initiate(&mut self.scratch, false) {
            self.transmits.push_back(Transmit {
                socket,
                dst,
                payload: init.to_vec(),
                ttl: None,
            });
        }
    }

    // ---- data path ------------------------------------------------------------------------

    /// Encrypts a packet read from the TUN device into `out`.
    pub fn handle_tun_packet<'a>(
        &mut self,
        packet: &[u8],
        _now: Instant,
        out: &'a mut [u8],
    ) -> TunOutcome<'a> {
        let outcome = self.route_tun_packet(packet, out);
        if let TunOutcome::Dropped(reason) = outcome {
            self.drops.bump(reason);
        }
        outcome
    }

    fn route_tun_packet<'a>(&mut self, packet: &[u8], out: &'a mut [u8]) -> TunOutcome<'a> {
        let dst = match ipv4_endpoints(packet) {
            Ok(ends) => ends.dst,
            Err(IpError::NotIpv4) => return TunOutcome::Dropped(DropReason::UnsupportedProtocol),
            Err(IpError::Truncated) => return TunOutcome::Dropped(DropReason::Malformed),
        };
        let Some(assignment) = &self.assignment else {
            return TunOutcome::Dropped(DropReason::NoRoute);
        };
        if !assignment.cidr.contains(&dst) {
            return TunOutcome::Dropped(DropReason::NotInNetwork);
        }
        let Some(peer) = self.peers.by_ip_mut(dst) else {
            return TunOutcome::Dropped(DropReason::NoRoute);
        };
        let Some((socket, primary)) = peer.primary_target() else {
            return TunOutcome::Dropped(DropReason::PeerUnreachable);
        };
        if out.len() < packet.len() + super::crypto::OVERHEAD || out.len() < 148 {
            return TunOutcome::Dropped(DropReason::Malformed);
        }
        match peer.tunnel.encapsulate(packet, out) {
            Ok(Encapsulated::Data(datagram)) => TunOutcome::Send {
                socket,
                dst: primary,
                datagram,
            },
            Ok(Encapsulated::Handshake(init)) => TunOutcome::Send {
                socket,
                dst: primary,
                datagram: init,
            },
            Ok(Encapsulated::Queued) => TunOutcome::Queued,
            Err(reason) => TunOutcome::Dropped(reason),
        }
    }

    /// Processes a datagram from the UDP socket; an inner packet for the TUN device lands in
    /// `out`.
    pub fn handle_datagram<'a>(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> DatagramOutcome<'a> {
        self.now_hint = now;
        let outcome = self.receive_datagram(socket, from, datagram, now, out);
        if let DatagramOutcome::Dropped(reason) = outcome {
            self.drops.bump(reason);
        }
        outcome
    }

    fn receive_datagram<'a>(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> DatagramOutcome<'a> {
        let kind = match classify(datagram) {
            DatagramKind::WireGuard(kind) => kind,
            DatagramKind::Stun => return self.handle_stun_datagram(socket, from, datagram, now),
            DatagramKind::Probe => return self.handle_probe_datagram(socket, from, datagram, now),
            DatagramKind::Unknown => return DatagramOutcome::Dropped(DropReason::Malformed),
        };
        let peer = if kind == WgMessage::HandshakeInit {
            let key = match initiator_of(&self.secret, datagram) {
                Ok(key) => key,
                Err(reason) => return DatagramOutcome::Dropped(reason),
            };
            match self.peers.get_mut(&key) {
                Some(peer) => peer,
                None => return DatagramOutcome::Dropped(DropReason::UnknownPeer),
            }
        } else {
            let Some(index) = receiver_index(datagram, kind) else {
                return DatagramOutcome::Dropped(DropReason::Malformed);
            };
            match self.peers.by_receiver_index_mut(index) {
                Some(peer) => peer,
                None => return DatagramOutcome::Dropped(DropReason::UnknownSession),
            }
        };
        let result = match peer.tunnel.decapsulate(from.ip(), datagram, out) {
            Ok(r) => r,
            Err(reason) => return DatagramOutcome::Dropped(reason),
        };
        // Anything but our cookie reply means the datagram was authenticated by the session, so
        // it proves the path as well as a probe would.
        if !matches!(&result, Decapsulated::Reply(r) if r.first() == Some(&3)) {
            let mut ctx = punch_ctx!(self, now);
            if let Some(crate::core::punch::session::PunchEvent::Nominated { detail, .. }) =
                peer.punch.handle_authenticated(socket, from, &mut ctx)
            {
                let line = format!("peer {}: {detail} via {from}", peer.name);
                self.events.push_back(NodeEvent::Progress(line));
            }
        }
        match result {
            Decapsulated::Tunnel { packet, src } => {
                peer.endpoint = Some(from);
                peer.socket = socket;
                if src != IpAddr::V4(peer.virtual_ip) {
                    return DatagramOutcome::Dropped(DropReason::SpoofedSource);
                }
                let ours = self.assignment.as_ref().map(|a| a.virtual_ip);
                match ipv4_endpoints(packet) {
                    Ok(ends) if Some(ends.dst) == ours => DatagramOutcome::WriteTun(packet),
                    _ => DatagramOutcome::Dropped(DropReason::WrongDestination),
                }
            }
            Decapsulated::Reply(reply) => {
                // A cookie reply (type 3) answers an unauthenticated message under load: it
                // proves nothing about the sender, so it must not move the endpoint.
                if reply.first() != Some(&3) {
                    peer.endpoint = Some(from);
                    peer.socket = socket;
                }
                self.transmits.push_back(Transmit {
                    socket,
                    dst: from,
                    payload: reply.to_vec(),
                    ttl: None,
                });
                while let Some(queued) = peer.tunnel.poll_queued(&mut self.scratch) {
                    self.transmits.push_back(Transmit {
                        socket,
                        dst: from,
                        payload: queued.to_vec(),
                        ttl: None,
                    });
                }
                DatagramOutcome::Consumed
            }
            Decapsulated::Nothing => {
                peer.endpoint = Some(from);
                peer.socket = socket;
                DatagramOutcome::Consumed
            }
        }
    }

    // ---- time -----------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now_hint = now;
        self.control.handle_timeout(now);
        self.pump_control();
        self.discovery
            .handle_timeout(&mut self.sockets, &mut self.transmits, now);
        self.after_discovery();
        self.drive_punches(now);
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TIMER_TICK;
        for peer in self.peers.iter_mut() {
            match peer.tunnel.update_timers(&mut self.scratch) {
                Ok(Some(message)) => {
                    if let Some((socket, dst)) = peer.primary_target() {
                        self.transmits.push_back(Transmit {
                            socket,
                            dst,
                            payload: message.to_vec(),
                            ttl: None,
                        });
                    }
                }
                Ok(None) => {}
                Err(_expired) => {}
            }
            let path = peer.path();
            let retry_due = peer.handshake_retry.is_some_and(|t| now >= t);
            if path == Path::Direct {
                peer.handshake_retry = None;
            } else if retry_due {
                // Either side may start a handshake (whitepaper §5.1); the higher key waits
                // longer, so normally only the lower key's initiation is in flight.
                if let Some((socket, dst)) = peer.primary_target() {
                    if let Some(init) = peer.tunnel.initiate(&mut self.scratch, true) {
                        self.transmits.push_back(Transmit {
                            socket,
                            dst,
                            payload: init.to_vec(),
                            ttl: None,
                        });
                    }
                }
                peer.handshake_retry = Some(now + HANDSHAKE_RETRY);
            }
            if path != peer.last_path {
                peer.last_path = path;
                self.events.push_back(NodeEvent::PathChanged {
                    name: peer.name.clone(),
                    virtual_ip: peer.virtual_ip,
                    path,
                    endpoint: peer.endpoint,
                });
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let control = self.control.poll_timeout();
        let tick = (!self.peers.is_empty()).then_some(self.next_tick);
        let discovery = self.discovery.poll_timeout();
        let punch = self
            .peers
            .iter()
            .filter_map(|p| p.punch.poll_timeout())
            .min();
        [control, tick, discovery, punch]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }
}
