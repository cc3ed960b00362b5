//! Platforms without an address reader yet: no IPv6 host candidates (the reflexive address the
//! server sees still is one), and the platform's default fragmentation.

use std::net::Ipv6Addr;

pub fn global_addresses() -> Vec<Ipv6Addr> {
    Vec::new()
}

pub fn set_fragmentation(
    _socket: &tokio::net::UdpSocket,
    _dont_fragment: bool,
) -> std::io::Result<()> {
    Ok(())
}
