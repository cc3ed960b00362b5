//! The address range of a network: parsing `--cidr` with errors that say what is wrong, and the
//! rule for which ranges a network may use. Pure: no I/O, unit-tested here.
//!
//! Every node routes its network's whole range into its TUN device, so a range that covers the
//! server, the loopback or the internet takes those away from every member. Only ranges meant for
//! private use are accepted by default: RFC 1918 (10/8, 172.16/12, 192.168/16) and the RFC 6598
//! shared space 100.64.0.0/10 that Tailscale also uses. (IPv6 ULA, RFC 4193, once IPv6 lands.)

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The smallest network: a /30 has two usable addresses.
pub const MAX_PREFIX: u8 = 30;

/// Parses `ADDRESS/PREFIX` for `--cidr`, naming the part that is wrong.
pub fn parse(text: &str) -> Result<Ipv4Net, String> {
    let text = text.trim();
    if text.contains(':') {
        return Err(format!(
            "{text} is an IPv6 range; networks are IPv4 only for now. Use a private IPv4 range, \
             e.g. 10.77.0.0/24"
        ));
    }
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(format!(
            "{text} has no prefix length: write ADDRESS/PREFIX, e.g. {text}/24"
        ));
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| {
        format!("{addr:?} is not an IPv4 address (four numbers 0-255, e.g. 10.77.0.0/24)")
    })?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("prefix /{prefix} is not a number from 0 to 32"))?;
    if prefix > 32 {
        return Err(format!(
            "prefix /{prefix} is too long: an IPv4 prefix is at most /32 (a network needs /{MAX_PREFIX} \
             or shorter, e.g. /24)"
        ));
    }
    if prefix > MAX_PREFIX {
        return Err(format!(
            "{text} is too small for a network: use a /{MAX_PREFIX} or larger, e.g. /24"
        ));
    }
    // ok: prefix <= 32 was checked above
    let net = Ipv4Net::new(addr, prefix).map_err(|e| e.to_string())?;
    if net.trunc() != net {
        return Err(format!(
            "{text} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Ranges a network may always use.
const PRIVATE: [(&str, &str); 4] = [
    ("10.0.0.0/8", "RFC 1918"),
    ("172.16.0.0/12", "RFC 1918"),
    ("192.168.0.0/16", "RFC 1918"),
    ("100.64.0.0/10", "RFC 6598 shared address space"),
];

/// Why a range is refused, and whether `--allow-public-range` may override it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    pub overridable: bool,
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap_or_default() // ok: only called on the constants in this file
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// Checks `range` against the rule above; `allow_public` lets public and link-local ranges
/// through, never those that can not work at all (the default route, loopback, multicast).
pub fn check(range: Ipv4Net, allow_public: bool) -> Result<(), Refusal> {
    let never: [(&str, &str); 4] = [
        (
            "0.0.0.0/8",
            "0.0.0.0/8 means \"this host\" and, as 0.0.0.0/0, every address: nodes would route \
             all their traffic, the server's included, into the network and lose the server",
        ),
        (
            "127.0.0.0/8",
            "127.0.0.0/8 is the loopback: every host already uses it for itself",
        ),
        (
            "224.0.0.0/4",
            "224.0.0.0/4 is multicast: it holds no host addresses",
        ),
        (
            "240.0.0.0/4",
            "240.0.0.0/4 is reserved (and holds the broadcast address): hosts cannot use it",
        ),
    ];
    for (special, why) in never {
        if overlaps(&range, &net(special)) {
            return Err(Refusal {
                why: format!("{range} overlaps {why}"),
                overridable: false,
            });
        }
    }
    if PRIVATE.iter().any(|(p, _)| net(p).contains(&range)) {
        return Ok(());
    }
    if allow_public {
        return Ok(());
    }
    let why = if overlaps(&range, &net("169.254.0.0/16")) {
        format!(
            "{range} overlaps 169.254.0.0/16, link-local addresses (RFC 3927) that hosts give \
             themselves and clouds use for their metadata service"
        )
    } else if let Some((p, rfc)) = PRIVATE
        .iter()
        .find(|(p, _)| range.contains(&net(p)) && range != net(p))
    {
        format!(
            "{range} is larger than the private range {p} ({rfc}) and covers public addresses \
             around it; use a range inside {p}"
        )
    } else {
        format!(
            "{range} is public address space, not a private range (RFC 1918 10.0.0.0/8, \
             172.16.0.0/12, 192.168.0.0/16, or RFC 6598 100.64.0.0/10): members would route \
             those internet addresses, possibly the server's own, into the network and stop \
             reaching the real hosts"
        )
    };
    Err(Refusal {
        why,
        overridable: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(parse("10.77.0.0/24"), Ok(p("10.77.0.0/24")));
        let err = |s: &str| parse(s).unwrap_err();
        assert!(
            err("10.0.0.0/33").contains("at most /32"),
            "{}",
            err("10.0.0.0/33")
        );
        assert!(err("10.77.0.0").contains("no prefix length"));
        assert!(err("10.77.0.0").contains("10.77.0.0/24"));
        assert!(err("fd00::/64").contains("IPv6"));
        assert!(err("10.0.0.300/24").contains("not an IPv4 address"));
        assert!(err("10.0.0.0/x").contains("not a number"));
        assert!(err("10.0.0.0/31").contains("too small"));
        assert!(err("10.0.0.1/24").contains("did you mean 10.0.0.0/24"));
    }

    #[test]
    fn private_and_cgnat_ranges_are_accepted() {
        for ok in [
            "10.77.0.0/24",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "172.31.255.0/24",
            "192.168.5.0/24",
            "100.64.0.0/10",
            "100.100.0.0/16",
        ] {
            assert_eq!(check(p(ok), false), Ok(()), "{ok}");
        }
    }

    #[test]
    fn public_and_link_local_need_the_flag() {
        for bad in [
            "8.8.8.0/24",
            "203.0.113.0/24",
            "172.32.0.0/16",
            "169.254.0.0/16",
            "10.0.0.0/7",
            "100.128.0.0/10",
        ] {
            let r = check(p(bad), false).unwrap_err();
            assert!(r.overridable, "{bad}");
            assert_eq!(check(p(bad), true), Ok(()), "{bad}");
        }
        assert!(check(p("10.0.0.0/7"), false)
            .unwrap_err()
            .why
            .contains("larger than the private range 10.0.0.0/8"));
        assert!(check(p("169.254.1.0/24"), false)
            .unwrap_err()
            .why
            .contains("link-local"));
        assert!(check(p("8.8.8.0/24"), false)
            .unwrap_err()
            .why
            .contains("public address space"));
    }

    #[test]
    fn ranges_that_never_work_are_refused_even_with_the_flag() {
        for (bad, says) in [
            ("0.0.0.0/0", "every address"),
            ("127.0.0.0/24", "loopback"),
            ("224.0.0.0/24", "multicast"),
            ("255.255.255.0/30", "reserved"),
            ("0.0.0.0/1", "every address"),
        ] {
            let r = check(p(bad), true).unwrap_err();
            assert!(!r.overridable, "{bad}");
            assert!(r.why.contains(says), "{bad}: {}", r.why);
        }
    }
}
