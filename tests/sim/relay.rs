//! The relay in the simulator: relay first, then a live upgrade to direct; pairs no punch can
//! cross (row 7) and nodes whose UDP is blocked (row 9) stay reachable through the server; a
//! direct path that goes dark falls back to the relay within 3 s and comes back after; a server
//! restart leaves direct tunnels alone and relayed peers reconnect on their own. The relay's
//! tickets and bindings hold against a member that repeats its registration and against anyone
//! replaying a node's Bind from elsewhere, while a real NAT rebinding still moves the binding.

use crate::harness::{ping_packet, Sim, SERVER, UNIX_NOW};
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::node::NodeEvent;
use p2pvpn::core::peers::Path;
use p2pvpn::core::relay::wire::{self, RelayDatagram};
use p2pvpn::core::rendezvous::channel::SecureChannel;
use p2pvpn::core::rendezvous::messages::{encode, ClientMessage};
use p2pvpn::core::rendezvous::server::ServerOutput;
use rand::SeedableRng;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn pair(a: &str, b: &str, seed: u64) -> (Sim, crate::net::NatId, crate::net::NatId) {
    let mut sim = Sim::new(seed);
    let na = sim.add_nat(a, None);
    let nb = sim.add_nat(b, None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    (sim, na, nb)
}

fn path(sim: &Sim, i: usize) -> (Option<Path>, Option<String>) {
    let s = sim.nodes[i].node.status(0);
    let p = s.peers.first();
    (p.map(|p| p.path), p.and_then(|p| p.relay.clone()))
}

/// Sends one ping each way; true when both arrive.
fn ping_both(sim: &mut Sim, tag: u8) -> bool {
    let ip = |sim: &Sim, i: usize| sim.nodes[i].node.status(0).virtual_ip.map(|v| v.octets());
    let (Some(a), Some(b)) = (ip(sim, 0), ip(sim, 1)) else {
        return false;
    };
    let ab = ping_packet(a, b, tag);
    let ba = ping_packet(b, a, tag);
    sim.send_from_tun(0, &ab);
    sim.send_from_tun(1, &ba);
    sim.advance(Duration::from_millis(100));
    sim.nodes[1].tun_out.contains(&ab) && sim.nodes[0].tun_out.contains(&ba)
}

#[test]
fn traffic_flows_through_the_relay_before_any_punch_and_then_moves_direct() {
    let (mut sim, na, nb) = pair("PRC", "PRC", 31);
    // Punching now wins within a round trip or two, so the direct path between the two NATs is
    // held shut while the relay is checked.
    sim.net.block(na, nb, true);
    sim.advance(Duration::from_millis(800));
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("udp".into())));
    assert!(ping_both(&mut sim, 1), "relay-first ping");
    sim.net.block(na, nb, false);
    sim.advance(Duration::from_secs(5));
    assert_eq!(path(&sim, 0).0, Some(Path::Direct));
    assert!(ping_both(&mut sim, 2));
    // One WireGuard session the whole time: the move did not need a new handshake.
    assert!(sim.nodes[0].node.status(0).peers[0]
        .punch
        .time_to_direct_ms
        .is_some());
}

#[test]
fn two_random_nats_talk_through_the_udp_relay_and_say_why() {
    let (mut sim, _, _) = pair("RND", "RND", 32);
    sim.advance(Duration::from_secs(20));
    for i in [0, 1] {
        assert_eq!(path(&sim, i), (Some(Path::Relay), Some("udp".into())));
        let why = sim.nodes[i].node.status(0).peers[0]
            .punch
            .last_failure
            .clone();
        assert!(why.is_some_and(|w| w.contains("both sides symmetric")));
    }
    for tag in 0..5 {
        assert!(ping_both(&mut sim, tag));
    }
}

#[test]
fn a_node_with_udp_blocked_is_relayed_through_its_control_stream() {
    let (mut sim, _, _) = pair("UDPBLK", "PRC", 33);
    sim.advance(Duration::from_secs(8));
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("tcp".into())));
    // Bob's UDP works: he sends over UDP, the server puts it into alice's stream.
    assert_eq!(path(&sim, 1), (Some(Path::Relay), Some("udp".into())));
    for tag in 0..5 {
        assert!(ping_both(&mut sim, tag), "ping {tag}");
    }
    let nat = sim.nodes[0].node.status(0).nat;
    assert!(nat.is_some_and(|n| n.udp_blocked));
}

#[test]
fn a_dark_direct_path_falls_back_to_the_relay_within_three_seconds_and_returns() {
    let (mut sim, na, nb) = pair("PRC", "PRC", 34);
    sim.advance(Duration::from_secs(5));
    assert_eq!(path(&sim, 0).0, Some(Path::Direct));
    // Traffic flows (10 pings a second each way) when the path between the NATs goes dark.
    sim.net.block(na, nb, true);
    let blocked_at = sim.now;
    let mut relay_after = None;
    let mut lost = 0;
    for tag in 0..60u8 {
        if !ping_both(&mut sim, tag) {
            lost += 1;
        }
        if relay_after.is_none()
            && path(&sim, 0).0 == Some(Path::Relay)
            && path(&sim, 1).0 == Some(Path::Relay)
        {
            relay_after = Some(sim.now.duration_since(blocked_at));
        }
    }
    let took = relay_after.expect("fell back to the relay");
    eprintln!("fallback took {took:?}, lost {lost}");
    assert!(took <= Duration::from_secs(3), "took {took:?}");
    assert!(lost <= 30, "lost {lost} of 60 round trips");
    // Punching resumes with backoff; once the block lifts the path comes back.
    sim.net.block(na, nb, false);
    let mut back = false;
    for _ in 0..120 {
        sim.advance(Duration::from_millis(500));
        if path(&sim, 0).0 == Some(Path::Direct) && path(&sim, 1).0 == Some(Path::Direct) {
            back = true;
            break;
        }
    }
    assert!(back, "direct again within 60 s of the block lifting");
    assert!(ping_both(&mut sim, 99));
}

#[test]
fn a_server_restart_keeps_direct_tunnels_and_relayed_peers_come_back() {
    let (mut sim, _, _) = pair("RND", "RND", 35);
    sim.advance(Duration::from_secs(5));
    assert_eq!(path(&sim, 0).0, Some(Path::Relay));
    sim.stop_server();
    sim.advance(Duration::from_secs(3));
    sim.restart_server();
    let mut back = false;
    for _ in 0..60 {
        sim.advance(Duration::from_secs(1));
        if ping_both(&mut sim, 7) {
            back = true;
            break;
        }
    }
    assert!(back, "relayed peers did not reconnect");
}

#[test]
fn a_bad_relayed_datagram_is_dropped_and_counted_once() {
    let (mut sim, _, _) = pair("PRC", "PRC", 36);
    sim.advance(Duration::from_secs(1));
    let server = crate::harness::SERVER.parse().unwrap();
    let to = sim.nodes[0].udp;
    let mut frame = vec![0u8; p2pvpn::core::relay::wire::DATA_HEADER + 40];
    p2pvpn::core::relay::wire::write_to_peer_header(&mut frame, 0);
    p2pvpn::core::relay::wire::rewrite_to_from_peer(&mut frame, 0xdead_beef);
    assert_eq!(
        sim.deliver(server, to, &frame),
        Some(crate::harness::DatagramOutcomeKind::Dropped)
    );
    let drops = sim.nodes[0].node.drops();
    assert_eq!(
        drops.get(p2pvpn::core::counters::DropReason::UnknownPeer),
        1
    );
}

/// Moves bytes between a hand-driven control channel on connection `conn` and the server until
/// neither has more to say (the server's answers to other connections are dropped).
fn pump(sim: &mut Sim, conn: u64, ch: &mut SecureChannel) {
    for _ in 0..100 {
        while let Some(bytes) = ch.take_outgoing() {
            sim.server.handle_bytes(conn, &bytes, sim.now, UNIX_NOW);
        }
        let mut answered = false;
        while let Some(out) = sim.server.poll_output() {
            if let ServerOutput::Send(c, bytes) | ServerOutput::Relay(c, bytes) = out {
                if c == conn {
                    ch.handle_bytes(&bytes).expect("server bytes decrypt");
                    while ch.poll_message().is_some() {}
                    answered = true;
                }
            }
        }
        if !answered {
            return;
        }
    }
}

/// Node `i`'s relay id and the address the server has bound to it.
fn binding(sim: &Sim, i: usize) -> (u32, Option<SocketAddr>) {
    let bind = sim.nodes[i].node.last_relay_bind().expect("the node bound");
    let Some(RelayDatagram::Bind(b)) = wire::parse(&bind) else {
        panic!("not a Bind")
    };
    (b.id, sim.server.relay().bound_addr(b.id))
}

fn relay_full(sim: &Sim, i: usize) -> bool {
    sim.nodes[i]
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::Progress(l) if l.contains("relay is full")))
}

#[test]
fn a_member_that_says_hello_a_thousand_times_holds_one_relay_ticket() {
    let mut sim = Sim::new(37);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(37);
    let mallory = SecretKey::generate(&mut rng);
    let token = sim.token();
    sim.join(&mallory, &token, "mallory")
        .expect("join accepted");
    let conn = 1_000_000;
    sim.server
        .handle_open(conn, "192.0.2.66:40000".parse().unwrap(), sim.now);
    let mut ch = SecureChannel::initiator(&mallory, &token.server_key).unwrap();
    pump(&mut sim, conn, &mut ch);
    assert!(ch.is_established());
    let hello = encode(&ClientMessage::Hello {
        network: "sim".into(),
        endpoints: vec![],
        nat: None,
        run: None,
    });
    for _ in 0..1000 {
        ch.send(&hello).unwrap();
        pump(&mut sim, conn, &mut ch);
    }
    // The relay's default cap is 1000: before the fix these Hellos alone filled it.
    assert_eq!(sim.server.relay().node_count(), 1);
    let bob = sim.add_node("bob", "198.51.100.12:51000");
    sim.advance(Duration::from_secs(1));
    assert!(!relay_full(&sim, bob), "bob was told the relay is full");
    assert_eq!(sim.server.relay().node_count(), 2);
    assert_eq!(sim.server.relay().network_count("sim"), 2);
}

#[test]
fn a_replayed_bind_from_another_address_does_not_take_a_nodes_relayed_traffic() {
    let (mut sim, _, _) = pair("RND", "RND", 38);
    sim.advance(Duration::from_secs(20));
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("udp".into())));
    // An observer saw alice's last Bind and replays it from its own address every 0.45 s.
    let seen = sim.nodes[0].node.last_relay_bind().expect("alice bound");
    let thief: SocketAddr = "192.0.2.66:6666".parse().unwrap();
    if let std::net::IpAddr::V4(ip) = thief.ip() {
        sim.net.add_public_ip(ip);
    }
    let server: SocketAddr = SERVER.parse().unwrap();
    let (_, home) = binding(&sim, 0);
    assert!(home.is_some());
    let mut received = 0;
    let rounds = 80; // 36 s: more than two of alice's 15 s refreshes
    for tag in 0..rounds {
        sim.net.send(thief, server, seen.clone(), None, sim.now);
        if ping_both(&mut sim, tag as u8) {
            received += 1;
        }
        sim.advance(Duration::from_millis(350));
        assert_eq!(binding(&sim, 0).1, home, "the binding moved in round {tag}");
    }
    eprintln!("{received} of {rounds} relayed round trips arrived under the replay");
    assert_eq!(received, rounds);
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("udp".into())));
}

#[test]
fn a_nat_rebinding_still_moves_the_relay_binding() {
    let (mut sim, na, _) = pair("RND", "RND", 39);
    sim.advance(Duration::from_secs(20));
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("udp".into())));
    assert!(ping_both(&mut sim, 1));
    let (_, before) = binding(&sim, 0);
    // Alice's NAT gets a new public address: her next refresh (within 15 s) comes from it, is
    // challenged, answered, and the binding follows her.
    sim.net.rebind_nat(na, Ipv4Addr::new(203, 0, 113, 200));
    sim.advance(Duration::from_secs(16));
    let (_, after) = binding(&sim, 0);
    assert_eq!(
        after.map(|a| a.ip()),
        Some(Ipv4Addr::new(203, 0, 113, 200).into())
    );
    assert_ne!(after, before);
    for tag in 2..7 {
        assert!(ping_both(&mut sim, tag), "ping {tag} after the rebinding");
    }
    assert_eq!(path(&sim, 0), (Some(Path::Relay), Some("udp".into())));
}
