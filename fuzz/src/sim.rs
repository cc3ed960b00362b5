//! The `state_machine` target's driver: the real rendezvous server (`ServerCore` with its relay
//! and STUN responder) and two real nodes, A and B, on a zero-latency network without NATs,
//! driven by an arbitrary interleaving of operations read from the fuzz input: deliver, drop,
//! duplicate or reorder the datagrams in flight; inject forged, mutated or replayed datagrams
//! from an attacker's address or a spoofed one; let time pass; feed TUN packets; cut control
//! streams; and speak control messages as a malicious member C inside its own Noise channel.
//!
//! Invariants, checked after every operation (a violation panics, which libFuzzer reports):
//! - nothing panics (in the server, the nodes, or the assertions of the core itself);
//! - bounded queues: a node never queues more than `MAX_BURST` transmits, events or socket
//!   commands for one operation, the network never holds more than `MAX_IN_FLIGHT` datagrams,
//!   and no node opens more than `MAX_SOCKETS` sockets; a node's next timeout after its timers
//!   ran is never in the past (the driver would spin);
//! - no direct path without an authenticated round trip: when a node's status shows a direct
//!   path to its peer at endpoint E, E is an address that peer really owns, and genuine
//!   datagrams went both ways between E and the node. Only A and B hold their keys, so forged,
//!   mutated or replayed datagrams must never get a path adopted.

use crate::control::{NETWORK, UNIX_NOW};
use crate::fixed_secret;
use p2pvpn::core::icmp::echo_request;
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::{
    DatagramOutcome, Node, NodeConfig, NodeEvent, PunchConfig, SocketCommand, SocketId, TunOutcome,
};
use p2pvpn::core::peers::Path;
use p2pvpn::core::relay::server::{RelayLimits, RelayServer};
use p2pvpn::core::relay::wire::is_relay;
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{encode, ClientMessage};
use p2pvpn::core::rendezvous::registry::{Member, MemoryRegistry, Registry};
use p2pvpn::core::rendezvous::server::{ConnId, RelayUdpAction, ServerCore, ServerOutput};
use p2pvpn::core::stun::StunResponder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 7400);
pub const SERVER_ALT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 7400);
/// Where the attacker's forged and replayed datagrams come from.
pub const ATTACKER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 6666);
/// Node A's and B's main sockets (public addresses: no NAT in this world).
pub const NODE_ADDRS: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 5000),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)), 5000),
];

const MAX_BURST: usize = 4096;
const MAX_IN_FLIGHT: usize = 65536;
const MAX_SOCKETS: usize = 1024;
/// Operations per input, and rounds of one settle or advance: bounds each run's time.
const MAX_OPS: usize = 256;
const MAX_ROUNDS: usize = 2000;
/// Genuine delivered datagrams kept for replays and mutations.
const KEEP_DELIVERED: usize = 64;
/// Priming probes are sent with a TTL this low or lower to die before the peer's NAT; here,
/// without NATs, they are dropped so they do not count as delivered.
const PRIMING_TTL_MAX: u8 = 8;

/// The operations, by the input byte modulo their count.
pub mod op {
    pub const STEP: u8 = 0;
    pub const ADVANCE: u8 = 1;
    pub const DELIVER_ONE: u8 = 2;
    pub const DROP_ONE: u8 = 3;
    pub const DUPLICATE_ONE: u8 = 4;
    pub const REORDER: u8 = 5;
    pub const INJECT: u8 = 6;
    pub const MUTATE: u8 = 7;
    pub const REPLAY: u8 = 8;
    pub const TUN: u8 = 9;
    pub const TUN_PING: u8 = 10;
    pub const CLOSE_STREAM: u8 = 11;
    pub const ATTACKER_CONTROL: u8 = 12;
    pub const COUNT: u8 = 13;
}

/// Reads the fuzz input; past its end every read yields zero.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + len).min(self.data.len());
        self.pos = start + len;
        &self.data[start..end]
    }
}

#[derive(Clone, Debug)]
struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    /// Sent by the server or a node, not made up by the attacker.
    genuine: bool,
}

struct SimNode {
    node: Node,
    secret: SecretKey,
    sockets: HashMap<SocketId, SocketAddr>,
    /// Every address this node ever had a socket on.
    owned: HashSet<SocketAddr>,
    next_port: u16,
    conn: Option<ConnId>,
}

struct Attacker {
    secret: SecretKey,
    conn: Option<ConnId>,
    channel: Option<SecureChannel>,
}

pub struct World {
    now: Instant,
    server: ServerCore<MemoryRegistry>,
    stun: StunResponder,
    nodes: Vec<SimNode>,
    attacker: Attacker,
    next_conn: ConnId,
    in_flight: VecDeque<Datagram>,
    delivered: VecDeque<Datagram>,
    /// (from, to) of every genuine datagram delivered to a node.
    evidence: HashSet<(SocketAddr, SocketAddr)>,
    out: Vec<u8>,
}

fn member(name: &str, secret: &SecretKey, last: u8) -> Member {
    Member {
        network: NETWORK.into(),
        name: name.into(),
        public_key: secret.public_key(),
        virtual_ip: Ipv4Addr::new(10, 99, 0, last),
        ipv6: None,
    }
}

impl World {
    pub fn new() -> Self {
        let now = crate::epoch();
        let server_secret = fixed_secret(30);
        let secrets = [fixed_secret(31), fixed_secret(32)];
        let attacker = fixed_secret(33);
        let mut registry = MemoryRegistry::default();
        registry.create_network(NETWORK, "10.99.0.0/24".parse().expect("constant CIDR"));
        for (i, s) in secrets.iter().enumerate() {
            let m = member(["a", "b"][i], s, 2 + i as u8);
            registry.admit(&m, &[0; 32]).expect("memory registry");
        }
        registry
            .admit(&member("c", &attacker, 9), &[0; 32])
            .expect("memory registry");
        let relay = RelayServer::new(RelayLimits::default(), ChaCha8Rng::seed_from_u64(40), now);
        let server = ServerCore::new(server_secret.clone(), registry, relay);
        let stun = StunResponder::new(&[SERVER, SERVER_ALT], None).expect("a two-address layout");
        let nodes = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let config = NodeConfig {
                    network: NETWORK.into(),
                    secret: secret.clone(),
                    server_key: server_secret.public_key(),
                    servers: vec![SERVER],
                    tls_servers: Vec::new(),
                    punch: PunchConfig::default(),
                };
                let rng = ChaCha8Rng::seed_from_u64(50 + i as u64);
                let mut node = Node::new(config, rng, now);
                node.handle_socket_opened(SocketId::MAIN, NODE_ADDRS[i], now);
                SimNode {
                    node,
                    secret: secret.clone(),
                    sockets: HashMap::from([(SocketId::MAIN, NODE_ADDRS[i])]),
                    owned: HashSet::from([NODE_ADDRS[i]]),
                    next_port: 40000,
                    conn: None,
                }
            })
            .collect();
        World {
            now,
            server,
            stun,
            nodes,
            attacker: Attacker {
                secret: attacker,
                conn: None,
                channel: None,
            },
            next_conn: 0,
            in_flight: VecDeque::new(),
            delivered: VecDeque::new(),
            evidence: HashSet::new(),
            out: vec![0u8; 70000],
        }
    }

    /// Runs the operations in `data`, checking the invariants after each.
    pub fn run(&mut self, data: &[u8]) {
        let mut input = Input { data, pos: 0 };
        for _ in 0..MAX_OPS {
            if input.done() {
                break;
            }
            self.apply(&mut input);
            self.check();
        }
    }

    fn apply(&mut self, input: &mut Input) {
        match input.u8() % op::COUNT {
            op::STEP => self.step(),
            op::ADVANCE => {
                let ms = u64::from(input.u16());
                self.advance(Duration::from_millis(ms));
            }
            op::DELIVER_ONE => {
                if let Some(d) = self.in_flight.pop_front() {
                    self.deliver(d);
                }
                self.settle();
            }
            op::DROP_ONE => {
                self.in_flight.pop_front();
            }
            op::DUPLICATE_ONE => {
                if let Some(d) = self.in_flight.front().cloned() {
                    self.in_flight.push_back(d);
                }
            }
            op::REORDER => {
                if let Some(d) = self.in_flight.pop_front() {
                    self.in_flight.push_back(d);
                }
            }
            op::INJECT => {
                let to = self.pick_target(input.u8());
                let from = self.pick_source(input.u8());
                let len = usize::from(input.u8());
                let bytes = input.bytes(len).to_vec();
                self.deliver(Datagram {
                    from,
                    to,
                    bytes,
                    genuine: false,
                });
                self.settle();
            }
            op::MUTATE => {
                let (pick, from, at, xor) = (input.u8(), input.u8(), input.u16(), input.u8());
                if let Some(mut d) = self.pick_delivered(pick) {
                    if !d.bytes.is_empty() {
                        let i = usize::from(at) % d.bytes.len();
                        d.bytes[i] ^= xor.max(1);
                    }
                    d.from = self.pick_source(from);
                    d.genuine = false;
                    self.deliver(d);
                    self.settle();
                }
            }
            op::REPLAY => {
                let (pick, from) = (input.u8(), input.u8());
                if let Some(mut d) = self.pick_delivered(pick) {
                    d.from = self.pick_source(from);
                    d.genuine = false;
                    self.deliver(d);
                    self.settle();
                }
            }
            op::TUN => {
                let i = usize::from(input.u8() % 2);
                let len = usize::from(input.u8());
                let packet = input.bytes(len).to_vec();
                self.tun(i, &packet);
            }
            op::TUN_PING => {
                let i = usize::from(input.u8() % 2);
                let seq = input.u16();
                let ips: Vec<Option<Ipv4Addr>> = self
                    .nodes
                    .iter()
                    .map(|n| n.node.assignment().map(|a| a.virtual_ip))
                    .collect();
                if let (Some(src), Some(dst)) = (ips[i], ips[1 - i]) {
                    self.tun(i, &echo_request(src, dst, seq));
                }
            }
            op::CLOSE_STREAM => {
                let i = usize::from(input.u8() % 2);
                if let Some(conn) = self.nodes[i].conn.take() {
                    self.server.handle_closed(conn);
                    self.nodes[i].node.handle_control_closed(self.now);
                }
                self.settle();
            }
            op::ATTACKER_CONTROL => {
                let len = usize::from(input.u16() % 2048);
                let message = input.bytes(len).to_vec();
                self.attacker_says(&message);
                self.settle();
            }
            _ => unreachable!("the operation is taken modulo the count"),
        }
    }

    fn pick_target(&self, b: u8) -> SocketAddr {
        match b % 4 {
            0 => SERVER,
            1 => SERVER_ALT,
            n => {
                let node = &self.nodes[usize::from(n - 2)];
                let mut sockets: Vec<SocketAddr> = node.sockets.values().copied().collect();
                sockets.sort();
                sockets[usize::from(b / 4) % sockets.len()]
            }
        }
    }

    /// The attacker's own address, or a spoofed one (a node's or the server's).
    fn pick_source(&self, b: u8) -> SocketAddr {
        match b % 4 {
            0 => ATTACKER,
            1 => SERVER,
            n => NODE_ADDRS[usize::from(n - 2)],
        }
    }

    fn pick_delivered(&self, b: u8) -> Option<Datagram> {
        if self.delivered.is_empty() {
            return None;
        }
        self.delivered
            .get(usize::from(b) % self.delivered.len())
            .cloned()
    }

    /// Member C's control messages: connects and completes Noise first.
    fn attacker_says(&mut self, message: &[u8]) {
        if self.attacker.channel.is_none() {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.server.handle_open(conn, ATTACKER, self.now);
            let Ok(mut channel) =
                SecureChannel::initiator(&self.attacker.secret, &self.server.public_key())
            else {
                return;
            };
            if let Some(b) = channel.take_outgoing() {
                self.server.handle_bytes(conn, &b, self.now, UNIX_NOW);
            }
            self.attacker.conn = Some(conn);
            self.attacker.channel = Some(channel);
            // The server's reply is routed to the attacker by `settle`.
            self.settle();
        }
        let (Some(conn), Some(channel)) = (self.attacker.conn, self.attacker.channel.as_mut())
        else {
            return;
        };
        if channel.send(message).is_ok() {
            if let Some(b) = channel.take_outgoing() {
                self.server.handle_bytes(conn, &b, self.now, UNIX_NOW);
            }
        }
    }

    fn tun(&mut self, i: usize, packet: &[u8]) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if let TunOutcome::Send {
            socket,
            dst,
            datagram,
        } = n.node.handle_tun_packet(packet, now, &mut self.out)
        {
            if let Some(&from) = n.sockets.get(&socket) {
                self.in_flight.push_back(Datagram {
                    from,
                    to: dst,
                    bytes: datagram.to_vec(),
                    genuine: true,
                });
            }
        }
        self.settle();
    }

    /// Delivers every datagram in flight now (not those their delivery causes).
    fn step(&mut self) {
        let count = self.in_flight.len();
        for _ in 0..count {
            if let Some(d) = self.in_flight.pop_front() {
                self.deliver(d);
            }
        }
        self.settle();
    }

    /// Lets `d` pass, firing every timer as it comes due; the network delivers at each one.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.fire_timers();
        for _ in 0..MAX_ROUNDS {
            // Timers already due were just fired; one still in the past is the spin case.
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.node.poll_timeout())
                .chain(self.server.poll_timeout())
                .filter(|t| *t > self.now)
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t;
                    self.fire_timers();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
        self.fire_timers();
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            n.node.handle_timeout(now);
        }
        self.server.handle_timeout(now);
        self.settle();
        // Zero latency: what the delivered datagrams cause is delivered too, a few rounds deep.
        for _ in 0..16 {
            if self.in_flight.is_empty() {
                break;
            }
            self.step();
        }
        // A timeout still due once the timers ran and the outputs were taken (a connect is
        // taken with `poll_connect`) makes the real driver spin (`io::node` sleeps until
        // `poll_timeout`). On by default; P2PVPN_FUZZ_SPIN_CHECK=0 turns it off.
        // A deadline that came due while outputs were handled (a first peer starts the timer
        // tick) only wakes the driver once more: it calls `handle_timeout` again, as here. One
        // still due after that is the spin.
        if spin_check() {
            for n in &mut self.nodes {
                if n.node.poll_timeout().is_some_and(|t| t <= now) {
                    n.node.handle_timeout(now);
                }
                if let Some(t) = n.node.poll_timeout() {
                    assert!(t > now, "a node asks to be woken {:?} in the past", now - t);
                }
            }
        }
    }

    /// Hands a datagram to whoever owns its destination.
    fn deliver(&mut self, d: Datagram) {
        let now = self.now;
        if d.to == SERVER || d.to == SERVER_ALT {
            if is_relay(&d.bytes) {
                let mut buf = d.bytes;
                match self.server.handle_relay_udp(d.to, d.from, &mut buf, now) {
                    RelayUdpAction::Reply(r) => self.send(d.to, d.from, r, true),
                    RelayUdpAction::Forward { via, to, len } => {
                        buf.truncate(len);
                        self.send(via, to, buf, true);
                    }
                    RelayUdpAction::Done => {}
                }
            } else if let Some(reply) = self.stun.respond(d.to, d.from, &d.bytes) {
                self.send(reply.via, reply.to, reply.bytes, true);
            }
            return;
        }
        let Some(i) = self.nodes.iter().position(|n| n.owned.contains(&d.to)) else {
            return;
        };
        let n = &mut self.nodes[i];
        let Some(socket) = n
            .sockets
            .iter()
            .find(|(_, a)| **a == d.to)
            .map(|(id, _)| *id)
        else {
            return; // that socket was closed
        };
        if d.genuine {
            self.evidence.insert((d.from, d.to));
        }
        // The TUN device takes whatever comes out; only the bound on work matters here.
        let _: DatagramOutcome =
            n.node
                .handle_datagram(socket, d.from, &d.bytes, now, &mut self.out);
        if d.genuine {
            if self.delivered.len() == KEEP_DELIVERED {
                self.delivered.pop_front();
            }
            self.delivered.push_back(d);
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, genuine: bool) {
        self.in_flight.push_back(Datagram {
            from,
            to,
            bytes,
            genuine,
        });
        assert!(
            self.in_flight.len() <= MAX_IN_FLIGHT,
            "datagrams pile up without bound"
        );
    }

    /// Moves control bytes, socket commands, transmits and events until nothing moves.
    fn settle(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.pump_node(i);
            }
            while let Some(out) = self.server.poll_output() {
                moved = true;
                self.route_server_output(out);
            }
            if !moved {
                return;
            }
        }
        panic!("control traffic did not settle in {MAX_ROUNDS} rounds (a message loop)");
    }

    fn pump_node(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut moved = false;
        if self.nodes[i].node.poll_connect(now).is_some() {
            self.next_conn += 1;
            let conn = self.next_conn;
            let udp = NODE_ADDRS[i];
            self.server.handle_open(conn, udp, now);
            let n = &mut self.nodes[i];
            n.conn = Some(conn);
            n.node.set_local_endpoints(vec![udp]);
            n.node.handle_control_connected(now);
            moved = true;
        }
        let mut burst = 0;
        while let Some(bytes) = self.nodes[i].node.poll_control_bytes() {
            burst += 1;
            if let Some(conn) = self.nodes[i].conn {
                self.server.handle_bytes(conn, &bytes, now, UNIX_NOW);
            }
            moved = true;
        }
        assert!(burst <= MAX_BURST, "control output without bound");
        let mut burst = 0;
        while let Some(c) = self.nodes[i].node.poll_socket_command() {
            burst += 1;
            let n = &mut self.nodes[i];
            match c {
                SocketCommand::Open(id) => {
                    let addr = SocketAddr::new(NODE_ADDRS[i].ip(), n.next_port);
                    n.next_port = n.next_port.wrapping_add(1).max(40000);
                    n.sockets.insert(id, addr);
                    n.owned.insert(addr);
                    n.node.handle_socket_opened(id, addr, now);
                }
                SocketCommand::Close(id) => {
                    n.sockets.remove(&id);
                }
            }
            assert!(
                n.sockets.len() <= MAX_SOCKETS,
                "a node opens sockets without bound"
            );
            moved = true;
        }
        assert!(burst <= MAX_BURST, "socket commands without bound");
        let mut burst = 0;
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            burst += 1;
            moved = true;
            if t.ttl.is_some_and(|ttl| ttl <= PRIMING_TTL_MAX) {
                continue;
            }
            if let Some(&from) = self.nodes[i].sockets.get(&t.socket) {
                self.send(from, t.dst, t.payload, true);
            }
        }
        assert!(burst <= MAX_BURST, "transmits without bound");
        let mut burst = 0;
        while let Some(ev) = self.nodes[i].node.poll_event() {
            burst += 1;
            moved = true;
            if ev == NodeEvent::CloseControlStream {
                if let Some(conn) = self.nodes[i].conn.take() {
                    self.server.handle_closed(conn);
                }
                self.nodes[i].node.handle_control_closed(now);
            }
        }
        assert!(burst <= MAX_BURST, "events without bound");
        while self.nodes[i].node.poll_tun_packet().is_some() {}
        moved
    }

    fn route_server_output(&mut self, out: ServerOutput) {
        let now = self.now;
        match out {
            ServerOutput::Send(conn, bytes) | ServerOutput::Relay(conn, bytes) => {
                if Some(conn) == self.attacker.conn {
                    if let Some(ch) = self.attacker.channel.as_mut() {
                        if ch.handle_bytes(&bytes).is_ok() {
                            while ch.poll_message().is_some() {}
                        }
                    }
                } else if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                    n.node.handle_control_bytes(&bytes, now);
                }
            }
            ServerOutput::Udp { via, to, datagram } => self.send(via, to, datagram, true),
            ServerOutput::Close(conn) => {
                self.server.handle_closed(conn);
                if Some(conn) == self.attacker.conn {
                    self.attacker.conn = None;
                    self.attacker.channel = None;
                } else if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                    n.conn = None;
                    n.node.handle_control_closed(now);
                }
            }
        }
    }

    /// The invariants that hold between operations.
    fn check(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let peer = &self.nodes[1 - i];
            let status = n.node.status(UNIX_NOW);
            for p in &status.peers {
                if p.public_key != peer.secret.public_key() || p.path != Path::Direct {
                    continue;
                }
                let endpoint = p.endpoint.expect("a direct path names its endpoint");
                assert!(
                    peer.owned.contains(&endpoint),
                    "node {i} adopted a direct path to {endpoint}, which its peer never owned"
                );
                let heard = n
                    .owned
                    .iter()
                    .any(|a| self.evidence.contains(&(endpoint, *a)));
                let reached = n
                    .owned
                    .iter()
                    .any(|a| self.evidence.contains(&(*a, endpoint)));
                assert!(
                    heard && reached,
                    "node {i} adopted a direct path to {endpoint} without a round trip"
                );
            }
        }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// Whether the spin check runs (see `World::fire_timers`).
fn spin_check() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("P2PVPN_FUZZ_SPIN_CHECK").is_none_or(|v| v != "0"))
}

/// The control message member C most often needs to say: its `hello`.
pub fn attacker_hello(endpoints: Vec<SocketAddr>) -> Vec<u8> {
    encode(&ClientMessage::Hello {
        network: NETWORK.into(),
        endpoints,
        nat: None,
        run: None,
    })
}
