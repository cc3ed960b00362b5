//! Linux: the IPv4 main table from `/proc/net/route` (what `ip route show table main` lists).
//! Addresses there are the kernel's in-memory u32s printed in hex, so the bytes are in network
//! order when read back in the host's byte order.

use super::Route;
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

const PROC_ROUTE: &str = "/proc/net/route";
/// `RTF_UP` in linux/route.h: the route is usable.
const RTF_UP: u32 = 0x1;
/// `RTF_GATEWAY`: the route goes through the gateway column.
const RTF_GATEWAY: u32 = 0x2;

/// Linux can answer both questions, so `up` checks collisions.
pub const COLLISION_CHECK_MISSING: Option<&str> = None;

pub fn table() -> Result<Vec<Route>> {
    let text =
        std::fs::read_to_string(PROC_ROUTE).with_context(|| format!("cannot read {PROC_ROUTE}"))?;
    Ok(parse(&text))
}

/// The kernel's own answer for `addr` over netlink; the main table's longest match when
/// netlink cannot be asked.
pub fn kernel_route(addr: Ipv4Addr) -> Result<Option<Route>> {
    match super::netlink::route_get(addr) {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::debug!(error = %e, "netlink route lookup failed; using the main table");
            Ok(super::lookup(&table()?, addr).cloned())
        }
    }
}

fn addr(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// The usable routes in the file's text; lines that do not parse are skipped.
fn parse(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_UP == 0 {
                return None;
            }
            let dest = Ipv4Net::with_netmask(addr(f[1])?, addr(f[7])?).ok()?;
            Some(Route {
                dest: dest.trunc(),
                // A route with no device (blackhole, unreachable, prohibit) shows as `*`.
                interface: if f[0] == "*" {
                    super::NO_DEVICE.to_string()
                } else {
                    f[0].to_string()
                },
                gateway: (flags & RTF_GATEWAY != 0).then(|| addr(f[2])).flatten(),
                metric: f[6].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
#[cfg(target_endian = "little")]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_file() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    down\t00004D0A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    *\t00054064\t00000000\t0201\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    junk\n";
        let routes = parse(text);
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].dest, "0.0.0.0/0".parse::<Ipv4Net>().unwrap());
        assert_eq!(routes[0].gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(routes[0].metric, 100);
        assert_eq!(routes[1].to_string(), "192.0.2.0/24 dev eth0");
        assert_eq!(routes[2].to_string(), "100.64.5.0/24 blackhole/unreachable");
    }
}
