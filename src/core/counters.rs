//! Why a node dropped a packet, counted per reason. A malformed or unauthenticated packet is an
//! expected event on an internet-facing port: it is counted here and shown by `status`, never a
//! panic and never a log line per packet.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reasons a packet is dropped, on either the TUN or the UDP side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Bytes that are not any message we speak, or a truncated one.
    Malformed,
    /// A handshake from a key that is not a member of the network.
    UnknownPeer,
    /// A message naming a session index we never issued (or one that was torn down).
    UnknownSession,
    /// Authentication failed: wrong key, bad MAC or AEAD tag.
    DecryptFailed,
    /// A counter already seen or too old for the replay window (RFC 6479 style sliding window).
    Replay,
    /// A peer sent an inner packet from a virtual address that is not its own.
    SpoofedSource,
    /// A peer sent an inner packet addressed to someone other than this node.
    WrongDestination,
    /// A TUN packet to an address inside the network that no peer owns.
    NoRoute,
    /// A TUN packet to an address outside the network.
    NotInNetwork,
    /// A TUN packet that is not IPv4 (the overlay is IPv4 only for now).
    UnsupportedProtocol,
    /// A TUN packet to a known peer we have no address for yet.
    PeerUnreachable,
    /// Handshakes refused because the node is under load (WireGuard cookie mechanism).
    RateLimited,
    /// A TUN packet larger than the peer's path MTU (answered with ICMP "fragmentation needed"
    /// when it had DF set).
    TooBig,
    /// A decrypted packet from a peer that no access rule allows (`core::acl`; `status` and
    /// `doctor PEER` say which).
    AccessDenied,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
        DropReason::Malformed,
        DropReason::UnknownPeer,
        DropReason::UnknownSession,
        DropReason::DecryptFailed,
        DropReason::Replay,
        DropReason::SpoofedSource,
        DropReason::WrongDestination,
        DropReason::NoRoute,
        DropReason::NotInNetwork,
        DropReason::UnsupportedProtocol,
        DropReason::PeerUnreachable,
        DropReason::RateLimited,
        DropReason::TooBig,
        DropReason::AccessDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::UnknownSession => "unknown_session",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::Replay => "replay",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::WrongDestination => "wrong_destination",
            DropReason::NoRoute => "no_route",
            DropReason::NotInNetwork => "not_in_network",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::PeerUnreachable => "peer_unreachable",
            DropReason::RateLimited => "rate_limited",
            DropReason::TooBig => "too_big",
            DropReason::AccessDenied => "access_denied",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// One counter per [`DropReason`]; a fixed array so counting never allocates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    pub fn bump(&mut self, reason: DropReason) {
        self.0[reason.slot()] = self.0[reason.slot()].saturating_add(1);
    }

    /// Adds `n` drops the data workers counted on their own (`io::workers`).
    pub fn bump_by(&mut self, reason: DropReason, n: u64) {
        self.0[reason.slot()] = self.0[reason.slot()].saturating_add(n);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.slot()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every reason with its count, zeros included, so scripts can rely on the keys.
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.get(*r)))
            .collect()
    }
}

impl Serialize for DropCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for DropCounters {
    /// Reads the map `status --json` prints; unknown reasons (from a newer node) are ignored.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, u64>::deserialize(d)?;
        let mut counters = DropCounters::default();
        for reason in DropReason::ALL {
            if let Some(n) = map.get(reason.as_str()) {
                counters.0[reason.slot()] = *n;
            }
        }
        Ok(counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        let mut counters = DropCounters::default();
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                counters.bump(*reason);
            }
        }
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(counters.get(*reason), i as u64 + 1, "{}", reason.as_str());
        }
        assert_eq!(counters.to_map().len(), DropReason::ALL.len());
    }
}
