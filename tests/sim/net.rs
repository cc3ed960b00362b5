//! The simulated network between hosts: which address lives where (the internet, or the LAN
//! behind a NAT, possibly behind another NAT), datagrams in flight on a virtual clock, per-link
//! latency and seeded loss, IP TTL, and drop counters. It moves (from, to, bytes, ttl) and knows
//! nothing about p2pvpn; the NAT boxes themselves are `nat::Nat`.
//!
//! Every address is unique across the whole network (give each LAN its own subnet), so a
//! sender is identified by its address alone.

// A child module (it reaches `Net`'s fields); by path, so benches and alloc_steady that
// include this file by path find it too.
#[path = "net6.rs"]
mod v6;

use crate::nat::{Nat, NatConfig, NatDrop};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// TTL when the sender does not set one (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(pub usize);

/// Where an address is reachable without crossing a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Realm {
    Internet,
    Lan(NatId),
}

/// One access link: a NAT's WAN side or a public host's line.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    latency: Duration,
    loss: f64,
}

struct Router {
    nat: Nat,
    /// The realm the NAT's public address lives in: the internet, or the outer NAT's LAN (CGN).
    wan: Realm,
    link: Link,
}

/// What happens to a datagram when its event fires.
#[derive(Clone, Copy, Debug)]
enum Hop {
    /// Routed inside a realm (a LAN switch, or the internet core).
    In(Realm),
    /// Arrives at a NAT's WAN side from outside.
    AtNat(NatId),
    /// Handed to the receiving socket.
    Arrive,
    /// Arrives at an IPv6 host's stateful firewall (`v6`).
    Firewall6,
}

struct Datagram {
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
    ttl: u8,
    hop: Hop,
}

/// A datagram handed to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub at: Instant,
    /// The receiving local socket address.
    pub to: SocketAddr,
    /// The source as seen by the receiver (after every translation).
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What became of every datagram sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub delivered: u64,
    pub lost: u64,
    pub ttl_expired: u64,
    pub filtered: u64,
    pub no_mapping: u64,
    pub udp_blocked: u64,
    /// Taken by a router for itself (and left a poisoning conntrack entry).
    pub accepted_by_router: u64,
    pub no_hairpin: u64,
    pub ports_exhausted: u64,
    /// From or to an address nobody owns.
    pub unroutable: u64,
    /// Dropped by `Net::block`.
    pub blocked: u64,
    /// Datagrams above the path MTU (`set_mtu`).
    pub too_big: u64,
}

pub struct Net {
    rng: ChaCha8Rng,
    routers: Vec<Router>,
    /// Host addresses: public hosts live in the internet, private ones in a NAT's LAN.
    hosts: BTreeMap<Ipv4Addr, Realm>,
    public_links: BTreeMap<Ipv4Addr, Link>,
    /// Datagrams in flight, by (event time, send sequence): FIFO among equal times.
    in_flight: BTreeMap<(Instant, u64), Datagram>,
    sequence: u64,
    blocked: BTreeSet<(NatId, NatId)>,
    stats: NetStats,
    /// The smallest link MTU on every path (IPv4 + UDP headers included), if any: a larger
    /// datagram vanishes without an ICMP message (a black hole).
    mtu: Option<usize>,
    /// The IPv6 hosts and their firewalls.
    v6: v6::Net6,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Net {
            rng: ChaCha8Rng::seed_from_u64(seed),
            routers: Vec::new(),
            hosts: BTreeMap::new(),
            public_links: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            stats: NetStats::default(),
            mtu: None,
            v6: v6::Net6::default(),
        }
    }

    /// A host address on the internet (a server address, an open host).
    pub fn add_public_ip(&mut self, ip: Ipv4Addr) {
        self.claim(ip);
        self.hosts.insert(ip, Realm::Internet);
    }

    /// A NAT whose public address is on the internet, or in `parent`'s LAN (CGN).
    pub fn add_nat(&mut self, config: NatConfig, parent: Option<NatId>) -> NatId {
        self.claim(config.public_ip);
        let seed = self.rng.gen();
        self.routers.push(Router {
            nat: Nat::new(config, seed),
            wan: parent.map_or(Realm::Internet, Realm::Lan),
            link: Link::default(),
        });
        NatId(self.routers.len() - 1)
    }

    /// A host's LAN address behind `behind`.
    pub fn add_private_host_ip(&mut self, ip: Ipv4Addr, behind: NatId) {
        self.claim(ip);
        self.hosts.insert(ip, Realm::Lan(behind));
    }

    /// Latency and loss for every packet crossing `nat`'s WAN link, either way.
    pub fn set_link(&mut self, nat: NatId, latency: Duration, loss: f64) {
        self.routers[nat.0].link = Link { latency, loss };
    }

    /// Latency and loss for every packet to or from the public host `ip`.
    pub fn set_public_link(&mut self, ip: Ipv4Addr, latency: Duration, loss: f64) {
        self.public_links.insert(ip, Link { latency, loss });
    }

    /// Blackholes (`on`) or restores traffic between two NATs' public addresses on the
    /// internet. For a CGN pass the outer NATs.
    pub fn block(&mut self, a: NatId, b: NatId, on: bool) {
        let pair = (a.min(b), a.max(b));
        if on {
            self.blocked.insert(pair);
        } else {
            self.blocked.remove(&pair);
        }
    }

    pub fn nat(&self, id: NatId) -> &Nat {
        &self.routers[id.0].nat
    }

    pub fn nat_mut(&mut self, id: NatId) -> &mut Nat {
        &mut self.routers[id.0].nat
    }

    /// The NAT gets a new public address and loses every mapping (ISP rebinding).
    pub fn rebind_nat(&mut self, id: NatId, public_ip: Ipv4Addr) {
        self.claim(public_ip);
        self.routers[id.0].nat.set_public_ip(public_ip);
    }

    /// The address the internet sees a host at: its own if public, else its outermost NAT's
    /// public address (what a server sees as the source of the host's TCP connection).
    pub fn public_ip_of(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        let mut realm = *self.hosts.get(&ip)?;
        let mut seen = ip;
        while let Realm::Lan(id) = realm {
            let router = &self.routers[id.0];
            seen = router.nat.public_ip();
            realm = router.wan;
        }
        Some(seen)
    }

    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Every path carries IPv4 datagrams of at most `mtu` bytes (headers included); larger
    /// ones are dropped silently and counted as `too_big`.
    pub fn set_mtu(&mut self, mtu: Option<usize>) {
        self.mtu = mtu;
    }

    /// Sends a datagram from a host socket. The sender's own LAN hop is instant, so its NAT
    /// translates at `now`; every WAN link crossed adds its latency.
    pub fn send(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        ttl: Option<u8>,
        now: Instant,
    ) {
        if from.is_ipv6() {
            return self.send6(from, to, bytes, now);
        }
        // IPv4 (20) and UDP (8) headers around the payload.
        if self.mtu.is_some_and(|m| bytes.len() + 28 > m) {
            self.stats.too_big += 1;
            return;
        }
        let Some(realm) = v4(from).and_then(|ip| self.hosts.get(&ip).copied()) else {
            self.stats.unroutable += 1;
            return;
        };
        let datagram = Datagram {
            src: from,
            dst: to,
            bytes,
            ttl: ttl.unwrap_or(DEFAULT_TTL),
            hop: Hop::In(realm),
        };
        match realm {
            Realm::Internet => {
                let link = self.public_link(from);
                self.cross(link, now, datagram);
            }
            Realm::Lan(_) => self.schedule(now, datagram),
        }
    }

    /// Never later than the next delivery: the time of the next event of any datagram in
    /// flight. Polling then may yield nothing (the datagram was dropped or moved one hop on).
    pub fn next_delivery_time(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// Runs events due by `now` in order and stops at the first delivery, so a driver can answer
    /// it before later events (and NAT state) are processed.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Delivery> {
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                return None;
            }
            let ((at, _), datagram) = entry.remove_entry();
            if let Some(delivery) = self.step(at, datagram) {
                self.stats.delivered += 1;
                return Some(delivery);
            }
        }
        None
    }

    fn step(&mut self, at: Instant, mut d: Datagram) -> Option<Delivery> {
        match d.hop {
            Hop::Arrive => {
                return Some(Delivery {
                    at,
                    to: d.dst,
                    from: d.src,
                    bytes: d.bytes,
                })
            }
            Hop::AtNat(id) => {
                // Prerouting sees the packet (refresh, or poisoning) before the forward path
                // checks its TTL, as in Linux.
                match self.routers[id.0].nat.translate_inbound(d.src, d.dst, at) {
                    Ok(private) if self.forward(&mut d) => {
                        d.dst = private;
                        d.hop = Hop::In(Realm::Lan(id));
                        self.schedule(at, d);
                    }
                    Ok(_) => {}
                    Err(drop) => self.count(drop),
                }
            }
            Hop::In(realm) => self.route(at, realm, d),
            Hop::Firewall6 => return self.arrive6(at, d),
        }
        None
    }

    fn route(&mut self, at: Instant, realm: Realm, mut d: Datagram) {
        let Some(dst_ip) = v4(d.dst) else {
            self.stats.unroutable += 1;
            return;
        };
        if realm == Realm::Internet {
            // The internet core is one more router on every path.
            if !self.forward(&mut d) {
                return;
            }
            if self.is_blocked(d.src, d.dst) {
                self.stats.blocked += 1;
                return;
            }
        }
        if let Realm::Lan(id) = realm {
            if dst_ip == self.routers[id.0].nat.public_ip() {
                return self.hairpin(at, id, d);
            }
        }
        if self.hosts.get(&dst_ip) == Some(&realm) {
            d.hop = Hop::Arrive;
            match realm {
                Realm::Internet => {
                    let link = self.public_link(d.dst);
                    self.cross(link, at, d);
                }
                // Same LAN: switched, no router, no translation, no TTL decrement.
                Realm::Lan(_) => self.schedule(at, d),
            }
        } else if let Some(id) = self.nat_at(realm, dst_ip) {
            d.hop = Hop::AtNat(id);
            let link = self.routers[id.0].link;
            self.cross(link, at, d);
        } else if let Realm::Lan(id) = realm {
            // Out through this LAN's NAT. TTL first: a packet that dies here is never
            // translated, so it creates no mapping (conntrack never confirms the entry).
            if !self.forward(&mut d) {
                return;
            }
            let router = &mut self.routers[id.0];
            match router.nat.translate_outbound(d.src, d.dst, at) {
                Ok(public) => {
                    d.src = public;
                    d.hop = Hop::In(router.wan);
                    let link = router.link;
                    self.cross(link, at, d);
                }
                Err(drop) => self.count(drop),
            }
        } else {
            self.stats.unroutable += 1;
        }
    }

    fn hairpin(&mut self, at: Instant, id: NatId, mut d: Datagram) {
        if !self.forward(&mut d) {
            return;
        }
        match self.routers[id.0].nat.translate_hairpin(d.src, d.dst, at) {
            Ok((public_src, private_dst)) => {
                d.src = public_src;
                d.dst = private_dst;
                self.schedule(at, d);
            }
            Err(drop) => self.count(drop),
        }
    }

    /// One router hop: decrement TTL, or drop the datagram when it would reach zero.
    fn forward(&mut self, d: &mut Datagram) -> bool {
        if d.ttl <= 1 {
            self.stats.ttl_expired += 1;
            return false;
        }
        d.ttl -= 1;
        true
    }

    fn cross(&mut self, link: Link, at: Instant, d: Datagram) {
        if link.loss > 0.0 && self.rng.gen_bool(link.loss.min(1.0)) {
            self.stats.lost += 1;
            return;
        }
        self.schedule(at + link.latency, d);
    }

    fn schedule(&mut self, at: Instant, d: Datagram) {
        self.sequence += 1;
        self.in_flight.insert((at, self.sequence), d);
    }

    fn count(&mut self, drop: NatDrop) {
        let s = &mut self.stats;
        *match drop {
            NatDrop::UdpBlocked => &mut s.udp_blocked,
            NatDrop::PortsExhausted => &mut s.ports_exhausted,
            NatDrop::NotOurAddress => &mut s.unroutable,
            NatDrop::NoMapping => &mut s.no_mapping,
            NatDrop::Filtered => &mut s.filtered,
            NatDrop::AcceptedByRouter => &mut s.accepted_by_router,
            NatDrop::NoHairpin => &mut s.no_hairpin,
        } += 1;
    }

    fn nat_at(&self, realm: Realm, ip: Ipv4Addr) -> Option<NatId> {
        self.routers
            .iter()
            .position(|r| r.wan == realm && r.nat.public_ip() == ip)
            .map(NatId)
    }

    fn is_blocked(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        let (Some(a), Some(b)) = (
            v4(src).and_then(|ip| self.nat_at(Realm::Internet, ip)),
            v4(dst).and_then(|ip| self.nat_at(Realm::Internet, ip)),
        ) else {
            return false;
        };
        self.blocked.contains(&(a.min(b), a.max(b)))
    }

    fn public_link(&self, addr: SocketAddr) -> Link {
        v4(addr)
            .and_then(|ip| self.public_links.get(&ip).copied())
            .unwrap_or_default()
    }

    fn claim(&self, ip: Ipv4Addr) {
        let taken =
            self.hosts.contains_key(&ip) || self.routers.iter().any(|r| r.nat.public_ip() == ip);
        assert!(!taken, "{ip} is already in the simulated network");
    }
}

fn v4(addr: SocketAddr) -> Option<Ipv4Addr> {
    match addr.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}
