//! The IPv6 overlay in the simulator: each node gets an address in its network's ULA /64, learns
//! its peers' from the server, and IPv6 packets cross with the same address rules as IPv4.

use crate::harness::Sim;
use crate::two_nodes;
use p2pvpn::core::counters::DropReason;
use std::net::Ipv6Addr;

/// A minimal IPv6 packet (RFC 8200 §3) carrying 16 bytes of `tag` as ICMPv6 (next header 58).
fn packet6(src: Ipv6Addr, dst: Ipv6Addr, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; 56];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&16u16.to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..].fill(tag);
    p
}

/// Alice's and bob's IPv6 addresses as each sees its own and the other's.
fn addresses(sim: &Sim) -> (Ipv6Addr, Ipv6Addr) {
    let a = sim.nodes[0].node.status(0);
    let b = sim.nodes[1].node.status(0);
    let (a6, b6) = (
        a.ipv6.expect("alice has IPv6"),
        b.ipv6.expect("bob has IPv6"),
    );
    assert_eq!(a6.prefix_len(), 64);
    assert_eq!(a6.trunc(), b6.trunc(), "one /64 for the network");
    // Each learns the other's address from the server, as status shows it.
    assert_eq!(a.peers[0].ipv6, Some(b6.addr()));
    assert_eq!(b.peers[0].ipv6, Some(a6.addr()));
    (a6.addr(), b6.addr())
}

#[test]
fn nodes_get_addresses_in_one_ula_64_and_ipv6_crosses_both_ways() {
    let mut sim = two_nodes();
    let (a6, b6) = addresses(&sim);
    assert_eq!(a6.octets()[0], 0xfd, "a ULA (RFC 4193): {a6}");
    assert_eq!(
        a6.octets()[12..],
        [10, 99, 0, 1],
        "the IPv4 address as the host part"
    );
    let ab = packet6(a6, b6, 0xAB);
    assert!(sim.send_from_tun(0, &ab));
    assert_eq!(sim.nodes[1].tun_out, vec![ab]);
    let ba = packet6(b6, a6, 0xBA);
    assert!(sim.send_from_tun(1, &ba));
    assert_eq!(sim.nodes[0].tun_out, vec![ba]);
    let unsupported = sim.nodes[0]
        .node
        .drops()
        .get(DropReason::UnsupportedProtocol);
    assert_eq!(unsupported, 0);
}

#[test]
fn an_ipv6_peer_cannot_send_from_another_address_or_to_someone_else() {
    let mut sim = two_nodes();
    let (a6, b6) = addresses(&sim);
    let mut carol = b6.octets();
    carol[15] = 77;
    let carol = Ipv6Addr::from(carol);
    // Alice's TUN emits a packet claiming carol's source address: bob drops it.
    assert!(sim.send_from_tun(0, &packet6(carol, b6, 1)));
    assert!(sim.nodes[1].tun_out.is_empty());
    assert_eq!(sim.nodes[1].node.drops().get(DropReason::SpoofedSource), 1);
    // Outside the /64: not forwarded at all.
    let outside: Ipv6Addr = "fd00:dead:beef::1".parse().unwrap();
    assert!(!sim.send_from_tun(0, &packet6(a6, outside, 1)));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::NotInNetwork), 1);
    // Inside the /64 but nobody's.
    assert!(!sim.send_from_tun(0, &packet6(a6, carol, 1)));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::NoRoute), 1);
}

#[test]
fn the_ipv6_address_survives_a_server_restart() {
    let mut sim = two_nodes();
    let before = addresses(&sim);
    sim.stop_server();
    sim.restart_server();
    sim.advance(std::time::Duration::from_secs(40));
    assert!(sim.nodes[0].node.status(0).server.connected);
    assert_eq!(addresses(&sim), before);
}
