//! IPv6 underlay candidates (issue 13 part 3). Many hosts behind an IPv4 NAT also have a global
//! IPv6 address behind only a stateful firewall: there is no translation, so the host's own
//! address is what the peer must aim at, and the firewall lets the peer's packets in once our
//! own packet toward the peer has gone out (RFC 6092 §3.2.3 "established" UDP state, REC-11),
//! which simultaneous probing from both sides provides. No port prediction is ever needed.
//!
//! What a candidate is, and the ladder's choice: when both sides offer a global IPv6 candidate
//! and the IPv4 pair would need a port prediction window, a port-block sweep, birthday probing
//! or nothing direct at all (relay), the first attempt probes the IPv6 candidates (and the
//! cheap IPv4 ones) and spends none of the expensive techniques; if that attempt finds no path,
//! later attempts run the full IPv4 ladder again, IPv6 candidates included. When the IPv4 pair
//! is cone to cone, IPv6 candidates are probed in the same first round as the others and the
//! first authenticated answer wins, as it always has.

use super::plan::Plan;
use super::{Candidate, Technique};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// At most this many IPv6 global candidates are offered or accepted per message: one host
/// address (a privacy address besides the stable one changes nothing for punching) and the
/// server-reflexive one, in case a NAT66 or NPTv6 sits in front.
pub const MAX_IPV6_CANDIDATES: usize = 2;

/// A global unicast IPv6 address (2000::/3, RFC 4291 §2.5.4 and the IANA registry): the only
/// IPv6 addresses worth probing across the internet. ULA (fc00::/7) and link-local (fe80::/10)
/// are local scope and go with the LAN candidates; the overlay's own ULA never qualifies.
pub fn is_global(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xe000) == 0x2000
}

/// Whether `addr` is an IPv6 global unicast socket address with a port.
pub fn is_global_addr(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(a) => a.port() != 0 && is_global(*a.ip()),
        SocketAddr::V4(_) => false,
    }
}

/// Whether any of `candidates` is a global IPv6 one.
pub fn offers_ipv6(candidates: &[Candidate]) -> bool {
    candidates.iter().any(|c| is_global_addr(c.addr))
}

/// Whether `candidate` is on the same address family as `public` (the side's NAT profile
/// address, IPv4 in practice): sweeps, prediction windows and birthday probing aim at the
/// public IPv4 address, never at an IPv6 candidate. Without a public address IPv4 is assumed.
pub fn same_family(candidate: SocketAddr, public: Option<SocketAddr>) -> bool {
    let want_v4 = public.is_none_or(|p| p.is_ipv4());
    matches!(candidate.ip(), IpAddr::V4(_)) == want_v4
}

/// Whether `plan` spends something IPv4 needs only against a symmetric NAT, or gives up on a
/// direct IPv4 path: a prediction window, a sweep, birthday sockets, or a "hopeless" verdict.
fn needs_more_than_candidates(plan: &Plan) -> bool {
    plan.sweep.is_some()
        || plan.birthday_sockets > 0
        || plan.hopeless.is_some()
        || plan
            .targets
            .iter()
            .any(|t| t.technique == Technique::Predicted)
}

/// The ladder's IPv6 rung: when this side can send over IPv6 (`mine` offers a global IPv6
/// candidate), the plan aims at one of the peer's, and the IPv4 pair needs more than its
/// candidates, the attempt becomes IPv6 first: IPv6 targets lead, the prediction window, sweep
/// and birthday sockets are dropped, and the "hopeless" verdict with them. Returns whether it
/// did; the session runs the full IPv4 ladder again if such an attempt fails.
pub fn prefer(plan: &mut Plan, mine: &[Candidate]) -> bool {
    let theirs_v6 = plan.targets.iter().any(|t| is_global_addr(t.addr));
    if !offers_ipv6(mine) || !theirs_v6 || !needs_more_than_candidates(plan) {
        return false;
    }
    plan.targets.retain(|t| t.technique != Technique::Predicted);
    // Stable: IPv6 targets first, each family in its planned order.
    plan.targets.sort_by_key(|t| !is_global_addr(t.addr));
    plan.sweep = None;
    plan.birthday_sockets = 0;
    plan.hopeless = None;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nat::{Filtering, Mapping, NatProfile, PortAllocation};
    use crate::core::punch::plan::{plan, PlanInput};
    use crate::core::punch::Prediction;

    fn cand(addr: &str, technique: Technique) -> Candidate {
        Candidate {
            addr: addr.parse().unwrap(),
            technique,
        }
    }

    fn nat(mapping: Mapping, allocation: PortAllocation, public: &str) -> NatProfile {
        NatProfile {
            behind_nat: Some(true),
            public: Some(public.parse().unwrap()),
            mapping,
            filtering: Filtering::AddressAndPortDependent,
            allocation,
            ..NatProfile::default()
        }
    }

    fn random(public: &str) -> NatProfile {
        nat(
            Mapping::AddressAndPortDependent,
            PortAllocation::Random,
            public,
        )
    }

    fn prc(public: &str) -> NatProfile {
        nat(
            Mapping::EndpointIndependent,
            PortAllocation::Preserving,
            public,
        )
    }

    fn run(
        mine: &NatProfile,
        theirs: &NatProfile,
        their_candidates: &[Candidate],
        prediction: Option<Prediction>,
    ) -> Plan {
        plan(&PlanInput {
            mine,
            theirs,
            their_candidates,
            their_prediction: prediction,
            birthday: true,
        })
    }

    const MINE_V6: &str = "[2001:db8:a::10]:51820";
    const THEIRS_V6: &str = "[2001:db8:b::10]:51820";

    fn theirs_with_v6() -> Vec<Candidate> {
        vec![
            cand("10.0.2.10:51820", Technique::Lan),
            cand("203.0.113.20:40000", Technique::ServerReflexive),
            cand(THEIRS_V6, Technique::Lan),
            cand(THEIRS_V6, Technique::ServerReflexive),
        ]
    }

    /// Row 7 (random symmetric both sides) is relay-only over IPv4; with IPv6 on both sides the
    /// attempt aims at the peer's IPv6 address first and is no longer hopeless.
    #[test]
    fn both_random_symmetric_go_ipv6_first() {
        let mine = [cand(MINE_V6, Technique::Lan)];
        let mut p = run(
            &random("203.0.113.10:40000"),
            &random("203.0.113.20:40000"),
            &theirs_with_v6(),
            None,
        );
        assert!(p.hopeless.is_some(), "IPv4 alone: {p:?}");
        assert!(prefer(&mut p, &mine));
        assert!(p.hopeless.is_none());
        assert_eq!(p.targets[0].addr, THEIRS_V6.parse().unwrap());
        assert!(p.targets.iter().any(|t| t.addr.is_ipv4()), "IPv4 kept");
    }

    /// Row 5 (cone against random symmetric) would open 256 birthday sockets or send 3,072
    /// random probes; with IPv6 on both sides the first attempt sends neither.
    #[test]
    fn birthday_and_sweeps_are_not_spent_when_ipv6_can_do_it() {
        let mine = [cand(MINE_V6, Technique::Lan)];
        // I am random symmetric, they are a port-restricted cone: birthday sockets here.
        let mut p = run(
            &random("203.0.113.10:40000"),
            &prc("203.0.113.20:40000"),
            &theirs_with_v6(),
            None,
        );
        assert_eq!(
            p.birthday_sockets,
            crate::core::punch::plan::BIRTHDAY_SOCKETS
        );
        assert!(prefer(&mut p, &mine));
        assert_eq!(p.birthday_sockets, 0);
        // I am the cone, they are random: a random sweep here, aimed at their IPv4 address.
        let mut p = run(
            &prc("203.0.113.10:40000"),
            &random("203.0.113.20:40000"),
            &theirs_with_v6(),
            None,
        );
        match &p.sweep {
            Some(crate::core::punch::plan::Sweep::Random { ip, .. }) => {
                assert_eq!(*ip, "203.0.113.20".parse::<IpAddr>().unwrap())
            }
            other => panic!("sweep toward the IPv4 public address expected: {other:?}"),
        }
        assert!(prefer(&mut p, &mine));
        assert!(p.sweep.is_none());
    }

    /// A prediction window is dropped for the IPv6 attempt too.
    #[test]
    fn prediction_windows_are_not_spent_when_ipv6_can_do_it() {
        let mine = [cand(MINE_V6, Technique::Lan)];
        let seq = nat(
            Mapping::AddressAndPortDependent,
            PortAllocation::Sequential { delta: 1 },
            "203.0.113.20:40000",
        );
        let prediction = Prediction {
            ip: "203.0.113.20".parse().unwrap(),
            next_port: 40001,
            delta: 1,
        };
        let mut p = run(
            &prc("203.0.113.10:40000"),
            &seq,
            &theirs_with_v6(),
            Some(prediction),
        );
        assert!(p
            .targets
            .iter()
            .any(|t| t.technique == Technique::Predicted));
        assert!(prefer(&mut p, &mine));
        assert!(p
            .targets
            .iter()
            .all(|t| t.technique != Technique::Predicted));
    }

    /// Cone to cone: the IPv4 candidates are enough, the plan is left alone (IPv6 targets are
    /// probed with the others and the first answer wins); and without IPv6 here, or there,
    /// nothing changes.
    #[test]
    fn nothing_changes_for_cone_pairs_or_without_ipv6_on_both_sides() {
        let mine = [cand(MINE_V6, Technique::Lan)];
        let mut p = run(
            &prc("203.0.113.10:40000"),
            &prc("203.0.113.20:40000"),
            &theirs_with_v6(),
            None,
        );
        let before = p.clone();
        assert!(!prefer(&mut p, &mine));
        assert_eq!(p, before);
        assert!(p
            .targets
            .iter()
            .any(|t| t.addr == THEIRS_V6.parse().unwrap()));
        let no_v6_here = [cand("10.0.1.10:51820", Technique::Lan)];
        let mut p = run(
            &random("203.0.113.10:40000"),
            &random("203.0.113.20:40000"),
            &theirs_with_v6(),
            None,
        );
        assert!(!prefer(&mut p, &no_v6_here));
        let theirs_v4: Vec<Candidate> = theirs_with_v6()
            .into_iter()
            .filter(|c| c.addr.is_ipv4())
            .collect();
        let mut p = run(
            &random("203.0.113.10:40000"),
            &random("203.0.113.20:40000"),
            &theirs_v4,
            None,
        );
        assert!(!prefer(&mut p, &mine));
    }

    #[test]
    fn only_global_unicast_counts() {
        for (ip, global) in [
            ("2001:db8::1", true),
            ("2a00:1450::1", true),
            ("3fff::1", true),
            ("fd00:1::1", false),
            ("fe80::1", false),
            ("::1", false),
            ("::ffff:192.0.2.1", false),
            ("ff02::1", false),
        ] {
            assert_eq!(is_global(ip.parse().unwrap()), global, "{ip}");
        }
        assert!(!is_global_addr("[2001:db8::1]:0".parse().unwrap()));
        assert!(!is_global_addr("192.0.2.1:5".parse().unwrap()));
    }
}
