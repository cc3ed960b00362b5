//! The TUN device's MTU: the config's `mtu` when set, else the underlay's route MTU toward the
//! server minus the IP/UDP and WireGuard overhead (`core::pmtu::tun_mtu_for`). The route MTU is
//! the kernel's own figure for the path (the interface's MTU, or a smaller one the kernel
//! learnt), read from a connected UDP socket (nothing is sent). Each peer's path is then probed
//! on its own (`core::pmtu::search`); this only sets the upper bound.

#[cfg(target_os = "linux")]
mod linux;

use crate::core::pmtu::{tun_mtu_for, FALLBACK_TUN_MTU};
use std::net::SocketAddr;

/// The MTU to give the TUN device, and a phrase saying where it came from (for the log).
pub fn choose(configured: Option<u16>, servers: &[SocketAddr]) -> (u16, String) {
    if let Some(mtu) = configured {
        return (mtu, "set in the config".to_string());
    }
    // A server on this host says nothing about the paths to the peers (loopback's 65536 would
    // make every path search start far above any real link).
    let derived = servers
        .iter()
        .filter(|s| !s.ip().is_loopback())
        .filter_map(|s| route_mtu(*s).map(|m| (tun_mtu_for(m, s.is_ipv6()), m, *s)))
        .min_by_key(|(tun, _, _)| *tun);
    match derived {
        Some((tun, route, server)) => (tun, format!("from the route MTU {route} toward {server}")),
        None => (
            FALLBACK_TUN_MTU,
            "the default for a 1500-byte underlay (route MTU unknown)".to_string(),
        ),
    }
}

/// Sets DF on an IPv4 UDP socket's datagrams and stops the kernel from fragmenting them
/// (Linux; elsewhere the platform's default stays). Logged, not fatal: the search still works,
/// it may only settle on a size that needs fragments.
pub fn dont_fragment(socket: &tokio::net::UdpSocket) {
    #[cfg(target_os = "linux")]
    if let Err(e) = linux::set_dont_fragment(socket) {
        tracing::debug!(error = %e, "cannot set IP_PMTUDISC_PROBE on the UDP socket");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// The kernel's MTU for the route to `dst`, if this platform can tell.
fn route_mtu(dst: SocketAddr) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        linux::route_mtu(dst)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dst;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_wins_and_loopback_is_not_a_path() {
        let servers = ["127.0.0.1:7400".parse().unwrap()];
        assert_eq!(choose(Some(1280), &servers).0, 1280);
        assert_eq!(choose(None, &servers).0, FALLBACK_TUN_MTU);
        assert_eq!(choose(None, &[]).0, FALLBACK_TUN_MTU);
    }
}
