//! ICMP echo (RFC 792) inside IPv4, just enough for `p2pvpn ping`: the node builds an echo
//! request from its own virtual address, and recognises the peer kernel's echo reply before it
//! reaches the TUN device. Checksums are the Internet checksum (RFC 1071).

use std::net::Ipv4Addr;

/// The echo identifier of node-originated pings. Fixed, so a reply can be told apart from the
/// replies to the user's own `ping` runs (which use their process id).
pub const PING_ID: u16 = 0x7032;
/// A fixed payload: no timestamp, since the node keeps the send time itself, and recognisable in
/// a packet capture.
pub const PING_PAYLOAD: &[u8; 24] = b"p2pvpn path ping........";

const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
const PROTO_ICMP: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

/// An ICMP echo message read from an IPv4 packet whose checksums hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub kind: EchoKind,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub seq: u16,
}

/// The Internet checksum of `data` (RFC 1071): the ones' complement of the ones' complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn build(kind: EchoKind, src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER + ICMP_HEADER + data.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    // Don't fragment: a path ping has no business being split.
    p[6] = 0x40;
    p[8] = 64;
    p[9] = PROTO_ICMP;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ip_sum = checksum(&p[..IPV4_HEADER]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let icmp = &mut p[IPV4_HEADER..];
    icmp[0] = match kind {
        EchoKind::Request => ECHO_REQUEST,
        EchoKind::Reply => ECHO_REPLY,
    };
    icmp[4..6].copy_from_slice(&id.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[ICMP_HEADER..].copy_from_slice(data);
    let icmp_sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
    p
}

/// An IPv4 echo request from `src` to `dst` with the node's identifier and payload.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    build(EchoKind::Request, src, dst, PING_ID, seq, PING_PAYLOAD)
}

/// The reply a host's kernel would send to `request` (used where no kernel is, the simulator).
pub fn echo_reply_for(request: &[u8]) -> Option<Vec<u8>> {
    let echo = parse_echo(request)?;
    if echo.kind != EchoKind::Request {
        return None;
    }
    let ihl = usize::from(request[0] & 0x0f) * 4;
    let data = &request[ihl + ICMP_HEADER..];
    Some(build(
        EchoKind::Reply,
        echo.dst,
        echo.src,
        echo.id,
        echo.seq,
        data,
    ))
}

/// Reads an ICMP echo request or reply, if `packet` is an unfragmented IPv4 packet carrying one
/// with valid header and ICMP checksums.
pub fn parse_echo(packet: &[u8]) -> Option<Echo> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < IPV4_HEADER || packet.len() < ihl + ICMP_HEADER {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // A fragment (more-fragments set or a non-zero offset) is not a whole echo message.
    let fragmented = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0;
    if packet[9] != PROTO_ICMP || fragmented || total < ihl + ICMP_HEADER || total > packet.len() {
        return None;
    }
    if checksum(&packet[..ihl]) != 0 {
        return None;
    }
    let icmp = &packet[ihl..total];
    let kind = match (icmp[0], icmp[1]) {
        (ECHO_REQUEST, 0) => EchoKind::Request,
        (ECHO_REPLY, 0) => EchoKind::Reply,
        _ => return None,
    };
    if checksum(icmp) != 0 {
        return None;
    }
    Some(Echo {
        kind,
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the sum of these words is 0xddf2, so the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(checksum(&[0x12]), !0x1200);
    }

    #[test]
    fn a_request_round_trips_with_valid_checksums() {
        let p = echo_request(A, B, 7);
        assert_eq!(p.len(), 20 + 8 + PING_PAYLOAD.len());
        assert_eq!(checksum(&p[..20]), 0, "IP header checksum");
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum");
        let e = parse_echo(&p).unwrap();
        assert_eq!(
            e,
            Echo {
                kind: EchoKind::Request,
                src: A,
                dst: B,
                id: PING_ID,
                seq: 7
            }
        );
        assert_eq!(crate::core::ip::ipv4_endpoints(&p).unwrap().dst, B);
    }

    #[test]
    fn the_reply_swaps_addresses_and_keeps_id_seq_and_payload() {
        let req = echo_request(A, B, 300);
        let rep = echo_reply_for(&req).unwrap();
        let e = parse_echo(&rep).unwrap();
        assert_eq!(
            (e.kind, e.src, e.dst, e.id, e.seq),
            (EchoKind::Reply, B, A, PING_ID, 300)
        );
        assert_eq!(&rep[28..], PING_PAYLOAD);
        assert!(echo_reply_for(&rep).is_none(), "no reply to a reply");
    }

    #[test]
    fn a_corrupted_packet_is_not_an_echo() {
        let p = echo_request(A, B, 1);
        let mut bad_icmp = p.clone();
        bad_icmp[30] ^= 1;
        assert!(parse_echo(&bad_icmp).is_none());
        let mut bad_ip = p.clone();
        bad_ip[15] ^= 1;
        assert!(parse_echo(&bad_ip).is_none());
        let mut fragment = p.clone();
        fragment[6] = 0x20;
        assert!(parse_echo(&fragment).is_none());
        assert!(parse_echo(&p[..27]).is_none());
        let mut udp = p;
        udp[9] = 17;
        assert!(parse_echo(&udp).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_echo(&bytes);
            let _ = echo_reply_for(&bytes);
        }
    }
}
