//! The node's side of our engine's cookies (`Node::check_handshake_load`, `core::wg::cookie`):
//! under load an initiation without a valid mac2 is answered with a cookie reply to its source
//! and stops before `initiator_of`'s Diffie-Hellman (counted as `RateLimited`; one that got
//! through ends as `UnknownPeer`, the sender being no member, after that DH); the mac2 made with
//! that cookie passes from that source only. The boringtun engine keeps its own limiter.

use super::{DatagramOutcome, Node, NodeConfig, PunchConfig, SocketId};
use crate::core::counters::DropReason;
use crate::core::crypto::Engine;
use crate::core::keys::SecretKey;
use crate::core::wg::cookie::HANDSHAKE_LIMIT;
use crate::core::wg::handshake::{open_cookie_reply, set_mac2, tai64n, Initiator, INITIATION_LEN};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn node(engine: Engine, now: Instant) -> Node {
    let config = NodeConfig {
        network: "t".into(),
        secret: SecretKey::from_bytes([11; 32]),
        server_key: SecretKey::from_bytes([12; 32]).public_key(),
        servers: vec!["198.51.100.1:7400".parse().unwrap()],
        tls_servers: Vec::new(),
        punch: PunchConfig::default(),
    };
    let mut node = Node::new(config, rand_chacha::ChaCha8Rng::seed_from_u64(3), now);
    node.set_wireguard(engine, now, Duration::from_secs(1_800_000_000));
    node
}

/// An initiation to `node` from a key that is no member, and its mac1.
fn stranger_initiation(node: &Node, index: u32) -> ([u8; INITIATION_LEN], [u8; 16]) {
    let stranger = SecretKey::from_bytes([13; 32]);
    let mut msg = [0u8; INITIATION_LEN];
    let i = Initiator::start(&stranger, &node.public, None, index, tai64n(5, 0), &mut msg).unwrap();
    (msg, *i.mac1())
}

fn receive(node: &mut Node, from: SocketAddr, msg: &[u8], now: Instant) -> Option<DropReason> {
    let mut out = vec![0u8; 2048];
    match node.handle_datagram(SocketId::MAIN, from, msg, now, &mut out) {
        DatagramOutcome::Dropped(reason) => Some(reason),
        _ => None,
    }
}

/// The cookie replies the node queued, with where they go.
fn cookie_replies(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| node.poll_transmit())
        .filter(|t| t.payload.first() == Some(&3))
        .map(|t| (t.dst, t.payload))
        .collect()
}

#[test]
fn under_load_an_initiation_gets_a_cookie_to_its_source_before_any_dh() {
    let now = crate::test_now();
    let mut node = node(Engine::Own, now);
    let from: SocketAddr = "203.0.113.5:4000".parse().unwrap();
    let (mut msg, mac1) = stranger_initiation(&node, 0x0102_0304);
    for _ in 0..HANDSHAKE_LIMIT {
        assert_eq!(
            receive(&mut node, from, &msg, now),
            Some(DropReason::UnknownPeer)
        );
    }
    assert!(cookie_replies(&mut node).is_empty(), "not under load yet");
    assert_eq!(
        receive(&mut node, from, &msg, now),
        Some(DropReason::RateLimited)
    );
    let replies = cookie_replies(&mut node);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, from, "to the datagram's source");
    let (index, cookie) = open_cookie_reply(&node.public, &mac1, &replies[0].1).unwrap();
    assert_eq!(index, 0x0102_0304);
    assert_eq!(node.drops().get(DropReason::RateLimited), 1);
    assert_eq!(
        node.drops().get(DropReason::UnknownPeer),
        u64::from(HANDSHAKE_LIMIT)
    );

    // With mac2 under the cookie it goes on to `initiator_of` (and ends as an unknown peer)...
    set_mac2(&mut msg, &cookie);
    assert_eq!(
        receive(&mut node, from, &msg, now),
        Some(DropReason::UnknownPeer)
    );
    assert!(cookie_replies(&mut node).is_empty());
    // ...from that source only: from another port it gets a cookie reply of its own, sent there.
    let other: SocketAddr = "203.0.113.5:4001".parse().unwrap();
    assert_eq!(
        receive(&mut node, other, &msg, now),
        Some(DropReason::RateLimited)
    );
    let replies = cookie_replies(&mut node);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, other);
    // A second later the window is new and the node not under load.
    let (plain, _) = stranger_initiation(&node, 7);
    assert_eq!(
        receive(&mut node, from, &plain, now + Duration::from_secs(1)),
        Some(DropReason::UnknownPeer)
    );
}

#[test]
fn the_boringtun_engine_is_left_to_its_own_limiter() {
    let now = crate::test_now();
    let mut node = node(Engine::Boringtun, now);
    let from: SocketAddr = "203.0.113.6:4000".parse().unwrap();
    let (msg, _) = stranger_initiation(&node, 1);
    for _ in 0..HANDSHAKE_LIMIT + 5 {
        assert_eq!(
            receive(&mut node, from, &msg, now),
            Some(DropReason::UnknownPeer)
        );
    }
    assert!(cookie_replies(&mut node).is_empty());
    assert_eq!(node.drops().get(DropReason::RateLimited), 0);
}
