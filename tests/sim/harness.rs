//! An in-process network: the real server and node state machines, control streams as in-order
//! pipes, UDP datagrams delivered by address, all on a virtual clock. Deterministic in ordering
//! and timing (boringtun's own clock reads are the one exception; see core::crypto).

use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::{DatagramOutcome, Node, NodeConfig, NodeEvent, TunOutcome};
use p2pvpn::core::rendezvous::client::{JoinExchange, Joined};
use p2pvpn::core::rendezvous::messages::Refusal;
use p2pvpn::core::rendezvous::registry::{MemoryRegistry, TokenRecord};
use p2pvpn::core::rendezvous::server::{ConnId, ServerCore, ServerOutput};
use p2pvpn::core::rendezvous::token::{Credential, JoinToken};
use rand::SeedableRng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const SERVER: &str = "198.51.100.1:7400";
pub const UNIX_NOW: u64 = 1_800_000_000;

pub struct SimNode {
    pub node: Node,
    pub udp: SocketAddr,
    pub conn: Option<ConnId>,
    pub tun_out: Vec<Vec<u8>>,
    pub events: Vec<NodeEvent>,
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
    /// Datagrams in flight: (from, to, bytes).
    pub wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
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
        Sim {
            now: Instant::now(),
            server: ServerCore::new(server_secret.clone(), registry),
            server_secret,
            server_up: true,
            nodes: Vec::new(),
            credential,
            next_conn: 0,
            rng,
            wire: VecDeque::new(),
        }
    }

    pub fn token(&self) -> JoinToken {
        JoinToken {
            network: "sim".into(),
            servers: vec![SERVER.parse().unwrap()],
            server_key: self.server.public_key(),
            credential: self.credential.clone(),
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
                if let ServerOutput::Send(_, bytes) = out {
                    if let Some(answer) = ex.handle_bytes(&bytes).unwrap() {
                        return answer;
                    }
                }
            }
        }
        panic!("join exchange did not finish");
    }

    /// Creates a node that has joined, listening at `udp`.
    pub fn add_node(&mut self, name: &str, udp: &str) -> usize {
        self.add_node_with(name, udp, true)
    }

    /// A node that may skip the join, to test what a non-member's registration gets.
    pub fn add_node_with(&mut self, name: &str, udp: &str, joined: bool) -> usize {
        let secret = SecretKey::generate(&mut self.rng);
        let token = self.token();
        if joined {
            self.join(&secret, &token, name).expect("join accepted");
        }
        let config = NodeConfig {
            network: "sim".into(),
            secret,
            server_key: token.server_key,
            servers: token.servers.clone(),
        };
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.nodes.len() as u64 + 100);
        self.nodes.push(SimNode {
            node: Node::new(config, rng, self.now),
            udp: udp.parse().unwrap(),
            conn: None,
            tun_out: Vec::new(),
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Moves every pending control byte and datagram until nothing is left to deliver.
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if let Some(_server) = self.nodes[i].node.poll_connect(self.now) {
                    if self.server_up {
                        let udp = self.nodes[i].udp;
                        let conn = self.open_conn(udp);
                        self.nodes[i].conn = Some(conn);
                        self.nodes[i].node.set_local_endpoints(vec![udp]);
                        self.nodes[i].node.handle_control_connected(self.now);
                    } else {
                        self.nodes[i].node.handle_control_connect_failed(self.now);
                    }
                    moved = true;
                }
                while let Some(bytes) = self.nodes[i].node.poll_control_bytes() {
                    if let Some(conn) = self.nodes[i].conn {
                        self.server.handle_bytes(conn, &bytes, self.now, UNIX_NOW);
                    }
                    moved = true;
                }
                while let Some(t) = self.nodes[i].node.poll_transmit() {
                    self.wire.push_back((self.nodes[i].udp, t.dst, t.payload));
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
            }
            while let Some(out) = self.server.poll_output() {
                moved = true;
                match out {
                    ServerOutput::Send(conn, bytes) => {
                        if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                            n.node.handle_control_bytes(&bytes, self.now);
                        }
                    }
                    ServerOutput::Close(conn) => {
                        if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                            n.conn = None;
                            n.node.handle_control_closed(self.now);
                        }
                    }
                }
            }
            while let Some((from, to, bytes)) = self.wire.pop_front() {
                moved = true;
                self.deliver(from, to, &bytes);
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
        let n = self.nodes.iter_mut().find(|n| n.udp == to)?;
        let mut out = vec![0u8; 70000];
        let kind = match n.node.handle_datagram(from, bytes, now, &mut out) {
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
        let udp = self.nodes[i].udp;
        let sent = match self.nodes[i].node.handle_tun_packet(packet, now, &mut out) {
            TunOutcome::Send { dst, datagram } => {
                self.wire.push_back((udp, dst, datagram.to_vec()));
                true
            }
            TunOutcome::Queued => true,
            TunOutcome::Dropped(_) => false,
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
        self.server = ServerCore::new(self.server_secret.clone(), registry);
        self.server_up = true;
    }
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
