//! Two real server cores of one deployment (same identity, same members) and real control
//! clients: nodes that start on different servers meet on the primary, a node that loses its
//! server registers with the other one within a fraction of a second, and a dying server still
//! listed as live does not pull nodes back to it.

use super::super::client::{ControlClient, ControlEvent, ServerAddr};
use super::super::registry::{Member, MemoryRegistry, Registry};
use super::super::server::{ConnId, ServerCore, ServerOutput};
use super::*;
use crate::core::keys::{PublicKey, SecretKey};
use crate::core::relay::server::{RelayLimits, RelayServer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::net::Ipv4Addr;

const A: &str = "192.0.2.1:7000";
const B: &str = "192.0.2.2:7000";
/// Server A's second control address (a server listening on two IPs names both).
const A2: &str = "192.0.2.1:7001";

fn addr(s: &str) -> ServerAddr {
    ServerAddr {
        addr: s.parse().unwrap(),
        tls: false,
    }
}

struct Node {
    control: ControlClient,
    /// (server index, connection) while a stream is open.
    conn: Option<(usize, ConnId)>,
    peers: HashSet<PublicKey>,
    /// The deployment's list from the last `ControlEvent::Servers`.
    learned: Option<Vec<ServerAddr>>,
}

struct Deployment {
    servers: Vec<ServerCore<MemoryRegistry>>,
    up: Vec<bool>,
    nodes: Vec<Node>,
    next_conn: ConnId,
}

fn list(entries: &[&str]) -> ServerList {
    ServerList {
        servers: entries
            .iter()
            .map(|s| ServerEntry {
                plain: vec![s.parse().unwrap()],
                tls: Vec::new(),
            })
            .collect(),
    }
}

/// Two servers, both live with A the primary; node i's token names `tokens[i]`.
fn deployment(tokens: &[Vec<ServerAddr>], now: Instant) -> Deployment {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let server_secret = SecretKey::generate(&mut rng);
    let secrets: Vec<SecretKey> = tokens
        .iter()
        .map(|_| SecretKey::generate(&mut rng))
        .collect();
    // The shared store, as each server reads it.
    let registry = || {
        let mut r = MemoryRegistry::default();
        r.create_network("mesh", "10.77.0.0/24".parse().unwrap());
        for (i, s) in secrets.iter().enumerate() {
            let member = Member {
                network: "mesh".into(),
                name: format!("n{i}"),
                public_key: s.public_key(),
                virtual_ip: Ipv4Addr::new(10, 77, 0, 1 + i as u8),
                ipv6: None,
            };
            r.admit(&member, &[0; 32]).unwrap();
        }
        r
    };
    let relay =
        |seed| RelayServer::new(RelayLimits::default(), ChaCha8Rng::seed_from_u64(seed), now);
    let mut servers = vec![
        ServerCore::new(server_secret.clone(), registry(), relay(1)),
        ServerCore::new(server_secret.clone(), registry(), relay(2)),
    ];
    for s in &mut servers {
        s.set_deployment(list(&[A, B]));
    }
    let nodes = secrets
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (secret, token))| Node {
            control: ControlClient::new(
                secret,
                server_secret.public_key(),
                token.clone(),
                "mesh".into(),
                ChaCha8Rng::seed_from_u64(100 + i as u64),
                now,
            ),
            conn: None,
            peers: HashSet::new(),
            learned: None,
        })
        .collect();
    Deployment {
        servers,
        up: vec![true, true],
        nodes,
        next_conn: 1,
    }
}

/// What the node's driver does with the control client's events (as `Node::pump_control`).
fn drain(n: &mut Node, servers: &mut [ServerCore<MemoryRegistry>]) {
    while let Some(ev) = n.control.poll_event() {
        match ev {
            ControlEvent::Peer(p) if p.online => {
                n.peers.insert(p.public_key);
            }
            ControlEvent::Peer(p) => {
                n.peers.remove(&p.public_key);
            }
            ControlEvent::PeerGone(k) => {
                n.peers.remove(&k);
            }
            ControlEvent::Servers(list) => n.learned = Some(list),
            ControlEvent::CloseStream => {
                if let Some((s, conn)) = n.conn.take() {
                    servers[s].handle_closed(conn);
                }
                n.peers.clear();
            }
            _ => {}
        }
    }
}

impl Deployment {
    fn index(server: SocketAddr) -> usize {
        usize::from(server != A.parse::<SocketAddr>().unwrap() && server != A2.parse().unwrap())
    }

    /// Connects whoever is due, then moves bytes until nothing moves.
    fn settle(&mut self, now: Instant) {
        for n in &mut self.nodes {
            if let Some(server) = n.control.poll_connect(now) {
                let s = Self::index(server.addr);
                if self.up[s] {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    self.servers[s].handle_open(conn, "198.51.100.1:1".parse().unwrap(), now);
                    n.conn = Some((s, conn));
                    n.control.handle_connected(now);
                } else {
                    n.control.handle_connect_failed(now);
                }
            }
        }
        loop {
            let mut moved = false;
            for n in &mut self.nodes {
                while let Some(bytes) = n.control.poll_bytes() {
                    if let Some((s, conn)) = n.conn {
                        self.servers[s].handle_bytes(conn, &bytes, now, 0);
                        moved = true;
                    }
                }
            }
            for s in 0..self.servers.len() {
                while let Some(out) = self.servers[s].poll_output() {
                    moved = true;
                    let ServerOutput::Send(conn, bytes) = out else {
                        continue;
                    };
                    let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some((s, conn))) else {
                        continue;
                    };
                    n.control.handle_bytes(&bytes, now);
                    drain(n, &mut self.servers);
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs the clock forward in small steps (timeouts, flushes, reconnects).
    fn run(&mut self, from: Instant, d: Duration) -> Instant {
        let mut now = from;
        let end = from + d;
        while now < end {
            now += Duration::from_millis(50);
            for s in &mut self.servers {
                s.handle_timeout(now);
            }
            for n in &mut self.nodes {
                n.control.handle_timeout(now);
                drain(n, &mut self.servers);
            }
            self.settle(now);
        }
        now
    }

    /// SIGKILL: every stream to server `s` ends at once, and it accepts nothing.
    fn kill(&mut self, s: usize, now: Instant) {
        self.up[s] = false;
        for n in &mut self.nodes {
            if n.conn.is_some_and(|(at, _)| at == s) {
                n.conn = None;
                n.peers.clear();
                n.control.handle_closed(now);
                drain(n, &mut self.servers);
            }
        }
    }

    fn on(&self, i: usize) -> Option<SocketAddr> {
        let n = &self.nodes[i];
        n.conn.and(n.control.current_server()).map(|s| s.addr)
    }

    fn everyone_sees_everyone(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.control.is_registered() && n.peers.len() == self.nodes.len() - 1)
    }
}

#[test]
fn nodes_that_start_on_different_servers_meet_on_the_primary() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A), addr(B)], vec![addr(B), addr(A)]], t0);
    let now = d.run(t0, Duration::from_secs(2));
    assert_eq!(d.on(0), Some(A.parse().unwrap()));
    assert_eq!(d.on(1), Some(A.parse().unwrap()), "node 1 stayed on B");
    assert!(d.everyone_sees_everyone());
    // A token naming only B: the node learns A from B's list, and could fail over to it.
    assert_eq!(d.nodes[1].control.servers()[0], addr(A));
    let _ = now;
}

#[test]
fn a_killed_server_s_nodes_register_with_the_other_within_a_second() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A), addr(B)], vec![addr(A), addr(B)]], t0);
    let now = d.run(t0, Duration::from_secs(2));
    assert!(d.everyone_sees_everyone());
    d.kill(0, now);
    // B still lists A for a few seconds (its heartbeat is not stale yet).
    let later = d.run(now, Duration::from_secs(1));
    assert_eq!(d.on(0), Some(B.parse().unwrap()));
    assert_eq!(d.on(1), Some(B.parse().unwrap()));
    assert!(
        d.everyone_sees_everyone(),
        "the peers did not meet again on B"
    );
    // Nobody goes back to the dead A while it is still listed, nor once it is gone.
    let later = d.run(later, Duration::from_secs(4));
    assert_eq!(d.on(0), Some(B.parse().unwrap()));
    for s in &mut d.servers {
        s.set_deployment(list(&[B]));
    }
    let later = d.run(later, Duration::from_secs(1));
    assert!(d.everyone_sees_everyone());
    // A comes back; B has been up longer, so it stays the primary and nobody moves.
    d.up[0] = true;
    for s in &mut d.servers {
        s.set_deployment(list(&[B, A]));
    }
    d.run(later, SETTLE * 2);
    assert_eq!(d.on(0), Some(B.parse().unwrap()));
    assert_eq!(d.on(1), Some(B.parse().unwrap()));
    assert!(d.everyone_sees_everyone());
}

/// A node whose stream to a live primary broke (a reset on the path, a server that shed it
/// under load) fails over to the standby, and goes back to the primary by itself once settled,
/// with no new server list to prompt it (`scripts/load.sh --compare` at 300 nodes: nodes stayed
/// on the standby for good and the network stayed split).
#[test]
fn a_node_cut_off_from_a_live_primary_returns_to_it_once_settled() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A), addr(B)]], t0);
    let now = d.run(t0, Duration::from_secs(1));
    assert_eq!(d.on(0), Some(A.parse().unwrap()));
    // Node 0's stream to A ends; A stays up and stays the primary.
    if let Some((s, conn)) = d.nodes[0].conn.take() {
        d.servers[s].handle_closed(conn);
    }
    d.nodes[0].peers.clear();
    d.nodes[0].control.handle_closed(now);
    drain(&mut d.nodes[0], &mut d.servers);
    let now = d.run(now, Duration::from_secs(1));
    assert_eq!(
        d.on(0),
        Some(B.parse().unwrap()),
        "failed over to the standby"
    );
    let now = d.run(
        now,
        SETTLE + PING_INTERVAL_FOR_TEST + Duration::from_secs(2),
    );
    assert_eq!(d.on(0), Some(A.parse().unwrap()), "still on the standby");
    d.run(now, Duration::from_secs(1));
    assert!(d.everyone_sees_everyone());
}

#[test]
fn a_silent_server_is_left_after_an_unanswered_ping() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A), addr(B)]], t0);
    let now = d.run(t0, Duration::from_secs(1));
    assert_eq!(d.on(0), Some(A.parse().unwrap()));
    // A stops answering but keeps the stream open (a hung host, a black-holed link).
    d.up[0] = false;
    let conn = d.nodes[0].conn.take();
    let mut now = now;
    let deadline = now + PING_INTERVAL_FOR_TEST + Duration::from_secs(6);
    while now < deadline && d.on(0) != Some(B.parse().unwrap()) {
        now = d.run(now, Duration::from_millis(100));
    }
    assert_eq!(
        d.on(0),
        Some(B.parse().unwrap()),
        "still waiting on the silent server"
    );
    assert!(conn.is_some());
}

const PING_INTERVAL_FOR_TEST: Duration = super::super::client::PING_INTERVAL;

#[test]
fn failover_skips_the_dead_server_s_other_address_without_backing_off() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A)], vec![addr(A)]], t0);
    let both = ServerList {
        servers: vec![
            ServerEntry {
                plain: vec![A.parse().unwrap(), A2.parse().unwrap()],
                tls: Vec::new(),
            },
            ServerEntry {
                plain: vec![B.parse().unwrap()],
                tls: Vec::new(),
            },
        ],
    };
    for s in &mut d.servers {
        s.set_deployment(both.clone());
    }
    let now = d.run(t0, Duration::from_secs(2));
    assert!(d.everyone_sees_everyone());
    d.kill(0, now);
    // A2 refuses at once (A is down); B must follow without the 1 s backoff.
    d.run(now, Duration::from_millis(600));
    assert_eq!(d.on(0), Some(B.parse().unwrap()));
    assert_eq!(d.on(1), Some(B.parse().unwrap()));
    assert!(d.everyone_sees_everyone());
}

/// A node that joined when the deployment was only A learns B from A's list (the event the
/// driver saves); restarted while A is down, with a token that still names only A, it reaches
/// B through the list it restored, and the token's A stays in its order behind it.
#[test]
fn a_restarted_node_reaches_the_deployment_through_the_servers_it_learned() {
    let t0 = crate::test_now();
    let mut d = deployment(&[vec![addr(A)], vec![addr(A), addr(B)]], t0);
    let now = d.run(t0, Duration::from_secs(2));
    // What `Node` forwards as `NodeEvent::Servers` for the driver to save.
    let learned = d.nodes[0]
        .learned
        .clone()
        .expect("the node was never told the deployment's servers");
    assert_eq!(learned, vec![addr(A), addr(B)]);

    // Node 0 stops; A dies; node 0 starts again with the same token and the saved list.
    let t1 = d.run(now, Duration::from_secs(1));
    d.kill(0, t1);
    for s in &mut d.servers {
        s.set_deployment(list(&[B]));
    }
    // Node 0 as a new process: its key and the server's (drawn as `deployment` draws them),
    // a token naming only A.
    let restarted = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let server_key = SecretKey::generate(&mut rng).public_key();
        let secret = SecretKey::generate(&mut rng);
        ControlClient::new(
            secret,
            server_key,
            vec![addr(A)],
            "mesh".into(),
            ChaCha8Rng::seed_from_u64(seed),
            t1,
        )
    };
    let mut fresh = restarted(7);
    fresh.restore_servers(&learned);
    assert_eq!(fresh.servers(), [addr(A), addr(B)]);
    d.nodes[0].control = fresh;
    d.nodes[0].conn = None;
    d.nodes[0].peers.clear();
    d.run(t1, Duration::from_secs(3));
    assert_eq!(
        d.on(0),
        Some(B.parse().unwrap()),
        "the restarted node did not find B"
    );
    assert!(d.everyone_sees_everyone());

    // Without the saved list it only knows A, and never registers.
    let alone = restarted(8);
    let t2 = d.run(t1, Duration::from_secs(3));
    if let Some((s, conn)) = d.nodes[0].conn.take() {
        d.servers[s].handle_closed(conn);
    }
    d.nodes[0].control = alone;
    d.nodes[0].peers.clear();
    d.run(t2, Duration::from_secs(3));
    assert_eq!(d.on(0), None, "a node knowing only the dead A registered");
}
