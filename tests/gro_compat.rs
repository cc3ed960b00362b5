//! The write-path GRO (`io::tun_batch::gro`) writes byte for byte what tun-rs's `GROTable`
//! (the code it replaces, which the kernel is known to accept) writes for the same batches:
//! an in-order TCP stream, the same with gaps and a PSH, and UDP datagrams with USO.
#![cfg(target_os = "linux")]

use p2pvpn::io::tun_batch::gro::{Gro, HDR_LEN, MAX_PACKET};

#[path = "support/packets.rs"]
mod packets;
use packets::{datagram, seal_tcp, segment, PAYLOAD};

/// Slots as the driver holds them: header room, then the packet, 64 KiB capacity.
fn slots(batch: &[Vec<u8>]) -> Vec<Vec<u8>> {
    batch
        .iter()
        .map(|p| {
            let mut s = Vec::with_capacity(HDR_LEN + MAX_PACKET);
            s.resize(HDR_LEN, 0);
            s.extend_from_slice(p);
            s
        })
        .collect()
}

fn ours(batch: &[Vec<u8>], udp: bool) -> Vec<Vec<u8>> {
    let mut bufs = slots(batch);
    let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
    let mut gro = Gro::new(batch.len());
    let writes: Vec<(usize, usize)> = gro.coalesce(&mut bufs, &lens, udp).collect();
    writes.iter().map(|&(i, n)| bufs[i][..n].to_vec()).collect()
}

fn tun_rs(batch: &[Vec<u8>], udp: bool) -> Vec<Vec<u8>> {
    let mut bufs = slots(batch);
    let mut table = tun_rs::GROTable::default();
    table
        .apply_gro(&mut bufs, HDR_LEN, udp)
        .unwrap_or_else(|e| panic!("tun-rs GRO: {e}"));
    // tun-rs keeps the writes' order in a private list: a written buffer is one with a
    // packet still at its start (a coalesced one was appended elsewhere), so take every
    // head in order, as `send_multiple` would (in-order batches keep heads in order).
    let mut heads = Vec::new();
    let mut covered = 0;
    for b in &bufs {
        let len = b.len() - HDR_LEN;
        if covered > 0 {
            covered -= 1;
            continue;
        }
        let segments = if b[1] == 0 {
            1
        } else {
            let h = usize::from(u16::from_ne_bytes([b[2], b[3]]));
            let g = usize::from(u16::from_ne_bytes([b[4], b[5]]));
            (len - h).div_ceil(g)
        };
        covered = segments - 1;
        heads.push(b.clone());
    }
    heads
}

fn tcp_stream(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|k| segment((k * PAYLOAD) as u32)).collect()
}

#[test]
fn an_in_order_tcp_batch_is_written_as_tun_rs_writes_it() {
    let batch = tcp_stream(32);
    let a = ours(&batch, false);
    assert_eq!(a.len(), 1);
    assert_eq!(a, tun_rs(&batch, false));
}

#[test]
fn a_tcp_batch_with_gaps_and_a_push_is_written_as_tun_rs_writes_it() {
    let mut batch = tcp_stream(20);
    batch.remove(7);
    batch.remove(12);
    // PSH on segment 4 (index 4).
    batch[4][33] |= 0x08;
    seal_tcp(&mut batch[4]);
    let a = ours(&batch, false);
    assert_eq!(a.len(), 4, "runs 0-4 (PSH), 5-6, 8-12, 14-19");
    assert_eq!(a, tun_rs(&batch, false));
}

#[test]
fn a_udp_batch_with_uso_is_written_as_tun_rs_writes_it() {
    let batch: Vec<Vec<u8>> = (0..16).map(datagram).collect();
    let a = ours(&batch, true);
    assert_eq!(a.len(), 1);
    assert_eq!(a, tun_rs(&batch, true));
}
