//! What `network create` checks about a new network's range before storing it: the range rule
//! (`cidr.rs`), the server's own addresses (a node given the server's address loses the server),
//! the server host's own subnets and the ranges of the networks already in the store (a node in
//! both cannot reach one).

use super::cidr;
use crate::store_any::ServerStore;
use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use std::net::{IpAddr, SocketAddr};

/// Refuses a range the rule does not allow, saying why and, where it may, how to override.
pub fn range(range: Ipv4Net, allow_public: bool) -> Result<()> {
    match cidr::check(range, allow_public) {
        Ok(()) => Ok(()),
        Err(r) if r.overridable => bail!(
            "refusing --cidr {range}: {}. Use a private range such as 10.77.0.0/24 or \
             100.64.0.0/24; if you own this range and no member needs it on the internet, pass \
             --allow-public-range",
            r.why
        ),
        Err(r) => bail!(
            "refusing --cidr {range}: {}. Use a private range such as 10.77.0.0/24",
            r.why
        ),
    }
}

/// Refuses a range that holds an address the server listens on; warns (on stderr) about each
/// other network whose range overlaps it.
pub fn against_store(store: &ServerStore, name: &str, range: Ipv4Net) -> Result<()> {
    let mut listen = store.setting("listen")?.unwrap_or_default();
    if let Some(tls) = store.setting("tls_listen")? {
        listen = format!("{listen},{tls}");
    }
    if let Some(addr) = server_inside(&listen, range).first() {
        bail!(
            "refusing --cidr {range}: the server listens on {addr}, inside that range; members \
             would route the server's address into the network and lose the server. Pick a \
             range that does not hold the server's address"
        );
    }
    // `network create` runs on the server host: a range over one of its own subnets takes the
    // server away from members that reach it through that subnet.
    if let Ok(routes) = crate::io::routes::table() {
        for route in crate::io::routes::collisions(&routes, range, "") {
            eprintln!(
                "warning: {range} overlaps this host's route {route}; if members reach the \
                 server through that subnet they would lose it, and members in it lose their \
                 LAN. Pick another range unless that subnet is unrelated to the members"
            );
        }
    }
    let networks: Vec<(String, Ipv4Net)> = store
        .networks()?
        .into_iter()
        .map(|(n, _)| (n.name, n.cidr))
        .collect();
    for (other, cidr) in overlapping(&networks, name, range) {
        eprintln!(
            "warning: {range} overlaps network {other} ({cidr}); a node that joins both cannot \
             reach the shared addresses in one of them (its `up` refuses the second unless \
             --allow-overlap). Delete and re-create {name} with another range unless no node \
             will join both"
        );
    }
    Ok(())
}

/// The recorded listen addresses (comma-separated) that fall inside `range`.
fn server_inside(listen: &str, range: Ipv4Net) -> Vec<SocketAddr> {
    listen
        .split(',')
        .filter_map(|s| s.trim().parse::<SocketAddr>().ok())
        .filter(|a| matches!(a.ip(), IpAddr::V4(ip) if range.contains(&ip)))
        .collect()
}

/// Other networks whose ranges overlap `range`.
fn overlapping<'a>(
    networks: &'a [(String, Ipv4Net)],
    name: &str,
    range: Ipv4Net,
) -> Vec<&'a (String, Ipv4Net)> {
    networks
        .iter()
        .filter(|(n, c)| n != name && (c.contains(&range) || range.contains(c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_servers_own_address_is_found_in_the_range() {
        let listen = "10.0.0.5:7400,0.0.0.0:7401,[::1]:7402";
        assert_eq!(
            server_inside(listen, net("10.0.0.0/24")),
            vec!["10.0.0.5:7400".parse::<SocketAddr>().unwrap()]
        );
        assert!(server_inside(listen, net("10.0.1.0/24")).is_empty());
        assert!(server_inside("", net("10.0.0.0/8")).is_empty());
    }

    #[test]
    fn overlaps_in_both_directions_are_found() {
        let nets = vec![
            ("a".to_string(), net("10.66.0.0/24")),
            ("b".to_string(), net("10.0.0.0/8")),
            ("c".to_string(), net("192.168.1.0/24")),
        ];
        let names = |r: &str| -> Vec<&str> {
            overlapping(&nets, "new", net(r))
                .iter()
                .map(|(n, _)| n.as_str())
                .collect()
        };
        assert_eq!(names("10.66.0.0/16"), ["a", "b"]);
        assert_eq!(names("192.168.2.0/24"), Vec::<&str>::new());
        assert_eq!(overlapping(&nets, "a", net("10.66.0.0/24")).len(), 1);
    }
}
