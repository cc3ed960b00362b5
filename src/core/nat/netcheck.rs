//! Netcheck: measures this host's NAT against one STUN server, sans-IO.
//!
//! The tests are RFC 5780's (§4.3 mapping, §4.4 filtering, §4.5 hairpinning), plus a port
//! allocation test: fresh sockets, opened one after another, each ask the primary address for
//! their mapping, so a sequential allocator shows its delta (Wei et al.) and a port block shows
//! its range. The mapping chain and the filtering test run in parallel on different sockets (the
//! filtering socket must not have sent to the alternate address, or its filter would be open);
//! the allocation samples start after the mapping chain so that no other new flow falls between
//! two samples; hairpinning comes last for the same reason. Requests are retransmitted on a
//! short schedule (RFC 5389 §7.2.1, shortened: a netcheck should take seconds, not 40 s), and a
//! filtering test that gets no answer is itself the finding.

use super::classify;
use super::profile::{Mapping, NatProfile};
use crate::core::stun::{
    binding_request, parse_binding_request, parse_binding_response, ChangeRequest, StunError,
    TransactionId,
};
use crate::core::transmit::{SocketCommand, SocketId, Transmit};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Send times of a request, relative to its first send; after the last it has failed.
const RETRANSMITS: [u64; 4] = [0, 250, 750, 1500];
const GIVE_UP: Duration = Duration::from_millis(2250);

#[derive(Clone, Debug)]
pub struct NetcheckConfig {
    /// The server's primary STUN address.
    pub server: SocketAddr,
    /// Extra sockets get ids from here up.
    pub first_extra_socket: SocketId,
    /// Fresh flows sampled for the port allocation test.
    pub allocation_samples: usize,
    pub hairpin: bool,
    pub lifetime: bool,
}

/// The result, as `netcheck --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct NetcheckReport {
    pub server: SocketAddr,
    pub local: Option<SocketAddr>,
    #[serde(flatten)]
    pub profile: NatProfile,
    pub legacy_class: Option<u8>,
    pub legacy_name: String,
    /// The server gave an OTHER-ADDRESS, so mapping and filtering could be measured.
    pub rfc5780: bool,
    pub other_address: Option<SocketAddr>,
    /// Mapped ports of the allocation samples, in order.
    pub observed_ports: Vec<u16>,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Primary,
    MapAltIp,
    MapAltBoth,
    FilterOpen,
    FilterBoth,
    FilterPort,
    Sample(usize),
    Hairpin,
}

struct Tx {
    socket: SocketId,
    dst: SocketAddr,
    payload: Vec<u8>,
    purpose: Purpose,
    first_sent: Instant,
    tries: usize,
}

pub struct Netcheck {
    config: NetcheckConfig,
    rng: ChaCha8Rng,
    started: Instant,
    next_socket: u16,
    locals: HashMap<SocketId, SocketAddr>,
    txs: HashMap<TransactionId, Tx>,
    transmits: VecDeque<Transmit>,
    commands: VecDeque<SocketCommand>,
    progress: VecDeque<String>,
    extra: Vec<SocketId>,
    // Observations.
    m1: Option<SocketAddr>,
    other: Option<SocketAddr>,
    m2: Option<SocketAddr>,
    m3: Option<SocketAddr>,
    mapping_done: bool,
    filter_socket: Option<SocketId>,
    filter_both: Option<bool>,
    filter_port: Option<bool>,
    samples: Vec<(SocketId, Option<(u16, u16)>)>,
    hairpin: Option<bool>,
    hairpin_done: bool,
    udp_blocked: bool,
    notes: Vec<String>,
    report: Option<NetcheckReport>,
}

impl Netcheck {
    pub fn new(config: NetcheckConfig, rng: ChaCha8Rng, now: Instant) -> Self {
        let mut n = Netcheck {
            next_socket: config.first_extra_socket.0,
            config,
            rng,
            started: now,
            locals: HashMap::new(),
            txs: HashMap::new(),
            transmits: VecDeque::new(),
            commands: VecDeque::new(),
            progress: VecDeque::new(),
            extra: Vec::new(),
            m1: None,
            other: None,
            m2: None,
            m3: None,
            mapping_done: false,
            filter_socket: None,
            filter_both: None,
            filter_port: None,
            samples: Vec::new(),
            hairpin: None,
            hairpin_done: false,
            udp_blocked: false,
            notes: Vec::new(),
            report: None,
        };
        let server = n.config.server;
        n.request(
            SocketId::MAIN,
            server,
            ChangeRequest::NONE,
            Purpose::Primary,
            now,
        );
        n
    }

    fn open_socket(&mut self) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket = self.next_socket.wrapping_add(1);
        self.commands.push_back(SocketCommand::Open(id));
        self.extra.push(id);
        id
    }

    fn request(
        &mut self,
        socket: SocketId,
        dst: SocketAddr,
        change: ChangeRequest,
        purpose: Purpose,
        now: Instant,
    ) {
        let tid = TransactionId::random(&mut self.rng);
        let payload = binding_request(tid, change, None);
        self.transmits.push_back(Transmit {
            socket,
            dst,
            payload: payload.clone(),
            ttl: None,
        });
        self.txs.insert(
            tid,
            Tx {
                socket,
                dst,
                payload,
                purpose,
                first_sent: now,
                tries: 1,
            },
        );
    }

    pub fn handle_socket_opened(&mut self, socket: SocketId, local: SocketAddr) {
        self.locals.insert(socket, local);
    }

    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.commands.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_progress(&mut self) -> Option<String> {
        self.progress.pop_front()
    }

    pub fn report(&self) -> Option<&NetcheckReport> {
        self.report.as_ref()
    }

    /// A datagram on one of our sockets; true when it belonged to netcheck.
    pub fn handle_datagram(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> bool {
        if self.report.is_some() {
            return false;
        }
        // Our own hairpin request arriving back at the main socket (RFC 5780 §4.5).
        if let Ok(req) = parse_binding_request(bytes) {
            let hairpin = self
                .txs
                .get(&req.tid)
                .is_some_and(|t| t.purpose == Purpose::Hairpin);
            if hairpin && socket == SocketId::MAIN {
                self.txs.remove(&req.tid);
                self.hairpin = Some(true);
                self.hairpin_done = true;
                self.progress.push_back("hairpinning: yes".into());
                self.maybe_finish(now);
                return true;
            }
            return false;
        }
        let (tid, response) = match parse_binding_response(bytes) {
            Ok(r) => (r.tid, Ok(r)),
            Err(StunError::ErrorResponse { tid, code }) => (tid, Err(code)),
            Err(_) => return false,
        };
        let Some(tx) = self.txs.get(&tid) else {
            return false;
        };
        if tx.socket != socket {
            return false;
        }
        let Some(tx) = self.txs.remove(&tid) else {
            return false;
        };
        let _ = from;
        match response {
            Ok(r) => self.answered(tx.purpose, r.mapped, r.other_address, now),
            Err(code) => self.refused(tx.purpose, code, now),
        }
        self.maybe_finish(now);
        true
    }

    fn answered(
        &mut self,
        purpose: Purpose,
        mapped: SocketAddr,
        other: Option<SocketAddr>,
        now: Instant,
    ) {
        match purpose {
            Purpose::Primary => {
                self.m1 = Some(mapped);
                self.other = other;
                self.progress.push_back(format!("public address {mapped}"));
                match other {
                    Some(alt) => {
                        let dst = SocketAddr::new(alt.ip(), self.config.server.port());
                        self.request(
                            SocketId::MAIN,
                            dst,
                            ChangeRequest::NONE,
                            Purpose::MapAltIp,
                            now,
                        );
                        let f = self.open_socket();
                        self.filter_socket = Some(f);
                        let server = self.config.server;
                        self.request(f, server, ChangeRequest::NONE, Purpose::FilterOpen, now);
                    }
                    None => {
                        self.notes.push(
                            "the server has one address (no OTHER-ADDRESS): mapping and \
                             filtering cannot be measured (RFC 5780 §4.3-4.4)"
                                .into(),
                        );
                        self.mapping_done = true;
                        self.start_samples(now);
                    }
                }
            }
            Purpose::MapAltIp => {
                self.m2 = Some(mapped);
                if Some(mapped) == self.m1 {
                    self.finish_mapping(now);
                } else if let Some(alt) = self.other {
                    self.request(
                        SocketId::MAIN,
                        alt,
                        ChangeRequest::NONE,
                        Purpose::MapAltBoth,
                        now,
                    );
                }
            }
            Purpose::MapAltBoth => {
                self.m3 = Some(mapped);
                self.finish_mapping(now);
            }
            Purpose::FilterOpen => {
                if let Some(f) = self.filter_socket {
                    let server = self.config.server;
                    self.request(
                        f,
                        server,
                        ChangeRequest::IP_AND_PORT,
                        Purpose::FilterBoth,
                        now,
                    );
                    self.request(f, server, ChangeRequest::PORT, Purpose::FilterPort, now);
                }
            }
            Purpose::FilterBoth => self.filter_both = Some(true),
            Purpose::FilterPort => self.filter_port = Some(true),
            Purpose::Sample(i) => {
                if let Some((socket, slot)) = self.samples.get_mut(i) {
                    let local = self.locals.get(socket).map(|l| l.port()).unwrap_or(0);
                    *slot = Some((local, mapped.port()));
                }
                self.next_sample(i + 1, now);
            }
            Purpose::Hairpin => {}
        }
    }

    fn refused(&mut self, purpose: Purpose, code: u16, now: Instant) {
        match purpose {
            Purpose::FilterBoth | Purpose::FilterPort => {
                self.notes.push(format!(
                    "the server refused a change request (error {code}); filtering unknown"
                ));
                self.filter_both = None;
                self.filter_port = None;
                self.txs
                    .retain(|_, t| !matches!(t.purpose, Purpose::FilterBoth | Purpose::FilterPort));
                self.filter_socket = None;
            }
            other => self.failed(other, now),
        }
    }

    /// A request got no answer at all.
    fn failed(&mut self, purpose: Purpose, now: Instant) {
        match purpose {
            Purpose::Primary => {
                self.udp_blocked = true;
                self.progress
                    .push_back("no STUN answer over UDP: UDP looks blocked".into());
                self.txs.clear();
            }
            Purpose::MapAltIp | Purpose::MapAltBoth => {
                self.notes
                    .push("the server's alternate address did not answer".into());
                self.finish_mapping(now);
            }
            Purpose::FilterOpen => {
                self.notes
                    .push("the filtering test's first request got no answer".into());
                self.filter_socket = None;
            }
            Purpose::FilterBoth => self.filter_both = Some(false),
            Purpose::FilterPort => self.filter_port = Some(false),
            Purpose::Sample(i) => self.next_sample(i + 1, now),
            Purpose::Hairpin => {
                self.hairpin = Some(false);
                self.hairpin_done = true;
                self.progress.push_back("hairpinning: no".into());
            }
        }
    }

    fn finish_mapping(&mut self, now: Instant) {
        if self.mapping_done {
            return;
        }
        self.mapping_done = true;
        if let Some(m1) = self.m1 {
            let mapping = classify::mapping(m1, self.m2, self.m3);
            self.progress.push_back(format!("mapping: {mapping}"));
        }
        self.start_samples(now);
    }

    fn start_samples(&mut self, now: Instant) {
        if self.config.allocation_samples == 0 {
            self.start_hairpin(now);
            return;
        }
        self.next_sample(0, now);
    }

    fn next_sample(&mut self, i: usize, now: Instant) {
        if i >= self.config.allocation_samples {
            let ports: Vec<(u16, u16)> = self.samples.iter().filter_map(|(_, s)| *s).collect();
            let allocation = classify::allocation(&ports);
            self.progress
                .push_back(format!("port allocation: {allocation}"));
            self.start_hairpin(now);
            return;
        }
        let socket = self.open_socket();
        self.samples.push((socket, None));
        let server = self.config.server;
        self.request(socket, server, ChangeRequest::NONE, Purpose::Sample(i), now);
    }

    fn start_hairpin(&mut self, now: Instant) {
        match (self.config.hairpin, self.m1) {
            (true, Some(m1)) => {
                let socket = self.open_socket();
                self.request(socket, m1, ChangeRequest::NONE, Purpose::Hairpin, now);
            }
            _ => self.hairpin_done = true,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.report.is_some() {
            return;
        }
        let mut failed = Vec::new();
        for (tid, tx) in &mut self.txs {
            let age = now.saturating_duration_since(tx.first_sent);
            if age >= GIVE_UP {
                failed.push((*tid, tx.purpose));
                continue;
            }
            if let Some(&at) = RETRANSMITS.get(tx.tries) {
                if age >= Duration::from_millis(at) {
                    tx.tries += 1;
                    self.transmits.push_back(Transmit {
                        socket: tx.socket,
                        dst: tx.dst,
                        payload: tx.payload.clone(),
                        ttl: None,
                    });
                }
            }
        }
        failed.sort_by_key(|(_, p)| format!("{p:?}"));
        for (tid, purpose) in failed {
            if self.txs.remove(&tid).is_some() {
                self.failed(purpose, now);
            }
        }
        self.maybe_finish(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.report.is_some() {
            return None;
        }
        self.txs
            .values()
            .map(|t| {
                let next = RETRANSMITS
                    .get(t.tries)
                    .map(|ms| Duration::from_millis(*ms))
                    .unwrap_or(GIVE_UP);
                t.first_sent + next
            })
            .min()
    }

    fn maybe_finish(&mut self, now: Instant) {
        if self.report.is_some() {
            return;
        }
        let filtering_pending = self.txs.values().any(|t| {
            matches!(
                t.purpose,
                Purpose::FilterOpen | Purpose::FilterBoth | Purpose::FilterPort
            )
        });
        let done = self.udp_blocked
            || (self.mapping_done
                && self.hairpin_done
                && !filtering_pending
                && self.txs.is_empty());
        if !done {
            return;
        }
        for s in self.extra.drain(..) {
            self.commands.push_back(SocketCommand::Close(s));
        }
        let local = self.locals.get(&SocketId::MAIN).copied();
        let mut profile = NatProfile {
            udp_blocked: self.udp_blocked,
            public: self.m1,
            ..NatProfile::default()
        };
        if !self.udp_blocked {
            profile.behind_nat = match (local, self.m1) {
                (Some(l), Some(m)) if !l.ip().is_unspecified() => Some(l != m),
                _ => None,
            };
            profile.mapping = self
                .m1
                .map(|m1| classify::mapping(m1, self.m2, self.m3))
                .unwrap_or(Mapping::Unknown);
            if self.filter_socket.is_some() {
                profile.filtering = classify::filtering(self.filter_both, self.filter_port);
                self.progress
                    .push_back(format!("filtering: {}", profile.filtering));
            }
            let ports: Vec<(u16, u16)> = self.samples.iter().filter_map(|(_, s)| *s).collect();
            profile.allocation = classify::allocation(&ports);
            profile.hairpin = self.hairpin;
        }
        if self.config.lifetime {
            self.notes
                .push("mapping lifetime was not measured: not supported yet".into());
        }
        let observed_ports = self
            .samples
            .iter()
            .filter_map(|(_, s)| s.map(|(_, m)| m))
            .collect();
        self.report = Some(NetcheckReport {
            server: self.config.server,
            local,
            legacy_class: profile.legacy_class(),
            legacy_name: profile.legacy_name().to_string(),
            rfc5780: self.other.is_some(),
            other_address: self.other,
            observed_ports,
            notes: std::mem::take(&mut self.notes),
            duration_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            profile,
        });
    }
}
