//! The few IP header fields the data path reads: the version and the two addresses of IPv4
//! (RFC 791 §3.1) and IPv6 (RFC 8200 §3). Parsing borrows the packet and never allocates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an IPv4 packet, if the bytes hold a complete IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Endpoints {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Source and destination of an IPv4 or IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpEndpoints {
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Why a TUN packet cannot be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("packet is not IPv4")]
    NotIpv4,
    /// Neither version 4 nor version 6.
    #[error("packet is neither IPv4 nor IPv6")]
    UnknownVersion,
    #[error("IP header is truncated")]
    Truncated,
}

/// The fixed IPv6 header (RFC 8200 §3): addresses at bytes 8..24 and 24..40.
const IPV6_HEADER: usize = 40;

/// Source and destination of an IPv4 or an IPv6 packet.
pub fn ip_endpoints(packet: &[u8]) -> Result<IpEndpoints, IpError> {
    let first = *packet.first().ok_or(IpError::Truncated)?;
    match first >> 4 {
        4 => ipv4_endpoints(packet).map(|e| IpEndpoints {
            src: IpAddr::V4(e.src),
            dst: IpAddr::V4(e.dst),
        }),
        6 => {
            if packet.len() < IPV6_HEADER {
                return Err(IpError::Truncated);
            }
            let src: [u8; 16] = packet[8..24].try_into().map_err(|_| IpError::Truncated)?;
            let dst: [u8; 16] = packet[24..40].try_into().map_err(|_| IpError::Truncated)?;
            Ok(IpEndpoints {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
            })
        }
        _ => Err(IpError::UnknownVersion),
    }
}

pub fn ipv4_endpoints(packet: &[u8]) -> Result<Ipv4Endpoints, IpError> {
    let first = *packet.first().ok_or(IpError::Truncated)?;
    if first >> 4 != 4 {
        return Err(IpError::NotIpv4);
    }
    if packet.len() < 20 || usize::from(first & 0x0f) * 4 < 20 {
        return Err(IpError::Truncated);
    }
    let src: [u8; 4] = packet[12..16].try_into().map_err(|_| IpError::Truncated)?;
    let dst: [u8; 4] = packet[16..20].try_into().map_err(|_| IpError::Truncated)?;
    Ok(Ipv4Endpoints {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_addresses() {
        let mut pkt = [0u8; 28];
        pkt[0] = 0x45;
        pkt[12..16].copy_from_slice(&[10, 0, 0, 1]);
        pkt[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let ends = ipv4_endpoints(&pkt).unwrap();
        assert_eq!(ends.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ends.dst, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(ipv4_endpoints(&pkt[..10]), Err(IpError::Truncated));
        pkt[0] = 0x60;
        assert_eq!(ipv4_endpoints(&pkt), Err(IpError::NotIpv4));
    }

    #[test]
    fn reads_ipv6_addresses() {
        let mut pkt = [0u8; 48];
        pkt[0] = 0x60;
        let a: Ipv6Addr = "fd00:1:2::a00:1".parse().unwrap();
        let b: Ipv6Addr = "fd00:1:2::a00:2".parse().unwrap();
        pkt[8..24].copy_from_slice(&a.octets());
        pkt[24..40].copy_from_slice(&b.octets());
        let ends = ip_endpoints(&pkt).unwrap();
        assert_eq!((ends.src, ends.dst), (IpAddr::V6(a), IpAddr::V6(b)));
        assert_eq!(ip_endpoints(&pkt[..39]), Err(IpError::Truncated));
        pkt[0] = 0x50;
        assert_eq!(ip_endpoints(&pkt), Err(IpError::UnknownVersion));
        assert_eq!(ip_endpoints(&[]), Err(IpError::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ipv4_endpoints(&bytes);
            let _ = ip_endpoints(&bytes);
        }

        /// Whatever the version nibble says, the generic parser agrees with the IPv4 one.
        #[test]
        fn agrees_with_the_ipv4_parser(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
            if let Ok(v4) = ipv4_endpoints(&bytes) {
                prop_assert_eq!(ip_endpoints(&bytes).ok(), Some(IpEndpoints {
                    src: IpAddr::V4(v4.src), dst: IpAddr::V4(v4.dst),
                }));
            }
        }
    }
}
