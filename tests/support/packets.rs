//! IPv4 TCP and UDP packets with valid checksums for the write-path GRO tests
//! (`tests/gro_alloc.rs`, `tests/gro_compat.rs`).

/// Payload bytes of each packet.
pub const PAYLOAD: usize = 1380;

fn sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// An IPv4 ACK segment of `PAYLOAD` bytes at sequence number `seq`, checksums valid.
pub fn segment(seq: u32) -> Vec<u8> {
    let total = 40 + PAYLOAD;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 99, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 2]);
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5201u16.to_be_bytes());
    p[22..24].copy_from_slice(&40000u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&1u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    seal_tcp(&mut p);
    p
}

/// Recomputes the TCP checksum of an IPv4 packet without options (after an edit).
pub fn seal_tcp(p: &mut [u8]) {
    p[36..38].fill(0);
    let pseudo = sum(&p[12..20]) + 6 + (p.len() - 20) as u64;
    let c = !fold(pseudo + sum(&p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 UDP datagram of `PAYLOAD` bytes with IPv4 ID `id`, checksums valid.
pub fn datagram(id: u16) -> Vec<u8> {
    let total = 28 + PAYLOAD;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 99, 0, 1]);
    p[16..20].copy_from_slice(&[10, 99, 0, 2]);
    let c = !fold(sum(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&5201u16.to_be_bytes());
    p[22..24].copy_from_slice(&40000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (usize::from(id) + i) as u8;
    }
    let pseudo = sum(&p[12..20]) + 17 + (total - 20) as u64;
    let c = !fold(pseudo + sum(&p[20..]));
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}
