//! The server's relay: forwards end-to-end encrypted WireGuard messages between members of one
//! network by their relay ids, over UDP (rewriting the header in place, no copy) or into a
//! node's control stream when its UDP is blocked.
//!
//! Fairness: every node has a token bucket (bytes per second, one second of burst), and all
//! relayed traffic shares a total bucket; what exceeds either is dropped and counted, never
//! queued, so one node cannot build a backlog that delays the others. Stream-bound frames are
//! further bounded by the driver's per-connection queue. The number of nodes that may use the
//! relay at once is capped in total and per network, so the members of one network cannot take
//! every ticket; a connection holds at most one ticket (a repeated registration replaces it). A
//! log line says when a limit bites, at most every 10 s per node.
//!
//! Binding a UDP address to a relay id (like a TURN allocation, which RFC 8656 §7 ties to the
//! client's 5-tuple): the ticket carries a random bind key, sent over the
//! Noise control channel only. A Bind is accepted only when
//! 1. its tag verifies under that key (only the node and the server hold it),
//! 2. its counter is higher than that of every Bind accepted before, so no captured Bind can be
//!    replayed, from anywhere (the rule of RFC 9000 §9.3: only the highest-numbered packet may
//!    change a peer's address), and
//! 3. it comes from the address already bound, or it echoes the cookie the server sent to that
//!    very address in a Challenge (return routability, as QUIC's path validation, RFC 9000
//!    §8.2, and the server NONCE of STUN's long-term credentials, RFC 8489 §9.2): a binding is created or moved only to an address
//!    where the key holder demonstrably receives.
//!
//! A Bind that fails 3 gets a Challenge and does not use up its counter, so an observer's copy
//! that arrives before the node's own Bind costs the node nothing. The node cannot know its
//! public address behind a NAT, so a legitimate NAT rebinding looks just like a move: the node's
//! next refresh comes from the new address, is challenged, and its answer moves the binding
//! (one round trip). What this does not stop: an attacker on the path that can both out-race
//! the node's datagrams and relay a Challenge to it can move the binding, as it could by
//! acting as the node's NAT (RFC 9000 §9.3.2-9.3.3 says the same of QUIC); it still cannot read or
//! forge the relayed WireGuard messages, and the node's next refresh moves the binding back.

use super::auth::{self, KEY_LEN};
use super::wire::{self, RelayDatagram, Signed};
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
    /// Relay tickets the members of one network may hold at once.
    pub max_nodes_per_network: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            node_bytes_per_sec: 100_000_000 / 8,
            total_bytes_per_sec: 1_000_000_000 / 8,
            max_nodes: 1000,
            max_nodes_per_network: 250,
        }
    }
}

/// What a node is told over the control channel to use the relay.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayTicket {
    pub id: u32,
    /// The bind key: Bind datagrams are tagged under it. All zeros when the ticket came from a
    /// server that predates keyed binds; the node then relays through its control stream.
    #[serde(default)]
    pub key: [u8; KEY_LEN],
    /// Random bytes for nodes that predate keyed binds: they need this field to decode the
    /// ticket; their unkeyed Bind is refused and they relay through their control stream.
    #[serde(default)]
    pub token: [u8; LEGACY_TOKEN_LEN],
}

const LEGACY_TOKEN_LEN: usize = 16;

/// Never prints the key (tickets end up in debug logs).
impl std::fmt::Debug for RelayTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTicket")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
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
    /// A Bind whose tag does not verify under the ticket's key.
    BadTag,
    /// A Bind whose counter is not higher than one already accepted.
    Replayed,
}

/// What to do with a relay datagram that arrived on UDP.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Send these bytes back to the sender (a BindOk or a Challenge).
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
    bind_key: [u8; KEY_LEN],
    /// The counter of the last accepted Bind; only a higher one is accepted.
    counter: u64,
    /// (node's address, our socket it bound to, last seen).
    udp: Option<(SocketAddr, SocketAddr, Instant)>,
    bucket: Bucket,
    stats: RelayNodeStats,
    last_log: Option<Instant>,
    last_refused_log: Option<Instant>,
}

pub struct RelayServer {
    limits: RelayLimits,
    sessions: HashMap<u32, Session>,
    by_udp: HashMap<SocketAddr, u32>,
    /// The ticket each control connection holds (at most one).
    by_conn: HashMap<u64, u32>,
    /// Tickets held per network.
    per_network: HashMap<String, usize>,
    /// The server's secret for Challenge cookies; never leaves this struct.
    cookie_secret: [u8; KEY_LEN],
    total: Bucket,
    last_total_log: Option<Instant>,
    last_full_log: Option<Instant>,
    rng: ChaCha8Rng,
}

impl RelayServer {
    pub fn new(limits: RelayLimits, mut rng: ChaCha8Rng, now: Instant) -> Self {
        RelayServer {
            total: Bucket::new(limits.total_bytes_per_sec, now),
            limits,
            sessions: HashMap::new(),
            by_udp: HashMap::new(),
            by_conn: HashMap::new(),
            per_network: HashMap::new(),
            cookie_secret: rng.gen(),
            last_total_log: None,
            last_full_log: None,
            rng,
        }
    }

    /// Gives an online node on connection `conn` a relay identity, replacing (and freeing) any
    /// ticket that connection held; `None` when the relay, or this network's share of it, is
    /// full.
    pub fn register(
        &mut self,
        conn: u64,
        network: &str,
        key: PublicKey,
        now: Instant,
    ) -> Option<RelayTicket> {
        if let Some(old) = self.by_conn.get(&conn).copied() {
            self.unregister(old);
        }
        let in_network = self.per_network.get(network).copied().unwrap_or(0);
        let full = if self.sessions.len() >= self.limits.max_nodes {
            Some(("--relay-max-nodes", self.limits.max_nodes))
        } else if in_network >= self.limits.max_nodes_per_network {
            Some((
                "--relay-max-nodes-per-network",
                self.limits.max_nodes_per_network,
            ))
        } else {
            None
        };
        if let Some((flag, max)) = full {
            let due = self
                .last_full_log
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
            if due {
                self.last_full_log = Some(now);
                tracing::warn!(network, max, node = %key.short(), held_in_network = in_network,
                    held_total = self.sessions.len(),
                    "relay is full ({flag} {max}); this node gets no relay; raise {flag} to admit more");
            }
            return None;
        }
        let mut id: u32 = self.rng.gen();
        while id == 0 || self.sessions.contains_key(&id) {
            id = self.rng.gen();
        }
        let bind_key: [u8; KEY_LEN] = self.rng.gen();
        let token: [u8; LEGACY_TOKEN_LEN] = self.rng.gen();
        self.sessions.insert(
            id,
            Session {
                network: network.to_string(),
                key,
                conn,
                bind_key,
                counter: 0,
                udp: None,
                bucket: Bucket::new(self.limits.node_bytes_per_sec, now),
                stats: RelayNodeStats::default(),
                last_log: None,
                last_refused_log: None,
            },
        );
        self.by_conn.insert(conn, id);
        *self.per_network.entry(network.to_string()).or_default() += 1;
        Some(RelayTicket {
            id,
            key: bind_key,
            token,
        })
    }

    pub fn unregister(&mut self, id: u32) {
        if let Some(s) = self.sessions.remove(&id) {
            if self.by_conn.get(&s.conn) == Some(&id) {
                self.by_conn.remove(&s.conn);
            }
            if let Some(n) = self.per_network.get_mut(&s.network) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_network.remove(&s.network);
                }
            }
            if let Some((addr, _, _)) = s.udp {
                if self.by_udp.get(&addr) == Some(&id) {
                    self.by_udp.remove(&addr);
                }
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

    /// Tickets held by members of `network`.
    pub fn network_count(&self, network: &str) -> usize {
        self.per_network.get(network).copied().unwrap_or(0)
    }

    /// The address relay id `id` is bound to over UDP, if any.
    pub fn bound_addr(&self, id: u32) -> Option<SocketAddr> {
        self.sessions.get(&id)?.udp.map(|(addr, _, _)| addr)
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
            Some(RelayDatagram::Bind(b)) => return self.handle_bind(local, from, &b, now),
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

    /// A Bind from `from` (the rules are in the module header).
    fn handle_bind(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        b: &Signed,
        now: Instant,
    ) -> UdpVerdict {
        let Some(s) = self.sessions.get_mut(&b.id) else {
            return UdpVerdict::Drop(RelayDrop::NotBound);
        };
        if !auth::bind_valid(&s.bind_key, b.id, b.counter, &b.cookie, &b.tag) {
            tracing::debug!(node = %s.key.short(), %from, "relay: a Bind with a bad tag; ignored");
            return UdpVerdict::Drop(RelayDrop::BadTag);
        }
        let bound = s.udp.map(|(addr, _, _)| addr);
        if b.counter <= s.counter {
            let due = s
                .last_refused_log
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
            if due && bound != Some(from) {
                s.last_refused_log = Some(now);
                tracing::warn!(node = %s.key.short(), %from, bound = ?bound,
                    "relay: refused a replayed Bind from another address; someone who saw this \
                     node's traffic tried to take over its relay binding");
            }
            return UdpVerdict::Drop(RelayDrop::Replayed);
        }
        let cookie = auth::cookie(&self.cookie_secret, b.id, from);
        if bound != Some(from) && !auth::same_cookie(&cookie, &b.cookie) {
            // A new address: it must show it receives before anything is bound to it. The
            // counter is not used up, so the node's own copy of this Bind still counts.
            let challenge = Signed {
                id: b.id,
                counter: b.counter,
                cookie,
                tag: auth::challenge_tag(&s.bind_key, b.id, b.counter, &cookie),
            };
            return UdpVerdict::Reply(wire::challenge(&challenge));
        }
        s.counter = b.counter;
        let key = s.key;
        let ok = wire::BindOk {
            id: b.id,
            counter: b.counter,
            tag: auth::bind_ok_tag(&s.bind_key, b.id, b.counter),
        };
        if let Some((old, _, _)) = s.udp.replace((from, local, now)) {
            if old != from {
                tracing::info!(node = %key.short(), %old, new = %from, "relay binding moved");
                if self.by_udp.get(&old) == Some(&b.id) {
                    self.by_udp.remove(&old);
                }
            }
        }
        // An earlier session at this address (the node reconnected) no longer owns it.
        if let Some(prev) = self.by_udp.insert(from, b.id).filter(|p| *p != b.id) {
            if let Some(p) = self.sessions.get_mut(&prev) {
                p.udp = None;
            }
        }
        UdpVerdict::Reply(wire::bind_ok(&ok))
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
        // Compared by reference, not cloned: this runs for every relayed packet, which must
        // not allocate (tests/relay_alloc.rs).
        let (same_network, target) = match self.sessions.get(&dst) {
            Some(d) => {
                let fresh = d
                    .udp
                    .filter(|(_, _, seen)| now.saturating_duration_since(*seen) < BINDING_TTL);
                let target = match fresh {
                    Some((addr, via, _)) => Target::Udp(via, addr),
                    None => Target::Stream(d.conn),
                };
                let same = self
                    .sessions
                    .get(&src)
                    .is_some_and(|s| s.network == d.network);
                (same, target)
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
        if !same_network || src == dst {
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

    /// A node's side of the bind: counters and the cookie, as `client` keeps them.
    struct Binder {
        t: RelayTicket,
        counter: u64,
        cookie: [u8; auth::COOKIE_LEN],
    }

    impl Binder {
        fn new(t: RelayTicket) -> Self {
            Binder {
                t,
                counter: 0,
                cookie: [0; auth::COOKIE_LEN],
            }
        }

        fn datagram(&mut self) -> Vec<u8> {
            self.counter += 1;
            wire::bind(&Signed {
                id: self.t.id,
                counter: self.counter,
                cookie: self.cookie,
                tag: auth::bind_tag(&self.t.key, self.t.id, self.counter, &self.cookie),
            })
        }

        /// Sends one Bind from `from`; answers a Challenge once. Returns the last verdict.
        fn bind(&mut self, r: &mut RelayServer, from: SocketAddr, now: Instant) -> UdpVerdict {
            let mut d = self.datagram();
            let v = r.handle_udp(LOCAL, from, &mut d, now);
            let UdpVerdict::Reply(reply) = &v else {
                return v;
            };
            let Some(RelayDatagram::Challenge(c)) = wire::parse(reply) else {
                return v;
            };
            assert!(auth::challenge_valid(
                &self.t.key,
                c.id,
                c.counter,
                &c.cookie,
                &c.tag
            ));
            self.cookie = c.cookie;
            let mut d = self.datagram();
            r.handle_udp(LOCAL, from, &mut d, now)
        }
    }

    fn is_bind_ok(v: &UdpVerdict) -> bool {
        matches!(v, UdpVerdict::Reply(b) if matches!(wire::parse(b), Some(RelayDatagram::BindOk(_))))
    }

    fn bind(r: &mut RelayServer, t: &RelayTicket, from: &str, now: Instant) -> SocketAddr {
        let from: SocketAddr = from.parse().unwrap();
        assert!(is_bind_ok(&Binder::new(*t).bind(r, from, now)));
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
        let forged = RelayTicket {
            key: [0; KEY_LEN],
            ..b
        };
        assert_eq!(
            Binder::new(forged).bind(&mut r, stranger, now),
            UdpVerdict::Drop(RelayDrop::BadTag)
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
            max_nodes_per_network: 10,
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

    #[test]
    fn a_network_holds_at_most_its_share_and_others_still_get_tickets() {
        let limits = RelayLimits {
            max_nodes: 10,
            max_nodes_per_network: 2,
            ..RelayLimits::default()
        };
        let (mut r, now) = server(limits);
        assert!(r.register(1, "a", PublicKey([1; 32]), now).is_some());
        let second = r.register(2, "a", PublicKey([2; 32]), now).unwrap();
        assert!(r.register(3, "a", PublicKey([3; 32]), now).is_none());
        assert!(r.register(4, "b", PublicKey([4; 32]), now).is_some());
        assert_eq!((r.network_count("a"), r.network_count("b")), (2, 1));
        r.unregister(second.id);
        assert!(r.register(3, "a", PublicKey([3; 32]), now).is_some());
    }

    #[test]
    fn a_connection_holds_one_ticket_however_often_it_registers() {
        let (mut r, now) = server(RelayLimits::default());
        let mut last = None;
        for _ in 0..1000 {
            last = r.register(1, "n", PublicKey([1; 32]), now);
        }
        assert!(last.is_some());
        assert_eq!(r.node_count(), 1);
        assert_eq!(r.network_count("n"), 1);
        assert!(r.register(2, "n", PublicKey([2; 32]), now).is_some());
        // Only the newest ticket of connection 1 is alive; freeing it frees the network's count.
        r.unregister(last.unwrap().id);
        assert_eq!(r.network_count("n"), 1);
    }

    #[test]
    fn a_replayed_bind_from_elsewhere_moves_nothing_and_is_refused() {
        let (mut r, now) = server(RelayLimits::default());
        let a = r.register(1, "n", PublicKey([1; 32]), now).unwrap();
        let b = r.register(2, "n", PublicKey([2; 32]), now).unwrap();
        let home: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let thief: SocketAddr = "198.51.100.66:6666".parse().unwrap();
        let mut node = Binder::new(a);
        // The first bind from a fresh address is challenged before anything is bound.
        let mut first = node.datagram();
        let v = r.handle_udp(LOCAL, home, &mut first, now);
        assert!(
            matches!(&v, UdpVerdict::Reply(x) if matches!(wire::parse(x), Some(RelayDatagram::Challenge(_))))
        );
        assert_eq!(r.bound_addr(a.id), None);
        assert!(is_bind_ok(&node.bind(&mut r, home, now)));
        assert_eq!(r.bound_addr(a.id), Some(home));
        // A refresh, seen by the thief and replayed from its address every 0.45 s.
        let mut refresh = node.datagram();
        let seen = refresh.clone();
        assert!(is_bind_ok(&r.handle_udp(LOCAL, home, &mut refresh, now)));
        let mut t = now;
        // 60 tries over 27 s, inside the binding's lifetime (the node would refresh meanwhile).
        for _ in 0..60 {
            t += Duration::from_millis(450);
            let mut replay = seen.clone();
            assert_eq!(
                r.handle_udp(LOCAL, thief, &mut replay, t),
                UdpVerdict::Drop(RelayDrop::Replayed)
            );
        }
        assert_eq!(r.bound_addr(a.id), Some(home));
        // Relayed traffic for A still goes home.
        let fb = bind(&mut r, &b, "192.0.2.2:2000", t);
        let mut d = to_peer(a.id, 10);
        assert!(matches!(
            r.handle_udp(LOCAL, fb, &mut d, t),
            UdpVerdict::Forward { to, .. } if to == home
        ));
        // Replaying it from home does not refresh either.
        let mut replay = seen.clone();
        assert_eq!(
            r.handle_udp(LOCAL, home, &mut replay, t),
            UdpVerdict::Drop(RelayDrop::Replayed)
        );
    }

    #[test]
    fn a_copy_that_outruns_the_node_gets_only_a_challenge_and_costs_the_node_nothing() {
        let (mut r, now) = server(RelayLimits::default());
        let a = r.register(1, "n", PublicKey([1; 32]), now).unwrap();
        let home: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let thief: SocketAddr = "198.51.100.66:6666".parse().unwrap();
        let mut node = Binder::new(a);
        assert!(is_bind_ok(&node.bind(&mut r, home, now)));
        let mut genuine = node.datagram();
        let mut copy = genuine.clone();
        // The copy arrives first, from elsewhere: challenged, binding unmoved.
        let v = r.handle_udp(LOCAL, thief, &mut copy, now);
        let UdpVerdict::Reply(ch) = v else {
            panic!("expected a challenge, got {v:?}")
        };
        let Some(RelayDatagram::Challenge(c)) = wire::parse(&ch) else {
            panic!("not a challenge")
        };
        assert_eq!(r.bound_addr(a.id), Some(home));
        // The genuine Bind still refreshes.
        assert!(is_bind_ok(&r.handle_udp(LOCAL, home, &mut genuine, now)));
        // Without the key the thief cannot answer: a cookie alone, glued to the old tag, fails.
        let forged = wire::bind(&Signed {
            id: a.id,
            counter: node.counter + 1,
            cookie: c.cookie,
            tag: [0; auth::TAG_LEN],
        });
        let mut f = forged;
        assert_eq!(
            r.handle_udp(LOCAL, thief, &mut f, now),
            UdpVerdict::Drop(RelayDrop::BadTag)
        );
        assert_eq!(r.bound_addr(a.id), Some(home));
    }

    #[test]
    fn a_nat_rebinding_moves_the_binding_after_one_challenge() {
        let (mut r, now) = server(RelayLimits::default());
        let a = r.register(1, "n", PublicKey([1; 32]), now).unwrap();
        let b = r.register(2, "n", PublicKey([2; 32]), now).unwrap();
        let old: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let new: SocketAddr = "192.0.2.77:4242".parse().unwrap();
        let mut node = Binder::new(a);
        assert!(is_bind_ok(&node.bind(&mut r, old, now)));
        // The NAT now maps the node elsewhere: its next refresh carries the old cookie.
        let later = now + Duration::from_secs(15);
        assert!(is_bind_ok(&node.bind(&mut r, new, later)));
        assert_eq!(r.bound_addr(a.id), Some(new));
        let fb = bind(&mut r, &b, "192.0.2.2:2000", later);
        let mut d = to_peer(a.id, 10);
        assert!(matches!(
            r.handle_udp(LOCAL, fb, &mut d, later),
            UdpVerdict::Forward { to, .. } if to == new
        ));
        // The old address no longer sends as A.
        let mut d = to_peer(b.id, 10);
        assert_eq!(
            r.handle_udp(LOCAL, old, &mut d, later),
            UdpVerdict::Drop(RelayDrop::NotBound)
        );
    }

    #[test]
    fn tickets_decode_across_versions_and_never_print_the_key() {
        // From a server that predates keyed binds: no key, so the node will not bind UDP.
        let old: RelayTicket = serde_json::from_str(&format!(
            r#"{{"id":5,"token":{:?}}}"#,
            [1u8; LEGACY_TOKEN_LEN]
        ))
        .unwrap();
        assert_eq!((old.id, old.key), (5, [0; KEY_LEN]));
        // An older node reads only id and token; both are there.
        let (mut r, now) = server(RelayLimits::default());
        let t = r.register(1, "n", PublicKey([1; 32]), now).unwrap();
        let json: serde_json::Value = serde_json::to_value(t).unwrap();
        assert!(json.get("id").is_some() && json.get("token").is_some());
        let shown = format!("{t:?}");
        assert!(shown.contains("redacted") && !shown.contains(&format!("{:?}", t.key)));
    }
}
