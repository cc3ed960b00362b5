//! PCP codec (RFC 6887): the ANNOUNCE request that tells whether a gateway speaks PCP (§14.1),
//! and the MAP request and reply for one UDP port (§11). A lifetime of zero deletes the mapping
//! the nonce names (§15).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use thiserror::Error;

const VERSION: u8 = 2;
const OP_ANNOUNCE: u8 = 0;
const OP_MAP: u8 = 1;
/// The R bit: set in responses (§7.2).
const RESPONSE: u8 = 0x80;
const HEADER: usize = 24;
const MAP_BODY: usize = 36;
const UDP: u8 = 17;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PcpError {
    #[error("PCP reply too short or not a reply to our request")]
    Malformed,
    /// §7.4: 1 UNSUPP_VERSION (a NAT-PMP-only gateway), 2 NOT_AUTHORIZED, 8 NO_RESOURCES, ...
    #[error("the gateway refused the PCP request (result code {0})")]
    Refused(u8),
    #[error("the PCP reply is for another mapping (nonce or port differs)")]
    NotOurs,
}

/// An IPv4 address travels as an IPv4-mapped IPv6 address (§5).
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn unmapped(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    let v6 = Ipv6Addr::from(o);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn request_header(op: u8, lifetime: Duration, client: IpAddr) -> [u8; HEADER] {
    let mut b = [0u8; HEADER];
    b[0] = VERSION;
    b[1] = op;
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    b[4..8].copy_from_slice(&secs.to_be_bytes());
    // §8.1: the client's own address, which the server compares with the packet's source.
    b[8..24].copy_from_slice(&mapped(client));
    b
}

/// §14.1: an ANNOUNCE request, answered by any PCP server (with the unsolicited-announce
/// opcode and SUCCESS): the cheap "does this gateway speak PCP" probe.
pub fn announce_request(client: IpAddr) -> [u8; HEADER] {
    request_header(OP_ANNOUNCE, Duration::ZERO, client)
}

/// §11.1: map UDP `internal_port` of `client`, suggesting `external_port` (0: any) and any
/// external IPv4 address. The same nonce renews (§11.2.1) or deletes (§15, lifetime 0) it.
pub fn map_request(
    client: IpAddr,
    nonce: [u8; 12],
    internal_port: u16,
    external_port: u16,
    lifetime: Duration,
) -> [u8; HEADER + MAP_BODY] {
    let mut b = [0u8; HEADER + MAP_BODY];
    b[..HEADER].copy_from_slice(&request_header(OP_MAP, lifetime, client));
    let m = &mut b[HEADER..];
    m[..12].copy_from_slice(&nonce);
    m[12] = UDP;
    m[16..18].copy_from_slice(&internal_port.to_be_bytes());
    m[18..20].copy_from_slice(&external_port.to_be_bytes());
    // "No preference" for the external address of an IPv4 mapping is ::ffff:0.0.0.0 (§11.1).
    m[20..36].copy_from_slice(&Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    b
}

/// The parts of a response header we use (§7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub lifetime: Duration,
    /// Seconds since the server's state began; a jump back means it forgot its mappings (§8.5).
    pub epoch: u32,
}

fn parse_header(b: &[u8]) -> Result<Header, PcpError> {
    if b.len() < 4 || b[1] & RESPONSE == 0 {
        return Err(PcpError::Malformed);
    }
    // An UNSUPP_VERSION reply may come in an older version's format (§9): judge by the code.
    if b[3] != 0 {
        return Err(PcpError::Refused(b[3]));
    }
    if b[0] != VERSION || b.len() < HEADER {
        return Err(PcpError::Malformed);
    }
    Ok(Header {
        opcode: b[1] & !RESPONSE,
        lifetime: Duration::from_secs(u64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]))),
        epoch: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    })
}

/// Whether `b` is a successful answer to an ANNOUNCE.
pub fn parse_announce(b: &[u8]) -> Result<Header, PcpError> {
    let h = parse_header(b)?;
    if h.opcode != OP_ANNOUNCE {
        return Err(PcpError::Malformed);
    }
    Ok(h)
}

/// A granted MAP: the external address and the lifetime the server chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapReply {
    pub external: SocketAddr,
    pub lifetime: Duration,
    pub epoch: u32,
}

/// A MAP reply to the request with this `nonce` and `internal_port` (§11.3: the client checks
/// both before believing it).
pub fn parse_map(b: &[u8], nonce: &[u8; 12], internal_port: u16) -> Result<MapReply, PcpError> {
    let h = parse_header(b)?;
    if h.opcode != OP_MAP || b.len() < HEADER + MAP_BODY {
        return Err(PcpError::Malformed);
    }
    let m = &b[HEADER..HEADER + MAP_BODY];
    if &m[..12] != nonce || m[12] != UDP || u16::from_be_bytes([m[16], m[17]]) != internal_port {
        return Err(PcpError::NotOurs);
    }
    let port = u16::from_be_bytes([m[18], m[19]]);
    Ok(MapReply {
        external: SocketAddr::new(unmapped(&m[20..36]), port),
        lifetime: h.lifetime,
        epoch: h.epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const NONCE: [u8; 12] = [7; 12];

    /// What miniupnpd sends back for a granted MAP: the request echoed with R set, the result,
    /// lifetime and epoch, and the assigned port and address.
    fn reply(result: u8, port: u16, ext: Ipv4Addr) -> Vec<u8> {
        let mut b = map_request(CLIENT, NONCE, 51820, 0, Duration::from_secs(7200)).to_vec();
        b[1] |= RESPONSE;
        b[3] = result;
        b[4..8].copy_from_slice(&3600u32.to_be_bytes());
        b[8..12].copy_from_slice(&42u32.to_be_bytes());
        b[12..24].fill(0);
        b[HEADER + 18..HEADER + 20].copy_from_slice(&port.to_be_bytes());
        b[HEADER + 20..].copy_from_slice(&ext.to_ipv6_mapped().octets());
        b
    }

    #[test]
    fn map_request_layout_follows_rfc6887() {
        let b = map_request(CLIENT, NONCE, 51820, 0, Duration::from_secs(7200));
        assert_eq!(&b[..4], &[2, 1, 0, 0]);
        assert_eq!(&b[4..8], &7200u32.to_be_bytes());
        assert_eq!(
            &b[8..24],
            &Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets()
        );
        assert_eq!(&b[24..36], &NONCE);
        assert_eq!(b[36], 17);
        assert_eq!(&b[40..42], &51820u16.to_be_bytes());
        assert_eq!(&b[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    }

    #[test]
    fn a_granted_map_gives_the_external_address_and_lifetime() {
        let ext = Ipv4Addr::new(198, 18, 0, 1);
        let r = parse_map(&reply(0, 61000, ext), &NONCE, 51820).unwrap();
        assert_eq!(r.external, "198.18.0.1:61000".parse().unwrap());
        assert_eq!(r.lifetime, Duration::from_secs(3600));
        assert_eq!(r.epoch, 42);
    }

    #[test]
    fn refusals_and_strangers_replies_are_told_apart() {
        let ext = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(
            parse_map(&reply(2, 0, ext), &NONCE, 51820),
            Err(PcpError::Refused(2))
        );
        assert_eq!(
            parse_map(&reply(0, 61000, ext), &[8; 12], 51820),
            Err(PcpError::NotOurs)
        );
        assert_eq!(
            parse_map(&reply(0, 61000, ext), &NONCE, 1234),
            Err(PcpError::NotOurs)
        );
        // A NAT-PMP-only gateway answers version 0 with UNSUPP_VERSION in its own format.
        assert_eq!(parse_announce(&[0, 128, 0, 1]), Err(PcpError::Refused(1)));
        // A request (R clear) and a truncated reply are not replies.
        assert_eq!(
            parse_announce(&announce_request(CLIENT)),
            Err(PcpError::Malformed)
        );
        assert_eq!(
            parse_map(&reply(0, 61000, ext)[..40], &NONCE, 51820),
            Err(PcpError::Malformed)
        );
    }
}
