//! `[dataplane] workers = 1` with our engine on Linux: one plain OS thread carries the data path
//! in both directions (TUN read → seal → GSO send; `recvmmsg` → open → GRO TUN write), waiting
//! on the TUN descriptor and both halves of the main socket (`io::main_socket`) with `poll(2)`.
//! ARCHITECTURE.md "Both cores" has the design; this file is only the loop.
//!
//! Why a plain thread and not a task: a ping crosses each node twice, each time waking a
//! sleeping process, and what one wake costs is mostly cold caches, so it grows with the code
//! the wake runs through. The node task's turn (tokio's driver, the loop's select over its
//! timers and channels, the core's bookkeeping) measured about 490 us of CPU per echo for both
//! nodes, boringtun-cli 250 us; this loop runs only the key table's seal and open and the
//! batched calls (measured in notes/issue11-next.md). Both directions on one thread, because a
//! ping's answer is written to the TUN device by the same thread that read its request: the
//! kernel answers inside that write, and the thread reads the answer on its next turn without
//! another thread being woken (the two workers of `workers = 2` pay that wake on each hop).
//!
//! The descriptors leave the node task's tokio reactor when the thread starts (`withdraw`): the
//! node task's thread is no longer woken by their traffic, and its own few sends and TUN writes
//! go out without waiting for readiness (`MainSocket::detached`). Stopping: an eventfd in the
//! same `poll` set.

use super::{now_ms, open_into, seal_batch, Ctx, Open, ToCore, WorkerStats};
use crate::core::node::SocketId;
use crate::io::dataplane::TxBatch;
use crate::io::tun_batch::TunIo;
use crate::io::udp_batch::{RecvBufs, UdpBatch};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The room the node task's channel must have before the thread reads another batch: a TUN
/// batch can hand over up to `tun_batch::BATCH` (128) packets, half the channel.
const HAND_OVER_ROOM: usize = crate::io::tun_batch::BATCH;

/// How long a send waits for room in the socket's queue before the run is given up: a queue
/// full for that long means the path is congested anyway.
const SEND_WAIT_MS: i32 = 100;

/// The data thread exists on this OS.
pub const AVAILABLE: bool = true;

/// Starts the thread `p2pvpn-data` on `tun`; returns it and what wakes it to stop.
pub(super) fn spawn(
    ctx: Ctx,
    tx: Arc<WorkerStats>,
    tun: TunIo,
    mtu: u16,
) -> io::Result<(std::thread::JoinHandle<()>, super::Wake)> {
    let stopper = Stopper::new()?;
    let waker = Arc::clone(&stopper);
    // From here on this thread alone waits on these descriptors (`withdraw`).
    let mut fds = vec![ctx.udp.v4.socket().as_raw_fd(), tun.as_raw_fd()];
    fds.extend(ctx.udp.v6.as_ref().map(|s| s.socket().as_raw_fd()));
    match super::withdraw::from_reactor(&fds) {
        Ok(n) => tracing::debug!(
            descriptors = n,
            "the node task no longer watches the data path"
        ),
        Err(e) => tracing::info!(
            error = %e,
            "the node task keeps watching the data path's descriptors (more wake-ups, same packets)"
        ),
    }
    let thread = std::thread::Builder::new()
        .name("p2pvpn-data".into())
        .spawn(move || run(ctx, tx, tun, mtu, stopper))?;
    Ok((thread, Box::new(move || waker.wake())))
}

/// Wakes the data thread's `poll` so that it sees the stop signal at once.
struct Stopper(OwnedFd);

/// A new non-blocking eventfd(2): the stop signal's, and `withdraw`'s probe.
pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with valid flags; the descriptor is owned from here on.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Stopper {
    fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Stopper(eventfd()?)))
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write to our own eventfd. Failing only means the counter is
        // already non-zero: the thread is being woken anyway.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// The thread's body: both directions until stopped. `tx` counts what it seals, `rx` (in
/// `ctx`) what it opens, so `status --json` shows the same `workers.tx`/`workers.rx` as with
/// two threads.
fn run(ctx: Ctx, tx: Arc<WorkerStats>, mut tun: TunIo, mtu: u16, stop: Arc<Stopper>) {
    let mut batch = TxBatch::new(mtu);
    let mut bufs = RecvBufs::default();
    let udp_fd = ctx.udp.v4.socket().as_raw_fd();
    // No IPv6 half: a negative descriptor, which `poll` skips.
    let udp6_fd = ctx.udp.v6.as_ref().map_or(-1, |s| s.socket().as_raw_fd());
    let tun_fd = tun.as_raw_fd();
    let mut fds = [udp_fd, udp6_fd, tun_fd, stop.0.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // Backpressure: while the node task's channel has no room for what one more batch
        // could hand it, neither descriptor is read (`poll` skips a negative fd) and the
        // thread looks again every millisecond: the kernel's queues hold the packets, as they
        // did when the node's own loop was busy, instead of the channel dropping them.
        let room = ctx.to_core.capacity() >= HAND_OVER_ROOM;
        fds[0].fd = if room { udp_fd } else { -1 };
        fds[1].fd = if room { udp6_fd } else { -1 };
        fds[2].fd = if room { tun_fd } else { -1 };
        let timeout = if room { -1 } else { 1 };
        // SAFETY: `fds` is a valid array of pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!(error = %e, "the data thread cannot wait for packets; it stops");
            return;
        }
        if fds[3].revents != 0 || *ctx.stop.borrow() {
            return;
        }
        // One batch per socket half and direction per turn, then `poll` again
        // (level-triggered: nothing is lost), so that a saturated one starves neither the
        // others nor the stop signal.
        let mut wrote = false;
        if fds[0].revents != 0 {
            wrote |= receive(&ctx, &ctx.udp.v4, &mut tun, &mut bufs);
        }
        if let (true, Some(v6)) = (fds[1].revents != 0, &ctx.udp.v6) {
            wrote |= receive(&ctx, v6, &mut tun, &mut bufs);
        }
        // After a TUN write the kernel may have answered inside it (a ping, a TCP ACK): read
        // now rather than after one more `poll`.
        let read_tun = fds[2].revents != 0 || (wrote && room);
        if read_tun && !transmit(&ctx, &tx, &mut tun, &mut batch) {
            return;
        }
    }
}

/// Reads one batch from `half` of the main socket: opens what the table can, writes it to the
/// TUN device (coalesced), hands the rest to the node task. True if it wrote packets.
fn receive(ctx: &Ctx, half: &UdpBatch, tun: &mut TunIo, bufs: &mut RecvBufs) -> bool {
    let n = match half.recv_now(bufs) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
        Err(e) => {
            // An ICMP error queued on the socket (a peer's port closed) and the like: one
            // datagram's worth, as the node loop treats it.
            tracing::debug!(error = %e, "UDP receive failed (data thread)");
            return false;
        }
    };
    let table = ctx.published.load();
    let now = now_ms(ctx.origin);
    let mut opened = 0u64;
    let mut wrote = false;
    for i in 0..n {
        let (from, datagrams) = bufs.datagrams(i);
        for datagram in datagrams {
            if tun.slot(datagram.len()).is_none() {
                flush(tun);
            }
            match open_into(ctx, &table, from, datagram, tun, now) {
                Open::Written => wrote = true,
                Open::Opened => {}
                Open::NotOpened => continue,
            }
            opened += 1;
        }
    }
    flush(tun);
    ctx.stats
        .crypto_packets
        .fetch_add(opened, Ordering::Relaxed);
    wrote
}

/// Reads one batch from the TUN device: seals what the table can and sends it, hands the rest
/// to the node task. False when the device is gone (the node task is told and ends).
fn transmit(ctx: &Ctx, stats: &WorkerStats, tun: &mut TunIo, batch: &mut TxBatch) -> bool {
    let n = match tun.read_now() {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
        // As the node loop: an OS error ends the node, one tun-rs raises about one malformed
        // packet loses that packet only.
        Err(e) if e.raw_os_error().is_some() => {
            // Never blocks: a node task already waiting in `Workers::stop` would not take it.
            if ctx.to_core.try_send(ToCore::TunFailed(e)).is_err() {
                tracing::warn!("the TUN device failed; the data thread stops");
            }
            return false;
        }
        Err(e) => {
            tracing::debug!(error = %e, "TUN packet dropped (data thread)");
            return true;
        }
    };
    for part in crate::io::tun_batch::parts(n) {
        seal_batch(ctx, stats, tun, part, batch);
        for (socket, dst, contents, segment) in batch.runs() {
            // The table holds only peers on the main socket (either half).
            debug_assert!(socket == SocketId::MAIN);
            // An IPv6 peer on a host without the IPv6 half: the core never routes one.
            let Some(half) = ctx.udp.to(dst) else {
                continue;
            };
            if let Err(e) = send(half, dst, contents, segment) {
                tracing::debug!(error = %e, %dst, "UDP send failed (data thread)");
            }
        }
    }
    true
}

/// Sends one run, waiting up to `SEND_WAIT_MS` for room once if the socket's queue is full,
/// and then sending what had not left (after a partial GSO fallback, only the datagrams after
/// the last one that left: a duplicate would cost the receiver a replay-window drop); what does
/// not fit after that wait is lost, as a full queue loses it anywhere.
fn send(udp: &UdpBatch, dst: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
    let rest = match udp.try_send_now(dst, contents, segment) {
        Ok(n) if n >= contents.len() => return Ok(()),
        Ok(n) => &contents[n..],
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => contents,
        Err(e) => return Err(e),
    };
    let mut p = libc::pollfd {
        fd: udp.socket().as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, SEND_WAIT_MS) };
    match udp.try_send_now(dst, rest, segment) {
        Ok(n) if n < rest.len() => Err(io::ErrorKind::WouldBlock.into()),
        r => r.map(drop),
    }
}

fn flush(tun: &mut TunIo) {
    if let Err(e) = tun.flush_now() {
        tracing::debug!(error = %e, "TUN write failed (data thread)");
    }
}
