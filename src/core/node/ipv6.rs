//! The node's IPv6 underlay (issue 13 part 3): its global IPv6 addresses as host candidates, and
//! its IPv6 server-reflexive address, learned with a plain STUN Binding request (RFC 8489 §3)
//! to the server's IPv6 address when the node's config lists one. The driver keeps a second,
//! IPv6-only UDP socket on the main socket's port and presents it to the core as
//! `SocketId::MAIN`: a datagram's address family says which of the two carries it.
//!
//! No NAT check runs over IPv6: without translation the reflexive address is normally the host
//! address itself, and a stateful firewall (RFC 6092) is opened by the probes both sides send
//! anyway. The reflexive address still counts when it differs (NPTv6, NAT66).

use crate::core::punch::ipv6::{is_global_addr, MAX_IPV6_CANDIDATES};
use crate::core::punch::{Candidate, Technique};
use crate::core::stun::{binding_request, parse_binding_response, ChangeRequest, TransactionId};
use crate::core::transmit::Transmit;
use rand::RngCore;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Requests until the first answer: 0.5, 1, 2, 4 s apart (RFC 8489 §6.2.1 doubles too).
const FIRST_RETRY: Duration = Duration::from_millis(500);
const TRIES: u32 = 5;
/// Asked again this often once answered (or given up), to notice a new address.
const REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Ipv6Underlay {
    /// The server's IPv6 UDP address (STUN), if the config names one.
    server: Option<SocketAddr>,
    /// The driver has an IPv6 socket.
    active: bool,
    /// Our global IPv6 addresses with the IPv6 socket's port.
    hosts: Vec<SocketAddr>,
    reflexive: Option<SocketAddr>,
    pending: Option<TransactionId>,
    next_request: Option<Instant>,
    tries: u32,
}

impl Ipv6Underlay {
    pub fn new(server: Option<SocketAddr>) -> Self {
        Ipv6Underlay {
            server: server.filter(SocketAddr::is_ipv6),
            ..Ipv6Underlay::default()
        }
    }

    /// The driver's IPv6 socket is open and these are the host's global addresses on it.
    /// Returns whether the candidates changed.
    pub fn set_socket(&mut self, hosts: Vec<SocketAddr>, now: Instant) -> bool {
        let hosts: Vec<SocketAddr> = hosts
            .into_iter()
            .filter(|a| is_global_addr(*a))
            .take(MAX_IPV6_CANDIDATES)
            .collect();
        let was_active = self.active;
        self.active = true;
        let changed = hosts != self.hosts;
        // New addresses (a new network or prefix): the reflexive one may have moved too.
        if (!was_active || changed) && self.server.is_some() {
            self.next_request = Some(now);
            self.tries = 0;
        }
        self.hosts = hosts;
        changed
    }

    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.reflexive
    }

    /// Host candidates first, then the reflexive address unless it is one of them; at most
    /// `MAX_IPV6_CANDIDATES`.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .hosts
            .iter()
            .map(|&addr| Candidate {
                addr,
                technique: Technique::Lan,
            })
            .collect();
        if let Some(r) = self.reflexive.filter(|r| !self.hosts.contains(r)) {
            out.insert(
                0,
                Candidate {
                    addr: r,
                    technique: Technique::ServerReflexive,
                },
            );
        }
        out.truncate(MAX_IPV6_CANDIDATES);
        out
    }

    /// A STUN datagram from `from`: true when it answers our request. Sets `changed` when the
    /// reflexive address is new.
    pub fn handle_stun(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        changed: &mut bool,
    ) -> bool {
        if self.server != Some(from) || self.pending.is_none() {
            return false;
        }
        let Ok(resp) = parse_binding_response(bytes) else {
            return false;
        };
        if Some(resp.tid) != self.pending {
            return false;
        }
        self.pending = None;
        self.tries = 0;
        self.next_request = Some(now + REFRESH);
        // Only a global address is worth offering (a server on a ULA would name a ULA).
        let mapped = Some(resp.mapped).filter(|a| is_global_addr(*a));
        *changed = mapped != self.reflexive;
        self.reflexive = mapped;
        true
    }

    pub fn handle_timeout(
        &mut self,
        now: Instant,
        rng: &mut impl RngCore,
        out: &mut VecDeque<Transmit>,
    ) {
        let (Some(server), Some(due)) = (self.server, self.next_request) else {
            return;
        };
        if now < due {
            return;
        }
        let tid = TransactionId::random(rng);
        self.pending = Some(tid);
        out.push_back(Transmit::main(
            server,
            binding_request(tid, ChangeRequest::NONE, None),
        ));
        self.tries += 1;
        // After TRIES unanswered the server has no IPv6 after all, or ours does not reach it:
        // ask again only at the refresh interval.
        let wait = if self.reflexive.is_some() || self.tries >= TRIES {
            self.tries = 0;
            REFRESH
        } else {
            FIRST_RETRY * (1 << (self.tries - 1).min(4))
        };
        self.next_request = Some(now + wait);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_request
    }
}

impl super::Node {
    /// The driver opened its IPv6 socket; `hosts` are the host's global IPv6 addresses with
    /// that socket's port. Starts asking the server's IPv6 address for the reflexive one.
    pub fn set_ipv6_socket(&mut self, hosts: Vec<SocketAddr>, now: Instant) {
        if self.ipv6.set_socket(hosts, now) {
            self.publish_endpoints();
        }
    }

    /// The node's IPv6 underlay candidates (host, reflexive), for `own_candidates`.
    pub(super) fn ipv6_candidates(&self) -> Vec<Candidate> {
        self.ipv6.candidates()
    }

    /// Whether a STUN datagram answers the IPv6 reflexive request; publishes a new address.
    pub(super) fn handle_ipv6_stun(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> bool {
        let mut changed = false;
        let ours = self.ipv6.handle_stun(from, bytes, now, &mut changed);
        if changed {
            if let Some(r) = self.ipv6.reflexive() {
                self.events.push_back(super::NodeEvent::Progress(format!(
                    "IPv6 public address {r}"
                )));
            }
            self.publish_endpoints();
        }
        ours
    }

    pub(super) fn ipv6_timeout(&mut self, now: Instant) {
        self.ipv6
            .handle_timeout(now, &mut self.rng, &mut self.transmits);
    }

    pub(super) fn ipv6_poll_timeout(&self) -> Option<Instant> {
        self.ipv6.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::stun::{Attribute, Class, Message, MessageId, BINDING};
    use rand::SeedableRng;

    fn answer(tid: TransactionId, mapped: SocketAddr) -> Vec<u8> {
        let mut m = Message::new(Class::Success, BINDING, MessageId::Rfc5389(tid));
        m.attributes.push(Attribute::XorMappedAddress(mapped));
        m.encode()
    }

    fn tid_of(t: &Transmit) -> TransactionId {
        match Message::decode(&t.payload).unwrap().id {
            MessageId::Rfc5389(tid) => tid,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn learns_the_reflexive_address_from_the_ipv6_server_and_offers_it_after_the_hosts() {
        let t0 = crate::test_now();
        let server: SocketAddr = "[2001:db8:5::1]:7400".parse().unwrap();
        let mut v6 = Ipv6Underlay::new(Some(server));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = VecDeque::new();
        v6.handle_timeout(t0, &mut rng, &mut out);
        assert!(
            out.is_empty(),
            "nothing before the driver has an IPv6 socket"
        );
        let host: SocketAddr = "[2001:db8:a::10]:51820".parse().unwrap();
        assert!(v6.set_socket(vec![host, "[fd00::1]:51820".parse().unwrap()], t0));
        v6.handle_timeout(t0, &mut rng, &mut out);
        let t = out.pop_front().expect("a Binding request");
        assert_eq!(t.dst, server);
        // A stranger's answer, and one to another transaction, are not believed.
        let mut changed = false;
        let nat66: SocketAddr = "[2001:db8:ff::10]:40000".parse().unwrap();
        let forged = answer(TransactionId([7; 12]), nat66);
        assert!(!v6.handle_stun(server, &forged, t0, &mut changed));
        assert!(!v6.handle_stun(
            "[2001:db8:6::1]:7400".parse().unwrap(),
            &answer(tid_of(&t), nat66),
            t0,
            &mut changed
        ));
        assert!(v6.handle_stun(server, &answer(tid_of(&t), nat66), t0, &mut changed));
        assert!(changed);
        assert_eq!(
            v6.candidates(),
            vec![
                Candidate {
                    addr: nat66,
                    technique: Technique::ServerReflexive
                },
                Candidate {
                    addr: host,
                    technique: Technique::Lan
                },
            ]
        );
        // Asked again a minute later, not sooner.
        assert_eq!(v6.poll_timeout(), Some(t0 + REFRESH));
    }

    #[test]
    fn retries_are_bounded_and_back_off() {
        let t0 = crate::test_now();
        let mut v6 = Ipv6Underlay::new(Some("[2001:db8:5::1]:7400".parse().unwrap()));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = VecDeque::new();
        v6.set_socket(vec!["[2001:db8:a::10]:51820".parse().unwrap()], t0);
        let mut now = t0;
        for _ in 0..20 {
            v6.handle_timeout(now, &mut rng, &mut out);
            now += Duration::from_millis(100);
        }
        // 2 s: the first three tries (0, 0.5, 1.5 s).
        assert_eq!(out.len(), 3, "{out:?}");
        // No IPv6 server in the config: nothing is ever sent.
        let mut none = Ipv6Underlay::new(Some("198.51.100.1:7400".parse().unwrap()));
        none.set_socket(vec!["[2001:db8:a::10]:51820".parse().unwrap()], t0);
        let mut out = VecDeque::new();
        none.handle_timeout(t0, &mut rng, &mut out);
        assert!(out.is_empty());
    }
}
