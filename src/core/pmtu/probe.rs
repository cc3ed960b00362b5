//! The probe packet: an ICMP echo request (RFC 792) from this node's virtual address to the
//! peer's, padded to the size being probed and sent with DF through the peer's WireGuard session.
//! A peer with this code answers it itself with an echo reply of the same size
//! (`is_request`, `answer_in_place`); an older peer's kernel answers it the same way. Both the
//! probe and its answer are authenticated by the session and take the data's path (RFC 8899
//! §4.1, §6: padded probes on the path, acknowledged). An answer of the wrong size does not
//! count.

use crate::core::icmp::{checksum, parse_echo, EchoKind};
use std::net::Ipv4Addr;

/// The echo identifier of path MTU probes (the `p2pvpn ping` one is 0x7032).
pub const PROBE_ID: u16 = 0x706d;
const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
/// The smallest probe: the headers and a recognisable marker.
const MARKER: &[u8] = b"p2pvpn pmtu probe";
pub const MIN_PROBE: usize = IPV4_HEADER + ICMP_HEADER + MARKER.len();

/// Writes a probe of `size` bytes into `out` and returns it, or `None` if `out` is too small or
/// `size` below MIN_PROBE.
pub fn write_probe(
    out: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    seq: u16,
    size: u16,
) -> Option<&[u8]> {
    let size = usize::from(size);
    if size < MIN_PROBE || out.len() < size {
        return None;
    }
    let p = &mut out[..size];
    p.fill(0);
    p[0] = 0x45;
    // ok: size came from a u16
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    // DF: the probe must not be fragmented on its way (RFC 8899 §3, requirement 5).
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ip_sum = checksum(&p[..IPV4_HEADER]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let icmp = &mut p[IPV4_HEADER..];
    icmp[0] = 8;
    icmp[4..6].copy_from_slice(&PROBE_ID.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[ICMP_HEADER..ICMP_HEADER + MARKER.len()].copy_from_slice(MARKER);
    let icmp_sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
    Some(p)
}

/// If `packet` (decrypted, from the peer at `from`) answers one of our probes: its sequence
/// number and size.
pub fn parse_answer(packet: &[u8], from: Ipv4Addr) -> Option<(u16, u16)> {
    // The cheap checks first: this runs on every received packet.
    if packet.len() < MIN_PROBE || packet.get(9) != Some(&1) {
        return None;
    }
    let echo = parse_echo(packet)?;
    if echo.kind != EchoKind::Reply || echo.id != PROBE_ID || echo.src != from {
        return None;
    }
    let size = u16::try_from(packet.len()).ok()?;
    let total = u16::from_be_bytes([packet[2], packet[3]]);
    (total == size).then_some((echo.seq, size))
}

/// True when `packet` (decrypted, from the peer at `from`) is a probe from it to us (`to`): a
/// node answers it itself, so the answer does not depend on the kernel (whose echo reply would
/// be fragmented to a path MTU it learnt, or held back by this node's own size gate).
pub fn is_request(packet: &[u8], from: Ipv4Addr, to: Ipv4Addr) -> bool {
    if packet.len() < MIN_PROBE || packet.get(9) != Some(&1) || packet.get(IPV4_HEADER) != Some(&8)
    {
        return false;
    }
    parse_echo(packet).is_some_and(|e| {
        e.kind == EchoKind::Request && e.id == PROBE_ID && e.src == from && e.dst == to
    })
}

/// Turns a probe (checked by `is_request`) into its answer in place: addresses swapped, echo
/// reply, same size and payload, checksums recomputed (probes are rare; no need for RFC 1624).
pub fn answer_in_place(p: &mut [u8]) {
    if p.len() < MIN_PROBE {
        return;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER || p.len() < ihl + ICMP_HEADER {
        return;
    }
    let mut src = [0u8; 4];
    src.copy_from_slice(&p[12..16]);
    p.copy_within(16..20, 12);
    p[16..20].copy_from_slice(&src);
    p[8] = 64;
    p[10..12].fill(0);
    let ip_sum = checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let icmp = &mut p[ihl..];
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let icmp_sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::icmp::echo_reply_for;

    const US: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    #[test]
    fn a_kernel_answer_to_a_probe_is_recognised_with_its_size() {
        let mut buf = [0u8; 2000];
        let probe = write_probe(&mut buf, US, PEER, 7, 1232).unwrap().to_vec();
        assert_eq!(probe.len(), 1232);
        assert_eq!(probe[6] & 0x40, 0x40, "DF");
        let answer = echo_reply_for(&probe).unwrap();
        assert_eq!(parse_answer(&answer, PEER), Some((7, 1232)));
        assert_eq!(parse_answer(&answer, US), None, "from someone else");
        assert_eq!(parse_answer(&probe, US), None, "a request is no answer");
        // Cut short (a truncating middlebox) is not the size we probed.
        assert_eq!(parse_answer(&answer[..1000], PEER), None);
    }

    #[test]
    fn a_node_answers_a_probe_the_way_a_kernel_would() {
        let mut buf = [0u8; 2000];
        let probe = write_probe(&mut buf, US, PEER, 9, 1300).unwrap().to_vec();
        assert!(is_request(&probe, US, PEER));
        assert!(
            !is_request(&probe, PEER, US),
            "not from that peer or not to us"
        );
        let mut answer = probe.clone();
        answer_in_place(&mut answer);
        assert_eq!(answer, echo_reply_for(&probe).unwrap());
        assert_eq!(parse_answer(&answer, PEER), Some((9, 1300)));
        assert!(!is_request(&answer, PEER, US), "an answer is not a request");
    }

    #[test]
    fn too_small_or_too_big_for_the_buffer_is_refused() {
        let mut buf = [0u8; 100];
        assert!(write_probe(&mut buf, US, PEER, 1, 20).is_none());
        assert!(write_probe(&mut buf, US, PEER, 1, 101).is_none());
        assert!(write_probe(&mut buf, US, PEER, 1, 100).is_some());
    }

    proptest::proptest! {
        /// A peer's decrypted packets can be anything: reading them never panics.
        #[test]
        fn any_bytes_are_read_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
        ) {
            let _ = parse_answer(&bytes, PEER);
            if is_request(&bytes, PEER, US) {
                let mut b = bytes.clone();
                answer_in_place(&mut b);
                proptest::prop_assert!(parse_echo(&b).is_some());
            }
            let mut b = bytes;
            answer_in_place(&mut b);
        }
    }
}
