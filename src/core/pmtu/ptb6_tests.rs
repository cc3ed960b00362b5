use super::*;
use crate::core::icmp::checksum;
use proptest::prelude::*;

const ALICE: &str = "fd12:3456:789a::a4d:1";
const BOB: &str = "fd12:3456:789a::a4d:2";

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An IPv6 packet of `len` bytes (fixed header only) from alice to bob with next header `next`.
fn packet(len: usize, next: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&addr(ALICE).octets());
    p[24..40].copy_from_slice(&addr(BOB).octets());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// The ICMPv6 checksum check, built the slow way: the pseudo-header (RFC 8200 §8.1) in a
/// buffer, then RFC 1071 over it and the message. 0 when it verifies.
fn verify(m: &[u8]) -> u16 {
    let body = &m[40..];
    let mut b = Vec::new();
    b.extend_from_slice(&m[8..40]);
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 58]);
    b.extend_from_slice(body);
    checksum(&b)
}

#[test]
fn an_oversized_packet_gets_packet_too_big_with_the_mtu() {
    let p = packet(1400, 17);
    let mut out = [0u8; 1500];
    let TooBig::Answer(n) = packet_too_big(&p, 1300, &mut out) else {
        panic!("no answer");
    };
    let m = &out[..n];
    assert_eq!(n, 1280, "as much of the packet as fits in 1280 bytes");
    assert_eq!(m[0] >> 4, 6);
    assert_eq!(usize::from(u16::from_be_bytes([m[4], m[5]])), n - 40);
    assert_eq!(m[6], 58, "ICMPv6");
    assert_eq!(&m[8..24], &addr(BOB).octets(), "from the peer's address");
    assert_eq!(&m[24..40], &addr(ALICE).octets(), "to the sender");
    assert_eq!((m[40], m[41]), (2, 0), "Packet Too Big");
    assert_eq!(u32::from_be_bytes([m[44], m[45], m[46], m[47]]), 1300);
    assert_eq!(&m[48..], &p[..1232], "the invoking packet is quoted");
    assert_eq!(verify(m), 0, "ICMPv6 checksum with the pseudo-header");
}

#[test]
fn a_small_invoking_packet_is_quoted_whole_and_an_mtu_below_1280_is_raised() {
    let p = packet(301, 6);
    let mut out = [0u8; 1500];
    let TooBig::Answer(n) = packet_too_big(&p, 1000, &mut out) else {
        panic!("no answer");
    };
    assert_eq!(n, 48 + 301);
    assert_eq!(&out[48..n], &p[..], "odd length quoted whole");
    assert_eq!(
        u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
        1280
    );
    assert_eq!(verify(&out[..n]), 0);
}

#[test]
fn never_about_an_icmpv6_error_nor_to_an_unspecified_or_multicast_source() {
    let mut out = [0u8; 1500];
    for error_type in [1u8, 2, 3, 4, 127] {
        let mut p = packet(1400, 58);
        p[40] = error_type;
        assert_eq!(packet_too_big(&p, 1300, &mut out), TooBig::Drop);
    }
    // An echo request (128) is a query: answered.
    let mut echo = packet(1400, 58);
    echo[40] = 128;
    assert!(matches!(
        packet_too_big(&echo, 1300, &mut out),
        TooBig::Answer(_)
    ));
    // An error behind a destination options header (8 bytes) and a first fragment.
    let mut behind = packet(1400, 60);
    behind[40] = 44;
    behind[41] = 0;
    behind[48] = 58; // fragment header: next header, offset 0
    behind[50..52].fill(0);
    behind[56] = 1; // destination unreachable
    assert_eq!(packet_too_big(&behind, 1300, &mut out), TooBig::Drop);
    behind[56] = 128;
    assert!(matches!(
        packet_too_big(&behind, 1300, &mut out),
        TooBig::Answer(_)
    ));
    // A later fragment carries no upper-layer header: answered.
    behind[56] = 1;
    behind[51] = 0x08;
    assert!(matches!(
        packet_too_big(&behind, 1300, &mut out),
        TooBig::Answer(_)
    ));
    // ICMPv6 with no room for a type: may be an error.
    assert_eq!(
        packet_too_big(&packet(40, 58), 1300, &mut out),
        TooBig::Drop
    );
    let mut unspecified = packet(1400, 17);
    unspecified[8..24].fill(0);
    assert_eq!(packet_too_big(&unspecified, 1300, &mut out), TooBig::Drop);
    let mut multicast = packet(1400, 17);
    multicast[8] = 0xff;
    assert_eq!(packet_too_big(&multicast, 1300, &mut out), TooBig::Drop);
    // Not IPv6, truncated, or no room for the answer.
    assert_eq!(packet_too_big(&[0x45; 1400], 1300, &mut out), TooBig::Drop);
    assert_eq!(packet_too_big(&[0x60; 39], 1300, &mut out), TooBig::Drop);
    assert_eq!(
        packet_too_big(&packet(1400, 17), 1300, &mut [0u8; 1279]),
        TooBig::Drop
    );
}

proptest! {
    /// Whatever a local program writes to the TUN device: no panic, and any answer is a
    /// Packet Too Big of at most 1280 bytes with a valid checksum, never about an ICMPv6 error.
    #[test]
    fn any_bytes_get_a_valid_answer_or_none(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..1600),
        v6 in any::<bool>(),
        mtu in any::<u16>(),
    ) {
        if v6 && !bytes.is_empty() {
            bytes[0] = 0x60 | (bytes[0] & 0x0f);
        }
        let mut out = [0u8; 1600];
        if let TooBig::Answer(n) = packet_too_big(&bytes, mtu, &mut out) {
            prop_assert!(n <= 1280);
            prop_assert_eq!(verify(&out[..n]), 0);
            prop_assert_eq!((out[6], out[40], out[41]), (58, 2, 0));
            let said = u32::from_be_bytes([out[44], out[45], out[46], out[47]]);
            prop_assert_eq!(said, u32::from(mtu.max(1280)));
            prop_assert!(!(bytes[6] == 58 && bytes.get(40).is_none_or(|&t| t < 128)));
        }
    }
}
