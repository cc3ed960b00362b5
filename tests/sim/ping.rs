//! `p2pvpn ping` in the simulator: the node's own echo request takes the real route, the peer's
//! kernel (played here by `icmp::echo_reply_for`) answers, and the reply is taken out of the
//! receive path with its round trip and the path it came back on: relay first, direct after.

use crate::harness::Sim;
use p2pvpn::core::icmp;
use p2pvpn::core::node::{PingError, PingReply};
use p2pvpn::core::peers::Path;
use std::time::Duration;

/// Plays bob's kernel: answers every echo request his TUN device received since `from`.
fn kernel_answers(sim: &mut Sim, i: usize, from: usize) {
    let requests: Vec<Vec<u8>> = sim.nodes[i].tun_out[from..].to_vec();
    for r in requests {
        if let Some(reply) = icmp::echo_reply_for(&r) {
            sim.send_from_tun(i, &reply);
        }
    }
}

/// Alice pings `target` with `seq`; bob answers; returns alice's record of it.
fn ping(sim: &mut Sim, target: &str, seq: u16) -> Option<PingReply> {
    let seen = sim.nodes[1].tun_out.len();
    let tun_before = sim.nodes[0].tun_out.len();
    let now = sim.now;
    sim.nodes[0].node.ping(target, seq, now).expect("ping sent");
    sim.advance(Duration::from_millis(50));
    kernel_answers(sim, 1, seen);
    sim.advance(Duration::from_millis(50));
    // The reply never reaches alice's TUN device.
    assert_eq!(
        sim.nodes[0].tun_out.len(),
        tun_before,
        "reply leaked to TUN"
    );
    sim.nodes[0].node.poll_ping_reply()
}

#[test]
fn a_ping_is_answered_over_the_relay_then_over_the_direct_path_and_names_it() {
    let mut sim = Sim::new(41);
    let na = sim.add_nat("PRC", None);
    let nb = sim.add_nat("PRC", None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    // Punching wins within a round trip or two: hold the direct path shut for the relay part.
    sim.net.block(na, nb, true);
    sim.advance(Duration::from_millis(800));
    assert_eq!(
        sim.nodes[0].node.status(0).peers[0].path,
        Path::Relay,
        "relay before any punch"
    );
    let relayed = ping(&mut sim, "bob", 1).expect("relayed ping answered");
    sim.net.block(na, nb, false);
    eprintln!("{relayed:?}");
    assert_eq!((relayed.name.as_str(), relayed.seq), ("bob", 1));
    assert_eq!(relayed.path, "relay (udp)");
    assert!(relayed.rtt_us > 0);

    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.nodes[0].node.status(0).peers[0].path, Path::Direct);
    let bob_ip = sim.nodes[1]
        .node
        .status(0)
        .virtual_ip
        .expect("bob's address");
    let direct = ping(&mut sim, &bob_ip.to_string(), 2).expect("direct ping answered");
    eprintln!("{direct:?}");
    assert_eq!(direct.virtual_ip, bob_ip);
    assert!(direct.path.starts_with("direct"), "{}", direct.path);
    assert_eq!(
        Some(direct.path.clone()),
        sim.nodes[0].node.status(0).peers[0].technique_detail
    );
    assert!(direct.rtt_us > 0);
}

#[test]
fn pings_to_strangers_or_unanswered_are_bounded_and_reported() {
    let mut sim = Sim::new(42);
    sim.add_node("alice", "203.0.113.1:51000");
    sim.add_node("bob", "203.0.113.2:51000");
    sim.advance(Duration::from_secs(2));
    let now = sim.now;
    assert!(matches!(
        sim.nodes[0].node.ping("carol", 1, now),
        Err(PingError::UnknownPeer(_))
    ));
    // Far more requests than the node keeps; none answered, so nothing comes back.
    for seq in 0..200 {
        sim.nodes[0].node.ping("bob", seq, now).expect("sent");
    }
    sim.advance(Duration::from_millis(100));
    assert!(sim.nodes[0].node.poll_ping_reply().is_none());
    // Bob's kernel answers only the last: only the 64 newest are still awaited.
    let requests = sim.nodes[1].tun_out.clone();
    let mut answered = 0;
    for r in requests.iter().rev().take(70) {
        if let Some(reply) = icmp::echo_reply_for(r) {
            sim.send_from_tun(1, &reply);
        }
    }
    sim.advance(Duration::from_millis(100));
    while sim.nodes[0].node.poll_ping_reply().is_some() {
        answered += 1;
    }
    assert_eq!(answered, 64);
}
