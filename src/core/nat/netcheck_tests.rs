//! Netcheck against a fake NAT and the real `StunResponder`, on a virtual clock: every RFC 4787
//! behaviour the classifier must name, deterministically.

use super::*;
use crate::core::nat::fake_nat::*;
use crate::core::nat::Mapping;
use crate::core::stun::StunResponder;
use rand::SeedableRng;
use std::time::Duration;

fn run_with(
    nat: Option<NatSpec>,
    servers: &[&str],
    mode: ServerMode,
    tweak: impl FnOnce(&mut NetcheckConfig),
) -> (NetcheckReport, Duration, Vec<String>) {
    let start = crate::test_now();
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
fn a_server_ignoring_response_port_leaves_lifetime_unmeasured() {
    let (r, took, _) = run_with(
        nat(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            Alloc::Preserve,
        ),
        &[SERVER, SERVER2],
        ServerMode::IgnoresResponsePort,
        |c| c.lifetime = true,
    );
    assert_eq!(r.profile.lifetime_secs, None);
    assert!(
        r.notes.iter().any(|n| n.contains("RESPONSE-PORT")),
        "{:?}",
        r.notes
    );
    // It gives up at the first check instead of waiting for the longest.
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Everything else is still measured.
    assert_eq!(r.legacy_class, Some(5));
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
    let start = crate::test_now();
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
