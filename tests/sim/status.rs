//! What `status` says about peers and about this node's NAT as things change: a peer that
//! leaves reads `offline` (not `direct`, then `connecting` for ever) with the time it was last
//! seen, a member that never came up reads `offline` and never seen, and a node that started
//! while the server was down says the server was unreachable (not "UDP blocked") and measures
//! again once the server is back.

use crate::harness::{Sim, UNIX_NOW};
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::NodeEvent;
use p2pvpn::core::peers::Path;
use rand::SeedableRng;
use std::time::Duration;

/// Bob's node stops: its stream ends at the server and its UDP goes nowhere.
fn bob_leaves(sim: &mut Sim) {
    let bob = 1;
    if let Some(conn) = sim.nodes[bob].conn.take() {
        sim.server.handle_closed(conn);
    }
    sim.nodes.remove(bob);
    sim.settle();
}

#[test]
fn a_peer_that_leaves_is_offline_at_once_with_the_time_it_was_last_seen() {
    let mut sim = crate::two_nodes();
    assert_eq!(
        sim.nodes[0].node.status(UNIX_NOW).peers[0].path,
        Path::Direct
    );
    sim.nodes[0].events.clear();
    bob_leaves(&mut sim);
    sim.advance(Duration::from_secs(1));
    let bob = &sim.nodes[0].node.status(UNIX_NOW).peers[0];
    assert_eq!(bob.path, Path::Offline, "{bob:?}");
    assert!(!bob.online);
    assert_eq!(bob.endpoint, None, "no address to reach an offline peer at");
    // A minute later it still reads offline, seen a minute ago: not `connecting`.
    sim.advance(Duration::from_secs(60));
    let bob = &sim.nodes[0].node.status(UNIX_NOW).peers[0];
    assert_eq!(bob.path, Path::Offline, "{bob:?}");
    let ago = UNIX_NOW - bob.last_seen_unix.expect("a last-seen time");
    assert!((60..=62).contains(&ago), "last seen {ago} s ago");
    assert!(bob.last_seen.as_deref().is_some_and(|d| d.ends_with('Z')));
    // The log says it once, with the peer's name, and never `connecting`.
    let changes: Vec<_> = sim.nodes[0]
        .events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::PathChanged {
                name,
                path,
                endpoint,
                ..
            } if name == "bob" => Some((*path, *endpoint)),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![(Path::Offline, None)]);
}

#[test]
fn a_member_that_never_came_up_is_offline_and_never_seen() {
    let mut sim = Sim::new(41);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
    let carol = SecretKey::generate(&mut rng);
    let token = sim.token();
    sim.join(&carol, &token, "carol").expect("join accepted");
    sim.add_node("alice", "198.51.100.11:51000");
    sim.advance(Duration::from_secs(5));
    let s = sim.nodes[0].node.status(UNIX_NOW);
    let carol = s.peers.iter().find(|p| p.name == "carol").expect("carol");
    assert_eq!(carol.path, Path::Offline);
    assert_eq!(carol.last_seen_unix, None);
}

#[test]
fn a_server_that_was_down_is_not_blamed_on_udp_and_the_verdict_is_measured_again() {
    let mut sim = Sim::new(42);
    sim.server_up = false;
    let nat = sim.add_nat("UDPBLK", None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(nat));
    sim.advance(Duration::from_secs(5));
    let nat = sim.nodes[0].node.status(UNIX_NOW).nat.expect("a verdict");
    assert!(nat.server_unreachable && !nat.udp_blocked, "{nat:?}");
    assert_eq!(nat.short(), "not measured: server unreachable");
    let said_blocked = |sim: &Sim| {
        sim.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, NodeEvent::Progress(line) if line.starts_with("NAT: UDP blocked")))
    };
    assert!(!said_blocked(&sim));
    // The server is back: the node registers, measures again, and now UDP is the culprit.
    sim.restart_server();
    sim.advance(Duration::from_secs(70));
    let s = sim.nodes[0].node.status(UNIX_NOW);
    assert!(s.server.connected);
    let nat = s.nat.expect("a verdict");
    assert!(nat.udp_blocked && !nat.server_unreachable, "{nat:?}");
    assert!(said_blocked(&sim));
}

#[test]
fn both_sides_show_a_round_trip_time() {
    let sim = crate::two_nodes();
    for n in &sim.nodes {
        let s = n.node.status(UNIX_NOW);
        assert!(
            s.peers[0].rtt_ms.is_some(),
            "{:?}: {:?}",
            s.name,
            s.peers[0]
        );
    }
}

/// The fuzzer's state-machine target found this: a punch session that would offer to a peer
/// the server says is offline kept its retry deadline in the past, and the real driver, which
/// sleeps until `poll_timeout`, would spin at 100% CPU for as long as the peer stayed away.
#[test]
fn a_node_with_an_offline_peer_never_asks_to_be_woken_in_the_past() {
    let mut sim = Sim::new(43);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(43);
    let alice = sim.add_node("alice", "198.51.100.11:51000");
    let alice_key = sim.nodes[alice].secret.public_key();
    // A member whose key sorts above alice's, so alice is the side that starts punching.
    let carol = std::iter::repeat_with(|| SecretKey::generate(&mut rng))
        .find(|k| k.public_key() > alice_key)
        .expect("a higher key");
    let token = sim.token();
    sim.join(&carol, &token, "carol").expect("join accepted");
    for _ in 0..60 {
        sim.advance(Duration::from_millis(500));
        // What is due now is handled now, as the driver would; what is left must lie ahead.
        let now = sim.now;
        sim.nodes[alice].node.handle_timeout(now);
        sim.settle();
        if let Some(t) = sim.nodes[alice].node.poll_timeout() {
            assert!(
                t > sim.now,
                "alice asks to be woken {:?} in the past",
                sim.now - t
            );
        }
    }
}
