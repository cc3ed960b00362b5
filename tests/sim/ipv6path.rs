//! IPv6 underlay paths in the simulator (issue 13 part 3): nodes behind IPv4 NATs that also
//! have global IPv6 behind stateful firewalls (`net::v6`). Random symmetric NATs on both sides
//! (row 7, relay-only over IPv4) go direct over IPv6; a pair that would need birthday probing
//! over IPv4 takes the IPv6 path instead and sends no birthday probes; a cone pair still goes
//! direct; and a pair where only one side has IPv6 stays relayed, as before.

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
use std::net::SocketAddr;
use std::time::Duration;

const ALICE6: &str = "[2001:db8:a::10]:51000";
const BOB6: &str = "[2001:db8:b::10]:51000";

/// alice behind `pa`, bob behind `pb`; each with IPv6 (firewalled) when its flag says so.
/// Runs until both see each other direct or `limit` passes.
fn pair(pa: &str, pb: &str, v6: [bool; 2], seed: u64, limit: Duration) -> Sim {
    let mut sim = Sim::new(seed);
    let na = sim.add_nat(pa, None);
    let nb = sim.add_nat(pb, None);
    let a = sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    let b = sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    if v6[0] {
        sim.give_ipv6(a, ALICE6.parse().unwrap(), true);
    }
    if v6[1] {
        sim.give_ipv6(b, BOB6.parse().unwrap(), true);
    }
    let start = sim.now;
    while sim.now.duration_since(start) < limit {
        sim.advance(Duration::from_millis(250));
        if [a, b].iter().all(|&i| path(&sim, i) == Some(Path::Direct)) {
            break;
        }
    }
    sim
}

fn path(sim: &Sim, i: usize) -> Option<Path> {
    sim.nodes[i].node.status(0).peers.first().map(|p| p.path)
}

fn peer(sim: &Sim, i: usize) -> (Option<String>, Option<SocketAddr>, u64) {
    let s = sim.nodes[i].node.status(0);
    let p = s.peers.first().expect("one peer");
    (p.technique_detail.clone(), p.endpoint, p.punch.probes_sent)
}

#[test]
fn random_symmetric_nats_on_both_sides_go_direct_over_ipv6_through_firewalls() {
    for seed in [1u64, 2, 3] {
        let mut sim = pair("RND", "RND", [true, true], seed, Duration::from_secs(20));
        for (i, other) in [(0, BOB6), (1, ALICE6)] {
            assert_eq!(path(&sim, i), Some(Path::Direct), "seed {seed} node {i}");
            let (detail, endpoint, _) = peer(&sim, i);
            assert_eq!(detail.as_deref(), Some("direct (IPv6)"), "seed {seed}");
            assert_eq!(endpoint, Some(other.parse().unwrap()), "seed {seed}");
        }
        // The firewalls are in play: a stranger's datagram to alice's socket is dropped.
        let stranger: SocketAddr = "[2001:db8:c::10]:51000".parse().unwrap();
        if let std::net::IpAddr::V6(ip) = stranger.ip() {
            sim.net.add_ipv6_host(ip, false);
        }
        let filtered = sim.net.ipv6_filtered();
        let now = sim.now;
        sim.net
            .send(stranger, ALICE6.parse().unwrap(), vec![1; 32], None, now);
        sim.advance(Duration::from_millis(100));
        assert_eq!(sim.net.ipv6_filtered(), filtered + 1, "seed {seed}");
        // Packets cross it both ways.
        for (from, to) in [(0, 1), (1, 0)] {
            let src = sim.nodes[from]
                .node
                .status(0)
                .virtual_ip
                .expect("an address");
            let dst = sim.nodes[to].node.status(0).virtual_ip.expect("an address");
            let before = sim.nodes[to].tun_out.len();
            assert!(sim.send_from_tun(from, &ping_packet(src.octets(), dst.octets(), 7)));
            sim.advance(Duration::from_millis(200));
            assert_eq!(sim.nodes[to].tun_out.len(), before + 1, "seed {seed}");
        }
    }
}

/// A port-restricted cone against a random symmetric NAT needs birthday probing over IPv4
/// (256 sockets on one side, up to 3,072 random probes on the other). With IPv6 on both sides
/// the ladder takes the IPv6 path first and spends none of that.
#[test]
fn ipv6_is_preferred_over_birthday_probing() {
    let without = pair("PRC", "RND", [false, false], 5, Duration::from_secs(30));
    let (detail, _, probes0) = peer(&without, 0);
    let (_, _, probes1) = peer(&without, 1);
    assert!(
        detail.as_deref().is_some_and(|d| d.contains("birthday")),
        "IPv4 only: {detail:?}"
    );
    // The birthday side opens 256 sockets and probes from each: whichever probe wins, the pair
    // has sent hundreds (how many the other side sent first depends on luck).
    assert!(
        probes0 + probes1 > 200,
        "IPv4 only sent {probes0} + {probes1} probes"
    );
    let with = pair("PRC", "RND", [true, true], 5, Duration::from_secs(20));
    for i in [0, 1] {
        let (detail, endpoint, probes) = peer(&with, i);
        assert_eq!(detail.as_deref(), Some("direct (IPv6)"), "node {i}");
        assert!(endpoint.is_some_and(|e| e.is_ipv6()));
        assert!(
            probes < 100,
            "node {i} sent {probes} probes: no birthday round"
        );
    }
}

/// Cone to cone: IPv4 candidates suffice; the pair goes direct as before (by whichever
/// candidate answers first), with IPv6 on both sides too.
#[test]
fn cone_pairs_with_ipv6_go_direct() {
    let sim = pair("PRC", "PRC", [true, true], 7, Duration::from_secs(10));
    assert_eq!(path(&sim, 0), Some(Path::Direct));
    assert_eq!(path(&sim, 1), Some(Path::Direct));
}

/// IPv6 on one side only: nothing to reach over IPv6, row 7 stays relayed.
#[test]
fn ipv6_on_one_side_only_leaves_row_7_relayed() {
    let sim = pair("RND", "RND", [true, false], 9, Duration::from_secs(15));
    assert_ne!(path(&sim, 0), Some(Path::Direct));
    assert_ne!(path(&sim, 1), Some(Path::Direct));
}

/// Behind a sequential allocator an attempt probes from a fresh IPv4 socket (its mappings are
/// the predicted ones); IPv6 targets still go from the main socket's IPv6 half.
#[test]
fn a_sequential_nat_still_reaches_the_peer_over_ipv6() {
    let sim = pair("SEQ", "SEQ", [true, true], 11, Duration::from_secs(20));
    for i in [0, 1] {
        let (detail, endpoint, _) = peer(&sim, i);
        assert_eq!(detail.as_deref(), Some("direct (IPv6)"), "node {i}");
        assert!(endpoint.is_some_and(|e| e.is_ipv6()), "node {i}");
    }
}
