//! Replans: both sides may offer again when their NAT check turns symmetric; when the two offers
//! cross, exactly one attempt runs (the lower key's), and each side primes before probing.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

fn local() -> LocalInfo {
    LocalInfo {
        profile: NatProfile::default(),
        candidates: vec![Candidate {
            addr: "203.0.113.7:51000".parse().unwrap(),
            technique: Technique::ServerReflexive,
        }],
        prediction: None,
        config: PunchConfig::default(),
    }
}

#[test]
fn crossing_replan_offers_run_one_attempt_the_lower_keys() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let k1 = SecretKey::generate(&mut rng);
    let k2 = SecretKey::generate(&mut rng);
    let (low, high) = if k1.public_key() < k2.public_key() {
        (k1, k2)
    } else {
        (k2, k1)
    };
    let now = crate::test_now();
    let mut a = PeerPunch::new(&low, &high.public_key(), now);
    let mut b = PeerPunch::new(&high, &low.public_key(), now);
    let mut transmits = VecDeque::new();
    let mut sockets = SocketPool::new(1000);
    let mut ctx = Ctx {
        now,
        rng: &mut rng,
        transmits: &mut transmits,
        sockets: &mut sockets,
    };
    a.request_replan();
    b.request_replan();
    assert!(a.wants_offer(now, true) && b.wants_offer(now, true));
    let oa = a.make_offer(&local(), &mut ctx).unwrap();
    let ob = b.make_offer(&local(), &mut ctx).unwrap();
    assert!(!oa.answer && !ob.answer);
    assert_ne!(oa.attempt, ob.attempt, "the two sides' ids never collide");
    // They cross: the lower key keeps waiting for its answer, the higher key yields.
    a.handle_offer(ob, &local(), &mut ctx);
    b.handle_offer(oa.clone(), &local(), &mut ctx);
    assert!(b.wants_offer(now, true), "the higher key owes an answer");
    let answer = b.make_offer(&local(), &mut ctx).unwrap();
    assert!(answer.answer);
    assert_eq!(answer.attempt, oa.attempt);
    a.handle_offer(answer, &local(), &mut ctx);
    assert!(a.attempt_age(now).is_some() && b.attempt_age(now).is_some());
    assert_eq!((a.status().attempts, b.status().attempts), (1, 1));
    // Every first datagram toward a target was a low-TTL priming packet.
    assert!(ctx.transmits.iter().all(|t| t.ttl.is_some()));
}
