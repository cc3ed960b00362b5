//! No allocation per packet: a counting global allocator watches the steady-state data path
//! for a stream of full-size packets in both directions, after a warm-up, and the count must be
//! zero. Two paths: the single loop's (`Node::handle_tun_packet` encrypting at one node,
//! `Node::handle_datagram` decrypting at the other), and the two data workers' (`[dataplane]
//! workers = 2`: with the key tables the nodes publish, `Node::poll_key_table`, what a worker
//! does per batch and per packet: load the table, seal into the TX batch's runs, open). The two
//! nodes are set up by the in-process simulator (tests/sim). The workers' I/O (TUN and UDP
//! batches) is the single loop's, covered by its own buffers.

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

use harness::Sim;
use p2pvpn::core::node::{DatagramOutcome, SocketId, TunOutcome};
use p2pvpn::core::wg::table::{Opened, Published, Sealed};
use p2pvpn::io::dataplane::TxBatch;
use std::time::Duration;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = allocations();
    f();
    allocations() - before
}

const A_IP: [u8; 4] = [10, 99, 0, 1];
const B_IP: [u8; 4] = [10, 99, 0, 2];

/// A 1400-byte IPv4/UDP packet (a bulk-transfer-sized one) from `src` to `dst`.
fn udp_packet(src: [u8; 4], dst: [u8; 4], tag: u8) -> Vec<u8> {
    let mut p = vec![tag; 1400];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&1400u16.to_be_bytes());
    p[4..8].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[10..12].fill(0);
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// Sends `packet` from node `from`'s TUN side to node `to`, as the driver would with its
/// preallocated buffers, and checks it arrives unchanged. Allocates nothing itself.
fn cross(sim: &mut Sim, from: usize, to: usize, packet: &[u8], bufs: &mut [Vec<u8>; 3]) {
    let now = sim.now;
    let src = sim.nodes[from].udp;
    let [enc, wire, dec] = bufs;
    let len = match sim.nodes[from].node.handle_tun_packet(packet, now, enc) {
        TunOutcome::Send { datagram, .. } => {
            wire[..datagram.len()].copy_from_slice(datagram);
            datagram.len()
        }
        other => panic!("node {from} did not encrypt: {other:?}"),
    };
    match sim.nodes[to]
        .node
        .handle_datagram(SocketId::MAIN, src, &wire[..len], now, dec)
    {
        DatagramOutcome::WriteTun(p) => assert!(p == packet, "node {to} got another packet"),
        other => panic!("node {to} did not decrypt: {other:?}"),
    }
}

fn two_nodes() -> Sim {
    let mut sim = Sim::new(1);
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    sim.advance(Duration::from_secs(5));
    sim
}

#[test]
fn a_steady_stream_both_ways_allocates_nothing_per_packet() {
    let mut sim = two_nodes();
    let ab = udp_packet(A_IP, B_IP, 0xAB);
    let ba = udp_packet(B_IP, A_IP, 0xBA);
    let mut bufs = [vec![0u8; 70_000], vec![0u8; 70_000], vec![0u8; 70_000]];
    // Warm-up: the session's first transport messages confirm it and settle the path state.
    for _ in 0..100 {
        cross(&mut sim, 0, 1, &ab, &mut bufs);
        cross(&mut sim, 1, 0, &ba, &mut bufs);
    }
    let n = allocations_in(|| {
        for _ in 0..2000 {
            cross(&mut sim, 0, 1, &ab, &mut bufs);
            cross(&mut sim, 1, 0, &ba, &mut bufs);
        }
    });
    assert_eq!(
        n, 0,
        "allocations while moving 4000 packets in steady state"
    );
}

/// The counter is live: the assertion above could fail.
#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| {
        std::hint::black_box(vec![0u8; 1500]);
    });
    assert_eq!(n, 1);
}

/// The workers' path: 100 batches of 64 packets sealed at alice and opened at bob.
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
    let mut carried = 0;
    let made = allocations_in(|| {
        for i in 0..100 {
            carried += round(2 + i);
        }
    });
    assert_eq!(carried, 100 * BATCH, "packets were lost on the way");
    assert_eq!(made, 0, "{made} allocations for {carried} packets each way");
}
