//! The data workers (issue 11, ARCHITECTURE.md "The data thread and both cores"): with
//! `[dataplane] workers = 2` a TX thread (TUN read, seal, GSO send) and an RX thread
//! (`recvmmsg`, open, GRO TUN write), so that encryption and decryption each get a core; with
//! `workers = 1` (our engine, Linux) one plain data thread doing both (`data_thread`), the
//! shortest path a ping can take. All use the `KeyTable` the node publishes
//! (`core::node::workers`), loaded once per batch. What a table cannot handle goes to the node
//! task over one bounded channel ([`ToCore`]); when it is full the item is dropped and counted
//! (`to_core_full`), so a busy node task never stalls a worker (the data thread also stops
//! reading while the channel is short of room). What the node sends (handshakes, probes,
//! keepalives) still leaves through the node task's own sends.
//!
//! Each of the two workers is an OS thread running a current-thread tokio runtime (the data
//! thread is a plain thread, see `data_thread`): the TUN device and the UDP socket stay the
//! node's async objects (shared through `Arc`, their calls take `&self`), so the batched code
//! of `io::dataplane` and `io::udp_batch` serves both modes, and a worker stops at once when
//! told (a blocking read could not be interrupted). The I/O stays registered with the node
//! task's runtime, whose thread delivers readiness; in these modes that thread is idle most of
//! the time.

use super::dataplane::TxBatch;
use super::main_socket::{MainSocket, Turn};
use super::tun_batch::TunIo;
use super::udp_batch::RecvBufs;
use crate::core::counters::DropReason;
use crate::core::node::{WorkerStatus, WorkersStatus};
use crate::core::wg::table::{KeyTable, Opened, Published, Sealed};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

#[cfg(target_os = "linux")]
mod data_thread;
#[cfg(not(target_os = "linux"))]
#[path = "data_thread_other.rs"]
mod data_thread;
#[cfg(target_os = "linux")]
mod withdraw;

/// Whether `[dataplane] workers = 1` can run as a data thread on this OS.
pub const DATA_THREAD: bool = data_thread::AVAILABLE;

/// What wakes a worker blocked outside tokio so that it sees the stop signal.
type Wake = Box<dyn Fn() + Send + Sync>;

/// How the data path is split over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One plain thread, both directions (`data_thread`).
    One,
    /// A TX and an RX thread.
    Two,
}

/// Items the node task takes from the workers per wake-up, and the channel's room: about two
/// full TUN reads, enough for a handshake's worth of queued packets.
pub const TO_CORE_ROOM: usize = 256;

/// What a worker hands to the node task.
pub enum ToCore {
    /// A TUN packet the table has no entry for (no session, relayed peer, SYN, too big...).
    Tun(Vec<u8>),
    /// A datagram from the main socket the table cannot open (handshake, STUN, probe, relay,
    /// unknown index, a peer's new address).
    Datagram(SocketAddr, Vec<u8>),
    /// An inner packet opened by the RX worker that the node must look at first (ICMP).
    Opened(Vec<u8>),
    /// The TX worker's TUN read failed with an OS error: the device is gone, the node ends.
    TunFailed(std::io::Error),
}

/// One worker's counters, for `status --json` (`workers.tx`, `workers.rx`).
#[derive(Default)]
pub struct WorkerStats {
    /// Packets sealed (TX) or datagrams opened (RX) on this thread.
    pub crypto_packets: AtomicU64,
    pub to_core: AtomicU64,
    /// Dropped because the node task's channel was full.
    pub to_core_full: AtomicU64,
    /// Drops decided here, by reason; the node task moves them into its own counters.
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl WorkerStats {
    fn count_drop(&self, reason: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|r| *r == reason) {
            self.drops[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The drops counted since the last call, by reason.
    pub fn take_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .zip(&self.drops)
            .map(|(r, n)| (*r, n.swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    pub fn status(&self) -> WorkerStatus {
        WorkerStatus {
            crypto_packets: self.crypto_packets.load(Ordering::Relaxed),
            to_core: self.to_core.load(Ordering::Relaxed),
            to_core_full: self.to_core_full.load(Ordering::Relaxed),
        }
    }
}

/// The running workers, held by the node task.
pub struct Workers {
    pub published: Arc<Published>,
    pub tx: Arc<WorkerStats>,
    pub rx: Arc<WorkerStats>,
    stop: watch::Sender<bool>,
    /// Wakes a thread that waits outside tokio (the data thread's `poll`).
    wake: Option<Wake>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Milliseconds since `origin`, at least 1 (0 means "never" in `Activity`).
fn now_ms(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn hand_over(to_core: &mpsc::Sender<ToCore>, stats: &WorkerStats, item: ToCore) {
    stats.to_core.fetch_add(1, Ordering::Relaxed);
    if to_core.try_send(item).is_err() {
        stats.to_core_full.fetch_add(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts the threads on `tun` (each gets its own buffers on the device) and `udp`.
    /// `origin` is the node's `worker_origin`.
    pub fn start(
        threads: Threads,
        tun: &TunIo,
        udp: MainSocket,
        mtu: u16,
        origin: Instant,
        to_core: mpsc::Sender<ToCore>,
    ) -> std::io::Result<Self> {
        let published = Arc::new(Published::default());
        let (stop, stopped) = watch::channel(false);
        let (tx, rx): (Arc<WorkerStats>, Arc<WorkerStats>) = (Arc::default(), Arc::default());
        // What one worker is given: the shared table, channel and stop signal, its counters.
        let ctx = |stats: &Arc<WorkerStats>| Ctx {
            published: published.clone(),
            stats: Arc::clone(stats),
            udp: udp.clone(),
            to_core: to_core.clone(),
            stop: stopped.clone(),
            origin,
        };
        if threads == Threads::One {
            let (thread, wake) =
                data_thread::spawn(ctx(&rx), Arc::clone(&tx), tun.share(mtu), mtu)?;
            return Ok(Workers {
                published,
                tx,
                rx,
                stop,
                wake: Some(wake),
                threads: vec![thread],
            });
        }
        let tx_thread = spawn("p2pvpn-tx", tx_loop(ctx(&tx), tun.share(mtu), mtu))?;
        let rx_thread = spawn("p2pvpn-rx", rx_loop(ctx(&rx), tun.share(mtu)))?;
        Ok(Workers {
            published,
            tx,
            rx,
            stop,
            wake: None,
            threads: vec![tx_thread, rx_thread],
        })
    }

    /// Stops both threads and waits for them (the stop signal wakes each at once). Joined on
    /// the blocking pool: a worker may be waiting for socket readiness that only this task's
    /// runtime delivers, so this thread must keep running it meanwhile.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(wake) = &self.wake {
            wake();
        }
        let threads = std::mem::take(&mut self.threads);
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if !matches!(joined, Ok(true)) {
            tracing::warn!("a data worker panicked");
        }
    }

    /// Publishes the node's new table, if it has one, and moves the workers' drop counts into
    /// the node's.
    pub fn sync(&self, node: &mut crate::core::node::Node) {
        if let Some(table) = node.poll_key_table(std::time::Instant::now()) {
            self.published.store(table);
        }
        for stats in [&self.tx, &self.rx] {
            for (reason, n) in stats.take_drops() {
                node.count_drops(reason, n);
            }
        }
    }

    pub fn status(&self) -> WorkersStatus {
        WorkersStatus {
            tx: self.tx.status(),
            rx: self.rx.status(),
        }
    }
}

impl Drop for Workers {
    /// Workers dropped without [`Workers::stop`] (an error return of the node task, a task
    /// aborted by the supervisor) still stop: the two tokio workers see the stop signal, the
    /// data thread is woken out of its `poll` by its eventfd. Not joined here (this may run on
    /// the runtime's thread); they end within one batch.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

/// What both loops share.
struct Ctx {
    published: Arc<Published>,
    stats: Arc<WorkerStats>,
    /// Both halves of the main socket.
    udp: MainSocket,
    to_core: mpsc::Sender<ToCore>,
    stop: watch::Receiver<bool>,
    origin: Instant,
}

fn spawn(
    name: &str,
    body: impl FnOnce(tokio::runtime::Runtime) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(runtime))
}

/// TUN read → seal → GSO send, until stopped.
fn tx_loop(mut ctx: Ctx, mut tun: TunIo, mtu: u16) -> impl FnOnce(tokio::runtime::Runtime) {
    move |runtime| {
        runtime.block_on(async move {
            let mut batch = TxBatch::new(mtu);
            loop {
                let n = tokio::select! {
                    _ = ctx.stop.changed() => break,
                    r = tun.read() => match r {
                        Ok(n) => n,
                        // As the single loop: an OS error ends the node, one tun-rs raises
                        // about one malformed packet loses that packet only.
                        Err(e) if e.raw_os_error().is_some() => {
                            let _ = ctx.to_core.send(ToCore::TunFailed(e)).await;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "TUN packet dropped (TX worker)");
                            continue;
                        }
                    },
                };
                for part in crate::io::tun_batch::parts(n) {
                    seal_batch(&ctx, &ctx.stats, &mut tun, part, &mut batch);
                    // The table only holds peers on the main socket (either half): no other
                    // socket.
                    super::dataplane::send(&batch, &ctx.udp, |_| None).await;
                }
            }
        })
    }
}

/// `recvmmsg` → open → GRO TUN write, until stopped.
fn rx_loop(mut ctx: Ctx, mut tun: TunIo) -> impl FnOnce(tokio::runtime::Runtime) {
    move |runtime| {
        runtime.block_on(async move {
            let mut bufs = RecvBufs::default();
            let mut turn = Turn::default();
            loop {
                let n = tokio::select! {
                    _ = ctx.stop.changed() => break,
                    r = ctx.udp.recv(&mut bufs, &mut turn) => match r {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(error = %e, "UDP receive failed (RX worker)");
                            continue;
                        }
                    },
                };
                let table = ctx.published.load();
                let now = now_ms(ctx.origin);
                let mut opened = 0u64;
                for i in 0..n {
                    let (from, datagrams) = bufs.datagrams(i);
                    for datagram in datagrams {
                        if tun.slot(datagram.len()).is_none() {
                            flush(&mut tun).await;
                        }
                        if open_into(&ctx, &table, from, datagram, &mut tun, now) != Open::NotOpened
                        {
                            opened += 1;
                        }
                    }
                }
                flush(&mut tun).await;
                ctx.stats
                    .crypto_packets
                    .fetch_add(opened, Ordering::Relaxed);
            }
        })
    }
}

/// Seals the packets `part` of `tun`'s last read (at most a batch's room, `tun_batch::parts`)
/// into `batch` with the published table; what the table cannot carry, or what no longer fits
/// the batch, goes to the node task. `stats` counts what was sealed. The batch is ready for its
/// sends afterwards (`TxBatch::runs`).
fn seal_batch(
    ctx: &Ctx,
    stats: &WorkerStats,
    tun: &mut TunIo,
    part: std::ops::Range<usize>,
    batch: &mut TxBatch,
) {
    let table = ctx.published.load();
    let now = now_ms(ctx.origin);
    let max_segments = ctx.udp.max_segments();
    batch.clear();
    let mut sealed = 0u64;
    for i in part {
        let packet = tun.packet(i);
        let mut to_core = false;
        let room = batch.append(max_segments, |out| match table.seal(packet, out, now) {
            Sealed::Datagram { socket, dst, len } => Some((socket, dst, len)),
            Sealed::ToCore => {
                to_core = true;
                None
            }
        });
        if to_core || !room {
            hand_over(&ctx.to_core, stats, ToCore::Tun(packet.to_vec()));
        } else {
            sealed += 1;
        }
    }
    stats.crypto_packets.fetch_add(sealed, Ordering::Relaxed);
}

/// What opening one datagram came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    /// Opened, and its packet waits in a TUN write slot for the next flush.
    Written,
    /// Opened, nothing to write (a keepalive, or a packet the node task must see first).
    Opened,
    /// Not opened: dropped and counted, handed to the node task, or no write slot.
    NotOpened,
}

/// Opens `datagram` (from `from`) with `table` into `tun`'s next write slot; the caller flushes
/// first when the slots are full. Drops are counted in `ctx.stats`; what the table cannot open,
/// and opened packets the node task must see, go to it.
fn open_into(
    ctx: &Ctx,
    table: &KeyTable,
    from: SocketAddr,
    datagram: &[u8],
    tun: &mut TunIo,
    now: u64,
) -> Open {
    let Some(slot) = tun.slot(datagram.len()) else {
        return Open::NotOpened;
    };
    let base = slot.as_ptr() as usize;
    match table.open(from, datagram, slot, now) {
        Opened::Packet(p) => {
            let (start, len) = (p.as_ptr() as usize - base, p.len());
            tun.commit(start, len);
            Open::Written
        }
        Opened::Keepalive => Open::Opened,
        Opened::Core(p) => {
            hand_over(&ctx.to_core, &ctx.stats, ToCore::Opened(p.to_vec()));
            Open::Opened
        }
        Opened::Dropped(reason) => {
            ctx.stats.count_drop(reason);
            Open::NotOpened
        }
        Opened::ToCore => {
            let item = ToCore::Datagram(from, datagram.to_vec());
            hand_over(&ctx.to_core, &ctx.stats, item);
            Open::NotOpened
        }
    }
}

async fn flush(tun: &mut TunIo) {
    if let Err(e) = tun.flush().await {
        tracing::debug!(error = %e, "TUN write failed (RX worker)");
    }
}
