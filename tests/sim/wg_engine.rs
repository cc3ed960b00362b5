//! Our WireGuard engine (`[dataplane] wireguard = "own"`, `core::wg::session`) on the simulated
//! clock: its timers run on the node's `now`, so minutes of virtual time rekey sessions, which
//! boringtun (reading the process clock) never does in the simulator.

use crate::harness::{ping_packet, Sim};
use std::time::Duration;

const A_IP: [u8; 4] = [10, 99, 0, 1];
const B_IP: [u8; 4] = [10, 99, 0, 2];
const UNIX: u64 = 2_000_000_000;

fn handshake_age(sim: &Sim, i: usize) -> u64 {
    let last = sim.nodes[i].node.status(UNIX).peers[0]
        .last_handshake_unix
        .expect("a handshake happened");
    UNIX - last
}

#[test]
fn ten_minutes_of_traffic_on_our_engine_rekey_every_two_minutes_without_a_gap() {
    let mut sim = Sim::new(41);
    sim.wireguard_own = true;
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    sim.advance(Duration::from_secs(5));
    let mut oldest = 0;
    for round in 0..30u8 {
        sim.advance(Duration::from_secs(20));
        let ab = ping_packet(A_IP, B_IP, round);
        let ba = ping_packet(B_IP, A_IP, round);
        sim.nodes[0].tun_out.clear();
        sim.nodes[1].tun_out.clear();
        assert!(sim.send_from_tun(0, &ab));
        assert!(sim.send_from_tun(1, &ba));
        // Straight through: no packet waited for a handshake.
        assert_eq!(sim.nodes[1].tun_out, vec![ab], "round {round}");
        assert_eq!(sim.nodes[0].tun_out, vec![ba], "round {round}");
        oldest = oldest
            .max(handshake_age(&sim, 0))
            .max(handshake_age(&sim, 1));
    }
    // REKEY_AFTER_TIME is 120 s and the timer tick is short: never near REJECT_AFTER_TIME (180).
    assert!((100..=150).contains(&oldest), "oldest session {oldest} s");
}
