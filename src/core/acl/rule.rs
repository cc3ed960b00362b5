//! The network owner's access rules as the server stores them, and their one-line text form.
//!
//! The model follows what Tailscale ACLs, Nebula's firewall and NetBird policies share: rules only
//! allow (no deny rules, so the order never matters), each names who may connect (`from`), to whom
//! (`to`), the protocol and the destination ports. Endpoints are `*` (every member), `tag:NAME`
//! (members carrying that tag) or a member's name. A network without rules allows everything, as
//! before; the first rule switches the network to "deny what no rule allows".
//!
//! Text form (what `network acl NAME list` prints and `add` reads):
//! `tcp 22 from tag:admin to tag:server`, `udp 5000-5010 from alice to *`, `icmp from * to bob`,
//! `any from tag:ops to tag:db`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// At most this many rules per network: a node's copy must fit one control message.
pub const MAX_RULES: usize = 256;
/// At most this many endpoints in one rule's `from` or `to`, and port ranges in `ports`.
pub const MAX_LIST: usize = 32;
/// Tags and member names share the member name rule's length bound.
pub const MAX_NAME: usize = 63;

/// A rule that cannot be used, said so the owner can fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("unknown protocol '{0}': use tcp, udp, icmp or any")]
    Protocol(String),
    #[error("bad port or range '{0}': use a port 1-65535 or a range like 8000-8100")]
    Port(String),
    #[error("ports only apply to tcp and udp, not {0}")]
    PortsWithoutPorts(Proto),
    #[error(
        "bad endpoint '{0}': use *, tag:NAME or a member name (letters, digits, '-', '_', '.', \
         at most 63)"
    )]
    Endpoint(String),
    #[error("a rule needs at least one endpoint in `{0}`")]
    Empty(&'static str),
    #[error("too many entries in `{0}` (at most {MAX_LIST})")]
    TooMany(&'static str),
    #[error("too many rules (at most {MAX_RULES} per network)")]
    TooManyRules,
    #[error(
        "cannot read the rule '{0}': write it like `tcp 22 from tag:admin to tag:server` \
         (PROTO [PORTS] from WHO to WHOM)"
    )]
    Syntax(String),
}

/// The protocols a rule can name. `Any` also covers protocols that are none of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    /// ICMP for IPv4 and ICMPv6 for IPv6.
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Any => "any",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    /// Whether destination ports mean something for this protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "any" | "*" => Ok(Proto::Any),
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" | "icmpv6" | "ping" => Ok(Proto::Icmp),
            _ => Err(RuleError::Protocol(s.into())),
        }
    }
}

/// An inclusive range of destination ports, `first <= last`, never port 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RuleError::Port(s.into());
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(bad)
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

/// Who a rule names on one side.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Every member of the network.
    All,
    /// Members carrying this tag.
    Tag(String),
    /// One member, by name.
    Member(String),
}

/// Tags and member names: the characters member names may use (see `rendezvous::names`).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Endpoint {
    /// Whether a member called `name` with `tags` is one of the members this endpoint names.
    pub fn matches(&self, name: &str, tags: &[String]) -> bool {
        match self {
            Endpoint::All => true,
            Endpoint::Tag(t) => tags.iter().any(|m| m == t),
            Endpoint::Member(m) => m == name,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::All => f.write_str("*"),
            Endpoint::Tag(t) => write!(f, "tag:{t}"),
            // The words of the text form are written `member:NAME` so they read back.
            Endpoint::Member(m) if KEYWORDS.contains(&m.as_str()) => write!(f, "member:{m}"),
            Endpoint::Member(m) => f.write_str(m),
        }
    }
}

/// Words of the text form that a member may also be called.
const KEYWORDS: [&str; 3] = ["from", "to", "allow"];

impl FromStr for Endpoint {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "*" {
            return Ok(Endpoint::All);
        }
        if let Some(tag) = s.strip_prefix("tag:") {
            if valid_name(tag) {
                return Ok(Endpoint::Tag(tag.into()));
            }
        } else {
            let name = s.strip_prefix("member:").unwrap_or(s);
            if valid_name(name) {
                return Ok(Endpoint::Member(name.into()));
            }
        }
        Err(RuleError::Endpoint(s.into()))
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One allow rule: members in `from` may open `proto` connections to members in `to`, on `ports`
/// (empty: every port). Replies to an allowed connection always pass (the nodes track flows).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub from: Vec<Endpoint>,
    pub to: Vec<Endpoint>,
    #[serde(default = "any")]
    pub proto: Proto,
    #[serde(default, with = "ports_text")]
    pub ports: Vec<PortRange>,
}

fn any() -> Proto {
    Proto::Any
}

/// Ports in TOML as people write them: `ports = ["22", "8000-8100"]` or `ports = [22, 443]`.
mod ports_text {
    use super::PortRange;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Number(u16),
        Text(String),
    }

    pub fn serialize<S: Serializer>(ports: &[PortRange], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ports.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortRange>, D::Error> {
        Vec::<One>::deserialize(d)?
            .into_iter()
            .map(|one| match one {
                One::Number(n) => n.to_string().parse(),
                One::Text(t) => t.parse(),
            })
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

impl Rule {
    /// Checks the bounds and that ports go with a protocol that has them.
    pub fn validate(&self) -> Result<(), RuleError> {
        for (field, list) in [("from", &self.from), ("to", &self.to)] {
            if list.is_empty() {
                return Err(RuleError::Empty(field));
            }
            if list.len() > MAX_LIST {
                return Err(RuleError::TooMany(field));
            }
        }
        if self.ports.len() > MAX_LIST {
            return Err(RuleError::TooMany("ports"));
        }
        if !self.ports.is_empty() && !self.proto.has_ports() {
            return Err(RuleError::PortsWithoutPorts(self.proto));
        }
        Ok(())
    }

    /// Whether this rule lets `proto` to `port` through (`port` is ignored without ports).
    pub fn allows(&self, proto: Proto, port: Option<u16>) -> bool {
        proto_ports_allow(self.proto, &self.ports, proto, port)
    }
}

/// The protocol and port part of a rule, shared by the server's rules and a node's copy.
pub fn proto_ports_allow(
    rule_proto: Proto,
    ports: &[PortRange],
    proto: Proto,
    port: Option<u16>,
) -> bool {
    if rule_proto != Proto::Any && rule_proto != proto {
        return false;
    }
    if ports.is_empty() {
        return true;
    }
    port.is_some_and(|p| ports.iter().any(|r| r.contains(p)))
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.proto)?;
        if !self.ports.is_empty() {
            f.write_str(" ")?;
            join(f, &self.ports)?;
        }
        f.write_str(" from ")?;
        join(f, &self.from)?;
        f.write_str(" to ")?;
        join(f, &self.to)
    }
}

impl FromStr for Rule {
    type Err = RuleError;
    /// `PROTO [PORTS] from WHO[,WHO] to WHOM[,WHOM]`; a leading `allow` is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || RuleError::Syntax(s.into());
        let mut words: Vec<&str> = s.split_whitespace().collect();
        if words.first() == Some(&"allow") {
            words.remove(0);
        }
        let from_at = words.iter().position(|w| *w == "from").ok_or_else(syntax)?;
        let to_at = words.iter().position(|w| *w == "to").ok_or_else(syntax)?;
        if !(1..=2).contains(&from_at) || to_at < from_at + 2 || to_at + 1 >= words.len() {
            return Err(syntax());
        }
        let proto: Proto = words[0].parse()?;
        let ports = match from_at {
            2 => list(words[1])?,
            _ => Vec::new(),
        };
        let from = list(&words[from_at + 1..to_at].join(","))?;
        let to = list(&words[to_at + 1..].join(","))?;
        let rule = Rule {
            from,
            to,
            proto,
            ports,
        };
        rule.validate()?;
        Ok(rule)
    }
}

fn list<T: FromStr<Err = RuleError>>(s: &str) -> Result<Vec<T>, RuleError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// A TOML policy file (`network acl NAME --file policy.toml`): the whole rule set at once.
///
/// ```toml
/// [[allow]]
/// from = ["tag:admin"]
/// to = ["tag:server"]
/// proto = "tcp"
/// ports = [22]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub allow: Vec<Rule>,
}

impl PolicyFile {
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.allow.len() > MAX_RULES {
            return Err(RuleError::TooManyRules);
        }
        self.allow.iter().try_for_each(Rule::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_text_form_reads_like_the_issue() {
        let r: Rule = "tcp 22 from tag:admin to tag:server".parse().unwrap();
        assert_eq!(r.proto, Proto::Tcp);
        assert_eq!(
            r.ports,
            vec![PortRange {
                first: 22,
                last: 22
            }]
        );
        assert_eq!(r.from, vec![Endpoint::Tag("admin".into())]);
        assert_eq!(r.to, vec![Endpoint::Tag("server".into())]);
        assert_eq!(r.to_string(), "tcp 22 from tag:admin to tag:server");
        let r: Rule = "allow icmp from * to bob, carol".parse().unwrap();
        assert_eq!(r.to_string(), "icmp from * to bob,carol");
        let r: Rule = "udp 5000-5010,53 from alice to *".parse().unwrap();
        assert!(r.allows(Proto::Udp, Some(5005)) && r.allows(Proto::Udp, Some(53)));
        assert!(!r.allows(Proto::Udp, Some(5011)) && !r.allows(Proto::Tcp, Some(53)));
    }

    #[test]
    fn bad_rules_say_how_to_fix_them() {
        for (text, want) in [
            ("tcp 22 from admin", "write it like"),
            ("smtp 25 from * to *", "use tcp, udp, icmp or any"),
            ("tcp 0 from * to *", "1-65535"),
            ("tcp 90-80 from * to *", "range"),
            ("icmp 8 from * to *", "ports only apply"),
            ("tcp 22 from tag: to *", "bad endpoint"),
            ("tcp 22 from a/b to *", "bad endpoint"),
        ] {
            let err = text.parse::<Rule>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_policy_file_reads_ports_as_numbers_or_ranges() {
        let file: PolicyFile = toml::from_str(
            r#"
            [[allow]]
            from = ["tag:admin"]
            to = ["tag:server"]
            proto = "tcp"
            ports = [22, "8000-8100"]

            [[allow]]
            from = ["*"]
            to = ["bob"]
            proto = "icmp"
            "#,
        )
        .unwrap();
        file.validate().unwrap();
        assert_eq!(
            file.allow[0].to_string(),
            "tcp 22,8000-8100 from tag:admin to tag:server"
        );
        assert_eq!(file.allow[1].to_string(), "icmp from * to bob");
        let typo = toml::from_str::<PolicyFile>("[[allow]]\nfrom=[\"*\"]\nto=[\"*\"]\nport=[22]");
        assert!(typo.is_err(), "an unknown key is refused, not ignored");
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        prop_oneof![
            Just(Endpoint::All),
            "[a-z][a-z0-9-]{0,10}".prop_map(Endpoint::Tag),
            "[a-z][a-z0-9-]{0,10}".prop_map(Endpoint::Member),
            Just(Endpoint::Member("to".into())),
        ]
    }

    fn rule() -> impl Strategy<Value = Rule> {
        let ports = prop::collection::vec((1u16.., 0u16..100), 0..4).prop_map(|v| {
            v.into_iter()
                .map(|(a, d)| PortRange {
                    first: a,
                    last: a.saturating_add(d),
                })
                .collect::<Vec<_>>()
        });
        (
            prop::collection::vec(endpoint(), 1..4),
            prop::collection::vec(endpoint(), 1..4),
            prop_oneof![
                Just(Proto::Tcp),
                Just(Proto::Udp),
                Just(Proto::Icmp),
                Just(Proto::Any)
            ],
            ports,
        )
            .prop_map(|(from, to, proto, ports)| Rule {
                from,
                to,
                ports: if proto.has_ports() { ports } else { vec![] },
                proto,
            })
    }

    proptest! {
        /// What `list` prints, `add` reads back as the same rule; the TOML form too.
        #[test]
        fn text_and_toml_round_trip(r in rule()) {
            let back: Rule = r.to_string().parse().unwrap();
            prop_assert_eq!(&back, &r);
            let file = PolicyFile { allow: vec![r.clone()] };
            let text = toml::to_string(&file).unwrap();
            let back: PolicyFile = toml::from_str(&text).unwrap();
            prop_assert_eq!(back.allow, vec![r]);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<Rule>();
        }
    }
}
