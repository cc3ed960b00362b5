//! IPv6 in the simulated network (issue 13 part 3): hosts with global IPv6 addresses, no NAT,
//! each optionally behind a stateful firewall that lets a datagram in only when the host sent
//! one from that local address to that remote address before (RFC 6092 §3.2.3, REC-11:
//! address- and port-dependent filtering of UDP). The firewall's state is checked when a
//! datagram arrives, not when it leaves, so two hosts whose first datagrams cross open each
//! other's firewalls as they would on the wire. One hop, `LATENCY`, no loss.

use super::{Datagram, Delivery, Hop, Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(20);
/// IPv6 (40) and UDP (8) headers around the payload.
const HEADERS: usize = 48;

#[derive(Default)]
pub struct Net6 {
    /// Host address -> firewalled?
    hosts: BTreeMap<Ipv6Addr, bool>,
    /// (local, remote) pairs a firewalled host sent from/to: what its firewall lets back in.
    established: BTreeSet<(SocketAddr, SocketAddr)>,
    pub filtered: u64,
}

impl Net {
    /// A host with a global IPv6 address, behind a stateful firewall when `firewall`.
    pub fn add_ipv6_host(&mut self, ip: Ipv6Addr, firewall: bool) {
        assert!(self.v6.hosts.insert(ip, firewall).is_none(), "{ip} twice");
    }

    /// Datagrams the IPv6 firewalls dropped (unsolicited).
    pub fn ipv6_filtered(&self) -> u64 {
        self.v6.filtered
    }

    pub(super) fn send6(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, now: Instant) {
        if self.mtu.is_some_and(|m| bytes.len() + HEADERS > m) {
            self.stats.too_big += 1;
            return;
        }
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (from.ip(), to.ip()) else {
            self.stats.unroutable += 1;
            return;
        };
        if !self.v6.hosts.contains_key(&src) || !self.v6.hosts.contains_key(&dst) {
            self.stats.unroutable += 1;
            return;
        }
        if self.v6.hosts[&src] {
            self.v6.established.insert((from, to));
        }
        let d = Datagram {
            src: from,
            dst: to,
            bytes,
            ttl: super::DEFAULT_TTL,
            hop: Hop::Firewall6,
        };
        self.schedule(now + LATENCY, d);
    }

    /// The datagram reaches the destination's firewall.
    pub(super) fn arrive6(&mut self, at: Instant, d: Datagram) -> Option<Delivery> {
        let firewalled =
            matches!(d.dst.ip(), IpAddr::V6(ip) if self.v6.hosts.get(&ip) == Some(&true));
        if firewalled && !self.v6.established.contains(&(d.dst, d.src)) {
            self.v6.filtered += 1;
            self.stats.filtered += 1;
            return None;
        }
        Some(Delivery {
            at,
            to: d.dst,
            from: d.src,
            bytes: d.bytes,
        })
    }
}
