//! The batched data path between the TUN device and the UDP socket, driving the sans-IO core
//! one packet at a time but doing the I/O a batch at a time:
//!
//! - out: one TUN read (on Linux a TSO super-packet split into up to [`BATCH`] packets) is
//!   encrypted packet by packet into one contiguous buffer, grouped into runs of same-size
//!   datagrams to the same peer, and each run leaves in one GSO send.
//! - in: one `recvmmsg` (each message possibly a GRO super-datagram) is decrypted packet by
//!   packet into the TUN write slots, which are coalesced (GRO) and written at the end.
//!
//! All buffers are allocated once in [`TxBatch::new`], `TunIo::new` and `RecvBufs::default`.

use super::main_socket::MainSocket;
use super::tun_batch::{TunIo, BATCH};
use super::udp_batch::{RecvBufs, MAX_GSO_BYTES};
use crate::core::node::{DatagramOutcome, Node, SocketId, TunOutcome};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;

/// Room per datagram: the packet (at most the MTU, or 1500 for a packet the TUN device let
/// through), WireGuard's overhead, the relay header, and the 148 bytes the core asks for even
/// when it only writes a handshake.
fn datagram_room(mtu: u16) -> usize {
    usize::from(mtu).max(1500) + 256
}

/// ICMP answers kept per TUN read: a handful is plenty (the kernel caches the size it learns
/// from the first), and their room is fixed so keeping one never allocates.
const MAX_REPLIES: usize = 8;
/// Room for them: an IPv6 Packet Too Big is at most 1280 bytes (RFC 4443 §3.2), an IPv4
/// "fragmentation needed" at most 576 (RFC 1812 §4.3.2.3).
const REPLY_ROOM: usize = 4 * 1280;

/// Datagrams encrypted from one TUN read, and the runs they go out in.
pub struct TxBatch {
    buf: Vec<u8>,
    runs: Vec<Run>,
    /// ICMP answers the core made for packets too big for their peer's path (`ptb`, `ptb6`):
    /// rare, so a small fixed room; more in one batch are dropped (the core counted them).
    replies: Vec<u8>,
    reply_ends: Vec<usize>,
}

/// Consecutive datagrams in `TxBatch::buf` for one destination, all `segment` bytes long but the
/// last, which may be shorter (what UDP_SEGMENT requires).
#[derive(Clone, Copy, Debug)]
struct Run {
    socket: SocketId,
    dst: SocketAddr,
    start: usize,
    len: usize,
    segment: usize,
    count: usize,
    /// A shorter datagram ended the run.
    closed: bool,
}

impl TxBatch {
    pub fn new(mtu: u16) -> Self {
        TxBatch {
            buf: vec![0u8; BATCH * datagram_room(mtu)],
            runs: Vec::with_capacity(BATCH),
            replies: Vec::with_capacity(REPLY_ROOM),
            reply_ends: Vec::with_capacity(MAX_REPLIES),
        }
    }

    /// Forgets the last batch's runs and answers.
    pub fn clear(&mut self) {
        self.runs.clear();
        self.replies.clear();
        self.reply_ends.clear();
    }

    /// Appends one datagram that `write` puts at the start of the room it is given (returning
    /// where it goes and its length; `None` writes nothing), joining the last run when GSO can
    /// carry it with that run. The TX worker's way in (`io::workers`). False when the batch's
    /// room is used up.
    pub fn append(
        &mut self,
        max_segments: usize,
        write: impl FnOnce(&mut [u8]) -> Option<(SocketId, SocketAddr, usize)>,
    ) -> bool {
        let cursor = self.runs.last().map_or(0, |r| r.start + r.len);
        let Some(out) = self.buf.get_mut(cursor..) else {
            return false;
        };
        if let Some((socket, dst, len)) = write(out) {
            self.push(socket, dst, cursor, len, max_segments.max(1));
        }
        true
    }

    /// The runs of the last batch as (destination, bytes, segment size): the data thread's
    /// sends (`io::workers`), whose table holds only peers on the main socket's IPv4 half.
    pub fn runs(&self) -> impl Iterator<Item = (SocketId, SocketAddr, &[u8], usize)> {
        self.runs.iter().map(|r| {
            (
                r.socket,
                r.dst,
                &self.buf[r.start..r.start + r.len],
                r.segment,
            )
        })
    }

    /// The ICMP answers of the last [`encrypt`], to write to the TUN device.
    pub fn replies(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.reply_ends.iter().map(move |&end| {
            let r = &self.replies[start..end];
            start = end;
            r
        })
    }

    /// Appends a datagram of `len` bytes just written at `start`, extending the last run when
    /// GSO can carry it with that run.
    fn push(&mut self, socket: SocketId, dst: SocketAddr, start: usize, len: usize, max: usize) {
        if let Some(run) = self.runs.last_mut() {
            let joins = run.socket == socket
                && run.dst == dst
                && socket == SocketId::MAIN
                && !run.closed
                && len <= run.segment
                && run.count < max
                && run.len + len <= MAX_GSO_BYTES
                && run.start + run.len == start;
            if joins {
                run.len += len;
                run.count += 1;
                run.closed = len < run.segment;
                return;
            }
        }
        self.runs.push(Run {
            socket,
            dst,
            start,
            len,
            segment: len,
            count: 1,
            closed: false,
        });
    }
}

/// Encrypts the packets `part` of the last TUN read (at most `tun_batch::BATCH`, the batch's
/// room: `tun_batch::parts`) into `tx`'s runs. `max_segments` is how many datagrams one send may
/// carry on the main socket.
pub fn encrypt(
    node: &mut Node,
    tun: &mut TunIo,
    part: std::ops::Range<usize>,
    tx: &mut TxBatch,
    max_segments: usize,
    now: Instant,
) {
    tx.clear();
    for i in part {
        // One at a time: a super-packet's packets are split into one slot as they are sealed.
        if !tx.encrypt_one(node, tun.packet(i), max_segments, now) {
            break;
        }
    }
}

/// [`encrypt`] for packets from anywhere: the TUN packets the workers leave to the core
/// (`io::workers`) come over a channel.
pub fn encrypt_packets<'p>(
    node: &mut Node,
    packets: impl Iterator<Item = &'p [u8]>,
    tx: &mut TxBatch,
    max_segments: usize,
    now: Instant,
) {
    tx.clear();
    for packet in packets {
        if !tx.encrypt_one(node, packet, max_segments, now) {
            break;
        }
    }
}

impl TxBatch {
    /// Encrypts one packet after the batch's last datagram; false when the batch is full.
    fn encrypt_one(
        &mut self,
        node: &mut Node,
        packet: &[u8],
        max_segments: usize,
        now: Instant,
    ) -> bool {
        let cursor = self.runs.last().map_or(0, |r| r.start + r.len);
        let Some(out) = self.buf.get_mut(cursor..) else {
            return false;
        };
        let base = out.as_ptr() as usize;
        let (socket, dst, start, len) = match node.handle_tun_packet(packet, now, out) {
            TunOutcome::Send {
                socket,
                dst,
                datagram,
            } => (
                socket,
                dst,
                datagram.as_ptr() as usize - base,
                datagram.len(),
            ),
            TunOutcome::Reply(packet) => {
                // Copied out of `out`, which the next packet reuses.
                let (replies, ends) = (&mut self.replies, &mut self.reply_ends);
                if ends.len() < MAX_REPLIES && replies.len() + packet.len() <= REPLY_ROOM {
                    replies.extend_from_slice(packet);
                    ends.push(replies.len());
                }
                return true;
            }
            // Queued behind a handshake, sent on the stream, or dropped (and counted).
            _ => return true,
        };
        if start != 0 {
            // The core writes datagrams at the start of `out`; keep runs contiguous if not.
            self.buf
                .copy_within(cursor + start..cursor + start + len, cursor);
        }
        self.push(socket, dst, cursor, len, max_segments.max(1));
        true
    }
}

/// Sends the runs [`encrypt`] made: the main socket's (either half, `io::main_socket`) with
/// GSO, probing sockets' one by one.
pub async fn send<'s>(
    tx: &TxBatch,
    main: &MainSocket,
    extra: impl Fn(SocketId) -> Option<&'s UdpSocket>,
) {
    for run in &tx.runs {
        let contents = &tx.buf[run.start..run.start + run.len];
        let result = if run.socket == SocketId::MAIN {
            main.send(run.dst, contents, run.segment).await
        } else if let Some(socket) = extra(run.socket) {
            socket.send_to(contents, run.dst).await.map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, dst = %run.dst, "UDP send failed");
        }
    }
}

/// Processes the `n` messages of the last batched receive: inner packets go to the TUN device
/// (coalesced, once per batch), everything else to the core. Before the TUN device exists,
/// `scratch` takes what would be written to it.
pub async fn receive(
    node: &mut Node,
    mut tun: Option<&mut TunIo>,
    bufs: &RecvBufs,
    n: usize,
    scratch: &mut [u8],
    now: Instant,
) {
    for i in 0..n {
        let (from, datagrams) = bufs.datagrams(i);
        for datagram in datagrams {
            let Some(tun) = tun.as_deref_mut() else {
                node.handle_datagram(SocketId::MAIN, from, datagram, now, scratch);
                continue;
            };
            // The core may write a 148-byte handshake reply for a short datagram.
            let room = datagram.len().max(148);
            if tun.slot(room).is_none() {
                flush(tun).await;
            }
            let Some(slot) = tun.slot(room) else {
                continue;
            };
            let base = slot.as_ptr() as usize;
            let kept = match node.handle_datagram(SocketId::MAIN, from, datagram, now, slot) {
                DatagramOutcome::WriteTun(packet) => {
                    Some((packet.as_ptr() as usize - base, packet.len()))
                }
                _ => None,
            };
            if let Some((start, len)) = kept {
                tun.commit(start, len);
            }
        }
    }
    if let Some(tun) = tun {
        flush(tun).await;
    }
}

async fn flush(tun: &mut TunIo) {
    if let Err(e) = tun.flush().await {
        tracing::debug!(error = %e, "TUN write failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn runs(pushes: &[(u16, usize)], max: usize) -> Vec<(u16, usize, usize, usize)> {
        let mut tx = TxBatch::new(1420);
        let mut cursor = 0;
        for &(port, len) in pushes {
            tx.push(SocketId::MAIN, addr(port), cursor, len, max);
            cursor += len;
        }
        tx.runs
            .iter()
            .map(|r| (r.dst.port(), r.start, r.len, r.segment))
            .collect()
    }

    #[test]
    fn same_size_datagrams_to_one_peer_share_a_run_ended_by_a_shorter_one() {
        assert_eq!(
            runs(&[(1, 100), (1, 100), (1, 60), (1, 100)], 64),
            vec![(1, 0, 260, 100), (1, 260, 100, 100)]
        );
    }

    #[test]
    fn a_new_peer_a_larger_datagram_or_the_segment_limit_starts_a_new_run() {
        assert_eq!(
            runs(&[(1, 100), (2, 100), (2, 120), (2, 120), (2, 120)], 2),
            vec![
                (1, 0, 100, 100),
                (2, 100, 100, 100),
                (2, 200, 240, 120),
                (2, 440, 120, 120)
            ]
        );
    }

    #[test]
    fn a_run_never_exceeds_one_udp_message() {
        let pushes = vec![(1, 1452); 60];
        let got = runs(&pushes, 64);
        assert!(got.iter().all(|r| r.2 <= MAX_GSO_BYTES), "{got:?}");
        assert_eq!(got.iter().map(|r| r.2).sum::<usize>(), 60 * 1452);
    }
}
