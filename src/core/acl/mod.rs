//! Access rules between members (issue 14): the owner's rules (`rule`), each node's share of
//! them (`policy`), and the node's enforcement on the packets its peers send it (`Acl`), with
//! the transport fields it reads (`packet`) and the flows it remembers (`flows`).
//!
//! Enforcement is on the receiving side, after decryption and the address checks of
//! `node::filter`, before the TUN device: a packet that starts something (a TCP segment, a UDP
//! datagram, an echo request that is not part of a flow this node opened) passes only if a rule
//! admits its source, protocol and destination port. Every packet this node sends to a peer is
//! remembered as a flow, so the peer's replies pass whatever the rules say. Nothing here
//! allocates per packet: the flow table and the denial log are fixed arrays. The core and the
//! data workers share one `Acl` (`shared`): both carry packets, and both must see every flow.

pub mod flows;
pub mod packet;
pub mod policy;
pub mod rule;
pub mod shared;

use flows::{FlowKey, FlowTable, Origin, ICMP_IDLE, TCP_IDLE, UDP_IDLE};
use packet::Transport;
use policy::NodePolicy;
use rule::Proto;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Distinct (peer, protocol, port) denials remembered for `status` and `doctor`.
pub const DENIAL_LOG: usize = 16;

/// A kind of packet dropped from a peer, counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub peer: Ipv4Addr,
    pub proto: Proto,
    pub port: Option<u16>,
    pub count: u64,
    pub last: Instant,
}

/// The node's access rule state.
pub struct Acl {
    policy: Option<NodePolicy>,
    flows: FlowTable,
    /// New flows admitted, per rule of `policy` (same index).
    admitted: Vec<u64>,
    denied: u64,
    log: [Option<Denial>; DENIAL_LOG],
}

/// Why a packet from a peer was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    pub proto: Proto,
    pub port: Option<u16>,
}

fn key(peer: Ipv4Addr, v6: bool, t: Transport, inbound: bool) -> Option<(FlowKey, Duration)> {
    let (proto, ours, theirs, idle) = match t {
        Transport::Tcp { src, dst } => (6, src, dst, TCP_IDLE),
        Transport::Udp { src, dst } => (17, src, dst, UDP_IDLE),
        Transport::Echo { id, .. } => (1, id, 0, ICMP_IDLE),
        Transport::IcmpOther | Transport::Other => return None,
    };
    // `src`/`dst` are as sent: inbound, the peer's port is the source.
    let (local_port, remote_port) = match (t, inbound) {
        (Transport::Echo { .. }, _) | (_, false) => (ours, theirs),
        (_, true) => (theirs, ours),
    };
    let key = FlowKey {
        peer,
        v6,
        proto,
        local_port,
        remote_port,
    };
    Some((key, idle))
}

impl Acl {
    /// `seed` keys the flow table's hash (from the node's RNG).
    pub fn new(seed: u64) -> Self {
        Acl {
            policy: None,
            flows: FlowTable::new(seed),
            admitted: Vec::new(),
            denied: 0,
            log: [None; DENIAL_LOG],
        }
    }

    /// The server's latest rules for this node (`None`: the network has none, allow all). Flows
    /// peers opened are forgotten (they are judged by the new rules from their next packet);
    /// flows this node opened stay, so its connections keep their replies.
    pub fn set_policy(&mut self, policy: Option<NodePolicy>) {
        if self.policy == policy {
            return;
        }
        self.admitted = vec![0; policy.as_ref().map_or(0, |p| p.rules.len())];
        self.policy = policy;
        self.flows.forget_remote();
    }

    pub fn policy(&self) -> Option<&NodePolicy> {
        self.policy.as_ref()
    }

    /// A packet this node sends to `peer` (its overlay IPv4 address): remembered as a flow so
    /// the replies pass. A packet answering a flow the peer opened keeps that flow the peer's.
    pub fn outbound(&mut self, peer: Ipv4Addr, packet: &[u8], now: Instant) {
        let Some(p) = packet::parse(packet) else {
            return;
        };
        if let Some((key, idle)) = key(peer, p.dst.is_ipv6(), p.transport, false) {
            self.flows.touch(key, Origin::Local, idle, now);
        }
    }

    /// A decrypted packet from `peer` that passed the address checks: may it reach the TUN
    /// device? A drop is counted and logged for `status`/`doctor`.
    pub fn inbound(&mut self, peer: Ipv4Addr, packet: &[u8], now: Instant) -> Result<(), Denied> {
        let Some(p) = packet::parse(packet) else {
            return self.deny(peer, Proto::Any, None, now);
        };
        let flow = key(peer, p.src.is_ipv6(), p.transport, true);
        let Some(policy) = &self.policy else {
            // No rules: all passes; still note who opened what, so rules arriving later judge
            // the flows peers opened and spare the ones this node opened.
            if let Some((key, idle)) = flow {
                self.flows.touch(key, Origin::Remote, idle, now);
            }
            return Ok(());
        };
        if let Some((key, idle)) = flow {
            if self.flows.get(&key, now) == Some(Origin::Local) {
                self.flows.touch(key, Origin::Local, idle, now);
                return Ok(());
            }
        }
        // An ICMP error about a flow under way (port unreachable, packet too big) belongs to
        // that flow: it passes when the packet it quotes is one this node tracks.
        if p.transport == Transport::IcmpOther {
            if let Some((key, _)) =
                packet::quoted(packet).and_then(|q| key(peer, q.src.is_ipv6(), q.transport, false))
            {
                if self.flows.get(&key, now).is_some() {
                    return Ok(());
                }
            }
        }
        let (proto, port) = (p.transport.proto(), p.transport.dst_port());
        match policy
            .rules
            .iter()
            .position(|r| r.admits(peer, proto, port))
        {
            Some(i) => {
                if let Some(n) = self.admitted.get_mut(i) {
                    *n += 1;
                }
                if let Some((key, idle)) = flow {
                    self.flows.touch(key, Origin::Remote, idle, now);
                }
                Ok(())
            }
            None => self.deny(peer, proto, port, now),
        }
    }

    fn deny(
        &mut self,
        peer: Ipv4Addr,
        proto: Proto,
        port: Option<u16>,
        now: Instant,
    ) -> Result<(), Denied> {
        self.denied += 1;
        let same = |d: &Denial| d.peer == peer && d.proto == proto && d.port == port;
        if let Some(d) = self.log.iter_mut().flatten().find(|d| same(d)) {
            d.count += 1;
            d.last = now;
        } else {
            let slot = self
                .log
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| d.map(|d| d.last))
                .map(|(i, _)| i)
                .unwrap_or(0); // ok: DENIAL_LOG > 0
            self.log[slot] = Some(Denial {
                peer,
                proto,
                port,
                count: 1,
                last: now,
            });
        }
        Err(Denied { proto, port })
    }

    /// What `status` shows.
    pub fn status(&self, now: Instant) -> AclStatus {
        let rules = self.policy.as_ref().map(|p| {
            p.rules
                .iter()
                .zip(self.admitted.iter().chain(std::iter::repeat(&0)))
                .map(|(r, n)| RuleStatus {
                    id: r.id,
                    rule: r.text.clone(),
                    admitted: *n,
                })
                .collect()
        });
        AclStatus {
            enforced: self.policy.is_some(),
            rules,
            truncated: self.policy.as_ref().map_or(0, |p| p.truncated),
            denied: self.denied,
            flows: self.flows.live(now),
            recent_denials: self.denials(None, now),
        }
    }

    fn denials(&self, peer: Option<Ipv4Addr>, now: Instant) -> Vec<DenialStatus> {
        let mut out: Vec<DenialStatus> = self
            .log
            .iter()
            .flatten()
            .filter(|d| peer.is_none_or(|p| p == d.peer))
            .map(|d| DenialStatus {
                peer: d.peer,
                proto: d.proto,
                port: d.port,
                count: d.count,
                secs_ago: now.saturating_duration_since(d.last).as_secs(),
            })
            .collect();
        out.sort_by_key(|d| d.secs_ago);
        out
    }

    /// Why packets from `peer` (named `name` for the text) pass or not: for `doctor PEER`.
    pub fn explain(&self, peer: Ipv4Addr, name: &str, now: Instant) -> Vec<String> {
        let Some(policy) = &self.policy else {
            return vec![format!(
                "access rules: none on this network, everything {name} sends is allowed"
            )];
        };
        let mut lines = Vec::new();
        let admitting: Vec<&policy::NodeRule> = policy
            .rules
            .iter()
            .filter(|r| r.from.contains(peer))
            .collect();
        if admitting.is_empty() {
            lines.push(format!(
                "access rules: no rule lets {name} open connections to this node; what {name} \
                 starts is dropped (replies to connections this node opens pass). Add one on \
                 the server: `p2pvpn network acl NETWORK add \"tcp 22 from {name} to ...\"`"
            ));
        }
        for r in admitting {
            lines.push(format!(
                "access rules: {name} may connect under rule {}: {}",
                r.id, r.text
            ));
        }
        let out: Vec<&policy::NodeRule> = policy
            .outbound
            .iter()
            .filter(|r| r.from.contains(peer))
            .collect();
        if out.is_empty() {
            lines.push(format!(
                "access rules: no rule lets this node open connections to {name}; {name} drops \
                 what this node starts (replies to {name}'s own connections pass)"
            ));
        }
        for r in out {
            lines.push(format!(
                "access rules: this node may connect to {name} under rule {}: {}",
                r.id, r.text
            ));
        }
        if policy.truncated > 0 {
            lines.push(format!(
                "access rules: {} rule(s) for this node were too large to send and allow nothing",
                policy.truncated
            ));
        }
        for d in self.denials(Some(peer), now) {
            lines.push(format!(
                "access rules: dropped from {name}: {} ({} packet(s), last {} s ago): no rule \
                 allows it",
                d.what(),
                d.count,
                d.secs_ago
            ));
        }
        lines
    }
}

/// `status`'s access rule section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclStatus {
    /// Whether the network has rules (else all is allowed).
    pub enforced: bool,
    /// The rules that admit traffic to this node, with the flows each admitted.
    pub rules: Option<Vec<RuleStatus>>,
    pub truncated: u32,
    /// Packets dropped because no rule allowed them.
    pub denied: u64,
    /// Flows being tracked.
    pub flows: usize,
    pub recent_denials: Vec<DenialStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStatus {
    pub id: u32,
    pub rule: String,
    pub admitted: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialStatus {
    pub peer: Ipv4Addr,
    pub proto: Proto,
    pub port: Option<u16>,
    pub count: u64,
    pub secs_ago: u64,
}

impl DenialStatus {
    /// "tcp 80", "icmp".
    pub fn what(&self) -> String {
        match self.port {
            Some(p) => format!("{} {p}", self.proto),
            None => self.proto.to_string(),
        }
    }
}

/// The overlay IPv4 address naming the peer that owns `addr` (a peer's IPv6 address ends in its
/// IPv4 address, `core::ula`); callers normally pass the peer table's `virtual_ip` instead.
pub fn peer_id(addr: IpAddr) -> Ipv4Addr {
    match addr {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        }
    }
}

#[cfg(test)]
mod tests;
