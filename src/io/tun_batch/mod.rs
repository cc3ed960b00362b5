//! The TUN device moved in batches. On Linux the device runs with virtio-net headers and
//! TSO/USO offloads (tun-rs `offload`): one read returns a TCP or UDP super-packet of up to
//! 64 KiB that is split here into MTU-sized packets, and packets written back are coalesced
//! (TCP and UDP GRO, our allocation-free `gro`) into super-packets, so the kernel's TCP stack works in
//! 64 KiB units on both ends of the tunnel. Elsewhere (macOS utun, Windows wintun) a batch is
//! one packet and the same interface keeps the driver OS-independent.
//!
//! Buffers are allocated once, sized from the MTU; no call here allocates per packet.

mod csum;
pub mod gro;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod tso;
#[cfg(target_os = "linux")]
pub use linux::TunIo;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub use other::TunIo;

/// Packets one read may give: tun-rs's IDEAL_BATCH_SIZE on Linux (a 64 KiB super-packet split at
/// an MSS of 512 fits), and the room of the sealed batch (`io::dataplane::TxBatch`).
pub const BATCH: usize = 128;

/// Bytes a decrypted packet may need in a write slot; the MTU bounds what peers may send us,
/// with room for the largest MTU the config accepts.
fn slot_len(mtu: u16) -> usize {
    usize::from(mtu).max(1500) + 64
}

impl TunIo {
    /// Another `TunIo` on the same device, with its own buffers: the TX worker reads through
    /// one, the RX worker writes through another, and the node task keeps the first for its
    /// single writes (`io::workers`). Reads and writes of a TUN file descriptor are independent
    /// system calls, safe from several threads.
    pub fn share(&self, mtu: u16) -> TunIo {
        TunIo::new(self.device().clone(), mtu)
    }
}
