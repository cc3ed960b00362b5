//! NAT-PMP codec (RFC 6886): the external-address request (§3.2) and the UDP mapping request
//! (§3.3), both ways. A lifetime of zero deletes a mapping (§3.4).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use thiserror::Error;

const VERSION: u8 = 0;
const OP_EXTERNAL: u8 = 0;
const OP_MAP_UDP: u8 = 1;
/// Responses set the high bit of the request's opcode (§3.2).
const RESPONSE: u8 = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NatPmpError {
    #[error("NAT-PMP reply too short or not a reply to our request")]
    Malformed,
    /// §3.5: 1 unsupported version, 2 refused, 3 network failure, 4 out of resources,
    /// 5 unsupported opcode.
    #[error("the gateway refused the NAT-PMP request (result code {0})")]
    Refused(u16),
}

/// §3.2: the 2-byte request for the gateway's public address.
pub fn external_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL]
}

/// §3.3: map UDP `internal_port`, suggesting `external_port` (0: any), for `lifetime` (0: delete).
pub fn map_request(internal_port: u16, external_port: u16, lifetime: Duration) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = VERSION;
    b[1] = OP_MAP_UDP;
    b[4..6].copy_from_slice(&internal_port.to_be_bytes());
    b[6..8].copy_from_slice(&external_port.to_be_bytes());
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&secs.to_be_bytes());
    b
}

/// Checks a reply's opcode, result code (§3.5) and length.
fn check(b: &[u8], op: u8, len: usize) -> Result<(), NatPmpError> {
    if b.len() < 4 || b[1] != RESPONSE | op {
        return Err(NatPmpError::Malformed);
    }
    let result = u16::from_be_bytes([b[2], b[3]]);
    if result != 0 {
        return Err(NatPmpError::Refused(result));
    }
    if b[0] != VERSION || b.len() < len {
        return Err(NatPmpError::Malformed);
    }
    Ok(())
}

/// The gateway's public IPv4 address from an external-address reply.
pub fn parse_external(b: &[u8]) -> Result<Ipv4Addr, NatPmpError> {
    check(b, OP_EXTERNAL, 12)?;
    Ok(Ipv4Addr::new(b[8], b[9], b[10], b[11]))
}

/// A mapping reply: the internal port it is for, the external port and the granted lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapReply {
    pub internal_port: u16,
    pub external_port: u16,
    pub lifetime: Duration,
}

pub fn parse_map(b: &[u8]) -> Result<MapReply, NatPmpError> {
    check(b, OP_MAP_UDP, 16)?;
    Ok(MapReply {
        internal_port: u16::from_be_bytes([b[8], b[9]]),
        external_port: u16::from_be_bytes([b[10], b[11]]),
        lifetime: Duration::from_secs(u64::from(u32::from_be_bytes([b[12], b[13], b[14], b[15]]))),
    })
}

/// The public address of a mapping: the external IP with the mapped port.
pub fn external_addr(ip: Ipv4Addr, reply: &MapReply) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, reply.external_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_request_layout_follows_rfc6886() {
        let b = map_request(51820, 0, Duration::from_secs(7200));
        assert_eq!(b, [0, 1, 0, 0, 0xca, 0x6c, 0, 0, 0, 0, 0x1c, 0x20]);
    }

    #[test]
    fn replies_parse_and_refusals_carry_their_code() {
        let ext = [0, 128, 0, 0, 0, 0, 0, 9, 198, 18, 0, 1];
        assert_eq!(parse_external(&ext), Ok(Ipv4Addr::new(198, 18, 0, 1)));
        let map = [
            0, 129, 0, 0, 0, 0, 0, 9, 0xca, 0x6c, 0xea, 0x60, 0, 0, 0x0e, 0x10,
        ];
        let reply = parse_map(&map).unwrap();
        assert_eq!(reply.internal_port, 51820);
        assert_eq!(reply.external_port, 60000);
        assert_eq!(reply.lifetime, Duration::from_secs(3600));
        let refused = [0, 129, 0, 2, 0, 0, 0, 9, 0xca, 0x6c, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_map(&refused), Err(NatPmpError::Refused(2)));
        // A reply to the other opcode, or a truncated one, is not ours.
        assert_eq!(parse_map(&ext), Err(NatPmpError::Malformed));
        assert_eq!(parse_map(&map[..10]), Err(NatPmpError::Malformed));
        assert_eq!(parse_external(&[]), Err(NatPmpError::Malformed));
    }
}
