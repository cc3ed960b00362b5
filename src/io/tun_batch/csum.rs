//! The Internet checksum (RFC 1071) as the TUN batch code needs it: GRO verifies and rewrites
//! transport checksums (`gro`), the TSO split computes each packet's (`tso`).

/// The ones' complement sum of `data` as big-endian 16-bit words (RFC 1071), folded to 16
/// bits (so sums can be added and folded again). Adds native 64-bit words with end-around
/// carry and swaps the bytes of the result, which RFC 1071 section 2(B) shows is the same
/// sum: 8 bytes per addition, where this runs once per segment.
pub(super) fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut add = |w: [u8; 8]| {
        let (s, carry) = acc.overflowing_add(u64::from_ne_bytes(w));
        acc = s + u64::from(carry);
    };
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        add(b);
    }
    // The tail padded with zeros: an odd last byte is the high byte of its word.
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    add(tail);
    let folded = fold(acc);
    u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    })
}

/// The unfolded pseudo-header sum of IP packet `pkt` (IPv6 if `v6`): its addresses, the
/// transport protocol and the transport length (RFC 9293 section 3.1, RFC 768; RFC 8200
/// section 8.1).
pub(super) fn pseudo(pkt: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    let addrs = if v6 { &pkt[8..40] } else { &pkt[12..20] };
    sum(addrs) + u64::from(proto) + l4_len as u64
}

/// Folds an unfolded sum to 16 bits with end-around carry.
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}
