//! The peer table: who the peers are, which virtual address each owns, where to reach each, and
//! the three lookups the data path needs without allocating: destination address to peer, session
//! index to peer, static key to peer.

use super::crypto::{EngineConfig, PeerTunnel};
use super::keys::{PublicKey, SecretKey};
use super::punch::session::PeerPunch;
use super::rendezvous::messages::PeerInfo;
use super::transmit::SocketId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// WireGuard rejects a session this old (whitepaper §6.1, Reject-After-Time); past it the path is
/// no longer usable without a new handshake.
const SESSION_FRESH: Duration = Duration::from_secs(180);

/// How a peer is reached now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Direct,
    /// Through the server's relay (no direct path verified yet, or it stopped answering).
    Relay,
    Connecting,
    /// The server says the peer is not connected and nothing has come from it since.
    Offline,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Relay => "relay",
            Path::Connecting => "connecting",
            Path::Offline => "offline",
        }
    }
}

pub struct Peer {
    pub name: String,
    pub key: PublicKey,
    pub virtual_ip: Ipv4Addr,
    /// The peer's IPv6 overlay address, when its network has a prefix (`core::ula`).
    pub ipv6: Option<Ipv6Addr>,
    /// Addresses the server says the peer listens on.
    pub candidates: Vec<SocketAddr>,
    /// Where data goes: the nominated path, then wherever an authenticated packet last came from
    /// (roaming as in WireGuard, whitepaper §2.1). Nothing is sent before a path is verified.
    pub endpoint: Option<SocketAddr>,
    /// Which of our sockets reaches `endpoint` (not the main one after birthday probing).
    pub socket: SocketId,
    /// The peer's relay id while it is online with the server's relay.
    pub relay_id: Option<u32>,
    pub punch: PeerPunch,
    /// When to send a new handshake initiation if the session is still not up (our own timer:
    /// boringtun's retransmission follows the real clock, not the node's).
    pub handshake_retry: Option<Instant>,
    pub online: bool,
    pub tunnel: PeerTunnel,
    pub last_path: Path,
    /// When we last knew the peer was up: the server said it was online, or it sent an
    /// authenticated packet. `None` for a peer not seen up since this node started.
    pub last_seen: Option<Instant>,
    /// When the server told us the peer left (or, for a peer first learnt offline, when we
    /// learnt of it). Cleared when it comes back.
    pub offline_since: Option<Instant>,
    /// The last authenticated packet from the peer.
    pub last_heard: Option<Instant>,
    /// When we, as the responder, sent our last handshake response not yet confirmed.
    response_sent: Option<Instant>,
    /// The round trip from our handshake response to the initiator's first transport message.
    /// WireGuard's own figure only exists on the side that initiated; this is the other side's.
    responder_rtt_ms: Option<u32>,
    /// The peer process's run number as the server last passed it (`PeerInfo::run`).
    pub run: Option<u64>,
}

impl Peer {
    /// The WireGuard session completed a handshake recently enough to carry traffic.
    pub fn session_fresh(&self, now: Instant) -> bool {
        self.tunnel
            .stats(now)
            .since_handshake
            .is_some_and(|d| d < SESSION_FRESH)
    }

    /// Where data and handshakes go: only a verified path. Sending a handshake to unverified
    /// candidates would reach the peer's NAT before its own priming and poison the mapping
    /// (nat-lab.md, conntrack poisoning).
    pub fn primary_target(&self) -> Option<(SocketId, SocketAddr)> {
        self.endpoint.map(|e| (self.socket, e))
    }

    /// The server says the peer is gone and nothing authenticated came from it since (or not
    /// for a session's lifetime): a direct path that still carries its packets (the peer only
    /// lost the server) is not offline, until it too falls silent.
    pub fn is_offline(&self, now: Instant) -> bool {
        if self.online {
            return false;
        }
        match (self.last_heard, self.offline_since) {
            (Some(heard), Some(since)) => {
                heard <= since || now.saturating_duration_since(heard) >= SESSION_FRESH
            }
            _ => true,
        }
    }

    /// An authenticated packet came from the peer: it is up, whatever the server last said.
    pub fn note_heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
        self.last_seen = Some(now);
    }

    /// We answered the peer's handshake initiation (whitepaper §5.4.3).
    pub fn note_response_sent(&mut self, now: Instant) {
        self.response_sent = Some(now);
    }

    /// A transport message arrived. The first after our response is the initiator confirming
    /// the session (boringtun sends a keepalive at once), so the time between is a round trip.
    pub fn note_transport(&mut self, now: Instant) {
        if let Some(sent) = self.response_sent.take() {
            let ms = now.saturating_duration_since(sent).as_millis();
            self.responder_rtt_ms = Some(u32::try_from(ms).unwrap_or(u32::MAX));
        }
    }

    /// The round trip to show: WireGuard's own when we initiated, else the responder's.
    pub fn rtt_ms(&self) -> Option<u32> {
        self.tunnel.rtt_ms().or(self.responder_rtt_ms)
    }

    /// Applies the server's online flag, remembering when the peer was last known up.
    fn set_online(&mut self, online: bool, now: Instant) {
        if online {
            self.last_seen = Some(now);
            self.offline_since = None;
        } else if self.online || self.offline_since.is_none() {
            // It was up until the server noticed it leave.
            if self.online {
                self.last_seen = Some(now);
            }
            self.offline_since = Some(now);
        }
        self.online = online;
    }
}

/// The result of applying a server's peer record.
#[derive(Debug, PartialEq, Eq)]
pub enum Upsert {
    Added,
    Updated,
    /// The record claims an address another peer owns; ignored.
    AddressConflict,
}

#[derive(Default)]
pub struct PeerTable {
    peers: HashMap<PublicKey, Peer>,
    by_ip: HashMap<Ipv4Addr, PublicKey>,
    by_ip6: HashMap<Ipv6Addr, PublicKey>,
    by_index: HashMap<u32, PublicKey>,
    by_relay: HashMap<u32, PublicKey>,
    next_index: u32,
    /// The WireGuard engine new peers' sessions run on.
    engine: EngineConfig,
}

impl PeerTable {
    /// The engine for peers added from now on (`[dataplane] wireguard`).
    pub fn set_engine(&mut self, engine: EngineConfig) {
        self.engine = engine;
    }

    /// The engine new peers' sessions run on.
    pub fn engine(&self) -> EngineConfig {
        self.engine
    }

    pub fn upsert(&mut self, info: &PeerInfo, local: &SecretKey, now: Instant) -> Upsert {
        if self.conflicting_owner(info).is_some() {
            return Upsert::AddressConflict;
        }
        if let Some(peer) = self.peers.get_mut(&info.public_key) {
            if peer.virtual_ip != info.virtual_ip {
                self.by_ip.remove(&peer.virtual_ip);
                self.by_ip.insert(info.virtual_ip, info.public_key);
                peer.virtual_ip = info.virtual_ip;
            }
            if peer.ipv6 != info.ipv6 {
                if let Some(old) = peer.ipv6 {
                    self.by_ip6.remove(&old);
                }
                if let Some(new) = info.ipv6 {
                    self.by_ip6.insert(new, info.public_key);
                }
                peer.ipv6 = info.ipv6;
            }
            peer.name.clone_from(&info.name);
            peer.set_online(info.online, now);
            if !info.endpoints.is_empty() {
                peer.candidates.clone_from(&info.endpoints);
            }
            if info.nat.is_some() {
                peer.punch.their_nat.clone_from(&info.nat);
            }
            // An offline record names no run: the last one known stays, to compare with the next.
            if info.run.is_some() {
                peer.run = info.run;
            }
            if peer.relay_id != info.relay_id {
                if let Some(old) = peer.relay_id {
                    self.by_relay.remove(&old);
                }
                if let Some(new) = info.relay_id {
                    self.by_relay.insert(new, info.public_key);
                }
                peer.relay_id = info.relay_id;
            }
            return Upsert::Updated;
        }
        self.next_index = (self.next_index + 1) & 0x00ff_ffff;
        let index = self.next_index;
        let peer = Peer {
            name: info.name.clone(),
            key: info.public_key,
            virtual_ip: info.virtual_ip,
            ipv6: info.ipv6,
            candidates: info.endpoints.clone(),
            endpoint: None,
            socket: SocketId::MAIN,
            relay_id: info.relay_id,
            handshake_retry: None,
            punch: {
                let mut punch = PeerPunch::new(local, &info.public_key, now);
                punch.their_nat.clone_from(&info.nat);
                punch
            },
            online: info.online,
            tunnel: PeerTunnel::with_engine(local, info.public_key, index, self.engine, now),
            last_path: Path::Connecting,
            last_seen: info.online.then_some(now),
            offline_since: (!info.online).then_some(now),
            last_heard: None,
            response_sent: None,
            responder_rtt_ms: None,
            run: info.run,
        };
        self.by_ip.insert(info.virtual_ip, info.public_key);
        if let Some(v6) = info.ipv6 {
            self.by_ip6.insert(v6, info.public_key);
        }
        self.by_index.insert(index, info.public_key);
        if let Some(id) = info.relay_id {
            self.by_relay.insert(id, info.public_key);
        }
        self.peers.insert(info.public_key, peer);
        Upsert::Added
    }

    pub fn remove(&mut self, key: &PublicKey) -> Option<Peer> {
        let peer = self.peers.remove(key)?;
        self.by_ip.remove(&peer.virtual_ip);
        if let Some(v6) = peer.ipv6 {
            self.by_ip6.remove(&v6);
        }
        self.by_index.retain(|_, k| k != key);
        self.by_relay.retain(|_, k| k != key);
        Some(peer)
    }

    /// Gives the peer a new WireGuard state under a fresh session index: its old sessions are
    /// gone (a restarted peer holds none of their keys), and a late packet under an old index
    /// finds no peer instead of the new state. False for an unknown key.
    pub fn renew_tunnel(&mut self, key: &PublicKey, local: &SecretKey, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(key) else {
            return false;
        };
        self.by_index.retain(|_, k| k != key);
        self.next_index = (self.next_index + 1) & 0x00ff_ffff;
        let index = self.next_index;
        self.by_index.insert(index, *key);
        // The same engine as every other session (`[dataplane] wireguard`).
        peer.tunnel = PeerTunnel::with_engine(local, *key, index, self.engine, now);
        peer.response_sent = None;
        peer.responder_rtt_ms = None;
        true
    }

    pub fn clear(&mut self) {
        self.peers.clear();
        self.by_ip.clear();
        self.by_ip6.clear();
        self.by_index.clear();
        self.by_relay.clear();
    }

    pub fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Peer> {
        self.peers.get_mut(key)
    }

    pub fn by_ip_mut(&mut self, ip: Ipv4Addr) -> Option<&mut Peer> {
        let key = self.by_ip.get(&ip)?;
        self.peers.get_mut(key)
    }

    /// The peer owning an overlay address of either family.
    pub fn by_addr(&self, ip: IpAddr) -> Option<PublicKey> {
        match ip {
            IpAddr::V4(v4) => self.by_ip.get(&v4).copied(),
            IpAddr::V6(v6) => self.by_ip6.get(&v6).copied(),
        }
    }

    /// Another key holding an address `info` claims (IPv4 or IPv6), if any.
    pub fn conflicting_owner(&self, info: &PeerInfo) -> Option<PublicKey> {
        let v4 = self.by_ip.get(&info.virtual_ip);
        let v6 = info.ipv6.and_then(|a| self.by_ip6.get(&a));
        v4.into_iter()
            .chain(v6)
            .find(|owner| **owner != info.public_key)
            .copied()
    }

    /// The peer owning a WireGuard receiver index (our index, shifted left 8 by boringtun).
    pub fn by_receiver_index_mut(&mut self, receiver: u32) -> Option<&mut Peer> {
        let key = self.by_index.get(&(receiver >> 8))?;
        self.peers.get_mut(key)
    }

    /// The peer with a relay id, for packets the server relayed.
    pub fn by_relay_id(&self, id: u32) -> Option<PublicKey> {
        self.by_relay.get(&id).copied()
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.values_mut()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn info(key: u8, ip: [u8; 4]) -> PeerInfo {
        PeerInfo {
            name: format!("p{key}"),
            public_key: PublicKey([key; 32]),
            virtual_ip: Ipv4Addr::from(ip),
            endpoints: vec!["192.0.2.1:1000".parse().unwrap()],
            online: true,
            nat: None,
            relay_id: None,
            ipv6: None,
            run: None,
        }
    }

    fn info6(key: u8, ip: [u8; 4]) -> PeerInfo {
        let prefix = crate::core::ula::prefix_from_global_id([1, 2, 3, 4, 5]);
        PeerInfo {
            ipv6: Some(crate::core::ula::node_address(prefix, Ipv4Addr::from(ip))),
            ..info(key, ip)
        }
    }

    #[test]
    fn ipv6_lookups_follow_adds_moves_and_removes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let now = crate::test_now();
        let a = info6(1, [10, 0, 0, 2]);
        let v6 = IpAddr::V6(a.ipv6.unwrap());
        assert_eq!(table.upsert(&a, &local, now), Upsert::Added);
        assert_eq!(table.by_addr(v6), Some(PublicKey([1; 32])));
        assert_eq!(
            table.by_addr(IpAddr::V4(a.virtual_ip)),
            Some(PublicKey([1; 32]))
        );
        // Another key claiming only the IPv6 address conflicts too.
        let thief = PeerInfo {
            virtual_ip: Ipv4Addr::new(10, 0, 0, 9),
            ..info6(2, [10, 0, 0, 2])
        };
        assert_eq!(table.upsert(&thief, &local, now), Upsert::AddressConflict);
        assert_eq!(table.conflicting_owner(&thief), Some(PublicKey([1; 32])));
        // The address moves with the record, and goes with the peer.
        let moved = info6(1, [10, 0, 0, 3]);
        assert_eq!(table.upsert(&moved, &local, now), Upsert::Updated);
        assert_eq!(table.by_addr(v6), None);
        let v6_new = IpAddr::V6(moved.ipv6.unwrap());
        assert_eq!(table.by_addr(v6_new), Some(PublicKey([1; 32])));
        table.remove(&PublicKey([1; 32]));
        assert_eq!(table.by_addr(v6_new), None);
    }

    #[test]
    fn lookups_follow_adds_and_removes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let now = crate::test_now();
        assert_eq!(
            table.upsert(&info(1, [10, 0, 0, 2]), &local, now),
            Upsert::Added
        );
        assert_eq!(
            table.upsert(&info(1, [10, 0, 0, 2]), &local, now),
            Upsert::Updated
        );
        assert_eq!(
            table.upsert(&info(2, [10, 0, 0, 2]), &local, now),
            Upsert::AddressConflict
        );
        assert!(table.by_ip_mut(Ipv4Addr::new(10, 0, 0, 2)).is_some());
        assert!(table.by_receiver_index_mut(1 << 8).is_some());
        table.remove(&PublicKey([1; 32]));
        assert!(table.by_ip_mut(Ipv4Addr::new(10, 0, 0, 2)).is_none());
        assert!(table.by_receiver_index_mut(1 << 8).is_none());
        assert!(table.is_empty());
    }

    #[test]
    fn a_peer_that_leaves_is_offline_from_then_until_it_is_heard_again() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let t0 = crate::test_now();
        let key = PublicKey([1; 32]);
        table.upsert(&info(1, [10, 0, 0, 2]), &local, t0);
        assert!(!table.get(&key).unwrap().is_offline(t0));
        let t1 = t0 + Duration::from_secs(60);
        let gone = PeerInfo {
            online: false,
            ..info(1, [10, 0, 0, 2])
        };
        table.upsert(&gone, &local, t1);
        let peer = table.get(&key).unwrap();
        assert!(peer.is_offline(t1));
        assert_eq!(peer.last_seen, Some(t1));
        // A repeated "offline" record does not move the time it left.
        table.upsert(&gone, &local, t1 + Duration::from_secs(30));
        assert_eq!(table.get(&key).unwrap().last_seen, Some(t1));
        // Its packets still arrive directly: it lost the server, not us.
        let peer = table.get_mut(&key).unwrap();
        peer.note_heard(t1 + Duration::from_secs(31));
        assert!(!peer.is_offline(t1 + Duration::from_secs(32)));
        // Until that path falls silent too.
        assert!(peer.is_offline(t1 + Duration::from_secs(31) + SESSION_FRESH));
        // A peer first learnt offline was never seen by this node.
        table.upsert(
            &PeerInfo {
                online: false,
                ..info(2, [10, 0, 0, 3])
            },
            &local,
            t1,
        );
        let never = table.get(&PublicKey([2; 32])).unwrap();
        assert!(never.is_offline(t1));
        assert_eq!(never.last_seen, None);
    }

    #[test]
    fn the_responder_measures_the_round_trip_to_the_first_transport_message() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let t0 = crate::test_now();
        let key = PublicKey([1; 32]);
        table.upsert(&info(1, [10, 0, 0, 2]), &local, t0);
        let peer = table.get_mut(&key).unwrap();
        assert_eq!(peer.rtt_ms(), None);
        peer.note_response_sent(t0);
        peer.note_transport(t0 + Duration::from_millis(42));
        // Later messages do not move it: only the confirmation times the round trip.
        peer.note_transport(t0 + Duration::from_millis(900));
        assert_eq!(peer.rtt_ms(), Some(42));
    }

    /// A restarted peer's tunnel starts over under a new session index: a packet for the old
    /// index finds nobody. An offline record (no run) keeps the last run known.
    #[test]
    fn a_renewed_tunnel_takes_a_new_index_and_offline_records_keep_the_run() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let local = SecretKey::generate(&mut rng);
        let mut table = PeerTable::default();
        let now = crate::test_now();
        let key = PublicKey([1; 32]);
        let up = PeerInfo {
            run: Some(1),
            ..info(1, [10, 0, 0, 2])
        };
        table.upsert(&up, &local, now);
        let old: Vec<u32> = table.by_index.keys().copied().collect();
        assert_eq!(old.len(), 1);
        assert!(table.renew_tunnel(&key, &local, now));
        assert!(table.by_receiver_index_mut(old[0] << 8).is_none());
        let new: Vec<u32> = table.by_index.keys().copied().collect();
        assert_eq!(new.len(), 1);
        assert_ne!(new, old);
        assert!(table.by_receiver_index_mut(new[0] << 8).is_some());
        assert!(!table.renew_tunnel(&PublicKey([9; 32]), &local, now));

        let gone = PeerInfo {
            online: false,
            ..info(1, [10, 0, 0, 2])
        };
        table.upsert(&gone, &local, now);
        assert_eq!(table.get(&key).map(|p| p.run), Some(Some(1)));
        let back = PeerInfo {
            run: Some(2),
            ..info(1, [10, 0, 0, 2])
        };
        table.upsert(&back, &local, now);
        assert_eq!(table.get(&key).map(|p| p.run), Some(Some(2)));
    }
}
