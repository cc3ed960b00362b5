//! Linux: virtio-net headers with TSO/USO on read (split lazily, [`super::tso`]) and GRO
//! coalescing on write (our allocation-free [`super::gro`]).

use super::gro::{self, Gro};
use super::slot_len;
use super::tso::{self, Read};
use std::io;
use std::sync::Arc;
use tun_rs::{AsyncDevice, VIRTIO_NET_HDR_LEN};

/// Where packets start in a write slot: the virtio-net header goes before them.
const OFFSET: usize = VIRTIO_NET_HDR_LEN;
const _: () = assert!(gro::HDR_LEN == VIRTIO_NET_HDR_LEN);

/// Decrypted packets coalesced per TUN write batch. A slot that heads a GRO super-packet grows
/// by the packets appended to it, so a head holds at most WRITE_SLOTS packets and every slot
/// can be a head at some time: 16 slots of at most 16 x MTU bytes bound the resident write
/// buffers at about 0.35 MiB (32 slots: 1.4 MiB; 128 measured 16.6 MiB peak RSS on the
/// receiving end of a bulk transfer). The memory knob of issue 11, with `udp_batch::RECV_BUFS`
/// (which says what the pair of them cost and gave): 16 packets of 1420 bytes still make
/// 22 KiB super-packets for the kernel.
const WRITE_SLOTS: usize = 16;

pub struct TunIo {
    dev: Arc<AsyncDevice>,
    /// One raw read: virtio header + a packet or a super-packet of up to 64 KiB. A single
    /// packet is sealed where it was read.
    raw: Vec<u8>,
    /// What the last read holds (`tso::parse`).
    last: Read,
    /// The packet of a super-packet that [`Self::packet`] split last, `slot` bytes: one slot,
    /// not one per packet of the read, so a bulk sender keeps one MTU resident here where
    /// tun-rs's eager split kept a read's worth (`tso`'s header).
    scratch: Vec<u8>,
    /// Bytes per packet slot (`slot_len` of the MTU).
    slot: usize,
    /// Decrypted packets waiting to be coalesced and written, `OFFSET` bytes into each slot.
    /// Each slot's capacity is 64 KiB, so GRO appends without allocating; a slot's `len` is
    /// how many bytes were ever initialised (it only grows, within that capacity, so a slot
    /// is zero-filled once, not per packet) and `lens` holds the packet lengths.
    out: Vec<Vec<u8>>,
    lens: Vec<usize>,
    pending: usize,
    gro: Gro,
    /// A single packet written outside a batch, with its header room.
    single: Vec<u8>,
}

impl TunIo {
    pub fn new(dev: impl Into<Arc<AsyncDevice>>, mtu: u16) -> Self {
        TunIo {
            dev: dev.into(),
            // The read side is allocated by the first read (`read_buffers`): the node task's
            // own `TunIo` never reads while the data thread or the workers run.
            raw: Vec::new(),
            last: Read::Empty,
            scratch: Vec::new(),
            slot: slot_len(mtu),
            out: (0..WRITE_SLOTS)
                .map(|_| Vec::with_capacity(OFFSET + gro::MAX_PACKET))
                .collect(),
            lens: vec![0; WRITE_SLOTS],
            pending: 0,
            gro: Gro::new(WRITE_SLOTS),
            single: Vec::with_capacity(OFFSET + usize::from(u16::MAX)),
        }
    }

    /// Allocates the read side once, before the first read.
    fn read_buffers(&mut self) {
        if self.raw.is_empty() {
            self.raw = vec![0u8; OFFSET + usize::from(u16::MAX)];
            self.scratch = vec![0u8; self.slot];
        }
    }

    /// The device, for another `TunIo` on it (`TunIo::share`).
    pub(super) fn device(&self) -> &Arc<AsyncDevice> {
        &self.dev
    }

    /// Waits for and reads one batch; returns how many packets [`Self::packet`] can give.
    pub async fn read(&mut self) -> io::Result<usize> {
        self.read_buffers();
        self.last = Read::Empty;
        let len = self.dev.recv(&mut self.raw).await?;
        self.parse(len)
    }

    /// Reads one batch now, without tokio (the data thread, `io::workers::data_thread`, which
    /// waits with `poll(2)` itself): `WouldBlock` when the device has nothing (its descriptor
    /// is non-blocking).
    pub fn read_now(&mut self) -> io::Result<usize> {
        // A plain `read(2)`, not `AsyncDevice`'s: tokio's readiness for the descriptor is the
        // node task's, which does not read it in this mode.
        self.read_buffers();
        self.last = Read::Empty;
        // SAFETY: `raw` is valid for writes of its length, and `dev` keeps the descriptor open.
        let n = unsafe {
            libc::read(
                self.as_raw_fd(),
                self.raw.as_mut_ptr().cast(),
                self.raw.len(),
            )
        };
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        self.parse(len)
    }

    /// Checks the read's `len` bytes; a malformed one is dropped with an error that carries no
    /// OS code (the callers count it and go on).
    fn parse(&mut self, len: usize) -> io::Result<usize> {
        let vnet = self.dev.tcp_gso();
        self.last = tso::parse(&mut self.raw[..len], vnet, self.slot)?;
        Ok(self.last.count())
    }

    /// Packet `i` of the last read (below what the read returned): where it was read, or split
    /// out of the super-packet into the scratch slot, which the next call reuses.
    pub fn packet(&mut self, i: usize) -> &[u8] {
        match self.last {
            Read::Single { start, len } if i == 0 => &self.raw[start..start + len],
            Read::Super(s) if i < self.last.count() => {
                let n = s.segment(&self.raw, i, &mut self.scratch);
                &self.scratch[..n]
            }
            _ => &[],
        }
    }

    /// A slot of `len` bytes for the next decrypted packet, or `None` when the batch is full
    /// (flush first). Its bytes are initialised but hold whatever the slot held before: the
    /// core overwrites what it returns.
    pub fn slot(&mut self, len: usize) -> Option<&mut [u8]> {
        let buf = self.out.get_mut(self.pending)?;
        let end = OFFSET + len;
        if buf.len() < end {
            // Only the first time a slot holds this many bytes; within the capacity reserved
            // in `new` for any datagram, so no allocation.
            buf.resize(end, 0);
        }
        Some(&mut buf[OFFSET..end])
    }

    /// Keeps `len` bytes starting `start` bytes into the slot [`Self::slot`] gave.
    pub fn commit(&mut self, start: usize, len: usize) {
        if let Some(buf) = self.out.get_mut(self.pending) {
            buf.copy_within(OFFSET + start..OFFSET + start + len, OFFSET);
            self.lens[self.pending] = len;
            self.pending += 1;
        }
    }

    /// Coalesces and writes the pending packets, one `write` per packet or super-packet. A
    /// failed write does not stop the batch (as tun-rs's `send_multiple`): the last error is
    /// returned, or at once if the device is gone.
    pub async fn flush(&mut self) -> io::Result<()> {
        let n = std::mem::take(&mut self.pending);
        if n == 0 {
            return Ok(());
        }
        let mut result = Ok(());
        let offloads = self.offloads();
        for (slot, bytes) in writes(&mut self.gro, &mut self.out[..n], &self.lens[..n], offloads) {
            note(&mut result, self.dev.send(&self.out[slot][bytes]).await)?;
        }
        result
    }

    /// tun-rs calls the virtio-net header mode "TCP GSO": with it, whether UDP segments can be
    /// coalesced too; `None` for a device opened without offloads (the kernel refused them).
    fn offloads(&self) -> Option<bool> {
        self.dev.tcp_gso().then(|| self.dev.udp_gso())
    }

    /// [`Self::flush`] without tokio, for the data thread. A TUN write does not wait for room
    /// (the device's socket buffer is unbounded on Linux), so a plain `write(2)` is enough.
    pub fn flush_now(&mut self) -> io::Result<()> {
        let n = std::mem::take(&mut self.pending);
        if n == 0 {
            return Ok(());
        }
        let fd = self.as_raw_fd();
        let mut result = Ok(());
        let offloads = self.offloads();
        for (slot, bytes) in writes(&mut self.gro, &mut self.out[..n], &self.lens[..n], offloads) {
            note(&mut result, write_fd(fd, &self.out[slot][bytes]))?;
        }
        result
    }

    /// The device's descriptor, for the data thread's `poll(2)`.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.dev.as_raw_fd()
    }

    /// Writes one packet now (packets from the stream relay and probing sockets, and what the
    /// data thread handed the node task). A plain `write(2)`, as [`Self::flush_now`]: a TUN
    /// write never waits for room on Linux, and with the data thread the node task's reactor
    /// no longer watches the descriptor (`io::workers::withdraw`). `async` like the other
    /// platforms' version.
    pub async fn write_one(&mut self, packet: &[u8]) -> io::Result<()> {
        let fd = self.as_raw_fd();
        if !self.dev.tcp_gso() {
            return write_fd(fd, packet).map(drop);
        }
        self.single.clear();
        // A zero virtio header: no offload, checksum already complete.
        self.single.resize(OFFSET, 0);
        self.single.extend_from_slice(packet);
        write_fd(fd, &self.single).map(drop)
    }
}

/// The writes that flush `out`'s pending packets (`lens` long, `OFFSET` bytes into each slot),
/// as (slot, byte range): with offloads (`Some(udp)`), GRO's packets and super-packets with
/// their virtio-net header; without, each packet bare and uncoalesced.
fn writes<'a>(
    gro: &'a mut Gro,
    out: &mut [Vec<u8>],
    lens: &'a [usize],
    offloads: Option<bool>,
) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + 'a {
    let bare = offloads.is_none().then(|| {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| (i, OFFSET..OFFSET + len))
    });
    let coalesced = offloads.map(|udp| gro.coalesce(out, lens, udp).map(|(slot, n)| (slot, 0..n)));
    bare.into_iter()
        .flatten()
        .chain(coalesced.into_iter().flatten())
}

/// One `write(2)` of `buf` to the device's descriptor.
fn write_fd(fd: std::os::fd::RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes and `fd` is the open device, which the
    // caller's `TunIo` keeps open.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Keeps a failed write's error in `result` and goes on, except when the device is gone
/// (EBADFD), which ends the batch.
fn note(result: &mut io::Result<()>, sent: io::Result<usize>) -> io::Result<()> {
    if let Err(e) = sent {
        if e.raw_os_error() == Some(libc::EBADFD) {
            return Err(e);
        }
        *result = Err(e);
    }
    Ok(())
}
