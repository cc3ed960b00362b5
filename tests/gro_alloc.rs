//! No allocation per packet on the TUN write path: a counting global allocator watches the
//! write-path GRO (`io::tun_batch::gro`) coalescing batches of a steady TCP stream, filled into
//! preallocated slots as the driver does, after a warm-up, and the count must be zero. The
//! same batches through tun-rs's `GROTable` (what the driver used before) do allocate.

use p2pvpn::io::tun_batch::gro::{Gro, HDR_LEN, MAX_PACKET};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;
#[allow(dead_code)]
#[path = "support/packets.rs"]
mod packets;
use packets::{segment, PAYLOAD};

/// Packets per write batch, as the driver's WRITE_SLOTS.
const SLOTS: usize = 32;

/// Allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = allocations();
    f();
    allocations() - before
}

/// One batch of the stream: copies `SLOTS` segments into the slots as the driver's
/// `slot`/`commit` do (growing a slot's initialised length only the first time).
fn fill(slots: &mut [Vec<u8>], lens: &mut [usize], stream: &[Vec<u8>], batch: usize) {
    for (i, (slot, len)) in slots.iter_mut().zip(lens.iter_mut()).enumerate() {
        let pkt = &stream[(batch * SLOTS + i) % stream.len()];
        let end = HDR_LEN + pkt.len();
        if slot.len() < end {
            slot.resize(end, 0);
        }
        slot[HDR_LEN..end].copy_from_slice(pkt);
        *len = pkt.len();
    }
}

#[test]
fn coalescing_a_steady_tcp_stream_allocates_nothing() {
    // Whole batches of in-order segments: each batch is one run.
    let stream: Vec<Vec<u8>> = (0..SLOTS * 4)
        .map(|k| segment((k % SLOTS * PAYLOAD) as u32))
        .collect();
    let mut slots: Vec<Vec<u8>> = (0..SLOTS)
        .map(|_| Vec::with_capacity(HDR_LEN + MAX_PACKET))
        .collect();
    let mut lens = vec![0usize; SLOTS];
    let mut gro = Gro::new(SLOTS);
    let mut batch = |slots: &mut Vec<Vec<u8>>, lens: &mut Vec<usize>, b: usize| -> (usize, usize) {
        fill(slots, lens, &stream, b);
        gro.coalesce(slots, lens, true)
            .fold((0, 0), |(n, bytes), (_, len)| (n + 1, bytes + len))
    };
    for b in 0..10 {
        batch(&mut slots, &mut lens, b);
    }
    let mut writes = (0, 0);
    let n = allocations_in(|| {
        for b in 0..1000 {
            let (w, bytes) = batch(&mut slots, &mut lens, b);
            writes = (writes.0 + w, writes.1 + bytes);
        }
    });
    assert_eq!(n, 0, "allocations while coalescing 32000 packets");
    assert_eq!(
        writes.0, 1000,
        "each batch of 32 segments is one super-packet"
    );
    assert_eq!(writes.1, 1000 * (HDR_LEN + 40 + SLOTS * PAYLOAD));
}

/// The counter sees what the driver did before: tun-rs's GRO copies every packet into a new
/// `Vec` (its `tcp_gro`), so the assertion above could fail.
#[cfg(target_os = "linux")]
#[test]
fn tun_rs_gro_allocates_per_packet() {
    let stream: Vec<Vec<u8>> = (0..SLOTS).map(|k| segment((k * PAYLOAD) as u32)).collect();
    let mut slots: Vec<Vec<u8>> = (0..SLOTS)
        .map(|_| Vec::with_capacity(HDR_LEN + MAX_PACKET))
        .collect();
    let mut lens = vec![0usize; SLOTS];
    let mut table = tun_rs::GROTable::default();
    let mut batch = |slots: &mut Vec<Vec<u8>>| {
        fill(slots, &mut lens, &stream, 0);
        for (slot, len) in slots.iter_mut().zip(&lens) {
            slot.truncate(HDR_LEN + len);
        }
        table
            .apply_gro(slots, HDR_LEN, false)
            .map_err(|e| e.to_string())
    };
    for _ in 0..10 {
        assert_eq!(batch(&mut slots), Ok(()));
    }
    let n = allocations_in(|| {
        for _ in 0..10 {
            assert_eq!(batch(&mut slots), Ok(()));
        }
    });
    assert!(n >= 10 * SLOTS, "{n} allocations for 10 batches of {SLOTS}");
}
