//! Roaming: a NAT that forgets every mapping mid-transfer (a router reboot on the same address,
//! `conntrack -F`) while packets flow. The pair must be back on a direct path within 5 s and
//! packets must keep arriving (through the relay while the direct path is down).

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
use std::net::Ipv4Addr;
use std::time::Duration;

fn direct(sim: &Sim, i: usize) -> bool {
    sim.nodes[i].node.status(0).peers.first().map(|p| p.path) == Some(Path::Direct)
}

#[test]
fn a_conntrack_flush_mid_transfer_is_back_on_a_direct_path_within_five_seconds() {
    for (a, b) in [("PRC", "PRC"), ("PRC_INPUT", "PRC"), ("FC", "RC")] {
        for seed in [5u64, 6] {
            let mut sim = Sim::new(seed);
            let na = sim.add_nat(a, None);
            let nb = sim.add_nat(b, None);
            sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
            sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
            sim.advance(Duration::from_secs(3));
            assert!(
                direct(&sim, 0) && direct(&sim, 1),
                "{a}-{b} seed {seed}: direct"
            );
            let ip =
                |sim: &Sim, i: usize| sim.nodes[i].node.status(0).virtual_ip.map(|v| v.octets());
            let (Some(src), Some(dst)) = (ip(&sim, 0), ip(&sim, 1)) else {
                panic!("no addresses");
            };
            for id in [na, nb] {
                sim.net.nat_mut(id).flush();
            }
            let start = sim.now;
            let mut sent = 0u32;
            let mut arrived = 0u32;
            let mut back = None;
            // A packet every 100 ms, as a transfer would send, for up to 10 s.
            while sim.now.duration_since(start) < Duration::from_secs(10) {
                let packet = ping_packet(src, dst, (sent % 250) as u8);
                sim.nodes[1].tun_out.clear();
                sim.send_from_tun(0, &packet);
                sent += 1;
                sim.advance(Duration::from_millis(100));
                let got = sim.nodes[1].tun_out.contains(&packet);
                if got {
                    arrived += 1;
                }
                if back.is_none() && got && direct(&sim, 0) && direct(&sim, 1) {
                    back = Some(sim.now.duration_since(start));
                }
            }
            let took = back.unwrap_or_else(|| panic!("{a}-{b} seed {seed}: never direct again"));
            assert!(
                took < Duration::from_secs(5),
                "{a}-{b} seed {seed}: direct again after {took:?}"
            );
            // At most the packets of the detection gap may be lost.
            assert!(
                arrived * 10 >= sent * 7,
                "{a}-{b} seed {seed}: only {arrived} of {sent} packets arrived"
            );
        }
    }
}

/// The uplink changes under alice mid-transfer (a new public IP, as when a laptop moves to
/// another network) and nothing tells her control stream: its TCP connection rides a mapping
/// that is gone, so it goes silent instead of closing. She must notice (her STUN keepalive
/// answers for a new IP), reconnect at once rather than after the 45 s server timeout, and
/// the pair must be direct again within 5 s, bob seeing her at the new address. Before
/// `core::node::roaming`, every punch offer went into the dead stream: relayed for 45 s.
#[test]
fn an_uplink_that_moves_silently_is_back_on_a_direct_path_within_five_seconds() {
    for (a, b) in [("PRC", "PRC"), ("FC", "RC"), ("PRC", "SEQ")] {
        for seed in [7u64, 8] {
            let mut sim = Sim::new(seed);
            let na = sim.add_nat(a, None);
            let nb = sim.add_nat(b, None);
            sim.add_node_at("alice", "10.1.0.2:51000", Some(na));
            sim.add_node_at("bob", "10.2.0.2:51000", Some(nb));
            sim.advance(Duration::from_secs(5));
            assert!(
                direct(&sim, 0) && direct(&sim, 1),
                "{a}-{b} seed {seed}: direct"
            );
            let ip =
                |sim: &Sim, i: usize| sim.nodes[i].node.status(0).virtual_ip.map(|v| v.octets());
            let (Some(src), Some(dst)) = (ip(&sim, 0), ip(&sim, 1)) else {
                panic!("no addresses");
            };
            let moved_to = Ipv4Addr::new(203, 0, 113, 77);
            sim.rebind_nat_silently(na, moved_to);
            let start = sim.now;
            let mut back = None;
            let mut sent = 0u32;
            while sim.now.duration_since(start) < Duration::from_secs(10) {
                sim.send_from_tun(0, &ping_packet(src, dst, (sent % 250) as u8));
                sent += 1;
                sim.advance(Duration::from_millis(100));
                let seen = sim.nodes[1]
                    .node
                    .status(0)
                    .peers
                    .first()
                    .and_then(|p| p.endpoint);
                let at_new = seen.is_some_and(|e| e.ip() == moved_to);
                if back.is_none() && at_new && direct(&sim, 0) && direct(&sim, 1) {
                    back = Some(sim.now.duration_since(start));
                }
            }
            for i in 0..2 {
                for e in &sim.nodes[i].events {
                    eprintln!("{i}: {e:?}");
                }
            }
            let took = back.unwrap_or_else(|| {
                panic!("{a}-{b} seed {seed}: not direct at the new address within 10 s")
            });
            assert!(
                took < Duration::from_secs(5),
                "{a}-{b} seed {seed}: direct again after {took:?}"
            );
        }
    }
}
