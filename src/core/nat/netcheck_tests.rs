//! Netcheck against a fake NAT and the real `StunResponder`, on a virtual clock: every RFC 4787
//! behaviour the classifier must name, deterministically.

use super::*;
use crate::core::nat::Mapping;
use crate::core::stun::StunResponder;
use rand::{Rng, SeedableRng};
use std::net::IpAddr;
use std::time::Duration;

const LOCAL_IP: &str = "10.0.0.2";
const PUBLIC_IP: &str = "203.0.113.5";
const SERVER: &str = "198.51.100.1:3478";
const SERVER2: &str = "198.51.100.2:3478";
const ONE_WAY: Duration = Duration::from_millis(15);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Clone, Copy)]
enum Alloc {
    Preserve,
    Sequential(i32),
    Random,
}

#[derive(Clone, Copy)]
struct NatSpec {
    mapping: Mapping,
    filtering: Filtering,
    alloc: Alloc,
    hairpin: bool,
    lifetime: Option<Duration>,
}

struct NatMapping {
    local_port: u16,
    public_port: u16,
    contacted: Vec<SocketAddr>,
    last_out: Instant,
}

/// A NAT with one public IP, per RFC 4787's knobs.
struct FakeNat {
    spec: NatSpec,
    mappings: Vec<NatMapping>,
    /// Mapping keys (local port, destination as the mapping behaviour sees it) to index.
    keys: HashMap<(u16, Option<SocketAddr>), usize>,
    next_port: i32,
    rng: ChaCha8Rng,
}

impl FakeNat {
    fn new(spec: NatSpec) -> Self {
        FakeNat {
            spec,
            mappings: Vec::new(),
            keys: HashMap::new(),
            next_port: 20000,
            rng: ChaCha8Rng::seed_from_u64(99),
        }
    }

    fn key(&self, local_port: u16, dst: SocketAddr) -> (u16, Option<SocketAddr>) {
        let dst = match self.spec.mapping {
            Mapping::EndpointIndependent | Mapping::Unknown => None,
            Mapping::AddressDependent => Some(SocketAddr::new(dst.ip(), 0)),
            Mapping::AddressAndPortDependent => Some(dst),
        };
        (local_port, dst)
    }

    fn expired(&self, m: &NatMapping, now: Instant) -> bool {
        self.spec.lifetime.is_some_and(|l| now - m.last_out > l)
    }

    /// Outbound: the public port the datagram leaves from.
    fn outbound(&mut self, local_port: u16, dst: SocketAddr, now: Instant) -> u16 {
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
    fn inbound(&self, public_port: u16, src: SocketAddr, now: Instant) -> Option<u16> {
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
enum ServerMode {
    Normal,
    /// Answers everything from the socket it arrived on (ignores CHANGE-REQUEST).
    IgnoresChange,
    Silent,
}

struct World {
    nat: Option<FakeNat>,
    server: StunResponder,
    mode: ServerMode,
    ports: HashMap<SocketId, u16>,
    in_flight: Vec<(Instant, SocketId, SocketAddr, Vec<u8>)>,
    now: Instant,
}

impl World {
    fn public_ip(&self) -> IpAddr {
        if self.nat.is_some() {
            PUBLIC_IP
        } else {
            LOCAL_IP
        }
        .parse()
        .unwrap()
    }

    fn socket_of(&self, local_port: u16) -> Option<SocketId> {
        self.ports
            .iter()
            .find(|(_, p)| **p == local_port)
            .map(|(id, _)| *id)
    }

    /// Where a datagram to the host's public `dst` from `src` ends up, after the NAT. Like the
    /// lab's nftables recipe, hairpinned traffic skips the filter.
    fn deliver_to_host(&mut self, dst: SocketAddr, src: SocketAddr, bytes: Vec<u8>) {
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

    fn send(&mut self, t: Transmit) {
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
            if self.mode == ServerMode::IgnoresChange {
                reply.via = t.dst;
            }
            self.deliver_to_host(reply.to, reply.via, reply.bytes);
        }
    }
}

fn run_with(
    nat: Option<NatSpec>,
    servers: &[&str],
    mode: ServerMode,
    tweak: impl FnOnce(&mut NetcheckConfig),
) -> (NetcheckReport, Duration, Vec<String>) {
    let start = crate::io::test_epoch();
    let server_addrs: Vec<SocketAddr> = servers.iter().map(|s| addr(s)).collect();
    let mut world = World {
        nat: nat.map(FakeNat::new),
        server: StunResponder::new(&server_addrs, None).unwrap(),
        mode,
        ports: HashMap::from([(SocketId::MAIN, 5000)]),
        in_flight: Vec::new(),
        now: start,
    };
    let mut config = NetcheckConfig::new(server_addrs[0]);
    tweak(&mut config);
    let mut nc = Netcheck::new(config, ChaCha8Rng::seed_from_u64(7), start);
    nc.handle_socket_opened(SocketId::MAIN, addr(&format!("{LOCAL_IP}:5000")));
    let mut progress = Vec::new();
    for _ in 0..100_000 {
        while let Some(cmd) = nc.poll_socket_command() {
            match cmd {
                SocketCommand::Open(id) => {
                    let port = 40000 + id.0 * 3;
                    world.ports.insert(id, port);
                    nc.handle_socket_opened(id, addr(&format!("{LOCAL_IP}:{port}")));
                }
                SocketCommand::Close(id) => {
                    world.ports.remove(&id);
                }
            }
        }
        while let Some(t) = nc.poll_transmit() {
            world.send(t);
        }
        while let Some(p) = nc.poll_progress() {
            progress.push(p);
        }
        if let Some(report) = nc.report() {
            return (report.clone(), world.now - start, progress);
        }
        let next_delivery = world.in_flight.iter().map(|d| d.0).min();
        let next = match (next_delivery, nc.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("netcheck waits for something"),
        };
        world.now = world.now.max(next);
        let now = world.now;
        if let Some(i) = world.in_flight.iter().position(|d| d.0 <= now) {
            let (_, socket, from, bytes) = world.in_flight.remove(i);
            if world.ports.contains_key(&socket) {
                nc.handle_datagram(socket, from, &bytes, now);
            }
        } else {
            nc.handle_timeout(now);
        }
    }
    panic!("netcheck did not finish");
}

fn run(nat: Option<NatSpec>) -> NetcheckReport {
    run_with(nat, &[SERVER, SERVER2], ServerMode::Normal, |_| {}).0
}

fn nat(mapping: Mapping, filtering: Filtering, alloc: Alloc) -> Option<NatSpec> {
    Some(NatSpec {
        mapping,
        filtering,
        alloc,
        hairpin: false,
        lifetime: None,
    })
}

#[test]
fn no_nat_is_open_internet() {
    let (r, took, progress) = run_with(None, &[SERVER, SERVER2], ServerMode::Normal, |_| {});
    assert_eq!(r.profile.behind_nat, Some(false));
    assert_eq!(r.profile.public, Some(addr("10.0.0.2:5000")));
    assert_eq!(r.profile.mapping, Mapping::EndpointIndependent);
    assert_eq!(r.profile.filtering, Filtering::EndpointIndependent);
    assert_eq!(r.profile.allocation, PortAllocation::Preserving);
    assert_eq!(r.profile.hairpin, Some(true));
    assert_eq!(r.legacy_class, Some(0));
    assert!(r.rfc5780);
    assert_eq!(r.other_address, Some(addr("198.51.100.2:3479")));
    assert_eq!(r.observed_ports.len(), 12);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    // Everything answers, so it takes round trips, not timeouts.
    assert!(took < Duration::from_millis(600), "{took:?}");
    assert_eq!(progress.last().map(String::as_str), Some("done"));
}

#[test]
fn port_restricted_cone() {
    let r = run(nat(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
        Alloc::Preserve,
    ));
    assert_eq!(r.profile.behind_nat, Some(true));
    assert_eq!(r.profile.public, Some(addr("203.0.113.5:5000")));
    assert_eq!(r.profile.mapping, Mapping::EndpointIndependent);
    assert_eq!(r.profile.filtering, Filtering::AddressAndPortDependent);
    assert_eq!(r.profile.allocation, PortAllocation::Preserving);
    assert_eq!(r.profile.hairpin, Some(false));
    assert_eq!(r.legacy_class, Some(5));
}

#[test]
fn full_and_restricted_cones() {
    let full = run(nat(
        Mapping::EndpointIndependent,
        Filtering::EndpointIndependent,
        Alloc::Preserve,
    ));
    assert_eq!(full.legacy_class, Some(1));
    let restricted = run(nat(
        Mapping::EndpointIndependent,
        Filtering::AddressDependent,
        Alloc::Random,
    ));
    assert_eq!(restricted.profile.filtering, Filtering::AddressDependent);
    assert_eq!(restricted.legacy_class, Some(3));
}

#[test]
fn symmetric_sequential_nat_shows_its_delta() {
    let (r, took, _) = run_with(
        nat(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
            Alloc::Sequential(1),
        ),
        &[SERVER, SERVER2],
        ServerMode::Normal,
        |_| {},
    );
    assert_eq!(r.profile.mapping, Mapping::AddressAndPortDependent);
    assert_eq!(
        r.profile.allocation,
        PortAllocation::Sequential { delta: 1 }
    );
    assert_eq!(r.legacy_class, Some(7));
    // The samples come after every other mapping, one step apart.
    let first = r.observed_ports[0];
    let expected: Vec<u16> = (first..first + 12).collect();
    assert_eq!(r.observed_ports, expected);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert!(r.render().contains("sequential, delta +1"));
    // Filtering and hairpin wait for their timeouts, in parallel.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn symmetric_with_address_filtering_and_delta_two() {
    let r = run(nat(
        Mapping::AddressAndPortDependent,
        Filtering::AddressDependent,
        Alloc::Sequential(2),
    ));
    assert_eq!(
        r.profile.allocation,
        PortAllocation::Sequential { delta: 2 }
    );
    assert_eq!(r.profile.filtering, Filtering::AddressDependent);
    assert_eq!(r.legacy_class, Some(6));
}

#[test]
fn address_dependent_random_is_unpredictable() {
    let r = run(nat(
        Mapping::AddressDependent,
        Filtering::AddressAndPortDependent,
        Alloc::Random,
    ));
    assert_eq!(r.profile.mapping, Mapping::AddressDependent);
    assert_eq!(r.profile.allocation, PortAllocation::Random);
    assert_eq!(r.legacy_class, Some(8));
}

#[test]
fn hairpinning_nat_is_seen() {
    let mut spec = nat(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
        Alloc::Preserve,
    );
    if let Some(s) = spec.as_mut() {
        s.hairpin = true;
    }
    assert_eq!(run(spec).profile.hairpin, Some(true));
}

#[test]
fn single_address_server_leaves_mapping_and_filtering_unknown() {
    let (r, _, _) = run_with(
        nat(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            Alloc::Sequential(1),
        ),
        &[SERVER],
        ServerMode::Normal,
        |_| {},
    );
    assert!(!r.rfc5780);
    assert_eq!(r.profile.public, Some(addr("203.0.113.5:20000")));
    assert_eq!(r.profile.mapping, Mapping::Unknown);
    assert_eq!(r.profile.filtering, Filtering::Unknown);
    assert_eq!(
        r.profile.allocation,
        PortAllocation::Sequential { delta: 1 }
    );
    assert_eq!(r.profile.hairpin, Some(false));
    assert!(
        r.notes.iter().any(|n| n.contains("OTHER-ADDRESS")),
        "{:?}",
        r.notes
    );
}

#[test]
fn a_server_ignoring_change_request_does_not_fake_open_filtering() {
    let (r, _, _) = run_with(
        nat(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            Alloc::Preserve,
        ),
        &[SERVER, SERVER2],
        ServerMode::IgnoresChange,
        |_| {},
    );
    assert_eq!(r.profile.filtering, Filtering::Unknown);
    assert!(
        r.notes.iter().any(|n| n.contains("filtering is unknown")),
        "{:?}",
        r.notes
    );
}

#[test]
fn silence_means_udp_blocked() {
    let (r, took, _) = run_with(
        nat(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            Alloc::Preserve,
        ),
        &[SERVER, SERVER2],
        ServerMode::Silent,
        |_| {},
    );
    assert!(r.profile.udp_blocked);
    assert_eq!(r.legacy_class, None);
    assert!(r.render().contains("blocked"));
    assert!(took <= Duration::from_millis(2200), "{took:?}");
}

#[test]
fn lifetime_finds_the_longest_idle_time_that_survives() {
    let mut spec = nat(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
        Alloc::Preserve,
    );
    if let Some(s) = spec.as_mut() {
        s.lifetime = Some(Duration::from_secs(25));
    }
    let (r, took, progress) = run_with(spec, &[SERVER, SERVER2], ServerMode::Normal, |c| {
        c.lifetime = true
    });
    assert_eq!(r.profile.lifetime_secs, Some(20));
    // It stops at the first expired mapping instead of waiting two minutes.
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert!(
        progress.iter().any(|p| p.contains("gone after 30 s")),
        "{progress:?}"
    );
}

#[test]
fn same_seed_same_run() {
    let spec = nat(
        Mapping::AddressAndPortDependent,
        Filtering::AddressDependent,
        Alloc::Random,
    );
    assert_eq!(run(spec), run(spec));
}

#[test]
fn extra_sockets_are_numbered_from_the_configured_id_and_all_closed() {
    let start = crate::io::test_epoch();
    let mut config = NetcheckConfig::new(addr(SERVER));
    config.first_extra_socket = SocketId(100);
    config.allocation_samples = 3;
    let mut nc = Netcheck::new(config, ChaCha8Rng::seed_from_u64(1), start);
    let mut opened = Vec::new();
    while let Some(SocketCommand::Open(id)) = nc.poll_socket_command() {
        opened.push(id.0);
    }
    assert_eq!(opened, vec![100, 101, 102, 103, 104]);
    // No answer at all: after the give-up time the report exists and every socket is closed.
    nc.handle_timeout(start + Duration::from_secs(3));
    assert!(nc.report().unwrap().profile.udp_blocked);
    let mut closed = Vec::new();
    while let Some(SocketCommand::Close(id)) = nc.poll_socket_command() {
        closed.push(id.0);
    }
    assert_eq!(closed, opened);
    assert_eq!(nc.poll_timeout(), None);
}
