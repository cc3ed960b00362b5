//! Tier-2 tests: a server and nodes exchange packets through a simulated network, driving the
//! real state machines on a virtual clock. No root, no sockets, milliseconds per test.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

mod acl;
mod fast;
mod harness;
mod hostile;
mod ipv6;
mod ipv6path;
mod matrix;
mod nat;
mod nat_tests;
mod net;
mod net_tests;
mod ping;
mod pmtu;
mod portmap;
mod punch;
mod rejoin;
mod relay;
mod restart;
mod roam;
mod status;
mod wg_engine;
mod workers;

use harness::{ping_packet, DatagramOutcomeKind, Sim};
use p2pvpn::core::counters::DropReason;
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::NodeEvent;
use p2pvpn::core::peers::Path;
use p2pvpn::core::rendezvous::messages::Refusal;
use rand::SeedableRng;
use std::time::Duration;

const A_IP: [u8; 4] = [10, 99, 0, 1];
const B_IP: [u8; 4] = [10, 99, 0, 2];

fn two_nodes() -> Sim {
    let mut sim = Sim::new(1);
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    // Netcheck (about 2.5 s, most of it the filtering test's silence), one offer and answer
    // through the server, priming, then the first round of probes.
    sim.advance(Duration::from_secs(5));
    sim
}

#[test]
fn two_nodes_register_get_addresses_and_see_each_other_direct() {
    let sim = two_nodes();
    let a = sim.nodes[0].node.status(0);
    let b = sim.nodes[1].node.status(0);
    assert_eq!(a.virtual_ip.map(|i| i.octets()), Some(A_IP));
    assert_eq!(b.virtual_ip.map(|i| i.octets()), Some(B_IP));
    assert!(a.server.connected && b.server.connected);
    assert_eq!(a.peers.len(), 1);
    assert_eq!(a.peers[0].name, "bob");
    // The lower key initiates as soon as both are known, so the path is up before any traffic.
    assert_eq!(a.peers[0].path, Path::Direct, "{:?}", a.peers[0]);
    assert_eq!(b.peers[0].path, Path::Direct, "{:?}", b.peers[0]);
}

#[test]
fn packets_cross_both_ways_unchanged() {
    let mut sim = two_nodes();
    let ab = ping_packet(A_IP, B_IP, 0xAB);
    assert!(sim.send_from_tun(0, &ab));
    assert_eq!(sim.nodes[1].tun_out, vec![ab]);
    let ba = ping_packet(B_IP, A_IP, 0xBA);
    assert!(sim.send_from_tun(1, &ba));
    assert_eq!(sim.nodes[0].tun_out, vec![ba]);
    let status = sim.nodes[0].node.status(0);
    assert!(status.peers[0].tx_bytes >= 40 && status.peers[0].rx_bytes >= 40);
}

#[test]
fn what_crosses_the_wire_is_never_the_plaintext() {
    let mut sim = two_nodes();
    let datagram = sim.encrypt(0, &ping_packet(A_IP, B_IP, 0x5A));
    assert_eq!(datagram[0], 4, "a WireGuard transport message");
    assert!(!datagram.windows(12).any(|w| w == [0x5A; 12]));
}

#[test]
fn a_peer_cannot_send_from_another_address_or_to_someone_else() {
    let mut sim = two_nodes();
    // Alice's TUN emits a packet claiming a third node's source address.
    let spoofed = ping_packet([10, 99, 0, 77], B_IP, 1);
    assert!(sim.send_from_tun(0, &spoofed));
    assert!(sim.nodes[1].tun_out.is_empty());
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::SpoofedSource), 1);
    // A packet to an address outside the network is not forwarded at all.
    assert!(!sim.send_from_tun(0, &ping_packet(A_IP, [192, 0, 2, 9], 1)));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::NotInNetwork), 1);
    // A packet to a network address nobody owns.
    assert!(!sim.send_from_tun(0, &ping_packet(A_IP, [10, 99, 0, 50], 1)));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::NoRoute), 1);
}

#[test]
fn garbage_and_replayed_datagrams_are_dropped_and_counted() {
    let mut sim = two_nodes();
    let from = "203.0.113.66:999".parse().unwrap();
    let to = sim.nodes[1].udp;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for len in [0usize, 1, 3, 4, 31, 32, 92, 148, 200, 1500] {
        let mut junk = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rng, &mut junk);
        assert_eq!(
            sim.deliver(from, to, &junk),
            Some(DatagramOutcomeKind::Dropped)
        );
        // Well-framed but unauthenticated messages of each type, too.
        for kind in 1u8..=4 {
            if junk.len() >= 4 {
                junk[0] = kind;
                junk[1..4].fill(0);
                assert_eq!(
                    sim.deliver(from, to, &junk),
                    Some(DatagramOutcomeKind::Dropped)
                );
            }
        }
    }
    let drops = sim.nodes[1].node.drops().total();
    assert!(drops >= 30, "{drops}");

    // Capture a real datagram and replay it.
    let datagram = sim.encrypt(0, &ping_packet(A_IP, B_IP, 7));
    let a = sim.nodes[0].udp;
    assert_eq!(
        sim.deliver(a, to, &datagram),
        Some(DatagramOutcomeKind::Tun)
    );
    assert_eq!(
        sim.deliver(a, to, &datagram),
        Some(DatagramOutcomeKind::Dropped)
    );
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::Replay), 1);
}

#[test]
fn a_removed_member_is_cut_off_from_every_peer() {
    let mut sim = Sim::new(2);
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    sim.add_node("carol", "198.51.100.13:51000");
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.nodes[0].node.status(0).peers.len(), 2);

    assert!(sim.server.registry_mut().remove_member("sim", "bob"));
    sim.server.handle_registry_changed();
    sim.settle();

    for i in [0, 2] {
        let peers = sim.nodes[i].node.status(0).peers;
        assert!(peers.iter().all(|p| p.name != "bob"), "{peers:?}");
        assert!(sim.nodes[i]
            .events
            .iter()
            .any(|e| matches!(e, NodeEvent::PeerRemoved { name, .. } if name == "bob")));
    }
    assert!(sim.nodes[1].events.iter().any(|e| matches!(
        e,
        NodeEvent::Refused {
            refusal: Refusal::Removed { .. },
            permanent: true
        }
    )));
    // Bob's packets no longer reach alice, even though bob still knows his old session.
    let before = sim.nodes[0].tun_out.len();
    sim.send_from_tun(1, &ping_packet(B_IP, A_IP, 1));
    assert_eq!(sim.nodes[0].tun_out.len(), before);
}

#[test]
fn a_stranger_key_is_refused_registration_and_a_bad_token_refused_join() {
    let mut sim = two_nodes();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let stranger = SecretKey::generate(&mut rng);
    let mut token = sim.token();
    token.credential = p2pvpn::core::rendezvous::token::Credential([1; 32]);
    let refused = sim.join(&stranger, &token, "mallory");
    assert!(
        matches!(refused, Err(Refusal::BadCredential { .. })),
        "{refused:?}"
    );

    // A node whose key never joined is refused registration and learns no peers.
    let m = sim.add_node_with("mallory", "198.51.100.66:51000", false);
    sim.advance(Duration::from_secs(1));
    assert!(sim.nodes[m].events.iter().any(|e| matches!(
        e,
        NodeEvent::Refused {
            refusal: Refusal::NotAMember { .. },
            permanent: true
        }
    )));
    assert!(sim.nodes[m].node.status(0).peers.is_empty());
    assert!(sim.nodes[0]
        .node
        .status(0)
        .peers
        .iter()
        .all(|p| p.name != "mallory"));

    // Garbage on the control port closes that connection and nothing else.
    let before = sim.server.stats().bad_handshakes;
    let conn = 9_999;
    sim.server
        .handle_open(conn, "203.0.113.9:1".parse().unwrap(), sim.now);
    sim.server
        .handle_bytes(conn, &[0, 5, 1, 2, 3, 4, 5], sim.now, harness::UNIX_NOW);
    assert_eq!(sim.server.stats().bad_handshakes, before + 1);
    sim.settle();
    assert!(sim.nodes[0].node.status(0).server.connected);
}

#[test]
fn tunnels_survive_a_server_restart_and_nodes_reregister_on_their_own() {
    let mut sim = two_nodes();
    sim.stop_server();
    assert!(!sim.nodes[0].node.status(0).server.connected);
    // With the server gone, the existing direct tunnel keeps working.
    let ab = ping_packet(A_IP, B_IP, 3);
    sim.send_from_tun(0, &ab);
    assert_eq!(sim.nodes[1].tun_out, vec![ab]);

    sim.advance(Duration::from_secs(5));
    sim.restart_server();
    sim.advance(Duration::from_secs(70));
    for n in &sim.nodes {
        let s = n.node.status(0);
        assert!(
            s.server.connected,
            "{} did not re-register",
            s.name.unwrap_or_default()
        );
        assert_eq!(s.peers.len(), 1);
    }
    assert_eq!(sim.server.online_count(), 2);
}

#[test]
fn keepalives_and_pings_keep_everything_up_for_ten_minutes() {
    let mut sim = two_nodes();
    sim.advance(Duration::from_secs(600));
    for n in &sim.nodes {
        let s = n.node.status(0);
        assert!(s.server.connected);
    }
    let ab = ping_packet(A_IP, B_IP, 9);
    sim.send_from_tun(0, &ab);
    assert_eq!(sim.nodes[1].tun_out.last(), Some(&ab));
}
