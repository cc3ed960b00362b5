//! Roaming: a NAT that forgets every mapping mid-transfer (a router reboot on the same address,
//! `conntrack -F`) while packets flow. The pair must be back on a direct path within 5 s and
//! packets must keep arriving (through the relay while the direct path is down).

use crate::harness::{ping_packet, Sim};
use p2pvpn::core::peers::Path;
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
