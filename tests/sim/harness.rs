//! An in-process network: the real server and node state machines, control streams as in-order
//! pipes, UDP datagrams carried by `net::Net` through simulated NAT boxes (`nat::Nat`), and the
//! server's STUN responder on its two addresses, all on a virtual clock. Deterministic in
//! ordering and timing (boringtun's own clock reads are the one exception; see core::crypto).

use crate::nat::NatConfig;
use crate::net::{NatId, Net};
use p2pvpn::core::crypto::Engine;
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::{
    DatagramOutcome, Node, NodeConfig, NodeEvent, PunchConfig, SocketCommand, SocketId, TunOutcome,
};
use p2pvpn::core::relay::server::{RelayLimits, RelayServer};
use p2pvpn::core::rendezvous::client::{JoinExchange, Joined};
use p2pvpn::core::rendezvous::messages::Refusal;
use p2pvpn::core::rendezvous::registry::{MemoryRegistry, TokenRecord};
use p2pvpn::core::rendezvous::server::{ConnId, RelayUdpAction, ServerCore, ServerOutput};
use p2pvpn::core::rendezvous::token::{Credential, JoinToken};
use p2pvpn::core::stun::StunResponder;
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub const SERVER: &str = "198.51.100.1:7400";
pub const SERVER_ALT: &str = "198.51.100.2:7400";
pub const UNIX_NOW: u64 = 1_800_000_000;

pub struct SimNode {
    pub node: Node,
    /// The main socket's address on the host.
    pub udp: SocketAddr,
    /// Every socket the node has open, the main one included.
    pub sockets: HashMap<SocketId, SocketAddr>,
    /// The main socket's IPv6 half (`give_ipv6`): datagrams to IPv6 leave from it.
    pub udp6: Option<SocketAddr>,
    next_port: u16,
    pub conn: Option<ConnId>,
    /// The node's static key, so tests can seal probes as the node would.
    pub secret: SecretKey,
    pub tun_out: Vec<Vec<u8>>,
    pub events: Vec<NodeEvent>,
}

impl SimNode {
    /// The local address a datagram from `socket` to `dst` leaves from: the main socket has an
    /// IPv6 half, as in the driver (`io::ipv6_underlay`).
    pub fn source(&self, socket: SocketId, dst: SocketAddr) -> Option<SocketAddr> {
        if socket == SocketId::MAIN && dst.is_ipv6() {
            return self.udp6;
        }
        self.sockets.get(&socket).copied()
    }
}

pub struct Sim {
    pub now: Instant,
    pub server: ServerCore<MemoryRegistry>,
    pub server_up: bool,
    pub nodes: Vec<SimNode>,
    pub credential: Credential,
    server_secret: SecretKey,
    next_conn: ConnId,
    rng: rand_chacha::ChaCha8Rng,
    pub net: Net,
    stun: StunResponder,
    pub punch: PunchConfig,
    next_public: u8,
    /// Control bytes the server sent on connections no simulated node owns (a test's raw
    /// client reads them here).
    pub unclaimed: Vec<(ConnId, Vec<u8>)>,
    /// Nodes spawned from now on run our WireGuard engine (`core::wg::session`), whose timers
    /// follow the simulated clock. Default: `SIM_WIREGUARD=own` in the environment, else
    /// boringtun.
    pub wireguard_own: bool,
    /// Datagrams handed to each destination address, whether or not a node lives there.
    pub arrivals: HashMap<IpAddr, u64>,
    /// How long the server's control bytes take to reach node i (default: no time), e.g. a
    /// slow or loaded path that delivers a punch answer late.
    pub stream_delay: HashMap<usize, Duration>,
    /// Control bytes on their way: (due, connection, bytes, relayed frame).
    delayed: Vec<(Instant, ConnId, Vec<u8>, bool)>,
    /// Control streams that died silently (their NAT mapping or local address is gone): bytes
    /// either way vanish, and neither end is told.
    pub dead_conns: std::collections::HashSet<ConnId>,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let server_secret = SecretKey::generate(&mut rng);
        let mut registry = MemoryRegistry::default();
        registry.create_network("sim", "10.99.0.0/24".parse().unwrap());
        let credential = Credential::generate(&mut rng);
        registry.add_token(
            "sim",
            credential.hash(),
            TokenRecord {
                uses: 0,
                max_uses: 10,
                expires_unix: Some(UNIX_NOW + 3600),
            },
        );
        let mut net = Net::new(seed);
        let server: SocketAddr = SERVER.parse().unwrap();
        let alt: SocketAddr = SERVER_ALT.parse().unwrap();
        for a in [server, alt] {
            if let IpAddr::V4(ip) = a.ip() {
                net.add_public_ip(ip);
            }
        }
        Sim {
            now: crate::nat_tests::t0(),
            server: ServerCore::new(server_secret.clone(), registry, relay_server(seed)),
            server_secret,
            server_up: true,
            nodes: Vec::new(),
            credential,
            next_conn: 0,
            rng,
            net,
            stun: StunResponder::new(&[server, alt], None).unwrap(),
            punch: PunchConfig::default(),
            next_public: 1,
            unclaimed: Vec::new(),
            wireguard_own: std::env::var("SIM_WIREGUARD").as_deref() == Ok("own"),
            arrivals: HashMap::new(),
            stream_delay: HashMap::new(),
            dead_conns: Default::default(),
            delayed: Vec::new(),
        }
    }

    /// A NAT box with the nat-lab.md profile `profile` (e.g. "PRC", "SEQ", "RND") on a fresh
    /// public address, optionally inside another NAT (CGN).
    pub fn add_nat(&mut self, profile: &str, parent: Option<NatId>) -> NatId {
        let public = match parent {
            None => Ipv4Addr::new(203, 0, 113, self.next_public),
            Some(_) => Ipv4Addr::new(100, 64, 0, self.next_public),
        };
        self.next_public += 1;
        let config = NatConfig::profile(profile, public).expect("a known NAT profile");
        self.net.add_nat(config, parent)
    }

    /// A joined node on `host` ("ip:port"), behind `nat` or on the open internet.
    pub fn add_node_at(&mut self, name: &str, host: &str, nat: Option<NatId>) -> usize {
        let addr: SocketAddr = host.parse().unwrap();
        if let IpAddr::V4(ip) = addr.ip() {
            match nat {
                Some(n) => self.net.add_private_host_ip(ip, n),
                None => self.net.add_public_ip(ip),
            }
        }
        self.spawn_node(name, addr, true)
    }

    pub fn token(&self) -> JoinToken {
        JoinToken {
            network: "sim".into(),
            servers: vec![SERVER.parse().unwrap()],
            tls_servers: Vec::new(),
            server_key: self.server.public_key(),
            credential: self.credential.clone(),
        }
    }

    /// A control connection from `remote` that no simulated node owns; what the server sends
    /// on it lands in `unclaimed`.
    pub fn open_raw_conn(&mut self, remote: SocketAddr) -> ConnId {
        self.open_conn(remote)
    }

    /// The NAT gets a new public address. Its hosts' TCP control streams die with the old
    /// address (the server's segments go to an address nobody holds), so they reconnect.
    pub fn rebind_nat(&mut self, id: NatId, public_ip: Ipv4Addr) {
        self.net.rebind_nat(id, public_ip);
        for i in 0..self.nodes.len() {
            let behind = match self.nodes[i].udp.ip() {
                IpAddr::V4(ip) => self.net.public_ip_of(ip) == Some(public_ip),
                IpAddr::V6(_) => false,
            };
            if let (true, Some(conn)) = (behind, self.nodes[i].conn) {
                self.nodes[i].conn = None;
                self.server.handle_closed(conn);
                self.nodes[i].node.handle_control_closed(self.now);
            }
        }
    }

    /// The NAT gets a new public address and nobody says so: its hosts' TCP control streams go
    /// silent (no FIN, no RST reaches either end), as when an uplink changes under a host.
    pub fn rebind_nat_silently(&mut self, id: NatId, public_ip: Ipv4Addr) {
        self.net.rebind_nat(id, public_ip);
        for i in 0..self.nodes.len() {
            let behind = match self.nodes[i].udp.ip() {
                IpAddr::V4(ip) => self.net.public_ip_of(ip) == Some(public_ip),
                IpAddr::V6(_) => false,
            };
            if let (true, Some(conn)) = (behind, self.nodes[i].conn) {
                self.dead_conns.insert(conn);
            }
        }
    }

    fn open_conn(&mut self, remote: SocketAddr) -> ConnId {
        self.next_conn += 1;
        self.server.handle_open(self.next_conn, remote, self.now);
        self.next_conn
    }

    /// Runs the real join exchange against the server core.
    pub fn join(
        &mut self,
        secret: &SecretKey,
        token: &JoinToken,
        name: &str,
    ) -> Result<Joined, Refusal> {
        let conn = self.open_conn("192.0.2.200:40000".parse().unwrap());
        let mut ex = JoinExchange::new(secret, token, name).unwrap();
        for _ in 0..10 {
            while let Some(bytes) = ex.take_outgoing() {
                self.server.handle_bytes(conn, &bytes, self.now, UNIX_NOW);
            }
            while let Some(out) = self.server.poll_output() {
                match out {
                    ServerOutput::Send(c, bytes) if c == conn => {
                        if let Some(answer) = ex.handle_bytes(&bytes).unwrap() {
                            return answer;
                        }
                    }
                    // Peer-map batches for the online nodes can go out meanwhile.
                    other => self.dispatch(other),
                }
            }
        }
        panic!("join exchange did not finish");
    }

    /// Creates a node that has joined, on the open internet at `udp`.
    pub fn add_node(&mut self, name: &str, udp: &str) -> usize {
        self.add_node_at(name, udp, None)
    }

    /// A node on the open internet that may skip the join, to test what a non-member's
    /// registration gets.
    pub fn add_node_with(&mut self, name: &str, udp: &str, joined: bool) -> usize {
        let addr: SocketAddr = udp.parse().unwrap();
        if let IpAddr::V4(ip) = addr.ip() {
            self.net.add_public_ip(ip);
        }
        self.spawn_node(name, addr, joined)
    }

    fn spawn_node(&mut self, name: &str, udp: SocketAddr, joined: bool) -> usize {
        let secret = SecretKey::generate(&mut self.rng);
        let token = self.token();
        if joined {
            self.join(&secret, &token, name).expect("join accepted");
        }
        let config = NodeConfig {
            network: "sim".into(),
            secret: secret.clone(),
            server_key: token.server_key,
            servers: token.servers.clone(),
            tls_servers: token.tls_servers.clone(),
            punch: self.punch,
        };
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.nodes.len() as u64 + 100);
        let mut node = Node::new(config, rng, self.now);
        if self.wireguard_own {
            let unix = Duration::from_secs(UNIX_NOW)
                + self.now.saturating_duration_since(crate::nat_tests::t0());
            node.set_wireguard(Engine::Own, self.now, unix);
        }
        node.handle_socket_opened(SocketId::MAIN, udp, self.now);
        self.nodes.push(SimNode {
            node,
            udp,
            sockets: HashMap::from([(SocketId::MAIN, udp)]),
            udp6: None,
            next_port: 40000,
            conn: None,
            secret,
            tun_out: Vec::new(),
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Node `i`'s process ends and a new one starts on the same host with the same key
    /// (`systemctl restart`): all its state is gone. Its UDP port is the old one, or `port`
    /// (`listen_port = 0` picks a new one at each start). `server_saw_it_leave` says whether
    /// its control stream's end reached the server first; if not, the server only learns of
    /// the new run from its Hello on a new connection.
    pub fn restart_node(&mut self, i: usize, server_saw_it_leave: bool, port: Option<u16>) {
        let old = &mut self.nodes[i];
        if let (true, Some(conn)) = (server_saw_it_leave, old.conn.take()) {
            self.server.handle_closed(conn);
        }
        // A connection the server still holds belongs to the dead process: nobody reads it.
        old.conn = None;
        let secret = old.secret.clone();
        let udp = SocketAddr::new(old.udp.ip(), port.unwrap_or(old.udp.port()));
        let udp6 = old.udp6;
        let token = self.token();
        let config = NodeConfig {
            network: "sim".into(),
            secret: secret.clone(),
            server_key: token.server_key,
            servers: token.servers.clone(),
            tls_servers: token.tls_servers.clone(),
            punch: self.punch,
        };
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.nodes.len() as u64 + 200 + i as u64);
        let mut node = Node::new(config, rng, self.now);
        node.handle_socket_opened(SocketId::MAIN, udp, self.now);
        if let Some(addr) = udp6 {
            node.set_ipv6_socket(vec![addr], self.now);
        }
        self.nodes[i] = SimNode {
            node,
            udp,
            udp6,
            sockets: HashMap::from([(SocketId::MAIN, udp)]),
            next_port: 40000,
            conn: None,
            secret,
            tun_out: Vec::new(),
            events: Vec::new(),
        };
    }

    /// Gives node `i` a global IPv6 address (its IPv6 socket at `addr`), behind a stateful
    /// firewall when `firewall`, and tells the node, as the driver does at start.
    pub fn give_ipv6(&mut self, i: usize, addr: SocketAddr, firewall: bool) {
        let IpAddr::V6(ip) = addr.ip() else {
            panic!("{addr} is not IPv6");
        };
        self.net.add_ipv6_host(ip, firewall);
        self.nodes[i].udp6 = Some(addr);
        self.nodes[i].node.set_ipv6_socket(vec![addr], self.now);
    }

    /// Hands one server output to the node that owns its connection (or the network).
    /// Control bytes for `conn`: handed over now, or queued when its node's stream is slow.
    fn hand_to_node(&mut self, conn: ConnId, bytes: Vec<u8>, relay: bool) {
        let delay = self
            .nodes
            .iter()
            .position(|n| n.conn == Some(conn))
            .and_then(|i| self.stream_delay.get(&i).copied())
            .unwrap_or_default();
        if delay.is_zero() {
            self.dispatch_now(conn, bytes, relay);
        } else {
            self.delayed.push((self.now + delay, conn, bytes, relay));
        }
    }

    fn dispatch_now(&mut self, conn: ConnId, bytes: Vec<u8>, relay: bool) {
        let out = if relay {
            ServerOutput::Relay(conn, bytes)
        } else {
            ServerOutput::Send(conn, bytes)
        };
        self.dispatch_direct(out);
    }

    fn dispatch(&mut self, out: ServerOutput) {
        match out {
            ServerOutput::Send(conn, bytes) => self.hand_to_node(conn, bytes, false),
            ServerOutput::Relay(conn, bytes) => self.hand_to_node(conn, bytes, true),
            other => self.dispatch_direct(other),
        }
    }

    fn dispatch_direct(&mut self, out: ServerOutput) {
        match out {
            ServerOutput::Send(conn, _) | ServerOutput::Relay(conn, _)
                if self.dead_conns.contains(&conn) => {}
            ServerOutput::Send(conn, bytes) => {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                    n.node.handle_control_bytes(&bytes, self.now);
                } else {
                    self.unclaimed.push((conn, bytes));
                }
            }
            ServerOutput::Relay(conn, bytes) => {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                    n.node.handle_control_bytes(&bytes, self.now);
                    while let Some(p) = n.node.poll_tun_packet() {
                        n.tun_out.push(p);
                    }
                } else {
                    self.unclaimed.push((conn, bytes));
                }
            }
            ServerOutput::Udp { via, to, datagram } => {
                self.net.send(via, to, datagram, None, self.now);
            }
            ServerOutput::Close(conn) => {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                    n.conn = None;
                    n.node.handle_control_closed(self.now);
                }
            }
        }
    }

    /// Moves every pending control byte and datagram until nothing is left to deliver.
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(bytes) = self.nodes[i].node.poll_control_bytes() {
                    if let Some(conn) = self.nodes[i].conn.filter(|c| !self.dead_conns.contains(c))
                    {
                        self.server.handle_bytes(conn, &bytes, self.now, UNIX_NOW);
                    }
                    moved = true;
                }
                while let Some(c) = self.nodes[i].node.poll_socket_command() {
                    let now = self.now;
                    let n = &mut self.nodes[i];
                    match c {
                        SocketCommand::Open(id) => {
                            let addr = SocketAddr::new(n.udp.ip(), n.next_port);
                            n.next_port += 1;
                            n.sockets.insert(id, addr);
                            n.node.handle_socket_opened(id, addr, now);
                        }
                        SocketCommand::Close(id) => {
                            n.sockets.remove(&id);
                        }
                    }
                    moved = true;
                }
                while let Some(t) = self.nodes[i].node.poll_transmit() {
                    if let Some(from) = self.nodes[i].source(t.socket, t.dst) {
                        self.net.send(from, t.dst, t.payload, t.ttl, self.now);
                    }
                    moved = true;
                }
                while let Some(ev) = self.nodes[i].node.poll_event() {
                    if ev == NodeEvent::CloseControlStream {
                        if let Some(conn) = self.nodes[i].conn.take() {
                            self.server.handle_closed(conn);
                        }
                        self.nodes[i].node.handle_control_closed(self.now);
                    }
                    self.nodes[i].events.push(ev);
                    moved = true;
                }
                // After the events, as the real driver (`io::node`) drains them before it
                // connects: a stream the node asked to close is closed before the next opens.
                if let Some(_server) = self.nodes[i].node.poll_connect(self.now) {
                    if self.server_up {
                        let udp = self.nodes[i].udp;
                        // The server sees the stream come from the NAT's public address.
                        let seen = match udp.ip() {
                            IpAddr::V4(ip) => self.net.public_ip_of(ip).map(IpAddr::V4),
                            IpAddr::V6(_) => None,
                        };
                        let remote = SocketAddr::new(seen.unwrap_or(udp.ip()), 40000 + i as u16);
                        let conn = self.open_conn(remote);
                        self.nodes[i].conn = Some(conn);
                        self.nodes[i].node.set_local_endpoints(vec![udp]);
                        self.nodes[i].node.handle_control_connected(self.now);
                    } else {
                        self.nodes[i].node.handle_control_connect_failed(self.now);
                    }
                    moved = true;
                }
            }
            while let Some(out) = self.server.poll_output() {
                moved = true;
                self.dispatch(out);
            }
            // Slow streams: what is due now, in the order it was sent.
            let now = self.now;
            if self.delayed.iter().any(|d| d.0 <= now) {
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                    .into_iter()
                    .partition(|d| d.0 <= now);
                self.delayed = later;
                for (_, conn, bytes, relay) in due {
                    self.dispatch_now(conn, bytes, relay);
                }
                moved = true;
            }
            while let Some(d) = self.net.poll_delivery(self.now) {
                moved = true;
                *self.arrivals.entry(d.to.ip()).or_default() += 1;
                let to_server = [SERVER, SERVER_ALT]
                    .iter()
                    .any(|a| a.parse::<SocketAddr>().is_ok_and(|a| a.ip() == d.to.ip()));
                if to_server && self.server_up && p2pvpn::core::relay::wire::is_relay(&d.bytes) {
                    let mut buf = d.bytes.clone();
                    match self
                        .server
                        .handle_relay_udp(d.to, d.from, &mut buf, self.now)
                    {
                        RelayUdpAction::Reply(r) => self.net.send(d.to, d.from, r, None, self.now),
                        RelayUdpAction::Forward { via, to, len } => {
                            buf.truncate(len);
                            self.net.send(via, to, buf, None, self.now)
                        }
                        RelayUdpAction::Done => {}
                    }
                    continue;
                }
                if let Some(reply) = self.stun.respond(d.to, d.from, &d.bytes) {
                    self.net
                        .send(reply.via, reply.to, reply.bytes, None, self.now);
                    continue;
                }
                self.deliver(d.from, d.to, &d.bytes);
            }
            if !moved {
                return;
            }
        }
        panic!("simulation did not settle");
    }

    pub fn deliver(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) -> Option<DatagramOutcomeKind> {
        let now = self.now;
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.udp6 == Some(to) || n.sockets.values().any(|a| *a == to))?;
        let socket = if n.udp6 == Some(to) {
            SocketId::MAIN
        } else {
            n.sockets
                .iter()
                .find(|(_, a)| **a == to)
                .map(|(id, _)| *id)?
        };
        let mut out = vec![0u8; 70000];
        let kind = match n.node.handle_datagram(socket, from, bytes, now, &mut out) {
            DatagramOutcome::WriteTun(p) => {
                n.tun_out.push(p.to_vec());
                DatagramOutcomeKind::Tun
            }
            DatagramOutcome::Consumed => DatagramOutcomeKind::Consumed,
            DatagramOutcome::Dropped(_) => DatagramOutcomeKind::Dropped,
        };
        Some(kind)
    }

    /// Advances the virtual clock by `d` in steps, firing every timer that comes due.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.node.poll_timeout())
                .chain(self.server.poll_timeout())
                .chain(self.net.next_delivery_time())
                .chain(self.delayed.iter().map(|d| d.0))
                .min()
                .unwrap_or(end)
                .max(self.now);
            if next > end {
                break;
            }
            self.now = next + Duration::from_millis(1);
            for n in &mut self.nodes {
                n.node.handle_timeout(self.now);
            }
            self.server.handle_timeout(self.now);
        }
        self.now = end;
        self.settle();
    }

    /// Injects an IP packet into node `i`'s TUN side and sends what comes out.
    pub fn send_from_tun(&mut self, i: usize, packet: &[u8]) -> bool {
        let mut out = vec![0u8; 70000];
        let now = self.now;
        let sent = match self.nodes[i].node.handle_tun_packet(packet, now, &mut out) {
            TunOutcome::Send {
                socket,
                dst,
                datagram,
            } => {
                if let Some(from) = self.nodes[i].source(socket, dst) {
                    self.net.send(from, dst, datagram.to_vec(), None, now);
                }
                true
            }
            TunOutcome::Queued | TunOutcome::Stream => true,
            // Answered with ICMP "fragmentation needed": the packet itself does not go.
            TunOutcome::Reply(_) | TunOutcome::Dropped(_) => false,
        };
        self.settle();
        sent
    }

    /// Encrypts `packet` at node `i` as if read from its TUN device, without sending it.
    pub fn encrypt(&mut self, i: usize, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 70000];
        let now = self.now;
        match self.nodes[i].node.handle_tun_packet(packet, now, &mut out) {
            TunOutcome::Send { datagram, .. } => datagram.to_vec(),
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    /// Stops the server: every node's stream ends.
    pub fn stop_server(&mut self) {
        self.server_up = false;
        for n in &mut self.nodes {
            if n.conn.take().is_some() {
                n.node.handle_control_closed(self.now);
            }
        }
        self.settle();
    }

    /// A fresh server process with the same identity and store.
    pub fn restart_server(&mut self) {
        let registry = std::mem::take(self.server.registry_mut());
        self.server = ServerCore::new(self.server_secret.clone(), registry, relay_server(7));
        self.server_up = true;
    }
}

fn relay_server(seed: u64) -> RelayServer {
    RelayServer::new(
        RelayLimits::default(),
        rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1000),
        crate::nat_tests::t0(),
    )
}

#[derive(Debug, PartialEq, Eq)]
pub enum DatagramOutcomeKind {
    Tun,
    Consumed,
    Dropped,
}

/// A minimal IPv4/ICMP echo request from `src` to `dst` with a recognisable payload.
pub fn ping_packet(src: [u8; 4], dst: [u8; 4], tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20] = 8;
    for b in &mut p[28..] {
        *b = tag;
    }
    p
}
