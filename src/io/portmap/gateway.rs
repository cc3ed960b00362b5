//! The default IPv4 gateway, the only host the port-mapping client ever asks. Read from the
//! kernel's main routing table (`/proc/net/route` on Linux); elsewhere none is found and port
//! mapping stays off.

use std::net::{IpAddr, Ipv4Addr};

/// One IPv4 route of the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// The next hop, when the route goes through one (RTF_GATEWAY).
    pub gateway: Option<Ipv4Addr>,
}

/// Parses `/proc/net/route`: a header line, then tab-separated fields with addresses as
/// the network-order bytes read as a native integer, printed in hex.
pub fn parse_routes(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let hex_ip = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = hex_ip(f.get(1)?)?;
            let gateway = hex_ip(f.get(2)?)?;
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let mask = hex_ip(f.get(7)?)?;
            if flags & RTF_UP == 0 {
                return None;
            }
            Some(Route {
                dest,
                mask,
                gateway: (flags & RTF_GATEWAY != 0).then_some(gateway),
            })
        })
        .collect()
}

/// The default route's gateway, if traffic to `server` leaves through it (the longest matching
/// prefix is the default route or another route via the same gateway). A server on loopback or
/// on a directly attached network is not behind the gateway: a mapping there would serve nobody,
/// so none is asked for (and a test on loopback never talks to the host's real router).
pub fn gateway_toward(routes: &[Route], server: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V4(server) = server.to_canonical() else {
        return None;
    };
    if server.is_loopback() || server.is_unspecified() {
        return None;
    }
    let default = routes
        .iter()
        .find(|r| r.dest.is_unspecified() && r.mask.is_unspecified())
        .and_then(|r| r.gateway)?;
    let best = routes
        .iter()
        .filter(|r| u32::from(server) & u32::from(r.mask) == u32::from(r.dest))
        .max_by_key(|r| u32::from(r.mask).count_ones())?;
    (best.gateway == Some(default)).then_some(default)
}

/// The gateway toward `server` from this host's routing table.
pub fn find(server: IpAddr) -> Option<Ipv4Addr> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/net/route").ok()?;
        gateway_toward(&parse_routes(&text), server)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = server;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn the_gateway_is_asked_only_for_servers_behind_it() {
        let routes = parse_routes(TABLE);
        assert_eq!(routes.len(), 3);
        let gw = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(gateway_toward(&routes, "198.18.0.10".parse().unwrap()), gw);
        // On-link networks and loopback are not behind the gateway.
        assert_eq!(gateway_toward(&routes, "10.0.0.7".parse().unwrap()), None);
        assert_eq!(
            gateway_toward(&routes, "192.168.3.4".parse().unwrap()),
            None
        );
        assert_eq!(gateway_toward(&routes, "127.0.0.1".parse().unwrap()), None);
        // No default route: nobody to ask.
        assert_eq!(
            gateway_toward(
                &parse_routes(&TABLE.replace("0003", "0001")),
                "198.18.0.10".parse().unwrap()
            ),
            None
        );
    }
}
