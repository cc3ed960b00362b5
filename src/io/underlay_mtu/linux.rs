//! Linux: connect a UDP socket to the destination (a route lookup, no packet) and read
//! IP_MTU / IPV6_MTU, the path MTU the kernel would use for it (ip(7), ipv6(7)).

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
