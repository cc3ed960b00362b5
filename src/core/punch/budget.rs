//! What a node will spend on addresses it cannot trust yet, whatever a peer's offer says.
//!
//! A punch offer is the peer's word, relayed by the server: its candidates, its NAT profile and
//! its port prediction decide where this node's probes go. A hostile member could name a third
//! party there and turn every node it meets into an amplifier (project issue 9: 1,100 made-up
//! candidates drew 23,092 datagrams in 10 s). So, as RFC 8445 §14 bounds connectivity checks
//! and RFC 7675 requires consent before sending further:
//!
//! - an offer is cut to `MAX_OFFER_CANDIDATES` usable candidates;
//! - an IP that never answered gets at most `UNANSWERED_PROBES` probes per `BUDGET_WINDOW`, and
//!   all such IPs together `UNANSWERED_TOTAL`, across attempts (a new offer does not refill it);
//! - only the peer's public IP as the server saw it ("vouched": the server passes no other
//!   public address in a member's endpoints) and IPs that answered an authenticated probe are
//!   free of that budget, so port sweeps, birthday probing and prediction windows, which need
//!   thousands of probes before any answer, only ever aim there.

use super::plan::{Plan, Sweep};
use super::{Candidate, Prediction, Technique};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Candidates used from one offer (an honest node sends two: its LAN address and its
/// server-reflexive one).
pub const MAX_OFFER_CANDIDATES: usize = 8;
/// Probes to one IP that never answered, per window: a full attempt's priming and 20 rounds.
pub const UNANSWERED_PROBES: u32 = 32;
/// Probes to all IPs that never answered together, per window.
pub const UNANSWERED_TOTAL: u32 = 4 * UNANSWERED_PROBES;
pub const BUDGET_WINDOW: Duration = Duration::from_secs(30);
/// The largest port step a prediction may claim (see `rendezvous::candidates`).
pub const MAX_PREDICTION_DELTA: i32 = 64;
/// IPs remembered as having answered; the oldest is forgotten first.
const MAX_ANSWERED: usize = 16;
/// Public IPs the server may vouch for at once (one per address family).
const MAX_VOUCHED: usize = 2;

/// One peer's probe budget.
#[derive(Debug, Default)]
pub struct ProbeBudget {
    vouched: Vec<IpAddr>,
    answered: Vec<IpAddr>,
    window_start: Option<Instant>,
    spent: HashMap<IpAddr, u32>,
    spent_total: u32,
}

impl ProbeBudget {
    /// The peer's public IPs as the server passed them (public addresses in its endpoints).
    /// Beside an IPv4 public address the server also passes global IPv6 ones it could not check
    /// (`rendezvous::candidates`): those are not vouched for, and stay under the budget until
    /// they answer.
    pub fn set_vouched(&mut self, endpoints: &[SocketAddr]) {
        self.vouched.clear();
        let has_v4 = endpoints.iter().any(|a| {
            let ip = a.ip().to_canonical();
            ip.is_ipv4() && !crate::core::rendezvous::candidates::is_local_scope(ip)
        });
        for ip in endpoints.iter().map(|a| a.ip().to_canonical()) {
            let private = crate::core::rendezvous::candidates::is_local_scope(ip);
            let unchecked = has_v4 && ip.is_ipv6();
            if !private
                && !unchecked
                && !self.vouched.contains(&ip)
                && self.vouched.len() < MAX_VOUCHED
            {
                self.vouched.push(ip);
            }
        }
    }

    pub fn is_vouched(&self, ip: IpAddr) -> bool {
        self.vouched.contains(&ip.to_canonical())
    }

    /// An authenticated round trip (a pong, or a peer's session packet) came from `ip`.
    pub fn answered(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if self.answered.contains(&ip) {
            return;
        }
        if self.answered.len() >= MAX_ANSWERED {
            self.answered.remove(0);
        }
        self.answered.push(ip);
    }

    /// Vouched or answered: probes there are bounded by the plan alone.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.is_vouched(ip) || self.answered.contains(&ip.to_canonical())
    }

    /// Whether one more probe may go to `ip` now; spends from the budget when it does.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.is_trusted(ip) {
            return true;
        }
        let fresh = self
            .window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= BUDGET_WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.spent.clear();
            self.spent_total = 0;
        }
        let ip = ip.to_canonical();
        let spent = self.spent.get(&ip).copied().unwrap_or(0);
        if spent >= UNANSWERED_PROBES || self.spent_total >= UNANSWERED_TOTAL {
            return false;
        }
        // Bounded: every entry took at least one of UNANSWERED_TOTAL probes this window.
        self.spent.insert(ip, spent + 1);
        self.spent_total += 1;
        true
    }
}

/// Whether a candidate can be probed at all (no port, unspecified, multicast, broadcast).
fn usable(c: &Candidate) -> bool {
    let ip = c.addr.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    c.addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Cuts an offer's candidates to the usable ones, without duplicates, at most
/// `MAX_OFFER_CANDIDATES`; returns how many were dropped.
pub fn trim_candidates(candidates: &mut Vec<Candidate>) -> usize {
    let before = candidates.len();
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates.iter() {
        if kept.len() < MAX_OFFER_CANDIDATES && usable(c) && !kept.iter().any(|k| k.addr == c.addr)
        {
            kept.push(*c);
        }
    }
    *candidates = kept;
    before - candidates.len()
}

/// A prediction with an implausible step is not used (its window would spread over the whole
/// port space).
pub fn plausible(p: &Prediction) -> bool {
    p.next_port != 0 && p.delta != 0 && p.delta.unsigned_abs() <= MAX_PREDICTION_DELTA as u32
}

/// Removes from `plan` what would aim many probes at an IP the server did not vouch for: the
/// prediction window, the port sweep, and the birthday sockets' destination. Returns a reason
/// when it removed something.
pub fn confine(
    plan: &mut Plan,
    birthday_dst: &mut Option<SocketAddr>,
    budget: &ProbeBudget,
) -> Option<String> {
    let mut removed = Vec::new();
    let before = plan.targets.len();
    plan.targets
        .retain(|t| t.technique != Technique::Predicted || budget.is_vouched(t.addr.ip()));
    if plan.targets.len() < before {
        removed.push("prediction window");
    }
    let sweep_ip = plan.sweep.as_ref().map(|s| match s {
        Sweep::Range { ip, .. } | Sweep::Random { ip, .. } => *ip,
    });
    if sweep_ip.is_some_and(|ip| !budget.is_vouched(ip)) {
        plan.sweep = None;
        removed.push("port sweep");
    }
    if plan.birthday_sockets > 0 && !birthday_dst.is_some_and(|d| budget.is_vouched(d.ip())) {
        *birthday_dst = None;
        plan.birthday_sockets = 0;
        removed.push("birthday sockets");
    }
    (!removed.is_empty()).then(|| {
        format!(
            "the peer's offer aims its {} at an address the server did not see it at",
            removed.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::plan::Target;
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ip_that_never_answered_gets_a_budget_per_window() {
        let t0 = crate::test_now();
        let mut b = ProbeBudget::default();
        let victim: IpAddr = "192.0.2.99".parse().unwrap();
        let sent = (0..1000).filter(|_| b.allow(victim, t0)).count();
        assert_eq!(sent, UNANSWERED_PROBES as usize);
        // Still spent a moment later; refilled after the window.
        assert!(!b.allow(victim, t0 + Duration::from_secs(10)));
        assert!(b.allow(victim, t0 + BUDGET_WINDOW));
    }

    #[test]
    fn many_ips_share_one_total() {
        let t0 = crate::test_now();
        let mut b = ProbeBudget::default();
        let sent = (0..10_000u32)
            .filter(|i| b.allow(IpAddr::from((*i).to_be_bytes()), t0))
            .count();
        assert_eq!(sent, UNANSWERED_TOTAL as usize);
    }

    #[test]
    fn vouched_and_answered_ips_are_not_limited() {
        let t0 = crate::test_now();
        let mut b = ProbeBudget::default();
        b.set_vouched(&[sa("10.1.0.2:51820"), sa("203.0.113.7:40000")]);
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        let lan: IpAddr = "10.1.0.2".parse().unwrap();
        assert!(
            b.is_vouched(public) && !b.is_vouched(lan),
            "a LAN address is not vouched"
        );
        assert!((0..5000).all(|_| b.allow(public, t0)));
        assert_eq!((0..100).filter(|_| b.allow(lan, t0)).count(), 32);
        b.answered(lan);
        assert!((0..100).all(|_| b.allow(lan, t0)));
    }

    #[test]
    fn an_offer_is_cut_to_usable_unique_candidates() {
        let mut c: Vec<Candidate> = (0..1100u16)
            .map(|i| Candidate {
                addr: SocketAddr::new("192.0.2.99".parse().unwrap(), 1024 + i),
                technique: Technique::Lan,
            })
            .collect();
        c.insert(
            0,
            Candidate {
                addr: sa("0.0.0.0:5"),
                technique: Technique::Lan,
            },
        );
        assert_eq!(trim_candidates(&mut c), 1101 - MAX_OFFER_CANDIDATES);
        assert_eq!(c.len(), MAX_OFFER_CANDIDATES);
        assert_eq!(c[0].addr.port(), 1024);
    }

    #[test]
    fn sweeps_windows_and_birthday_only_aim_at_the_vouched_ip() {
        let mut b = ProbeBudget::default();
        b.set_vouched(&[sa("203.0.113.7:40000")]);
        let third: IpAddr = "192.0.2.99".parse().unwrap();
        let mut plan = Plan {
            targets: vec![Target {
                addr: SocketAddr::new(third, 6000),
                technique: Technique::Predicted,
                offset: 0,
            }],
            sweep: Some(Sweep::Random {
                ip: third,
                count: 3072,
            }),
            birthday_sockets: 256,
            hopeless: None,
        };
        let mut dst = Some(SocketAddr::new(third, 5000));
        let why = confine(&mut plan, &mut dst, &b).unwrap();
        assert!(why.contains("port sweep"), "{why}");
        assert!(plan.targets.is_empty() && plan.sweep.is_none() && plan.birthday_sockets == 0);
        assert_eq!(dst, None);
        // Aimed at the vouched IP, the same plan is left alone.
        let home: IpAddr = "203.0.113.7".parse().unwrap();
        let mut plan = Plan {
            sweep: Some(Sweep::Random {
                ip: home,
                count: 3072,
            }),
            birthday_sockets: 256,
            ..Plan::default()
        };
        let mut dst = Some(SocketAddr::new(home, 40000));
        assert_eq!(confine(&mut plan, &mut dst, &b), None);
        assert!(plan.sweep.is_some() && plan.birthday_sockets == 256);
    }

    proptest! {
        #[test]
        fn no_ip_ever_gets_more_than_the_budget_in_a_window(
            ips in proptest::collection::vec(0u8..8, 0..2000),
        ) {
            let t0 = crate::test_now();
            let mut b = ProbeBudget::default();
            let mut sent: HashMap<u8, u32> = HashMap::new();
            for ip in ips {
                if b.allow(IpAddr::from([192, 0, 2, ip]), t0) {
                    *sent.entry(ip).or_default() += 1;
                }
            }
            prop_assert!(sent.values().all(|n| *n <= UNANSWERED_PROBES));
            prop_assert!(sent.values().sum::<u32>() <= UNANSWERED_TOTAL);
        }
    }
}
