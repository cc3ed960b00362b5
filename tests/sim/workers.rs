//! The key table the node publishes to its TX/RX workers (`[dataplane] workers = 2`,
//! `core::node::workers`), on the simulated network: a direct peer is carried by the table in both
//! directions, a table is published only when it changes (a rekey, a path moving between relay and
//! direct), access rules enforced by the table itself, a peer on the server's UDP relay is carried
//! framed for it, what the workers did reaches the node's counters, and the packets the node must
//! see (its own ICMP echoes) come back to it while a user's ping does not.

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
use p2pvpn::core::wg::table::{KeyTable, Opened, Sealed};
use std::net::SocketAddr;
use std::time::Duration;

const A: [u8; 4] = [10, 99, 0, 1];
const B: [u8; 4] = [10, 99, 0, 2];

/// A UDP datagram of `len` bytes (not ICMP, not a SYN: the workers' own business).
fn udp(src: [u8; 4], dst: [u8; 4], len: u16, tag: u8) -> Vec<u8> {
    let mut p = vec![tag; usize::from(len)];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[4..8].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

fn own_pair(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.wireguard_own = true;
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    for n in &mut sim.nodes {
        n.node.enable_workers();
    }
    sim.advance(Duration::from_secs(5));
    sim
}

/// Traffic both ways through the nodes themselves, so both sessions are confirmed.
fn exchange(sim: &mut Sim, tag: u8) {
    assert!(sim.send_from_tun(0, &udp(A, B, 100, tag)));
    assert!(sim.send_from_tun(1, &udp(B, A, 100, tag)));
    sim.advance(Duration::from_millis(300));
}

fn table(sim: &mut Sim, i: usize) -> Option<KeyTable> {
    let now = sim.now;
    sim.nodes[i].node.poll_key_table(now)
}

/// Seals at `from_table` and opens at `to_table` as the other node's RX worker would.
fn carry(from_table: &KeyTable, to_table: &KeyTable, from: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let mut wire = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let Sealed::Datagram { len, .. } = from_table.seal(packet, &mut wire, 1000) else {
        panic!("the sender's table did not carry the packet");
    };
    match to_table.open(from, &wire[..len], &mut out, 1000) {
        Opened::Packet(p) => p.to_vec(),
        other => panic!("the receiver's table did not open it: {other:?}"),
    }
}

#[test]
fn a_direct_peer_goes_through_the_table_both_ways_and_the_node_sees_the_traffic() {
    let mut sim = own_pair(61);
    exchange(&mut sim, 1);
    let (alice_udp, bob_udp) = (sim.nodes[0].udp, sim.nodes[1].udp);
    let ta = table(&mut sim, 0).expect("alice publishes a table once her session is up");
    let tb = table(&mut sim, 1).expect("bob publishes one too");
    // Nothing changed: nothing new to publish.
    assert!(table(&mut sim, 0).is_none());
    assert!(table(&mut sim, 1).is_none());

    let ab = udp(A, B, 1200, 7);
    assert_eq!(carry(&ta, &tb, alice_udp, &ab), ab);
    let ba = udp(B, A, 300, 8);
    assert_eq!(carry(&tb, &ta, bob_udp, &ba), ba);
    // Where it goes: bob's main socket.
    let mut wire = vec![0u8; 2048];
    assert!(matches!(
        ta.seal(&ab, &mut wire, 1001),
        Sealed::Datagram { dst, .. } if dst == bob_udp
    ));
    // A datagram from another address is the node's (the peer may have roamed).
    let Sealed::Datagram { len, .. } = ta.seal(&ab, &mut wire, 1002) else {
        panic!()
    };
    let mut out = vec![0u8; 2048];
    let elsewhere: SocketAddr = "198.51.100.99:4000".parse().unwrap();
    assert_eq!(
        tb.open(elsewhere, &wire[..len], &mut out, 1002),
        Opened::ToCore
    );

    // A user's ping is the worker's: written to the TUN device at once, so the kernel's reply
    // leaves on the same thread.
    let ping = ping_packet(A, B, 3);
    let Sealed::Datagram { len, .. } = ta.seal(&ping, &mut wire, 1003) else {
        panic!()
    };
    assert_eq!(
        tb.open(alice_udp, &wire[..len], &mut out, 1003),
        Opened::Packet(&ping[..]),
        "a user's ping must not wait for the node task"
    );
    // An echo under `p2pvpn ping`'s identifier is opened by the worker but handed to the node,
    // which takes its own replies and passes a plain echo request on to its TUN device.
    let ping = p2pvpn::core::icmp::echo_request(A.into(), B.into(), 3);
    let Sealed::Datagram { len, .. } = ta.seal(&ping, &mut wire, 1004) else {
        panic!()
    };
    let Opened::Core(inner) = tb.open(alice_udp, &wire[..len], &mut out, 1004) else {
        panic!("p2pvpn ping's ICMP must reach the node")
    };
    let inner = inner.to_vec();
    let now = sim.now;
    assert_eq!(
        sim.nodes[1].node.handle_worker_packet(&inner, now),
        Some(&inner[..])
    );

    // What the workers sealed and opened shows in `status` after the node's next tick.
    let before = sim.nodes[0].node.status(0).peers[0].tx_bytes;
    let rx_before = sim.nodes[1].node.status(0).peers[0].rx_bytes;
    sim.advance(Duration::from_secs(1));
    let after = sim.nodes[0].node.status(0).peers[0].tx_bytes;
    let rx_after = sim.nodes[1].node.status(0).peers[0].rx_bytes;
    assert!(
        after >= before + 1200 * 3,
        "alice's tx bytes went from {before} to {after}"
    );
    assert!(
        rx_after >= rx_before + 1200,
        "bob's rx bytes went from {rx_before} to {rx_after}"
    );
}

#[test]
fn a_rekey_publishes_new_keys_and_a_datagram_in_flight_under_the_old_one_opens_once() {
    let mut sim = own_pair(62);
    exchange(&mut sim, 1);
    let alice_udp = sim.nodes[0].udp;
    let ta = table(&mut sim, 0).unwrap();
    let tb = table(&mut sim, 1).unwrap();
    let mut published = 0;
    let (mut new_a, mut new_b) = (None, None);
    // REKEY_AFTER_TIME is 120 s: keep traffic going past it.
    for round in 0..15u8 {
        sim.advance(Duration::from_secs(10));
        exchange(&mut sim, round);
        if let Some(t) = table(&mut sim, 0) {
            published += 1;
            new_a = Some(t);
        }
        if let Some(t) = table(&mut sim, 1) {
            new_b = Some(t);
        }
    }
    assert!(published >= 1, "no table after a rekey");
    let (new_a, new_b) = (new_a.unwrap(), new_b.unwrap());
    let packet = udp(A, B, 500, 9);
    assert_eq!(carry(&new_a, &new_b, alice_udp, &packet), packet);
    // The sending key was replaced: a new receiver index on the wire.
    let mut wire = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let Sealed::Datagram { len, .. } = ta.seal(&packet, &mut wire, 2000) else {
        panic!()
    };
    let old_index = wire[4..8].to_vec();
    let Sealed::Datagram { .. } = new_a.seal(&packet, &mut out, 2000) else {
        panic!()
    };
    assert_ne!(
        old_index,
        out[4..8].to_vec(),
        "the table still seals with the old key"
    );
    // A datagram sealed under the old key just before (in flight) still opens: the previous
    // session stays in the new table.
    assert!(matches!(
        new_b.open(alice_udp, &wire[..len], &mut out, 2000),
        Opened::Packet(_)
    ));
    // And not twice, whichever table opens it.
    assert_eq!(
        tb.open(alice_udp, &wire[..len], &mut out, 2001),
        Opened::Dropped(p2pvpn::core::counters::DropReason::Replay)
    );
}

#[test]
fn a_relayed_peer_goes_through_the_table_framed_for_the_relay_until_its_path_is_direct() {
    let mut sim = Sim::new(63);
    sim.wireguard_own = true;
    let na = sim.add_nat("PRC", None);
    let nb = sim.add_nat("PRC", None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    for n in &mut sim.nodes {
        n.node.enable_workers();
    }
    sim.net.block(na, nb, true);
    sim.advance(Duration::from_millis(800));
    assert_eq!(sim.nodes[0].node.status(0).peers[0].path, Path::Relay);
    exchange(&mut sim, 1);
    let relayed = table(&mut sim, 0).expect("a relayed session publishes a table");
    let mut wire = vec![0u8; 2048];
    let server: SocketAddr = crate::harness::SERVER.parse().unwrap();
    let Sealed::Datagram { dst, len, .. } = relayed.seal(&udp(A, B, 100, 2), &mut wire, 1) else {
        panic!("the table must carry a peer on the UDP relay")
    };
    assert_eq!(dst, server, "relayed: to the server");
    assert!(
        matches!(
            p2pvpn::core::relay::wire::parse(&wire[..len]),
            Some(p2pvpn::core::relay::wire::RelayDatagram::ToPeer { .. })
        ),
        "relayed: a ToPeer header before the message"
    );
    sim.net.block(na, nb, false);
    sim.advance(Duration::from_secs(5));
    exchange(&mut sim, 3);
    assert_eq!(sim.nodes[0].node.status(0).peers[0].path, Path::Direct);
    let direct = table(&mut sim, 0).expect("the move to direct publishes a table");
    assert!(matches!(
        direct.seal(&udp(A, B, 100, 4), &mut wire, 2),
        Sealed::Datagram { dst, .. } if dst != server
    ));
}

/// A UDP datagram with these ports (the access rules' flows are keyed by them).
fn udp_ports(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = udp(src, dst, 100, 0);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p
}

/// Access rules do not take peers off the table: its seal records each packet as a flow and its
/// open checks the rules, on the node's own rule state. So a flow bob opened through his table
/// before any rule existed still gets its replies once rules arrive, and what the rules forbid
/// is dropped there and shows in bob's `status`.
#[test]
fn the_table_enforces_access_rules_and_spares_flows_opened_before_them() {
    let mut sim = own_pair(64);
    exchange(&mut sim, 1);
    let alice_udp = sim.nodes[0].udp;
    let bob_udp = sim.nodes[1].udp;
    let ta = table(&mut sim, 0).expect("a table");
    let tb = table(&mut sim, 1).expect("a table");
    // Bob opens a UDP flow to alice through his table, with no rules in force.
    let opened = udp_ports(B, A, 7000, 8000);
    assert_eq!(carry(&tb, &ta, bob_udp, &opened), opened);

    let mut tags = std::collections::HashMap::new();
    tags.insert(sim.nodes[0].node.public_key(), vec!["admin".to_string()]);
    tags.insert(sim.nodes[1].node.public_key(), vec!["server".to_string()]);
    let access = p2pvpn::core::rendezvous::registry::AccessRules {
        rules: vec!["tcp 22 from tag:admin to tag:server".parse().unwrap()],
        tags,
    };
    sim.server.registry_mut().set_access_rules("sim", access);
    sim.server.handle_registry_changed();
    sim.settle();
    let status = sim.nodes[1].node.status(0);
    assert!(
        status.access.as_ref().is_some_and(|a| a.enforced),
        "bob has the rules"
    );
    let tb = table(&mut sim, 1).unwrap_or(tb);
    assert!(!tb.is_empty(), "rules took bob's peers off his table");

    // Alice's reply to bob's flow passes; a new UDP flow from her does not; TCP 22 does.
    let reply = udp_ports(A, B, 8000, 7000);
    assert_eq!(carry(&ta, &tb, alice_udp, &reply), reply);
    let mut wire = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let Sealed::Datagram { len, .. } = ta.seal(&udp_ports(A, B, 9000, 9001), &mut wire, 1001)
    else {
        panic!("alice's table did not seal");
    };
    assert_eq!(
        tb.open(alice_udp, &wire[..len], &mut out, 1001),
        Opened::Dropped(p2pvpn::core::counters::DropReason::AccessDenied)
    );
    let mut ssh = udp_ports(A, B, 40000, 22);
    ssh[9] = 6; // TCP; the flags byte (offset 33) holds 0: not a SYN, which goes to the core
    assert_eq!(carry(&ta, &tb, alice_udp, &ssh), ssh);
    let access = sim.nodes[1].node.status(0).access.expect("access status");
    assert_eq!(access.denied, 1, "bob's status counts the denied datagram");
    assert_eq!(access.recent_denials[0].port, Some(9001));
}

#[test]
fn a_removed_peer_leaves_the_table_at_once() {
    let mut sim = own_pair(65);
    exchange(&mut sim, 1);
    let before = table(&mut sim, 0).expect("a table");
    let mut wire = vec![0u8; 2048];
    assert!(matches!(
        before.seal(&udp(A, B, 100, 2), &mut wire, 1),
        Sealed::Datagram { .. }
    ));
    assert!(sim.server.registry_mut().remove_member("sim", "bob"));
    sim.server.handle_registry_changed();
    sim.settle();
    let after = table(&mut sim, 0).expect("the removal publishes a table");
    assert!(after.is_empty(), "bob's keys are still published");
    assert_eq!(after.seal(&udp(A, B, 100, 3), &mut wire, 2), Sealed::ToCore);
}
