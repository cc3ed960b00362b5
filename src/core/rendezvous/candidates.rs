//! What the server lets a member say about where it can be reached. A member's endpoints (in
//! `Hello` and `Endpoints`) and the candidates, NAT profile and port prediction of its punch
//! offers are forwarded to other nodes, which then send probes there. Passed on unchecked, they
//! let one member aim every other node's probes at a third party (project issue 9: 1,100 made-up
//! candidates in one 57 KB offer drew 23,092 datagrams in 10 s). The server vets them against
//! the one thing it knows first-hand, the source address of the member's control stream:
//!
//! - a public address (server-reflexive, a host's own public address, the public address in the
//!   NAT profile, a port prediction) must be on the IP the stream came from. A NAT maps the
//!   node's TCP stream and its UDP socket to the same public address (RFC 4787 §4.1 REQ-2, "IP
//!   address pooling" paired, and RFC 6888 REQ-1 for carrier-grade NATs), so an honest node's
//!   server-reflexive address is on that IP;
//! - a LAN (host) candidate must be a private, shared (CGN) or link-local address (RFC 1918,
//!   RFC 6598, RFC 3927, RFC 4193, RFC 4291 §2.5.6): the server cannot check those, but they
//!   cannot point into the internet. Loopback is refused: a peer's loopback is never ours;
//! - a global IPv6 address (2000::/3) may stand as a host or server-reflexive candidate even
//!   when the stream came over IPv4 (issue 13 part 3): a host behind an IPv4 NAT usually has
//!   one behind only a firewall, and the server cannot see it on the IPv4 stream. The server
//!   cannot check it either, so at most `punch::ipv6::MAX_IPV6_CANDIDATES` pass, never as a
//!   prediction or NAT profile address, and nodes keep such an address under their probe budget
//!   (`punch::budget`: at most 32 probes until it answers) and never sweep it;
//! - at most `MAX_CANDIDATES` survive (an honest node sends one LAN address and one
//!   server-reflexive one), and a port prediction's step is bounded.
//!
//! Pure functions over the messages; the server calls them and logs what was removed.

use super::messages::ClientMessage;
use crate::core::keys::PublicKey;
use crate::core::nat::NatProfile;
use crate::core::punch::ipv6::{is_global_addr, MAX_IPV6_CANDIDATES};
use crate::core::punch::{Candidate, PunchOffer, Technique};
use std::net::{IpAddr, SocketAddr};

/// Candidates (or endpoints) kept from one message.
pub const MAX_CANDIDATES: usize = 8;
/// Of those, at most this many may be LAN addresses, so the public ones always fit.
pub const MAX_LAN_CANDIDATES: usize = 6;
/// The largest port step a sequential NAT is believed to take (the classifier accepts steps of
/// up to 64 times the base step; real NATs use 1 or 2).
pub const MAX_PREDICTION_DELTA: i32 = 64;

/// What vetting removed from one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vetting {
    /// Candidates or endpoints removed.
    pub dropped: usize,
    /// The NAT profile's public address was not the observed IP and was cleared.
    pub public_cleared: bool,
    /// The port prediction was removed (foreign IP or an implausible step).
    pub prediction_dropped: bool,
}

impl Vetting {
    pub fn is_clean(&self) -> bool {
        *self == Vetting::default()
    }
}

/// An address that names a host on some local network, never one on the internet.
pub fn is_local_scope(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            // RFC 6598 shared address space, 100.64.0.0/10: a host behind a carrier NAT.
            let shared = a == 100 && (b & 0xc0) == 64;
            v4.is_private() || v4.is_link_local() || shared
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            // fc00::/7 unique local (RFC 4193), fe80::/10 link-local (RFC 4291 §2.5.6).
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether `addr` is on the IP the server observed.
fn on_observed(addr: SocketAddr, observed: IpAddr) -> bool {
    addr.port() != 0 && addr.ip().to_canonical() == observed.to_canonical()
}

/// Whether a member may name `addr` as one of its plain endpoints (no technique attached): its
/// observed public address, a local-scope one, or a global IPv6 one (counted by `trim`).
pub fn endpoint_ok(addr: SocketAddr, observed: IpAddr) -> bool {
    on_observed(addr, observed)
        || (addr.port() != 0 && is_local_scope(addr.ip()))
        || is_global_addr(addr)
}

/// Whether a member may offer `c`: a LAN candidate as an endpoint, a server-reflexive one on
/// the observed IP or a global IPv6 address, anything else (peer-reflexive, predicted) only on
/// the observed IP.
pub fn candidate_ok(c: &Candidate, observed: IpAddr) -> bool {
    match c.technique {
        Technique::Lan => endpoint_ok(c.addr, observed),
        Technique::ServerReflexive => on_observed(c.addr, observed) || is_global_addr(c.addr),
        _ => on_observed(c.addr, observed),
    }
}

/// Keeps the items `ok` accepts, without duplicates, at most `MAX_LAN_CANDIDATES` of them
/// local-scope, `MAX_IPV6_CANDIDATES` global IPv6 ones off the observed IP, and
/// `MAX_CANDIDATES` in all, in their order. Returns how many were removed.
fn trim<T: PartialEq + Clone>(
    items: &mut Vec<T>,
    addr: impl Fn(&T) -> SocketAddr,
    ok: impl Fn(&T) -> bool,
    observed: IpAddr,
) -> usize {
    let before = items.len();
    let mut kept: Vec<T> = Vec::new();
    let mut lan = 0;
    let mut v6: Vec<IpAddr> = Vec::new();
    for item in items.iter() {
        if kept.len() >= MAX_CANDIDATES || !ok(item) || kept.contains(item) {
            continue;
        }
        let a = addr(item);
        if is_global_addr(a) && !on_observed(a, observed) {
            // Counted by IP: a host and a server-reflexive candidate on one address are one.
            if !v6.contains(&a.ip()) {
                if v6.len() >= MAX_IPV6_CANDIDATES {
                    continue;
                }
                v6.push(a.ip());
            }
        } else if is_local_scope(a.ip()) {
            if lan >= MAX_LAN_CANDIDATES {
                continue;
            }
            lan += 1;
        }
        kept.push(item.clone());
    }
    *items = kept;
    before - items.len()
}

/// Clears a NAT profile's public address unless the server observed it.
fn vet_nat(nat: &mut NatProfile, observed: IpAddr) -> bool {
    match nat.public {
        Some(public) if !on_observed(public, observed) => {
            nat.public = None;
            true
        }
        _ => false,
    }
}

/// Vets a `Hello` or `Endpoints` message's endpoints and NAT profile in place.
pub fn vet_endpoints(
    endpoints: &mut Vec<SocketAddr>,
    nat: &mut Option<NatProfile>,
    observed: IpAddr,
) -> Vetting {
    Vetting {
        dropped: trim(endpoints, |a| *a, |a| endpoint_ok(*a, observed), observed),
        public_cleared: nat.as_mut().is_some_and(|n| vet_nat(n, observed)),
        prediction_dropped: false,
    }
}

/// Vets a punch offer in place before it is relayed.
pub fn vet_offer(offer: &mut PunchOffer, observed: IpAddr) -> Vetting {
    let dropped = trim(
        &mut offer.candidates,
        |c| c.addr,
        |c| candidate_ok(c, observed),
        observed,
    );
    let public_cleared = vet_nat(&mut offer.nat, observed);
    let prediction_dropped = match offer.prediction {
        Some(p)
            if p.ip.to_canonical() != observed.to_canonical()
                || p.next_port == 0
                || p.delta == 0
                || p.delta.unsigned_abs() > MAX_PREDICTION_DELTA.unsigned_abs() =>
        {
            offer.prediction = None;
            true
        }
        _ => false,
    };
    Vetting {
        dropped,
        public_cleared,
        prediction_dropped,
    }
}

/// Vets whatever a member's message says about its addresses, given where its control stream
/// comes from; logs what was removed and returns the message to handle and the count removed.
pub fn vet_message(
    mut message: ClientMessage,
    member: &PublicKey,
    remote: SocketAddr,
) -> (ClientMessage, usize) {
    let observed = remote.ip();
    let (what, vetting) = match &mut message {
        ClientMessage::Hello { endpoints, nat, .. }
        | ClientMessage::Endpoints { endpoints, nat } => {
            ("endpoints", vet_endpoints(endpoints, nat, observed))
        }
        ClientMessage::Punch { offer, .. } => ("punch offer", vet_offer(offer, observed)),
        _ => return (message, 0),
    };
    if !vetting.is_clean() {
        tracing::info!(
            member = %member.short(),
            %remote,
            dropped = vetting.dropped,
            public_cleared = vetting.public_cleared,
            prediction_dropped = vetting.prediction_dropped,
            "removed addresses a member does not hold from its {what} (only its observed public \
             IP and private or link-local addresses are passed on)"
        );
    }
    (message, vetting.dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::punch::Prediction;
    use proptest::prelude::*;

    const SEEN: &str = "203.0.113.7";

    fn seen() -> IpAddr {
        SEEN.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn cand(addr: &str, technique: Technique) -> Candidate {
        Candidate {
            addr: sa(addr),
            technique,
        }
    }

    fn offer(candidates: Vec<Candidate>) -> PunchOffer {
        PunchOffer {
            attempt: 1,
            answer: false,
            candidates,
            nat: NatProfile::default(),
            prediction: None,
        }
    }

    #[test]
    fn local_scope_is_private_shared_and_link_local_only() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local_scope(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "100.128.0.1",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.99",
            "::1",
            "2001:db8::1",
        ] {
            assert!(!is_local_scope(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_spoofed_server_reflexive_candidate_is_dropped_and_the_real_one_kept() {
        let mut o = offer(vec![
            cand("192.0.2.99:5000", Technique::ServerReflexive),
            cand("203.0.113.7:40000", Technique::ServerReflexive),
            cand("10.0.0.5:51820", Technique::ServerReflexive),
        ]);
        let v = vet_offer(&mut o, seen());
        assert_eq!(v.dropped, 2);
        assert_eq!(
            o.candidates,
            vec![cand("203.0.113.7:40000", Technique::ServerReflexive)]
        );
    }

    #[test]
    fn a_public_lan_candidate_is_dropped_unless_it_is_the_observed_address() {
        let mut o = offer(vec![
            cand("8.8.8.8:53", Technique::Lan),
            cand("127.0.0.1:22", Technique::Lan),
            cand("203.0.113.7:51820", Technique::Lan),
            cand("192.168.1.20:51820", Technique::Lan),
            cand("192.168.1.20:0", Technique::Lan),
        ]);
        let v = vet_offer(&mut o, seen());
        assert_eq!(v.dropped, 3);
        assert_eq!(o.candidates.len(), 2);
        // A member reached over IPv4-mapped IPv6 (a dual-stack listener) is the same address.
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert!(endpoint_ok(sa("203.0.113.7:1"), mapped));
    }

    /// A node behind an IPv4 NAT offers its global IPv6 address (host and server-reflexive):
    /// it passes, as two addresses at most, and never as a peer-reflexive or predicted one.
    #[test]
    fn global_ipv6_candidates_pass_at_most_two_and_never_as_predictions() {
        let mut o = offer(vec![
            cand("203.0.113.7:40000", Technique::ServerReflexive),
            cand("[2001:db8:a::10]:51820", Technique::Lan),
            cand("[2001:db8:a::10]:51820", Technique::ServerReflexive),
            cand("[2001:db8:a::11]:51820", Technique::Lan),
            cand("[2001:db8:a::12]:51820", Technique::Lan),
            cand("[2001:db8:a::13]:51820", Technique::Predicted),
            cand("[2001:db8:a::14]:51820", Technique::PeerReflexive),
            cand("[::1]:51820", Technique::Lan),
        ]);
        let v = vet_offer(&mut o, seen());
        assert_eq!(
            o.candidates,
            vec![
                cand("203.0.113.7:40000", Technique::ServerReflexive),
                cand("[2001:db8:a::10]:51820", Technique::Lan),
                cand("[2001:db8:a::10]:51820", Technique::ServerReflexive),
                cand("[2001:db8:a::11]:51820", Technique::Lan),
            ]
        );
        assert_eq!(v.dropped, 4);
        let mut endpoints = vec![
            sa("[2001:db8:a::10]:51820"),
            sa("[2001:db8:a::11]:1"),
            sa("[2001:db8:a::12]:1"),
        ];
        let mut nat = Some(NatProfile {
            public: Some(sa("[2001:db8:a::10]:51820")),
            ..NatProfile::default()
        });
        let v = vet_endpoints(&mut endpoints, &mut nat, seen());
        assert_eq!(endpoints.len(), 2);
        assert!(
            v.public_cleared,
            "a NAT profile's public address stays the observed one"
        );
    }

    #[test]
    fn a_thousand_candidates_are_cut_to_the_cap_and_the_public_one_survives() {
        let mut endpoints: Vec<SocketAddr> = (0..1000u16)
            .map(|i| SocketAddr::new("10.9.0.1".parse().unwrap(), 1000 + i))
            .collect();
        endpoints.push(sa("203.0.113.7:40000"));
        let mut nat = Some(NatProfile {
            public: Some(sa("192.0.2.99:5000")),
            ..NatProfile::default()
        });
        let v = vet_endpoints(&mut endpoints, &mut nat, seen());
        assert_eq!(endpoints.len(), MAX_LAN_CANDIDATES + 1);
        assert_eq!(v.dropped, 1001 - endpoints.len());
        assert!(endpoints.contains(&sa("203.0.113.7:40000")));
        assert!(v.public_cleared && nat.unwrap().public.is_none());
    }

    #[test]
    fn a_prediction_elsewhere_or_with_a_huge_step_is_dropped() {
        let honest = Prediction {
            ip: seen(),
            next_port: 40010,
            delta: 2,
        };
        for (p, keep) in [
            (honest, true),
            (
                Prediction {
                    ip: "192.0.2.99".parse().unwrap(),
                    ..honest
                },
                false,
            ),
            (
                Prediction {
                    delta: 30_000,
                    ..honest
                },
                false,
            ),
            (Prediction { delta: 0, ..honest }, false),
            (
                Prediction {
                    delta: i32::MIN,
                    ..honest
                },
                false,
            ),
        ] {
            let mut o = offer(Vec::new());
            o.prediction = Some(p);
            let v = vet_offer(&mut o, seen());
            assert_eq!(o.prediction.is_some(), keep, "{p:?}");
            assert_eq!(v.prediction_dropped, !keep);
        }
    }

    #[test]
    fn an_honest_offer_passes_untouched() {
        let mut o = offer(vec![
            cand("10.1.0.2:51820", Technique::Lan),
            cand("203.0.113.7:40001", Technique::ServerReflexive),
        ]);
        o.nat.public = Some(sa("203.0.113.7:40001"));
        o.prediction = Some(Prediction {
            ip: seen(),
            next_port: 40003,
            delta: 1,
        });
        let before = o.clone();
        assert!(vet_offer(&mut o, seen()).is_clean());
        assert_eq!(o, before);
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            any::<(u16, u16)>().prop_map(|(low, port)| SocketAddr::new(
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, low).into(),
                port
            )),
            any::<([u8; 4], u16)>().prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            any::<u16>().prop_map(|port| SocketAddr::new("203.0.113.7".parse().unwrap(), port)),
            any::<([u8; 16], u16)>().prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn any_technique() -> impl Strategy<Value = Technique> {
        (1u8..=6).prop_map(|c| Technique::from_code(c).unwrap_or(Technique::Lan))
    }

    proptest! {
        #[test]
        fn whatever_is_offered_what_passes_is_bounded_and_points_nowhere_public_but_home(
            cands in proptest::collection::vec((any_addr(), any_technique()), 0..64),
        ) {
            let mut o = offer(cands.into_iter().map(|(addr, technique)| Candidate { addr, technique }).collect());
            let total = o.candidates.len();
            let v = vet_offer(&mut o, seen());
            prop_assert_eq!(v.dropped + o.candidates.len(), total);
            prop_assert!(o.candidates.len() <= MAX_CANDIDATES);
            for c in &o.candidates {
                prop_assert!(c.addr.port() != 0);
                prop_assert!(
                    c.addr.ip().to_canonical() == seen()
                        || (c.technique == Technique::Lan && is_local_scope(c.addr.ip()))
                        || (matches!(c.technique, Technique::Lan | Technique::ServerReflexive)
                            && is_global_addr(c.addr))
                );
            }
            let v6: std::collections::HashSet<IpAddr> = o
                .candidates
                .iter()
                .filter(|c| is_global_addr(c.addr))
                .map(|c| c.addr.ip())
                .collect();
            prop_assert!(v6.len() <= MAX_IPV6_CANDIDATES);
            // Vetting is idempotent: a second pass removes nothing.
            prop_assert_eq!(vet_offer(&mut o, seen()).dropped, 0);
        }
    }
}
