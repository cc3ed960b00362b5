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

/// Packets sealed per batch (`io::dataplane::TxBatch`'s room): tun-rs's IDEAL_BATCH_SIZE on
/// Linux, what a 64 KiB super-packet at an MSS of 512 splits into. A read that gives more is
/// sealed in parts (`parts`).
pub const BATCH: usize = 128;

/// The packets `0..n` of one read in parts of at most `BATCH`, the room of one sealed batch: a
/// super-packet of a flow with a small MSS splits into more (TCP's smallest MSS, 88 bytes, makes
/// up to 745 of 64 KiB), and each part is sealed and sent before the next.
pub fn parts(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n)
        .step_by(BATCH)
        .map(move |start| start..n.min(start + BATCH))
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_of_more_packets_than_a_batch_holds_is_sealed_in_parts() {
        let parts = |n| super::parts(n).collect::<Vec<_>>();
        assert!(parts(0).is_empty());
        assert_eq!(parts(1), vec![0..1]);
        assert_eq!(parts(128), vec![0..128]);
        assert_eq!(
            parts(745),
            vec![0..128, 128..256, 256..384, 384..512, 512..640, 640..745]
        );
    }
}
