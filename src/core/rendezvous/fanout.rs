//! Peer-map fan-out: what the server remembers of each network's members between events, and
//! the batched deltas it pushes to online members.
//!
//! Without batching every join, leave or endpoint change is one message to every other online
//! member, so N nodes coming online together (a server restart) cost O(N²) messages and fill the
//! driver's per-connection queue. Here a change only marks the member dirty; at most once per
//! [`FLUSH_INTERVAL`] every dirty entry is encoded once and each online member gets one batch
//! (`ServerMessage::Peers`, split so each part fits one Noise message). A change after a quiet
//! spell is flushed at once, so a lone join is not delayed.
//!
//! Each member's `PeerInfo` is kept as encoded JSON, so the full map a node gets on `Hello` is a
//! copy of cached bytes, not N serialisations, and the member list is read from the registry
//! once per network (and again when the store changes), not on every `Hello`.

use super::channel::MAX_PLAINTEXT;
use super::messages::{encode, PeerInfo};
use super::registry::Member;
use crate::core::keys::PublicKey;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The shortest time between two batches: the longest a peer update waits under load.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

const BATCH_HEAD: &[u8] = br#"{"type":"peers","peers":["#;
const BATCH_TAIL: &[u8] = b"]}";

/// One network's members and the entries not yet pushed.
#[derive(Default)]
struct NetMap {
    members: HashMap<PublicKey, Member>,
    /// Each member's `PeerInfo` as JSON, as last encoded.
    encoded: HashMap<PublicKey, Vec<u8>>,
    /// Members whose entry changed since the last flush, in the order they changed.
    dirty: Vec<PublicKey>,
    dirty_set: HashSet<PublicKey>,
    /// Members that registered since the last flush: they get the full map with that flush.
    fresh: Vec<PublicKey>,
}

/// The changed entries of one network, ready to send.
pub struct Changes {
    pub network: String,
    pub entries: Vec<(PublicKey, Vec<u8>)>,
    /// Who registered since the last flush: they get the full map (`full_map`) instead of
    /// `entries`, after everyone else got `entries`.
    pub fresh: Vec<PublicKey>,
}

#[derive(Default)]
pub struct PeerMaps {
    nets: HashMap<String, NetMap>,
    last_flush: Option<Instant>,
}

impl PeerMaps {
    pub fn is_loaded(&self, network: &str) -> bool {
        self.nets.contains_key(network)
    }

    /// Replaces the member list of `network` with what the registry holds now. Returns the keys
    /// that are no longer members; new or changed members are marked dirty.
    pub fn load(&mut self, network: &str, members: Vec<Member>) -> Vec<PublicKey> {
        let was_loaded = self.is_loaded(network);
        let net = self.nets.entry(network.to_string()).or_default();
        let current: HashSet<PublicKey> = members.iter().map(|m| m.public_key).collect();
        let removed: Vec<PublicKey> = net
            .members
            .keys()
            .filter(|k| !current.contains(k))
            .copied()
            .collect();
        for key in &removed {
            forget_key(net, key);
        }
        for m in members {
            let changed = net.members.get(&m.public_key) != Some(&m);
            if changed {
                let key = m.public_key;
                net.members.insert(key, m);
                net.encoded.remove(&key);
                if was_loaded {
                    mark_key(net, key);
                }
            }
        }
        removed
    }

    /// A member admitted by this server (the registry already holds it).
    pub fn admit(&mut self, member: &Member) {
        if let Some(net) = self.nets.get_mut(&member.network) {
            if net.members.get(&member.public_key) != Some(member) {
                net.members.insert(member.public_key, member.clone());
                net.encoded.remove(&member.public_key);
            }
        }
    }

    pub fn member(&self, network: &str, key: &PublicKey) -> Option<&Member> {
        self.nets.get(network)?.members.get(key)
    }

    /// A member removed from the store: never mention it again.
    pub fn remove(&mut self, network: &str, key: &PublicKey) {
        if let Some(net) = self.nets.get_mut(network) {
            forget_key(net, key);
        }
    }

    /// `key`'s entry changed (online, offline, endpoints): push it with the next batch.
    pub fn mark(&mut self, network: &str, key: PublicKey) {
        if let Some(net) = self.nets.get_mut(network) {
            if net.members.contains_key(&key) {
                mark_key(net, key);
            }
        }
    }

    /// `key` registered: it gets the full map with the next batch, the one that tells the
    /// others about it, so it never learns of a peer that has not yet heard of it (a WireGuard
    /// handshake it sent would be dropped as coming from a stranger, and retried only 5 s later).
    pub fn registered(&mut self, network: &str, key: PublicKey) {
        if let Some(net) = self.nets.get_mut(network) {
            if net.members.contains_key(&key) {
                mark_key(net, key);
                if !net.fresh.contains(&key) {
                    net.fresh.push(key);
                }
            }
        }
    }

    fn has_dirty(&self) -> bool {
        self.nets.values().any(|n| !n.dirty.is_empty())
    }

    /// When the pending changes must go out: now after a quiet spell, else one interval after
    /// the last batch.
    pub fn due(&self) -> Option<Option<Instant>> {
        if !self.has_dirty() {
            return None;
        }
        Some(self.last_flush.map(|t| t + FLUSH_INTERVAL))
    }

    /// Whether a batch is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        match self.due() {
            None => false,
            Some(None) => true,
            Some(Some(at)) => now >= at,
        }
    }

    /// Encodes every dirty entry once (`info` gives a member's current state) and hands them
    /// out, per network.
    pub fn take_changes(
        &mut self,
        now: Instant,
        info: impl Fn(&Member) -> PeerInfo,
    ) -> Vec<Changes> {
        self.last_flush = Some(now);
        let mut out = Vec::new();
        for (network, net) in &mut self.nets {
            if net.dirty.is_empty() {
                continue;
            }
            net.dirty_set.clear();
            let mut entries = Vec::with_capacity(net.dirty.len());
            for key in std::mem::take(&mut net.dirty) {
                let Some(member) = net.members.get(&key) else {
                    continue;
                };
                let bytes = encode(&info(member));
                net.encoded.insert(key, bytes.clone());
                entries.push((key, bytes));
            }
            out.push(Changes {
                network: network.clone(),
                entries,
                fresh: std::mem::take(&mut net.fresh),
            });
        }
        out
    }

    /// Every member of `network` but `except`, encoded (from the cache where it can), for the
    /// full map a node gets once it registered. Called right after `take_changes`, so no cached
    /// entry lags.
    pub fn full_map(
        &mut self,
        network: &str,
        except: &PublicKey,
        info: impl Fn(&Member) -> PeerInfo,
    ) -> Vec<Vec<u8>> {
        let Some(net) = self.nets.get_mut(network) else {
            return Vec::new();
        };
        for (key, member) in &net.members {
            net.encoded
                .entry(*key)
                .or_insert_with(|| encode(&info(member)));
        }
        batches(
            net.encoded
                .iter()
                .filter(|(key, _)| *key != except)
                .map(|(_, bytes)| bytes.as_slice()),
        )
    }
}

fn mark_key(net: &mut NetMap, key: PublicKey) {
    if net.dirty_set.insert(key) {
        net.dirty.push(key);
    }
}

fn forget_key(net: &mut NetMap, key: &PublicKey) {
    net.members.remove(key);
    net.encoded.remove(key);
    net.fresh.retain(|k| k != key);
    if net.dirty_set.remove(key) {
        net.dirty.retain(|k| k != key);
    }
}

/// Assembles `ServerMessage::Peers` plaintexts from encoded `PeerInfo`s, each at most one Noise
/// message (`MAX_PLAINTEXT`). Built from the cached JSON rather than re-serialised per
/// recipient; an entry too big for any message (a node that announced absurdly many endpoints)
/// is left out rather than breaking every recipient's channel.
pub fn batches<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let overhead = BATCH_HEAD.len() + BATCH_TAIL.len();
    for e in entries {
        if e.len() + overhead > MAX_PLAINTEXT {
            tracing::warn!(
                bytes = e.len(),
                "peer entry too large for a control message; not sent"
            );
            continue;
        }
        // +1 for the separating comma.
        if !cur.is_empty() && cur.len() + 1 + e.len() + BATCH_TAIL.len() > MAX_PLAINTEXT {
            cur.extend_from_slice(BATCH_TAIL);
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.extend_from_slice(BATCH_HEAD);
        } else {
            cur.push(b',');
        }
        cur.extend_from_slice(e);
    }
    if !cur.is_empty() {
        cur.extend_from_slice(BATCH_TAIL);
        out.push(cur);
    }
    out
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod storm_tests;

#[cfg(test)]
mod tests {
    use super::super::messages::{decode, ServerMessage};
    use super::*;
    use std::net::Ipv4Addr;

    fn info(i: u32) -> PeerInfo {
        PeerInfo {
            name: format!("node-{i}"),
            public_key: PublicKey([(i % 251) as u8; 32]),
            virtual_ip: Ipv4Addr::from(0x0a00_0000 + i),
            endpoints: vec![format!("192.0.2.1:{}", 1000 + i).parse().unwrap()],
            online: i % 2 == 0,
            nat: None,
            relay_id: Some(i),
            ipv6: Some(std::net::Ipv6Addr::new(
                0xfd12, 0x3456, 0x789a, 0, 0, 0, 0x0a00, i as u16,
            )),
            run: None,
        }
    }

    #[test]
    fn batches_decode_as_peers_messages_and_respect_the_noise_limit() {
        let peers: Vec<PeerInfo> = (0..2000).map(info).collect();
        let encoded: Vec<Vec<u8>> = peers.iter().map(encode).collect();
        let parts = batches(encoded.iter().map(Vec::as_slice));
        assert!(parts.len() > 1, "2000 entries must not fit one message");
        let mut back = Vec::new();
        for p in &parts {
            assert!(p.len() <= MAX_PLAINTEXT);
            match decode::<ServerMessage>(p).unwrap() {
                ServerMessage::Peers { peers } => back.extend(peers),
                other => panic!("not a peers batch: {other:?}"),
            }
        }
        assert_eq!(back, peers);
        assert!(batches(std::iter::empty()).is_empty());
    }

    #[test]
    fn an_oversized_entry_is_left_out() {
        let big = vec![b'x'; MAX_PLAINTEXT];
        let small = encode(&info(1));
        let parts = batches([big.as_slice(), small.as_slice()]);
        assert_eq!(parts.len(), 1);
        assert!(matches!(
            decode::<ServerMessage>(&parts[0]).unwrap(),
            ServerMessage::Peers { peers } if peers == vec![info(1)]
        ));
    }
}
