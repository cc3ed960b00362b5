//! The server core with many real control clients registering at once (a server restart): the
//! message count must grow with N, not N², no connection may get a burst of writes that would
//! fill the driver's per-connection queue (256), and every node must end with the full map.

use super::super::client::{ControlClient, ControlEvent, ServerAddr};
use super::super::messages::PeerInfo;
use super::super::registry::{Member, MemoryRegistry, Registry};
use super::super::server::{ConnId, ServerCore, ServerOutput};
use super::FLUSH_INTERVAL;
use crate::core::keys::{PublicKey, SecretKey};
use crate::core::relay::server::{RelayLimits, RelayServer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

struct Client {
    control: ControlClient,
    conn: ConnId,
    peers: HashMap<PublicKey, PeerInfo>,
}

struct Storm {
    server: ServerCore<MemoryRegistry>,
    clients: Vec<Client>,
    /// `ServerOutput::Send` count per connection.
    sends: HashMap<ConnId, usize>,
}

fn endpoint(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 10_000 + i as u16))
}

/// `n` members of one network, none connected yet.
fn storm(n: usize, now: Instant) -> Storm {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let server_secret = SecretKey::generate(&mut rng);
    let mut registry = MemoryRegistry::default();
    registry.create_network("big", "10.64.0.0/16".parse().unwrap());
    let relay = RelayServer::new(RelayLimits::default(), ChaCha8Rng::seed_from_u64(1), now);
    let server_addr = ServerAddr {
        addr: "127.0.0.1:1".parse().unwrap(),
        tls: false,
    };
    let mut clients = Vec::new();
    for i in 0..n {
        let secret = SecretKey::generate(&mut rng);
        let member = Member {
            network: "big".into(),
            name: format!("n{i}"),
            public_key: secret.public_key(),
            virtual_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + i as u32),
            ipv6: None,
        };
        registry.admit(&member, &[0; 32]).unwrap();
        let mut control = ControlClient::new(
            secret,
            server_secret.public_key(),
            vec![server_addr],
            "big".into(),
            ChaCha8Rng::seed_from_u64(i as u64),
            now,
        );
        control.set_endpoints(vec![endpoint(i)], None);
        clients.push(Client {
            control,
            conn: i as ConnId + 1,
            peers: HashMap::new(),
        });
    }
    Storm {
        server: ServerCore::new(server_secret, registry, relay),
        clients,
        sends: HashMap::new(),
    }
}

impl Storm {
    /// Moves bytes both ways until nothing moves.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            for c in &mut self.clients {
                while let Some(bytes) = c.control.poll_bytes() {
                    self.server.handle_bytes(c.conn, &bytes, now, 0);
                    moved = true;
                }
            }
            while let Some(out) = self.server.poll_output() {
                moved = true;
                if let ServerOutput::Send(conn, bytes) = out {
                    *self.sends.entry(conn).or_default() += 1;
                    let c = &mut self.clients[conn as usize - 1];
                    c.control.handle_bytes(&bytes, now);
                    while let Some(ev) = c.control.poll_event() {
                        if let ControlEvent::Peer(info) = ev {
                            c.peers.insert(info.public_key, info);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

#[test]
fn a_registration_storm_costs_o_n_messages_and_everyone_gets_the_full_map() {
    const N: usize = 100;
    let t0 = crate::test_now();
    let mut s = storm(N, t0);
    // Every node connects and says hello within the same flush interval.
    for c in &mut s.clients {
        assert!(c.control.poll_connect(t0).is_some());
        s.server
            // From the address its endpoints claim: the server keeps only candidates on the
            // connection's own public IP (`candidates`).
            .handle_open(c.conn, SocketAddr::from(([192, 0, 2, 1], 1)), t0);
        c.control.handle_connected(t0);
    }
    s.settle(t0);
    assert!(s.clients.iter().all(|c| c.control.is_registered()));
    let later = t0 + FLUSH_INTERVAL;
    assert!(s.server.poll_timeout().is_some_and(|t| t <= later));
    s.server.handle_timeout(later);
    s.settle(later);

    let total: usize = s.sends.values().sum();
    // Per node: the handshake answer, the welcome, the full map; one more for the very first
    // node (its map went out at once, the others' arrival came as one batch). One message per
    // peer per join instead would be N² ≈ 10 000.
    assert!(total <= 3 * N + 1, "{total} sends for {N} nodes");
    let worst = s.sends.values().max().copied().unwrap_or(0);
    assert!(worst <= 4, "one connection got {worst} writes");
    for (i, c) in s.clients.iter().enumerate() {
        assert_eq!(
            c.peers.len(),
            N - 1,
            "node {i} knows {} peers",
            c.peers.len()
        );
        for (j, other) in s.clients.iter().enumerate().filter(|(j, _)| *j != i) {
            let info = &c.peers[&other.control_key()];
            assert!(info.online, "node {i} sees node {j} offline");
            assert_eq!(info.endpoints, vec![endpoint(j)]);
            assert!(info.relay_id.is_some());
        }
    }
}

#[test]
fn a_lone_change_goes_out_at_once_and_a_burst_waits_for_one_batch() {
    let t0 = crate::test_now();
    let mut s = storm(3, t0);
    for c in &mut s.clients {
        c.control.poll_connect(t0);
        s.server
            .handle_open(c.conn, SocketAddr::from(([198, 51, 100, 7], 1)), t0);
        c.control.handle_connected(t0);
    }
    s.settle(t0);
    let t1 = t0 + FLUSH_INTERVAL;
    s.server.handle_timeout(t1);
    s.settle(t1);
    assert!(s.clients.iter().all(|c| c.peers.len() == 2));
    // After a quiet spell, an endpoint change reaches the others without waiting.
    let t2 = t1 + FLUSH_INTERVAL * 3;
    let moved: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    s.clients[0].control.set_endpoints(vec![moved], None);
    s.settle(t2);
    let key0 = s.clients[0].control_key();
    assert_eq!(s.clients[1].peers[&key0].endpoints, vec![moved]);
    // A second change right after is held for the next batch, then delivered.
    let again: SocketAddr = "198.51.100.7:4001".parse().unwrap();
    s.clients[0].control.set_endpoints(vec![again], None);
    s.settle(t2);
    assert_eq!(s.clients[1].peers[&key0].endpoints, vec![moved]);
    s.server.handle_timeout(t2 + FLUSH_INTERVAL);
    s.settle(t2 + FLUSH_INTERVAL);
    assert_eq!(s.clients[1].peers[&key0].endpoints, vec![again]);
    assert_eq!(s.clients[2].peers[&key0].endpoints, vec![again]);
}

impl Client {
    fn control_key(&self) -> PublicKey {
        self.control.public_key()
    }
}
