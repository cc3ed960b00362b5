//! Notices that the host's route toward the server now leaves from another local address than
//! the control stream's (a laptop that joined another network, a default route switched to a
//! second router, the old address removed), so the node can reconnect and re-punch at once
//! (`Node::handle_underlay_changed`) instead of waiting for timeouts.
//!
//! How: once a second, a UDP socket that is never sent on is connected to the server, which
//! makes the kernel pick the source address it would use now (a route lookup, no packet), and
//! that is compared with the stream's local address. Portable (std only) and cheap; a netlink
//! subscription would be quicker on Linux but is one more per-OS module for a second's gain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// How often the route toward the server is looked up.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The source address the kernel would use toward `server` now, if it has a route.
pub fn source_toward(server: SocketAddr) -> Option<IpAddr> {
    let any: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.connect(server).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// The last control stream's local address, and whether the route still leaves from it. A
/// stream that ended is still compared: a node waiting out its reconnect backoff on a network
/// it has left should try the new one now.
#[derive(Debug, Default)]
pub struct UnderlayWatch {
    stream: Option<(SocketAddr, IpAddr)>,
}

impl UnderlayWatch {
    /// A stream to `server` connected from `local`.
    pub fn connected(&mut self, server: SocketAddr, local: IpAddr) {
        self.stream = Some((server, local));
    }

    /// True once when the route toward the stream's server now leaves from another address.
    /// No route at all is not a change yet: the old address may come back, and a reconnect
    /// could not leave anyway.
    pub fn changed(&mut self, source: impl Fn(SocketAddr) -> Option<IpAddr>) -> bool {
        let Some((server, local)) = self.stream else {
            return false;
        };
        match source(server) {
            Some(now) if now != local => {
                self.stream = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "198.51.100.1:7400";

    #[test]
    fn a_new_source_address_is_a_change_once_and_no_route_is_none() {
        let server: SocketAddr = SERVER.parse().unwrap();
        let old: IpAddr = "192.168.1.10".parse().unwrap();
        let new: IpAddr = "192.168.3.10".parse().unwrap();
        let mut w = UnderlayWatch::default();
        assert!(!w.changed(|_| Some(new)), "no stream, nothing to compare");
        w.connected(server, old);
        assert!(!w.changed(|_| Some(old)));
        assert!(!w.changed(|_| None), "no route: wait");
        assert!(w.changed(|s| (s == server).then_some(new)));
        assert!(
            !w.changed(|_| Some(new)),
            "reported once, until the next stream"
        );
        w.connected(server, new);
        assert!(!w.changed(|_| Some(new)));
    }

    /// The real lookup on loopback: the kernel picks 127.0.0.1 toward 127.0.0.1.
    #[test]
    fn the_kernel_names_the_source_toward_loopback() {
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(source_toward(server), Some("127.0.0.1".parse().unwrap()));
    }
}
