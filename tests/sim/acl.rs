//! Access rules end to end through the real server and nodes (`core::acl`): the server sends each
//! node its share in `Welcome` and after a store change, the receiving node enforces it.

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::counters::DropReason;
use p2pvpn::core::rendezvous::registry::{AccessRules, Registry};
use std::collections::HashMap;
use std::time::Duration;

const A: [u8; 4] = [10, 99, 0, 1];
const B: [u8; 4] = [10, 99, 0, 2];

/// A TCP segment (ACK, no SYN: nothing to clamp) with a correct total length.
fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x10;
    p
}

/// Alice tagged admin, bob tagged server, and `rules`.
fn set_rules(sim: &mut Sim, rules: &[&str]) {
    let mut tags = HashMap::new();
    tags.insert(sim.nodes[0].node.public_key(), vec!["admin".to_string()]);
    tags.insert(sim.nodes[1].node.public_key(), vec!["server".to_string()]);
    let access = AccessRules {
        rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
        tags,
    };
    sim.server.registry_mut().set_access_rules("sim", access);
    sim.server.handle_registry_changed();
    sim.settle();
}

fn two_nodes() -> Sim {
    let mut sim = Sim::new(11);
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    sim.advance(Duration::from_secs(5));
    sim
}

/// Whether `packet` from node `from` reaches the other node's TUN device.
fn reaches(sim: &mut Sim, from: usize, packet: &[u8]) -> bool {
    reaches_node(sim, from, 1 - from, packet)
}

fn reaches_node(sim: &mut Sim, from: usize, to: usize, packet: &[u8]) -> bool {
    sim.nodes[to].tun_out.clear();
    sim.send_from_tun(from, packet);
    sim.nodes[to].tun_out.iter().any(|p| p == packet)
}

#[test]
fn tcp_22_from_admin_to_server_passes_the_rest_is_dropped_and_counted() {
    let mut sim = two_nodes();
    // No rules: everything passes, as before.
    assert!(reaches(&mut sim, 0, &tcp(A, B, 40000, 80)));
    set_rules(&mut sim, &["tcp 22 from tag:admin to tag:server"]);
    assert!(reaches(&mut sim, 0, &tcp(A, B, 40001, 22)));
    // Bob's reply passes alice, who has no rule of her own: she opened the flow.
    assert!(reaches(&mut sim, 1, &tcp(B, A, 22, 40001)));
    assert!(!reaches(&mut sim, 0, &tcp(A, B, 40002, 80)));
    assert!(!reaches(&mut sim, 0, &ping_packet(A, B, 1)));
    // Bob may not open connections to alice (no rule names her as a destination).
    assert!(!reaches(&mut sim, 1, &tcp(B, A, 50000, 22)));
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::AccessDenied), 2);
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::AccessDenied), 1);

    let bob = sim.nodes[1].node.status(0);
    let access = bob.access.clone().unwrap();
    assert!(access.enforced);
    assert_eq!(access.denied, 2);
    assert_eq!(access.rules.as_ref().unwrap()[0].admitted, 1);
    let alice_seen_by_bob = bob.peers.iter().find(|p| p.name == "alice").unwrap();
    let doctor = alice_seen_by_bob.access.join("\n");
    assert!(doctor.contains("may connect under rule 1: tcp 22 from tag:admin to tag:server"));
    assert!(doctor.contains("dropped from alice: tcp 80"), "{doctor}");
    assert!(doctor.contains("dropped from alice: icmp"), "{doctor}");
    // Alice's `doctor bob` says what bob lets her open.
    let alice = sim.nodes[0].node.status(0);
    let doctor = alice
        .peers
        .iter()
        .find(|p| p.name == "bob")
        .unwrap()
        .access
        .join("\n");
    assert!(
        doctor.contains("this node may connect to bob under rule 1: tcp 22"),
        "{doctor}"
    );
}

#[test]
fn a_rule_change_applies_without_restarting_the_nodes() {
    let mut sim = two_nodes();
    set_rules(&mut sim, &["tcp 22 from tag:admin to tag:server"]);
    assert!(!reaches(&mut sim, 0, &tcp(A, B, 40000, 80)));
    set_rules(
        &mut sim,
        &[
            "tcp 22 from tag:admin to tag:server",
            "tcp 80 from alice to bob",
        ],
    );
    assert!(reaches(&mut sim, 0, &tcp(A, B, 40000, 80)));
    // Port 22 taken away: an open connection to it stops at its next packet.
    assert!(reaches(&mut sim, 0, &tcp(A, B, 40001, 22)));
    set_rules(&mut sim, &["tcp 80 from alice to bob"]);
    assert!(!reaches(&mut sim, 0, &tcp(A, B, 40001, 22)));
    // All rules removed: all passes again.
    set_rules(&mut sim, &[]);
    assert!(reaches(&mut sim, 0, &ping_packet(A, B, 2)));
    assert!(!sim.nodes[1].node.status(0).access.unwrap().enforced);
}

#[test]
fn a_node_that_registers_gets_its_rules_with_welcome() {
    let mut sim = two_nodes();
    set_rules(&mut sim, &["icmp from * to bob"]);
    assert!(reaches(&mut sim, 0, &ping_packet(A, B, 1)));
    // The rules change while the server is down: nothing pushes them, `Welcome` carries them.
    sim.stop_server();
    let mut access = sim.server.registry_mut().access_rules("sim").unwrap();
    access.rules = vec!["icmp from * to alice".parse().unwrap()];
    sim.server.registry_mut().set_access_rules("sim", access);
    sim.restart_server();
    sim.advance(Duration::from_secs(5));
    assert!(sim.nodes[1].node.status(0).server.connected);
    assert!(!reaches(&mut sim, 0, &ping_packet(A, B, 3)));
    assert!(reaches(&mut sim, 1, &ping_packet(B, A, 4)));
}

#[test]
fn a_member_who_joins_later_gets_what_the_rules_name_it_for() {
    let mut sim = two_nodes();
    set_rules(&mut sim, &["tcp 22 from carol to bob"]);
    // Carol joins through the server: no `network` command, no store change to notice.
    let carol = sim.add_node("carol", "198.51.100.13:51000");
    sim.advance(Duration::from_secs(5));
    let c = [10, 99, 0, 3];
    assert!(reaches_node(&mut sim, carol, 1, &tcp(c, B, 40000, 22)));
    assert!(!reaches_node(&mut sim, carol, 1, &tcp(c, B, 40000, 23)));
    assert!(!reaches_node(&mut sim, 0, 1, &tcp(A, B, 40000, 22)));
}
