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
mod filter;
#[cfg(test)]
mod handshake_load_tests;
mod ipv6;
mod mapping;
mod names;
mod pinging;
mod pmtu;
mod punching;
mod relaying;
mod restarts;
mod roaming;
mod server_switch;
mod status;
mod workers;

pub use crate::core::punch::session::PunchConfig;
pub use crate::core::transmit::{SocketCommand, SocketId, Transmit};
pub use pinging::{PingError, PingReply, MAX_OUTSTANDING as MAX_PINGS, PING_TIMEOUT};
pub use pmtu::PathMtu;
pub use status::{rfc3339, NodeStatus, PeerStatus, ServerStatus};
pub use workers::{WorkerStatus, WorkersStatus};

use super::counters::{DropCounters, DropReason};
use super::crypto::{initiator_of, Decapsulated, Encapsulated, Engine};
use super::ip::{ip_endpoints, IpError};
use super::keys::{PublicKey, SecretKey};
use super::peers::{Path, PeerTable, Upsert};
use super::rendezvous::client::{ControlClient, ControlEvent, ServerAddr};
use super::rendezvous::messages::{PeerInfo, Refusal};
use super::wg::cookie::{self, CookieError, CookieGuard, Verdict};
use super::wg::handshake::COOKIE_REPLY_LEN;
use super::wire::{classify, receiver_index, DatagramKind, WgMessage};
use crate::core::punch::session::SocketPool;
use crate::core::relay::client::RelayClient;
use crate::core::relay::wire as relay_wire;
use discovery::{Discovery, FIRST_PUNCH_SOCKET};
use ipnet::{Ipv4Net, Ipv6Net};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
pub use relaying::Route;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
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
    /// This node's IPv6 address with the network's prefix length (`core::ula`), when the
    /// server gave one.
    pub ipv6: Option<Ipv6Net>,
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
        /// The relay transport when `path` is relay ("udp", "tcp", "tls").
        relay: Option<&'static str>,
        /// How a direct path was found, e.g. "direct (server-reflexive)".
        detail: Option<String>,
    },
    /// A line for the user about a slow step (NAT discovery, punching).
    Progress(String),
    /// The deployment's live servers changed, primary first: worth saving, so that the next
    /// start can reach the deployment even if the token's servers are gone.
    Servers(Vec<ServerAddr>),
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
    /// Handed to the control stream (relay over TCP/TLS): drain `poll_control_bytes`.
    Stream,
    /// Too big for the peer's path: write this ICMP answer back to the TUN device (`pmtu`).
    Reply(&'a [u8]),
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
    /// The server's UDP address: STUN, and the relay.
    stun_server: Option<SocketAddr>,
    relay: RelayClient,
    /// Packets relayed through the control stream, decrypted, waiting for the TUN device.
    tun_queue: VecDeque<Vec<u8>>,
    relay_scratch: Vec<u8>,
    pings: pinging::Pings,
    pmtu: pmtu::PmtuState,
    /// The gateway's mapping of the main socket, as a candidate (`mapping`).
    port_mapping: Option<crate::core::punch::Candidate>,
    remap_wanted: bool,
    /// When the underlay last moved (`roaming`).
    roamed_at: Option<Instant>,
    /// The access rules on what peers send, with the flows this node opened (`core::acl`).
    acl: crate::core::acl::shared::SharedAcl,
    /// IPv6 underlay candidates (`ipv6`).
    ipv6: ipv6::Ipv6Underlay,
    /// The TX/RX data workers' key table and activity (`workers`).
    workers: workers::Workers,
    /// Our engine's handshake load and cookie secret, node-wide (`core::wg::cookie`).
    cookies: CookieGuard,
}

/// Where a WireGuard message came from.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Direct {
        socket: SocketId,
        from: SocketAddr,
    },
    /// Relayed by the server, from this peer, over this relay transport ("udp", "tcp", "tls").
    Relay(PublicKey, &'static str),
}

impl Node {
    pub fn new(config: NodeConfig, mut rng: ChaCha8Rng, now: Instant) -> Self {
        let mut own =
            ChaCha8Rng::from_rng(&mut rng).unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(1));
        let discovery_rng =
            ChaCha8Rng::from_rng(&mut own).unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(2));
        // The main socket is IPv4: STUN and the relay go to the first IPv4 server; the first
        // IPv6 one gives the IPv6 reflexive address (`ipv6`).
        let stun_server = config
            .servers
            .iter()
            .find(|s| s.is_ipv4())
            .or(config.servers.first())
            .copied();
        let ipv6 = ipv6::Ipv6Underlay::new(config.servers.iter().find(|s| s.is_ipv6()).copied());
        let mut control = ControlClient::new(
            config.secret.clone(),
            config.server_key,
            ServerAddr::list(&config.servers, &config.tls_servers),
            config.network.clone(),
            rng,
            now,
        );
        let acl = crate::core::acl::shared::SharedAcl::new(crate::core::acl::Acl::new(
            rand::Rng::gen(&mut own),
        ));
        // This process's run: peers that see it change know we restarted (`restarts`).
        control.set_run(rand::Rng::gen(&mut own));
        Node {
            acl,
            ipv6,
            workers: workers::Workers::new(now),
            cookies: CookieGuard::new(&config.secret.public_key(), cookie::HANDSHAKE_LIMIT),
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
            stun_server,
            relay: RelayClient::new(stun_server),
            tun_queue: VecDeque::new(),
            relay_scratch: vec![0u8; MAX_DATAGRAM],
            pings: pinging::Pings::default(),
            pmtu: pmtu::PmtuState::default(),
            port_mapping: None,
            remap_wanted: false,
            roamed_at: None,
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
        let addrs = self.own_candidates().into_iter().map(|c| c.addr).collect();
        self.control
            .set_endpoints(addrs, self.discovery.offer_profile());
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
        self.discovery.set_server_answers_tcp(false, now);
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

    /// A peer record from the server: added, updated, or (when it names an address another key
    /// holds) the server's newer word wins. The server allocates addresses, so a record for a
    /// new key at a held address means the old holder was removed and its address given again;
    /// the update about the new holder can arrive before the removal of the old one (a member
    /// removed and re-joined within one store poll), and ignoring it would leave the new key
    /// unknown to this node until its next update.
    fn handle_peer_info(&mut self, info: &PeerInfo) {
        let before = self
            .peers
            .get(&info.public_key)
            .map(|p| p.candidates.clone());
        // A new run of a known peer: its old session and path go first (`restarts`).
        let restarted = self.is_new_run(info);
        if restarted {
            self.forget_old_run(&info.public_key);
        }
        let mut outcome = self.peers.upsert(info, &self.secret, self.now_hint);
        if outcome == Upsert::AddressConflict {
            // At most two holders: one of the IPv4 address, one of the IPv6 one (the same key
            // unless the server changed a network's prefix). Bounded all the same.
            for _ in 0..2 {
                let Some(old) = self.peers.conflicting_owner(info) else {
                    break;
                };
                tracing::info!(
                    peer = ?info.name,
                    ip = %info.virtual_ip,
                    "the server gave this address to a new key; replacing the old holder"
                );
                self.remove_peer(&old);
            }
            outcome = self.peers.upsert(info, &self.secret, self.now_hint);
        }
        match outcome {
            Upsert::Added => {
                self.events.push_back(NodeEvent::PeerAdded {
                    name: info.name.clone(),
                    virtual_ip: info.virtual_ip,
                });
                // Relay first: the session comes up through the relay while punching runs.
                self.maybe_initiate(&info.public_key);
            }
            Upsert::Updated if restarted => self.greet_new_run(&info.public_key),
            Upsert::Updated => {
                if let Some(before) = before {
                    self.handle_peer_endpoints(&info.public_key, &before);
                }
                self.maybe_initiate(&info.public_key)
            }
            Upsert::AddressConflict => {}
        }
    }

    fn remove_peer(&mut self, key: &PublicKey) {
        if let Some(mut peer) = self.peers.remove(key) {
            peer.punch.close(&mut self.sockets);
            self.events.push_back(NodeEvent::PeerRemoved {
                name: peer.name,
                virtual_ip: peer.virtual_ip,
            });
        }
    }

    fn handle_control_event(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::Registered {
                name,
                virtual_ip,
                cidr,
                relay,
                ipv6,
            } => {
                let assignment = Assignment {
                    name,
                    virtual_ip,
                    cidr,
                    ipv6,
                };
                self.assignment = Some(assignment.clone());
                self.discovery.set_server_answers_tcp(true, self.now_hint);
                self.events.push_back(NodeEvent::Registered(assignment));
                if relay.is_none() {
                    self.events.push_back(NodeEvent::Progress(
                        "the server's relay is full: peers without a direct path stay unreachable"
                            .into(),
                    ));
                }
                self.follow_server();
                self.relay.set_ticket(relay, self.now_hint);
                self.relay
                    .handle_timeout(self.now_hint, &mut self.transmits);
                let keys: Vec<PublicKey> = self.peers.iter().map(|p| p.key).collect();
                for key in keys {
                    self.maybe_initiate(&key);
                }
            }
            ControlEvent::RelayFrame { src, payload } => {
                let now = self.now_hint;
                self.handle_relay_frame(src, &payload, now);
            }
            ControlEvent::Peer(info) => self.handle_peer_info(&info),
            ControlEvent::Acl(policy) => self.acl.lock().set_policy(policy),
            ControlEvent::PeerGone(key) => self.remove_peer(&key),
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
            // The order is the control client's; `status` reads it from there. The driver keeps
            // the deployment's list for the next start (`Node::restore_servers`).
            ControlEvent::Servers(list) => self.events.push_back(NodeEvent::Servers(list)),
            ControlEvent::Disconnected => {
                // The server forgets our relay identity with the stream; direct paths stay.
                self.relay.clear();
                self.discovery.set_server_answers_tcp(false, self.now_hint);
                self.events.push_back(NodeEvent::ServerDisconnected)
            }
        }
    }

    /// Brings the session up as soon as the peer can be reached, directly or through the relay,
    /// before traffic needs it. Only the side with the lower key starts, so two nodes don't race
    /// two handshakes; the other side's retry timer covers a lost first attempt.
    fn maybe_initiate(&mut self, key: &PublicKey) {
        if self.public >= *key {
            return;
        }
        let Some(peer) = self.peers.get(key) else {
            return;
        };
        let Some(route) = self.route_to(peer) else {
            return;
        };
        if peer.session_fresh(self.now_hint) || peer.handshake_retry.is_some() {
            return;
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.handshake_retry = Some(self.now_hint + HANDSHAKE_RETRY);
        if let Some(init) = peer
            .tunnel
            .initiate(&mut self.scratch, false, self.now_hint)
        {
            relaying::send(route, init, &mut self.transmits, &mut self.control);
        }
    }

    /// The WireGuard engine for peers added from now on (`[dataplane] wireguard`); `unix_now`
    /// is the wall clock (time since 1970) at `now`, for our engine's handshake timestamps.
    pub fn set_wireguard(
        &mut self,
        engine: crate::core::crypto::Engine,
        now: Instant,
        unix_now: Duration,
    ) {
        self.peers.set_engine(crate::core::crypto::EngineConfig {
            engine,
            clock: Some((now, unix_now)),
        });
    }

    // ---- data path ------------------------------------------------------------------------

    /// Encrypts a packet read from the TUN device into `out`.
    pub fn handle_tun_packet<'a>(
        &mut self,
        packet: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> TunOutcome<'a> {
        self.now_hint = now;
        let outcome = self.gate_and_route(packet, now, out);
        if let TunOutcome::Dropped(reason) = outcome {
            self.drops.bump(reason);
        }
        outcome
    }

    fn route_tun_packet<'a>(&mut self, packet: &[u8], out: &'a mut [u8]) -> TunOutcome<'a> {
        let dst = match ip_endpoints(packet) {
            Ok(ends) => ends.dst,
            Err(IpError::NotIpv4 | IpError::UnknownVersion) => {
                return TunOutcome::Dropped(DropReason::UnsupportedProtocol)
            }
            Err(IpError::Truncated) => return TunOutcome::Dropped(DropReason::Malformed),
        };
        let Some(assignment) = &self.assignment else {
            return TunOutcome::Dropped(DropReason::NoRoute);
        };
        if let Err(reason) = filter::outbound(assignment, dst) {
            return TunOutcome::Dropped(reason);
        }
        let Some(key) = self.peers.by_addr(dst) else {
            return TunOutcome::Dropped(DropReason::NoRoute);
        };
        let route = match self.peers.get(&key).and_then(|p| self.route_to(p)) {
            Some(r) => r,
            None => return TunOutcome::Dropped(DropReason::PeerUnreachable),
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return TunOutcome::Dropped(DropReason::NoRoute);
        };
        // Remembered as a flow so the peer's replies pass this node's access rules.
        self.acl
            .lock()
            .outbound(peer.virtual_ip, packet, self.now_hint);
        let header = match route {
            Route::RelayUdp { .. } => relay_wire::DATA_HEADER,
            _ => 0,
        };
        if out.len() < header + packet.len() + super::crypto::OVERHEAD || out.len() < header + 148 {
            return TunOutcome::Dropped(DropReason::Malformed);
        }
        let len = match peer
            .tunnel
            .encapsulate(packet, &mut out[header..], self.now_hint)
        {
            Ok(Encapsulated::Data(d)) | Ok(Encapsulated::Handshake(d)) => d.len(),
            Ok(Encapsulated::Queued) => return TunOutcome::Queued,
            Err(reason) => return TunOutcome::Dropped(reason),
        };
        match route {
            Route::Direct { socket, dst } => {
                peer.punch.note_tx(self.now_hint);
                TunOutcome::Send {
                    socket,
                    dst,
                    datagram: &out[..len],
                }
            }
            Route::RelayUdp { server, id } => {
                relay_wire::write_to_peer_header(out, id);
                TunOutcome::Send {
                    socket: SocketId::MAIN,
                    dst: server,
                    datagram: &out[..header + len],
                }
            }
            Route::RelayStream { id } => {
                self.control
                    .send_relay_frame(&relay_wire::stream_frame(id, &out[..len]));
                TunOutcome::Stream
            }
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
            DatagramKind::Relay => return self.handle_relay_datagram(from, datagram, now, out),
            DatagramKind::Unknown => return DatagramOutcome::Dropped(DropReason::Malformed),
        };
        self.receive_wireguard(Origin::Direct { socket, from }, kind, datagram, now, out)
    }

    /// A WireGuard message of `kind` (as `classify` framed it), received directly or through the
    /// relay.
    fn receive_wireguard<'a>(
        &mut self,
        origin: Origin,
        kind: WgMessage,
        datagram: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> DatagramOutcome<'a> {
        let key = if kind == WgMessage::HandshakeInit {
            // Before `initiator_of`, the first Diffie-Hellman (whitepaper §5.3).
            if let Some(refused) = self.check_handshake_load(origin, datagram, now) {
                return refused;
            }
            match initiator_of(&self.secret, datagram) {
                Ok(key) => key,
                Err(reason) => return DatagramOutcome::Dropped(reason),
            }
        } else {
            let Some(index) = receiver_index(datagram, kind) else {
                return DatagramOutcome::Dropped(DropReason::Malformed);
            };
            let key = match self.peers.by_receiver_index_mut(index) {
                Some(peer) => peer.key,
                None => return DatagramOutcome::Dropped(DropReason::UnknownSession),
            };
            // No load check for responses: unlike an initiation, a response reaches the session
            // (and its DH) only under a receiver index we handed out in our own initiation,
            // which a flood cannot guess; and our engine's responder does not take cookie
            // replies to its responses, so a cookie here would stall a handshake between two
            // of our nodes while this one is under load (§5.3 allows either message a cookie).
            key
        };
        if let Origin::Relay(sender, _) = origin {
            // The server vouches for who relayed it; a packet of another peer's session inside
            // it is not believed.
            if sender != key {
                return DatagramOutcome::Dropped(DropReason::DecryptFailed);
            }
        }
        // Replies go back the way the message came: the same socket and address, or the relay.
        let reply_route = self.reply_route(origin);
        let from_ip = self.source(origin).ip();
        let Some(peer) = self.peers.get_mut(&key) else {
            return DatagramOutcome::Dropped(DropReason::UnknownPeer);
        };
        // Where `out` starts, to find the decrypted packet in it again (see the Tunnel arm).
        let out_start = out.as_ptr();
        let result = match peer.tunnel.decapsulate(from_ip, datagram, out, now) {
            Ok(r) => r,
            Err(reason) => return DatagramOutcome::Dropped(reason),
        };
        let authenticated = !matches!(&result, Decapsulated::Reply(r) if r.first() == Some(&3));
        if authenticated {
            peer.note_heard(now);
            match (kind, &result) {
                (WgMessage::Data, _) => peer.note_transport(now),
                (WgMessage::HandshakeInit, Decapsulated::Reply(_)) => peer.note_response_sent(now),
                _ => {}
            }
            if matches!(origin, Origin::Direct { .. }) {
                self.discovery.note_udp_works(now);
            }
        }
        if let (true, Origin::Direct { socket, from }) = (authenticated, origin) {
            // A session message proves the path as well as a probe would.
            peer.endpoint = Some(from);
            peer.socket = socket;
            let mut ctx = punch_ctx!(self, now);
            let event = if kind == WgMessage::HandshakeInit {
                // A new session's first message may come from a new port (`restarts`).
                peer.punch.handle_handshake_from(socket, from, &mut ctx)
            } else {
                peer.punch.handle_authenticated(socket, from, &mut ctx)
            };
            if let Some(crate::core::punch::session::PunchEvent::Nominated { detail, .. }) = event {
                punching::announce_switch(peer, &detail, from, &mut self.events);
            }
        }
        match result {
            Decapsulated::Tunnel { packet, src } => {
                if let Err(reason) = filter::inbound(peer, self.assignment.as_ref(), src, packet) {
                    return DatagramOutcome::Dropped(reason);
                }
                let peer_ip = peer.virtual_ip;
                // The answer to `p2pvpn ping` is ours, not the TUN device's.
                let path = |node: &Node| match origin {
                    Origin::Direct { .. } => node
                        .peers
                        .get(&key)
                        .and_then(|p| p.punch.nominated())
                        .map(|n| n.detail.clone())
                        .unwrap_or_else(|| "direct".to_string()),
                    Origin::Relay(_, transport) => format!("relay ({transport})"),
                };
                if self.take_pmtu_answer(packet, peer_ip, now)
                    || self.answer_pmtu_probe(packet, peer_ip)
                    || self.take_ping_reply(packet, peer_ip, path, now)
                {
                    return DatagramOutcome::Consumed;
                }
                // The access rules (`core::acl`): after the node's own probes and ping
                // answers, which are not traffic to the host, before the TUN device.
                if self.acl.lock().inbound(peer_ip, packet, now).is_err() {
                    return DatagramOutcome::Dropped(DropReason::AccessDenied);
                }
                // `packet` lies inside `out`: find it there by address, so a SYN can be clamped
                // in place (the borrow through `result` ends here).
                let start = (packet.as_ptr() as usize).wrapping_sub(out_start as usize);
                let range = start..start.saturating_add(packet.len());
                let Some(packet) = out.get_mut(range) else {
                    return DatagramOutcome::Dropped(DropReason::Malformed);
                };
                self.clamp_received_syn(packet, peer_ip);
                DatagramOutcome::WriteTun(packet)
            }
            Decapsulated::Reply(reply) => {
                if let Some(route) = reply_route {
                    relaying::send(route, reply, &mut self.transmits, &mut self.control);
                    while let Some(queued) = peer.tunnel.poll_queued(&mut self.scratch, now) {
                        relaying::send(route, queued, &mut self.transmits, &mut self.control);
                    }
                }
                DatagramOutcome::Consumed
            }
            Decapsulated::Nothing => DatagramOutcome::Consumed,
        }
    }

    /// Where a message came from, as an address: the datagram's source, or for a relayed one
    /// the relay server's address (`handle_relay_datagram` takes relayed datagrams only from
    /// `stun_server`, and stream frames come from the same server), or 0.0.0.0:0 without one.
    fn source(&self, origin: Origin) -> SocketAddr {
        match origin {
            Origin::Direct { from, .. } => from,
            Origin::Relay(..) => self
                .stun_server
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
        }
    }

    /// The way back to a message's sender: the same socket and address, or the relay to the
    /// member the server says sent it.
    fn reply_route(&self, origin: Origin) -> Option<Route> {
        match origin {
            Origin::Direct { socket, from } => Some(Route::Direct { socket, dst: from }),
            Origin::Relay(sender, _) => self.peers.get(&sender).and_then(|p| {
                relaying::relay_route(p, &self.relay, &self.control, self.stun_server)
            }),
        }
    }

    /// Our engine's defence against handshake floods (whitepaper §5.3, §5.4.7;
    /// `core::wg::cookie`), for an initiation before any Diffie-Hellman on it:
    /// `None` to go on, or what became of the message. Under load, one without the right mac2
    /// for its source is answered with a cookie reply and counted as `RateLimited`, as the
    /// boringtun path counts its `UnderLoad`.
    ///
    /// The cookie τ is bound to [`Node::source`]: for a relayed message that is the relay
    /// server's address, the one address the node knows for it (the member's own address is
    /// not on the datagram), and the reply goes back through the relay to the member the server
    /// vouches for. So relayed members share one τ per Rm, which gives a member (the server
    /// admits only members to the relay) nothing it could not get by asking; one could also
    /// send direct datagrams forged from the server's address with it, which is what a cookie
    /// for its own address already allows it at that rate (cookies prove an address, they do
    /// not limit a sender that holds one).
    ///
    /// Only on our engine: boringtun's `Tunn` has its own limiter (per peer) and a second
    /// guard in front of it would demand a second, different cookie.
    fn check_handshake_load(
        &mut self,
        origin: Origin,
        datagram: &[u8],
        now: Instant,
    ) -> Option<DatagramOutcome<'static>> {
        if self.peers.engine().engine != Engine::Own {
            return None;
        }
        let source = self.source(origin);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        let verdict = self
            .cookies
            .check(datagram, source, now, &mut self.rng, &mut reply);
        match verdict {
            Ok(Verdict::Proceed) => None,
            Ok(Verdict::CookieReply(cookie_reply)) => {
                // To the source only: τ is the source's, so a reply elsewhere would be useless
                // to the sender and a reflection for whoever forged the source.
                if let Some(route) = self.reply_route(origin) {
                    relaying::send(route, cookie_reply, &mut self.transmits, &mut self.control);
                }
                Some(DatagramOutcome::Dropped(DropReason::RateLimited))
            }
            Err(CookieError::Mac1) => Some(DatagramOutcome::Dropped(DropReason::DecryptFailed)),
            Err(CookieError::NotHandshake | CookieError::Seal) => {
                Some(DatagramOutcome::Dropped(DropReason::Malformed))
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
        self.ipv6_timeout(now);
        self.drive_punches(now);
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TIMER_TICK;
        self.read_worker_activity();
        self.drive_pmtu(now);
        self.relay.handle_timeout(now, &mut self.transmits);
        self.after_relay_progress();
        let routes: Vec<(PublicKey, Option<Route>)> = self
            .peers
            .iter()
            .map(|p| (p.key, self.route_to(p)))
            .collect();
        let tls = self.control.current_server().is_some_and(|s| s.tls);
        for (key, route) in routes {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if let Ok(Some(message)) = peer.tunnel.update_timers(&mut self.scratch, now) {
                if let Some(route) = route {
                    relaying::send(route, message, &mut self.transmits, &mut self.control);
                }
            }
            let path = status::shown_path(peer, route, now);
            let retry_due = peer.handshake_retry.is_some_and(|t| now >= t);
            if peer.session_fresh(now) {
                peer.handshake_retry = None;
            } else if let (true, Some(route)) = (retry_due, route) {
                // Either side may start a handshake (whitepaper §5.1); the higher key waits
                // longer, so normally only the lower key's initiation is in flight.
                if let Some(init) = peer.tunnel.initiate(&mut self.scratch, true, now) {
                    relaying::send(route, init, &mut self.transmits, &mut self.control);
                }
                peer.handshake_retry = Some(now + HANDSHAKE_RETRY);
            } else if peer.handshake_retry.is_none() && route.is_some() {
                // A peer became reachable (a relay binding, a nominated path) without a session.
                let wait = if self.public < key {
                    Duration::ZERO
                } else {
                    HANDSHAKE_RETRY * 2
                };
                peer.handshake_retry = Some(now + wait);
            }
            if path != peer.last_path {
                peer.last_path = path;
                // An offline peer has no endpoint to name, whatever path it last had.
                let route = route.filter(|_| path != Path::Offline);
                let endpoint = match route {
                    Some(Route::Direct { dst, .. }) => Some(dst),
                    Some(Route::RelayUdp { server, .. }) => Some(server),
                    Some(Route::RelayStream { .. }) => {
                        self.control.current_server().map(|s| s.addr)
                    }
                    None => None,
                };
                self.events.push_back(NodeEvent::PathChanged {
                    name: peer.name.clone(),
                    virtual_ip: peer.virtual_ip,
                    path,
                    endpoint,
                    relay: route.and_then(|r| r.relay_name(tls)),
                    detail: (path == Path::Direct)
                        .then(|| peer.punch.nominated().map(|n| n.detail.clone()))
                        .flatten(),
                });
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let control = self.control.poll_timeout();
        let tick = (!self.peers.is_empty()).then_some(self.next_tick);
        let discovery = self.discovery.poll_timeout();
        // The relay is driven on the timer tick (`handle_timeout`), so its deadline counts from
        // the next tick: reported earlier, it would wake the driver over and over until then.
        let relay = self.relay.poll_timeout().map(|t| t.max(self.next_tick));
        let can_offer = self.control.is_registered() && self.discovery.can_offer_now();
        let punch = self
            .peers
            .iter()
            .filter_map(|p| p.punch.poll_timeout(can_offer && p.online))
            .min();
        let ipv6 = self.ipv6_poll_timeout();
        [control, tick, discovery, relay, punch, ipv6]
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

    /// A packet that came through the relay stream, for the TUN device.
    pub fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        self.tun_queue.pop_front()
    }
}
