//! Punching beyond the matrix: paths that must survive idle time and NAT rebinding, probes a
//! stranger forges or replays, birthday probing switched off, and the extra sockets it opens.

use crate::harness::{ping_packet, DatagramOutcomeKind, Sim};
use p2pvpn::core::counters::DropReason;
use p2pvpn::core::keys::SecretKey;
use p2pvpn::core::peers::Path;
use p2pvpn::core::punch::probe::{Probe, ProbeKey, ProbeKind};
use p2pvpn::core::punch::Technique;
use rand::SeedableRng;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Two nodes behind NATs of the given profiles, run until both see a direct path or `limit`.
fn pair(a: &str, b: &str, seed: u64, limit: Duration) -> (Sim, bool) {
    let mut sim = Sim::new(seed);
    let na = sim.add_nat(a, None);
    let nb = sim.add_nat(b, None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    let direct = run_until_direct(&mut sim, limit);
    (sim, direct)
}

fn both_direct(sim: &Sim) -> bool {
    sim.nodes
        .iter()
        .all(|n| n.node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct))
}

fn run_until_direct(sim: &mut Sim, limit: Duration) -> bool {
    let start = sim.now;
    while sim.now.duration_since(start) < limit {
        sim.advance(Duration::from_millis(250));
        if both_direct(sim) {
            return true;
        }
    }
    false
}

fn ping_crosses(sim: &mut Sim) -> bool {
    let ip = |sim: &Sim, i: usize| sim.nodes[i].node.status(0).virtual_ip.unwrap().octets();
    let packet = ping_packet(ip(sim, 0), ip(sim, 1), 0x42);
    sim.nodes[1].tun_out.clear();
    sim.send_from_tun(0, &packet);
    sim.advance(Duration::from_millis(200));
    sim.nodes[1].tun_out.contains(&packet)
}

#[test]
fn an_idle_path_outlives_the_nat_timeout_through_keepalives() {
    let (mut sim, direct) = pair("PRC", "PRC", 11, Duration::from_secs(20));
    assert!(direct);
    // Ten minutes without user traffic: twenty times the 30 s mapping lifetime.
    sim.advance(Duration::from_secs(600));
    assert!(both_direct(&sim));
    assert!(ping_crosses(&mut sim), "the path died while idle");
}

#[test]
fn nat_rebinding_is_detected_and_the_path_rebuilt() {
    let (mut sim, direct) = pair("PRC", "PRC", 12, Duration::from_secs(20));
    assert!(direct);
    let before = sim.nodes[1].node.status(0).peers[0].endpoint;
    // Alice's NAT reboots onto a new public address: every mapping is gone.
    sim.rebind_nat(crate::net::NatId(0), Ipv4Addr::new(203, 0, 113, 99));
    let start = sim.now;
    let mut recovered = None;
    while sim.now.duration_since(start) < Duration::from_secs(60) {
        sim.advance(Duration::from_millis(500));
        let ep = sim.nodes[1].node.status(0).peers[0].endpoint;
        if ep.is_some_and(|e| e.ip() == Ipv4Addr::new(203, 0, 113, 99)) && both_direct(&sim) {
            recovered = Some(sim.now.duration_since(start));
            break;
        }
    }
    let took = recovered.unwrap_or_else(|| panic!("no new path after rebinding (was {before:?})"));
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert!(ping_crosses(&mut sim));
    let s = sim.nodes[0].node.status(0);
    assert_eq!(
        s.nat.and_then(|n| n.public).map(|p| p.ip()),
        Some(std::net::IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99))),
        "alice re-measured her NAT"
    );
}

#[test]
fn forged_and_replayed_probes_never_move_a_path() {
    let (mut sim, direct) = pair("FC", "FC", 13, Duration::from_secs(20));
    assert!(direct);
    let bob = sim.nodes[1].udp;
    let endpoint = sim.nodes[1].node.status(0).peers[0].endpoint;
    let alice_key = sim.nodes[0].node.public_key();
    let bob_key = sim.nodes[1].node.public_key();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mallory = SecretKey::generate(&mut rng);
    let attacker = "192.0.2.66:4444".parse().unwrap();
    sim.net.add_public_ip(Ipv4Addr::new(192, 0, 2, 66));
    let ping = |tech| Probe {
        kind: ProbeKind::Ping,
        tx: [9; 12],
        technique: tech,
        offset: 0,
        observed: None,
    };
    // A stranger's own probe: unknown key.
    let own = ProbeKey::new(&mallory, &bob_key).seal(&ping(Technique::Lan), &mut rng);
    assert_eq!(
        sim.deliver(attacker, bob, &own),
        Some(DatagramOutcomeKind::Dropped)
    );
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::UnknownPeer), 1);
    // A probe claiming to be alice but sealed without her key.
    let mut forged = own.clone();
    forged[5..37].copy_from_slice(&alice_key.0);
    assert_eq!(
        sim.deliver(attacker, bob, &forged),
        Some(DatagramOutcomeKind::Dropped)
    );
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::DecryptFailed), 1);
    // A pong for a transaction bob never started, sealed with the pair's real key (the worst
    // case: a replay), from the attacker's address: it names no pending probe, so nothing moves.
    let real = ProbeKey::new(&sim.nodes[0].secret.clone(), &bob_key);
    let pong = Probe {
        kind: ProbeKind::Pong,
        observed: Some(attacker),
        ..ping(Technique::Lan)
    };
    let _ = sim.deliver(attacker, bob, &real.seal(&pong, &mut rng));
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.nodes[1].node.status(0).peers[0].endpoint, endpoint);
    assert!(both_direct(&sim));
}

#[test]
fn birthday_probing_can_be_switched_off_and_status_says_so() {
    let mut sim = Sim::new(14);
    sim.punch.birthday = false;
    let na = sim.add_nat("PRC", None);
    let nb = sim.add_nat("RND", None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    assert!(!run_until_direct(&mut sim, Duration::from_secs(20)));
    let why = sim.nodes[0].node.status(0).peers[0]
        .punch
        .last_failure
        .clone()
        .unwrap_or_default();
    assert!(why.contains("birthday probing is off"), "{why}");
    // Without birthday probing no extra sockets were ever opened.
    assert_eq!(sim.nodes[1].sockets.len(), 1);
}

#[test]
fn birthday_sockets_are_closed_once_a_path_is_chosen() {
    let (mut sim, direct) = pair("PRC", "RND", 15, Duration::from_secs(30));
    assert!(direct);
    sim.advance(Duration::from_secs(2));
    let status = sim.nodes[1].node.status(0);
    assert!(
        status.peers[0]
            .technique_detail
            .as_deref()
            .is_some_and(|d| d.contains("birthday")),
        "{:?}",
        status.peers[0].technique_detail
    );
    // The main socket and the one that won; the other 255 are gone.
    assert!(
        sim.nodes[1].sockets.len() <= 2,
        "{}",
        sim.nodes[1].sockets.len()
    );
    assert!(ping_crosses(&mut sim));
}

#[test]
fn punching_survives_loss_and_delay() {
    // nat-lab.md's cross-cutting case: 1-5% loss and 20-200 ms delay still connect.
    for (a, b) in [
        ("PRC", "PRC"),
        ("PRC", "SEQ"),
        ("PRC", "RND"),
        ("SEQ", "SEQ"),
        ("PRC", "BLK"),
    ] {
        for seed in [21u64, 22] {
            let mut sim = Sim::new(seed);
            let na = sim.add_nat(a, None);
            let nb = sim.add_nat(b, None);
            sim.net.set_link(na, Duration::from_millis(80), 0.05);
            sim.net.set_link(nb, Duration::from_millis(20), 0.01);
            sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
            sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
            assert!(
                run_until_direct(&mut sim, Duration::from_secs(45)),
                "{a}-{b} seed {seed}: {:#?}\n{:#?}",
                sim.nodes[0].node.status(0).peers[0],
                sim.nodes[1].node.status(0).peers[0]
            );
        }
    }
}

/// What `up` prints for each direct-path event: the announcement lines about bob at node `i`.
fn direct_announcements(sim: &Sim, i: usize) -> Vec<String> {
    use p2pvpn::core::node::NodeEvent;
    sim.nodes[i]
        .events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Progress(line) if line.contains("bob: ") && line.contains("direct") => {
                Some(line.clone())
            }
            NodeEvent::PathChanged {
                name,
                path: Path::Direct,
                detail,
                ..
            } if name == "bob" => Some(format!("{name} {detail:?}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_direct_path_is_announced_once_with_how_it_was_found() {
    let (mut sim, direct) = pair("PRC", "PRC", 11, Duration::from_secs(20));
    assert!(direct);
    sim.advance(Duration::from_secs(60));
    let lines = direct_announcements(&sim, 0);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("bob Some(\"direct ("), "{lines:#?}");
}
