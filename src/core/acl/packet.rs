//! The transport fields the access rules read from a packet: the protocol, the ports of TCP
//! (RFC 9293 §3.1) and UDP (RFC 768), and the type and identifier of ICMP echo (RFC 792) and
//! ICMPv6 echo (RFC 4443 §4). Borrows the packet, never allocates.
//!
//! IPv6 extension headers are not walked: a packet whose first next header is not TCP, UDP or
//! ICMPv6 is `Other` and only an `any` rule admits it. An IPv4 fragment other than the first has
//! no transport header: it is `Other` too (the overlay MTU makes fragments rare).

use super::rule::Proto;
use std::net::IpAddr;

/// What kind of packet this is for the flow table and the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp {
        src: u16,
        dst: u16,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    /// An echo request (`request`) or reply, by its identifier.
    Echo {
        id: u16,
        request: bool,
    },
    /// Any other ICMP message (errors among them).
    IcmpOther,
    /// Another protocol, a later fragment, or an IPv6 extension header.
    Other,
}

impl Transport {
    /// The protocol a rule names for this packet.
    pub fn proto(self) -> Proto {
        match self {
            Transport::Tcp { .. } => Proto::Tcp,
            Transport::Udp { .. } => Proto::Udp,
            Transport::Echo { .. } | Transport::IcmpOther => Proto::Icmp,
            Transport::Other => Proto::Any,
        }
    }

    /// The destination port the rules compare, for TCP and UDP.
    pub fn dst_port(self) -> Option<u16> {
        match self {
            Transport::Tcp { dst, .. } | Transport::Udp { dst, .. } => Some(dst),
            _ => None,
        }
    }
}

/// A parsed packet: its peer-side address (source inbound, destination outbound is the
/// caller's choice) and its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Reads the addresses and the transport of an IPv4 or IPv6 packet; `None` if truncated.
pub fn parse(packet: &[u8]) -> Option<Parsed> {
    let first = *packet.first()?;
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl {
                return None;
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            // Fragment offset (RFC 791 §3.1): non-zero means no transport header here.
            let offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
            let transport = if offset != 0 {
                Transport::Other
            } else {
                transport(packet[9], packet.get(ihl..)?, ICMP)?
            };
            Some(Parsed {
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                transport,
            })
        }
        6 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            let transport = transport(packet[6], packet.get(40..)?, ICMPV6)?;
            Some(Parsed {
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                transport,
            })
        }
        _ => None,
    }
}

/// The packet an ICMP error quotes (RFC 792: destination unreachable 3, time exceeded 11,
/// parameter problem 12; RFC 4443 §3: ICMPv6 types 1-4): its header and first 8 bytes follow
/// the 8-byte ICMP header. `None` for anything else.
pub fn quoted(packet: &[u8]) -> Option<Parsed> {
    let first = *packet.first()?;
    let (l4, is_error) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let l4 = packet.get(ihl.max(20)..)?;
            (
                l4,
                *packet.get(9)? == ICMP && matches!(l4.first()?, 3 | 11 | 12),
            )
        }
        6 => {
            let l4 = packet.get(40..)?;
            (
                l4,
                *packet.get(6)? == ICMPV6 && matches!(l4.first()?, 1..=4),
            )
        }
        _ => return None,
    };
    if !is_error {
        return None;
    }
    parse(l4.get(8..)?)
}

fn transport(proto: u8, l4: &[u8], icmp: u8) -> Option<Transport> {
    let port = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    Some(match proto {
        TCP => Transport::Tcp {
            src: port(0)?,
            dst: port(2)?,
        },
        UDP => Transport::Udp {
            src: port(0)?,
            dst: port(2)?,
        },
        p if p == icmp => {
            let kind = *l4.first()?;
            // Echo request/reply: 8/0 for ICMP, 128/129 for ICMPv6.
            let (request, reply) = if icmp == ICMP { (8, 0) } else { (128, 129) };
            if kind == request || kind == reply {
                Transport::Echo {
                    id: port(4)?,
                    request: kind == request,
                }
            } else {
                Transport::IcmpOther
            }
        }
        _ => Transport::Other,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An IPv4 packet of `proto` from `src` to `dst` with transport bytes `l4`.
    pub fn v4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        p
    }

    pub fn ports(src: u16, dst: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&src.to_be_bytes());
        l4[2..4].copy_from_slice(&dst.to_be_bytes());
        l4
    }

    pub fn echo(kind: u8, id: u16) -> Vec<u8> {
        let mut l4 = vec![kind, 0, 0, 0, 0, 0, 0, 1];
        l4[4..6].copy_from_slice(&id.to_be_bytes());
        l4
    }

    #[test]
    fn reads_tcp_udp_and_echo_for_both_families() {
        let (a, b) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
        let p = parse(&v4(TCP, a, b, &ports(40000, 22))).unwrap();
        assert_eq!(
            p.transport,
            Transport::Tcp {
                src: 40000,
                dst: 22
            }
        );
        assert_eq!((p.src, p.dst), (a.into(), b.into()));
        let p = parse(&v4(UDP, a, b, &ports(5353, 53))).unwrap();
        assert_eq!(p.transport.dst_port(), Some(53));
        let p = parse(&v4(ICMP, a, b, &echo(8, 7))).unwrap();
        assert_eq!(
            p.transport,
            Transport::Echo {
                id: 7,
                request: true
            }
        );
        let p = parse(&v4(ICMP, a, b, &echo(3, 0))).unwrap();
        assert_eq!(p.transport, Transport::IcmpOther);
        let mut frag = v4(TCP, a, b, &ports(1, 2));
        frag[7] = 1;
        assert_eq!(parse(&frag).unwrap().transport, Transport::Other);

        let mut p6 = vec![0u8; 40];
        p6[0] = 0x60;
        p6[6] = ICMPV6;
        p6[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p6.extend_from_slice(&echo(129, 9));
        let p = parse(&p6).unwrap();
        assert_eq!(
            p.transport,
            Transport::Echo {
                id: 9,
                request: false
            }
        );
        assert_eq!(p.transport.proto(), Proto::Icmp);
        // Truncated transport headers are refused, not guessed.
        assert_eq!(parse(&v4(TCP, a, b, &[0, 1])), None);
        // A port unreachable quoting our UDP datagram to bob's port 53.
        let mut unreachable = vec![3, 3, 0, 0, 0, 0, 0, 0];
        unreachable.extend_from_slice(&v4(UDP, b, a, &ports(5353, 53))[..28]);
        let q = quoted(&v4(ICMP, a, b, &unreachable)).unwrap();
        assert_eq!(q.transport, Transport::Udp { src: 5353, dst: 53 });
        assert_eq!(quoted(&v4(ICMP, a, b, &echo(8, 1))), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&bytes);
        }
    }
}
