//! A fake network for netcheck's tests: one NAT with RFC 4787's knobs (mapping, filtering, port
//! allocation, hairpinning, mapping lifetime) in front of the host, and the real `StunResponder`
//! behind a server that can misbehave. Deliveries take a fixed one-way delay on the caller's
//! virtual clock.

use crate::core::nat::{Filtering, Mapping};
use crate::core::stun::StunResponder;
use crate::core::transmit::{SocketId, Transmit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub(crate) const LOCAL_IP: &str = "10.0.0.2";
pub(crate) const PUBLIC_IP: &str = "203.0.113.5";
pub(crate) const SERVER: &str = "198.51.100.1:3478";
pub(crate) const SERVER2: &str = "198.51.100.2:3478";
pub(crate) const ONE_WAY: Duration = Duration::from_millis(15);

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Clone, Copy)]
pub(crate) enum Alloc {
    Preserve,
    Sequential(i32),
    Random,
}

#[derive(Clone, Copy)]
pub(crate) struct NatSpec {
    pub(crate) mapping: Mapping,
    pub(crate) filtering: Filtering,
    pub(crate) alloc: Alloc,
    pub(crate) hairpin: bool,
    pub(crate) lifetime: Option<Duration>,
}

pub(crate) struct NatMapping {
    pub(crate) local_port: u16,
    pub(crate) public_port: u16,
    pub(crate) contacted: Vec<SocketAddr>,
    pub(crate) last_out: Instant,
}

/// A NAT with one public IP, per RFC 4787's knobs.
pub(crate) struct FakeNat {
    pub(crate) spec: NatSpec,
    pub(crate) mappings: Vec<NatMapping>,
    /// Mapping keys (local port, destination as the mapping behaviour sees it) to index.
    pub(crate) keys: HashMap<(u16, Option<SocketAddr>), usize>,
    pub(crate) next_port: i32,
    pub(crate) rng: ChaCha8Rng,
}

impl FakeNat {
    pub(crate) fn new(spec: NatSpec) -> Self {
        FakeNat {
            spec,
            mappings: Vec::new(),
            keys: HashMap::new(),
            next_port: 20000,
            rng: ChaCha8Rng::seed_from_u64(99),
        }
    }

    pub(crate) fn key(&self, local_port: u16, dst: SocketAddr) -> (u16, Option<SocketAddr>) {
        let dst = match self.spec.mapping {
            Mapping::EndpointIndependent | Mapping::Unknown => None,
            Mapping::AddressDependent => Some(SocketAddr::new(dst.ip(), 0)),
            Mapping::AddressAndPortDependent => Some(dst),
        };
        (local_port, dst)
    }

    pub(crate) fn expired(&self, m: &NatMapping, now: Instant) -> bool {
        self.spec.lifetime.is_some_and(|l| now - m.last_out > l)
    }

    /// Outbound: the public port the datagram leaves from.
    pub(crate) fn outbound(&mut self, local_port: u16, dst: SocketAddr, now: Instant) -> u16 {
        let key = self.key(local_port, dst);
        if let Some(&i) = self.keys.get(&key) {
            if !self.expired(&self.mappings[i], now) {
                let m = &mut self.mappings[i];
                m.last_out = now;
                if !m.contacted.contains(&dst) {
                    m.contacted.push(dst);
                }
                return m.public_port;
            }
        }
        let public_port = match self.spec.alloc {
            Alloc::Preserve => local_port,
            Alloc::Sequential(delta) => {
                let p = self.next_port;
                self.next_port += delta;
                p as u16
            }
            Alloc::Random => self.rng.gen_range(1024..=65535),
        };
        self.keys.insert(key, self.mappings.len());
        self.mappings.push(NatMapping {
            local_port,
            public_port,
            contacted: vec![dst],
            last_out: now,
        });
        public_port
    }

    /// Inbound to `public_port` from `src`: the local port it reaches, if the filter allows.
    pub(crate) fn inbound(&self, public_port: u16, src: SocketAddr, now: Instant) -> Option<u16> {
        let m = self
            .mappings
            .iter()
            .rev()
            .find(|m| m.public_port == public_port && !self.expired(m, now))?;
        let allowed = match self.spec.filtering {
            Filtering::EndpointIndependent | Filtering::Unknown => true,
            Filtering::AddressDependent => m.contacted.iter().any(|c| c.ip() == src.ip()),
            Filtering::AddressAndPortDependent => m.contacted.contains(&src),
        };
        allowed.then_some(m.local_port)
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum ServerMode {
    Normal,
    /// Answers everything from the socket it arrived on (ignores CHANGE-REQUEST).
    IgnoresChange,
    /// Answers to the request's source even when it carries RESPONSE-PORT.
    IgnoresResponsePort,
    Silent,
}

pub(crate) struct World {
    pub(crate) nat: Option<FakeNat>,
    pub(crate) server: StunResponder,
    pub(crate) mode: ServerMode,
    pub(crate) ports: HashMap<SocketId, u16>,
    pub(crate) in_flight: Vec<(Instant, SocketId, SocketAddr, Vec<u8>)>,
    pub(crate) now: Instant,
}

impl World {
    pub(crate) fn public_ip(&self) -> IpAddr {
        if self.nat.is_some() {
            PUBLIC_IP
        } else {
            LOCAL_IP
        }
        .parse()
        .unwrap()
    }

    pub(crate) fn socket_of(&self, local_port: u16) -> Option<SocketId> {
        self.ports
            .iter()
            .find(|(_, p)| **p == local_port)
            .map(|(id, _)| *id)
    }

    /// Where a datagram to the host's public `dst` from `src` ends up, after the NAT. Like the
    /// lab's nftables recipe, hairpinned traffic skips the filter.
    pub(crate) fn deliver_to_host(&mut self, dst: SocketAddr, src: SocketAddr, bytes: Vec<u8>) {
        if dst.ip() != self.public_ip() {
            return;
        }
        let hairpin = src.ip() == self.public_ip();
        let local_port = match &self.nat {
            Some(nat) if hairpin => match nat.mappings.iter().find(|m| m.public_port == dst.port())
            {
                Some(m) => m.local_port,
                None => return,
            },
            Some(nat) => match nat.inbound(dst.port(), src, self.now) {
                Some(p) => p,
                None => return,
            },
            None => dst.port(),
        };
        if let Some(socket) = self.socket_of(local_port) {
            self.in_flight
                .push((self.now + ONE_WAY, socket, src, bytes));
        }
    }

    pub(crate) fn send(&mut self, t: Transmit) {
        let Some(&local_port) = self.ports.get(&t.socket) else {
            return;
        };
        let public_port = match &mut self.nat {
            Some(nat) => nat.outbound(local_port, t.dst, self.now),
            None => local_port,
        };
        let src = SocketAddr::new(self.public_ip(), public_port);
        if t.dst.ip() == self.public_ip() {
            // Hairpin: only a NAT that supports it (or no NAT) turns it around.
            if self.nat.as_ref().is_none_or(|n| n.spec.hairpin) {
                self.deliver_to_host(t.dst, src, t.payload);
            }
            return;
        }
        if self.mode == ServerMode::Silent {
            return;
        }
        if let Some(mut reply) = self.server.respond(t.dst, src, &t.payload) {
            match self.mode {
                ServerMode::IgnoresChange => reply.via = t.dst,
                ServerMode::IgnoresResponsePort => reply.to = src,
                _ => {}
            }
            self.deliver_to_host(reply.to, reply.via, reply.bytes);
        }
    }
}
