//! Path MTU in the node (issue 11): runs each peer's DPLPMTUD search (`core::pmtu::search`) over
//! the route its traffic takes, sends the padded probes through the session like any TUN packet,
//! takes their answers out of the receive path, and gates the data path: an inner packet larger
//! than the peer's confirmed path MTU is answered with ICMP "fragmentation needed" (or dropped
//! and counted without DF), and TCP SYNs both ways get their MSS clamped to fit. A peer whose
//! path MTU is not known yet (search not started, or echo requests unanswered) is not gated.
//! IPv6 packets pass the same gate: their destination /128 names the peer (the peers table maps
//! it), the answer is ICMPv6 "packet too big" (`ptb6`), and SYNs get an MSS for 60 bytes of
//! headers instead of 40.

use super::{Node, Route, TunOutcome, MAX_DATAGRAM};
use crate::core::counters::DropReason;
use crate::core::keys::PublicKey;
use crate::core::pmtu::mss;
use crate::core::pmtu::probe;
use crate::core::pmtu::ptb::{self, TooBig};
use crate::core::pmtu::ptb6::{self, IPV6_MIN_MTU};
use crate::core::pmtu::search::{Phase, Probe, Search, BASE_PLPMTU};
use crate::core::pmtu::FALLBACK_TUN_MTU;
use crate::core::transmit::Transmit;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Large packets sent and nothing heard from the peer for this long: a black-hole symptom
/// (RFC 8899 §4.3), checked with a confirmation probe.
const SILENCE_AFTER_BIG: Duration = Duration::from_secs(2);

/// One peer's search and the route it measures.
struct PeerPmtu {
    key: PublicKey,
    route: Option<Route>,
    search: Search,
    /// When a packet larger than the base size last went to the peer.
    last_big_tx: Option<Instant>,
}

/// The node's path MTU state: the TUN MTU (the search's upper bound) and each peer's search, by
/// virtual address (the data path's key).
pub(super) struct PmtuState {
    /// Path MTU discovery on (the config's `path_mtu_discovery`).
    enabled: bool,
    tun_mtu: u16,
    peers: HashMap<Ipv4Addr, PeerPmtu>,
    /// The probe being built and its encrypted form: probes are rare (one per round trip at
    /// most, per peer), but need not allocate either.
    packet: Vec<u8>,
    out: Vec<u8>,
}

impl PmtuState {
    /// A data worker sent the peer a packet above the base size at `at` (the gate's
    /// `last_big_tx`, for packets the core did not see).
    pub(super) fn note_big_tx(&mut self, peer: Ipv4Addr, at: Instant) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.last_big_tx = Some(entry.last_big_tx.map_or(at, |t| t.max(at)));
        }
    }
}

impl Default for PmtuState {
    fn default() -> Self {
        PmtuState {
            enabled: true,
            tun_mtu: FALLBACK_TUN_MTU,
            peers: HashMap::new(),
            packet: Vec::new(),
            out: Vec::new(),
        }
    }
}

/// What the data path does with a TUN packet, by size.
enum Gate {
    Pass,
    TooBig(u16),
    ClampSyn(u16),
}

/// A peer's path MTU as `status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathMtu {
    pub mtu: Option<u16>,
    pub phase: Phase,
}

impl Node {
    /// The TUN device's MTU, the largest inner packet: every search's upper bound. Searches
    /// under way start over.
    pub fn set_tun_mtu(&mut self, mtu: u16) {
        if mtu != self.pmtu.tun_mtu {
            self.pmtu.tun_mtu = mtu;
            self.pmtu.peers.clear();
        }
    }

    /// Turns path MTU discovery on or off; off, nothing is probed or enforced.
    pub fn set_path_mtu_discovery(&mut self, on: bool) {
        self.pmtu.enabled = on;
        self.pmtu.peers.clear();
    }

    pub fn tun_mtu(&self) -> u16 {
        self.pmtu.tun_mtu
    }

    /// The peer's path MTU (inner bytes) and where its search is.
    pub fn path_mtu(&self, peer: Ipv4Addr) -> PathMtu {
        match self.pmtu.peers.get(&peer) {
            Some(p) => PathMtu {
                mtu: p.search.mtu(),
                phase: p.search.phase(),
            },
            None => PathMtu {
                mtu: None,
                phase: Phase::Idle,
            },
        }
    }

    /// Runs on the timer tick: follows each peer's route (a new path is searched from the
    /// base, RFC 8899 §4.3), starts searches once a session is up, runs probe timers and sends
    /// the probes due.
    pub(super) fn drive_pmtu(&mut self, now: Instant) {
        if !self.pmtu.enabled {
            return;
        }
        let tun_mtu = self.pmtu.tun_mtu;
        let mut due: Vec<(Ipv4Addr, Probe)> = Vec::new();
        for peer in self.peers.iter() {
            let route = super::relaying::route(peer, &self.relay, &self.control, self.stun_server);
            let entry = self
                .pmtu
                .peers
                .entry(peer.virtual_ip)
                .or_insert_with(|| PeerPmtu {
                    key: peer.key,
                    route: None,
                    search: Search::default(),
                    last_big_tx: None,
                });
            if entry.key != peer.key || entry.route != route {
                entry.key = peer.key;
                entry.route = route;
                entry.search = Search::default();
                entry.last_big_tx = None;
            }
            if entry.search.phase() == Phase::Idle {
                if route.is_some() && peer.session_fresh(now) {
                    entry.search.start(tun_mtu, now);
                }
            } else if let Some(big) = entry.last_big_tx {
                let silent = peer.last_heard.is_none_or(|h| h < big);
                if silent && now.saturating_duration_since(big) >= SILENCE_AFTER_BIG {
                    entry.search.suspect_black_hole(now);
                    entry.last_big_tx = None;
                }
            }
            entry.search.handle_timeout(now);
            if let Some(p) = entry.search.poll_probe(now) {
                due.push((peer.virtual_ip, p));
            }
        }
        let peers = &self.peers;
        self.pmtu
            .peers
            .retain(|ip, p| peers.get(&p.key).is_some_and(|peer| peer.virtual_ip == *ip));
        for (ip, p) in due {
            self.send_pmtu_probe(ip, p);
        }
    }

    /// Sends a probe through the peer's session, the way a TUN packet would go.
    fn send_pmtu_probe(&mut self, peer: Ipv4Addr, p: Probe) {
        let Some(ours) = self.assignment.as_ref().map(|a| a.virtual_ip) else {
            return;
        };
        let mut packet = std::mem::take(&mut self.pmtu.packet);
        let mut out = std::mem::take(&mut self.pmtu.out);
        packet.resize(usize::from(self.pmtu.tun_mtu), 0);
        out.resize(MAX_DATAGRAM, 0);
        if let Some(probe) = probe::write_probe(&mut packet, ours, peer, p.seq, p.size) {
            self.send_inner(probe, &mut out);
        }
        self.pmtu.packet = packet;
        self.pmtu.out = out;
    }

    /// True when `packet` (decrypted, from the peer at `from`) answers one of our probes: the
    /// search takes it, the next probe goes out at once, and the TUN device never sees it.
    pub(super) fn take_pmtu_answer(&mut self, packet: &[u8], from: Ipv4Addr, now: Instant) -> bool {
        let Some((seq, size)) = probe::parse_answer(packet, from) else {
            return false;
        };
        let Some(entry) = self.pmtu.peers.get_mut(&from) else {
            return true;
        };
        entry.search.handle_ack(seq, size, now);
        if let Some(next) = entry.search.poll_probe(now) {
            self.send_pmtu_probe(from, next);
        }
        true
    }

    /// True when `packet` (decrypted, from the peer at `from`) is the peer's probe: answered
    /// here, through the session, and kept from the TUN device.
    pub(super) fn answer_pmtu_probe(&mut self, packet: &[u8], from: Ipv4Addr) -> bool {
        let Some(ours) = self.assignment.as_ref().map(|a| a.virtual_ip) else {
            return false;
        };
        if !probe::is_request(packet, from, ours) {
            return false;
        }
        let mut answer = std::mem::take(&mut self.pmtu.packet);
        let mut out = std::mem::take(&mut self.pmtu.out);
        answer.clear();
        answer.extend_from_slice(packet);
        probe::answer_in_place(&mut answer);
        out.resize(MAX_DATAGRAM, 0);
        self.send_inner(&answer, &mut out);
        self.pmtu.packet = answer;
        self.pmtu.out = out;
        true
    }

    /// Sends an inner packet of our own (a probe or an answer) the way a TUN packet would go,
    /// past the size gate.
    fn send_inner(&mut self, packet: &[u8], out: &mut [u8]) {
        match self.route_tun_packet(packet, out) {
            TunOutcome::Send {
                socket,
                dst,
                datagram,
            } => self.transmits.push_back(Transmit {
                socket,
                dst,
                payload: datagram.to_vec(),
                ttl: None,
            }),
            // Lost with the queue or the stream if so: the peer's probe timer covers it.
            TunOutcome::Queued | TunOutcome::Stream | TunOutcome::Reply(_) => {}
            TunOutcome::Dropped(_) => {}
        }
    }

    /// The size gate for a TUN packet: the few byte reads every packet pays, a lookup for
    /// IPv4 ones (two more for IPv6: the /128 to the peer, the peer to its IPv4 key), and work
    /// only for the oversized and for SYNs.
    fn pmtu_gate(&mut self, packet: &[u8], now: Instant) -> Gate {
        let Some(&first) = packet.first() else {
            return Gate::Pass;
        };
        let (key, ipv6) = match first >> 4 {
            4 => match packet.get(16..20) {
                Some(d) => (Ipv4Addr::new(d[0], d[1], d[2], d[3]), false),
                None => return Gate::Pass,
            },
            6 => {
                let Some(d) = packet
                    .get(24..40)
                    .and_then(|d| <[u8; 16]>::try_from(d).ok())
                else {
                    return Gate::Pass;
                };
                // The path MTU state is keyed by the peer's IPv4 overlay address.
                let peer = self
                    .peers
                    .by_addr(IpAddr::V6(Ipv6Addr::from(d)))
                    .and_then(|k| self.peers.get(&k));
                match peer {
                    Some(p) => (p.virtual_ip, true),
                    None => return Gate::Pass,
                }
            }
            _ => return Gate::Pass,
        };
        let Some(entry) = self.pmtu.peers.get_mut(&key) else {
            return Gate::Pass;
        };
        let Some(mtu) = entry.search.mtu() else {
            return Gate::Pass;
        };
        // No host lowers its IPv6 path MTU below 1280 (RFC 8200 §5, RFC 8201 §4; RFC 8021
        // retired the atomic fragments that once answered a smaller "packet too big"), but the
        // search may settle lower (its floor is IPv4's 576). On such a path IPv6 packets up to
        // 1280 bytes are still sent, and those larger than the path vanish in it (the underlay
        // never fragments them); larger ones are answered naming 1280. TCP still fits, because
        // the SYN clamp below uses the real path MTU: only large non-TCP IPv6 packets (a
        // 1280-byte QUIC datagram, say) are lost on a path that small.
        let limit = if ipv6 { mtu.max(IPV6_MIN_MTU) } else { mtu };
        if packet.len() > usize::from(limit) {
            return Gate::TooBig(limit);
        }
        if packet.len() > usize::from(BASE_PLPMTU) {
            entry.last_big_tx = Some(now);
        }
        if mss::tcp_syn_offset(packet).is_some() {
            return Gate::ClampSyn(mss::max_mss(packet, mtu));
        }
        Gate::Pass
    }

    /// A TUN packet through the size gate, then routed (see `route_tun_packet`).
    pub(super) fn gate_and_route<'a>(
        &mut self,
        packet: &[u8],
        now: Instant,
        out: &'a mut [u8],
    ) -> TunOutcome<'a> {
        match self.pmtu_gate(packet, now) {
            Gate::Pass => self.route_tun_packet(packet, out),
            Gate::TooBig(mtu) => match too_big(packet, mtu, out) {
                TooBig::Answer(n) => {
                    // The packet itself is dropped; the sender hears why.
                    self.drops.bump(DropReason::TooBig);
                    TunOutcome::Reply(&out[..n])
                }
                TooBig::Drop => TunOutcome::Dropped(DropReason::TooBig),
            },
            Gate::ClampSyn(max_mss) => {
                // A SYN is small: clamp a copy in the scratch buffer, which nothing else holds
                // during this call.
                let mut scratch = std::mem::take(&mut self.scratch);
                let n = packet.len();
                let outcome = if scratch.len() >= n {
                    scratch[..n].copy_from_slice(packet);
                    mss::clamp_mss(&mut scratch[..n], max_mss);
                    self.route_tun_packet(&scratch[..n], out)
                } else {
                    self.route_tun_packet(packet, out)
                };
                self.scratch = scratch;
                outcome
            }
        }
    }

    /// Clamps the MSS of a SYN (IPv4 or IPv6) the peer at `from` sent us (in place, before the
    /// TUN device sees it), so our side's replies fit the path too.
    /// The confirmed path MTU to the peer at `peer`, if the search has one.
    pub(super) fn pmtu_of(&self, peer: Ipv4Addr) -> Option<u16> {
        self.pmtu.peers.get(&peer).and_then(|p| p.search.mtu())
    }

    pub(super) fn clamp_received_syn(&self, packet: &mut [u8], from: Ipv4Addr) {
        if let Some(mtu) = self.pmtu.peers.get(&from).and_then(|p| p.search.mtu()) {
            let max = mss::max_mss(packet, mtu);
            mss::clamp_mss(packet, max);
        }
    }
}

/// The ICMP answer for an oversized packet of either family: "fragmentation needed" for IPv4,
/// "packet too big" for IPv6 (the gate only lets these two through as too big).
fn too_big(packet: &[u8], mtu: u16, out: &mut [u8]) -> TooBig {
    match packet.first().map(|b| b >> 4) {
        Some(6) => ptb6::packet_too_big(packet, mtu, out),
        _ => ptb::fragmentation_needed(packet, mtu, out),
    }
}
