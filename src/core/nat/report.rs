//! What `netcheck` found: the NAT profile plus what it was measured against and what could not
//! be measured. Serialised as one flat JSON object for scripts (`netcheck --json`) and rendered
//! as an aligned table for people.

use super::profile::{NatProfile, PortAllocation};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetcheckReport {
    /// The STUN server's primary address.
    pub server: SocketAddr,
    /// The main socket's local address (with the IP it uses toward the server).
    pub local: Option<SocketAddr>,
    #[serde(flatten)]
    pub profile: NatProfile,
    pub legacy_class: Option<u8>,
    pub legacy_name: String,
    /// Public ports of the port-allocation samples, in the order they were made.
    pub observed_ports: Vec<u16>,
    /// The server named a second address (OTHER-ADDRESS), so RFC 5780 tests could run.
    pub rfc5780: bool,
    pub other_address: Option<SocketAddr>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
}

impl NetcheckReport {
    /// Fills the legacy fields from the profile.
    pub fn new(server: SocketAddr, profile: NatProfile) -> Self {
        NetcheckReport {
            server,
            local: None,
            legacy_class: profile.legacy_class(),
            legacy_name: profile.legacy_name().to_string(),
            profile,
            observed_ports: Vec::new(),
            rfc5780: false,
            other_address: None,
            notes: Vec::new(),
        }
    }

    /// The human report: one aligned line per finding, then the notes.
    pub fn render(&self) -> String {
        let p = &self.profile;
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<18}{value}");
        };
        let rfc5780 = match self.other_address {
            Some(other) => format!("yes, other address {other}"),
            None => "no".to_string(),
        };
        line("server", format!("{} (RFC 5780: {rfc5780})", self.server));
        if let Some(local) = self.local {
            line("local address", local.to_string());
        }
        if p.udp_blocked {
            line(
                "UDP",
                "blocked: no STUN answer at all (peers will need a relay over TCP)".into(),
            );
        } else if p.server_unreachable {
            line(
                "UDP",
                "not measured: the server does not answer over UDP or TCP (it is down or the \
                 address is wrong)"
                    .into(),
            );
        } else {
            let public = match (p.public, p.behind_nat) {
                (Some(a), Some(false)) => format!("{a} (no NAT: same as local)"),
                (Some(a), _) => a.to_string(),
                (None, _) => "unknown".into(),
            };
            line("public address", public);
            line("mapping", p.mapping.to_string());
            line("filtering", p.filtering.to_string());
            line("port allocation", self.allocation_text());
            line("hairpinning", yes_no(p.hairpin));
            if let Some(secs) = p.lifetime_secs {
                line("mapping lifetime", format!("at least {secs} s idle"));
            }
        }
        let class = match self.legacy_class {
            Some(c) => format!("{c} ({})", self.legacy_name),
            None => self.legacy_name.clone(),
        };
        line("legacy class", class);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn allocation_text(&self) -> String {
        let a = self.profile.allocation;
        let low = self.observed_ports.iter().min();
        let high = self.observed_ports.iter().max();
        match (a, low, high) {
            // Preserved ports say nothing, and a block's bounds are already in the text.
            (PortAllocation::Sequential { .. } | PortAllocation::Random, Some(low), Some(high)) => {
                format!("{a} (observed {low}-{high})")
            }
            _ => a.to_string(),
        }
    }
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "not measured".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::nat::{Filtering, Mapping};

    #[test]
    fn renders_the_documented_layout_and_flat_json() {
        let profile = NatProfile {
            behind_nat: Some(true),
            public: Some("203.0.113.5:40001".parse().unwrap()),
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
            allocation: PortAllocation::Sequential { delta: 1 },
            hairpin: Some(false),
            ..NatProfile::default()
        };
        let mut r = NetcheckReport::new("198.51.100.1:7400".parse().unwrap(), profile);
        r.other_address = Some("198.51.100.2:7401".parse().unwrap());
        r.rfc5780 = true;
        r.observed_ports = (20000..=20014).collect();
        let text = r.render();
        let expected = "\
server            198.51.100.1:7400 (RFC 5780: yes, other address 198.51.100.2:7401)
public address    203.0.113.5:40001
mapping           address and port-dependent
filtering         address and port-dependent
port allocation   sequential, delta +1 (observed 20000-20014)
hairpinning       no
legacy class      7 (symmetric, predictable ports, address+port filtering)
";
        assert_eq!(text, expected);
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mapping"], "address_and_port_dependent");
        assert_eq!(json["allocation"]["kind"], "sequential");
        assert_eq!(json["legacy_class"], 7);
        assert_eq!(json["rfc5780"], true);
        let back: NetcheckReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_unreachable_server_is_not_reported_as_blocked_udp() {
        let r = NetcheckReport::new(
            "198.51.100.1:7400".parse().unwrap(),
            NatProfile::no_answer(false),
        );
        let text = r.render();
        assert!(!text.contains("blocked"), "{text}");
        assert!(
            text.contains("UDP               not measured: the server does not answer"),
            "{text}"
        );
        assert!(
            text.contains("legacy class      unknown (server unreachable)"),
            "{text}"
        );
    }
}
