//! One peer's punching state machine: offer and answer through the server, the attempt that
//! primes and probes per the plan, nomination of the first path with an authenticated round trip,
//! keepalives on it, and a new attempt (with backoff) when it dies.
//!
//! Only the side with the lower public key starts attempts, so two nodes that learn of each other
//! at once run one attempt, not two. The other side answers; both start probing as soon as each
//! holds the other's offer, which the server relays within one round trip of each other. The
//! one exception is a replan: a node whose NAT check ended symmetric after it punched on a
//! provisional profile offers again whatever its key; when both do at once, the lower key's
//! offer stands and the other yields (answers it).
//!
//! Order independence (nat-lab.md, conntrack poisoning): each side primes its own NAT toward the
//! other before the other can have learnt to probe it. The initiator primes toward the peer's
//! server-known endpoints when it offers, the answerer toward the offer's candidates when it
//! answers; the answerer then waits [`PRIME_LEAD`] for the initiator to start, while the
//! initiator, which starts last, probes at once. A probe that arrives from a target is answered
//! by a probe of our own straight away (RFC 8445 §7.3.1.4 triggered check), so the second side's
//! path is verified one round trip after the first side's.

use super::budget::{self, ProbeBudget};
use super::plan::{plan, Plan, PlanInput, Sweep, Target};
use super::probe::{Probe, ProbeKey, ProbeKind};
use super::{Candidate, PunchOffer, Technique};
use crate::core::keys::{PublicKey, SecretKey};
use crate::core::nat::NatProfile;
use crate::core::transmit::{SocketId, Transmit};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod context;
mod path;

pub use context::{Ctx, LocalInfo, PunchConfig, PunchEvent, PunchStatus, SocketPool};

/// Priming packets go out this long before the first real probe, so that each side's own NAT
/// holds the mapping before the other side's probes arrive (nat-lab.md, conntrack poisoning). It
/// covers the gap between the two sides starting: one relay through the server.
pub const PRIME_LEAD: Duration = Duration::from_millis(400);
/// Targets are probed again this often during an attempt.
pub const ROUND: Duration = Duration::from_millis(500);
/// Birthday sockets probe again this often.
pub const BIRTHDAY_ROUND: Duration = Duration::from_secs(1);
/// Pace of sweep and birthday probes: 500 per second, so no burst looks like a scan.
pub const SWEEP_PACE: Duration = Duration::from_millis(2);
/// An attempt ends after this long without a verified path.
pub const ATTEMPT: Duration = Duration::from_secs(10);
/// How long to wait for the answer to an offer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Keepalive probes on the nominated path, and when to give it up: fast while traffic flows,
/// slow when idle. While traffic flows the fallback to the relay must come well before the
/// 3 s mark: a TCP sender on a short path retransmits at about 0.2, 0.6, 1.4, 3.0 and 6.2 s
/// after the loss began (RFC 6298 section 5.5 doubling from Linux's 200 ms floor), so a path
/// given up at 2.5 s on an idle machine, or a little later on a busy one, turned a 3 s stall
/// into a 6 s one. Given up after 1.5 s without an answer, the relay carries the 3 s
/// retransmission with most of a second to spare. The probes stay at 2 per second: at 4 a
/// pinging pair spent about 80 us more CPU per echo (`scripts/bench.sh`, BENCH_PING_STAT).
pub const KEEPALIVE: Duration = Duration::from_secs(5);
pub const PATH_TIMEOUT: Duration = Duration::from_secs(16);
pub const ACTIVE_KEEPALIVE: Duration = Duration::from_millis(500);
pub const ACTIVE_PATH_TIMEOUT: Duration = Duration::from_millis(1500);
/// Traffic sent this recently makes the path "active".
const ACTIVE_WINDOW: Duration = Duration::from_secs(5);
/// A path that dies sooner than this after nomination doubles the wait before the next attempt
/// (hysteresis: a flapping path does not bounce traffic back and forth).
const FLAP_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// A path that lived this long before it died is punched again at once (unless another died
/// within [`FLAP_WINDOW`]).
const STABLE_PATH: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Bounds on state a flood of probes could grow.
const MAX_PENDING: usize = 16_384;
const MAX_PEER_REFLEXIVE: usize = 16;
/// Probes sent in one timer call at most (a late timer must not turn pacing into a burst).
const MAX_BURST: u32 = 32;
/// Extra sockets kept after an attempt because the peer reached them.
const MAX_KEPT: usize = 4;
/// Attempt ids of the side with the higher key (replans only) start here, so they never collide
/// with the initiator's.
const ANSWERER_IDS: u64 = (1 << 32) + 1;

/// The attempt number to show a user (the low half of the id; see [`ANSWERER_IDS`]).
pub fn attempt_label(id: u64) -> u64 {
    id & 0xffff_ffff
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    socket: SocketId,
    addr: SocketAddr,
    technique: Technique,
    offset: i16,
    sent: Instant,
}

/// The path in use.
#[derive(Clone, Debug)]
pub struct Nominated {
    pub socket: SocketId,
    pub addr: SocketAddr,
    pub technique: Technique,
    pub detail: String,
    since: Instant,
    last_pong: Instant,
    next_keepalive: Instant,
    /// The first keepalive sent after the last answer.
    unanswered_since: Option<Instant>,
}

struct SweepState {
    sweep: Sweep,
    sent: u32,
    next_at: Instant,
}

struct Attempt {
    id: u64,
    started: Instant,
    deadline: Instant,
    targets: Vec<(SocketId, Target)>,
    next_round: Instant,
    sweep: Option<SweepState>,
    birthday: Vec<SocketId>,
    birthday_dst: Option<SocketAddr>,
    next_birthday: Instant,
    hopeless: Option<String>,
    probes: u64,
    /// Targets already sent a triggered check (bounded by the targets).
    triggered: Vec<(SocketId, SocketAddr)>,
    /// The fresh socket the targets are probed from, when not the main one (a sequential NAT).
    own: Option<SocketId>,
    /// Extra sockets a ping from the peer reached: the peer may have chosen one of them.
    heard: Vec<SocketId>,
    /// IPv6 first, IPv4's expensive techniques left out (`punch::ipv6::prefer`).
    ipv6_first: bool,
}

enum Phase {
    Idle { next_attempt: Instant },
    AwaitingAnswer { attempt: u64, deadline: Instant },
    Answering { theirs: PunchOffer },
    Probing(Box<Attempt>),
}

pub struct PeerPunch {
    key: ProbeKey,
    initiator: bool,
    phase: Phase,
    pending: HashMap<[u8; 12], Pending>,
    /// What the peer's probes from each address said about how they found us.
    seen: HashMap<SocketAddr, (Technique, i16)>,
    nominated: Option<Nominated>,
    backoff: Duration,
    created: Instant,
    next_attempt_id: u64,
    status: PunchStatus,
    /// The peer's last offer, for its NAT profile.
    pub their_nat: Option<NatProfile>,
    /// The candidates of the peer's last offer, to name a path by what it is.
    their_candidates: Vec<Candidate>,
    /// When data last went out on the direct path.
    last_tx: Option<Instant>,
    /// What this side spends on addresses that never answered.
    budget: ProbeBudget,
    /// Our NAT check ended symmetric after we offered a provisional profile: offer again.
    replan: bool,
    /// Extra sockets kept open after an attempt because the peer's pings reached them: the
    /// peer may have nominated one (each side nominates its own first answered probe, and with
    /// many birthday sockets those can differ). Closed with the path.
    kept: Vec<SocketId>,
    /// When the last nominated path died.
    last_lost: Option<Instant>,
    /// An IPv6-first attempt found no path: run the full IPv4 ladder from now on.
    ipv6_tried: bool,
}

impl PeerPunch {
    pub fn new(local: &SecretKey, peer: &PublicKey, now: Instant) -> Self {
        PeerPunch {
            key: ProbeKey::new(local, peer),
            initiator: local.public_key() < *peer,
            phase: Phase::Idle { next_attempt: now },
            pending: HashMap::new(),
            seen: HashMap::new(),
            nominated: None,
            backoff: FIRST_BACKOFF,
            created: now,
            next_attempt_id: if local.public_key() < *peer {
                1
            } else {
                ANSWERER_IDS
            },
            status: PunchStatus::default(),
            their_nat: None,
            their_candidates: Vec::new(),
            last_tx: None,
            budget: ProbeBudget::default(),
            replan: false,
            kept: Vec::new(),
            last_lost: None,
            ipv6_tried: false,
        }
    }

    /// The server passed the peer's profile, and with it the endpoints we prime toward before an
    /// offer: offering earlier could let the peer's probes reach our NAT before our priming.
    fn peer_published(&self) -> bool {
        self.their_nat.is_some()
    }

    /// Our NAT profile turned out symmetric: unless a path is already chosen, offer again with
    /// it (whichever side we are), so both sides plan with the full profile.
    pub fn request_replan(&mut self) {
        if self.nominated.is_none() {
            self.replan = true;
        }
    }

    /// Low-TTL packets toward the peer's endpoints as the server knows them, sent with a new
    /// offer: our NAT holds a mapping toward the peer before the peer has the offer, so its
    /// probes can never reach our router first (a router that accepts unsolicited packets for
    /// itself would otherwise keep that flow and give ours another port). Bounded by the peer's
    /// endpoint count (the server passes at most 8) and by the probe budget.
    pub fn prime_before_offer(&mut self, endpoints: &[SocketAddr], ttl: u8, ctx: &mut Ctx) {
        for &addr in endpoints.iter().take(budget::MAX_OFFER_CANDIDATES) {
            // A peer on our own LAN may hear it despite the low TTL; name its path right.
            let technique = match addr.ip() {
                std::net::IpAddr::V4(ip) if ip.is_private() || ip.is_link_local() => Technique::Lan,
                _ => Technique::ServerReflexive,
            };
            self.ping(SocketId::MAIN, addr, technique, 0, Some(ttl), ctx);
        }
    }

    pub fn key(&self) -> &ProbeKey {
        &self.key
    }

    pub fn nominated(&self) -> Option<&Nominated> {
        self.nominated.as_ref()
    }

    pub fn status(&self) -> &PunchStatus {
        &self.status
    }

    /// Whether the node should build an offer now (with a fresh prediction if it has a
    /// sequential NAT): an initiator whose backoff ran out and whose peer is online, or an
    /// answer owed.
    pub fn wants_offer(&self, now: Instant, peer_online: bool) -> bool {
        if self.replan && peer_online && self.nominated.is_none() {
            return true;
        }
        match &self.phase {
            Phase::Idle { next_attempt } => {
                self.initiator
                    && peer_online
                    && self.peer_published()
                    && self.nominated.is_none()
                    && now >= *next_attempt
            }
            Phase::Answering { .. } => true,
            _ => false,
        }
    }

    /// The peer registered again from elsewhere (`core::node::roaming`): an offer this side sent
    /// before may have gone to its old, dead control stream, and waiting `ANSWER_WAIT` for an
    /// answer that cannot come (while a crossing offer from the peer is ignored, ours standing)
    /// would cost 5 s. Offer again now.
    pub fn offer_again_if_waiting(&mut self) {
        if self.nominated.is_none() && matches!(self.phase, Phase::AwaitingAnswer { .. }) {
            self.replan = true;
        }
    }

    /// This side gained a candidate (a port mapping) and has no path: offer again now, with it,
    /// whichever side we are and whatever the attempt is doing. An initiator would otherwise wait
    /// out its backoff; an answerer would wait for the initiator's next attempt (it never
    /// offers on its own); and an attempt in flight was planned without the candidate (the
    /// peer's probes cannot target it), so waiting for its end costs the rest of it plus a
    /// backoff (15 s behind a NAT-PMP gateway that answered during the first attempt). The
    /// new offer supersedes the attempt as a replan does.
    pub fn retry_now(&mut self, now: Instant) {
        if self.nominated.is_some() {
            return;
        }
        match &mut self.phase {
            // Before the first attempt there is nothing to supersede: the initiator's first
            // offer, or the answer to it, carries the candidate as it is.
            Phase::Idle { next_attempt } if self.status.attempts == 0 => {
                if *next_attempt > now {
                    *next_attempt = now;
                }
            }
            Phase::Answering { .. } => {}
            _ => self.replan = true,
        }
    }

    /// Builds the offer the node sends through the server, and starts probing if it answers.
    pub fn make_offer(&mut self, local: &LocalInfo, ctx: &mut Ctx) -> Option<PunchOffer> {
        let phase = std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                next_attempt: ctx.now,
            },
        );
        let replan = std::mem::take(&mut self.replan);
        let phase = match phase {
            // A replan supersedes the attempt on the provisional profile.
            Phase::AwaitingAnswer { .. } | Phase::Probing(_) if replan => {
                self.phase = phase;
                self.end_attempt(ctx, None);
                Phase::Idle {
                    next_attempt: ctx.now,
                }
            }
            other => other,
        };
        let (attempt, answer) = match phase {
            Phase::Idle { .. } => {
                let id = self.next_attempt_id;
                self.next_attempt_id += 1;
                self.phase = Phase::AwaitingAnswer {
                    attempt: id,
                    deadline: ctx.now + ANSWER_WAIT,
                };
                (id, None)
            }
            Phase::Answering { theirs } => (theirs.attempt, Some(theirs)),
            other => {
                self.phase = other;
                return None;
            }
        };
        let offer = PunchOffer {
            attempt,
            answer: answer.is_some(),
            candidates: local.candidates.clone(),
            nat: local.profile.clone(),
            prediction: local.prediction,
        };
        if let Some(theirs) = answer {
            // The initiator starts when our answer reaches it: give it that long to prime.
            self.start_attempt(&theirs, local, PRIME_LEAD, ctx);
        }
        Some(offer)
    }

    /// The peer's endpoints as the server passed them: their public IP is the one address that
    /// may receive sweeps and birthday probes before it answers (see `budget`).
    pub fn set_vouched(&mut self, endpoints: &[SocketAddr]) {
        self.budget.set_vouched(endpoints);
    }

    /// An offer or answer from the peer.
    pub fn handle_offer(&mut self, mut offer: PunchOffer, local: &LocalInfo, ctx: &mut Ctx) {
        let offered = offer.candidates.len();
        let dropped = budget::trim_candidates(&mut offer.candidates);
        let implausible = offer.prediction.filter(|p| !budget::plausible(p));
        if implausible.is_some() {
            offer.prediction = None;
        }
        if dropped > 0 || implausible.is_some() {
            self.status.candidates_dropped += dropped as u64;
            tracing::info!(
                offered,
                dropped,
                prediction = ?implausible,
                "ignored part of a peer's punch offer (too many or unusable candidates, or an \
                 implausible port prediction)"
            );
        }
        self.their_nat = Some(offer.nat.clone());
        self.their_candidates.clone_from(&offer.candidates);
        if !offer.answer {
            if self.initiator && matches!(self.phase, Phase::AwaitingAnswer { .. }) {
                // Both offered at once (a replan on each side): ours stands and the peer, on
                // seeing it, answers it.
                tracing::debug!(attempt = offer.attempt, "crossing punch offer; ours stands");
                return;
            }
            // The peer starts a new attempt; whatever we were doing is superseded.
            self.replan = false;
            self.end_attempt(ctx, None);
            self.phase = Phase::Answering { theirs: offer };
            return;
        }
        match self.phase {
            Phase::AwaitingAnswer { attempt, .. } if attempt == offer.attempt => {
                // The peer primed when it answered: probe at once.
                self.start_attempt(&offer, local, Duration::ZERO, ctx);
            }
            _ => tracing::debug!(attempt = offer.attempt, "stale punch answer ignored"),
        }
    }

    fn start_attempt(
        &mut self,
        theirs: &PunchOffer,
        local: &LocalInfo,
        lead: Duration,
        ctx: &mut Ctx,
    ) {
        let plan = plan(&PlanInput {
            mine: &super::mapped::effective(&local.profile, &local.candidates),
            theirs: &super::mapped::effective(&theirs.nat, &theirs.candidates),
            their_candidates: &theirs.candidates,
            their_prediction: theirs.prediction,
            birthday: local.config.birthday,
        });
        self.status.attempts += 1;
        let now = ctx.now;
        let mut plan = plan;
        let ipv6_first = !self.ipv6_tried && super::ipv6::prefer(&mut plan, &local.candidates);
        let mut birthday_dst = theirs
            .candidates
            .iter()
            .find(|c| {
                c.technique == Technique::ServerReflexive
                    && super::ipv6::same_family(c.addr, theirs.nat.public)
            })
            .map(|c| c.addr);
        if let Some(why) = budget::confine(&mut plan, &mut birthday_dst, &self.budget) {
            tracing::info!(attempt = theirs.attempt, "{why}; not probing there");
            plan.hopeless.get_or_insert(why);
        }
        let Plan {
            targets,
            sweep,
            birthday_sockets,
            hopeless,
        } = plan;
        let birthday: Vec<SocketId> = match birthday_dst {
            Some(_) => (0..birthday_sockets).map(|_| ctx.sockets.open()).collect(),
            None => Vec::new(),
        };
        // Behind a sequential allocator the main socket may already hold a mapping toward the
        // peer (an attempt on the provisional profile made it), which no prediction covers: a
        // fresh socket's mappings are the predicted ones, in order.
        let own = (local.profile.mapping != crate::core::nat::Mapping::EndpointIndependent
            && matches!(
                local.profile.allocation,
                crate::core::nat::PortAllocation::Sequential { .. }
            ))
        .then(|| ctx.sockets.open());
        let socket = own.unwrap_or(SocketId::MAIN);
        let mut attempt = Attempt {
            id: theirs.attempt,
            started: now,
            deadline: now + ATTEMPT,
            // IPv6 targets go from the main socket's IPv6 half: extra sockets are IPv4 only.
            targets: targets
                .into_iter()
                .map(|t| {
                    (
                        if t.addr.is_ipv6() {
                            SocketId::MAIN
                        } else {
                            socket
                        },
                        t,
                    )
                })
                .collect(),
            next_round: now + lead,
            sweep: sweep.map(|sweep| SweepState {
                sweep,
                sent: 0,
                next_at: now + lead,
            }),
            birthday,
            birthday_dst,
            next_birthday: now + lead,
            hopeless,
            probes: 0,
            triggered: Vec::new(),
            own,
            heard: Vec::new(),
            ipv6_first,
        };
        tracing::debug!(
            attempt = attempt.id,
            ipv6_first,
            targets = attempt.targets.len(),
            sweep = attempt.sweep.as_ref().map(|s| s.sweep.len()),
            birthday = attempt.birthday.len(),
            "punch attempt starts"
        );
        // Low-TTL priming: open our own NAT's mapping toward every target before the peer's
        // first probe can reach it (Wei et al.'s limited-TTL trick; nat-lab.md row 11).
        let targets = attempt.targets.clone();
        for (socket, t) in targets {
            let ttl = Some(local.config.priming_ttl);
            self.send_ping(&mut attempt, socket, t, ttl, ctx);
        }
        if attempt.targets.is_empty() && attempt.sweep.is_none() && attempt.birthday.is_empty() {
            let reason = attempt
                .hopeless
                .clone()
                .unwrap_or_else(|| "the peer sent no candidates".into());
            self.phase = Phase::Probing(Box::new(attempt));
            self.fail(reason, ctx);
            return;
        }
        self.phase = Phase::Probing(Box::new(attempt));
    }

    fn send_ping(
        &mut self,
        attempt: &mut Attempt,
        socket: SocketId,
        target: Target,
        ttl: Option<u8>,
        ctx: &mut Ctx,
    ) {
        if self.ping(
            socket,
            target.addr,
            target.technique,
            target.offset,
            ttl,
            ctx,
        ) {
            attempt.probes += 1;
            self.status.probes_sent += 1;
        }
    }

    /// Sends a ping unless `addr` has used up its budget; returns whether it went out.
    fn ping(
        &mut self,
        socket: SocketId,
        addr: SocketAddr,
        technique: Technique,
        offset: i16,
        ttl: Option<u8>,
        ctx: &mut Ctx,
    ) -> bool {
        if !self.budget.allow(addr.ip(), ctx.now) {
            self.status.probes_withheld += 1;
            return false;
        }
        let tx: [u8; 12] = ctx.rng.gen();
        if self.pending.len() < MAX_PENDING {
            self.pending.insert(
                tx,
                Pending {
                    socket,
                    addr,
                    technique,
                    offset,
                    sent: ctx.now,
                },
            );
        }
        let probe = Probe {
            kind: ProbeKind::Ping,
            tx,
            technique,
            offset,
            observed: None,
        };
        ctx.transmits.push_back(Transmit {
            socket,
            dst: addr,
            payload: self.key.seal(&probe, ctx.rng),
            ttl,
        });
        true
    }

    /// An authenticated probe from the peer, on `socket` from `from`.
    pub fn handle_probe(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        probe: Probe,
        ctx: &mut Ctx,
    ) -> Option<PunchEvent> {
        match probe.kind {
            ProbeKind::Ping => {
                let pong = Probe {
                    kind: ProbeKind::Pong,
                    observed: Some(from),
                    ..probe
                };
                ctx.transmits.push_back(Transmit {
                    socket,
                    dst: from,
                    payload: self.key.seal(&pong, ctx.rng),
                    ttl: None,
                });
                if self.seen.len() < MAX_PENDING || self.seen.contains_key(&from) {
                    self.seen.insert(from, (probe.technique, probe.offset));
                }
                if let Phase::Probing(a) = &mut self.phase {
                    let extra = a.birthday.contains(&socket) || a.own == Some(socket);
                    if extra && !a.heard.contains(&socket) {
                        a.heard.push(socket);
                    }
                }
                self.probe_peer_reflexive(socket, from, ctx);
                None
            }
            ProbeKind::Pong => {
                let pending = self.pending.get(&probe.tx).copied()?;
                if pending.socket != socket || pending.addr != from {
                    return None;
                }
                self.pending.remove(&probe.tx);
                // Our transaction id came back from there: it consents to probes (RFC 7675).
                self.budget.answered(from.ip());
                self.validated(pending, ctx)
            }
        }
    }

    /// The peer reached us from an address we are not probing: probe it back (RFC 8445 §7.3.1.3).
    fn probe_peer_reflexive(&mut self, socket: SocketId, from: SocketAddr, ctx: &mut Ctx) {
        if self.nominated.as_ref().is_some_and(|n| n.addr == from) {
            return;
        }
        let Phase::Probing(attempt) = &mut self.phase else {
            if self.nominated.is_none() {
                // Not in an attempt (its offer may still be on the way): one probe back.
                self.ping(socket, from, Technique::PeerReflexive, 0, None, ctx);
            }
            return;
        };
        let known = attempt
            .targets
            .iter()
            .any(|(s, t)| *s == socket && t.addr == from);
        let reflexive = attempt
            .targets
            .iter()
            .filter(|(_, t)| t.technique == Technique::PeerReflexive)
            .count();
        if known {
            self.triggered_check(socket, from, ctx);
            return;
        }
        if reflexive >= MAX_PEER_REFLEXIVE {
            return;
        }
        let target = Target {
            addr: from,
            technique: Technique::PeerReflexive,
            offset: 0,
        };
        attempt.targets.push((socket, target));
        let mut attempt = match std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                next_attempt: ctx.now,
            },
        ) {
            Phase::Probing(a) => a,
            _ => return,
        };
        self.send_ping(&mut attempt, socket, target, None, ctx);
        self.phase = Phase::Probing(attempt);
    }

    /// A probe came from a target of this attempt: its path toward us is open, so ours toward it
    /// is worth one probe now rather than at the next round (RFC 8445 §7.3.1.4). Once per
    /// target and attempt.
    fn triggered_check(&mut self, socket: SocketId, from: SocketAddr, ctx: &mut Ctx) {
        let Phase::Probing(attempt) = &mut self.phase else {
            return;
        };
        if attempt.triggered.contains(&(socket, from)) {
            return;
        }
        attempt.triggered.push((socket, from));
        let Some(target) = attempt
            .targets
            .iter()
            .find(|(s, t)| *s == socket && t.addr == from)
            .map(|(_, t)| *t)
        else {
            return;
        };
        let mut attempt = match std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                next_attempt: ctx.now,
            },
        ) {
            Phase::Probing(a) => a,
            _ => return,
        };
        self.send_ping(&mut attempt, socket, target, None, ctx);
        self.phase = Phase::Probing(attempt);
    }

    /// The peer is gone: close every socket this session opened.
    pub fn close(&mut self, sockets: &mut SocketPool) {
        if let Phase::Probing(attempt) = &self.phase {
            for s in attempt.birthday.iter().chain(&attempt.own) {
                sockets.close(*s);
            }
        }
        for s in self.kept.drain(..) {
            sockets.close(s);
        }
        if let Some(n) = self.nominated.take() {
            if n.socket != SocketId::MAIN {
                sockets.close(n.socket);
            }
        }
        self.phase = Phase::Idle {
            next_attempt: self.created,
        };
        self.pending.clear();
    }

    /// Closes the attempt's extra sockets except `keep`, and forgets its transactions.
    fn end_attempt(&mut self, ctx: &mut Ctx, keep: Option<SocketId>) {
        if let Phase::Probing(attempt) = &self.phase {
            for s in attempt.birthday.iter().chain(&attempt.own) {
                if Some(*s) == keep {
                    continue;
                }
                if keep.is_some() && attempt.heard.contains(s) && self.kept.len() < MAX_KEPT {
                    self.kept.push(*s);
                } else {
                    ctx.sockets.close(*s);
                }
            }
            let nominated = self.nominated.as_ref().map(|n| (n.socket, n.addr));
            self.pending
                .retain(|_, p| Some((p.socket, p.addr)) == nominated);
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Ctx) -> Option<PunchEvent> {
        if matches!(&self.phase, Phase::Probing(a) if a.ipv6_first) {
            self.ipv6_tried = true;
        }
        self.end_attempt(ctx, None);
        self.status.last_failure = Some(reason.clone());
        self.phase = Phase::Idle {
            next_attempt: ctx.now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Some(PunchEvent::Failed { reason })
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx) -> Option<PunchEvent> {
        let now = ctx.now;
        if let Some(event) = self.keepalive(ctx) {
            return Some(event);
        }
        match &self.phase {
            Phase::AwaitingAnswer { deadline, .. } if now >= *deadline => {
                return self.fail(
                    "the peer did not answer the punch offer within 5 s".into(),
                    ctx,
                );
            }
            Phase::Probing(_) => {}
            _ => return None,
        }
        let Phase::Probing(mut attempt) =
            std::mem::replace(&mut self.phase, Phase::Idle { next_attempt: now })
        else {
            return None;
        };
        if now >= attempt.deadline {
            let reason = attempt.hopeless.clone().unwrap_or_else(|| {
                format!(
                    "no probe was answered in {} s ({} probes)",
                    ATTEMPT.as_secs(),
                    attempt.probes
                )
            });
            self.phase = Phase::Probing(attempt);
            return self.fail(reason, ctx);
        }
        if now >= attempt.next_round {
            attempt.next_round = now + ROUND;
            for (socket, t) in attempt.targets.clone() {
                self.send_ping(&mut attempt, socket, t, None, ctx);
            }
        }
        if now >= attempt.next_birthday {
            attempt.next_birthday = now + BIRTHDAY_ROUND;
            if let Some(dst) = attempt.birthday_dst {
                let target = Target {
                    addr: dst,
                    technique: Technique::Birthday,
                    offset: 0,
                };
                for s in attempt.birthday.clone() {
                    self.send_ping(&mut attempt, s, target, None, ctx);
                }
            }
        }
        self.sweep(&mut attempt, ctx);
        self.phase = Phase::Probing(attempt);
        None
    }

    fn sweep(&mut self, attempt: &mut Attempt, ctx: &mut Ctx) {
        let now = ctx.now;
        let mut burst = 0;
        loop {
            let Some(state) = &mut attempt.sweep else {
                return;
            };
            if state.sent >= state.sweep.len() || now < state.next_at || burst >= MAX_BURST {
                return;
            }
            let addr = match &state.sweep {
                Sweep::Range { ip, low, high, .. } => {
                    let span = u32::from(*high) - u32::from(*low) + 1;
                    let port = u32::from(*low) + state.sent % span;
                    SocketAddr::new(*ip, port as u16)
                }
                Sweep::Random { ip, .. } => SocketAddr::new(*ip, ctx.rng.gen_range(1024..=65535)),
            };
            let technique = state.sweep.technique();
            state.sent += 1;
            state.next_at += SWEEP_PACE;
            burst += 1;
            let target = Target {
                addr,
                technique,
                offset: 0,
            };
            self.send_ping(attempt, SocketId::MAIN, target, None, ctx);
        }
    }

    /// When the session wants to be called next. `can_offer` says whether the node could send
    /// an offer now (peer online, registered, NAT discovery ready): the idle retry deadline only
    /// counts then, since a deadline the node cannot act on stays in the past and would make
    /// the driver, which sleeps until the earliest timeout, spin.
    pub fn poll_timeout(&self, can_offer: bool) -> Option<Instant> {
        let keepalive = self.nominated.as_ref().map(|n| n.next_keepalive);
        let phase = match &self.phase {
            Phase::Idle { next_attempt } => {
                (can_offer && self.initiator && self.peer_published() && self.nominated.is_none())
                    .then_some(*next_attempt)
            }
            Phase::AwaitingAnswer { deadline, .. } => Some(*deadline),
            Phase::Answering { .. } => None,
            Phase::Probing(a) => {
                let sweep = a
                    .sweep
                    .as_ref()
                    .filter(|s| s.sent < s.sweep.len())
                    .map(|s| s.next_at);
                let birthday = (!a.birthday.is_empty()).then_some(a.next_birthday);
                [Some(a.deadline), Some(a.next_round), sweep, birthday]
                    .into_iter()
                    .flatten()
                    .min()
            }
        };
        [keepalive, phase].into_iter().flatten().min()
    }

    /// Time the current attempt has run, for progress lines.
    pub fn attempt_age(&self, now: Instant) -> Option<Duration> {
        match &self.phase {
            Phase::Probing(a) => Some(now.saturating_duration_since(a.started)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod replan_tests;
#[cfg(test)]
mod tests;
