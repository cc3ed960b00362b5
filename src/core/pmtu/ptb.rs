//! ICMP "fragmentation needed" (RFC 792 destination unreachable, code 4, with the next-hop MTU of
//! RFC 1191 §4) for an IPv4 packet read from the TUN device that the peer's path cannot carry.
//! The node answers as the router on the far side of the TUN device would, so the sender's TCP
//! lowers its segment size (RFC 1191 §3) instead of retransmitting into a black hole.
//!
//! The message is written into a caller's buffer: nothing is allocated per packet.

use crate::core::icmp::checksum;
use std::net::Ipv4Addr;

const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const PROTO_ICMP: u8 = 1;
const DEST_UNREACHABLE: u8 = 3;
const FRAG_NEEDED: u8 = 4;
/// RFC 1812 §4.3.2.3: an ICMP error carries as much of the offending packet as fits in 576
/// bytes.
const MAX_ICMP_ERROR: usize = 576;

/// What to do with an IPv4 packet larger than the path MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooBig {
    /// An ICMP message of this many bytes is in the buffer, for the TUN device.
    Answer(usize),
    /// Drop it: no DF bit, a later fragment, an ICMP error itself (RFC 1122 §3.2.2: never an
    /// error about an error), or not a well-formed IPv4 header.
    Drop,
}

/// The header fields this module needs, if `packet` starts with a well-formed IPv4 header.
struct Header {
    ihl: usize,
    df: bool,
    offset: u16,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
}

fn header(packet: &[u8]) -> Option<Header> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < IPV4_HEADER || packet.len() < ihl {
        return None;
    }
    let flags = u16::from_be_bytes([packet[6], packet[7]]);
    Some(Header {
        ihl,
        df: flags & 0x4000 != 0,
        offset: flags & 0x1fff,
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        proto: packet[9],
    })
}

/// True when `packet` is an ICMP error message (which must never be answered with another).
fn is_icmp_error(h: &Header, packet: &[u8]) -> bool {
    if h.proto != PROTO_ICMP {
        return false;
    }
    // Echo reply/request, timestamp and information messages are queries; everything else is
    // an error (RFC 1122 §3.2.2). A packet too short to tell is treated as one.
    !matches!(packet.get(h.ihl), Some(0 | 8 | 13 | 14 | 15 | 16))
}

/// Writes into `out` the "fragmentation needed" answer to `packet`, from `packet`'s destination
/// (the peer's address: a message from a local address arriving on the TUN device would be a
/// martian the kernel drops) to its source, naming `mtu` as the next-hop MTU.
pub fn fragmentation_needed(packet: &[u8], mtu: u16, out: &mut [u8]) -> TooBig {
    let Some(h) = header(packet) else {
        return TooBig::Drop;
    };
    if !h.df || h.offset != 0 || is_icmp_error(&h, packet) {
        return TooBig::Drop;
    }
    let quoted = packet.len().min(MAX_ICMP_ERROR - IPV4_HEADER - ICMP_HEADER);
    let total = IPV4_HEADER + ICMP_HEADER + quoted;
    if out.len() < total {
        return TooBig::Drop;
    }
    let p = &mut out[..total];
    p[..IPV4_HEADER].fill(0);
    p[0] = 0x45;
    // ok: total <= 576
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = PROTO_ICMP;
    p[12..16].copy_from_slice(&h.dst.octets());
    p[16..20].copy_from_slice(&h.src.octets());
    let ip_sum = checksum(&p[..IPV4_HEADER]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let icmp = &mut p[IPV4_HEADER..];
    icmp[0] = DEST_UNREACHABLE;
    icmp[1] = FRAG_NEEDED;
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_HEADER..].copy_from_slice(&packet[..quoted]);
    let icmp_sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
    TooBig::Answer(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 packet of `len` bytes from 10.77.0.1 to 10.77.0.2.
    fn tcp_packet(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 1]);
        p[16..20].copy_from_slice(&[10, 77, 0, 2]);
        let sum = checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p[20..22].copy_from_slice(&443u16.to_be_bytes());
        p
    }

    #[test]
    fn a_df_packet_gets_fragmentation_needed_with_the_mtu() {
        let packet = tcp_packet(1400, true);
        let mut out = [0u8; 1500];
        let TooBig::Answer(n) = fragmentation_needed(&packet, 1232, &mut out) else {
            panic!("no answer");
        };
        let m = &out[..n];
        assert_eq!(n, 576, "as much of the packet as fits in 576 bytes");
        assert_eq!(checksum(&m[..20]), 0, "IP header checksum");
        assert_eq!(checksum(&m[20..]), 0, "ICMP checksum");
        assert_eq!(&m[12..16], &[10, 77, 0, 2], "from the peer's address");
        assert_eq!(&m[16..20], &[10, 77, 0, 1], "to the sender");
        assert_eq!((m[20], m[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([m[26], m[27]]), 1232);
        assert_eq!(&m[28..48], &packet[..20], "the offending header is quoted");
        assert_eq!(&m[48..50], &443u16.to_be_bytes(), "and its ports");
    }

    #[test]
    fn no_answer_without_df_for_fragments_errors_or_garbage() {
        let mut out = [0u8; 1500];
        assert_eq!(
            fragmentation_needed(&tcp_packet(1400, false), 1232, &mut out),
            TooBig::Drop
        );
        let mut fragment = tcp_packet(1400, true);
        fragment[7] = 1;
        assert_eq!(
            fragmentation_needed(&fragment, 1232, &mut out),
            TooBig::Drop
        );
        let mut icmp_error = tcp_packet(1400, true);
        icmp_error[9] = 1;
        icmp_error[20] = 3;
        assert_eq!(
            fragmentation_needed(&icmp_error, 1232, &mut out),
            TooBig::Drop
        );
        let mut echo = icmp_error.clone();
        echo[20] = 8;
        assert!(matches!(
            fragmentation_needed(&echo, 1232, &mut out),
            TooBig::Answer(_)
        ));
        assert_eq!(
            fragmentation_needed(&[0x60; 40], 1232, &mut out),
            TooBig::Drop
        );
        assert_eq!(fragmentation_needed(&[], 1232, &mut out), TooBig::Drop);
        assert_eq!(
            fragmentation_needed(&tcp_packet(1400, true), 1232, &mut [0u8; 100]),
            TooBig::Drop
        );
    }

    proptest::proptest! {
        /// Whatever a local program writes to the TUN device: no panic, and any answer is a
        /// well-formed ICMP error of at most 576 bytes with both checksums valid.
        #[test]
        fn any_bytes_get_a_valid_answer_or_none(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            mtu in 576u16..1500,
        ) {
            let mut out = [0u8; 1600];
            if let TooBig::Answer(n) = fragmentation_needed(&bytes, mtu, &mut out) {
                proptest::prop_assert!(n <= MAX_ICMP_ERROR);
                proptest::prop_assert_eq!(checksum(&out[..20]), 0);
                proptest::prop_assert_eq!(checksum(&out[20..n]), 0);
                proptest::prop_assert_eq!((out[20], out[21]), (3, 4));
            }
        }
    }
}
