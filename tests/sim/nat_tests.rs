//! Tests of the simulated NAT box alone: one behaviour of RFC 4787 per test, Linux conntrack
//! poisoning, and the birthday arithmetic of nat-lab.md checked against random allocation.

use crate::nat::{Allocation, FilteringMode, MappingMode, Nat, NatConfig, NatDrop};
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST: &str = "192.168.1.2:51000";
const S1: &str = "198.51.100.1:3478";
const S2: &str = "198.51.100.2:3478";

pub fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The origin of virtual time, the same for every caller; only differences from it matter.
pub fn t0() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nat(profile: &str) -> Nat {
    Nat::new(NatConfig::profile(profile, PUBLIC).unwrap(), 7)
}

fn public(port: u16) -> SocketAddr {
    SocketAddr::new(PUBLIC.into(), port)
}

#[test]
fn profiles_by_name() {
    let p = |n| NatConfig::profile(n, PUBLIC);
    let prc = p("PRC").unwrap();
    assert_eq!(prc.mapping, MappingMode::EndpointIndependent);
    assert_eq!(prc.filtering, FilteringMode::AddressAndPortDependent);
    assert_eq!(prc.allocation, Allocation::Preserving);
    assert!(p("PRC_INPUT").unwrap().accepts_input && !prc.accepts_input);
    assert_eq!(p("RC").unwrap().filtering, FilteringMode::AddressDependent);
    assert_eq!(
        p("FC").unwrap().filtering,
        FilteringMode::EndpointIndependent
    );
    assert_eq!(p("RND").unwrap().allocation, Allocation::Random);
    let blk = Allocation::RandomInRange {
        low: 20000,
        high: 20511,
    };
    assert_eq!(p("BLK").unwrap().allocation, blk);
    assert_eq!(p("ADM").unwrap().mapping, MappingMode::AddressDependent);
    let seq = |delta| Some(Allocation::Sequential { delta });
    assert_eq!(p("SEQ").map(|c| c.allocation), seq(1));
    assert_eq!(p("SEQ4").map(|c| c.allocation), seq(4));
    assert_eq!(
        p("SEQ4").unwrap().mapping,
        MappingMode::AddressAndPortDependent
    );
    assert!(p("UDPBLK").unwrap().drop_udp && p("HAIRPIN").unwrap().hairpin);
    assert_eq!(nat("BLK").config().allocation, blk);
    for bad in ["SEQ0", "SEQx", "SEQ+4", "prc", "SYM", ""] {
        assert!(p(bad).is_none(), "{bad}");
    }
}

#[test]
fn endpoint_independent_mapping_reuses_one_port_for_every_destination() {
    let (mut n, now) = (nat("PRC"), t0());
    let dests = [S1, S2, "198.51.100.1:9999", "203.0.113.7:1"];
    for d in dests {
        // RFC 4787 §4.1: same mapping whatever the destination; masquerade keeps the port.
        assert_eq!(n.outbound(a(HOST), a(d), now), Some(public(51000)), "{d}");
    }
    assert_eq!(n.mapping_count(), 1);
    // A second host asking for the same port gets another one.
    let other = n.outbound(a("192.168.1.3:51000"), a(S1), now).unwrap();
    assert_ne!(other.port(), 51000);
}

#[test]
fn address_dependent_mapping_is_per_destination_ip() {
    let (mut n, now) = (nat("ADM"), t0());
    let one = n.outbound(a(HOST), a(S1), now).unwrap();
    assert_eq!(n.outbound(a(HOST), a("198.51.100.1:9999"), now), Some(one));
    let two = n.outbound(a(HOST), a(S2), now).unwrap();
    assert_ne!(one, two);
    assert!([one, two]
        .iter()
        .all(|p| (20000..=21023).contains(&p.port())));
    assert_eq!(n.mapping_count(), 2);
}

#[test]
fn address_and_port_dependent_mapping_is_per_destination_endpoint() {
    let (mut n, now) = (nat("RND"), t0());
    let ports: Vec<u16> = [S1, "198.51.100.1:9999", S2]
        .iter()
        .map(|d| n.outbound(a(HOST), a(d), now).unwrap().port())
        .collect();
    assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    assert_eq!(n.outbound(a(HOST), a(S1), now).unwrap().port(), ports[0]);
    assert_eq!(n.mapping_count(), 3);
}

#[test]
fn each_filtering_mode_admits_exactly_what_it_should() {
    let now = t0();
    // (profile, from the same ip:port, same ip other port, other ip)
    let cases = [
        ("FC", [true, true, true]),
        ("RC", [true, true, false]),
        ("PRC", [true, false, false]),
    ];
    for (profile, expect) in cases {
        let mut n = nat(profile);
        let mapped = n.outbound(a(HOST), a(S1), now).unwrap();
        for (from, want) in [S1, "198.51.100.1:4000", S2].iter().zip(expect) {
            let got = n.translate_inbound(a(from), mapped, now);
            let want = if want {
                Ok(a(HOST))
            } else {
                Err(NatDrop::Filtered)
            };
            assert_eq!(got, want, "{profile} from {from}");
        }
        assert_eq!(
            n.translate_inbound(a(S1), public(1), now),
            Err(NatDrop::NoMapping)
        );
        let elsewhere = a("192.0.2.99:51000");
        assert_eq!(
            n.translate_inbound(a(S1), elsewhere, now),
            Err(NatDrop::NotOurAddress)
        );
    }
}

#[test]
fn sequential_delta_shows_between_two_server_addresses() {
    let (mut n, now) = (nat("SEQ4"), t0());
    // Wei et al.: one socket, two server addresses, two consecutive new mappings.
    let p1 = n.outbound(a(HOST), a(S1), now).unwrap().port();
    let p2 = n.outbound(a(HOST), a(S2), now).unwrap().port();
    assert_eq!((p1, p2), (20000, 20004));
    // The counter is NAT-wide: another host's flow takes the next slot.
    let other = n.outbound(a("192.168.1.3:4000"), a(S1), now).unwrap();
    assert_eq!(other.port(), 20008);
    let p3 = n.outbound(a(HOST), a("203.0.113.5:7"), now).unwrap();
    assert_eq!(p3.port(), 20012);
}

#[test]
fn random_allocation_stays_in_its_range_until_exhausted() {
    let now = t0();
    let mut blk = nat("BLK");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..512u16 {
        let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 1000 + i);
        let port = blk.outbound(a(HOST), dst, now).unwrap().port();
        assert!((20000..=20511).contains(&port), "{port}");
        assert!(seen.insert(port), "port {port} handed out twice");
    }
    assert_eq!(
        blk.translate_outbound(a(HOST), a(S1), now),
        Err(NatDrop::PortsExhausted)
    );

    let mut rnd = nat("RND");
    let ports: Vec<u16> = (0..300u16)
        .map(|i| {
            let dst = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 1000 + i);
            rnd.outbound(a(HOST), dst, now).unwrap().port()
        })
        .collect();
    assert!(ports.iter().all(|&p| p >= 1024));
    let (lo, hi) = (ports.iter().min().unwrap(), ports.iter().max().unwrap());
    assert!(
        *lo < 5000 && *hi > 60000,
        "{lo}..{hi} is not spread over the port space"
    );
}

#[test]
fn idle_mappings_expire_and_traffic_refreshes_them() {
    let (mut n, t) = (nat("PRC"), t0());
    let s = |secs| t + Duration::from_secs(secs);
    let mapped = n.outbound(a(HOST), a(S1), t).unwrap();
    // RFC 4787 §4.3: an accepted inbound packet refreshes the 30 s timer.
    assert_eq!(n.inbound(a(S1), mapped, s(29)), Some(a(HOST)));
    assert_eq!(n.inbound(a(S1), mapped, s(58)), Some(a(HOST)));
    assert_eq!(
        n.translate_inbound(a(S1), mapped, s(88)),
        Err(NatDrop::NoMapping)
    );
    assert_eq!(n.mapping_count(), 0);
    // A fresh flow after expiry maps again, and the old filter state is gone with it.
    assert_eq!(n.outbound(a(HOST), a(S2), s(90)), Some(mapped));
    assert_eq!(
        n.translate_inbound(a(S1), mapped, s(90)),
        Err(NatDrop::Filtered)
    );
}

#[test]
fn router_accepting_input_poisons_the_port_a_peer_probed_first() {
    let peer = a("203.0.113.20:6000");
    for (profile, poisoned) in [("PRC", false), ("PRC_INPUT", true)] {
        let (mut n, now) = (nat(profile), t0());
        let registered = n.outbound(a(HOST), a(S1), now).unwrap();
        assert_eq!(registered, public(51000));
        // The peer's probe arrives before our first packet toward it.
        let early = n.translate_inbound(peer, registered, now);
        let want = if poisoned {
            NatDrop::AcceptedByRouter
        } else {
            NatDrop::Filtered
        };
        assert_eq!(early, Err(want), "{profile}");
        let toward_peer = n.outbound(a(HOST), peer, now).unwrap();
        assert_eq!(toward_peer != registered, poisoned, "{profile}");
        // The server flow keeps its port either way.
        assert_eq!(n.outbound(a(HOST), a(S1), now), Some(registered));
        // The peer's later probes: to the port it knows, only the unpoisoned NAT delivers.
        let later = n.inbound(peer, registered, now);
        assert_eq!(later.is_some(), !poisoned, "{profile}");
        assert_eq!(n.inbound(peer, toward_peer, now), Some(a(HOST)));
    }
    // Also with no mapping at all yet: the port the host would have kept is taken.
    let (mut n, now) = (nat("PRC_INPUT"), t0());
    assert_eq!(n.inbound(peer, public(51000), now), None);
    assert_eq!(n.mapping_count(), 0);
    assert_ne!(n.outbound(a(HOST), peer, now), Some(public(51000)));
    // A different destination is unaffected.
    assert_eq!(n.outbound(a(HOST), a(S1), now), Some(public(51000)));
}

#[test]
fn hairpinning_reaches_a_neighbour_through_its_public_mapping() {
    let now = t0();
    let (h1, h2) = (a(HOST), a("192.168.1.3:6000"));
    for (profile, works) in [("HAIRPIN", true), ("PRC", false)] {
        let mut n = nat(profile);
        let m1 = n.outbound(h1, a(S1), now).unwrap();
        let m2 = n.outbound(h2, a(S1), now).unwrap();
        let got = n.translate_hairpin(h1, m2, now);
        // RFC 4787 §6: the neighbour sees our external address, not our LAN one.
        let want = if works {
            Ok((m1, h2))
        } else {
            Err(NatDrop::NoHairpin)
        };
        assert_eq!(got, want, "{profile}");
        assert_eq!(n.hairpin(h2, m1, now).is_some(), works);
    }
    let mut n = nat("HAIRPIN");
    assert_eq!(
        n.translate_hairpin(h1, public(999), now),
        Err(NatDrop::NoMapping)
    );
}

#[test]
fn udp_blocked_drops_everything_and_flush_forgets_everything() {
    let (mut blocked, now) = (nat("UDPBLK"), t0());
    assert_eq!(
        blocked.translate_outbound(a(HOST), a(S1), now),
        Err(NatDrop::UdpBlocked)
    );
    assert_eq!(blocked.inbound(a(S1), public(51000), now), None);
    assert_eq!(blocked.mapping_count(), 0);

    let mut n = nat("PRC_INPUT");
    let mapped = n.outbound(a(HOST), a(S1), now).unwrap();
    n.inbound(a("203.0.113.20:6000"), mapped, now);
    n.flush();
    assert_eq!(n.mapping_count(), 0);
    assert_eq!(n.mapped_port(a(HOST), a(S1)), None);
    // No mapping left, so this router takes the packet for itself.
    assert_eq!(
        n.translate_inbound(a(S1), mapped, now),
        Err(NatDrop::AcceptedByRouter)
    );
    // The router's own flow toward the peer went too: the probed port is preserved again.
    let peer = a("203.0.113.20:6000");
    assert_eq!(n.outbound(a(HOST), peer, now), Some(mapped));
}

/// Hits of `probes` random probes from a cone address against `sockets` RND mappings toward it.
fn birthday_hits(seed: u64, sockets: u16, probes: usize) -> usize {
    let (mut n, now) = (
        Nat::new(NatConfig::profile("RND", PUBLIC).unwrap(), seed),
        t0(),
    );
    let cone = a("203.0.113.30:51000");
    for i in 0..sockets {
        let src = SocketAddr::new(Ipv4Addr::new(192, 168, 1, 2).into(), 40000 + i);
        n.outbound(src, cone, now).unwrap();
    }
    let mut prober = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xB1D);
    (0..probes)
        .filter(|_| {
            n.inbound(cone, public(prober.gen_range(1024..=65535)), now)
                .is_some()
        })
        .count()
}

#[test]
fn birthday_probing_hits_as_often_as_the_formula_says() {
    let predicted = |n: f64, k: f64| 1.0 - (-n * k / 64500.0).exp();
    for (probes, seeds) in [(1024usize, 20u64), (256, 40)] {
        let runs: Vec<usize> = (0..seeds).map(|s| birthday_hits(s, 256, probes)).collect();
        let success = runs.iter().filter(|&&h| h > 0).count() as f64 / seeds as f64;
        let mean = runs.iter().sum::<usize>() as f64 / seeds as f64;
        let p = predicted(256.0, probes as f64);
        // Loose: binomial noise over 20-40 runs, and expected hits n*k/64512 per run.
        assert!((success - p).abs() < 0.2, "{probes}: {success} vs {p}");
        let expected_hits = 256.0 * probes as f64 / 64512.0;
        assert!(
            (mean - expected_hits).abs() < expected_hits * 0.4,
            "{probes}: mean {mean} vs {expected_hits}"
        );
    }
}
