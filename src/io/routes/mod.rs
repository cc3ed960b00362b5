//! The host's IPv4 routes, for two questions: does a network's range collide with a route the
//! host already has (checked by `up` before it registers), and which interface does the kernel
//! really send a peer's address to (checked by `doctor`)? Reading the table is per OS (Linux:
//! `linux.rs` for the main table, `netlink.rs` for the kernel's answer for one address); the
//! questions are pure functions over the table, unit-tested here.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod netlink;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as os;

use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Net,
    pub interface: String,
    pub gateway: Option<Ipv4Addr>,
    pub metric: u32,
}

/// The interface of a route that has none: a blackhole, unreachable or prohibit route.
pub const NO_DEVICE: &str = "(none)";

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.interface == NO_DEVICE {
            return write!(f, "{} blackhole/unreachable", self.dest);
        }
        write!(f, "{} dev {}", self.dest, self.interface)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        Ok(())
    }
}

/// The kernel's IPv4 main routing table.
pub fn table() -> Result<Vec<Route>> {
    os::table()
}

/// The route the kernel uses for `addr`, policy rules and all tables included (`ip route get
/// fibmatch`); where that cannot be asked, the main table's longest match. `None`: no route.
pub fn kernel_route(addr: Ipv4Addr) -> Result<Option<Route>> {
    os::kernel_route(addr)
}

/// The route the kernel picks for `addr` from `routes`: longest prefix, then lowest metric (what
/// `ip route get` answers for the main table; policy rules and other tables are not consulted).
pub fn lookup(routes: &[Route], addr: Ipv4Addr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.dest.contains(&addr))
        .min_by_key(|r| (std::cmp::Reverse(r.dest.prefix_len()), r.metric))
}

/// Routes that overlap `range`, other than the default route (which every range "overlaps": ours
/// is more specific and simply wins) and routes on `own` interface (ours, from an earlier run).
pub fn collisions<'a>(routes: &'a [Route], range: Ipv4Net, own: &str) -> Vec<&'a Route> {
    routes
        .iter()
        .filter(|r| r.dest.prefix_len() > 0 && r.interface != own)
        .filter(|r| r.dest.contains(&range) || range.contains(&r.dest))
        .collect()
}

/// Refuses `range` when a route the host already has overlaps it: traffic to those addresses
/// would silently go one way or the other. `allow` (`up --allow-overlap`) only warns.
pub fn refuse_collisions(range: Ipv4Net, own: &str, allow: bool) -> Result<()> {
    if let Some(missing) = os::COLLISION_CHECK_MISSING {
        if allow {
            tracing::warn!("{missing}; going ahead unchecked because of --allow-overlap");
            return Ok(());
        }
        bail!(
            "{missing}, so p2pvpn cannot tell whether the network's range {range} overlaps a \
             route this host already has. Check `route print` yourself and pass --allow-overlap \
             to go ahead"
        );
    }
    let mut hits: Vec<Route> = match table() {
        Ok(routes) => collisions(&routes, range, own)
            .into_iter()
            .cloned()
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the routing table");
            Vec::new()
        }
    };
    // The main table is not all there is: policy rules can send the range to another table
    // (Tailscale's 100.64.0.0/10 in table 52). Ask the kernel for the range's first and last
    // host too.
    let probes = [range.hosts().next(), range.hosts().next_back()];
    for addr in probes.into_iter().flatten() {
        let Ok(Some(route)) = kernel_route(addr) else {
            continue;
        };
        let seen = hits
            .iter()
            .any(|h| h.dest == route.dest && h.interface == route.interface);
        if !seen && !collisions(std::slice::from_ref(&route), range, own).is_empty() {
            hits.push(route);
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = hits.iter().map(|r| r.to_string()).collect();
    if allow {
        tracing::warn!(
            "the network's range {range} overlaps routes this host already has ({}); going ahead \
             because of --allow-overlap: traffic to the shared addresses takes the more specific \
             route",
            list.join("; ")
        );
        return Ok(());
    }
    bail!(
        "the network's range {range} overlaps a route this host already has ({}): traffic to \
         those addresses would go to one of them silently. Remove or change that route (another \
         VPN or a LAN using the same range?), ask the server's admin for a network with another \
         range, or pass --allow-overlap to go ahead anyway",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dest: &str, iface: &str, metric: u32) -> Route {
        Route {
            dest: dest.parse().unwrap(),
            interface: iface.into(),
            gateway: None,
            metric,
        }
    }

    #[test]
    fn lookup_takes_the_longest_prefix_then_the_lowest_metric() {
        let routes = vec![
            route("0.0.0.0/0", "eth0", 0),
            route("10.0.0.0/8", "tun9", 0),
            route("10.77.0.0/24", "p2p-office", 5),
            route("10.77.0.0/24", "wg0", 1),
        ];
        let at = |a: &str| lookup(&routes, a.parse().unwrap()).map(|r| r.interface.as_str());
        assert_eq!(at("10.77.0.5"), Some("wg0"));
        assert_eq!(at("10.9.0.1"), Some("tun9"));
        assert_eq!(at("8.8.8.8"), Some("eth0"));
        assert_eq!(lookup(&routes[1..2], "8.8.8.8".parse().unwrap()), None);
    }

    #[test]
    fn collisions_skip_the_default_route_and_our_own_interface() {
        let routes = vec![
            route("0.0.0.0/0", "eth0", 0),
            route("192.168.1.0/24", "eth0", 0),
            route("10.0.0.0/8", "corp", 0),
            route("10.77.0.0/24", "p2p-office", 0),
            route("10.77.0.128/25", "wg0", 0),
        ];
        let names = |range: &str, own: &str| -> Vec<String> {
            collisions(&routes, range.parse().unwrap(), own)
                .iter()
                .map(|r| r.to_string())
                .collect()
        };
        // A broader route (the corporate /8) and a narrower one (wg0's /25) both collide.
        assert_eq!(
            names("10.77.0.0/24", "p2p-office"),
            ["10.0.0.0/8 dev corp", "10.77.0.128/25 dev wg0"]
        );
        assert!(names("172.16.0.0/24", "p2p-office").is_empty());
        assert_eq!(names("192.168.0.0/16", "x"), ["192.168.1.0/24 dev eth0"]);
    }
}
