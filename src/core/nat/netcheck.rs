//! NAT behaviour discovery against one STUN server (RFC 5780 §4), sans-IO: measures this host's
//! `NatProfile` with a handful of short STUN transactions on the main socket and on fresh extra
//! sockets the driver opens on request.
//!
//! Order matters because every new mapping advances a sequential NAT's port counter:
//! 1. MAIN → primary (test I): public address M1, OTHER-ADDRESS; no answer = UDP blocked.
//! 2. At once, in this send order: the filtering socket F asks the primary plainly, with "change
//!    port" and with "change IP and port" (§4.4; F talked only to the primary, so nothing else
//!    opened its filter); the hairpin socket sends a request to M1 (§4.5); MAIN asks (alternate
//!    IP, primary port) (test II, §4.3), then (alternate IP, alternate port) if needed (test III).
//! 3. Then the port-allocation samples, one fresh socket after another, so a sequential NAT shows
//!    its step undisturbed; then, if asked, the mapping-lifetime probes (§4.6).
//!
//! Unanswered requests are findings (filtering, hairpinning), so each transaction gives up after
//! 2.2 s ([`crate::core::stun::client::Schedule::FAST`]) and the whole run takes about that long.

use super::classify::{classify_allocation, classify_filtering, classify_mapping, PortSample};
use super::profile::{Filtering, NatProfile, PortAllocation};
use super::report::NetcheckReport;
use crate::core::stun::{
    binding_request, parse_binding_request, parse_binding_response, BindingResponse, ChangeRequest,
    ClientTransaction, StunError, TransactionId,
};
use crate::core::transmit::{SocketCommand, SocketId, Transmit};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

#[path = "netcheck_steps.rs"]
mod steps;

/// Idle times tested by `--lifetime`, one fresh mapping each, all in parallel.
pub const LIFETIME_STEPS_SECS: [u64; 8] = [5, 10, 20, 30, 45, 60, 90, 120];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetcheckConfig {
    /// The STUN server's primary address.
    pub server: SocketAddr,
    /// Extra sockets get ids from here upward.
    pub first_extra_socket: SocketId,
    /// Fresh mappings made to model port allocation.
    pub allocation_samples: usize,
    pub hairpin: bool,
    /// Also measure how long an idle mapping lives (takes up to two minutes).
    pub lifetime: bool,
}

impl NetcheckConfig {
    pub fn new(server: SocketAddr) -> Self {
        NetcheckConfig {
            server,
            first_extra_socket: SocketId(1),
            allocation_samples: 12,
            hairpin: true,
            lifetime: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Primary,
    MappingAltIp,
    MappingAltBoth,
    FilterControl,
    FilterPort,
    FilterBoth,
    Sample(usize),
    Hairpin,
    LifetimeBind(usize),
    LifetimeCheck(usize),
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Answered {
        resp: BindingResponse,
        from: SocketAddr,
    },
    Refused(u16),
    NoAnswer,
}

struct Probe {
    purpose: Purpose,
    tx: ClientTransaction,
    /// Where the answer must arrive (differs from the sending socket for RESPONSE-PORT).
    receive_on: SocketId,
}

#[derive(Default)]
struct FilterAnswers {
    control: bool,
    port: bool,
    both: bool,
    /// Why the server's answers cannot be trusted for filtering, if so.
    unusable: Option<String>,
}

pub struct Netcheck {
    config: NetcheckConfig,
    rng: ChaCha8Rng,
    now: Instant,
    local: HashMap<SocketId, SocketAddr>,
    open: BTreeSet<SocketId>,
    next_id: u16,
    commands: VecDeque<SocketCommand>,
    transmits: VecDeque<Transmit>,
    progress: VecDeque<String>,
    probes: Vec<Probe>,
    issued: HashSet<TransactionId>,
    filter_socket: SocketId,
    hairpin_socket: Option<SocketId>,
    sample_sockets: Vec<SocketId>,
    lifetime_sockets: Vec<SocketId>,
    m1: Option<BindingResponse>,
    m2: Option<SocketAddr>,
    /// Public ports of tests II and III when they differ (a symmetric NAT's step).
    mapping_ports: Option<(u16, u16)>,
    filter: FilterAnswers,
    samples: Vec<PortSample>,
    lifetime_alive: Vec<Option<bool>>,
    profile: NatProfile,
    notes: Vec<String>,
    report: Option<NetcheckReport>,
}

impl Netcheck {
    pub fn new(config: NetcheckConfig, rng: ChaCha8Rng, now: Instant) -> Self {
        let mut n = Netcheck {
            next_id: config.first_extra_socket.0,
            config,
            rng,
            now,
            local: HashMap::new(),
            open: BTreeSet::new(),
            commands: VecDeque::new(),
            transmits: VecDeque::new(),
            progress: VecDeque::new(),
            probes: Vec::new(),
            issued: HashSet::new(),
            filter_socket: SocketId::MAIN,
            hairpin_socket: None,
            sample_sockets: Vec::new(),
            lifetime_sockets: Vec::new(),
            m1: None,
            m2: None,
            mapping_ports: None,
            filter: FilterAnswers::default(),
            samples: Vec::new(),
            lifetime_alive: Vec::new(),
            profile: NatProfile::default(),
            notes: Vec::new(),
            report: None,
        };
        // Binding a socket makes no mapping, so every socket the run needs is opened up front.
        n.filter_socket = n.open_socket();
        if n.config.hairpin {
            n.hairpin_socket = Some(n.open_socket());
        }
        n.sample_sockets = (0..n.config.allocation_samples)
            .map(|_| n.open_socket())
            .collect();
        let server = n.config.server;
        n.progress
            .push_back(format!("asking {server} for this host's public address"));
        n.start(
            Purpose::Primary,
            SocketId::MAIN,
            server,
            ChangeRequest::NONE,
        );
        n.pump(now);
        n
    }

    pub fn poll_socket_command(&mut self) -> Option<SocketCommand> {
        self.commands.pop_front()
    }

    /// The driver opened `id` (or reports MAIN's address) at `local`, whose IP is the one used
    /// toward the server.
    pub fn handle_socket_opened(&mut self, id: SocketId, local: SocketAddr) {
        self.local.insert(id, local);
        let now = self.now;
        self.pump(now);
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

    /// What is known before the run ends, for punching that starts before it: the
    /// server-reflexive address of the main socket (test I answers within one round trip; the
    /// filtering tests wait for timeouts that are findings) and whether it differs from the
    /// local one, then mapping and allocation as soon as both are measured (a symmetric mapping
    /// is only shown with its allocation, which decides between prediction, port block and
    /// birthday). Unknown fields read to the planner as "try the candidates, assume the
    /// strictest filter". `None` until test I answered.
    pub fn provisional(&self) -> Option<NatProfile> {
        let m1 = self.m1?;
        let mut p = self.profile.clone();
        p.public = Some(m1.mapped);
        p.behind_nat = self
            .local
            .get(&SocketId::MAIN)
            .filter(|l| !l.ip().is_unspecified())
            .map(|l| *l != m1.mapped);
        if p.mapping != super::profile::Mapping::EndpointIndependent
            && p.allocation == PortAllocation::Unknown
        {
            p.mapping = super::profile::Mapping::Unknown;
        }
        Some(p)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.report.is_some() {
            return None;
        }
        self.probes
            .iter()
            .map(|p| {
                if self.can_send(p.tx.socket) {
                    p.tx.next_timeout()
                } else {
                    p.tx.deadline()
                }
            })
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.pump(now);
    }

    /// Returns true if the datagram was a STUN message of this run.
    pub fn handle_datagram(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> bool {
        self.now = now;
        let ours = match parse_binding_response(bytes) {
            Ok(resp) => self.handle_answer(resp.tid, socket, Outcome::Answered { resp, from }),
            Err(StunError::ErrorResponse { tid, code }) => {
                self.handle_answer(tid, socket, Outcome::Refused(code))
            }
            Err(_) => match parse_binding_request(bytes) {
                Ok(req) => self.handle_hairpin(socket, req.tid),
                Err(_) => false,
            },
        };
        self.pump(now);
        ours
    }

    fn open_socket(&mut self) -> SocketId {
        let id = SocketId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        self.open.insert(id);
        self.commands.push_back(SocketCommand::Open(id));
        id
    }

    fn close_socket(&mut self, id: SocketId) {
        if self.open.remove(&id) {
            self.commands.push_back(SocketCommand::Close(id));
        }
    }

    fn can_send(&self, socket: SocketId) -> bool {
        socket == SocketId::MAIN || self.local.contains_key(&socket)
    }

    fn start(
        &mut self,
        purpose: Purpose,
        socket: SocketId,
        dst: SocketAddr,
        change: ChangeRequest,
    ) {
        self.start_at(purpose, socket, dst, change, None, socket, self.now);
    }

    #[allow(clippy::too_many_arguments)] // one call site per shape; a builder would hide less
    fn start_at(
        &mut self,
        purpose: Purpose,
        socket: SocketId,
        dst: SocketAddr,
        change: ChangeRequest,
        response_port: Option<u16>,
        receive_on: SocketId,
        not_before: Instant,
    ) {
        let tid = TransactionId::random(&mut self.rng);
        self.issued.insert(tid);
        let payload = binding_request(tid, change, response_port);
        self.probes.push(Probe {
            purpose,
            tx: ClientTransaction::new(tid, socket, dst, payload, not_before),
            receive_on,
        });
    }

    /// Fails timed-out transactions (which may start others), sends what is due, and writes
    /// the report once nothing is left.
    fn pump(&mut self, now: Instant) {
        while let Some(i) = self.probes.iter().position(|p| p.tx.timed_out(now)) {
            let probe = self.probes.remove(i);
            self.conclude(probe.purpose, Outcome::NoAnswer);
        }
        for i in 0..self.probes.len() {
            if !self.can_send(self.probes[i].tx.socket) {
                continue;
            }
            if let Some(t) = self.probes[i].tx.poll_transmit(now) {
                self.transmits.push_back(t);
            }
        }
        if self.probes.is_empty() && self.report.is_none() {
            self.finish();
        }
    }

    fn handle_answer(&mut self, tid: TransactionId, socket: SocketId, outcome: Outcome) -> bool {
        let Some(i) = self.probes.iter().position(|p| p.tx.tid == tid) else {
            // A late answer to a retransmission we already counted.
            return self.issued.contains(&tid);
        };
        if self.probes[i].receive_on != socket {
            if let Purpose::LifetimeCheck(_) = self.probes[i].purpose {
                self.abandon_lifetime(
                    "the server answered the mapping-lifetime check itself instead of sending \
                     it to RESPONSE-PORT (RFC 5780 §7.5), so lifetime was not measured"
                        .to_string(),
                );
            }
            return true;
        }
        let probe = self.probes.remove(i);
        self.conclude(probe.purpose, outcome);
        true
    }

    /// RFC 5780 §4.5: our own request to M1 came back in on MAIN.
    fn handle_hairpin(&mut self, socket: SocketId, tid: TransactionId) -> bool {
        let Some(i) = self
            .probes
            .iter()
            .position(|p| p.purpose == Purpose::Hairpin && p.tx.tid == tid)
        else {
            return self.issued.contains(&tid);
        };
        if socket != SocketId::MAIN {
            return true;
        }
        self.probes.remove(i);
        self.set_hairpin(true);
        true
    }

    fn conclude(&mut self, purpose: Purpose, outcome: Outcome) {
        match purpose {
            Purpose::Primary => self.on_primary(outcome),
            Purpose::MappingAltIp | Purpose::MappingAltBoth => self.on_mapping(purpose, outcome),
            Purpose::FilterControl | Purpose::FilterPort | Purpose::FilterBoth => {
                self.on_filter(purpose, outcome)
            }
            Purpose::Sample(i) => self.on_sample(i, outcome),
            Purpose::Hairpin => self.set_hairpin(false),
            Purpose::LifetimeBind(k) => self.on_lifetime_bind(k, outcome),
            Purpose::LifetimeCheck(k) => self.on_lifetime_check(k, outcome),
        }
    }

    fn on_primary(&mut self, outcome: Outcome) {
        let server = self.config.server;
        let resp = match outcome {
            Outcome::Answered { resp, .. } => resp,
            Outcome::Refused(code) => {
                self.notes.push(format!(
                    "{server} refused a plain Binding request with error {code}; is it a STUN \
                     server?"
                ));
                self.probes.clear();
                return;
            }
            Outcome::NoAnswer => {
                self.profile.udp_blocked = true;
                self.notes.push(format!(
                    "no STUN answer from {server} after 4 tries in 2.2 s: UDP to it is blocked \
                     (or the server is down)"
                ));
                self.progress
                    .push_back("no answer: UDP looks blocked".to_string());
                self.probes.clear();
                return;
            }
        };
        self.m1 = Some(resp);
        self.profile.public = Some(resp.mapped);
        self.progress
            .push_back(format!("public address {}", resp.mapped));
        let f = self.filter_socket;
        match resp.other_address {
            Some(other) => {
                self.start(Purpose::FilterControl, f, server, ChangeRequest::NONE);
                self.start(Purpose::FilterPort, f, server, ChangeRequest::PORT);
                self.start(Purpose::FilterBoth, f, server, ChangeRequest::IP_AND_PORT);
                self.start_hairpin(resp.mapped);
                let alt_ip = SocketAddr::new(other.ip(), server.port());
                self.start(
                    Purpose::MappingAltIp,
                    SocketId::MAIN,
                    alt_ip,
                    ChangeRequest::NONE,
                );
            }
            None => {
                self.notes.push(format!(
                    "{server} named no second address (no OTHER-ADDRESS), so mapping and \
                     filtering cannot be measured: RFC 5780 §4.3 and §4.4 need a server with \
                     two IPs (`p2pvpn server` gets one from a second --listen address)"
                ));
                self.close_socket(f);
                self.start_hairpin(resp.mapped);
                self.start_sample(0);
            }
        }
    }

    fn start_hairpin(&mut self, m1: SocketAddr) {
        if let Some(h) = self.hairpin_socket {
            self.start(Purpose::Hairpin, h, m1, ChangeRequest::NONE);
        }
    }

    fn set_hairpin(&mut self, works: bool) {
        self.profile.hairpin = Some(works);
        self.progress
            .push_back(format!("hairpinning: {}", if works { "yes" } else { "no" }));
        if let Some(h) = self.hairpin_socket {
            self.close_socket(h);
        }
    }

    fn on_mapping(&mut self, purpose: Purpose, outcome: Outcome) {
        let (Some(m1), Some(other)) = (self.m1, self.m1.and_then(|r| r.other_address)) else {
            return;
        };
        let mapped = match outcome {
            Outcome::Answered { resp, .. } => Some(resp.mapped),
            _ => {
                self.notes.push(format!(
                    "no answer from the server's other address ({}), so mapping is unknown",
                    other.ip()
                ));
                None
            }
        };
        if purpose == Purpose::MappingAltIp {
            self.m2 = mapped;
            if mapped.is_some_and(|m2| m2 != m1.mapped) {
                self.start(
                    Purpose::MappingAltBoth,
                    SocketId::MAIN,
                    other,
                    ChangeRequest::NONE,
                );
                return;
            }
        }
        let m3 = if purpose == Purpose::MappingAltBoth {
            mapped
        } else {
            None
        };
        self.profile.mapping = classify_mapping(m1.mapped, self.m2, m3);
        if let (Some(m2), Some(m3)) = (self.m2, m3) {
            self.mapping_ports = Some((m2.port(), m3.port()));
        }
        self.progress
            .push_back(format!("mapping: {}", self.profile.mapping));
        self.start_sample(0);
    }
}

#[cfg(test)]
#[path = "netcheck_tests.rs"]
mod tests;
