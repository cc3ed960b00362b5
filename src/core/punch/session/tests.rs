//! A punch session facing a hostile offer, with no server in between to vet it: the node's own
//! bounds (candidate cap, per-address budget, sweeps only at the vouched IP) must hold.

use super::*;
use crate::core::nat::{Filtering, Mapping, PortAllocation};
use crate::core::punch::budget::{MAX_OFFER_CANDIDATES, UNANSWERED_PROBES};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::IpAddr;

const THIRD: &str = "192.0.2.99";
const PEER_PUBLIC: &str = "203.0.113.50:40000";

fn prc() -> NatProfile {
    NatProfile {
        behind_nat: Some(true),
        public: Some("203.0.113.7:51000".parse().unwrap()),
        mapping: Mapping::EndpointIndependent,
        filtering: Filtering::AddressAndPortDependent,
        allocation: PortAllocation::Preserving,
        ..NatProfile::default()
    }
}

fn random_symmetric(public: SocketAddr) -> NatProfile {
    NatProfile {
        behind_nat: Some(true),
        public: Some(public),
        mapping: Mapping::AddressAndPortDependent,
        filtering: Filtering::AddressAndPortDependent,
        allocation: PortAllocation::Random,
        ..NatProfile::default()
    }
}

/// Runs the answering side of `offer` for 11 s (one attempt and its end); returns how many datagrams went to `ip` and the
/// session's status.
fn answer_one_attempt(offer: PunchOffer, ip: &str) -> (usize, PunchStatus) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let me = SecretKey::generate(&mut rng);
    let peer = SecretKey::generate(&mut rng);
    let t0 = crate::test_now();
    let mut punch = PeerPunch::new(&me, &peer.public_key(), t0);
    punch.set_vouched(&[PEER_PUBLIC.parse().unwrap()]);
    let local = LocalInfo {
        profile: prc(),
        candidates: Vec::new(),
        prediction: None,
        config: PunchConfig::default(),
    };
    let mut transmits = VecDeque::new();
    let mut sockets = SocketPool::new(1000);
    let ip: IpAddr = ip.parse().unwrap();
    let mut count = 0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(11) {
        let mut ctx = Ctx {
            now,
            rng: &mut rng,
            transmits: &mut transmits,
            sockets: &mut sockets,
        };
        if now == t0 {
            punch.handle_offer(offer.clone(), &local, &mut ctx);
            assert!(punch.make_offer(&local, &mut ctx).is_some());
        }
        punch.handle_timeout(&mut ctx);
        count += transmits.drain(..).filter(|t| t.dst.ip() == ip).count();
        now += Duration::from_millis(10);
    }
    (count, punch.status().clone())
}

#[test]
fn an_unvetted_offer_of_1100_candidates_draws_at_most_the_budget() {
    let candidates = (0..1100u16)
        .map(|i| Candidate {
            addr: SocketAddr::new(THIRD.parse().unwrap(), 1024 + i),
            technique: Technique::Lan,
        })
        .collect();
    let offer = PunchOffer {
        attempt: 7,
        answer: false,
        candidates,
        nat: prc(),
        prediction: None,
    };
    let (sent, status) = answer_one_attempt(offer, THIRD);
    assert!(sent <= UNANSWERED_PROBES as usize, "{sent} datagrams");
    assert_eq!(
        status.candidates_dropped,
        1100 - MAX_OFFER_CANDIDATES as u64
    );
    assert!(status.probes_withheld > 0);
}

#[test]
fn a_claimed_random_port_nat_sweeps_only_the_vouched_ip() {
    let third: SocketAddr = SocketAddr::new(THIRD.parse().unwrap(), 5000);
    let offer = |public: SocketAddr| PunchOffer {
        attempt: 7,
        answer: false,
        candidates: vec![Candidate {
            addr: public,
            technique: Technique::ServerReflexive,
        }],
        nat: random_symmetric(public),
        prediction: None,
    };
    let (sent, status) = answer_one_attempt(offer(third), THIRD);
    assert!(sent <= UNANSWERED_PROBES as usize, "{sent} datagrams");
    let why = status.last_failure.unwrap_or_default();
    assert!(why.contains("did not see it at"), "{why}");
    // The same claim from the address the server vouched for is a real birthday attempt.
    let home: SocketAddr = PEER_PUBLIC.parse().unwrap();
    let (sent, _) = answer_one_attempt(offer(home), "203.0.113.50");
    assert!(
        sent > 3000,
        "the birthday sweep toward the peer was cut: {sent}"
    );
}
