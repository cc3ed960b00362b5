//! Tests of the simulated network: TTL and low-TTL priming against conntrack poisoning, CGN,
//! LAN and hairpin paths, latency, loss, blackholes and rebinding, all deterministic.

use crate::nat::NatConfig;
use crate::nat_tests::{a, t0};
use crate::net::{Delivery, NatId, Net};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const S1: &str = "198.51.100.1:3478";
const S2: &str = "198.51.100.2:3478";
const HOST_A: &str = "192.168.1.2:51000";
const HOST_B: &str = "10.0.0.2:51000";
const PUB_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PUB_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// Runs every event in time order and returns what was delivered.
fn drain(net: &mut Net) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(at) = net.next_delivery_time() {
        while let Some(d) = net.poll_delivery(at) {
            out.push(d);
        }
    }
    out
}

/// Sends one datagram, runs the network dry, and returns where it arrived and from whom.
fn exchange(
    net: &mut Net,
    from: &str,
    to: SocketAddr,
    ttl: Option<u8>,
    now: Instant,
) -> Option<(SocketAddr, SocketAddr)> {
    net.send(a(from), to, vec![1], ttl, now);
    let got = drain(net);
    assert!(got.len() <= 1);
    got.first().map(|d| (d.to, d.from))
}

/// Two servers on the internet, host A behind `nat_a`, host B behind `nat_b`.
fn two_sites(nat_a: &str, nat_b: &str) -> (Net, NatId, NatId) {
    let mut net = Net::new(3);
    net.add_public_ip(a(S1).ip().to_string().parse().unwrap());
    net.add_public_ip(a(S2).ip().to_string().parse().unwrap());
    let na = net.add_nat(NatConfig::profile(nat_a, PUB_A).unwrap(), None);
    let nb = net.add_nat(NatConfig::profile(nat_b, PUB_B).unwrap(), None);
    net.add_private_host_ip(Ipv4Addr::new(192, 168, 1, 2), na);
    net.add_private_host_ip(Ipv4Addr::new(10, 0, 0, 2), nb);
    (net, na, nb)
}

/// Registers both hosts with the server and returns their server-reflexive addresses.
fn register(net: &mut Net, now: Instant) -> (SocketAddr, SocketAddr) {
    let (_, ra) = exchange(net, HOST_A, a(S1), None, now).unwrap();
    let (_, rb) = exchange(net, HOST_B, a(S1), None, now).unwrap();
    (ra, rb)
}

#[test]
fn ttl_one_dies_in_its_own_nat_and_leaves_no_mapping() {
    let (mut net, na, _) = two_sites("PRC", "PRC");
    assert_eq!(exchange(&mut net, HOST_A, a(S1), Some(1), t0()), None);
    assert_eq!(net.stats().ttl_expired, 1);
    assert_eq!(net.nat(na).mapping_count(), 0);
    // Two hops out plus the core: TTL 2 is not enough to reach a public host either.
    assert_eq!(exchange(&mut net, HOST_A, a(S1), Some(2), t0()), None);
    assert_eq!(net.stats().ttl_expired, 2);
    assert_eq!(net.nat(na).mapping_count(), 1);
    assert!(exchange(&mut net, HOST_A, a(S1), Some(3), t0()).is_some());
}

#[test]
fn early_probe_poisons_an_input_accepting_router_and_low_ttl_priming_prevents_it() {
    let now = t0();
    // Without priming: B's probe reaches A's router first and A's reply leaves from a new port.
    let (mut net, _, _) = two_sites("PRC_INPUT", "PRC_INPUT");
    let (ra, rb) = register(&mut net, now);
    assert_eq!(exchange(&mut net, HOST_B, ra, None, now), None);
    assert_eq!(net.stats().accepted_by_router, 1);
    assert_eq!(exchange(&mut net, HOST_A, rb, None, now), None);
    // B expects only A's registered port, and B's router takes the stranger for itself.
    assert_eq!(net.stats().accepted_by_router, 2);

    // With priming: A's TTL-2 packet opens A's side, dies in the internet, never touches B.
    let (mut net, na, nb) = two_sites("PRC_INPUT", "PRC_INPUT");
    let (ra, rb) = register(&mut net, now);
    let b_mappings = net.nat(nb).mapping_count();
    assert_eq!(exchange(&mut net, HOST_A, rb, Some(2), now), None);
    let stats = net.stats().clone();
    assert_eq!(
        (stats.ttl_expired, stats.accepted_by_router, stats.filtered),
        (1, 0, 0)
    );
    assert_eq!(net.nat(na).mapped_port(a(HOST_A), rb), Some(ra.port()));
    assert_eq!(net.nat(nb).mapping_count(), b_mappings);
    // Now B's probe gets through, and A answers from the port B expects.
    assert_eq!(
        exchange(&mut net, HOST_B, ra, None, now),
        Some((a(HOST_A), rb))
    );
    assert_eq!(
        exchange(&mut net, HOST_A, rb, None, now),
        Some((a(HOST_B), ra))
    );
}

#[test]
fn cgn_of_two_port_restricted_cones_is_still_endpoint_independent() {
    let mut net = Net::new(4);
    for s in [S1, S2, "198.51.100.50:1"] {
        net.add_public_ip(a(s).ip().to_string().parse().unwrap());
    }
    let carrier = net.add_nat(NatConfig::profile("PRC", PUB_A).unwrap(), None);
    let home_wan = Ipv4Addr::new(100, 64, 0, 2);
    let home = net.add_nat(NatConfig::profile("PRC", home_wan).unwrap(), Some(carrier));
    net.add_private_host_ip(Ipv4Addr::new(10, 0, 0, 2), home);
    let now = t0();
    let (_, r1) = exchange(&mut net, HOST_B, a(S1), None, now).unwrap();
    let (_, r2) = exchange(&mut net, HOST_B, a(S2), None, now).unwrap();
    assert_eq!(r1, r2, "RFC 4787 §4.1 mapping composes through both layers");
    assert_eq!(r1.ip(), PUB_A);
    let open = a("198.51.100.50:9000");
    let (_, seen) = exchange(&mut net, HOST_B, open, None, now).unwrap();
    assert_eq!(seen, r1);
    assert_eq!(
        exchange(&mut net, "198.51.100.50:9000", seen, None, now),
        Some((a(HOST_B), open))
    );
    // One more router on the way: TTL 2 now dies in the carrier NAT, after the home NAT mapped.
    let other = a("198.51.100.2:7");
    assert_eq!(exchange(&mut net, HOST_B, other, Some(2), now), None);
    assert_eq!(net.stats().ttl_expired, 1);
    assert_eq!(
        net.nat(carrier).mapped_port(a("100.64.0.2:51000"), other),
        Some(r1.port())
    );
}

#[test]
fn hosts_behind_one_nat_meet_on_the_lan_or_by_hairpin() {
    for (profile, hairpin) in [("PRC", false), ("HAIRPIN", true)] {
        let (mut net, na, _) = two_sites(profile, "PRC");
        net.add_private_host_ip(Ipv4Addr::new(192, 168, 1, 3), na);
        let now = t0();
        let neighbour = "192.168.1.3:51000";
        // Directly by LAN address: no NAT involved at all.
        let got = exchange(&mut net, HOST_A, a(neighbour), Some(1), now);
        assert_eq!(got, Some((a(neighbour), a(HOST_A))));
        assert_eq!(net.nat(na).mapping_count(), 0);
        // Through the neighbour's public mapping only when the NAT hairpins.
        let (_, mine) = exchange(&mut net, HOST_A, a(S1), None, now).unwrap();
        let (_, theirs) = exchange(&mut net, neighbour, a(S1), None, now).unwrap();
        let got = exchange(&mut net, HOST_A, theirs, None, now);
        assert_eq!(got, hairpin.then_some((a(neighbour), mine)), "{profile}");
        assert_eq!(net.stats().no_hairpin, u64::from(!hairpin));
    }
}

#[test]
fn latency_adds_up_per_link_and_equal_times_stay_in_send_order() {
    let (mut net, na, nb) = two_sites("FC", "FC");
    net.set_link(na, Duration::from_millis(10), 0.0);
    net.set_link(nb, Duration::from_millis(25), 0.0);
    let now = t0();
    let (ra, rb) = register(&mut net, now);
    exchange(&mut net, HOST_B, ra, None, now);
    for tag in 0..5u8 {
        net.send(a(HOST_A), rb, vec![tag], None, now);
    }
    // The LAN hop and A's NAT act at once; then come A's and B's WAN links.
    assert_eq!(net.next_delivery_time(), Some(now));
    assert_eq!(net.poll_delivery(now), None);
    assert_eq!(
        net.next_delivery_time(),
        Some(now + Duration::from_millis(10))
    );
    let got = drain(&mut net);
    assert_eq!(
        got.iter().map(|d| d.bytes[0]).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(got.iter().all(|d| d.at == now + Duration::from_millis(35)));
    // Nothing is delivered early.
    net.send(a(HOST_A), rb, vec![9], None, now);
    assert_eq!(net.poll_delivery(now + Duration::from_millis(34)), None);
    assert!(net.poll_delivery(now + Duration::from_millis(35)).is_some());
    // A public host's own line counts too.
    net.set_public_link(
        Ipv4Addr::new(198, 51, 100, 1),
        Duration::from_millis(5),
        0.0,
    );
    net.send(a(HOST_A), a(S1), vec![7], None, now);
    assert_eq!(drain(&mut net)[0].at, now + Duration::from_millis(15));
}

/// Sends 200 datagrams from A to S1 over a lossy link and returns what arrived.
fn lossy_run(seed: u64) -> (Vec<u8>, u64) {
    let mut net = Net::new(seed);
    net.add_public_ip(Ipv4Addr::new(198, 51, 100, 1));
    let na = net.add_nat(NatConfig::profile("RND", PUB_A).unwrap(), None);
    net.add_private_host_ip(Ipv4Addr::new(192, 168, 1, 2), na);
    net.set_link(na, Duration::from_millis(5), 0.3);
    for i in 0..200u8 {
        net.send(a(HOST_A), a(S1), vec![i], None, t0());
    }
    let got = drain(&mut net).into_iter().map(|d| d.bytes[0]).collect();
    (got, net.stats().lost)
}

#[test]
fn loss_is_seeded_and_counted() {
    let (got, lost) = lossy_run(11);
    assert_eq!(got.len() as u64 + lost, 200);
    assert!((30..=90).contains(&lost), "{lost}");
    assert_eq!(lossy_run(11), (got.clone(), lost), "same seed, same run");
    assert_ne!(lossy_run(12).0, got);
}

#[test]
fn blackholes_rebinding_and_unowned_addresses() {
    let (mut net, na, nb) = two_sites("FC", "FC");
    let now = t0();
    let (ra, rb) = register(&mut net, now);
    net.block(nb, na, true);
    assert_eq!(exchange(&mut net, HOST_A, rb, None, now), None);
    assert_eq!(net.stats().blocked, 1);
    assert!(
        exchange(&mut net, HOST_A, a(S2), None, now).is_some(),
        "server still reachable"
    );
    net.block(na, nb, false);
    assert!(exchange(&mut net, HOST_A, rb, None, now).is_some());

    // After rebinding the server sees a new address and the old one leads nowhere.
    let new_ip = Ipv4Addr::new(192, 0, 2, 77);
    net.rebind_nat(na, new_ip);
    let (_, again) = exchange(&mut net, HOST_A, a(S1), None, now).unwrap();
    assert_eq!(again.ip(), new_ip);
    assert_eq!(exchange(&mut net, HOST_B, ra, None, now), None);
    // A flushed NAT forgets B's mapping: A's packets find nothing to enter by.
    net.nat_mut(nb).flush();
    let no_mapping = net.stats().no_mapping;
    assert_eq!(exchange(&mut net, HOST_A, rb, None, now), None);
    assert_eq!(net.stats().no_mapping, no_mapping + 1);

    let before = net.stats().unroutable;
    assert_eq!(
        exchange(&mut net, HOST_A, a("192.0.2.200:1"), None, now),
        None
    );
    assert_eq!(exchange(&mut net, "192.0.2.201:1", a(S1), None, now), None);
    assert_eq!(net.stats().unroutable, before + 2);
    assert!(net.stats().delivered >= 5);
}
