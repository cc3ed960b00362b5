//! Gives the TUN device its IPv6 overlay address. With the address and its /64 the kernel adds
//! the prefix route itself (Linux, macOS and Windows alike), so no separate route is needed.
//!
//! Linux first sets the interface's IPv6 knobs: IPv6 on (a host or namespace may default it
//! off), no duplicate address detection (RFC 4862 §5.4: the server allocated the address, and
//! the 1 s DAD delay would leave it "tentative" and unusable as a source meanwhile), and no router
//! solicitations or advertisements (no router lives in the overlay).

use anyhow::{Context, Result};
use ipnet::Ipv6Net;
use tun_rs::AsyncDevice;

pub fn add(device: &AsyncDevice, name: &str, net: Ipv6Net) -> Result<()> {
    knobs::prepare(name)?;
    device
        .add_address_v6(net.addr(), net.prefix_len())
        .with_context(|| format!("cannot give TUN device {name} the IPv6 address {net}"))
}

#[cfg(target_os = "linux")]
mod knobs {
    use anyhow::{Context, Result};

    pub fn prepare(name: &str) -> Result<()> {
        // An administrator's "no IPv6 here" stands: the overlay is not a reason to override it.
        let all = "/proc/sys/net/ipv6/conf/all/disable_ipv6";
        if std::fs::read_to_string(all).is_ok_and(|v| v.trim() == "1") {
            anyhow::bail!(
                "IPv6 is disabled on this host ({all} is 1), so {name} gets no IPv6 address; \
                 to use the network's IPv6 overlay, run `sysctl -w \
                 net.ipv6.conf.all.disable_ipv6=0` and restart `p2pvpn up`"
            );
        }
        for (knob, value) in [
            ("disable_ipv6", "0"),
            ("accept_dad", "0"),
            ("accept_ra", "0"),
            ("router_solicitations", "0"),
        ] {
            let path = format!("/proc/sys/net/ipv6/conf/{name}/{knob}");
            std::fs::write(&path, value).with_context(|| {
                format!(
                    "cannot set {path} to {value} for the IPv6 overlay (is IPv6 disabled on \
                     this host, e.g. ipv6.disable=1 on the kernel command line?)"
                )
            })?;
        }
        Ok(())
    }
}

/// macOS and Windows: tun-rs adds the address; there are no per-interface knobs to set first.
#[cfg(not(target_os = "linux"))]
mod knobs {
    pub fn prepare(_name: &str) -> anyhow::Result<()> {
        Ok(())
    }
}
