//! One simulated NAT box and its mapping table: mapping behaviour (RFC 4787 §4.1), port
//! allocation (§4.2.1), refresh and timeout (§4.3), filtering (§5) and hairpinning (§6), plus the
//! Linux conntrack poisoning described in docs nat-lab.md. It translates addresses and decides
//! what passes; moving packets, TTL and latency belong to `net`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Which outbound flows share one mapping (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingMode {
    /// One public port per internal address:port, whatever the destination ("cone").
    EndpointIndependent,
    /// A new mapping per destination IP.
    AddressDependent,
    /// A new mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound packets an active mapping lets through (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilteringMode {
    /// Anyone may send to an active mapping ("full cone").
    EndpointIndependent,
    /// Only IPs the mapping has sent to ("restricted cone").
    AddressDependent,
    /// Only IP:port pairs the mapping has sent to ("port-restricted").
    AddressAndPortDependent,
}

/// How a new mapping picks its public port (RFC 4787 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Keep the internal port if free, else random (Linux masquerade).
    Preserving,
    /// A NAT-wide counter advancing by `delta` per new mapping, from 20000 (the nftables
    /// `numgen inc` map of nat-lab.md; shared by every host behind the NAT).
    Sequential { delta: u16 },
    /// Uniform over 1024..=65535 (`masquerade random`).
    Random,
    /// Uniform inside a block (CGNAT port blocks, the `jhash` map of the ADM recipe).
    RandomInRange { low: u16, high: u16 },
}

/// Everything that makes one NAT profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    pub public_ip: Ipv4Addr,
    pub mapping: MappingMode,
    pub filtering: FilteringMode,
    pub allocation: Allocation,
    /// Idle lifetime of a mapping, refreshed by outbound and by accepted inbound packets.
    pub timeout: Duration,
    pub hairpin: bool,
    /// The router accepts unsolicited packets for itself (no input filter), so they leave a
    /// conntrack entry behind: conntrack poisoning, nat-lab.md.
    pub accepts_input: bool,
    /// UDPBLK: every UDP datagram is dropped.
    pub drop_udp: bool,
}

/// Linux's `nf_conntrack_udp_timeout`. Shorter than the 2 minutes RFC 4787 §4.3 REQ-5 asks for,
/// as many deployed NATs are, so keepalives are exercised.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First port of the `numgen` and `jhash` maps and of the port blocks in nat-lab.md.
pub const PORT_BLOCK_BASE: u16 = 20000;
/// Lowest port Linux picks when it has to choose one itself.
const EPHEMERAL_LOW: u16 = 1024;

impl NatConfig {
    /// The named profiles of nat-lab.md: PRC, PRC_INPUT, RC, FC, RND, BLK, SEQ and SEQk, ADM,
    /// UDPBLK, HAIRPIN. None for an unknown name.
    pub fn profile(name: &str, public_ip: Ipv4Addr) -> Option<NatConfig> {
        let cone = |filtering| NatConfig {
            public_ip,
            mapping: MappingMode::EndpointIndependent,
            filtering,
            allocation: Allocation::Preserving,
            timeout: DEFAULT_TIMEOUT,
            hairpin: false,
            accepts_input: false,
            drop_udp: false,
        };
        // Plain conntrack filters every symmetric recipe by the full reply tuple.
        let symmetric = |allocation| NatConfig {
            mapping: MappingMode::AddressAndPortDependent,
            allocation,
            ..cone(FilteringMode::AddressAndPortDependent)
        };
        let port_restricted = cone(FilteringMode::AddressAndPortDependent);
        Some(match name {
            "PRC" => port_restricted,
            "PRC_INPUT" => NatConfig {
                accepts_input: true,
                ..port_restricted
            },
            "RC" => cone(FilteringMode::AddressDependent),
            "FC" => cone(FilteringMode::EndpointIndependent),
            "RND" => symmetric(Allocation::Random),
            "BLK" => symmetric(Allocation::RandomInRange {
                low: PORT_BLOCK_BASE,
                high: PORT_BLOCK_BASE + 511,
            }),
            "ADM" => NatConfig {
                mapping: MappingMode::AddressDependent,
                ..symmetric(Allocation::RandomInRange {
                    low: PORT_BLOCK_BASE,
                    high: PORT_BLOCK_BASE + 1023,
                })
            },
            "UDPBLK" => NatConfig {
                drop_udp: true,
                ..port_restricted
            },
            "HAIRPIN" => NatConfig {
                hairpin: true,
                ..port_restricted
            },
            _ => {
                let k = name.strip_prefix("SEQ")?;
                let delta = match k {
                    "" => 1,
                    _ if k.bytes().all(|b| b.is_ascii_digit()) => k.parse().ok()?,
                    _ => return None,
                };
                if delta == 0 {
                    return None;
                }
                symmetric(Allocation::Sequential { delta })
            }
        })
    }
}

/// Why a NAT did not pass a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatDrop {
    UdpBlocked,
    /// No free public port left for a new mapping.
    PortsExhausted,
    /// Inbound to an address that is not this NAT's public IP.
    NotOurAddress,
    /// Inbound to a public port with no active mapping.
    NoMapping,
    /// A mapping exists but its filter (RFC 4787 §5) refuses this source.
    Filtered,
    /// The router took the unsolicited packet for itself and now owns that flow (poisoning).
    AcceptedByRouter,
    /// Addressed to our own public IP from inside, and hairpinning is off (RFC 4787 §6).
    NoHairpin,
}

/// The destination part of a mapping key: what a new destination must share to reuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Toward {
    Anyone,
    Ip(IpAddr),
    Endpoint(SocketAddr),
}

/// (internal address:port, destination class).
type Key = (SocketAddr, Toward);

struct Mapping {
    public_port: u16,
    /// Every remote this mapping has sent to: what address filtering compares against.
    sent_to: BTreeSet<SocketAddr>,
    expires: Instant,
}

pub struct Nat {
    config: NatConfig,
    rng: ChaCha8Rng,
    mappings: BTreeMap<Key, Mapping>,
    /// Public port -> mapping; one mapping per public port.
    by_port: BTreeMap<u16, Key>,
    /// Conntrack entries the router itself owns, (remote, public port) -> expiry.
    router_flows: BTreeMap<(SocketAddr, u16), Instant>,
    /// The `numgen inc` counter; a conntrack flush does not reset it.
    sequence: u32,
    /// No entry expires before this, so purging can be skipped until then.
    purge_due: Option<Instant>,
    /// Port mappings a host asked for (UPnP/NAT-PMP/PCP): public port -> host. Whatever
    /// arrives there goes to the host, whatever the filter (miniupnpd's DNAT).
    forwards: BTreeMap<u16, SocketAddr>,
    /// Conntrack entries such a forward created, (host, remote) -> public port: replies
    /// leave from the forwarded port, not from a fresh mapping.
    forward_flows: BTreeMap<(SocketAddr, SocketAddr), u16>,
}

impl Nat {
    pub fn new(config: NatConfig, rng_seed: u64) -> Self {
        Nat {
            config,
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            mappings: BTreeMap::new(),
            by_port: BTreeMap::new(),
            router_flows: BTreeMap::new(),
            sequence: 0,
            purge_due: None,
            forwards: BTreeMap::new(),
            forward_flows: BTreeMap::new(),
        }
    }

    /// Forwards `public_port` to `host` (a granted port mapping); `None` removes it, as a
    /// router that forgets does.
    pub fn set_forward(&mut self, public_port: u16, host: Option<SocketAddr>) {
        match host {
            Some(h) => self.forwards.insert(public_port, h),
            None => self.forwards.remove(&public_port),
        };
        self.forward_flows
            .retain(|_, p| *p != public_port || host.is_some());
    }

    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    pub fn public_ip(&self) -> Ipv4Addr {
        self.config.public_ip
    }

    /// A datagram from inside (private src) to dst. Returns the public source it leaves with, or
    /// None if dropped.
    pub fn outbound(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.translate_outbound(src, dst, now).ok()
    }

    /// A datagram from outside `from` to our public address `to`. Returns the private
    /// destination, or None (filtered / no mapping).
    pub fn inbound(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.translate_inbound(from, to, now).ok()
    }

    /// A datagram from inside (src) to one of our own public mappings (dst): Some((translated
    /// public source, private destination)) when hairpinning is on.
    pub fn hairpin(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> Option<(SocketAddr, SocketAddr)> {
        self.translate_hairpin(src, dst, now).ok()
    }

    /// `outbound`, saying why on a drop.
    pub fn translate_outbound(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, NatDrop> {
        if self.config.drop_udp {
            return Err(NatDrop::UdpBlocked);
        }
        if let Some(&port) = self.forward_flows.get(&(src, dst)) {
            return Ok(SocketAddr::new(self.config.public_ip.into(), port));
        }
        self.purge(now);
        let expires = now + self.config.timeout;
        let found = self.find_outbound(src, dst);
        let mut key = found.unwrap_or_else(|| self.mode_key(src, dst));
        let port = match found {
            Some(key) => self.mappings[&key].public_port,
            None => self.allocate(src.port(), None)?,
        };
        let already_sent = found.is_some_and(|k| self.mappings[&k].sent_to.contains(&dst));
        if !already_sent && self.router_flows.contains_key(&(dst, port)) {
            // Not RFC 4787 but Linux: the reply tuple (dst -> public:port) is already the
            // router's own conntrack entry, so nf_nat gives this flow, and only this flow,
            // another port. The peer then sees a port it never punched toward.
            key = (src, Toward::Endpoint(dst));
            let fresh = self.allocate(src.port(), Some(port))?;
            self.insert(key, fresh, expires);
        } else if found.is_none() {
            self.insert(key, port, expires);
        }
        let mapping = self.mappings.get_mut(&key).expect("just found or inserted");
        // RFC 4787 §4.3 REQ-6: outbound packets refresh the mapping.
        mapping.sent_to.insert(dst);
        mapping.expires = expires;
        let public_port = mapping.public_port;
        self.note_expiry(expires);
        Ok(SocketAddr::new(self.config.public_ip.into(), public_port))
    }

    /// `inbound`, saying why on a drop.
    pub fn translate_inbound(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, NatDrop> {
        if self.config.drop_udp {
            return Err(NatDrop::UdpBlocked);
        }
        if to.ip() != IpAddr::V4(self.config.public_ip) {
            return Err(NatDrop::NotOurAddress);
        }
        if let Some(&host) = self.forwards.get(&to.port()) {
            self.forward_flows.insert((host, from), to.port());
            return Ok(host);
        }
        self.purge(now);
        let expires = now + self.config.timeout;
        let flow = (from, to.port());
        // Conntrack matches the exact tuple first: a flow the router owns stays the router's.
        let verdict = if self.router_flows.contains_key(&flow) {
            Err(NatDrop::AcceptedByRouter)
        } else {
            match self.by_port.get(&to.port()) {
                None => Err(NatDrop::NoMapping),
                Some(key) if self.filter_accepts(&self.mappings[key], from) => Ok(*key),
                Some(_) => Err(NatDrop::Filtered),
            }
        };
        match verdict {
            Ok(key) => {
                // RFC 4787 §4.3 allows inbound refresh; conntrack does it for any accepted packet.
                self.mappings.get_mut(&key).expect("indexed").expires = expires;
                Ok(key.0)
            }
            Err(_) if self.config.accepts_input => {
                self.router_flows.insert(flow, expires);
                self.note_expiry(expires);
                Err(NatDrop::AcceptedByRouter)
            }
            Err(reason) => Err(reason),
        }
    }

    /// `hairpin`, saying why on a drop.
    pub fn translate_hairpin(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now: Instant,
    ) -> Result<(SocketAddr, SocketAddr), NatDrop> {
        if self.config.drop_udp {
            return Err(NatDrop::UdpBlocked);
        }
        if dst.ip() != IpAddr::V4(self.config.public_ip) {
            return Err(NatDrop::NotOurAddress);
        }
        if !self.config.hairpin {
            return Err(NatDrop::NoHairpin);
        }
        // RFC 4787 §6 REQ-9: the receiver sees the sender's external address and port.
        let public_src = self.translate_outbound(src, dst, now)?;
        let key = *self.by_port.get(&dst.port()).ok_or(NatDrop::NoMapping)?;
        // The lab's hairpin recipe DNATs through the port map in prerouting, before any
        // conntrack filtering, so a hairpinned packet reaches any active mapping.
        self.mappings.get_mut(&key).expect("indexed").expires = now + self.config.timeout;
        Ok((public_src, key.0))
    }

    /// Drops every mapping and router-owned flow (NAT reboot, `conntrack -F`).
    pub fn flush(&mut self) {
        self.mappings.clear();
        self.by_port.clear();
        self.router_flows.clear();
        self.purge_due = None;
    }

    /// Flushes and moves to a new public address (ISP rebinding).
    pub fn set_public_ip(&mut self, ip: Ipv4Addr) {
        self.flush();
        self.config.public_ip = ip;
    }

    /// Mappings alive as of the last packet this NAT saw (expiry is lazy).
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }

    /// The public port a new flow from `src` to `dst` would reuse, if any, without sending.
    pub fn mapped_port(&self, src: SocketAddr, dst: SocketAddr) -> Option<u16> {
        self.find_outbound(src, dst)
            .map(|key| self.mappings[&key].public_port)
    }

    fn mode_key(&self, src: SocketAddr, dst: SocketAddr) -> Key {
        let toward = match self.config.mapping {
            MappingMode::EndpointIndependent => Toward::Anyone,
            MappingMode::AddressDependent => Toward::Ip(dst.ip()),
            MappingMode::AddressAndPortDependent => Toward::Endpoint(dst),
        };
        (src, toward)
    }

    /// A flow-specific mapping (APDM, or one forced by poisoning) wins over the mode's mapping.
    fn find_outbound(&self, src: SocketAddr, dst: SocketAddr) -> Option<Key> {
        [(src, Toward::Endpoint(dst)), self.mode_key(src, dst)]
            .into_iter()
            .find(|key| self.mappings.contains_key(key))
    }

    fn filter_accepts(&self, mapping: &Mapping, from: SocketAddr) -> bool {
        match self.config.filtering {
            FilteringMode::EndpointIndependent => true,
            FilteringMode::AddressDependent => mapping.sent_to.iter().any(|d| d.ip() == from.ip()),
            FilteringMode::AddressAndPortDependent => mapping.sent_to.contains(&from),
        }
    }

    fn insert(&mut self, key: Key, public_port: u16, expires: Instant) {
        if let Some(old) = self.mappings.get(&key) {
            self.by_port.remove(&old.public_port);
        }
        self.by_port.insert(public_port, key);
        let fresh = Mapping {
            public_port,
            sent_to: BTreeSet::new(),
            expires,
        };
        self.mappings.insert(key, fresh);
        self.note_expiry(expires);
    }

    /// Picks the public port of a new mapping (RFC 4787 §4.2.1). `avoid` is a port this flow
    /// must not get even if free (the poisoned one).
    fn allocate(&mut self, src_port: u16, avoid: Option<u16>) -> Result<u16, NatDrop> {
        match self.config.allocation {
            Allocation::Preserving if self.is_free(src_port, avoid) => Ok(src_port),
            Allocation::Preserving | Allocation::Random => {
                self.random_port(EPHEMERAL_LOW, u16::MAX, avoid)
            }
            Allocation::RandomInRange { low, high } => self.random_port(low, high, avoid),
            Allocation::Sequential { delta } => self.sequential_port(delta, avoid),
        }
    }

    fn is_free(&self, port: u16, avoid: Option<u16>) -> bool {
        Some(port) != avoid && !self.by_port.contains_key(&port)
    }

    fn random_port(&mut self, low: u16, high: u16, avoid: Option<u16>) -> Result<u16, NatDrop> {
        for _ in 0..64 {
            let port = self.rng.gen_range(low..=high);
            if self.is_free(port, avoid) {
                return Ok(port);
            }
        }
        // A nearly full range: scan from a random start so exhaustion is detected exactly.
        let span = u32::from(high - low) + 1;
        let start = self.rng.gen_range(0..span);
        (0..span)
            .map(|i| low + ((start + i) % span) as u16)
            .find(|&port| self.is_free(port, avoid))
            .ok_or(NatDrop::PortsExhausted)
    }

    /// The nftables `numgen inc` map: the counter advances once per new mapping, whoever asks,
    /// so two consecutive flows from one socket reveal `delta` (Wei et al.). A taken port is
    /// skipped by advancing again.
    fn sequential_port(&mut self, delta: u16, avoid: Option<u16>) -> Result<u16, NatDrop> {
        let span = u32::from(u16::MAX - PORT_BLOCK_BASE) + 1;
        for _ in 0..span {
            let port = PORT_BLOCK_BASE + (self.sequence * u32::from(delta) % span) as u16;
            self.sequence = (self.sequence + 1) % span;
            if self.is_free(port, avoid) {
                return Ok(port);
            }
        }
        Err(NatDrop::PortsExhausted)
    }

    fn note_expiry(&mut self, expires: Instant) {
        self.purge_due = Some(self.purge_due.map_or(expires, |due| due.min(expires)));
    }

    /// Removes expired mappings and router flows (RFC 4787 §4.3), at most once per expiry.
    fn purge(&mut self, now: Instant) {
        if self.purge_due.is_none_or(|due| now < due) {
            return;
        }
        let expired: Vec<Key> = self
            .mappings
            .iter()
            .filter(|(_, m)| m.expires <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            if let Some(m) = self.mappings.remove(&key) {
                self.by_port.remove(&m.public_port);
            }
        }
        self.router_flows.retain(|_, expires| *expires > now);
        self.purge_due = self
            .mappings
            .values()
            .map(|m| m.expires)
            .chain(self.router_flows.values().copied())
            .min();
    }
}
