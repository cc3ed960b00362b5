//! A side that holds a port mapping is, for punching, a full cone at its mapped address: the
//! gateway forwards whatever arrives at that port (RFC 4787 §4.1 endpoint-independent mapping,
//! §5 endpoint-independent filtering), and the answers go back out through the same translation.
//! So the ladder plans against that profile instead of the measured one: a random symmetric NAT
//! with a mapping needs no prediction or birthday probing, and the other side just probes the
//! mapped candidate (which `plan` puts right after LAN).

use super::{Candidate, Technique};
use crate::core::nat::{Filtering, Mapping, NatProfile, PortAllocation};
use std::borrow::Cow;

/// The mapped candidate among `candidates`, if any.
pub fn mapped(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates
        .iter()
        .find(|c| matches!(c.technique, Technique::PortMapping(_)))
}

/// `profile` as the planner should see it, given the side's `candidates`.
pub fn effective<'a>(profile: &'a NatProfile, candidates: &[Candidate]) -> Cow<'a, NatProfile> {
    let Some(m) = mapped(candidates) else {
        return Cow::Borrowed(profile);
    };
    Cow::Owned(NatProfile {
        udp_blocked: false,
        server_unreachable: false,
        behind_nat: Some(true),
        public: Some(m.addr),
        mapping: Mapping::EndpointIndependent,
        filtering: Filtering::EndpointIndependent,
        allocation: PortAllocation::Unknown,
        ..profile.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::portmap::MapProtocol;
    use crate::core::punch::plan::{plan, PlanInput};

    fn random_symmetric() -> NatProfile {
        NatProfile {
            behind_nat: Some(true),
            public: Some("198.18.1.2:40000".parse().unwrap()),
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
            allocation: PortAllocation::Random,
            ..NatProfile::default()
        }
    }

    fn srflx(addr: &str) -> Candidate {
        Candidate {
            addr: addr.parse().unwrap(),
            technique: Technique::ServerReflexive,
        }
    }

    /// Row 7 (random symmetric on both sides) is hopeless today; with a mapping on one side it
    /// is not, from either side's point of view, and nobody spends birthday probes.
    #[test]
    fn a_mapping_turns_two_random_allocators_into_a_plain_probe() {
        let rnd = random_symmetric();
        let theirs_plain = [srflx("198.18.2.2:41000")];
        let theirs_mapped = [
            Candidate {
                addr: "198.18.2.2:60000".parse().unwrap(),
                technique: Technique::PortMapping(MapProtocol::Pcp),
            },
            srflx("198.18.2.2:41000"),
        ];
        let run = |mine: &[Candidate], theirs: &[Candidate]| {
            plan(&PlanInput {
                mine: &effective(&rnd, mine),
                theirs: &effective(&rnd, theirs),
                their_candidates: theirs,
                their_prediction: None,
                birthday: true,
            })
        };
        assert!(run(&[srflx("198.18.1.2:40000")], &theirs_plain)
            .hopeless
            .is_some());
        let prober = run(&[srflx("198.18.1.2:40000")], &theirs_mapped);
        assert!(prober.hopeless.is_none(), "{:?}", prober.hopeless);
        assert_eq!(
            prober.targets[0].technique,
            Technique::PortMapping(MapProtocol::Pcp)
        );
        assert!(prober.sweep.is_none() && prober.birthday_sockets == 0);
        let holder = run(&theirs_mapped, &[srflx("198.18.1.2:40000")]);
        assert!(holder.hopeless.is_none(), "{:?}", holder.hopeless);
        assert!(holder.sweep.is_none() && holder.birthday_sockets == 0);
    }
}
