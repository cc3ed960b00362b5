//! A probing socket that birthday probing made a peer's path carries that peer's whole stream
//! through its reader (`io::extra_reader`). No allocation per datagram there either: a counting
//! global allocator watches the reader and the node task's side of the channel (take the
//! datagram, give its buffer back) on real loopback sockets, after a warm-up, in lockstep and in
//! bursts, and the count must be zero. Every datagram must arrive intact, in order.

#![allow(clippy::disallowed_methods)] // a test drives the reader task on real sockets, as the driver does

use p2pvpn::core::node::SocketId;
use p2pvpn::io::extra_reader::{read_extra, BufPool};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// A WireGuard-transport-sized datagram whose bytes say which one it is.
fn datagram(i: u32, buf: &mut [u8; 1452]) -> &[u8] {
    buf.fill(i as u8);
    buf[..4].copy_from_slice(&i.to_be_bytes());
    buf
}

#[test]
fn a_steady_stream_through_a_probing_socket_allocates_nothing() {
    // One thread runs the reader task and the test's side, so the per-thread count sees both.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let probing = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
        let to: SocketAddr = probing.local_addr().unwrap();
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let pool = Arc::new(BufPool::default());
        let id = SocketId(7);
        let reader = tokio::spawn(read_extra(id, probing, tx, pool.clone()));
        let mut out = [0u8; 1452];
        let mut next = 0u32;
        let mut check = 0u32;
        // Sends `burst` datagrams, then takes them as the node task does and gives back their
        // buffers.
        let mut round = async |burst: u32| {
            for _ in 0..burst {
                peer.send_to(datagram(next, &mut out), to).await.unwrap();
                next += 1;
            }
            for _ in 0..burst {
                let (got_id, from, bytes) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("a datagram within 5 s")
                    .expect("the reader is running");
                assert_eq!(got_id, id);
                assert_eq!(from, peer.local_addr().unwrap());
                assert_eq!(bytes.len(), 1452);
                assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()), check);
                assert!(bytes[4..].iter().all(|&b| b == check as u8));
                check += 1;
                pool.give(bytes);
            }
        };
        // Warm-up: the pool fills, the channel has made the blocks it recycles (tokio's mpsc
        // allocates one per 32 slots until freed ones come back to its tail), the runtime's
        // timers and registrations are made.
        for burst in [1, 40, 1, 40, 1, 40, 1, 40] {
            round(burst).await;
        }
        let before = allocations();
        for _ in 0..200 {
            round(1).await;
        }
        for _ in 0..20 {
            round(40).await;
        }
        let made = allocations() - before;
        assert_eq!(
            made, 0,
            "the probing socket's reader allocated {made} times for 1000 datagrams"
        );
        reader.abort();
    });
}
