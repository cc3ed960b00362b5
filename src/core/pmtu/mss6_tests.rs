//! MSS clamping on IPv6 SYNs: the TCP checksum, checked over the IPv6 pseudo-header (RFC 8200
//! §8.1) built independently, still verifies after the incremental update.

use super::*;
use crate::core::icmp::checksum;
use proptest::prelude::*;

/// The TCP checksum over the IPv6 pseudo-header; 0 when it verifies.
fn tcp6_sum(p: &[u8]) -> u16 {
    let seg = &p[IPV6_HEADER..];
    let mut b = Vec::new();
    b.extend_from_slice(&p[8..40]);
    b.extend_from_slice(&(seg.len() as u32).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, PROTO_TCP]);
    b.extend_from_slice(seg);
    checksum(&b)
}

/// A TCP/IPv6 segment from fd12:3456:789a::a4d:1 port 40000 to ...:a4d:2 port 22 with
/// `options` (padded to 4 bytes), `flags`, `payload` bytes and a valid checksum.
fn syn6(options: &[u8], flags: u8, payload: usize) -> Vec<u8> {
    let mut opts = options.to_vec();
    while opts.len() % 4 != 0 {
        opts.push(OPT_END);
    }
    let tcp_len = TCP_HEADER + opts.len();
    let mut p = vec![0u8; IPV6_HEADER + tcp_len + payload];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((tcp_len + payload) as u16).to_be_bytes());
    p[6] = PROTO_TCP;
    p[7] = 64;
    let a: std::net::Ipv6Addr = "fd12:3456:789a::a4d:1".parse().unwrap();
    let b: std::net::Ipv6Addr = "fd12:3456:789a::a4d:2".parse().unwrap();
    p[8..24].copy_from_slice(&a.octets());
    p[24..40].copy_from_slice(&b.octets());
    let t = &mut p[IPV6_HEADER..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&22u16.to_be_bytes());
    t[4..8].copy_from_slice(&[1, 2, 3, 4]);
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64800u16.to_be_bytes());
    t[TCP_HEADER..tcp_len].copy_from_slice(&opts);
    for (i, b) in t[tcp_len..].iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    let sum = tcp6_sum(&p);
    p[IPV6_HEADER + 16..IPV6_HEADER + 18].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(tcp6_sum(&p), 0);
    p
}

fn mss6_of(p: &[u8]) -> Option<u16> {
    let opts = &p[IPV6_HEADER + TCP_HEADER..];
    let i = opts.windows(2).position(|w| w == [OPT_MSS, 4])?;
    Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]))
}

#[test]
fn an_ipv6_syn_is_clamped_to_the_path_mtu_less_60_and_still_verifies() {
    // Linux's IPv6 SYN options: MSS 1440, SACK permitted, timestamps, NOP, window scale.
    let mut p = syn6(
        &[
            2, 4, 0x05, 0xa0, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
        SYN,
        0,
    );
    assert_eq!(tcp_syn_offset(&p), Some(IPV6_HEADER));
    let max = max_mss(&p, 1340);
    assert_eq!(max, 1280, "1340 - 40 (IPv6) - 20 (TCP)");
    assert!(clamp_mss(&mut p, max));
    assert_eq!(mss6_of(&p), Some(1280));
    assert_eq!(tcp6_sum(&p), 0);
    // A SYN-ACK too, and an odd offset.
    let mut ack = syn6(&[1, 2, 4, 0x23, 0x28], SYN | 0x10, 0);
    assert!(clamp_mss(&mut ack, 1000));
    assert_eq!(tcp6_sum(&ack), 0);
}

#[test]
fn the_headers_subtracted_follow_the_family() {
    assert_eq!(max_mss(&[0x60], 1400), 1340);
    assert_eq!(max_mss(&[0x45], 1400), 1360);
    // Below the IPv6 minimum MTU the clamp still follows the path.
    assert_eq!(max_mss(&[0x60], 1220), 1160);
    assert_eq!(max_mss(&[0x60], 30), 0);
}

#[test]
fn ipv6_behind_extension_headers_non_syn_and_garbage_are_left_alone() {
    let mut behind = syn6(&[2, 4, 0x05, 0xa0], SYN, 0);
    behind[6] = 60; // destination options first: not looked into
    let before = behind.clone();
    assert!(!clamp_mss(&mut behind, 1000));
    assert_eq!(behind, before);
    let mut ack = syn6(&[2, 4, 0x05, 0xa0], 0x10, 50);
    assert!(!clamp_mss(&mut ack, 1000));
    let mut small = syn6(&[2, 4, 0x03, 0x00], SYN, 0);
    assert!(!clamp_mss(&mut small, 1000));
    assert!(!clamp_mss(&mut [0x60; 59], 1000));
    assert!(!clamp_mss(&mut [0x60; 3], 1000));
    assert!(!clamp_mss(&mut [0x60], 1000));
}

proptest! {
    /// Wherever the MSS option sits, the clamped IPv6 SYN carries the new MSS, a checksum that
    /// verifies over the pseudo-header, and no other change.
    #[test]
    fn clamping_ipv6_keeps_the_checksum_valid(
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
        let mut p = syn6(&opts, flags, payload);
        let before = p.clone();
        prop_assert_eq!(clamp_mss(&mut p, max), mss > max);
        prop_assert_eq!(tcp6_sum(&p), 0);
        let at = IPV6_HEADER + TCP_HEADER + nops + 2;
        prop_assert_eq!(u16::from_be_bytes([p[at], p[at + 1]]), mss.min(max));
        let sum_at = IPV6_HEADER + 16;
        for (i, (a, b)) in p.iter().zip(&before).enumerate() {
            if !(at..at + 2).contains(&i) && !(sum_at..sum_at + 2).contains(&i) {
                prop_assert_eq!(a, b, "byte {} changed", i);
            }
        }
    }

    #[test]
    fn clamping_arbitrary_ipv6_bytes_never_panics(
        mut bytes in prop::collection::vec(any::<u8>(), 0..140),
    ) {
        if let Some(b) = bytes.first_mut() {
            *b = 0x60 | (*b & 0x0f);
        }
        if let Some(n) = bytes.get_mut(6) {
            *n = PROTO_TCP;
        }
        let _ = clamp_mss(&mut bytes, 1000);
        let _ = max_mss(&bytes, 1000);
    }
}
