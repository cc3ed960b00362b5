//! No allocation per packet: a counting global allocator watches the core's steady-state data
//! path (`Node::handle_tun_packet` encrypting at one node, `Node::handle_datagram` decrypting at
//! the other) for a stream of full-size packets in both directions, after a warm-up, and the
//! count must be zero. The two nodes are set up by the in-process simulator (tests/sim).

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
