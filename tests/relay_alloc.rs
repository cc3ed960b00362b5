//! The server's UDP relay on real loopback sockets, through the same code the server's event
//! loop runs (`io::server_relay::UdpSockets`, quinn-udp, the relay's limits in
//! `core::relay::server::RelayServer`): two nodes bind with the keyed Bind and its Challenge,
//! then one sends GSO bursts of ToPeer datagrams to the other.
//!
//! - No allocation per packet: a counting global allocator watches the relay's steady state
//!   (wait for a socket, read a batch, rewrite in place, send) and the count must be zero.
//! - Every datagram arrives once, in order, as a FromPeer from the sender's relay id, and with
//!   UDP GSO the server needs fewer sends than datagrams.
//! - The per-node and total rate limits still drop what exceeds them.

#![allow(clippy::disallowed_methods)] // a test drives real sockets and reads the clock as the driver does

use p2pvpn::core::relay::auth;
use p2pvpn::core::relay::server::{RelayLimits, RelayServer, RelayTicket};
use p2pvpn::core::relay::wire::{self, RelayDatagram, Signed};
use p2pvpn::core::stun::StunResponder;
use p2pvpn::io::server_relay::UdpSockets;
use p2pvpn::io::udp_batch::UdpBatch;
use rand::SeedableRng;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const PAYLOAD: usize = 1200;
const BURST: usize = 16;
const WAIT: Duration = Duration::from_secs(3);

struct Lab {
    relay: RelayServer,
    udp: UdpSockets,
    server: SocketAddr,
    a: UdpBatch,
    /// A plain std socket: read without waiting once the server has pumped (tokio's
    /// `try_recv` only reads after its reactor saw the socket readable).
    b: std::net::UdpSocket,
    a_ticket: RelayTicket,
    b_ticket: RelayTicket,
}

/// One pass of the server's loop body: wait for a socket, handle its batch. Returns the
/// allocations made meanwhile when `count` is set.
async fn pump(lab: &mut Lab, count: bool) -> usize {
    let before = allocations();
    let i = lab.udp.readable().await;
    lab.udp
        .handle_batch(i, &mut lab.relay, Instant::now())
        .await;
    if count {
        allocations() - before
    } else {
        0
    }
}

/// The keyed bind of `ticket` from `socket`: a Bind, the server's Challenge, the Bind again
/// with its cookie, the BindOk.
async fn bind(lab: &mut Lab, from_a: bool) {
    let ticket = if from_a { lab.a_ticket } else { lab.b_ticket };
    let mut cookie = [0u8; auth::COOKIE_LEN];
    for round in 0..2 {
        let datagram = wire::bind(&Signed {
            id: ticket.id,
            counter: 1,
            cookie,
            tag: auth::bind_tag(&ticket.key, ticket.id, 1, &cookie),
        });
        if from_a {
            lab.a.send(lab.server, &datagram, 0).await.unwrap();
        } else {
            lab.b.send_to(&datagram, lab.server).unwrap();
        }
        tokio::time::timeout(WAIT, pump(lab, false)).await.unwrap();
        let mut buf = [0u8; 256];
        let n = if from_a {
            let s = lab.a.socket();
            tokio::time::timeout(WAIT, s.recv(&mut buf)).await
        } else {
            lab.b.set_read_timeout(Some(WAIT)).unwrap();
            Ok(lab.b.recv(&mut buf))
        }
        .expect("the server answers a Bind")
        .unwrap();
        match (round, wire::parse(&buf[..n])) {
            (0, Some(RelayDatagram::Challenge(c))) => cookie = c.cookie,
            (1, Some(RelayDatagram::BindOk(ok))) => assert_eq!(ok.id, ticket.id),
            (r, other) => panic!("round {r}: unexpected answer {other:?}"),
        }
    }
}

async fn lab(limits: RelayLimits) -> Lab {
    let server_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let server = server_socket.local_addr().unwrap();
    let responder = StunResponder::new(&[server], None).unwrap();
    let udp = UdpSockets::new(
        vec![(server, UdpBatch::new(server_socket).unwrap())],
        responder,
    );
    let now = Instant::now();
    let mut relay = RelayServer::new(limits, rand_chacha::ChaCha8Rng::seed_from_u64(7), now);
    let key = |b| p2pvpn::core::keys::PublicKey([b; 32]);
    let a_ticket = relay.register(1, "net", key(1), now).unwrap();
    let b_ticket = relay.register(2, "net", key(2), now).unwrap();
    let a = UdpBatch::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()).unwrap();
    let b = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut lab = Lab {
        relay,
        udp,
        server,
        a,
        b,
        a_ticket,
        b_ticket,
    };
    bind(&mut lab, true).await;
    bind(&mut lab, false).await;
    lab.b.set_nonblocking(true).unwrap();
    lab
}

/// One burst of `BURST` ToPeer datagrams from A to B, numbered from `first`, in one GSO send
/// (or one at a time where the kernel has no GSO).
fn burst(lab: &Lab, first: u32, out: &mut Vec<u8>) {
    out.clear();
    for k in 0..BURST as u32 {
        let start = out.len();
        out.resize(start + wire::DATA_HEADER + PAYLOAD, 0);
        wire::write_to_peer_header(&mut out[start..], lab.b_ticket.id);
        let payload = &mut out[start + wire::DATA_HEADER..];
        payload[..4].copy_from_slice(&(first + k).to_be_bytes());
        payload[4..].fill((first + k) as u8);
    }
}

/// Sends `bursts` bursts, pumps the server until it forwarded or dropped them all, and checks
/// what B received. Returns (allocations while pumping, datagrams B received).
async fn stream(lab: &mut Lab, first_burst: u32, bursts: u32, count: bool) -> (usize, usize) {
    let mut out = Vec::with_capacity(BURST * (wire::DATA_HEADER + PAYLOAD));
    let mut allocations = 0;
    let mut received = 0;
    let mut buf = vec![0u8; 2048];
    for n in first_burst..first_burst + bursts {
        let first = n * BURST as u32;
        burst(lab, first, &mut out);
        lab.a
            .send(lab.server, &out, wire::DATA_HEADER + PAYLOAD)
            .await
            .unwrap();
        let stats = lab.relay.stats(lab.a_ticket.id).unwrap();
        let target = stats.packets + stats.dropped_rate + BURST as u64;
        let deadline = Instant::now() + WAIT;
        loop {
            let s = lab.relay.stats(lab.a_ticket.id).unwrap();
            if s.packets + s.dropped_rate >= target {
                break;
            }
            assert!(Instant::now() < deadline, "the relay did not see burst {n}");
            allocations += tokio::time::timeout(WAIT, pump(lab, count))
                .await
                .expect("the server socket becomes readable");
        }
        // What the relay let through is waiting at B by now (loopback delivers at send).
        let mut expect = first;
        while let Ok(r) = lab.b.recv(&mut buf) {
            let Some(RelayDatagram::FromPeer { src, payload }) = wire::parse(&buf[..r]) else {
                panic!("B got something that is not a FromPeer");
            };
            assert_eq!(src, lab.a_ticket.id, "FromPeer names the sender's relay id");
            assert_eq!(payload.len(), PAYLOAD);
            let seq = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert!(seq >= expect && seq < first + BURST as u32, "order: {seq}");
            assert!(
                payload[4..].iter().all(|&x| x == seq as u8),
                "payload {seq} intact"
            );
            expect = seq + 1;
            received += 1;
        }
    }
    (allocations, received)
}

fn raised() -> RelayLimits {
    RelayLimits {
        node_bytes_per_sec: 10_000_000_000,
        total_bytes_per_sec: 10_000_000_000,
        ..RelayLimits::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_steady_relayed_stream_allocates_nothing_and_arrives_whole() {
    let mut lab = lab(raised()).await;
    // Warm-up as long as the measured run: first-use allocations happen here (tracing's
    // callsites; tokio's list of deferred wakers, which grows once the first time the task
    // spends its cooperative budget and keeps its capacity).
    let bursts = 150;
    let (_, warm) = stream(&mut lab, 0, bursts, false).await;
    assert_eq!(warm, bursts as usize * BURST);
    let before = lab.udp.stats();
    let (forwarded0, sends0) = (
        before.relay_forwarded.load(Ordering::Relaxed),
        before.relay_sends.load(Ordering::Relaxed),
    );
    let (allocations, received) = stream(&mut lab, bursts, bursts, true).await;
    let packets = bursts as usize * BURST;
    assert_eq!(received, packets, "every relayed datagram arrives");
    assert_eq!(
        allocations, 0,
        "the relay allocated {allocations} times for {packets} datagrams"
    );
    let stats = lab.udp.stats();
    let forwarded = stats.relay_forwarded.load(Ordering::Relaxed) - forwarded0;
    let sends = stats.relay_sends.load(Ordering::Relaxed) - sends0;
    assert_eq!(forwarded, packets as u64);
    if lab.a.max_segments() > 1 {
        // GSO in and out: a burst arrives as one GRO message and leaves as one send.
        assert!(
            sends * 4 <= forwarded,
            "{sends} sends for {forwarded} datagrams: the relay does not batch"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_per_node_limit_still_drops_the_excess() {
    // 20 payloads of one-second burst allowance, nothing more within the test's few ms.
    let mut lab = lab(RelayLimits {
        node_bytes_per_sec: 20 * PAYLOAD as u64,
        ..raised()
    })
    .await;
    let (_, received) = stream(&mut lab, 0, 4, false).await;
    assert!(
        (20..=22).contains(&received),
        "{received} of {} passed a 20-packet node limit",
        4 * BURST
    );
    let s = lab.relay.stats(lab.a_ticket.id).unwrap();
    assert_eq!(s.dropped_rate as usize, 4 * BURST - received);
}

#[tokio::test(flavor = "current_thread")]
async fn the_total_limit_still_drops_the_excess() {
    let mut lab = lab(RelayLimits {
        total_bytes_per_sec: 10 * PAYLOAD as u64,
        ..raised()
    })
    .await;
    let (_, received) = stream(&mut lab, 0, 2, false).await;
    assert!(
        (10..=12).contains(&received),
        "{received} of {} passed a 10-packet total limit",
        2 * BURST
    );
}
