//! The server's UDP sockets, read and written by the server's event loop itself. One loop owns
//! every UDP socket and the relay's state (`RelayServer`, inside `ServerCore`), so a relayed
//! datagram is never handed between tasks: it is read by `recvmmsg` (quinn-udp, with UDP GRO
//! where the kernel has it) into a receive buffer allocated once, its header is rewritten in
//! place (ToPeer becomes FromPeer, the same length, `relay::wire`) and it is sent from those
//! same bytes. Consecutive datagrams of one message that go to one destination with one size
//! leave as one `sendmsg` with UDP_SEGMENT (GSO), so a node's GSO burst through the relay costs
//! the server one receive and one send. Nothing is allocated per datagram (tests/relay_alloc.rs).
//!
//! STUN requests arrive on the same sockets and are answered here by the sans-IO
//! `StunResponder`; anything else is counted and dropped. The relay's per-node and total rate
//! limits are applied per datagram by `RelayServer` as before.

use super::server_udp::UdpStats;
use super::udp_batch::{RecvBufs, UdpBatch, MAX_GSO_BYTES};
use crate::core::relay::server::{RelayServer, UdpVerdict};
use crate::core::relay::wire;
use crate::core::rendezvous::registry::Registry;
use crate::core::rendezvous::server::{RelayUdpAction, ServerCore};
use crate::core::stun::StunResponder;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

/// Whoever decides what happens to a relay datagram: the server core in the server, the relay
/// alone in tests and benchmarks.
pub trait RelayHandler {
    /// A datagram `wire::is_relay` accepted; `buf` may be rewritten in place for forwarding.
    fn relay_udp(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
    ) -> RelayUdpAction;
}

impl<R: Registry> RelayHandler for ServerCore<R> {
    fn relay_udp(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
    ) -> RelayUdpAction {
        self.handle_relay_udp(local, from, buf, now)
    }
}

/// The relay without control connections: a frame bound for a node's control stream has
/// nowhere to go and is dropped.
impl RelayHandler for RelayServer {
    fn relay_udp(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
    ) -> RelayUdpAction {
        match self.handle_udp(local, from, buf, now) {
            UdpVerdict::Reply(bytes) => RelayUdpAction::Reply(bytes),
            UdpVerdict::Forward { via, to, len } => RelayUdpAction::Forward { via, to, len },
            UdpVerdict::ToStream { .. } | UdpVerdict::Drop(_) => RelayUdpAction::Done,
        }
    }
}

/// Consecutive forwarded datagrams of one received message, sent with one `sendmsg`.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Index into `UdpSockets::sockets` of the socket to send from.
    via: usize,
    to: SocketAddr,
    /// Byte range in the message's buffer.
    start: usize,
    end: usize,
    /// The segment size (all but the last datagram have it).
    segment: usize,
    count: usize,
    /// A shorter datagram ended the run (GSO allows only the last one shorter).
    closed: bool,
}

/// Runs one message can hold before `runs` grows: UDP GRO coalesces at most 64 datagrams
/// (the kernel's UDP_GRO_CNT_MAX), so this is never exceeded in practice.
const RUNS: usize = 64;

/// Every UDP socket of the server, with the buffers its loop reads into.
pub struct UdpSockets {
    sockets: Vec<(SocketAddr, UdpBatch)>,
    responder: StunResponder,
    bufs: RecvBufs,
    runs: Vec<Run>,
    stats: Arc<UdpStats>,
    /// Where the next readiness scan starts, so one busy socket cannot starve the others.
    next: usize,
}

impl UdpSockets {
    pub fn new(sockets: Vec<(SocketAddr, UdpBatch)>, responder: StunResponder) -> Self {
        UdpSockets {
            sockets,
            responder,
            bufs: RecvBufs::default(),
            runs: Vec::with_capacity(RUNS),
            stats: Arc::new(UdpStats::default()),
            next: 0,
        }
    }

    /// The shared counters (for metrics and the shutdown line).
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }

    /// Resolves with the index of a socket that has something to read.
    pub async fn readable(&mut self) -> usize {
        let n = self.sockets.len();
        let start = self.next;
        let i = std::future::poll_fn(|cx| {
            for k in 0..n {
                let i = (start + k) % n;
                // An error (an ICMP error queued on the socket) also means "read it": the read
                // returns and clears it.
                if self.sockets[i].1.poll_recv_ready(cx).is_ready() {
                    return Poll::Ready(i);
                }
            }
            Poll::Pending
        })
        .await;
        self.next = (i + 1) % n.max(1);
        i
    }

    /// Reads one batch from socket `i` and handles every datagram in it: relay datagrams go to
    /// `relay` and are forwarded in place, STUN requests are answered.
    pub async fn handle_batch(&mut self, i: usize, relay: &mut impl RelayHandler, now: Instant) {
        let Some((local, socket)) = self.sockets.get(i) else {
            return;
        };
        let local = *local;
        let messages = match socket.try_recv(&mut self.bufs) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // ICMP errors from earlier sends surface here on Linux; they are not fatal.
            Err(e) => {
                tracing::debug!(%local, error = %e, "UDP receive error");
                return;
            }
        };
        for m in 0..messages {
            self.handle_message(local, m, relay, now).await;
            self.send_runs(m).await;
        }
    }

    /// Decides every datagram of message `m` and records the forwards as runs.
    async fn handle_message(
        &mut self,
        local: SocketAddr,
        m: usize,
        relay: &mut impl RelayHandler,
        now: Instant,
    ) {
        let UdpSockets {
            sockets,
            responder,
            bufs,
            runs,
            stats,
            ..
        } = self;
        runs.clear();
        let (from, stride, data) = bufs.message_mut(m);
        let total = data.len();
        let mut off = 0;
        while off < total {
            let end = (off + stride).min(total);
            let datagram = &mut data[off..end];
            if wire::is_relay(datagram) {
                match relay.relay_udp(local, from, datagram, now) {
                    RelayUdpAction::Forward { via, to, len } => {
                        let len = len.min(datagram.len());
                        match sockets.iter().position(|(a, _)| *a == via) {
                            Some(v) => extend(runs, sockets[v].1.max_segments(), v, to, off, len),
                            None => {
                                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    RelayUdpAction::Reply(reply) => {
                        send(sockets, stats, local, from, &reply, 0).await;
                    }
                    RelayUdpAction::Done => {}
                }
            } else if let Some(reply) = responder.respond(local, from, datagram) {
                if send(sockets, stats, reply.via, reply.to, &reply.bytes, 0).await {
                    stats.stun_answered.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(bytes = end - off, %from, total = dropped,
                    "dropped a UDP datagram the server does not speak");
            }
            off = end;
        }
    }

    /// Sends the runs recorded for message `m`, from the bytes it was received into.
    async fn send_runs(&mut self, m: usize) {
        let data = self.bufs.message(m);
        for r in &self.runs {
            let (via, socket) = &self.sockets[r.via];
            let bytes = &data[r.start..r.end];
            let segment = if r.count > 1 { r.segment } else { 0 };
            match socket.send(r.to, bytes, segment).await {
                Ok(()) => {
                    self.stats.relay_sends.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .relay_forwarded
                        .fetch_add(r.count as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats
                        .relay_dropped
                        .fetch_add(r.count as u64, Ordering::Relaxed);
                    tracing::debug!(%via, to = %r.to, error = %e, "relay send failed");
                }
            }
        }
    }

    /// Sends one datagram from our socket `via` (relay frames from control streams, replies).
    pub async fn send_to(&self, via: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if !send(&self.sockets, &self.stats, via, to, bytes, 0).await {
            self.stats.relay_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Adds a forwarded datagram at `off..off+len` of the current message to the last run, or
/// starts a new one. A run is contiguous, has one sender socket and destination, equal
/// segments except a shorter last one, at most `max_segments` datagrams and fits one UDP
/// message.
fn extend(
    runs: &mut Vec<Run>,
    max_segments: usize,
    via: usize,
    to: SocketAddr,
    off: usize,
    len: usize,
) {
    if let Some(r) = runs.last_mut() {
        let fits = !r.closed
            && r.via == via
            && r.to == to
            && r.end == off
            && len <= r.segment
            && r.count < max_segments
            && r.end - r.start + len <= MAX_GSO_BYTES;
        if fits {
            r.end += len;
            r.count += 1;
            r.closed = len < r.segment;
            return;
        }
    }
    // Grows only past RUNS runs in one message, which GRO never produces; the capacity stays.
    runs.push(Run {
        via,
        to,
        start: off,
        end: off + len,
        segment: len,
        count: 1,
        closed: false,
    });
}

/// Sends `bytes` from our socket `via`; false when that socket does not exist or the send
/// failed (counted).
async fn send(
    sockets: &[(SocketAddr, UdpBatch)],
    stats: &UdpStats,
    via: SocketAddr,
    to: SocketAddr,
    bytes: &[u8],
    segment: usize,
) -> bool {
    let Some((_, socket)) = sockets.iter().find(|(a, _)| *a == via) else {
        return false;
    };
    match socket.send(to, bytes, segment).await {
        Ok(()) => true,
        Err(e) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%via, %to, error = %e, "UDP send failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Equal datagrams to one destination form one run; a shorter one ends it; another
    /// destination, a gap or the segment limit starts a new one.
    #[test]
    fn runs_follow_the_gso_rules() {
        let mut runs = Vec::new();
        let a = addr(1);
        let b = addr(2);
        extend(&mut runs, 64, 0, a, 0, 100);
        extend(&mut runs, 64, 0, a, 100, 100);
        extend(&mut runs, 64, 0, a, 200, 60);
        // After the shorter one, a new run even to the same place.
        extend(&mut runs, 64, 0, a, 260, 100);
        // Another destination.
        extend(&mut runs, 64, 0, b, 360, 100);
        // A gap (a dropped datagram in between).
        extend(&mut runs, 64, 0, b, 560, 100);
        // A larger datagram cannot follow smaller segments.
        extend(&mut runs, 64, 0, b, 660, 200);
        let shape: Vec<_> = runs
            .iter()
            .map(|r| (r.to, r.start, r.end, r.count))
            .collect();
        assert_eq!(
            shape,
            vec![
                (a, 0, 260, 3),
                (a, 260, 360, 1),
                (b, 360, 460, 1),
                (b, 560, 660, 1),
                (b, 660, 860, 1),
            ]
        );
        // Without GSO (one segment per send) every datagram is its own run.
        let mut single = Vec::new();
        extend(&mut single, 1, 0, a, 0, 100);
        extend(&mut single, 1, 0, a, 100, 100);
        assert_eq!(single.len(), 2);
    }
}
