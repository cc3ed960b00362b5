//! The strategy ladder: from both NAT profiles and the peer's offer, which probes this side sends.
//!
//! The reasoning follows nat-lab.md's matrix. A cone side (endpoint-independent mapping, RFC 4787
//! §4.1) is reachable at its server-reflexive address once its filter is open, so both sides
//! always probe each other's LAN and server-reflexive candidates (rows 1, 8, 10), each destination
//! first primed with a low-TTL packet (row 11). A symmetric side gets a fresh port per
//! destination, so a cone side with address+port-dependent filtering must first send to that
//! unknown port: it probes a window around the predicted port of a sequential allocator (row 3,
//! Wei et al.), sweeps a small port block (row 4), or sends paced random probes while the
//! symmetric side holds many sockets open toward it (birthday, row 5). With address-dependent or
//! open filtering on the cone side none of that is needed: the symmetric side's probe gets in
//! and the cone side answers its peer-reflexive address (row 2). Two sequential allocators probe
//! each other's windows, in the same order, as their first new mappings (row 6). Two random
//! allocators cannot afford it (row 7).

use super::{Candidate, Prediction, Technique};
use crate::core::nat::{Filtering, NatProfile, PortAllocation};
use std::net::{IpAddr, SocketAddr};

/// Steps of a prediction window on each side of the predicted port (Wei et al. probe a window
/// because other flows through the NAT may take ports in between).
pub const WINDOW_BEFORE: i32 = 2;
pub const WINDOW_AFTER: i32 = 14;
/// Port blocks up to this size are swept completely (a CGNAT block, or ADM's hash range).
pub const MAX_SWEEP: u32 = 4096;
/// Sockets the symmetric side opens for birthday probing (nat-lab.md: 256 x 1024 is about 98%).
pub const BIRTHDAY_SOCKETS: u16 = 256;
/// Random probes per round from the cone side, and rounds per attempt.
pub const BIRTHDAY_PROBES: u32 = 1024;
pub const BIRTHDAY_ROUNDS: u32 = 3;

/// Probes sent one after another, paced, from the main socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Every port of `low..=high` at `ip`, `passes` times.
    Range {
        ip: IpAddr,
        low: u16,
        high: u16,
        passes: u32,
    },
    /// `count` random ports in 1024..=65535 at `ip` (the cone half of birthday probing).
    Random { ip: IpAddr, count: u32 },
}

impl Sweep {
    pub fn len(&self) -> u32 {
        match self {
            Sweep::Range {
                low, high, passes, ..
            } => (u32::from(*high) - u32::from(*low) + 1) * passes,
            Sweep::Random { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn technique(&self) -> Technique {
        match self {
            Sweep::Range { .. } => Technique::PortBlock,
            Sweep::Random { .. } => Technique::Birthday,
        }
    }
}

/// One destination probed from the main socket every round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub technique: Technique,
    /// The window step for predicted targets.
    pub offset: i16,
}

/// What this side does in one attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In sending order; every one is primed with a low TTL before the first real probe.
    pub targets: Vec<Target>,
    pub sweep: Option<Sweep>,
    /// Sockets to open, each probing the peer's server-reflexive address (birthday, symmetric
    /// side).
    pub birthday_sockets: u16,
    /// Why no technique can reach the peer, when none can.
    pub hopeless: Option<String>,
}

/// Inputs of the planner.
pub struct PlanInput<'a> {
    pub mine: &'a NatProfile,
    pub theirs: &'a NatProfile,
    pub their_candidates: &'a [Candidate],
    pub their_prediction: Option<Prediction>,
    pub birthday: bool,
}

fn is_cone(p: &NatProfile) -> bool {
    // A profile we could not measure is treated as a cone: its candidates are tried, and nothing
    // expensive is spent on guesses.
    p.is_cone() || p.mapping == crate::core::nat::Mapping::Unknown
}

fn needs_exact_port(filter_side: &NatProfile) -> bool {
    matches!(
        filter_side.filtering,
        Filtering::AddressAndPortDependent | Filtering::Unknown
    )
}

/// The block to sweep for a random-in-range allocator. Netcheck saw only a dozen ports, so the
/// true block reaches past the observed extremes. With n uniform samples the chance that a bound
/// lies more than m past the observed extreme is (1 - m/R)^n; a margin of half the span keeps
/// that under 0.1% per side for the 16 samples a node takes.
fn small_range(allocation: PortAllocation) -> Option<(u16, u16)> {
    match allocation {
        PortAllocation::RandomInRange { low, high }
            if high >= low && u32::from(high - low) < MAX_SWEEP =>
        {
            let margin = ((high - low) / 2).max(32);
            Some((
                low.saturating_sub(margin).max(1024),
                high.saturating_add(margin),
            ))
        }
        _ => None,
    }
}

/// The predicted targets from step `first` on.
fn window(prediction: Prediction, first: i32) -> Vec<Target> {
    (first..first + WINDOW_BEFORE + WINDOW_AFTER)
        .filter_map(|k| {
            let port = i64::from(prediction.next_port) + i64::from(prediction.delta) * i64::from(k);
            let port = u16::try_from(port).ok().filter(|p| *p >= 1024)?;
            Some(Target {
                addr: SocketAddr::new(prediction.ip, port),
                technique: Technique::Predicted,
                offset: k as i16,
            })
        })
        .collect()
}

fn describe(p: &NatProfile) -> String {
    match p.allocation {
        PortAllocation::Random => "random ports".into(),
        PortAllocation::RandomInRange { low, high } => format!("random ports in {low}-{high}"),
        PortAllocation::Sequential { delta } => format!("sequential ports ({delta:+})"),
        PortAllocation::Preserving => "port-preserving".into(),
        PortAllocation::Unknown => "unknown allocation".into(),
    }
}

pub fn plan(input: &PlanInput) -> Plan {
    let mut plan = Plan::default();
    // LAN first, then a port mapping (it works whatever either NAT does), then the rest.
    let rank = |c: &&Candidate| match c.technique {
        Technique::Lan => 0,
        Technique::PortMapping(_) => 1,
        _ => 2,
    };
    let mut ordered: Vec<&Candidate> = input.their_candidates.iter().collect();
    ordered.sort_by_key(rank);
    let basic: Vec<Target> = ordered
        .into_iter()
        .map(|c| Target {
            addr: c.addr,
            technique: c.technique,
            offset: 0,
        })
        .collect();
    let their_ip = input
        .their_candidates
        .iter()
        // Sweeps and windows aim at the public IPv4 address, never at an IPv6 candidate.
        .find(|c| {
            c.technique == Technique::ServerReflexive
                && super::ipv6::same_family(c.addr, input.theirs.public)
        })
        .map(|c| c.addr.ip())
        .or(input.theirs.public.map(|a| a.ip()));
    let me_cone = is_cone(input.mine);
    let they_cone = is_cone(input.theirs);
    // A side whose STUN went unanswered may still reach the other directly (a LAN, a firewall
    // that only blocks the server): probe the candidates, and say why nothing more is tried.
    let blocked = match (input.mine.udp_blocked, input.theirs.udp_blocked) {
        (true, _) => Some("this node's UDP to the server is blocked"),
        (_, true) => Some("the peer's UDP to the server is blocked"),
        _ => None,
    };
    if let Some(why) = blocked {
        plan.targets = basic;
        plan.hopeless = Some(why.into());
        return plan;
    }

    match (me_cone, they_cone) {
        (_, true) => {
            plan.targets = basic;
            // I am symmetric and they filter by port: they must find my port. Sequential or
            // small-block allocators are found by their window or sweep; a random one needs my
            // many sockets toward them.
            let mine_random = matches!(input.mine.allocation, PortAllocation::Random)
                || matches!(input.mine.allocation, PortAllocation::RandomInRange { .. })
                    && small_range(input.mine.allocation).is_none();
            if !me_cone && needs_exact_port(input.theirs) && mine_random {
                if input.birthday {
                    plan.birthday_sockets = BIRTHDAY_SOCKETS;
                } else {
                    plan.hopeless = Some(
                        "this node's NAT picks random ports and birthday probing is off \
                         (punch.birthday = false)"
                            .into(),
                    );
                }
            }
        }
        (true, false) => {
            plan.targets = basic;
            if !needs_exact_port(input.mine) {
                // Their probe passes my filter; I answer their peer-reflexive address.
                return plan;
            }
            match (input.theirs.allocation, input.their_prediction, their_ip) {
                (PortAllocation::Sequential { .. }, Some(p), _) => {
                    plan.targets.extend(window(p, -WINDOW_BEFORE));
                }
                (alloc, _, Some(ip)) if small_range(alloc).is_some() => {
                    if let Some((low, high)) = small_range(alloc) {
                        plan.sweep = Some(Sweep::Range {
                            ip,
                            low,
                            high,
                            passes: 2,
                        });
                    }
                }
                (_, _, Some(ip)) if input.birthday => {
                    plan.sweep = Some(Sweep::Random {
                        ip,
                        count: BIRTHDAY_PROBES * BIRTHDAY_ROUNDS,
                    });
                }
                (_, _, Some(_)) => {
                    plan.hopeless = Some(format!(
                        "the peer's NAT is symmetric with {} and birthday probing is off \
                         (punch.birthday = false)",
                        describe(input.theirs)
                    ));
                }
                (_, _, None) => {
                    plan.hopeless = Some("the peer has no public address yet".into());
                }
            }
        }
        (false, false) => {
            let both_sequential =
                matches!(input.mine.allocation, PortAllocation::Sequential { .. })
                    && matches!(input.theirs.allocation, PortAllocation::Sequential { .. });
            match (both_sequential, input.their_prediction) {
                (true, Some(p)) => {
                    // The window goes first and starts at the predicted port itself: my k-th new
                    // mapping (port mine+k*delta) must meet their k-th probe, which leaves from
                    // theirs+k*delta toward mine+k*delta.
                    plan.targets = window(p, 0);
                    plan.targets.extend(basic);
                }
                _ => {
                    plan.targets = basic;
                    plan.hopeless = Some(format!(
                        "both sides symmetric ({} here, {} there)",
                        describe(input.mine),
                        describe(input.theirs)
                    ));
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nat::Mapping;

    fn profile(mapping: Mapping, filtering: Filtering, allocation: PortAllocation) -> NatProfile {
        NatProfile {
            behind_nat: Some(true),
            public: Some("203.0.113.7:40000".parse().unwrap()),
            mapping,
            filtering,
            allocation,
            ..NatProfile::default()
        }
    }

    fn prc() -> NatProfile {
        profile(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
            PortAllocation::Preserving,
        )
    }

    fn sym(allocation: PortAllocation) -> NatProfile {
        profile(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
            allocation,
        )
    }

    fn cands() -> Vec<Candidate> {
        vec![
            Candidate {
                addr: "203.0.113.7:40000".parse().unwrap(),
                technique: Technique::ServerReflexive,
            },
            Candidate {
                addr: "10.1.0.2:51820".parse().unwrap(),
                technique: Technique::Lan,
            },
        ]
    }

    fn run(mine: &NatProfile, theirs: &NatProfile, prediction: Option<Prediction>) -> Plan {
        plan(&PlanInput {
            mine,
            theirs,
            their_candidates: &cands(),
            their_prediction: prediction,
            birthday: true,
        })
    }

    #[test]
    fn cones_probe_lan_first_then_server_reflexive() {
        let p = run(&prc(), &prc(), None);
        assert_eq!(p.targets.len(), 2);
        assert_eq!(p.targets[0].technique, Technique::Lan);
        assert!(p.sweep.is_none() && p.birthday_sockets == 0 && p.hopeless.is_none());
    }

    #[test]
    fn cone_predicts_a_sequential_peer_and_sweeps_a_block() {
        let pred = Prediction {
            ip: "203.0.113.9".parse().unwrap(),
            next_port: 20010,
            delta: 1,
        };
        let p = run(
            &prc(),
            &sym(PortAllocation::Sequential { delta: 1 }),
            Some(pred),
        );
        let window: Vec<u16> = p
            .targets
            .iter()
            .filter(|t| t.technique == Technique::Predicted)
            .map(|t| t.addr.port())
            .collect();
        assert_eq!(window.first(), Some(&20008));
        assert!(window.contains(&20010) && window.contains(&20020));
        let block = run(
            &prc(),
            &sym(PortAllocation::RandomInRange {
                low: 20000,
                high: 20511,
            }),
            None,
        );
        assert_eq!(
            block.sweep.as_ref().map(Sweep::len),
            Some((512 + 2 * 255) * 2)
        );
    }

    #[test]
    fn birthday_splits_between_the_two_sides() {
        let cone_side = run(&prc(), &sym(PortAllocation::Random), None);
        assert_eq!(
            cone_side.sweep.as_ref().map(Sweep::technique),
            Some(Technique::Birthday)
        );
        let sym_side = run(&sym(PortAllocation::Random), &prc(), None);
        assert_eq!(sym_side.birthday_sockets, BIRTHDAY_SOCKETS);
        // A restricted cone lets the symmetric side's probe in: no birthday needed.
        let mut rc = prc();
        rc.filtering = Filtering::AddressDependent;
        assert_eq!(
            run(&sym(PortAllocation::Random), &rc, None).birthday_sockets,
            0
        );
        assert!(run(&rc, &sym(PortAllocation::Random), None).sweep.is_none());
    }

    #[test]
    fn two_random_allocators_are_hopeless_and_say_why() {
        let p = run(
            &sym(PortAllocation::Random),
            &sym(PortAllocation::Random),
            None,
        );
        let why = p.hopeless.unwrap();
        assert!(why.contains("both sides symmetric"), "{why}");
        assert!(why.contains("random ports"), "{why}");
    }

    #[test]
    fn two_sequential_allocators_send_the_window_first() {
        let pred = Prediction {
            ip: "203.0.113.9".parse().unwrap(),
            next_port: 30000,
            delta: 2,
        };
        let seq = sym(PortAllocation::Sequential { delta: 2 });
        let p = run(&seq, &seq, Some(pred));
        assert!(p.hopeless.is_none());
        assert_eq!(p.targets[0].technique, Technique::Predicted);
        assert_eq!(p.targets[0].addr.port(), 30000);
        assert_eq!(p.targets[1].addr.port(), 30002);
    }
}
