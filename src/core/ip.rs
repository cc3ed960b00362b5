//! The few IPv4 header fields the data path reads (RFC 791 §3.1): version, total length and the
//! two addresses. Parsing borrows the packet and never allocates.

use std::net::Ipv4Addr;

/// Source and destination of an IPv4 packet, if the bytes hold a complete IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Endpoints {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Why a TUN packet cannot be routed as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("packet is not IPv4")]
    NotIpv4,
    #[error("IPv4 header is truncated")]
    Truncated,
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

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ipv4_endpoints(&bytes);
        }
    }
}
