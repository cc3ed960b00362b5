use super::*;
use crate::core::icmp::checksum;
use proptest::prelude::*;

/// The TCP checksum over the IPv4 pseudo-header (RFC 9293 §3.1); 0 when it verifies.
fn tcp_sum(packet: &[u8]) -> u16 {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let seg = &packet[ihl..];
    let mut buf = Vec::new();
    buf.extend_from_slice(&packet[12..20]);
    buf.extend_from_slice(&[0, PROTO_TCP]);
    buf.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    buf.extend_from_slice(seg);
    checksum(&buf)
}

/// A SYN from 10.77.0.1:40000 to 10.77.0.2:22 with `options` (padded to 4 bytes), a valid TCP
/// checksum and `payload` bytes of data.
fn syn(options: &[u8], flags: u8, payload: usize) -> Vec<u8> {
    let mut opts = options.to_vec();
    while opts.len() % 4 != 0 {
        opts.push(OPT_END);
    }
    let tcp_len = TCP_HEADER + opts.len();
    let total = IPV4_HEADER + tcp_len + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = PROTO_TCP;
    p[12..16].copy_from_slice(&[10, 77, 0, 1]);
    p[16..20].copy_from_slice(&[10, 77, 0, 2]);
    let t = &mut p[IPV4_HEADER..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&22u16.to_be_bytes());
    t[4..8].copy_from_slice(&[1, 2, 3, 4]);
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t[TCP_HEADER..tcp_len].copy_from_slice(&opts);
    for (i, b) in t[tcp_len..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let sum = tcp_sum(&p);
    p[IPV4_HEADER + 16..IPV4_HEADER + 18].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(tcp_sum(&p), 0);
    p
}

fn mss_of(p: &[u8]) -> Option<u16> {
    let opts = &p[IPV4_HEADER + TCP_HEADER..];
    let i = opts.windows(2).position(|w| w == [OPT_MSS, 4])?;
    Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]))
}

#[test]
fn a_syn_is_clamped_and_its_checksum_still_verifies() {
    // Linux's usual SYN options: MSS, SACK permitted, timestamps, NOP, window scale.
    let mut p = syn(
        &[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
        SYN,
        0,
    );
    assert!(clamp_mss(&mut p, 1184));
    assert_eq!(mss_of(&p), Some(1184));
    assert_eq!(tcp_sum(&p), 0);
}

#[test]
fn a_syn_ack_is_clamped_too_and_an_odd_offset_works() {
    // NOP first puts the MSS value at an odd offset in the segment.
    let mut p = syn(&[1, 2, 4, 0x23, 0x28], SYN | 0x10, 0);
    assert!(clamp_mss(&mut p, 1000));
    assert_eq!(tcp_sum(&p), 0);
    let opts = &p[IPV4_HEADER + TCP_HEADER..];
    assert_eq!(u16::from_be_bytes([opts[3], opts[4]]), 1000);
}

#[test]
fn small_mss_non_syn_and_garbage_are_left_alone() {
    let mut small = syn(&[2, 4, 0x03, 0x00], SYN, 0);
    let before = small.clone();
    assert!(!clamp_mss(&mut small, 1184));
    assert_eq!(small, before);
    let mut ack = syn(&[2, 4, 0x05, 0xb4], 0x10, 100);
    assert!(!clamp_mss(&mut ack, 1184));
    let mut no_option = syn(&[], SYN, 0);
    assert!(!clamp_mss(&mut no_option, 1184));
    // An option claiming to run past the header.
    let mut bad = syn(&[8, 40, 0, 0], SYN, 0);
    assert!(!clamp_mss(&mut bad, 1184));
    let mut zero_len = syn(&[3, 0, 0, 0], SYN, 0);
    assert!(!clamp_mss(&mut zero_len, 1184));
    assert!(!clamp_mss(&mut [0x45; 30], 1184));
    assert!(!clamp_mss(&mut [], 1184));
}

proptest! {
    /// Wherever the MSS option sits among other options, the clamped packet carries the new MSS
    /// and a TCP checksum that verifies, and nothing else changed.
    #[test]
    fn clamping_keeps_the_checksum_valid(
        nops in 0usize..6,
        mss in 0u16..=u16::MAX,
        max in 500u16..9000,
        payload in 0usize..64,
        flags in prop::sample::select(vec![SYN, SYN | 0x10]),
    ) {
        let mut opts = vec![OPT_NOP; nops];
        opts.extend_from_slice(&[OPT_MSS, 4]);
        opts.extend_from_slice(&mss.to_be_bytes());
        opts.extend_from_slice(&[4, 2]);
        let mut p = syn(&opts, flags, payload);
        let before = p.clone();
        let changed = clamp_mss(&mut p, max);
        prop_assert_eq!(changed, mss > max);
        prop_assert_eq!(tcp_sum(&p), 0);
        let at = IPV4_HEADER + TCP_HEADER + nops + 2;
        prop_assert_eq!(u16::from_be_bytes([p[at], p[at + 1]]), mss.min(max));
        for (i, (a, b)) in p.iter().zip(&before).enumerate() {
            if !(at..at + 2).contains(&i) && !(36..38).contains(&i) {
                prop_assert_eq!(a, b, "byte {} changed", i);
            }
        }
    }

    #[test]
    fn clamping_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let mut b = bytes;
        let _ = clamp_mss(&mut b, 1000);
    }
}
