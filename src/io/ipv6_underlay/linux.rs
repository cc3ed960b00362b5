//! Linux: the host's IPv6 addresses from /proc/net/if_inet6 (one line per address: 32 hex
//! digits, interface index, prefix length, scope, flags, name; see the kernel's
//! net/ipv6/addrconf.c `if6_seq_show`), and its fragmentation options (ipv6(7)).

use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

/// Address flags that make an address unusable as a candidate (include/uapi/linux/if_addr.h):
/// still in duplicate address detection, failed it, or deprecated (RFC 4862 §5.5.4).
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_DEPRECATED: u32 = 0x20;
const IFA_F_TENTATIVE: u32 = 0x40;
/// A privacy address (RFC 8981): offered after the stable ones.
const IFA_F_TEMPORARY: u32 = 0x01;

pub fn global_addresses() -> Vec<Ipv6Addr> {
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(text) => parse(&text),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read /proc/net/if_inet6");
            Vec::new()
        }
    }
}

fn parse(text: &str) -> Vec<Ipv6Addr> {
    let mut stable = Vec::new();
    let mut temporary = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _prefix, _scope, flags, ..] = fields[..] else {
            continue;
        };
        let (Ok(bits), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if hex.len() != 32 || flags & (IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE) != 0 {
            continue;
        }
        let ip = Ipv6Addr::from(bits);
        if flags & IFA_F_TEMPORARY != 0 {
            temporary.push(ip);
        } else {
            stable.push(ip);
        }
    }
    stable.extend(temporary);
    stable
}

/// With `dont_fragment`, IPV6_PMTUDISC_PROBE (datagrams leave at their size whatever the
/// kernel learned of the path, so the path MTU search measures the path); without it the
/// kernel's default, IPV6_PMTUDISC_WANT. IPV6_DONTFRAG off in both: quinn-udp turns it on for
/// QUIC, and with it a datagram larger than the link would fail locally instead of leaving as
/// it did before batching (ipv6(7)).
pub fn set_fragmentation(socket: &impl AsRawFd, dont_fragment: bool) -> std::io::Result<()> {
    let mode = if dont_fragment {
        libc::IPV6_PMTUDISC_PROBE
    } else {
        libc::IPV6_PMTUDISC_WANT
    };
    crate::os::set_int_sockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, mode)?;
    crate::os::set_int_sockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usable_addresses_stable_first() {
        let text = "\
20010db8000a00000000000000000011 03 40 00 01 eth0
20010db8000a00000000000000000010 03 40 00 80 eth0
fe800000000000000000000000000001 03 40 20 80 eth0
20010db8000a00000000000000000012 03 40 00 40 eth0
20010db8000a00000000000000000013 03 40 00 20 eth0
00000000000000000000000000000001 01 80 10 80 lo
garbage
";
        let got = parse(text);
        let want: Vec<Ipv6Addr> = ["2001:db8:a::10", "fe80::1", "::1", "2001:db8:a::11"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }
}
