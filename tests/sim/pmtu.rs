//! Path MTU in the simulator (issue 11): two nodes behind NATs on a path that silently drops
//! datagrams above 1300 bytes. The nodes find the path MTU with their probes, answer an
//! oversized DF packet with ICMP "fragmentation needed", carry a packet of exactly the path MTU,
//! and clamp the MSS of TCP SYNs on the way out and on the way in. A node with discovery off
//! (the old fixed-size behaviour) sends the oversized packet into the black hole.

use crate::harness::Sim;
use p2pvpn::core::counters::DropReason;
use p2pvpn::core::icmp::checksum;
use p2pvpn::core::node::TunOutcome;
use p2pvpn::core::peers::Path;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IPv4 + UDP (28) + WireGuard data header and tag (32) below the 1300-byte path.
const INNER_MAX: u16 = 1300 - 28 - 32;

fn pair(seed: u64, alice_discovers: bool) -> (Sim, Ipv4Addr, Ipv4Addr) {
    pair_on(seed, alice_discovers, 1300)
}

/// Alice and bob on a path of `path_mtu` bytes, each with its path MTU to the other found.
fn pair_on(seed: u64, alice_discovers: bool, path_mtu: usize) -> (Sim, Ipv4Addr, Ipv4Addr) {
    let mut sim = Sim::new(seed);
    sim.net.set_mtu(Some(path_mtu));
    let na = sim.add_nat("PRC", None);
    let nb = sim.add_nat("PRC", None);
    sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
    sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
    sim.nodes[0].node.set_path_mtu_discovery(alice_discovers);
    sim.advance(Duration::from_secs(20));
    let a = sim.nodes[0].node.status(0);
    let b = sim.nodes[1].node.status(0);
    assert_eq!(a.peers[0].path, Path::Direct);
    assert_eq!(b.peers[0].path, Path::Direct);
    let vip = |s: &p2pvpn::core::node::NodeStatus| s.virtual_ip.expect("registered");
    (sim, vip(&a), vip(&b))
}

/// An IPv4 packet of `len` bytes with DF, UDP inside (payload left zero).
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The TCP checksum over the pseudo-header; 0 when it verifies.
fn tcp_sum(p: &[u8]) -> u16 {
    let mut b = p[12..20].to_vec();
    b.extend_from_slice(&[0, 6]);
    b.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
    b.extend_from_slice(&p[20..]);
    checksum(&b)
}

/// A TCP SYN advertising `mss`, with valid checksums.
fn syn(src: Ipv4Addr, dst: Ipv4Addr, mss: u16) -> Vec<u8> {
    let mut p = udp_packet(src, dst, 20 + 24);
    p[9] = 6;
    p[10..12].fill(0);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&22u16.to_be_bytes());
    t[12] = 6 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    let sum = tcp_sum(&p);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

fn mss_of(p: &[u8]) -> u16 {
    assert_eq!(tcp_sum(p), 0, "TCP checksum after clamping");
    u16::from_be_bytes([p[42], p[43]])
}

#[test]
fn the_path_mtu_is_found_and_oversized_packets_are_answered_not_lost() {
    let (mut sim, alice, bob) = pair(71, true);
    let mtu = |sim: &Sim, i: usize| sim.nodes[i].node.status(0).peers[0].path_mtu;
    let m = mtu(&sim, 0).expect("alice knows the path MTU to bob");
    assert!((INNER_MAX - 8..=INNER_MAX).contains(&m), "alice: {m}");
    let mb = mtu(&sim, 1).expect("bob knows the path MTU to alice");
    assert!((INNER_MAX - 8..=INNER_MAX).contains(&mb), "bob: {mb}");
    assert_eq!(
        sim.nodes[0].node.status(0).peers[0].path_mtu_search,
        "complete"
    );

    // An oversized DF packet: answered from the TUN side, nothing sent into the black hole.
    let lost_before = sim.net.stats().too_big;
    let big = udp_packet(alice, bob, 1400);
    let mut out = vec![0u8; 70000];
    let now = sim.now;
    let icmp = match sim.nodes[0].node.handle_tun_packet(&big, now, &mut out) {
        TunOutcome::Reply(icmp) => icmp.to_vec(),
        TunOutcome::Send { datagram, .. } => {
            panic!(
                "expected an ICMP answer, got a {}-byte datagram",
                datagram.len()
            )
        }
        other => panic!("expected an ICMP answer, got {other:?}"),
    };
    assert_eq!((icmp[20], icmp[21]), (3, 4), "fragmentation needed");
    assert_eq!(
        u16::from_be_bytes([icmp[26], icmp[27]]),
        m,
        "naming the path MTU"
    );
    assert_eq!(
        (&icmp[12..16], &icmp[16..20]),
        (&bob.octets()[..], &alice.octets()[..])
    );
    assert_eq!((checksum(&icmp[..20]), checksum(&icmp[20..])), (0, 0));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::TooBig), 1);

    // A packet of exactly the path MTU goes through.
    let fits = udp_packet(alice, bob, usize::from(m));
    assert!(sim.send_from_tun(0, &fits));
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        sim.nodes[1].tun_out.last().map(Vec::len),
        Some(usize::from(m))
    );
    assert_eq!(
        sim.net.stats().too_big,
        lost_before,
        "nothing hit the black hole"
    );

    // SYNs both ways leave with an MSS that fits.
    assert!(sim.send_from_tun(0, &syn(alice, bob, 1460)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss_of(sim.nodes[1].tun_out.last().unwrap()), m - 40);
    assert!(sim.send_from_tun(1, &syn(bob, alice, 1460)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss_of(sim.nodes[0].tun_out.last().unwrap()), mb - 40);
}

#[test]
fn without_discovery_the_packet_vanishes_and_the_receiver_still_clamps_the_syn() {
    let (mut sim, alice, bob) = pair(72, false);
    assert_eq!(sim.nodes[0].node.status(0).peers[0].path_mtu, None);
    // Bob still probes (alice answers), so he knows the path.
    let mb = sim.nodes[1].node.status(0).peers[0]
        .path_mtu
        .expect("bob's search");

    let lost_before = sim.net.stats().too_big;
    let seen = sim.nodes[1].tun_out.len();
    assert!(
        sim.send_from_tun(0, &udp_packet(alice, bob, 1400)),
        "sent as before"
    );
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        sim.net.stats().too_big,
        lost_before + 1,
        "into the black hole"
    );
    assert_eq!(sim.nodes[1].tun_out.len(), seen);

    // Alice does not clamp; bob clamps the SYN he receives, so his side's segments fit.
    assert!(sim.send_from_tun(0, &syn(alice, bob, 1460)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss_of(sim.nodes[1].tun_out.last().unwrap()), mb - 40);
}

#[test]
fn a_path_that_shrinks_is_noticed_from_the_silence_after_large_packets() {
    let (mut sim, alice, bob) = pair(73, true);
    let m = sim.nodes[0].node.status(0).peers[0]
        .path_mtu
        .expect("searched");
    // A tunnel appears in the way: 1280 bytes now, still without ICMP (inner 1220).
    sim.net.set_mtu(Some(1280));
    assert!(sim.send_from_tun(0, &udp_packet(alice, bob, usize::from(m))));
    // Long before the 60 s confirmation: the silence after a large packet (2 s) triggers it,
    // three lost confirmations (1.8 s) send the search back to the base, and the search
    // (about 4 failed sizes at 1.8 s each) finds the path.
    sim.advance(Duration::from_secs(20));
    let now = sim.nodes[0].node.status(0).peers[0].path_mtu;
    assert!(
        now.is_some_and(|n| (1220 - 8..=1220).contains(&n)),
        "path MTU {now:?} after the path shrank from {m}"
    );
    let fits = udp_packet(alice, bob, usize::from(now.unwrap_or(0)));
    assert!(sim.send_from_tun(0, &fits));
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.nodes[1].tun_out.last().map(Vec::len), Some(fits.len()));
}

// ---- IPv6 inside the tunnel ------------------------------------------------------------------

/// Alice's and bob's overlay IPv6 addresses.
fn addresses6(sim: &Sim) -> (Ipv6Addr, Ipv6Addr) {
    let a = sim.nodes[0].node.status(0);
    let a6 = a.ipv6.expect("alice has IPv6").addr();
    let b6 = a.peers[0].ipv6.expect("alice knows bob's IPv6");
    (a6, b6)
}

/// An IPv6 packet of `len` bytes carrying UDP (payload left zero).
fn udp6_packet(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}

/// The RFC 1071 sum over the IPv6 pseudo-header (RFC 8200 §8.1) and the upper-layer bytes
/// after the fixed header; 0 when the checksum in them verifies.
fn sum6(p: &[u8], next: u8) -> u16 {
    let mut b = p[8..40].to_vec();
    b.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, next]);
    b.extend_from_slice(&p[40..]);
    checksum(&b)
}

/// A TCP/IPv6 SYN advertising `mss`, with a valid checksum.
fn syn6(src: Ipv6Addr, dst: Ipv6Addr, mss: u16) -> Vec<u8> {
    let mut p = udp6_packet(src, dst, 40 + 24);
    p[6] = 6;
    let t = &mut p[40..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&22u16.to_be_bytes());
    t[12] = 6 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64800u16.to_be_bytes());
    t[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    let sum = sum6(&p, 6);
    p[56..58].copy_from_slice(&sum.to_be_bytes());
    p
}

fn mss6_of(p: &[u8]) -> u16 {
    assert_eq!(p[6], 6, "a TCP/IPv6 segment");
    assert_eq!(sum6(p, 6), 0, "TCP checksum after clamping");
    u16::from_be_bytes([p[62], p[63]])
}

/// What alice's node does with `packet` from her TUN device, as the ICMPv6 answer it gives.
fn answer6(sim: &mut Sim, packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 70000];
    let now = sim.now;
    match sim.nodes[0].node.handle_tun_packet(packet, now, &mut out) {
        TunOutcome::Reply(icmp) => icmp.to_vec(),
        TunOutcome::Send { datagram, .. } => panic!(
            "expected packet too big, got a {}-byte datagram",
            datagram.len()
        ),
        other => panic!("expected packet too big, got {other:?}"),
    }
}

#[test]
fn an_oversized_ipv6_packet_is_answered_with_packet_too_big_and_ipv6_syns_are_clamped() {
    // 1400 bytes on the path: about 1340 inside, above IPv6's 1280 minimum.
    let (mut sim, _, _) = pair_on(74, true, 1400);
    let (alice, bob) = addresses6(&sim);
    let m = sim.nodes[0].node.status(0).peers[0]
        .path_mtu
        .expect("alice knows the path MTU to bob");
    let mb = sim.nodes[1].node.status(0).peers[0]
        .path_mtu
        .expect("bob knows the path MTU to alice");
    assert!((1400 - 60 - 8..=1400 - 60).contains(&m), "alice: {m}");

    // One byte over: answered from the TUN side, nothing sent into the black hole.
    let lost_before = sim.net.stats().too_big;
    let big = udp6_packet(alice, bob, usize::from(m) + 1);
    let icmp = answer6(&mut sim, &big);
    assert_eq!(
        icmp.len(),
        1280,
        "as much of the packet as fits in 1280 bytes"
    );
    assert_eq!((icmp[6], icmp[40], icmp[41]), (58, 2, 0), "packet too big");
    assert_eq!(
        u32::from_be_bytes([icmp[44], icmp[45], icmp[46], icmp[47]]),
        u32::from(m),
        "naming the path MTU"
    );
    assert_eq!(
        (&icmp[8..24], &icmp[24..40]),
        (&bob.octets()[..], &alice.octets()[..])
    );
    assert_eq!(sum6(&icmp, 58), 0, "ICMPv6 checksum");
    assert_eq!(&icmp[48..], &big[..1232], "the invoking packet quoted");
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::TooBig), 1);

    // An ICMPv6 error is never answered with another, however large.
    let mut error = udp6_packet(alice, bob, 1400);
    error[6] = 58;
    error[40] = 1;
    assert!(!sim.send_from_tun(0, &error));
    assert_eq!(sim.nodes[0].node.drops().get(DropReason::TooBig), 2);

    // Exactly the path MTU goes through.
    let fits = udp6_packet(alice, bob, usize::from(m));
    assert!(sim.send_from_tun(0, &fits));
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.nodes[1].tun_out.last(), Some(&fits));
    assert_eq!(sim.net.stats().too_big, lost_before, "nothing was lost");

    // SYNs both ways leave with an MSS of the path MTU less 60.
    assert!(sim.send_from_tun(0, &syn6(alice, bob, 1440)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss6_of(sim.nodes[1].tun_out.last().unwrap()), m - 60);
    assert!(sim.send_from_tun(1, &syn6(bob, alice, 1440)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss6_of(sim.nodes[0].tun_out.last().unwrap()), mb - 60);
}

#[test]
fn below_1280_ipv6_is_told_1280_and_tcp_still_fits_through_the_mss() {
    // 1300 bytes on the path: about 1240 inside, below what any IPv6 host will go down to.
    let (mut sim, _, _) = pair(75, true);
    let (alice, bob) = addresses6(&sim);
    let m = sim.nodes[0].node.status(0).peers[0]
        .path_mtu
        .expect("searched");
    assert!(m < 1280, "{m}");
    let icmp = answer6(&mut sim, &udp6_packet(alice, bob, 1281));
    assert_eq!(
        u32::from_be_bytes([icmp[44], icmp[45], icmp[46], icmp[47]]),
        1280,
        "no host takes less (RFC 8200 §5)"
    );
    // 1280 bytes are sent (and lost on this path: the documented limit).
    let lost_before = sim.net.stats().too_big;
    assert!(sim.send_from_tun(0, &udp6_packet(alice, bob, 1280)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.net.stats().too_big, lost_before + 1);
    // TCP's segments fit the real path.
    assert!(sim.send_from_tun(0, &syn6(alice, bob, 1440)));
    sim.advance(Duration::from_millis(100));
    assert_eq!(mss6_of(sim.nodes[1].tun_out.last().unwrap()), m - 60);
}
