//! A NAT's behaviour as RFC 4787 describes it (mapping §4.1, port allocation §4.2.1, filtering
//! §5), plus the legacy 0-8 class scale users compare against. Nodes measure their own profile,
//! send it to the server, and learn each peer's; the punch planner chooses techniques from both.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// How the NAT reuses a mapping for new destinations (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// One public address:port per internal address:port ("cone").
    EndpointIndependent,
    /// A new mapping per destination IP.
    AddressDependent,
    /// A new mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
    /// Not measured (no alternate server address, or no answer).
    #[default]
    Unknown,
}

/// Which inbound packets a mapping lets through (RFC 4787 §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    #[default]
    Unknown,
}

/// How the NAT picks the public port of a new mapping (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortAllocation {
    /// The public port equals the local port.
    Preserving,
    /// Each new mapping takes the previous port plus `delta` (Wei et al.: predictable).
    Sequential { delta: i32 },
    /// Random, but every observed port fell inside `low..=high` (a CGNAT port block).
    RandomInRange { low: u16, high: u16 },
    /// Random over (nearly) the whole port space.
    Random,
    #[default]
    Unknown,
}

/// One NAT's measured behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatProfile {
    /// No STUN answer at all over UDP while the server answered over TCP.
    #[serde(default)]
    pub udp_blocked: bool,
    /// No STUN answer, but the server's TCP port did not answer either: the server is down or
    /// unreachable, so nothing is known about UDP. Omitted from JSON when false, so peers and
    /// servers that predate it read the profile unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub server_unreachable: bool,
    /// The mapped address differs from the local one.
    #[serde(default)]
    pub behind_nat: Option<bool>,
    /// The server-reflexive address of the main socket.
    #[serde(default)]
    pub public: Option<SocketAddr>,
    #[serde(default)]
    pub mapping: Mapping,
    #[serde(default)]
    pub filtering: Filtering,
    #[serde(default)]
    pub allocation: PortAllocation,
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// How long an idle UDP mapping lives, if measured (`netcheck --lifetime`).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl NatProfile {
    /// The verdict for a netcheck that got no answer at all over UDP: `UDP blocked` only when
    /// the server answered over TCP; otherwise the server itself is unreachable.
    pub fn no_answer(server_answers_tcp: bool) -> NatProfile {
        NatProfile {
            udp_blocked: server_answers_tcp,
            server_unreachable: !server_answers_tcp,
            ..NatProfile::default()
        }
    }

    /// Nothing came back, for whatever reason: the verdict is worth measuring again.
    pub fn is_doubtful(&self) -> bool {
        self.udp_blocked || self.server_unreachable
    }

    /// The mapping is the same for every destination, so the server-reflexive address is what
    /// peers can reach (no NAT counts as endpoint-independent).
    pub fn is_cone(&self) -> bool {
        self.behind_nat == Some(false) || self.mapping == Mapping::EndpointIndependent
    }

    /// The legacy class: 0 open, 1 full cone, 2 restricted firewall, 3 restricted cone,
    /// 4 port-restricted firewall, 5 port-restricted cone, 6/7 symmetric with predictable
    /// (sequential) ports and address / address+port filtering, 8 symmetric unpredictable.
    /// `None` when UDP is blocked or too little is known.
    pub fn legacy_class(&self) -> Option<u8> {
        if self.udp_blocked || self.server_unreachable {
            return None;
        }
        let nat = self.behind_nat?;
        if !nat {
            return match self.filtering {
                Filtering::EndpointIndependent => Some(0),
                Filtering::AddressDependent => Some(2),
                Filtering::AddressAndPortDependent => Some(4),
                Filtering::Unknown => None,
            };
        }
        match self.mapping {
            Mapping::EndpointIndependent => match self.filtering {
                Filtering::EndpointIndependent => Some(1),
                Filtering::AddressDependent => Some(3),
                Filtering::AddressAndPortDependent => Some(5),
                Filtering::Unknown => None,
            },
            Mapping::AddressDependent | Mapping::AddressAndPortDependent => match self.allocation {
                PortAllocation::Sequential { .. } | PortAllocation::Preserving => {
                    match self.filtering {
                        Filtering::AddressAndPortDependent => Some(7),
                        Filtering::Unknown => None,
                        _ => Some(6),
                    }
                }
                PortAllocation::Random | PortAllocation::RandomInRange { .. } => Some(8),
                PortAllocation::Unknown => None,
            },
            Mapping::Unknown => None,
        }
    }

    /// The legacy class's name.
    pub fn legacy_name(&self) -> &'static str {
        if self.udp_blocked {
            return "UDP blocked";
        }
        if self.server_unreachable {
            return "unknown (server unreachable)";
        }
        match self.legacy_class() {
            Some(0) => "open internet",
            Some(1) => "full cone",
            Some(2) => "restricted firewall",
            Some(3) => "restricted cone",
            Some(4) => "port-restricted firewall",
            Some(5) => "port-restricted cone",
            Some(6) => "symmetric, predictable ports, address filtering",
            Some(7) => "symmetric, predictable ports, address+port filtering",
            Some(8) => "symmetric, unpredictable ports",
            _ => "unknown",
        }
    }

    /// A one-line summary for tables, e.g. "port-restricted cone (5)" or
    /// "symmetric, sequential +1 (7)".
    pub fn short(&self) -> String {
        if self.udp_blocked {
            return "UDP blocked".into();
        }
        if self.server_unreachable {
            return "not measured: server unreachable".into();
        }
        let class = self
            .legacy_class()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        if self.behind_nat == Some(false) {
            // No NAT at all; a stateful firewall may still filter what comes in.
            return match self.legacy_class() {
                Some(0) | None => "none (public address)".into(),
                Some(c) => format!("none (public address), {} ({c})", self.legacy_name()),
            };
        }
        match (self.is_cone(), self.allocation) {
            (false, PortAllocation::Sequential { delta }) => {
                format!("symmetric, sequential {delta:+}{class}")
            }
            (false, PortAllocation::RandomInRange { low, high }) => {
                format!("symmetric, random in {low}-{high}{class}")
            }
            (false, PortAllocation::Random) => format!("symmetric, random{class}"),
            _ => format!("{}{class}", self.legacy_name()),
        }
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::AddressDependent => "address-dependent",
            Mapping::AddressAndPortDependent => "address and port-dependent",
            Mapping::Unknown => "unknown",
        })
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address and port-dependent",
            Filtering::Unknown => "unknown",
        })
    }
}

impl fmt::Display for PortAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortAllocation::Preserving => f.write_str("port-preserving"),
            PortAllocation::Sequential { delta } => write!(f, "sequential, delta {delta:+}"),
            PortAllocation::RandomInRange { low, high } => write!(f, "random in {low}-{high}"),
            PortAllocation::Random => f.write_str("random"),
            PortAllocation::Unknown => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat(mapping: Mapping, filtering: Filtering, allocation: PortAllocation) -> NatProfile {
        NatProfile {
            behind_nat: Some(true),
            mapping,
            filtering,
            allocation,
            ..NatProfile::default()
        }
    }

    #[test]
    fn legacy_classes_follow_the_old_scale() {
        use Filtering as F;
        use Mapping as M;
        use PortAllocation as P;
        assert_eq!(
            nat(
                M::EndpointIndependent,
                F::EndpointIndependent,
                P::Preserving
            )
            .legacy_class(),
            Some(1)
        );
        assert_eq!(
            nat(M::EndpointIndependent, F::AddressDependent, P::Preserving).legacy_class(),
            Some(3)
        );
        assert_eq!(
            nat(
                M::EndpointIndependent,
                F::AddressAndPortDependent,
                P::Random
            )
            .legacy_class(),
            Some(5)
        );
        assert_eq!(
            nat(
                M::AddressAndPortDependent,
                F::AddressDependent,
                P::Sequential { delta: 1 }
            )
            .legacy_class(),
            Some(6)
        );
        assert_eq!(
            nat(
                M::AddressAndPortDependent,
                F::AddressAndPortDependent,
                P::Sequential { delta: 4 }
            )
            .legacy_class(),
            Some(7)
        );
        assert_eq!(
            nat(M::AddressDependent, F::AddressAndPortDependent, P::Random).legacy_class(),
            Some(8)
        );
        let open = NatProfile {
            behind_nat: Some(false),
            filtering: F::EndpointIndependent,
            ..NatProfile::default()
        };
        assert_eq!(open.legacy_class(), Some(0));
        let blocked = NatProfile {
            udp_blocked: true,
            ..NatProfile::default()
        };
        assert_eq!(blocked.legacy_class(), None);
        assert_eq!(blocked.short(), "UDP blocked");
    }

    #[test]
    fn a_public_host_reads_as_no_nat() {
        let open = NatProfile {
            behind_nat: Some(false),
            filtering: Filtering::EndpointIndependent,
            ..NatProfile::default()
        };
        assert_eq!(open.short(), "none (public address)");
        let firewalled = NatProfile {
            filtering: Filtering::AddressAndPortDependent,
            ..open
        };
        assert_eq!(
            firewalled.short(),
            "none (public address), port-restricted firewall (4)"
        );
    }

    #[test]
    fn no_answer_blames_the_server_when_tcp_fails_too() {
        let down = NatProfile::no_answer(false);
        assert!(!down.udp_blocked && down.server_unreachable);
        assert_eq!(down.short(), "not measured: server unreachable");
        assert_eq!(NatProfile::no_answer(true).short(), "UDP blocked");
        // Old readers and writers see the field only when it is set.
        let json = serde_json::to_string(&NatProfile::default()).unwrap();
        assert!(!json.contains("server_unreachable"), "{json}");
        let back: NatProfile =
            serde_json::from_str(&serde_json::to_string(&down).unwrap()).unwrap();
        assert_eq!(back, down);
    }

    #[test]
    fn short_names_the_allocation_of_a_symmetric_nat() {
        let p = nat(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
            PortAllocation::Sequential { delta: 3 },
        );
        assert_eq!(p.short(), "symmetric, sequential +3 (7)");
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.contains(r#""allocation":{"kind":"sequential","delta":3}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<NatProfile>(&json).unwrap(), p);
    }
}
