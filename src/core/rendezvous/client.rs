//! The node's side of the control channel: connect (with backoff and jitter across the servers in
//! the token), register, keep alive, and turn server messages into events. Also the one-shot join
//! exchange that `p2pvpn join` runs.

use super::channel::{ChannelError, SecureChannel};
use super::deployment;
use super::messages::{decode, encode, ClientMessage, PeerInfo, Refusal, ServerMessage};
use super::token::JoinToken;
use crate::core::keys::{PublicKey, SecretKey};
use crate::core::nat::NatProfile;
use crate::core::punch::PunchOffer;
use crate::core::relay::server::RelayTicket;
use crate::core::relay::wire;
use ipnet::{Ipv4Net, Ipv6Net};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How often a registered node pings the server.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence after which the server is presumed gone and the node reconnects.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(45);
/// A ping the server has not answered (nor sent anything else) within this long: the server is
/// presumed gone, so a node of a deployment with several servers moves on within
/// `PING_INTERVAL + PONG_TIMEOUT` of a server going silent, not `SERVER_TIMEOUT`.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(5);
/// When another server is known, the first retry after losing a registered connection goes out
/// within this (jittered), not after the one-second backoff: failover within a few seconds.
const FAILOVER_JITTER: Duration = Duration::from_millis(250);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the node learns from the control channel.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlEvent {
    Registered {
        name: String,
        virtual_ip: Ipv4Addr,
        cidr: Ipv4Net,
        relay: Option<RelayTicket>,
        /// The node's IPv6 address with its prefix length, when the server gave one.
        ipv6: Option<Ipv6Net>,
    },
    Peer(PeerInfo),
    /// The access rules this node enforces (`None`: allow all).
    Acl(Option<crate::core::acl::policy::NodePolicy>),
    /// A packet the server relayed to us through the control stream.
    RelayFrame {
        src: u32,
        payload: Vec<u8>,
    },
    PeerGone(PublicKey),
    /// A punch offer or answer from a peer.
    Punch {
        peer: PublicKey,
        offer: PunchOffer,
    },
    /// The deployment's server list changed the order of servers to try; this is the
    /// deployment's own list (primary first, without the token's servers).
    Servers(Vec<ServerAddr>),
    /// The server refused us; `permanent` refusals stop reconnecting.
    Refused {
        refusal: Refusal,
        permanent: bool,
    },
    /// The driver must close the current stream (protocol error or silence).
    CloseStream,
    Disconnected,
}

enum State {
    Idle {
        retry_at: Instant,
    },
    Connecting,
    Open {
        channel: Box<SecureChannel>,
        registered: bool,
    },
    Stopped,
}

/// One way to reach the server: its plain TCP control port, or its TLS port (443 in most
/// configs) for networks that let nothing else out. The Noise channel runs inside either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tls {
            write!(f, "{} (TLS)", self.addr)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

impl ServerAddr {
    /// The order to try: the first plain address, then the first TLS one, then the next of each.
    /// A node behind a firewall that only lets 443 out reaches TLS after one failed attempt, and
    /// a node that can use plain TCP normally never gets past the first.
    pub fn list(plain: &[SocketAddr], tls: &[SocketAddr]) -> Vec<ServerAddr> {
        let mut out = Vec::with_capacity(plain.len() + tls.len());
        for i in 0..plain.len().max(tls.len()) {
            if let Some(&addr) = plain.get(i) {
                out.push(ServerAddr { addr, tls: false });
            }
            if let Some(&addr) = tls.get(i) {
                out.push(ServerAddr { addr, tls: true });
            }
        }
        out
    }
}

pub struct ControlClient {
    secret: SecretKey,
    server_key: PublicKey,
    servers: Vec<ServerAddr>,
    /// The servers the token (the config) named, kept behind the deployment's list.
    from_token: Vec<ServerAddr>,
    /// When the node last lost a server or moved to the primary (`deployment::should_move`).
    last_change: Option<Instant>,
    /// When the last ping went out, until anything comes back.
    ping_sent: Option<Instant>,
    /// Addresses still to try at once after losing a registered connection.
    failover_left: usize,
    network: String,
    endpoints: Vec<SocketAddr>,
    nat: Option<NatProfile>,
    /// What the last Hello carried: endpoints that changed while it was on its way (a NAT check
    /// result) are sent again once the server welcomes us.
    hello_sent: Option<(Vec<SocketAddr>, Option<NatProfile>)>,
    /// This process's run number, sent in every Hello (`ClientMessage::Hello::run`).
    run: Option<u64>,
    state: State,
    attempt: u32,
    next_server: usize,
    current_server: Option<ServerAddr>,
    last_rx: Instant,
    next_ping: Instant,
    rng: ChaCha8Rng,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ControlEvent>,
}

impl ControlClient {
    pub fn new(
        secret: SecretKey,
        server_key: PublicKey,
        servers: Vec<ServerAddr>,
        network: String,
        rng: ChaCha8Rng,
        now: Instant,
    ) -> Self {
        ControlClient {
            secret,
            server_key,
            from_token: servers.clone(),
            servers,
            last_change: None,
            ping_sent: None,
            failover_left: 0,
            network,
            endpoints: Vec::new(),
            nat: None,
            hello_sent: None,
            run: None,
            state: State::Idle { retry_at: now },
            attempt: 0,
            next_server: 0,
            current_server: None,
            last_rx: now,
            next_ping: now,
            rng,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The run number every Hello of this client names: drawn once per process, so peers can
    /// tell a restart from a reconnection.
    pub fn set_run(&mut self, run: u64) {
        self.run = Some(run);
    }

    pub fn is_registered(&self) -> bool {
        matches!(
            self.state,
            State::Open {
                registered: true,
                ..
            }
        )
    }

    /// This node's key, as the server and its peers know it.
    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    pub fn current_server(&self) -> Option<ServerAddr> {
        self.current_server
    }

    /// The servers in the order this node tries them (the deployment's, then the token's).
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// Before the first connection: the deployment's list a previous run of this node learned
    /// (`ControlEvent::Servers`), tried before the token's servers, as a fresh list would be.
    /// A node whose token names only servers that are gone still finds the deployment; the next
    /// list a server sends replaces this one.
    pub fn restore_servers(&mut self, learned: &[ServerAddr]) {
        if learned.is_empty() || self.current_server.is_some() {
            return;
        }
        let mut order: Vec<ServerAddr> = learned.to_vec();
        for s in &self.from_token {
            if !order.contains(s) {
                order.push(*s);
            }
        }
        self.servers = order;
        self.next_server = 0;
    }

    /// The deployment named its live servers, primary first: try them in that order, and move to
    /// the primary when settled (see `deployment`).
    fn handle_server_list(&mut self, plain: &[SocketAddr], tls: &[SocketAddr], now: Instant) {
        let order = deployment::merged_order(plain, tls, &self.from_token);
        if order.is_empty() {
            return;
        }
        if order != self.servers {
            self.servers = order;
            // The deployment's own list, without the token's: what is worth keeping for the
            // next start (`restore_servers`).
            let deployment = ServerAddr::list(plain, tls);
            self.events.push_back(ControlEvent::Servers(deployment));
        }
        // The next failure moves on from where we are, to the server after this one.
        self.next_server = self
            .current_server
            .and_then(|c| self.servers.iter().position(|s| *s == c))
            .unwrap_or(0);
        self.move_to_primary_if_settled(now);
    }

    /// On the deployment's primary already, or moved or failed over within `SETTLE`: nothing.
    /// Otherwise close the stream and connect to the primary. Called when a server list
    /// arrives and on every timeout, so a node that failed over from a primary that stayed up
    /// (its stream broke, the server shed it under load) goes back once settled, although no
    /// new list comes (`scripts/load.sh --compare` found nodes left on the standby for good).
    fn move_to_primary_if_settled(&mut self, now: Instant) {
        let primary = self.servers.first().copied();
        if self.is_registered()
            && deployment::should_move(self.current_server, primary, self.last_change, now)
        {
            tracing::info!(
                from = ?self.current_server.map(|s| s.to_string()),
                to = ?primary.map(|s| s.to_string()),
                "moving to the deployment's primary server, where every peer meets"
            );
            self.last_change = Some(now);
            self.events.push_back(ControlEvent::CloseStream);
            self.events.push_back(ControlEvent::Disconnected);
            self.next_server = 0;
            self.attempt = 0;
            self.state = State::Idle { retry_at: now };
        }
    }

    /// The server to open a stream to now, if it is time to.
    pub fn poll_connect(&mut self, now: Instant) -> Option<ServerAddr> {
        match self.state {
            State::Idle { retry_at } if retry_at <= now && !self.servers.is_empty() => {
                let server = self.servers[self.next_server % self.servers.len()];
                self.state = State::Connecting;
                self.current_server = Some(server);
                Some(server)
            }
            _ => None,
        }
    }

    pub fn handle_connected(&mut self, now: Instant) {
        match SecureChannel::initiator(&self.secret, &self.server_key) {
            Ok(mut channel) => {
                if let Some(bytes) = channel.take_outgoing() {
                    self.out.push_back(bytes);
                }
                self.last_rx = now;
                self.next_ping = now + PING_INTERVAL;
                self.state = State::Open {
                    channel: Box::new(channel),
                    registered: false,
                };
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the Noise handshake");
                self.schedule_retry(now);
            }
        }
    }

    pub fn handle_connect_failed(&mut self, now: Instant) {
        if matches!(self.state, State::Connecting) {
            self.schedule_retry(now);
        }
    }

    fn schedule_retry(&mut self, now: Instant) {
        let was_registered = self.is_registered();
        self.ping_sent = None;
        self.attempt = self.attempt.saturating_add(1);
        self.next_server = self.next_server.wrapping_add(1);
        if was_registered && self.servers.len() > 1 {
            // Failover: each other address once, at once (a little jitter spreads the herd
            // a dead server leaves): the next may be the dead server's second address. The
            // backoff starts when every address failed.
            self.failover_left = self.servers.len() - 1;
        }
        if self.failover_left > 0 {
            self.failover_left -= 1;
            if was_registered {
                self.last_change = Some(now);
            }
            self.attempt = 0;
            let jitter = FAILOVER_JITTER.mul_f64(self.rng.gen_range(0.0..1.0));
            self.state = State::Idle {
                retry_at: now + jitter,
            };
            return;
        }
        let exp = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(6).saturating_sub(1));
        let base = exp.min(BACKOFF_MAX);
        // Jitter (up to +50%) spreads reconnects after a server restart.
        let jitter = base.mul_f64(self.rng.gen_range(0.0..0.5));
        self.state = State::Idle {
            retry_at: now + base + jitter,
        };
    }

    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        let State::Open {
            channel,
            registered,
        } = &mut self.state
        else {
            return;
        };
        self.last_rx = now;
        self.ping_sent = None;
        let was_established = channel.is_established();
        if let Err(e) = channel.handle_bytes(bytes) {
            tracing::warn!(error = %e, "control channel failed; is the server key in the token right?");
            self.events.push_back(ControlEvent::CloseStream);
            self.schedule_retry(now);
            return;
        }
        let mut inbound = Vec::new();
        while let Some(m) = channel.poll_message() {
            inbound.push(m);
        }
        if !was_established && channel.is_established() && !*registered {
            let hello = ClientMessage::Hello {
                network: self.network.clone(),
                endpoints: self.endpoints.clone(),
                nat: self.nat.clone(),
                run: self.run,
            };
            self.hello_sent = Some((self.endpoints.clone(), self.nat.clone()));
            self.send(&hello);
        }
        for m in inbound {
            if let Some((src, payload)) = wire::parse_stream_frame(&m) {
                self.events.push_back(ControlEvent::RelayFrame {
                    src,
                    payload: payload.to_vec(),
                });
                continue;
            }
            match decode::<ServerMessage>(&m) {
                Ok(message) => self.handle_message(message, now),
                Err(e) => tracing::warn!(error = %e, "ignoring an undecodable server message"),
            }
        }
    }

    fn handle_message(&mut self, message: ServerMessage, now: Instant) {
        match message {
            ServerMessage::Welcome {
                name,
                virtual_ip,
                cidr,
                relay,
                ipv6,
                acl,
                ..
            } => {
                // Before `Registered`: the rules are in place before any packet can flow.
                self.events.push_back(ControlEvent::Acl(acl));
                if let State::Open { registered, .. } = &mut self.state {
                    *registered = true;
                }
                self.attempt = 0;
                self.failover_left = 0;
                let current = (self.endpoints.clone(), self.nat.clone());
                if self.hello_sent.take().is_some_and(|sent| sent != current) {
                    let (endpoints, nat) = current;
                    self.send(&ClientMessage::Endpoints { endpoints, nat });
                }
                self.events.push_back(ControlEvent::Registered {
                    name,
                    virtual_ip,
                    cidr,
                    relay,
                    ipv6: ipv6.filter(crate::core::ula::is_node_interface),
                });
            }
            ServerMessage::Peer { peer } => self.events.push_back(ControlEvent::Peer(peer)),
            ServerMessage::Peers { peers } => self
                .events
                .extend(peers.into_iter().map(ControlEvent::Peer)),
            ServerMessage::PeerGone { public_key } => {
                self.events.push_back(ControlEvent::PeerGone(public_key))
            }
            ServerMessage::Refused { refusal } => {
                let permanent = !matches!(refusal, Refusal::ServerError);
                self.events
                    .push_back(ControlEvent::Refused { refusal, permanent });
                self.events.push_back(ControlEvent::CloseStream);
                if permanent {
                    self.state = State::Stopped;
                } else {
                    self.schedule_retry(now);
                }
            }
            ServerMessage::Punch { peer, offer } => {
                self.events.push_back(ControlEvent::Punch { peer, offer })
            }
            ServerMessage::Acl { policy } => self.events.push_back(ControlEvent::Acl(policy)),
            ServerMessage::Servers {
                servers,
                tls_servers,
            } => self.handle_server_list(&servers, &tls_servers, now),
            ServerMessage::Pong | ServerMessage::Joined { .. } | ServerMessage::Left { .. } => {}
        }
    }

    fn send(&mut self, message: &ClientMessage) {
        let State::Open { channel, .. } = &mut self.state else {
            return;
        };
        match channel.send(&encode(message)) {
            Ok(()) => {
                if let Some(bytes) = channel.take_outgoing() {
                    self.out.push_back(bytes);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot send a control message"),
        }
    }

    /// The underlay moved (the host's route to the server leaves from another local address,
    /// or the server sees this node at another public IP): the stream's TCP connection rides on
    /// a local address or a NAT mapping that is gone, and nothing would notice before
    /// `SERVER_TIMEOUT`, 45 s in which no punch offer or peer update gets through. Close it and
    /// connect again now, to the same server, without backoff.
    pub fn reconnect_now(&mut self, now: Instant) {
        match self.state {
            State::Open { .. } | State::Connecting => {
                self.events.push_back(ControlEvent::CloseStream);
                self.events.push_back(ControlEvent::Disconnected);
            }
            State::Idle { .. } => {}
            State::Stopped => return,
        }
        self.attempt = 0;
        self.state = State::Idle { retry_at: now };
    }

    /// The driver saw the stream end.
    pub fn handle_closed(&mut self, now: Instant) {
        if matches!(self.state, State::Open { .. } | State::Connecting) {
            self.events.push_back(ControlEvent::Disconnected);
            self.schedule_retry(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Open { channel, .. } = &self.state else {
            return;
        };
        if now.saturating_duration_since(self.last_rx) >= SERVER_TIMEOUT {
            tracing::warn!("no word from the server for {SERVER_TIMEOUT:?}; reconnecting");
            self.events.push_back(ControlEvent::CloseStream);
            self.events.push_back(ControlEvent::Disconnected);
            self.schedule_retry(now);
            return;
        }
        if self
            .ping_sent
            .is_some_and(|t| now.saturating_duration_since(t) >= PONG_TIMEOUT)
        {
            tracing::warn!(
                "the server did not answer a ping within {PONG_TIMEOUT:?}; reconnecting"
            );
            self.events.push_back(ControlEvent::CloseStream);
            self.events.push_back(ControlEvent::Disconnected);
            self.schedule_retry(now);
            return;
        }
        if channel.is_established() && now >= self.next_ping {
            self.next_ping = now + PING_INTERVAL;
            self.ping_sent = Some(now);
            self.send(&ClientMessage::Ping);
        }
        self.move_to_primary_if_settled(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle { retry_at } => Some(*retry_at),
            State::Open { .. } => {
                let pong = self.ping_sent.map(|t| t + PONG_TIMEOUT);
                let next = self.next_ping.min(self.last_rx + SERVER_TIMEOUT);
                Some(pong.map_or(next, |p| p.min(next)))
            }
            State::Connecting | State::Stopped => None,
        }
    }

    /// The node's UDP endpoints and NAT profile, told to the server now and on every
    /// registration.
    pub fn set_endpoints(&mut self, endpoints: Vec<SocketAddr>, nat: Option<NatProfile>) {
        if endpoints == self.endpoints && nat == self.nat {
            return;
        }
        self.endpoints = endpoints.clone();
        self.nat = nat.clone();
        if self.is_registered() {
            self.send(&ClientMessage::Endpoints { endpoints, nat });
        }
    }

    /// Sends a relay frame (`relay::wire::stream_frame`) through the control stream. Dropped
    /// when not registered: relayed traffic is datagrams, and loss is theirs to handle.
    pub fn send_relay_frame(&mut self, frame: &[u8]) {
        if !self.is_registered() {
            return;
        }
        let State::Open { channel, .. } = &mut self.state else {
            return;
        };
        if channel.send(frame).is_ok() {
            if let Some(bytes) = channel.take_outgoing() {
                self.out.push_back(bytes);
            }
        }
    }

    /// Sends a punch offer or answer to `peer` through the server. Lost if not registered; the
    /// punch session retries.
    pub fn send_punch(&mut self, peer: PublicKey, offer: PunchOffer) {
        if self.is_registered() {
            self.send(&ClientMessage::Punch { peer, offer });
        }
    }

    pub fn poll_bytes(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ControlEvent> {
        self.events.pop_front()
    }
}

/// The server's answer to a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub network: String,
    pub name: String,
    pub virtual_ip: Ipv4Addr,
    pub cidr: Ipv4Net,
    /// The node's IPv6 address with its prefix length, when the server gave one.
    pub ipv6: Option<Ipv6Net>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "the server's identity does not match the key in the token (or it is not a p2pvpn \
         server): {0}"
    )]
    Channel(#[from] ChannelError),
    #[error("the server sent an unexpected reply")]
    Unexpected,
}

/// One join: handshake, send `Join`, read `Joined` or `Refused`.
pub struct JoinExchange {
    channel: SecureChannel,
    request: Option<Vec<u8>>,
}

impl JoinExchange {
    pub fn new(secret: &SecretKey, token: &JoinToken, name: &str) -> Result<Self, JoinError> {
        let channel = SecureChannel::initiator(secret, &token.server_key)?;
        let request = encode(&ClientMessage::Join {
            network: token.network.clone(),
            credential: token.credential.to_base64(),
            name: name.to_string(),
        });
        Ok(JoinExchange {
            channel,
            request: Some(request),
        })
    }

    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        self.channel.take_outgoing()
    }

    /// `Ok(None)` until the answer is complete.
    pub fn handle_bytes(
        &mut self,
        bytes: &[u8],
    ) -> Result<Option<Result<Joined, Refusal>>, JoinError> {
        self.channel.handle_bytes(bytes)?;
        if self.channel.is_established() {
            if let Some(request) = self.request.take() {
                self.channel.send(&request)?;
            }
        }
        let Some(reply) = self.channel.poll_message() else {
            return Ok(None);
        };
        match decode::<ServerMessage>(&reply) {
            Ok(ServerMessage::Joined {
                network,
                name,
                virtual_ip,
                cidr,
                ipv6,
            }) => Ok(Some(Ok(Joined {
                network,
                name,
                virtual_ip,
                cidr,
                ipv6: ipv6.filter(crate::core::ula::is_node_interface),
            }))),
            Ok(ServerMessage::Refused { refusal }) => Ok(Some(Err(refusal))),
            _ => Err(JoinError::Unexpected),
        }
    }
}
