//! Micro-benchmark of the core's data path without namespaces or sockets: two nodes with a live
//! session (set up by the in-process simulator, tests/sim), then `Node::handle_tun_packet`
//! (encrypt) and `Node::handle_datagram` (decrypt) for 1400-byte packets, one at a time and in
//! batches of 64 the way the driver's batched path calls them. Run with
//! `cargo bench --bench dataplane`; the figures are per call, with bytes/s alongside.

#![allow(clippy::disallowed_methods)] // the simulator's clock origin

#[allow(dead_code)]
#[path = "../tests/sim/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/sim/nat.rs"]
mod nat;
#[allow(dead_code)]
#[path = "../tests/sim/net.rs"]
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

use divan::counter::BytesCount;
use divan::Bencher;
use harness::{Sim, SimNode};
use p2pvpn::core::node::{DatagramOutcome, SocketId, TunOutcome};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PACKET: usize = 1400;
const BATCH: usize = 64;

fn main() {
    divan::main();
}

/// A 1400-byte IPv4/UDP packet from alice (10.99.0.1) to bob (10.99.0.2).
fn packet() -> Vec<u8> {
    let mut p = vec![0x5A; PACKET];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    p[4..8].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[10..12].fill(0);
    p[12..16].copy_from_slice(&[10, 99, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 2]);
    p
}

/// Alice and bob with a direct session; returns the nodes, alice's address and the clock.
fn pair() -> (Vec<SimNode>, SocketAddr, Instant) {
    let mut sim = Sim::new(1);
    sim.add_node("alice", "198.51.100.11:51000");
    sim.add_node("bob", "198.51.100.12:51000");
    sim.advance(Duration::from_secs(5));
    let from = sim.nodes[0].udp;
    let now = sim.now;
    (sim.nodes, from, now)
}

/// Encrypts one packet at `alice` into `out`, returning the datagram's length.
fn encrypt(alice: &mut SimNode, packet: &[u8], out: &mut [u8], now: Instant) -> usize {
    match alice.node.handle_tun_packet(packet, now, out) {
        TunOutcome::Send { datagram, .. } => datagram.len(),
        other => panic!("alice did not encrypt: {other:?}"),
    }
}

fn decrypt(bob: &mut SimNode, from: SocketAddr, datagram: &[u8], out: &mut [u8], now: Instant) {
    match bob
        .node
        .handle_datagram(SocketId::MAIN, from, datagram, now, out)
    {
        DatagramOutcome::WriteTun(p) => {
            divan::black_box(p);
        }
        other => panic!("bob did not decrypt: {other:?}"),
    }
}

#[divan::bench]
fn encrypt_packet(bencher: Bencher) {
    let (mut nodes, _, now) = pair();
    let packet = packet();
    let mut out = vec![0u8; 2048];
    bencher
        .counter(BytesCount::new(PACKET))
        .bench_local(|| encrypt(&mut nodes[0], &packet, &mut out, now));
}

#[divan::bench]
fn encrypt_batch_64(bencher: Bencher) {
    let (mut nodes, _, now) = pair();
    let packet = packet();
    // One contiguous buffer, as the driver's GSO runs use.
    let mut out = vec![0u8; BATCH * 1700];
    bencher
        .counter(BytesCount::new(PACKET * BATCH))
        .bench_local(|| {
            let mut cursor = 0;
            for _ in 0..BATCH {
                cursor += encrypt(&mut nodes[0], &packet, &mut out[cursor..], now);
            }
            cursor
        });
}

/// Each input is fresh datagrams from alice, so bob's replay window never rejects one.
#[divan::bench]
fn decrypt_packet(bencher: Bencher) {
    let (mut nodes, from, now) = pair();
    let (alice, bob) = nodes.split_at_mut(1);
    let packet = packet();
    let mut enc = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    bencher
        .counter(BytesCount::new(PACKET))
        .with_inputs(|| {
            let len = encrypt(&mut alice[0], &packet, &mut enc, now);
            enc[..len].to_vec()
        })
        .bench_local_refs(|d| decrypt(&mut bob[0], from, d, &mut out, now));
}

#[divan::bench]
fn decrypt_batch_64(bencher: Bencher) {
    let (mut nodes, from, now) = pair();
    let (alice, bob) = nodes.split_at_mut(1);
    let packet = packet();
    let mut enc = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    bencher
        .counter(BytesCount::new(PACKET * BATCH))
        .with_inputs(|| {
            (0..BATCH)
                .map(|_| {
                    let len = encrypt(&mut alice[0], &packet, &mut enc, now);
                    enc[..len].to_vec()
                })
                .collect::<Vec<_>>()
        })
        .bench_local_refs(|batch| {
            for d in batch.iter() {
                decrypt(&mut bob[0], from, d, &mut out, now);
            }
        });
}

// Our own transport step (core::wg::transport), which the two data workers will run: the same
// 1400-byte packets, sealed and opened through `&self`, so one key serves both workers.

mod wg {
    use super::{packet, BATCH, PACKET};
    use divan::counter::BytesCount;
    use divan::Bencher;
    use p2pvpn::core::wg::transport::{RecvKey, SendKey};
    use std::sync::Arc;

    fn keys() -> (SendKey, RecvKey) {
        (SendKey::new([7; 32], 1), RecvKey::new([7; 32], 1))
    }

    #[divan::bench]
    fn seal_packet(bencher: Bencher) {
        let (tx, _) = keys();
        let packet = packet();
        let mut out = vec![0u8; 2048];
        bencher
            .counter(BytesCount::new(PACKET))
            .bench_local(|| tx.seal(&packet, &mut out).map_err(|e| e.to_string()));
    }

    /// Fresh datagrams each time, so the replay window never refuses one.
    #[divan::bench]
    fn open_packet(bencher: Bencher) {
        let (tx, rx) = keys();
        let packet = packet();
        let mut out = vec![0u8; 2048];
        bencher
            .counter(BytesCount::new(PACKET))
            .with_inputs(|| {
                let mut d = vec![0u8; 2048];
                let n = tx.seal(&packet, &mut d).unwrap_or(0);
                d.truncate(n);
                d
            })
            .bench_local_refs(|d| rx.open(d, &mut out).map(|p| p.len()).ok());
    }

    /// Batches sealed per worker and iteration: enough (about a millisecond) that spawning the
    /// scoped threads, which both variants pay, stays a few percent of the time.
    const BATCHES: usize = 16;

    /// [`BATCHES`] 64-packet batches on each of `threads` workers sharing one `SendKey` (the TX
    /// side of the split: one counter, taken with `fetch_add`). Bytes are for all workers
    /// together, so the throughput shows how sealing scales from one worker to two.
    fn seal_batches(bencher: Bencher, threads: usize) {
        let tx = Arc::new(keys().0);
        let packet = Arc::new(packet());
        bencher
            .counter(BytesCount::new(PACKET * BATCH * BATCHES * threads))
            .bench_local(|| {
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let (tx, packet) = (tx.clone(), packet.clone());
                        s.spawn(move || {
                            let mut out = vec![0u8; BATCH * 1500];
                            let mut total = 0;
                            for _ in 0..BATCHES {
                                let mut cursor = 0;
                                for _ in 0..BATCH {
                                    cursor += tx.seal(&packet, &mut out[cursor..]).unwrap_or(0);
                                }
                                total += divan::black_box(cursor);
                            }
                            total
                        });
                    }
                })
            });
    }

    #[divan::bench]
    fn seal_1024_one_worker(bencher: Bencher) {
        seal_batches(bencher, 1);
    }

    #[divan::bench]
    fn seal_1024_two_workers(bencher: Bencher) {
        seal_batches(bencher, 2);
    }
}

/// The split itself: a TX worker sealing 1024 packets for a peer while an RX worker opens 1024
/// of its datagrams (sealed beforehand), on one thread one after the other, or on two threads
/// at once. Bytes are both directions together.
mod split {
    use super::{packet, PACKET};
    use divan::counter::BytesCount;
    use divan::Bencher;
    use p2pvpn::core::wg::transport::{RecvKey, SendKey};

    const PACKETS: usize = 1024;

    fn seal_all(tx: &SendKey, packet: &[u8], out: &mut [u8]) -> usize {
        let mut n = 0;
        for _ in 0..PACKETS {
            n += tx.seal(packet, out).unwrap_or(0);
        }
        n
    }

    fn open_all(rx: &RecvKey, datagrams: &[Vec<u8>], out: &mut [u8]) -> usize {
        datagrams
            .iter()
            .map(|d| rx.open(d, out).map(|p| p.len()).unwrap_or(0))
            .sum()
    }

    fn run(bencher: Bencher, parallel: bool) {
        let packet = packet();
        let tx = SendKey::new([1; 32], 1);
        let incoming = SendKey::new([2; 32], 2);
        bencher
            .counter(BytesCount::new(2 * PACKET * PACKETS))
            // A fresh receiving key and fresh datagrams each time, so none is a replay.
            .with_inputs(|| {
                let mut d = vec![0u8; 2048];
                let datagrams: Vec<Vec<u8>> = (0..PACKETS)
                    .map(|_| {
                        let n = incoming.seal(&packet, &mut d).unwrap_or(0);
                        d[..n].to_vec()
                    })
                    .collect();
                (RecvKey::new([2; 32], 2), datagrams)
            })
            .bench_local_refs(|(rx, datagrams)| {
                let mut out_tx = vec![0u8; 2048];
                let mut out_rx = vec![0u8; 2048];
                if parallel {
                    std::thread::scope(|s| {
                        let sealing = s.spawn(|| seal_all(&tx, &packet, &mut out_tx));
                        let opened = open_all(rx, datagrams, &mut out_rx);
                        sealing.join().unwrap_or(0) + opened
                    })
                } else {
                    seal_all(&tx, &packet, &mut out_tx) + open_all(rx, datagrams, &mut out_rx)
                }
            });
    }

    #[divan::bench]
    fn seal_and_open_1024_one_thread(bencher: Bencher) {
        run(bencher, false);
    }

    #[divan::bench]
    fn seal_and_open_1024_two_threads(bencher: Bencher) {
        run(bencher, true);
    }
}
