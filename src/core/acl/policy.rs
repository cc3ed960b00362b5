//! What the server sends each node: the rules whose `to` names that node, with `from` resolved
//! to the overlay IPv4 addresses of the members it names. A node enforces what it receives
//! (it cannot protect a peer from itself), so it needs only the rules about its own inbound
//! traffic, and it never has to know other members' tags.
//!
//! On the wire it is optional: absent means "the network has no rules: allow everything", as
//! with servers that predate rules; present with no rules means "nothing may connect to you".

use super::rule::{proto_ports_allow, Endpoint, PortRange, Proto, Rule};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// At most this many source addresses over all of one node's rules: about 20 bytes each in JSON,
/// so a node's policy stays well inside one 64 KiB control message with the rest of the fields.
pub const MAX_SOURCES: usize = 2048;

/// Who may send under one node rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sources {
    /// Every member of the network.
    All,
    /// These members' overlay IPv4 addresses, sorted (a peer's IPv6 address carries its IPv4
    /// address in its last 32 bits, `core::ula`, so one list serves both families).
    Members(Vec<Ipv4Addr>),
}

impl Sources {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        match self {
            Sources::All => true,
            Sources::Members(ips) => ips.binary_search(&ip).is_ok(),
        }
    }
}

/// One rule as a node enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRule {
    /// The rule's number in `network acl NAME list` (1-based), so `status` names the same rule.
    pub id: u32,
    /// The rule's text form, shown by `status` and `doctor`.
    pub text: String,
    pub from: Sources,
    pub proto: Proto,
    #[serde(default)]
    pub ports: Vec<PortRange>,
}

impl NodeRule {
    /// Whether this rule admits a new flow from `src` of `proto` to `port`.
    pub fn admits(&self, src: Ipv4Addr, proto: Proto, port: Option<u16>) -> bool {
        self.from.contains(src) && proto_ports_allow(self.proto, &self.ports, proto, port)
    }
}

/// The rules one node enforces on what its peers send it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePolicy {
    pub rules: Vec<NodeRule>,
    /// The rules that let this node connect to its peers, with `from` holding the peers they
    /// name as destinations: not enforced here (the peer does), only told by `doctor PEER`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<NodeRule>,
    /// Rules left out because the node's copy would exceed [`MAX_SOURCES`] (they allow
    /// nothing on this node: failing closed, and `status` says so).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A member as the server's policy resolution sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub virtual_ip: Ipv4Addr,
    pub tags: Vec<String>,
}

/// The policy for member `me` from the network's `rules` (numbered from 1 in order). `None`
/// when the network has no rules (allow all).
pub fn for_member(rules: &[Rule], members: &[Member], me: &Member) -> Option<NodePolicy> {
    if rules.is_empty() {
        return None;
    }
    let mut policy = NodePolicy::default();
    let mut budget = MAX_SOURCES;
    // First what this node enforces, then (for `doctor` only) where it may connect: if the
    // budget runs out, the explanation is what is cut short.
    for inbound in [true, false] {
        for (i, rule) in rules.iter().enumerate() {
            let (us, them) = match inbound {
                true => (&rule.to, &rule.from),
                false => (&rule.from, &rule.to),
            };
            if !us.iter().any(|e| e.matches(&me.name, &me.tags)) {
                continue;
            }
            let peers = if them.contains(&Endpoint::All) {
                Sources::All
            } else {
                let mut ips: Vec<Ipv4Addr> = members
                    .iter()
                    .filter(|m| them.iter().any(|e| e.matches(&m.name, &m.tags)))
                    .map(|m| m.virtual_ip)
                    .collect();
                ips.sort_unstable();
                ips.dedup();
                if ips.is_empty() {
                    continue; // names nobody (yet): nothing to enforce
                }
                if ips.len() > budget {
                    if inbound {
                        policy.truncated += 1;
                    }
                    continue;
                }
                budget -= ips.len();
                Sources::Members(ips)
            };
            let rule = NodeRule {
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
                text: rule.to_string(),
                from: peers,
                proto: rule.proto,
                ports: rule.ports.clone(),
            };
            match inbound {
                true => policy.rules.push(rule),
                false => policy.outbound.push(rule),
            }
        }
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, last: u8, tags: &[&str]) -> Member {
        Member {
            name: name.into(),
            virtual_ip: Ipv4Addr::new(10, 77, 0, last),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn each_node_gets_the_rules_that_name_it_as_destination() {
        let members = [
            member("alice", 1, &["admin"]),
            member("bob", 2, &["server"]),
            member("carol", 3, &[]),
        ];
        let rules: Vec<Rule> = [
            "tcp 22 from tag:admin to tag:server",
            "icmp from * to carol",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        let bob = for_member(&rules, &members, &members[1]).unwrap();
        assert_eq!(bob.rules.len(), 1);
        assert_eq!(bob.rules[0].id, 1);
        assert_eq!(
            bob.rules[0].from,
            Sources::Members(vec![members[0].virtual_ip])
        );
        assert!(bob.rules[0].admits(members[0].virtual_ip, Proto::Tcp, Some(22)));
        assert!(!bob.rules[0].admits(members[2].virtual_ip, Proto::Tcp, Some(22)));
        assert!(!bob.rules[0].admits(members[0].virtual_ip, Proto::Tcp, Some(80)));
        // Alice learns where she may connect, for `doctor`.
        let alice = for_member(&rules, &members, &members[0]).unwrap();
        assert!(alice.rules.is_empty());
        assert_eq!(alice.outbound.len(), 2, "rule 1 to bob, rule 2 to carol");
        assert_eq!(
            alice.outbound[0].from,
            Sources::Members(vec![members[1].virtual_ip])
        );
        assert_eq!(
            alice.outbound[1].from,
            Sources::Members(vec![members[2].virtual_ip])
        );
        let carol = for_member(&rules, &members, &members[2]).unwrap();
        assert_eq!(carol.rules[0].id, 2);
        assert_eq!(carol.rules[0].from, Sources::All);
        // Alice is named by no `to`: rules exist, so nothing may connect to her.
        assert!(for_member(&rules, &members, &members[0]).is_some_and(|p| p.rules.is_empty()));
        // No rules at all: allow all, as before rules existed.
        assert_eq!(for_member(&[], &members, &members[0]), None);
    }

    #[test]
    fn a_policy_too_large_for_one_message_fails_closed() {
        let members: Vec<Member> = (0..MAX_SOURCES + 10)
            .map(|i| Member {
                name: format!("m{i}"),
                virtual_ip: Ipv4Addr::from(0x0a00_0000 + i as u32),
                tags: vec!["many".into()],
            })
            .collect();
        let rules: Vec<Rule> = vec!["tcp 22 from tag:many to *".parse().unwrap()];
        let p = for_member(&rules, &members, &members[0]).unwrap();
        assert!(p.rules.is_empty());
        assert_eq!(p.truncated, 1);
        let json = serde_json::to_string(&for_member(&rules, &members[..MAX_SOURCES], &members[0]))
            .unwrap();
        assert!(json.len() < 60_000, "{} bytes", json.len());
    }
}
