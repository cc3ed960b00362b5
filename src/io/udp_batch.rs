//! The node's main UDP socket, batched through quinn-udp: one `recvmmsg` reads up to
//! [`RECV_BUFS`] messages, each of which may carry several datagrams coalesced by UDP GRO
//! (`stride` apart); one `sendmsg` with UDP_SEGMENT (GSO) sends a run of same-size datagrams to
//! one peer. quinn-udp does the cmsg plumbing and probes what the kernel supports; where it does
//! not (other OSes, old kernels) it degrades to one datagram per call.
//!
//! Fallback: some drivers and paths refuse GSO with EIO (or EINVAL when a segment is larger than
//! the route allows). quinn-udp then turns GSO off for the socket (`max_gso_segments` drops to
//! 1); this layer resends the refused run one datagram at a time, so nothing is lost.
//!
//! A stack where quinn-udp cannot set the socket up at all (it asks for options such as
//! IP_PKTINFO and ECN; wine's Winsock answers WSAEOPNOTSUPP, and a stripped-down Windows might)
//! gets plain `recv_from`/`send_to`, one datagram per call: slower, never broken.

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Messages read per `recvmmsg`. Each buffer holds a whole GRO super-datagram (up to 64 KiB),
/// so this is the memory knob: 2 x 64 KiB keeps the decrypt loop fed (about 45 datagrams a
/// read) and holds an eighth of a MiB. Four held a quarter; with 32 TUN write slots that was
/// 0.7 MiB more resident on the receiving end of a bulk transfer for about 10% more TCP
/// (2026-11-28, `BENCH_SMAPS_DIR=DIR scripts/bench.sh --only p2pvpn`, release builds, two
/// runs each: receiver anonymous 2188-2264 against 1516-1520 KiB, 4246-4417 against
/// 3571-4006 Mbit/s; boringtun-cli carries about 500 in the same lab).
pub const RECV_BUFS: usize = 2;

/// The largest UDP payload of one IPv4 message (65535 minus the IP and UDP headers); a GSO
/// run's total must fit in it.
pub const MAX_GSO_BYTES: usize = 65_507;

/// Whether a short batch means the queue was empty: where quinn-udp reads with `recvmmsg`
/// (Linux). Elsewhere it reads one datagram per call, so every batch is "short" and says
/// nothing about what is left.
#[cfg(target_os = "linux")]
const SHORT_BATCH_DRAINS: bool = true;
#[cfg(not(target_os = "linux"))]
const SHORT_BATCH_DRAINS: bool = false;

/// The main socket and the kernel features quinn-udp found on it (`None`: plain calls, see the
/// module's header).
pub struct UdpBatch {
    socket: UdpSocket,
    state: Option<UdpSocketState>,
}

/// Reusable receive buffers and their metadata, allocated once.
pub struct RecvBufs {
    bufs: [Vec<u8>; RECV_BUFS],
    meta: [RecvMeta; RECV_BUFS],
}

impl Default for RecvBufs {
    fn default() -> Self {
        RecvBufs {
            bufs: std::array::from_fn(|_| vec![0u8; u16::MAX as usize]),
            meta: [RecvMeta::default(); RECV_BUFS],
        }
    }
}

impl RecvBufs {
    /// The datagrams of message `i` of the last batch, with their sender: a GRO message splits
    /// at `stride` (the last one may be shorter).
    pub fn datagrams(&self, i: usize) -> (SocketAddr, std::slice::Chunks<'_, u8>) {
        let meta = &self.meta[i];
        let stride = meta.stride.max(1);
        (meta.addr, self.bufs[i][..meta.len].chunks(stride))
    }
}

impl RecvBufs {
    /// Message `i` of the last batch, writable in place (the server's relay rewrites headers
    /// there and sends from the same bytes): (sender, stride, bytes). A message without GRO has
    /// a stride of its whole length.
    pub fn message_mut(&mut self, i: usize) -> (SocketAddr, usize, &mut [u8]) {
        let meta = &self.meta[i];
        let len = meta.len.min(self.bufs[i].len());
        (meta.addr, meta.stride.max(1), &mut self.bufs[i][..len])
    }

    /// The bytes of message `i` of the last batch, as `message_mut` left them.
    pub fn message(&self, i: usize) -> &[u8] {
        let len = self.meta[i].len.min(self.bufs[i].len());
        &self.bufs[i][..len]
    }
}

impl UdpBatch {
    /// Whether the socket has something to read, for a loop that waits on several sockets at
    /// once; a `Ready` may be spurious, so read with [`UdpBatch::try_recv`].
    pub fn poll_recv_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.socket.poll_recv_ready(cx)
    }

    /// Whether quinn-udp set the socket up (batched calls); the data thread needs it.
    pub fn batched(&self) -> bool {
        self.state.is_some()
    }

    /// One batched receive now, outside tokio's readiness: the data thread
    /// (`io::workers::data_thread`) waits with `poll(2)` itself, and tokio's readiness belongs
    /// to the node task, which does not read the socket in that mode. How many messages of
    /// `bufs` are filled, or `WouldBlock`. Needs [`Self::batched`].
    pub fn recv_now(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let Some(state) = &self.state else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let mut slices = bufs
            .bufs
            .each_mut()
            .map(|b| IoSliceMut::new(b.as_mut_slice()));
        state.recv((&self.socket).into(), &mut slices, &mut bufs.meta)
    }

    /// One try at [`Self::send`] now, outside tokio's readiness (the data thread), with the
    /// same GSO fallback. `Ok(n)`: the first `n` bytes of `contents` left, which is all of them
    /// unless the send queue filled part-way through the fallback's datagrams (then `n` ends on
    /// a datagram boundary, and the caller sends the rest once there is room, so no datagram
    /// leaves twice); `WouldBlock`: nothing left, the queue is full. Needs [`Self::batched`].
    pub fn try_send_now(
        &self,
        dst: SocketAddr,
        contents: &[u8],
        segment_size: usize,
    ) -> io::Result<usize> {
        let Some(state) = &self.state else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let (transmit, gso) = run(dst, contents, segment_size);
        match state.try_send((&self.socket).into(), &transmit) {
            Ok(()) => Ok(contents.len()),
            Err(e) if gso && gso_refused(&e) => {
                tracing::debug!(error = %e, "UDP GSO refused; sending datagrams one at a time");
                sent_until_full(one_by_one(&transmit, segment_size), |single| {
                    state.try_send((&self.socket).into(), single)
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads one batch without waiting: how many messages of `bufs` are filled, or
    /// `WouldBlock`.
    pub fn try_recv(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let Some(state) = &self.state else {
            return self.try_recv_plain(bufs);
        };
        self.try_recv_batch(state, bufs)
    }

    /// One `recvmmsg` under tokio's readiness. On Linux a batch that comes back short means
    /// the queue was empty when the call returned, so readiness is cleared now, by answering
    /// `WouldBlock` to `try_io` and keeping the count, instead of by one more `recvmmsg` that
    /// finds nothing on the next turn of the loop: a syscall less per wake, which a ping pays
    /// on every hop. Nothing can be missed: epoll is edge-triggered (tokio registers with
    /// EPOLLET), so a datagram that arrives after the call raises a new event, and tokio only
    /// clears the readiness it observed before the call (its tick), not a newer one.
    fn try_recv_batch(&self, state: &UdpSocketState, bufs: &mut RecvBufs) -> io::Result<usize> {
        let mut slices = bufs
            .bufs
            .each_mut()
            .map(|b| IoSliceMut::new(b.as_mut_slice()));
        let mut short = 0;
        let result = self.socket.try_io(Interest::READABLE, || {
            let n = state.recv((&self.socket).into(), &mut slices, &mut bufs.meta)?;
            if SHORT_BATCH_DRAINS && n < RECV_BUFS {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
            r => r,
        }
    }

    /// One datagram into message 0, as a batch of one.
    fn try_recv_plain(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        let (len, addr) = self.socket.try_recv_from(&mut bufs.bufs[0])?;
        let meta = &mut bufs.meta[0];
        *meta = RecvMeta::default();
        meta.addr = addr;
        meta.len = len;
        meta.stride = len;
        Ok(1)
    }

    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = match UdpSocketState::new((&socket).into()) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::info!(
                    error = %e,
                    "batched UDP (quinn-udp) is not available on this socket; one datagram per call"
                );
                None
            }
        };
        super::sock_buf::grow(socket2::SockRef::from(&socket));
        // An IPv6 socket's options are its owner's (`io::ipv6_underlay`).
        if socket.local_addr().is_ok_and(|a| a.is_ipv4()) {
            restore_fragmentation(&socket);
        }
        Ok(UdpBatch { socket, state })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// How many datagrams one send may carry now (1 without GSO, or after the kernel refused
    /// it).
    pub fn max_segments(&self) -> usize {
        self.state
            .as_ref()
            .map_or(1, UdpSocketState::max_gso_segments)
    }

    /// Waits for and reads one batch; returns how many messages of `bufs` are filled.
    pub async fn recv(&self, bufs: &mut RecvBufs) -> io::Result<usize> {
        loop {
            self.socket.readable().await?;
            match self.try_recv(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Sends `contents` to `dst` as datagrams of `segment_size` bytes (the last may be shorter):
    /// one GSO send when there are several, one at a time if the kernel refuses that.
    pub async fn send(
        &self,
        dst: SocketAddr,
        contents: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        let (transmit, gso) = run(dst, contents, segment_size);
        match self.send_one(&transmit).await {
            Err(e) if gso && gso_refused(&e) => {
                tracing::debug!(error = %e, "UDP GSO refused; sending datagrams one at a time");
                for single in one_by_one(&transmit, segment_size) {
                    self.send_one(&single).await?;
                }
                Ok(())
            }
            r => r,
        }
    }

    async fn send_one(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some(state) = &self.state else {
            let size = transmit
                .segment_size
                .unwrap_or(transmit.contents.len())
                .max(1);
            for datagram in transmit.contents.chunks(size) {
                self.socket.send_to(datagram, transmit.destination).await?;
            }
            return Ok(());
        };
        loop {
            self.socket.writable().await?;
            let result = self.socket.try_io(Interest::WRITABLE, || {
                state.try_send((&self.socket).into(), transmit)
            });
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

/// A run of datagrams of `segment_size` bytes to `dst` as one transmit, and whether it needs
/// GSO (more than one datagram).
fn run(dst: SocketAddr, contents: &[u8], segment_size: usize) -> (Transmit<'_>, bool) {
    let gso = segment_size > 0 && contents.len() > segment_size;
    let transmit = Transmit {
        destination: dst,
        ecn: None,
        contents,
        segment_size: gso.then_some(segment_size),
        src_ip: None,
    };
    (transmit, gso)
}

/// A run's datagrams as transmits of their own, for a kernel that refused the GSO send.
fn one_by_one<'a>(
    transmit: &Transmit<'a>,
    segment_size: usize,
) -> impl Iterator<Item = Transmit<'a>> + 'a {
    let each = transmit.clone();
    transmit
        .contents
        .chunks(segment_size)
        .map(move |chunk| Transmit {
            contents: chunk,
            segment_size: None,
            ..each.clone()
        })
}

/// Sends `transmits` in order with `send` until one fails: the bytes sent. A full queue
/// (`WouldBlock`) after at least one datagram is a partial send, not an error, so that the
/// caller resumes after the last datagram that left instead of repeating the run.
fn sent_until_full<'a>(
    transmits: impl Iterator<Item = Transmit<'a>>,
    mut send: impl FnMut(&Transmit<'a>) -> io::Result<()>,
) -> io::Result<usize> {
    let mut sent = 0;
    for single in transmits {
        match send(&single) {
            Ok(()) => sent += single.contents.len(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent > 0 => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// The errors Linux gives for a GSO send the device or route cannot take.
fn gso_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL))
}

/// quinn-udp sets IP_PMTUDISC_PROBE (DF on, the kernel's path MTU ignored), which QUIC wants but
/// this socket did not have before batching: put back the kernel default (IP_PMTUDISC_WANT) so
/// behaviour on small-MTU paths is unchanged by batching. Path MTU policy belongs to the path
/// MTU work (issue 11), not to the socket layer.
#[cfg(target_os = "linux")]
fn restore_fragmentation(socket: &UdpSocket) {
    let set = crate::os::set_int_sockopt(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_WANT,
    );
    if let Err(e) = set {
        tracing::debug!(error = %e, "cannot reset IP_MTU_DISCOVER");
    }
}

#[cfg(not(target_os = "linux"))]
fn restore_fragmentation(_socket: &UdpSocket) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    async fn pair() -> (UdpBatch, UdpSocket) {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        (UdpBatch::new(a).unwrap(), b)
    }

    /// A run sent as one GSO message arrives as separate datagrams of the segment size, the
    /// last one shorter, in order (loopback; GSO or its per-datagram fallback).
    #[tokio::test]
    async fn a_run_arrives_as_its_datagrams() {
        let (a, b) = pair().await;
        let dst = b.local_addr().unwrap();
        let mut contents = Vec::new();
        for i in 0..5u8 {
            contents.extend(std::iter::repeat_n(i, if i == 4 { 300 } else { 1200 }));
        }
        a.send(dst, &contents, 1200).await.unwrap();
        let mut buf = [0u8; 2000];
        for i in 0..5u8 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), b.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, if i == 4 { 300 } else { 1200 }, "datagram {i}");
            assert!(buf[..n].iter().all(|&x| x == i), "datagram {i} content");
        }
    }

    /// Several datagrams sent separately come out of one batched receive (possibly GRO
    /// coalesced), each intact and from the right sender.
    #[tokio::test]
    async fn a_batch_receive_yields_every_datagram() {
        let (a, b) = pair().await;
        let dst = a.socket().local_addr().unwrap();
        for i in 0..6u8 {
            b.send_to(&[i; 100], dst).await.unwrap();
        }
        let mut bufs = RecvBufs::default();
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), a.recv(&mut bufs))
                .await
                .unwrap()
                .unwrap();
            for i in 0..n {
                let (from, datagrams) = bufs.datagrams(i);
                assert_eq!(from, b.local_addr().unwrap());
                for d in datagrams {
                    assert_eq!(d.len(), 100);
                    seen.push(d[0]);
                }
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
    }

    /// A short batch clears readiness without a second `recvmmsg`: the receiver must still wake
    /// for every datagram sent after it, one at a time and in a burst larger than a batch.
    #[tokio::test]
    async fn a_short_batch_misses_no_later_datagram() {
        let (a, b) = pair().await;
        let dst = a.socket().local_addr().unwrap();
        let mut bufs = RecvBufs::default();
        let wait = std::time::Duration::from_secs(2);
        let count = |bufs: &RecvBufs, n: usize| -> usize {
            (0..n).map(|i| bufs.datagrams(i).1.count()).sum()
        };
        for i in 0..5u8 {
            b.send_to(&[i; 64], dst).await.unwrap();
            let n = tokio::time::timeout(wait, a.recv(&mut bufs)).await;
            let n = n
                .expect("a datagram sent after a short batch was not seen")
                .unwrap();
            assert_eq!(count(&bufs, n), 1, "round {i}");
            assert_eq!(bufs.datagrams(0).1.next(), Some(&[i; 64][..]));
            // The point of it: on Linux the short batch left the socket not ready, so the next
            // turn waits for epoll instead of calling recvmmsg to find nothing.
            let ready =
                std::future::poll_fn(|cx| std::task::Poll::Ready(a.poll_recv_ready(cx).is_ready()))
                    .await;
            assert_eq!(ready, !SHORT_BATCH_DRAINS, "readiness after a short batch");
        }
        let burst = 3 * RECV_BUFS;
        for i in 0..burst {
            b.send_to(&[i as u8; 64], dst).await.unwrap();
        }
        let mut seen = 0;
        while seen < burst {
            let n = tokio::time::timeout(wait, a.recv(&mut bufs)).await;
            let n = n.expect("part of a burst was left unread").unwrap();
            seen += count(&bufs, n);
        }
        assert_eq!(seen, burst);
    }

    /// The GSO fallback under a full queue: the datagrams that left are counted, on a datagram
    /// boundary, and a queue full before the first one is `WouldBlock`; a real error stays one.
    #[test]
    fn a_fallback_cut_short_by_a_full_queue_says_what_left() {
        let dst: SocketAddr = (Ipv4Addr::LOCALHOST, 9).into();
        let contents = [1u8; 2500];
        let (transmit, gso) = run(dst, &contents, 1000);
        assert!(gso);
        let full_after = |n: usize| {
            let mut calls = 0;
            sent_until_full(one_by_one(&transmit, 1000), move |_| {
                calls += 1;
                if calls > n {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            })
        };
        assert_eq!(full_after(3).unwrap(), 2500);
        assert_eq!(full_after(2).unwrap(), 2000);
        assert_eq!(full_after(1).unwrap(), 1000);
        assert_eq!(full_after(0).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let refused = sent_until_full(one_by_one(&transmit, 1000), |_| {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        });
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    /// Without quinn-udp (a stack that refuses its socket options, as wine's does): runs still
    /// leave as their datagrams and every datagram is read, one per call.
    #[tokio::test]
    async fn the_plain_fallback_carries_runs_and_batches() {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let a = UdpBatch {
            socket: a,
            state: None,
        };
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        assert_eq!(a.max_segments(), 1);
        a.send(b.local_addr().unwrap(), &[7u8; 2500], 1000)
            .await
            .unwrap();
        let mut buf = [0u8; 2000];
        for want in [1000, 1000, 500] {
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), b.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, want);
        }
        let dst = a.socket().local_addr().unwrap();
        for i in 0..3u8 {
            b.send_to(&[i; 100], dst).await.unwrap();
        }
        let mut bufs = RecvBufs::default();
        for i in 0..3u8 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), a.recv(&mut bufs))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 1);
            let (from, mut datagrams) = bufs.datagrams(0);
            assert_eq!(from, b.local_addr().unwrap());
            assert_eq!(datagrams.next(), Some(&[i; 100][..]));
            assert_eq!(datagrams.next(), None);
        }
    }
}
