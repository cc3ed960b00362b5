//! No allocation per packet on the two data workers' path (`[dataplane] workers = 2`): with
//! the key tables two simulated nodes publish (`Node::poll_key_table`), what a worker does per
//! batch and per packet (load the published table, seal into the TX batch's runs, seal and open
//! full-size packets) allocates nothing after a warm-up, on this thread. The worker threads'
//! I/O (TUN and UDP batches) is the single loop's, covered by its own buffers.

#![allow(clippy::disallowed_methods)] // the simulator's clock origin

#[allow(dead_code)]
#[path = "sim/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "sim/nat.rs"]
mod nat;
#[allow(dead_code)]
#[path = "sim/net.rs"]
mod net;

/// The one helper of tests/sim/nat_tests.rs the harness needs.
mod nat_tests {
    use std::sync::OnceLock;
    use std::time::Instant;

    pub fn t0() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }
}

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

use harness::Sim;
use p2pvpn::core::wg::table::{Opened, Published, Sealed};
use p2pvpn::io::dataplane::TxBatch;
use std::time::Duration;

const A_IP: [u8; 4] = [10, 99, 0, 1];
const B_IP: [u8; 4] = [10, 99, 0, 2];

fn udp_packet(src: [u8; 4], dst: [u8; 4], tag: u8) -> Vec<u8> {
    let mut p = vec![tag; 1400];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&1400u16.to_be_bytes());
    p[4..8].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

#[test]
fn the_workers_steady_state_allocates_nothing() {
    let mut sim = Sim::new(71);
    sim.wireguard_own = true;
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    for n in &mut sim.nodes {
        n.node.enable_workers();
    }
    sim.advance(Duration::from_secs(5));
    assert!(sim.send_from_tun(0, &udp_packet(A_IP, B_IP, 1)));
    assert!(sim.send_from_tun(1, &udp_packet(B_IP, A_IP, 2)));
    sim.advance(Duration::from_millis(300));
    let now = sim.now;
    let (alice, bob) = (Published::default(), Published::default());
    alice.store(
        sim.nodes[0]
            .node
            .poll_key_table(now)
            .expect("alice's table"),
    );
    bob.store(sim.nodes[1].node.poll_key_table(now).expect("bob's table"));
    let alice_udp = sim.nodes[0].udp;

    const BATCH: usize = 64;
    let packet = udp_packet(A_IP, B_IP, 7);
    let mut tx = TxBatch::new(1420);
    let mut wire: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; 2048]).collect();
    let mut out = vec![0u8; 2048];
    let mut round = |now_ms: u64| -> usize {
        // The TX worker: one table load per batch, packets sealed into GSO runs.
        let table = alice.load();
        tx.clear();
        let mut sealed = 0;
        for _ in 0..BATCH {
            tx.append(64, |room| match table.seal(&packet, room, now_ms) {
                Sealed::Datagram { socket, dst, len } => {
                    sealed += 1;
                    Some((socket, dst, len))
                }
                Sealed::ToCore => None,
            });
        }
        // The RX worker: one load per batch, datagrams opened in place.
        for w in &mut wire {
            let Sealed::Datagram { len, .. } = table.seal(&packet, w, now_ms) else {
                return 0;
            };
            w.truncate(len);
        }
        let table = bob.load();
        let mut opened = 0;
        for w in &mut wire {
            if let Opened::Packet(p) = table.open(alice_udp, w, &mut out, now_ms) {
                opened += usize::from(p.len() == packet.len());
            }
            w.resize(2048, 0);
        }
        sealed.min(opened)
    };
    // Warm-up: every buffer reaches its size.
    assert_eq!(round(1), BATCH);
    let before = allocations();
    let mut carried = 0;
    for i in 0..100 {
        carried += round(2 + i);
    }
    let made = allocations() - before;
    assert_eq!(carried, 100 * BATCH, "packets were lost on the way");
    assert_eq!(made, 0, "{made} allocations for {carried} packets each way");
}
