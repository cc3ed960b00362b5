//! Port mapping: asking the default gateway to forward a public port to this node's UDP socket.
//! The mapped address is a candidate that a peer behind any NAT can reach, because the gateway
//! forwards to us whatever arrives there (the mapping behaves like an endpoint-independent
//! mapping with endpoint-independent filtering, RFC 4787 §4.1 and §5).
//!
//! This module holds the sans-IO part: the NAT-PMP (RFC 6886) and PCP (RFC 6887) codecs and the
//! names of the protocols. The sockets, retries and renewals live in `io::portmap`; UPnP IGD goes
//! through the `igd-next` crate there (its HTTP/SOAP client is not worth rewriting).

pub mod natpmp;
pub mod pcp;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The UDP port PCP and NAT-PMP servers listen on (RFC 6887 §19.1, RFC 6886 §3).
pub const SERVER_PORT: u16 = 5351;

/// Which protocol made a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapProtocol {
    Pcp,
    NatPmp,
    Upnp,
}

impl MapProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            MapProtocol::Pcp => "PCP",
            MapProtocol::NatPmp => "NAT-PMP",
            MapProtocol::Upnp => "UPnP",
        }
    }
}

impl fmt::Display for MapProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mapping the gateway granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub protocol: MapProtocol,
    /// The public address peers send to.
    pub external: SocketAddr,
    /// How long the gateway keeps it without a renewal; zero means until deleted (UPnP
    /// permanent leases).
    pub lifetime: Duration,
}

/// A renewal is due at half the lifetime (RFC 6886 §3.3 and RFC 6887 §11.2.1 both renew well
/// before expiry), and at least every `MAX_RENEW` so a gateway that forgot the mapping (a reboot,
/// a flushed table) is asked again soon: the renewal re-creates it.
pub const MAX_RENEW: Duration = Duration::from_secs(120);
/// Renewals never come faster than this, whatever lifetime the gateway grants.
pub const MIN_RENEW: Duration = Duration::from_secs(10);

pub fn renew_after(lifetime: Duration) -> Duration {
    if lifetime.is_zero() {
        return MAX_RENEW;
    }
    (lifetime / 2).clamp(MIN_RENEW, MAX_RENEW)
}

/// Which mapping protocols the gateway answered (`netcheck`), without making a mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Offered {
    /// The default gateway asked; none when the server is not reached through one (loopback,
    /// a local network, no default route), and then nothing was asked.
    pub gateway: Option<std::net::Ipv4Addr>,
    pub upnp: bool,
    pub nat_pmp: bool,
    pub pcp: bool,
}

impl Offered {
    /// The netcheck line, in the report's layout (label padded to 18).
    pub fn render(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let value = match self.gateway {
            None => "not asked (the server is not reached through a default gateway)".to_string(),
            Some(gw) => format!(
                "UPnP {}, NAT-PMP {}, PCP {} (gateway {gw})",
                yn(self.upnp),
                yn(self.nat_pmp),
                yn(self.pcp)
            ),
        };
        format!("{:<18}{value}\n", "port mapping")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netcheck_names_each_protocol() {
        let o = Offered {
            gateway: Some("10.0.0.1".parse().unwrap()),
            upnp: true,
            nat_pmp: false,
            pcp: true,
        };
        assert_eq!(
            o.render(),
            "port mapping      UPnP yes, NAT-PMP no, PCP yes (gateway 10.0.0.1)\n"
        );
        assert!(Offered::default().render().contains("not asked"));
    }

    #[test]
    fn renewal_comes_at_half_life_within_bounds() {
        assert_eq!(renew_after(Duration::from_secs(7200)), MAX_RENEW);
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(renew_after(Duration::from_secs(4)), MIN_RENEW);
        assert_eq!(renew_after(Duration::ZERO), MAX_RENEW);
    }
}
