//! The node's view of its own NAT: a netcheck against the server when the node starts (and again
//! when the public mapping moves), STUN keepalives on the main socket that hold the
//! server-reflexive mapping open and notice rebinding, and the fresh port measurement a
//! sequential NAT needs right before each punch offer (Wei et al.: predict from the newest
//! allocation, not an old one).
//!
//! Punching does not wait for the whole netcheck (about 2.5 s, most of it timeouts that are
//! findings): as soon as the server names our public address, a provisional profile (public
//! address known, behaviour unknown) lets the node offer its LAN and server-reflexive candidates,
//! which is all a cone pair needs. As soon as the netcheck has measured a symmetric mapping and
//! its port allocation (before the filtering tests time out), the node punches again with that
//! profile (prediction, port block, birthday).
//!
//! A netcheck that hears nothing is only "UDP blocked" when the server answers over TCP; with
//! the control channel down too it is the server that is unreachable. Either verdict is measured
//! again when the server comes back, when UDP visibly works (a STUN keepalive answer, a direct
//! packet from a peer), and every [`RECHECK_AFTER`] while it stands.

use crate::core::nat::netcheck::{Netcheck, NetcheckConfig};
use crate::core::nat::{Mapping, NatProfile, PortAllocation};
use crate::core::punch::session::SocketPool;
use crate::core::punch::{Candidate, Prediction, Technique};
use crate::core::stun::{binding_request, parse_binding_response, ChangeRequest, TransactionId};
use crate::core::transmit::{SocketId, Transmit};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// STUN keepalive on the main socket: well inside the 30 s a Linux NAT keeps an unanswered UDP
/// mapping, and RFC 4787 REQ-5's two-minute floor.
pub const STUN_KEEPALIVE: Duration = Duration::from_secs(20);
/// Netcheck sockets take ids below this; punch sockets from here up.
pub const FIRST_PUNCH_SOCKET: u16 = 1000;
const MEASURE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a "no answer" verdict is measured again while nothing else prompts it.
pub const RECHECK_AFTER: Duration = Duration::from_secs(60);

struct Measure {
    socket: SocketId,
    tid: TransactionId,
    deadline: Instant,
}

pub struct Discovery {
    server: Option<SocketAddr>,
    main_local: Option<SocketAddr>,
    netcheck: Option<Netcheck>,
    profile: Option<NatProfile>,
    keepalive_tid: Option<TransactionId>,
    next_keepalive: Instant,
    measure: Option<Measure>,
    prediction: Option<Prediction>,
    rng: ChaCha8Rng,
    pub progress: VecDeque<String>,
    /// The control channel (TCP) is registered with the server.
    server_answers_tcp: bool,
    /// The earliest time a doubtful verdict is measured again.
    next_recheck: Instant,
    /// The provisional public address was announced (progress line, endpoints published).
    provisional_announced: bool,
    /// A provisional address became known and is not yet published.
    provisional_news: bool,
    /// The profile on offer became symmetric (a verdict that changes the punch plan): attempts
    /// made on the provisional profile should start again.
    replan_news: bool,
    /// This netcheck run already asked for a replan.
    replanned: bool,
    /// The server saw the main socket at a new public IP (not only a new port).
    public_ip_moved: bool,
}

impl Discovery {
    pub fn new(server: Option<SocketAddr>, rng: ChaCha8Rng, now: Instant) -> Self {
        Discovery {
            server,
            main_local: None,
            netcheck: None,
            profile: None,
            keepalive_tid: None,
            next_keepalive: now,
            measure: None,
            prediction: None,
            rng,
            progress: VecDeque::new(),
            server_answers_tcp: false,
            next_recheck: now,
            provisional_announced: false,
            provisional_news: false,
            replan_news: false,
            replanned: false,
            public_ip_moved: false,
        }
    }

    /// The server saw this node at a new public IP since the last call (`core::node::roaming`).
    pub fn take_public_ip_moved(&mut self) -> bool {
        std::mem::take(&mut self.public_ip_moved)
    }

    /// The control channel registered (true) or was lost or refused (false). The server's
    /// return is a reason to measure a "no answer" verdict again at once.
    pub fn set_server_answers_tcp(&mut self, answers: bool, now: Instant) {
        let back = answers && !self.server_answers_tcp;
        self.server_answers_tcp = answers;
        if back {
            self.next_recheck = now;
            self.maybe_recheck(now);
        }
    }

    /// Something proved that UDP gets through (a direct packet from a peer).
    pub fn note_udp_works(&mut self, now: Instant) {
        self.maybe_recheck(now);
    }

    /// Measures again when the verdict is "no answer" and the last try is old enough.
    fn maybe_recheck(&mut self, now: Instant) {
        let doubtful = self.profile.as_ref().is_some_and(NatProfile::is_doubtful);
        if doubtful && self.netcheck.is_none() && now >= self.next_recheck {
            self.next_recheck = now + RECHECK_AFTER;
            self.start(now);
        }
    }

    pub fn profile(&self) -> Option<&NatProfile> {
        self.profile.as_ref()
    }

    /// The profile to offer peers: the measured one, else the provisional one of the netcheck
    /// under way (public address only).
    pub fn offer_profile(&self) -> Option<NatProfile> {
        self.profile
            .clone()
            .or_else(|| self.netcheck.as_ref().and_then(Netcheck::provisional))
    }

    /// True once after the provisional public address became known: publish it.
    pub fn take_provisional_news(&mut self) -> bool {
        std::mem::take(&mut self.provisional_news)
    }

    /// True once after a netcheck ended with a profile that needs more than the candidates.
    pub fn take_replan_news(&mut self) -> bool {
        std::mem::take(&mut self.replan_news)
    }

    fn note_provisional(&mut self) {
        if self.profile.is_some() {
            return;
        }
        let Some(provisional) = self.netcheck.as_ref().and_then(Netcheck::provisional) else {
            return;
        };
        if !self.replanned && is_symmetric(&provisional) {
            self.replanned = true;
            self.replan_news = true;
            self.provisional_news = true;
            self.progress.push_back(format!(
                "NAT is symmetric ({}); punching again with it while the NAT check finishes",
                provisional.allocation
            ));
        }
        if self.provisional_announced {
            return;
        }
        if let Some(public) = provisional.public {
            self.provisional_announced = true;
            self.provisional_news = true;
            self.progress.push_back(format!(
                "public address {public}; punching with it while the NAT check runs"
            ));
        }
    }

    /// The driver tells where the main socket is bound (its address toward the server). That
    /// starts discovery.
    pub fn handle_main_socket(&mut self, local: SocketAddr, now: Instant) {
        self.main_local = Some(local);
        if self.netcheck.is_none() && self.profile.is_none() {
            self.start(now);
        }
    }

    fn start(&mut self, now: Instant) {
        let Some(server) = self.server else {
            return;
        };
        self.progress
            .push_back(format!("probing the NAT against {server}"));
        let config = NetcheckConfig {
            server,
            first_extra_socket: SocketId(1),
            allocation_samples: 16,
            hairpin: true,
            lifetime: false,
        };
        let rng =
            ChaCha8Rng::from_rng(&mut self.rng).unwrap_or_else(|_| ChaCha8Rng::seed_from_u64(0));
        self.replanned = false;
        let mut netcheck = Netcheck::new(config, rng, now);
        if let Some(local) = self.main_local {
            netcheck.handle_socket_opened(SocketId::MAIN, local);
        }
        self.netcheck = Some(netcheck);
    }

    pub fn handle_socket_opened(&mut self, socket: SocketId, local: SocketAddr) {
        if socket.0 < FIRST_PUNCH_SOCKET {
            if let Some(n) = &mut self.netcheck {
                n.handle_socket_opened(socket, local);
            }
        }
    }

    /// Our candidates: the driver's local addresses, then the server-reflexive one.
    pub fn candidates(&self, local: &[SocketAddr]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = local
            .iter()
            .map(|&addr| Candidate {
                addr,
                technique: Technique::Lan,
            })
            .collect();
        if let Some(public) = self.offer_profile().and_then(|p| p.public) {
            if !local.contains(&public) {
                out.push(Candidate {
                    addr: public,
                    technique: Technique::ServerReflexive,
                });
            }
        }
        out
    }

    /// The node registered with another server of its deployment: keepalives (and the next
    /// NAT check) go there, and the first goes now, to open the NAT's mapping toward it (the
    /// relay binding rides on it). A check under way against the old server is left to finish:
    /// its verdict describes the same NAT.
    pub fn set_server(&mut self, server: SocketAddr, now: Instant) {
        self.server = Some(server);
        self.keepalive_now(now);
    }

    /// Sends the STUN keepalive now rather than when due: a path just died or a peer is about
    /// to punch, and our NAT may have forgotten the mapping toward the server, which the relay
    /// and the server-reflexive candidate both ride on (and which may have moved).
    pub fn keepalive_now(&mut self, now: Instant) {
        if self.netcheck.is_none() {
            self.next_keepalive = self.next_keepalive.min(now);
        }
    }

    /// Whether `ready_for_offer` would do something now: say yes, or start the fresh port
    /// measurement a sequential NAT needs. False while the profile is unknown or a measurement
    /// is under way (its own deadline wakes the node).
    pub fn can_offer_now(&self) -> bool {
        match &self.offer_profile() {
            None => false,
            Some(p) => {
                !matches!(p.allocation, PortAllocation::Sequential { .. })
                    || self.prediction.is_some()
                    || self.measure.is_none()
            }
        }
    }

    /// Whether an offer can be made now; starts a fresh port measurement when the NAT is
    /// sequential and none is under way.
    pub fn ready_for_offer(
        &mut self,
        pool: &mut SocketPool,
        out: &mut VecDeque<Transmit>,
        now: Instant,
    ) -> bool {
        // A provisional profile counts: until its allocation is known there is nothing to
        // predict, and the candidates are enough to start.
        let Some(profile) = self.offer_profile() else {
            return false;
        };
        if !matches!(profile.allocation, PortAllocation::Sequential { .. }) {
            return true;
        }
        if self.prediction.is_some() {
            return true;
        }
        if self.measure.is_none() {
            if let Some(server) = self.server {
                let socket = pool.open();
                let tid = TransactionId::random(&mut self.rng);
                out.push_back(Transmit {
                    socket,
                    dst: server,
                    payload: binding_request(tid, ChangeRequest::NONE, None),
                    ttl: None,
                });
                self.measure = Some(Measure {
                    socket,
                    tid,
                    deadline: now + MEASURE_TIMEOUT,
                });
            }
        }
        false
    }

    /// The prediction for one offer; each is used once, so the next offer measures again.
    pub fn take_prediction(&mut self) -> Option<Prediction> {
        self.prediction.take()
    }

    /// A STUN datagram on any socket. Returns true when it was ours.
    pub fn handle_stun(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
        pool: &mut SocketPool,
        now: Instant,
    ) -> bool {
        if let Some(n) = &mut self.netcheck {
            if n.handle_datagram(socket, from, bytes, now) {
                self.note_provisional();
                self.finish_netcheck_if_done(now);
                return true;
            }
        }
        let Ok(resp) = parse_binding_response(bytes) else {
            return false;
        };
        if let Some(m) = &self.measure {
            if m.tid == resp.tid && m.socket == socket {
                let delta = match self.offer_profile().map(|p| p.allocation) {
                    Some(PortAllocation::Sequential { delta }) => delta,
                    _ => 1,
                };
                let next = i64::from(resp.mapped.port()) + i64::from(delta);
                self.prediction = u16::try_from(next).ok().map(|next_port| Prediction {
                    ip: resp.mapped.ip(),
                    next_port,
                    delta,
                });
                pool.close(m.socket);
                self.measure = None;
                return true;
            }
        }
        if self.keepalive_tid == Some(resp.tid) && socket == SocketId::MAIN {
            self.keepalive_tid = None;
            let moved = self
                .profile
                .as_ref()
                .is_some_and(|p| p.public.is_some_and(|old| old != resp.mapped));
            if moved {
                // A new public IP (another uplink, or the ISP renumbered the router) means
                // the control stream's TCP mapping went with the old one.
                self.public_ip_moved |= self
                    .profile
                    .as_ref()
                    .and_then(|p| p.public)
                    .is_some_and(|old| old.ip() != resp.mapped.ip());
                // NAT rebinding (RFC 4787 §4.3): measure again; peers learn the new address.
                self.progress.push_back(format!(
                    "public address moved to {}; probing the NAT again",
                    resp.mapped
                ));
                if let Some(p) = &mut self.profile {
                    p.public = Some(resp.mapped);
                }
                self.start(now);
            }
            // The server answers over UDP: a "no answer" verdict is stale.
            self.maybe_recheck(now);
            return true;
        }
        false
    }

    fn finish_netcheck_if_done(&mut self, now: Instant) {
        let Some(n) = &mut self.netcheck else {
            return;
        };
        while let Some(line) = n.poll_progress() {
            if line != "done" {
                self.progress.push_back(format!("netcheck: {line}"));
            }
        }
        if let Some(report) = n.report() {
            let mut profile = report.profile.clone();
            if profile.udp_blocked {
                profile = NatProfile::no_answer(self.server_answers_tcp);
                self.next_recheck = now + RECHECK_AFTER;
            }
            // A symmetric verdict changes what both sides should send; a cone one does not
            // (the provisional attempt already probes the candidates).
            self.replan_news |= !self.replanned && is_symmetric(&profile);
            let again = if profile.is_doubtful() {
                "; measuring again when the server or a peer answers"
            } else {
                ""
            };
            self.progress.push_back(format!(
                "NAT: {}{}{again}",
                profile.short(),
                profile
                    .public
                    .map(|p| format!(", public address {p}"))
                    .unwrap_or_default()
            ));
            self.profile = Some(profile);
            self.netcheck = None;
        }
    }

    pub fn handle_timeout(
        &mut self,
        pool: &mut SocketPool,
        out: &mut VecDeque<Transmit>,
        now: Instant,
    ) {
        if let Some(n) = &mut self.netcheck {
            n.handle_timeout(now);
            while let Some(t) = n.poll_transmit() {
                out.push_back(t);
            }
            while let Some(c) = n.poll_socket_command() {
                pool.commands.push_back(c);
            }
            self.note_provisional();
            self.finish_netcheck_if_done(now);
        }
        self.maybe_recheck(now);
        if let Some(m) = &self.measure {
            if now >= m.deadline {
                pool.close(m.socket);
                self.measure = None;
                // No fresh figure: predict from the mapped port we know, which the window
                // around it may still cover.
                self.prediction = self.offer_profile().and_then(|p| {
                    let public = p.public?;
                    let PortAllocation::Sequential { delta } = p.allocation else {
                        return None;
                    };
                    let next = u16::try_from(i64::from(public.port()) + i64::from(delta)).ok()?;
                    Some(Prediction {
                        ip: public.ip(),
                        next_port: next,
                        delta,
                    })
                });
            }
        }
        if self.profile.is_some() && self.netcheck.is_none() && now >= self.next_keepalive {
            self.next_keepalive = now + STUN_KEEPALIVE;
            if let Some(server) = self.server {
                let tid = TransactionId::random(&mut self.rng);
                self.keepalive_tid = Some(tid);
                out.push_back(Transmit::main(
                    server,
                    binding_request(tid, ChangeRequest::NONE, None),
                ));
            }
        }
    }

    /// Drains what a just-handled datagram made netcheck want to send.
    pub fn flush(&mut self, pool: &mut SocketPool, out: &mut VecDeque<Transmit>) {
        if let Some(n) = &mut self.netcheck {
            while let Some(t) = n.poll_transmit() {
                out.push_back(t);
            }
            while let Some(c) = n.poll_socket_command() {
                pool.commands.push_back(c);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let netcheck = self.netcheck.as_ref().and_then(|n| n.poll_timeout());
        let measure = self.measure.as_ref().map(|m| m.deadline);
        let keepalive = self.profile.is_some().then_some(self.next_keepalive);
        let recheck = (self.netcheck.is_none()
            && self.profile.as_ref().is_some_and(NatProfile::is_doubtful))
        .then_some(self.next_recheck);
        [netcheck, measure, keepalive, recheck]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Behind a NAT whose mapping depends on the destination: the server-reflexive candidate alone
/// does not reach it (RFC 4787 §4.1), so the plan needs its allocation.
fn is_symmetric(p: &NatProfile) -> bool {
    p.behind_nat != Some(false)
        && matches!(
            p.mapping,
            Mapping::AddressDependent | Mapping::AddressAndPortDependent
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives discovery with nothing answering until the netcheck gives up; returns its lines.
    fn silence(d: &mut Discovery, pool: &mut SocketPool, from: Instant) -> (Vec<String>, Instant) {
        let mut out = VecDeque::new();
        let mut now = from;
        for _ in 0..200 {
            d.handle_timeout(pool, &mut out, now);
            if d.netcheck.is_none() {
                break;
            }
            now += Duration::from_millis(100);
        }
        (d.progress.drain(..).collect(), now)
    }

    #[test]
    fn no_answer_is_the_server_until_it_answers_tcp_and_is_measured_again_at_a_bounded_rate() {
        let t0 = crate::test_now();
        let server = "198.51.100.1:7400".parse().ok();
        let mut d = Discovery::new(server, ChaCha8Rng::seed_from_u64(1), t0);
        let mut pool = SocketPool::new(FIRST_PUNCH_SOCKET);
        d.handle_main_socket("192.0.2.10:51000".parse().unwrap(), t0);
        let (lines, now) = silence(&mut d, &mut pool, t0);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("NAT: not measured: server unreachable")),
            "{lines:?}"
        );
        assert!(d.profile().is_some_and(|p| p.server_unreachable));
        // The server registers us: measured again at once, and now the silence is UDP's.
        d.set_server_answers_tcp(true, now);
        assert!(d.netcheck.is_some(), "a fresh netcheck");
        let (lines, now) = silence(&mut d, &mut pool, now);
        assert!(
            lines.iter().any(|l| l.starts_with("NAT: UDP blocked")),
            "{lines:?}"
        );
        // A direct packet from a peer proves UDP works, but right after a check it waits.
        d.note_udp_works(now + Duration::from_secs(1));
        assert!(d.netcheck.is_none());
        d.note_udp_works(now + RECHECK_AFTER);
        assert!(
            d.netcheck.is_some(),
            "measured again once the interval passed"
        );
    }
}
