//! The rendezvous server's state machine: one Noise channel per node connection, joins, member
//! registration, and the peer map pushed to every online member as it changes. The driver owns the
//! sockets; this owns who is online and what each node is told.

use super::admission::{redeem, JoinRequest};
use super::candidates;
use super::channel::SecureChannel;
use super::fanout::PeerMaps;
use super::messages::{decode, encode, ClientMessage, PeerInfo, Refusal, ServerMessage};
use super::registry::{Member, Network, Registry};
use super::token::Credential;
use crate::core::keys::{PublicKey, SecretKey};
use crate::core::nat::NatProfile;
use crate::core::punch::PunchOffer;
use crate::core::relay::server::{FrameVerdict, RelayServer, RelayTicket, UdpVerdict};
use crate::core::relay::wire;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod acl_push;
mod deadlines;
use deadlines::ConnClock;
pub use deadlines::{ConnDeadlines, Stage};

/// A registered node's connection with no message for this long is closed (nodes ping every
/// 15 s). Connections without a session have shorter deadlines (`ConnDeadlines`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub type ConnId = u64;

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerOutput {
    Send(ConnId, Vec<u8>),
    /// A relay frame for a node's control stream: dropped, not waited for, when that node's
    /// queue is full (the relay never lets one slow node hold the server up).
    Relay(ConnId, Vec<u8>),
    /// A relayed datagram for a node bound over UDP, sent from our socket `via`.
    Udp {
        via: SocketAddr,
        to: SocketAddr,
        datagram: Vec<u8>,
    },
    /// Close after writing everything queued before it.
    Close(ConnId),
}

/// Counters the server reports.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ServerStats {
    pub connections_refused: u64,
    pub bad_handshakes: u64,
    pub bad_messages: u64,
    pub joins: u64,
    /// Endpoints and punch candidates removed because the member does not hold them.
    pub candidates_dropped: u64,
    /// Connections closed by a deadline (handshake, join or idle).
    pub timed_out: u64,
}

struct Session {
    network: String,
    key: PublicKey,
    endpoints: Vec<SocketAddr>,
    nat: Option<NatProfile>,
    relay: Option<RelayTicket>,
    /// The access rules last sent to this node (`acl_push`).
    acl: Option<crate::core::acl::policy::NodePolicy>,
}

struct Conn {
    channel: SecureChannel,
    remote: SocketAddr,
    clock: ConnClock,
    session: Option<Session>,
}

pub struct ServerCore<R> {
    secret: SecretKey,
    registry: R,
    conns: HashMap<ConnId, Conn>,
    online: HashMap<(String, PublicKey), ConnId>,
    /// The members of each network as last read (to tell who was removed when the store
    /// changes) and the peer-map changes not yet pushed.
    maps: PeerMaps,
    /// The latest clock reading handed in, for events that come without one.
    last_now: Option<Instant>,
    out: VecDeque<ServerOutput>,
    stats: ServerStats,
    relay: RelayServer,
}

/// What the driver does with a relay datagram that arrived on UDP.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayUdpAction {
    /// Send these bytes back to the sender.
    Reply(Vec<u8>),
    /// Send the first `len` bytes of the rewritten buffer to `to`, from our socket `via`.
    Forward {
        via: SocketAddr,
        to: SocketAddr,
        len: usize,
    },
    /// Handled (queued into a control stream, or dropped).
    Done,
}

impl<R: Registry> ServerCore<R> {
    pub fn new(secret: SecretKey, registry: R, relay: RelayServer) -> Self {
        ServerCore {
            relay,
            secret,
            registry,
            conns: HashMap::new(),
            online: HashMap::new(),
            maps: PeerMaps::default(),
            last_now: None,
            out: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// Whether `conn` belongs to a registered node (the driver never evicts those for newcomers).
    pub fn is_member(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.session.is_some())
    }

    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    pub fn registry_mut(&mut self) -> &mut R {
        &mut self.registry
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The relay figures of every registered node holding a relay binding, for metrics.
    pub fn relay_stats(
        &self,
    ) -> Vec<(
        String,
        PublicKey,
        crate::core::relay::server::RelayNodeStats,
    )> {
        self.conns
            .values()
            .filter_map(|c| c.session.as_ref())
            .filter_map(|s| {
                let stats = self.relay.stats(s.relay?.id)?;
                Some((s.network.clone(), s.key, stats))
            })
            .collect()
    }

    pub fn online_count(&self) -> usize {
        self.online.len()
    }

    pub fn handle_open(&mut self, conn: ConnId, remote: SocketAddr, now: Instant) {
        self.last_now = Some(now);
        match SecureChannel::responder(&self.secret) {
            Ok(channel) => {
                self.conns.insert(
                    conn,
                    Conn {
                        channel,
                        remote,
                        clock: ConnClock::new(now),
                        session: None,
                    },
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a Noise responder");
                self.out.push_back(ServerOutput::Close(conn));
            }
        }
    }

    pub fn handle_bytes(&mut self, conn: ConnId, bytes: &[u8], now: Instant, unix_now: u64) {
        self.last_now = Some(now);
        self.receive(conn, bytes, now, unix_now);
        self.flush_peer_maps_if_due();
    }

    fn receive(&mut self, conn: ConnId, bytes: &[u8], now: Instant, unix_now: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_established = c.channel.is_established();
        if let Err(e) = c.channel.handle_bytes(bytes) {
            if was_established {
                self.stats.bad_messages += 1;
            } else {
                self.stats.bad_handshakes += 1;
            }
            tracing::debug!(%conn, remote = %c.remote, error = %e, "dropping connection");
            self.close(conn);
            return;
        }
        if !was_established && c.channel.is_established() {
            c.clock.established(now);
        }
        self.flush(conn);
        let mut messages = Vec::new();
        if let Some(c) = self.conns.get_mut(&conn) {
            while let Some(m) = c.channel.poll_message() {
                messages.push(m);
            }
        }
        for m in messages {
            if let Some((dst, payload)) = wire::parse_stream_frame(&m) {
                if !self.is_member(conn) {
                    self.close_stranger(conn, "relay frame");
                    return;
                }
                self.handle_relay_frame(conn, dst, payload, now);
            } else {
                self.handle_message(conn, &m, unix_now, now);
            }
            // Only whole messages of a registered node move its idle deadline; a stranger's
            // join deadline stays where the handshake put it.
            match self.conns.get_mut(&conn) {
                Some(c) if c.session.is_some() => c.clock.message(now),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// A connection without a session sent something other than `Join` or `Hello`: it is not
    /// answered (a ping from a random key must not keep a connection alive), but closed.
    fn close_stranger(&mut self, conn: ConnId, what: &str) {
        self.stats.bad_messages += 1;
        tracing::debug!(%conn, what, "message before Join/Hello; closing the connection");
        self.close(conn);
    }

    fn handle_message(&mut self, conn: ConnId, bytes: &[u8], unix_now: u64, now: Instant) {
        let Some(key) = self
            .conns
            .get(&conn)
            .and_then(|c| c.channel.remote_static())
        else {
            return;
        };
        let message = match decode::<ClientMessage>(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages += 1;
                tracing::debug!(%conn, error = %e, "undecodable message");
                self.close(conn);
                return;
            }
        };
        let message = match self.conns.get(&conn) {
            Some(c) => {
                let (message, dropped) = candidates::vet_message(message, &key, c.remote);
                self.stats.candidates_dropped += dropped as u64;
                message
            }
            None => message,
        };
        match message {
            ClientMessage::Join {
                network,
                credential,
                name,
            } => self.handle_join(conn, key, &network, &credential, &name, unix_now),
            ClientMessage::Hello {
                network,
                endpoints,
                nat,
            } => self.handle_hello(conn, key, network, endpoints, nat, now),
            ClientMessage::Leave { network } => self.handle_leave(conn, key, &network),
            _ if !self.is_member(conn) => self.close_stranger(conn, "control message"),
            ClientMessage::Endpoints { endpoints, nat } => {
                self.handle_endpoints(conn, endpoints, nat)
            }
            ClientMessage::Punch { peer, offer } => self.handle_punch(conn, key, peer, offer),
            ClientMessage::Ping => self.send(conn, &ServerMessage::Pong),
        }
    }

    fn handle_join(
        &mut self,
        conn: ConnId,
        key: PublicKey,
        network: &str,
        credential: &str,
        name: &str,
        unix_now: u64,
    ) {
        let reply = match Credential::from_base64(credential) {
            None => ServerMessage::Refused {
                refusal: Refusal::BadCredential {
                    network: network.to_string(),
                },
            },
            Some(credential) => {
                let req = JoinRequest {
                    network,
                    credential: &credential,
                    name,
                    key,
                };
                match redeem(&mut self.registry, &req, unix_now) {
                    Ok(Ok(member)) => {
                        self.stats.joins += 1;
                        self.maps.admit(&member);
                        tracing::info!(network, name = member.name, key = %key.short(), ip = %member.virtual_ip, "node joined");
                        self.refresh_acl(network);
                        let net = self.registry.network(network).ok().flatten();
                        match net {
                            Some(net) => ServerMessage::Joined {
                                ipv6: node_ipv6(&net, &member),
                                network: member.network,
                                name: member.name,
                                virtual_ip: member.virtual_ip,
                                cidr: net.cidr,
                            },
                            None => ServerMessage::Refused {
                                refusal: Refusal::ServerError,
                            },
                        }
                    }
                    Ok(Err(refusal)) => {
                        self.stats.connections_refused += 1;
                        // Quoted and cut short: these strings come from the client unchecked.
                        let name: String = name.chars().take(64).collect();
                        tracing::info!(?network, ?name, %refusal, "join refused");
                        ServerMessage::Refused { refusal }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "join failed in the store");
                        ServerMessage::Refused {
                            refusal: Refusal::ServerError,
                        }
                    }
                }
            }
        };
        self.send(conn, &reply);
        self.close(conn);
    }

    /// `p2pvpn leave`: the channel's own key leaves the network (nobody can remove another
    /// member this way: the key is the one the Noise handshake proved). Its peers are told it is
    /// gone, as after `network remove-member`.
    fn handle_leave(&mut self, conn: ConnId, key: PublicKey, network: &str) {
        let reply = match self.registry.remove(network, &key) {
            Ok(true) => {
                tracing::info!(network, key = %key.short(), "member left");
                self.remove_member(network, key);
                self.refresh_acl(network);
                ServerMessage::Left {
                    network: network.to_string(),
                }
            }
            Ok(false) => {
                self.stats.connections_refused += 1;
                let network = network.chars().take(64).collect();
                ServerMessage::Refused {
                    refusal: Refusal::NotAMember { network },
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "leave failed in the store");
                ServerMessage::Refused {
                    refusal: Refusal::ServerError,
                }
            }
        };
        self.send(conn, &reply);
        self.close(conn);
    }

    fn handle_hello(
        &mut self,
        conn: ConnId,
        key: PublicKey,
        network: String,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatProfile>,
        now: Instant,
    ) {
        let lookup = self
            .registry
            .network(&network)
            .and_then(|n| Ok((n, self.registry.member(&network, &key)?)));
        let (net, member) = match lookup {
            Ok((Some(net), Some(member))) => (net, member),
            Ok(_) => {
                self.stats.connections_refused += 1;
                let refusal = Refusal::NotAMember { network };
                self.send(conn, &ServerMessage::Refused { refusal });
                self.close(conn);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "registration failed in the store");
                let refusal = Refusal::ServerError;
                self.send(conn, &ServerMessage::Refused { refusal });
                self.close(conn);
                return;
            }
        };
        // A repeated Hello on this connection replaces its session: free the relay ticket the
        // old one held (else each Hello would take another, until the relay is full).
        let previous = self.conns.get_mut(&conn).and_then(|c| c.session.take());
        if let Some(t) = previous.and_then(|s| s.relay) {
            self.relay.unregister(t.id);
        }
        // A node that reconnects before its old connection timed out replaces it.
        if let Some(old) = self.online.insert((network.clone(), key), conn) {
            if old != conn {
                let old_relay = self
                    .conns
                    .get_mut(&old)
                    .and_then(|c| c.session.take())
                    .and_then(|s| s.relay);
                if let Some(t) = old_relay {
                    self.relay.unregister(t.id);
                }
                self.close(old);
            }
        }
        let relay = self.relay.register(conn, &network, key, now);
        let acl = self.policy_of(&member);
        if let Some(c) = self.conns.get_mut(&conn) {
            tracing::info!(network, name = member.name, remote = %c.remote, "node online");
            c.session = Some(Session {
                network: network.clone(),
                key,
                endpoints,
                nat,
                relay,
                acl: acl.clone(),
            });
        }
        let welcome = ServerMessage::Welcome {
            network: network.clone(),
            name: member.name.clone(),
            virtual_ip: member.virtual_ip,
            cidr: net.cidr,
            relay,
            ipv6: node_ipv6(&net, &member),
            acl,
        };
        if !self.queue(conn, &encode(&welcome)) {
            return;
        }
        if self.maps.is_loaded(&network) {
            self.maps.admit(&member);
        } else {
            match self.registry.members(&network) {
                Ok(members) => {
                    self.maps.load(&network, members);
                }
                Err(e) => tracing::error!(error = %e, "cannot read the member list"),
            }
        }
        self.flush(conn);
        self.maps.registered(&network, key);
    }

    fn handle_endpoints(
        &mut self,
        conn: ConnId,
        endpoints: Vec<SocketAddr>,
        nat: Option<NatProfile>,
    ) {
        let Some(session) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) else {
            return;
        };
        session.endpoints = endpoints;
        if nat.is_some() {
            session.nat = nat;
        }
        let (network, key) = (session.network.clone(), session.key);
        self.maps.mark(&network, key);
    }

    /// A relay frame from a node's control stream (its UDP to us is blocked).
    fn handle_relay_frame(&mut self, conn: ConnId, dst: u32, payload: &[u8], now: Instant) {
        let Some(src) = self
            .conns
            .get(&conn)
            .and_then(|c| c.session.as_ref())
            .and_then(|s| s.relay)
            .map(|t| t.id)
        else {
            return;
        };
        match self.relay.handle_frame(src, dst, payload, now) {
            FrameVerdict::Udp { via, to, datagram } => {
                self.out.push_back(ServerOutput::Udp { via, to, datagram })
            }
            FrameVerdict::ToStream { conn, frame } => self.send_raw(conn, &frame),
            FrameVerdict::Drop(_) => {}
        }
    }

    /// A relay datagram on the server's UDP port (`wire::is_relay`); `buf` may be rewritten in
    /// place for forwarding.
    pub fn handle_relay_udp(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
    ) -> RelayUdpAction {
        match self.relay.handle_udp(local, from, buf, now) {
            UdpVerdict::Reply(bytes) => RelayUdpAction::Reply(bytes),
            UdpVerdict::Forward { via, to, len } => RelayUdpAction::Forward { via, to, len },
            UdpVerdict::ToStream { conn, frame } => {
                self.send_raw(conn, &frame);
                RelayUdpAction::Done
            }
            UdpVerdict::Drop(_) => RelayUdpAction::Done,
        }
    }

    pub fn relay(&self) -> &RelayServer {
        &self.relay
    }

    fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.channel.send(bytes).is_err() {
            return;
        }
        if let Some(bytes) = c.channel.take_outgoing() {
            self.out.push_back(ServerOutput::Relay(conn, bytes));
        }
    }

    /// Relays a punch offer between two online members of one network. The server coordinates
    /// the start; it cannot forge the probes that follow (they are sealed end to end).
    fn handle_punch(&mut self, conn: ConnId, from: PublicKey, to: PublicKey, offer: PunchOffer) {
        let Some(network) = self
            .conns
            .get(&conn)
            .and_then(|c| c.session.as_ref())
            .filter(|s| s.key == from)
            .map(|s| s.network.clone())
        else {
            return;
        };
        let Some(&target) = self.online.get(&(network.clone(), to)) else {
            tracing::debug!(from = %from.short(), to = %to.short(), "punch offer for an offline peer dropped");
            return;
        };
        // The target aims sweeps only at the public IP the server passed it for the sender
        // (core::punch::budget), and the sender's new endpoints may still wait for the next
        // batch (fanout): its current entry goes first, so the offer never outruns it.
        if let Some(member) = self.maps.member(&network, &from).cloned() {
            let peer = peer_info(&self.online, &self.conns, &member);
            self.send(target, &ServerMessage::Peer { peer });
        }
        self.send(target, &ServerMessage::Punch { peer: from, offer });
    }

    /// Pushes the pending peer-map changes if a batch is due (`fanout`).
    fn flush_peer_maps_if_due(&mut self) {
        match self.last_now {
            Some(now) if self.maps.is_due(now) => self.flush_peer_maps(now),
            _ => {}
        }
    }

    /// One batch per online member of each network that changed: the changed entries but its
    /// own, in as few messages as fit, encrypted and handed to the driver as one write.
    fn flush_peer_maps(&mut self, now: Instant) {
        let changes = {
            let (online, conns) = (&self.online, &self.conns);
            self.maps.take_changes(now, |m| peer_info(online, conns, m))
        };
        for change in changes {
            let shared = super::fanout::batches(change.entries.iter().map(|(_, b)| b.as_slice()));
            let changed: HashSet<PublicKey> = change.entries.iter().map(|(k, _)| *k).collect();
            let fresh: HashSet<PublicKey> = change.fresh.iter().copied().collect();
            let targets: Vec<(PublicKey, ConnId)> = self
                .online
                .iter()
                .filter(|((net, key), _)| *net == change.network && !fresh.contains(key))
                .map(|((_, key), conn)| (*key, *conn))
                .collect();
            for (key, conn) in targets {
                if changed.contains(&key) {
                    let own = super::fanout::batches(
                        change
                            .entries
                            .iter()
                            .filter(|(k, _)| *k != key)
                            .map(|(_, b)| b.as_slice()),
                    );
                    for part in &own {
                        self.queue(conn, part);
                    }
                } else {
                    for part in &shared {
                        self.queue(conn, part);
                    }
                }
                self.flush(conn);
            }
            // The newly registered, after the others heard of them: the whole map.
            for key in change.fresh {
                let Some(&conn) = self.online.get(&(change.network.clone(), key)) else {
                    continue;
                };
                let parts = {
                    let (online, conns) = (&self.online, &self.conns);
                    self.maps
                        .full_map(&change.network, &key, |m| peer_info(online, conns, m))
                };
                for part in &parts {
                    self.queue(conn, part);
                }
                self.flush(conn);
            }
        }
    }

    fn broadcast(&mut self, network: &str, except: PublicKey, message: &ServerMessage) {
        let targets: Vec<ConnId> = self
            .online
            .iter()
            .filter(|((net, key), _)| net == network && *key != except)
            .map(|(_, c)| *c)
            .collect();
        for conn in targets {
            self.send(conn, message);
        }
    }

    fn send(&mut self, conn: ConnId, message: &ServerMessage) {
        if self.queue(conn, &encode(message)) {
            self.flush(conn);
        }
    }

    /// Encrypts one message into `conn`'s outgoing bytes without handing them to the driver yet,
    /// so several messages become one write. False if the connection is gone or was closed.
    fn queue(&mut self, conn: ConnId, plaintext: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if let Err(e) = c.channel.send(plaintext) {
            tracing::warn!(%conn, error = %e, "cannot send a control message");
            self.close(conn);
            return false;
        }
        true
    }

    fn flush(&mut self, conn: ConnId) {
        if let Some(bytes) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.channel.take_outgoing())
        {
            self.out.push_back(ServerOutput::Send(conn, bytes));
        }
    }

    /// Forgets the connection now and asks the driver to close it.
    fn close(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.out.push_back(ServerOutput::Close(conn));
        }
        self.forget(conn);
    }

    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(session) = c.session else {
            return;
        };
        if let Some(t) = session.relay {
            self.relay.unregister(t.id);
        }
        let slot = (session.network.clone(), session.key);
        if self.online.get(&slot) == Some(&conn) {
            self.online.remove(&slot);
            if let Some(member) = self.maps.member(&session.network, &session.key) {
                tracing::info!(
                    network = session.network,
                    name = member.name,
                    "node offline"
                );
            }
            self.maps.mark(&session.network, session.key);
        }
    }

    /// The driver saw the stream end.
    pub fn handle_closed(&mut self, conn: ConnId) {
        self.forget(conn);
        self.flush_peer_maps_if_due();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.flush_peer_maps_if_due();
        let limits = ConnDeadlines::DEFAULT;
        let due: Vec<(ConnId, Stage)> = self
            .conns
            .iter()
            .filter(|(_, c)| now >= c.clock.deadline(&limits, c.session.is_some()))
            .map(|(id, c)| (*id, c.clock.stage(c.session.is_some())))
            .collect();
        for (conn, stage) in due {
            self.stats.timed_out += 1;
            tracing::debug!(%conn, reason = stage.reason(), "closing connection");
            self.close(conn);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().map(|c| {
            c.clock
                .deadline(&ConnDeadlines::DEFAULT, c.session.is_some())
        });
        // A batch that is due now was already flushed at the end of the last event.
        let batch = self.maps.due().flatten();
        conns.chain(batch).min()
    }

    /// Membership changed in the store (e.g. `network remove-member`): cut removed nodes off and
    /// tell everyone else, whether the removed node was online or not.
    pub fn handle_registry_changed(&mut self) {
        let networks: HashSet<String> = self.online.keys().map(|(n, _)| n.clone()).collect();
        for network in networks {
            let members = match self.registry.members(&network) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "cannot re-read membership");
                    continue;
                }
            };
            for key in self.maps.load(&network, members.clone()) {
                self.remove_member(&network, key);
            }
            self.push_acl(&network, &members);
        }
        self.flush_peer_maps_if_due();
    }

    fn remove_member(&mut self, network: &str, key: PublicKey) {
        tracing::info!(network, key = %key.short(), "member removed; cutting it off");
        self.maps.remove(network, &key);
        if let Some(conn) = self.online.remove(&(network.to_string(), key)) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
            let refusal = Refusal::Removed {
                network: network.to_string(),
            };
            self.send(conn, &ServerMessage::Refused { refusal });
            self.close(conn);
        }
        self.broadcast(network, key, &ServerMessage::PeerGone { public_key: key });
    }

    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.out.pop_front()
    }
}

/// What a node is told about `member`: its registry record and, while it is online, its session.
fn peer_info(
    online: &HashMap<(String, PublicKey), ConnId>,
    conns: &HashMap<ConnId, Conn>,
    member: &Member,
) -> PeerInfo {
    let session = online
        .get(&(member.network.clone(), member.public_key))
        .and_then(|c| conns.get(c))
        .and_then(|c| c.session.as_ref());
    PeerInfo {
        name: member.name.clone(),
        public_key: member.public_key,
        virtual_ip: member.virtual_ip,
        endpoints: session.map(|s| s.endpoints.clone()).unwrap_or_default(),
        online: session.is_some(),
        nat: session.and_then(|s| s.nat.clone()),
        relay_id: session.and_then(|s| s.relay.map(|t| t.id)),
        ipv6: member.ipv6,
    }
}

/// The member's IPv6 address with the network's prefix length, when the network has a prefix.
fn node_ipv6(net: &Network, member: &Member) -> Option<ipnet::Ipv6Net> {
    let prefix = net.ipv6?;
    ipnet::Ipv6Net::new(member.ipv6?, prefix.prefix_len()).ok()
}

#[cfg(test)]
mod tests;
