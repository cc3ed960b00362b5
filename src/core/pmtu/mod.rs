//! Packet sizes on every path (issue 11): the TUN MTU from the underlay's route MTU, a per-peer
//! path MTU search (RFC 8899 DPLPMTUD, `search`) with padded authenticated probes (`probe`),
//! ICMP "fragmentation needed" and ICMPv6 "packet too big" for inner packets the path cannot
//! carry (`ptb`, `ptb6`), and TCP MSS clamping on SYNs of both families (`mss`). Sans-IO: the node composes these in `core::node::pmtu`.

pub mod mss;
pub mod probe;
pub mod ptb;
pub mod ptb6;
pub mod search;

/// WireGuard's data message: 16 bytes of header and a 16-byte tag (whitepaper §5.4.6), plus 16
/// bytes reserved for the padding to the AEAD block and the relay's data header (9 bytes,
/// `relay::wire::DATA_HEADER`), so a relayed packet fits too.
pub const WIREGUARD_OVERHEAD: u16 = 32 + 16;
/// IPv4 (20) and UDP (8) headers of the underlay.
pub const UDP_IPV4_OVERHEAD: u16 = 28;
/// IPv6 (40) and UDP (8) headers of the underlay.
pub const UDP_IPV6_OVERHEAD: u16 = 48;
/// The TUN MTU when the underlay's cannot be read: a 1500-byte IPv6 underlay's.
pub const FALLBACK_TUN_MTU: u16 = 1500 - UDP_IPV6_OVERHEAD - WIREGUARD_OVERHEAD;
/// The smallest TUN MTU: IPv4's minimum datagram every host must take (RFC 791).
pub const MIN_TUN_MTU: u16 = 576;

/// The TUN MTU for an underlay route of `route_mtu` bytes (IPv6-sized overhead for an IPv6
/// underlay), never below MIN_TUN_MTU.
pub fn tun_mtu_for(route_mtu: u32, ipv6: bool) -> u16 {
    let ip_udp = if ipv6 {
        UDP_IPV6_OVERHEAD
    } else {
        UDP_IPV4_OVERHEAD
    };
    let inner = route_mtu.saturating_sub(u32::from(ip_udp + WIREGUARD_OVERHEAD));
    u16::try_from(inner)
        .unwrap_or(u16::MAX)
        .clamp(MIN_TUN_MTU, 9000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tun_mtu_leaves_room_for_the_tunnel() {
        assert_eq!(tun_mtu_for(1500, false), 1424);
        assert_eq!(tun_mtu_for(1500, true), 1404);
        assert_eq!(tun_mtu_for(1300, false), 1224);
        assert_eq!(tun_mtu_for(65536, false), 9000, "loopback is capped");
        assert_eq!(tun_mtu_for(100, false), MIN_TUN_MTU);
        assert_eq!(FALLBACK_TUN_MTU, 1404);
    }
}
