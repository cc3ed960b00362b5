//! Sockets bound to one address family only. On Linux (and macOS) an IPv6 socket bound to
//! `[::]:P` also takes IPv4 `0.0.0.0:P` unless IPV6_V6ONLY is set (RFC 3493 §5.3;
//! `net.ipv6.bindv6only` is 0 by default), so a server listening on both `0.0.0.0:P` and
//! `[::]:P`, or a node with an IPv4 and an IPv6 socket on one port, would fail with "address in
//! use". Every IPv6 socket we bind is therefore IPv6-only, and IPv4 addresses never reach our
//! code in their IPv4-mapped form (`::ffff:a.b.c.d`), which the core would not recognise.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// A UDP socket bound to `addr` (IPv6-only when `addr` is IPv6), non-blocking, for tokio.
pub fn udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr` (IPv6-only when `addr` is IPv6) with `backlog`; `reuseaddr` as
/// `os::LISTEN_REUSEADDR` says. Must run inside the runtime.
pub fn tcp_listener(
    addr: SocketAddr,
    reuseaddr: bool,
    backlog: i32,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(reuseaddr)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    tokio::net::TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both families on one port: without IPV6_V6ONLY the second bind fails with EADDRINUSE.
    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        let v4 = udp("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = v4.local_addr().unwrap().port();
        let Ok(v6) = udp(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))) else {
            // A host without IPv6 at all cannot run this test; say so rather than pass quietly.
            eprintln!("SKIP: no IPv6 on this host");
            return;
        };
        assert_eq!(v6.local_addr().unwrap().port(), port);
        let t4 = tcp_listener(SocketAddr::from(([0, 0, 0, 0], port)), true, 16).unwrap();
        let t6 = tcp_listener(
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            true,
            16,
        )
        .unwrap();
        assert_eq!(
            t4.local_addr().unwrap().port(),
            t6.local_addr().unwrap().port()
        );
    }
}
