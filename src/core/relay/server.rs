//! The server's relay: forwards end-to-end encrypted WireGuard messages between members of one
//! network by their relay ids, over UDP (rewriting the header in place, no copy) or into a
//! node's control stream when its UDP is blocked.
//!
//! Fairness: every node has a token bucket (bytes per second, one second of burst), and all
//! relayed traffic shares a total bucket; what exceeds either is dropped and counted, never
//! queued, so one node cannot build a backlog that delays the others. Stream-bound frames are
//! further bounded by the driver's per-connection queue. The number of nodes that may use the
//! relay at once is capped as well. A log line says when a limit bites, at most every 10 s per
//! node.

use super::wire::{self, RelayDatagram, TOKEN_LEN};
use crate::core::keys::PublicKey;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A UDP binding not refreshed for this long is forgotten (nodes refresh every 15 s), so a node
/// whose UDP went dark is reached through its stream instead.
pub const BINDING_TTL: Duration = Duration::from_secs(45);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Configured limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    pub node_bytes_per_sec: u64,
    pub total_bytes_per_sec: u64,
    pub max_nodes: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            node_bytes_per_sec: 100_000_000 / 8,
            total_bytes_per_sec: 1_000_000_000 / 8,
            max_nodes: 1000,
        }
    }
}

/// What a node is told over the control channel to use the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayTicket {
    pub id: u32,
    pub token: [u8; TOKEN_LEN],
}

/// Per-node relay figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RelayNodeStats {
    pub bytes: u64,
    pub packets: u64,
    pub dropped_rate: u64,
    pub dropped_no_peer: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayDrop {
    Malformed,
    NotBound,
    UnknownPeer,
    RateLimited,
}

/// What to do with a relay datagram that arrived on UDP.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Send these bytes back to the sender (a BindOk).
    Reply(Vec<u8>),
    /// Send the first `len` bytes of the (rewritten) buffer to `to`, from our socket `via` (the
    /// one the destination bound to, which its NAT lets through).
    Forward {
        via: SocketAddr,
        to: SocketAddr,
        len: usize,
    },
    /// Put this frame into the control stream of connection `conn`.
    ToStream {
        conn: u64,
        frame: Vec<u8>,
    },
    Drop(RelayDrop),
}

/// Where a frame from a control stream goes.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    Udp {
        via: SocketAddr,
        to: SocketAddr,
        datagram: Vec<u8>,
    },
    ToStream {
        conn: u64,
        frame: Vec<u8>,
    },
    Drop(RelayDrop),
}

struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(bytes_per_sec: u64, now: Instant) -> Self {
        Bucket {
            tokens: bytes_per_sec as f64,
            rate: bytes_per_sec as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // One second of burst.
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
    }

    fn has(&mut self, n: usize, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= n as f64
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

struct Session {
    network: String,
    key: PublicKey,
    conn: u64,
    token: [u8; TOKEN_LEN],
    /// (node's address, our socket it bound to, last seen).
    udp: Option<(SocketAddr, SocketAddr, Instant)>,
    bucket: Bucket,
    stats: RelayNodeStats,
    last_log: Option<Instant>,
}

pub struct RelayServer {
    limits: RelayLimits,
    sessions: HashMap<u32, Session>,
    by_udp: HashMap<SocketAddr, u32>,
    by_token: HashMap<[u8; TOKEN_LEN], u32>,
    total: Bucket,
    last_total_log: Option<Instant>,
    rng: ChaCha8Rng,
}

impl RelayServer {
    pub fn new(limits: RelayLimits, rng: ChaCha8Rng, now: Instant) -> Self {
        RelayServer {
            total: Bucket::new(limits.total_bytes_per_sec, now),
            limits,
            sessions: HashMap::new(),
            by_udp: HashMap::new(),
            by_token: HashMap::new(),
            last_total_log: None,
            rng,
        }
    }

    /// Gives an online node a relay identity; `None` when the relay is full.
    pub fn register(
        &mut self,
        conn: u64,
        network: &str,
        key: PublicKey,
        now: Instant,
    ) -> Option<RelayTicket> {
        if self.sessions.len() >= self.limits.max_nodes {
            tracing::warn!(
                max = self.limits.max_nodes,
                node = %key.short(),
                "relay is full (--relay-max-nodes); this node gets no relay"
            );
            return None;
        }
        let mut id: u32 = self.rng.gen();
        while id == 0 || self.sessions.contains_key(&id) {
            id = self.rng.gen();
        }
        let token: [u8; TOKEN_LEN] = self.rng.gen();
        self.sessions.insert(
            id,
            Session {
                network: network.to_string(),
                key,
                conn,
                token,
                udp: None,
                bucket: Bucket::new(self.limits.node_bytes_per_sec, now),
                stats: RelayNodeStats::default(),
                last_log: None,
            },
        );
        self.by_token.insert(token, id);
        Some(RelayTicket { id, token })
    }

    pub fn unregister(&mut self, id: u32) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_token.remove(&s.token);
            if let Some((addr, _, _)) = s.udp {
                self.by_udp.remove(&addr);
            }
            if s.stats.packets > 0 {
                tracing::info!(node = %s.key.short(), bytes = s.stats.bytes, packets = s.stats.packets,
                    dropped_rate = s.stats.dropped_rate, "relay session ended");
            }
        }
    }

    pub fn stats(&self, id: u32) -> Option<RelayNodeStats> {
        self.sessions.get(&id).map(|s| s.stats)
    }

    pub fn node_count(&self) -> usize {
        self.sessions.len()
    }

    /// A datagram on the server's UDP port that `wire::is_relay` accepted. `buf` is rewritten in
    /// place when it is forwarded.
    pub fn handle_udp(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
    ) -> UdpVerdict {
        let (dst, payload_len) = match wire::parse(buf) {
            Some(RelayDatagram::Bind { token }) => {
                let Some(&id) = self.by_token.get(&token) else {
                    return UdpVerdict::Drop(RelayDrop::NotBound);
                };
                if let Some(s) = self.sessions.get_mut(&id) {
                    if let Some((old, _, _)) = s.udp.replace((from, local, now)) {
                        if old != from {
                            self.by_udp.remove(&old);
                        }
                    }
                }
                self.by_udp.insert(from, id);
                return UdpVerdict::Reply(wire::bind_ok(&token));
            }
            Some(RelayDatagram::ToPeer { dst, payload }) => (dst, payload.len()),
            _ => return UdpVerdict::Drop(RelayDrop::Malformed),
        };
        let Some(&src) = self.by_udp.get(&from) else {
            return UdpVerdict::Drop(RelayDrop::NotBound);
        };
        match self.admit(src, dst, payload_len, now) {
            Err(drop) => UdpVerdict::Drop(drop),
            Ok(Target::Udp(via, to)) => {
                wire::rewrite_to_from_peer(buf, src);
                UdpVerdict::Forward {
                    via,
                    to,
                    len: wire::DATA_HEADER + payload_len,
                }
            }
            Ok(Target::Stream(conn)) => UdpVerdict::ToStream {
                conn,
                frame: wire::stream_frame(src, &buf[wire::DATA_HEADER..]),
            },
        }
    }

    /// A relay frame from the control stream of node `src`.
    pub fn handle_frame(
        &mut self,
        src: u32,
        dst: u32,
        payload: &[u8],
        now: Instant,
    ) -> FrameVerdict {
        match self.admit(src, dst, payload.len(), now) {
            Err(drop) => FrameVerdict::Drop(drop),
            Ok(Target::Udp(via, to)) => {
                let mut datagram = vec![0u8; wire::DATA_HEADER + payload.len()];
                datagram[wire::DATA_HEADER..].copy_from_slice(payload);
                wire::rewrite_to_from_peer(&mut datagram, src);
                FrameVerdict::Udp { via, to, datagram }
            }
            Ok(Target::Stream(conn)) => FrameVerdict::ToStream {
                conn,
                frame: wire::stream_frame(src, payload),
            },
        }
    }

    /// Checks membership and limits, counts, and says where `dst` is reached.
    fn admit(&mut self, src: u32, dst: u32, len: usize, now: Instant) -> Result<Target, RelayDrop> {
        let (network, target) = match self.sessions.get(&dst) {
            Some(d) => {
                let fresh = d
                    .udp
                    .filter(|(_, _, seen)| now.saturating_duration_since(*seen) < BINDING_TTL);
                let target = match fresh {
                    Some((addr, via, _)) => Target::Udp(via, addr),
                    None => Target::Stream(d.conn),
                };
                (d.network.clone(), target)
            }
            None => {
                if let Some(s) = self.sessions.get_mut(&src) {
                    s.stats.dropped_no_peer += 1;
                }
                return Err(RelayDrop::UnknownPeer);
            }
        };
        let total_ok = self.total.has(len, now);
        let Some(s) = self.sessions.get_mut(&src) else {
            return Err(RelayDrop::NotBound);
        };
        if s.network != network || src == dst {
            s.stats.dropped_no_peer += 1;
            return Err(RelayDrop::UnknownPeer);
        }
        let node_ok = s.bucket.has(len, now);
        if !(node_ok && total_ok) {
            s.stats.dropped_rate += 1;
            let due = s
                .last_log
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
            if due && !node_ok {
                s.last_log = Some(now);
                tracing::warn!(node = %s.key.short(), limit_bytes_per_sec = self.limits.node_bytes_per_sec,
                    dropped = s.stats.dropped_rate, "relay: node over its rate limit (--relay-node-mbps); dropping");
            }
            let total_due = self
                .last_total_log
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
            if !total_ok && total_due {
                self.last_total_log = Some(now);
                tracing::warn!(
                    limit_bytes_per_sec = self.limits.total_bytes_per_sec,
                    "relay: total rate limit reached (--relay-total-mbps); dropping"
                );
            }
            return Err(RelayDrop::RateLimited);
        }
        s.bucket.take(len);
        self.total.take(len);
        s.stats.bytes += len as u64;
        s.stats.packets += 1;
        Ok(target)
    }
}

enum Target {
    /// (our socket, node's address)
    Udp(SocketAddr, SocketAddr),
    Stream(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn server(limits: RelayLimits) -> (RelayServer, Instant) {
        let now = crate::test_now();
        (
            RelayServer::new(limits, ChaCha8Rng::seed_from_u64(1), now),
            now,
        )
    }

    fn bind(r: &mut RelayServer, t: &RelayTicket, from: &str, now: Instant) -> SocketAddr {
        let from: SocketAddr = from.parse().unwrap();
        let mut b = wire::bind(&t.token);
        assert!(matches!(
            r.handle_udp(LOCAL, from, &mut b, now),
            UdpVerdict::Reply(_)
        ));
        from
    }

    const LOCAL: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)),
        7400,
    );

    fn to_peer(dst: u32, n: usize) -> Vec<u8> {
        let mut buf = vec![0xAB; wire::DATA_HEADER + n];
        wire::write_to_peer_header(&mut buf, dst);
        buf
    }

    #[test]
    fn forwards_in_place_within_a_network_only() {
        let (mut r, now) = server(RelayLimits::default());
        let a = r.register(1, "net", PublicKey([1; 32]), now).unwrap();
        let b = r.register(2, "net", PublicKey([2; 32]), now).unwrap();
        let c = r.register(3, "other", PublicKey([3; 32]), now).unwrap();
        let fa = bind(&mut r, &a, "192.0.2.1:1000", now);
        let fb = bind(&mut r, &b, "192.0.2.2:2000", now);
        let mut d = to_peer(b.id, 100);
        assert_eq!(
            r.handle_udp(LOCAL, fa, &mut d, now),
            UdpVerdict::Forward {
                via: LOCAL,
                to: fb,
                len: 109
            }
        );
        assert_eq!(
            wire::parse(&d),
            Some(RelayDatagram::FromPeer {
                src: a.id,
                payload: &[0xAB; 100]
            })
        );
        // C is in another network: not reachable, even by id.
        let mut d = to_peer(c.id, 10);
        assert_eq!(
            r.handle_udp(LOCAL, fa, &mut d, now),
            UdpVerdict::Drop(RelayDrop::UnknownPeer)
        );
        // An unbound sender is refused; a wrong token binds nothing.
        let mut d = to_peer(b.id, 10);
        let stranger = "198.51.100.9:9".parse().unwrap();
        assert_eq!(
            r.handle_udp(LOCAL, stranger, &mut d, now),
            UdpVerdict::Drop(RelayDrop::NotBound)
        );
        let mut bad = wire::bind(&[0; TOKEN_LEN]);
        assert_eq!(
            r.handle_udp(LOCAL, stranger, &mut bad, now),
            UdpVerdict::Drop(RelayDrop::NotBound)
        );
        // C never bound UDP: frames to it go into its stream.
        let d = r.handle_frame(c.id, c.id, b"x", now);
        assert_eq!(d, FrameVerdict::Drop(RelayDrop::UnknownPeer));
        let b2 = r.register(4, "other", PublicKey([4; 32]), now).unwrap();
        assert!(matches!(
            r.handle_frame(b2.id, c.id, b"x", now),
            FrameVerdict::ToStream { conn: 3, .. }
        ));
    }

    #[test]
    fn a_node_over_its_rate_is_dropped_without_starving_others() {
        let limits = RelayLimits {
            node_bytes_per_sec: 10_000,
            total_bytes_per_sec: 1_000_000,
            max_nodes: 10,
        };
        let (mut r, now) = server(limits);
        let a = r.register(1, "n", PublicKey([1; 32]), now).unwrap();
        let b = r.register(2, "n", PublicKey([2; 32]), now).unwrap();
        let c = r.register(3, "n", PublicKey([3; 32]), now).unwrap();
        let fa = bind(&mut r, &a, "192.0.2.1:1", now);
        bind(&mut r, &b, "192.0.2.2:2", now);
        let fc = bind(&mut r, &c, "192.0.2.3:3", now);
        let mut sent = 0;
        for _ in 0..100 {
            let mut d = to_peer(b.id, 1000);
            if matches!(
                r.handle_udp(LOCAL, fa, &mut d, now),
                UdpVerdict::Forward { .. }
            ) {
                sent += 1;
            }
        }
        assert_eq!(sent, 10, "one second of burst at 10 kB/s");
        assert_eq!(r.stats(a.id).unwrap().dropped_rate, 90);
        // C still gets through at once.
        let mut d = to_peer(b.id, 1000);
        assert!(matches!(
            r.handle_udp(LOCAL, fc, &mut d, now),
            UdpVerdict::Forward { .. }
        ));
        // After half a second A may send about half its rate again.
        let later = now + Duration::from_millis(500);
        let mut again = 0;
        for _ in 0..20 {
            let mut d = to_peer(b.id, 1000);
            if matches!(
                r.handle_udp(LOCAL, fa, &mut d, later),
                UdpVerdict::Forward { .. }
            ) {
                again += 1;
            }
        }
        assert_eq!(again, 5);
    }

    #[test]
    fn the_relay_holds_at_most_max_nodes() {
        let limits = RelayLimits {
            max_nodes: 2,
            ..RelayLimits::default()
        };
        let (mut r, now) = server(limits);
        assert!(r.register(1, "n", PublicKey([1; 32]), now).is_some());
        let b = r.register(2, "n", PublicKey([2; 32]), now).unwrap();
        assert!(r.register(3, "n", PublicKey([3; 32]), now).is_none());
        r.unregister(b.id);
        assert!(r.register(3, "n", PublicKey([3; 32]), now).is_some());
    }
}
