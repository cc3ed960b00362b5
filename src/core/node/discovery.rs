//! The node's view of its own NAT: a netcheck against the server when the node starts (and again
//! when the public mapping moves), STUN keepalives on the main socket that hold the
//! server-reflexive mapping open and notice rebinding, and the fresh port measurement a
//! sequential NAT needs right before each punch offer (Wei et al.: predict from the newest
//! allocation, not an old one).

use crate::core::nat::netcheck::{Netcheck, NetcheckConfig};
use crate::core::nat::{NatProfile, PortAllocation};
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
        }
    }

    pub fn profile(&self) -> Option<&NatProfile> {
        self.profile.as_ref()
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
        if let Some(public) = self.profile.as_ref().and_then(|p| p.public) {
            if !local.contains(&public) {
                out.push(Candidate {
                    addr: public,
                    technique: Technique::ServerReflexive,
                });
            }
        }
        out
    }

    /// Whether an offer can be made now; starts a fresh port measurement when the NAT is
    /// sequential and none is under way.
    pub fn ready_for_offer(
        &mut self,
        pool: &mut SocketPool,
        out: &mut VecDeque<Transmit>,
        now: Instant,
    ) -> bool {
        let Some(profile) = &self.profile else {
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
                self.finish_netcheck_if_done();
                return true;
            }
        }
        let Ok(resp) = parse_binding_response(bytes) else {
            return false;
        };
        if let Some(m) = &self.measure {
            if m.tid == resp.tid && m.socket == socket {
                let delta = match self.profile.as_ref().map(|p| p.allocation) {
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
            return true;
        }
        false
    }

    fn finish_netcheck_if_done(&mut self) {
        let Some(n) = &mut self.netcheck else {
            return;
        };
        while let Some(line) = n.poll_progress() {
            if line != "done" {
                self.progress.push_back(format!("netcheck: {line}"));
            }
        }
        if let Some(report) = n.report() {
            let profile = report.profile.clone();
            self.progress.push_back(format!(
                "NAT: {}{}",
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
            self.finish_netcheck_if_done();
        }
        if let Some(m) = &self.measure {
            if now >= m.deadline {
                pool.close(m.socket);
                self.measure = None;
                // No fresh figure: predict from the mapped port we know, which the window
                // around it may still cover.
                self.prediction = self.profile.as_ref().and_then(|p| {
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
        [netcheck, measure, keepalive].into_iter().flatten().min()
    }
}
