//! Linux: connect a UDP socket to the destination (a route lookup, no packet) and read
//! IP_MTU / IPV6_MTU, the path MTU the kernel would use for it (ip(7), ipv6(7)); and set
//! IP_PMTUDISC_PROBE on the node's sockets, so datagrams leave with DF and are never fragmented
//! by this host (RFC 8899 §3: probes must not be fragmented, or a fragmented probe would pass
//! for a larger path MTU).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

pub fn route_mtu(dst: SocketAddr) -> Option<u32> {
    let bind: SocketAddr = if dst.is_ipv6() {
        "[::]:0".parse().ok()?
    } else {
        "0.0.0.0:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(dst).ok()?;
    let (level, name) = if dst.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket fd, and a c_int buffer whose size is passed in `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    u32::try_from(mtu).ok().filter(|m| *m > 0)
}

/// DF on every datagram, whatever path MTU the kernel has cached (ip(7) IP_PMTUDISC_PROBE):
/// sizes are the path MTU search's business, and a fragmented WireGuard datagram is one that
/// NATs and firewalls often drop.
pub fn set_dont_fragment(socket: &impl AsRawFd) -> std::io::Result<()> {
    crate::os::set_int_sockopt(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    )
}
