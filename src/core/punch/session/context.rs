//! What a punch session borrows from its node for one call (clock, RNG, transmit queue, socket
//! pool), the settings and local facts it is given, and what it reports back.

use super::super::{Candidate, Prediction};
use crate::core::nat::NatProfile;
use crate::core::transmit::{SocketCommand, SocketId, Transmit};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// Settings from the node's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchConfig {
    pub birthday: bool,
    /// TTL of priming packets: enough to leave our own NAT, not enough to reach theirs.
    pub priming_ttl: u8,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            birthday: true,
            priming_ttl: 2,
        }
    }
}

/// This node's side of an offer.
#[derive(Clone, Debug)]
pub struct LocalInfo {
    pub profile: NatProfile,
    pub candidates: Vec<Candidate>,
    pub prediction: Option<Prediction>,
    pub config: PunchConfig,
}

/// Sockets the node must open or close, and the ids to use.
#[derive(Debug, Default)]
pub struct SocketPool {
    next: u16,
    pub commands: VecDeque<SocketCommand>,
}

impl SocketPool {
    /// Ids from `first` up; below it belong to someone else (discovery).
    pub fn new(first: u16) -> Self {
        SocketPool {
            next: first,
            commands: VecDeque::new(),
        }
    }

    pub fn open(&mut self) -> SocketId {
        let id = SocketId(self.next);
        self.next = self.next.wrapping_add(1).max(1);
        self.commands.push_back(SocketCommand::Open(id));
        id
    }

    pub fn close(&mut self, id: SocketId) {
        self.commands.push_back(SocketCommand::Close(id));
    }
}

/// What a session needs from the node for one call.
pub struct Ctx<'a> {
    pub now: Instant,
    pub rng: &'a mut ChaCha8Rng,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub sockets: &'a mut SocketPool,
}

/// What happened, for the node to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PunchEvent {
    Nominated {
        socket: SocketId,
        addr: SocketAddr,
        detail: String,
    },
    Lost {
        addr: SocketAddr,
    },
    Failed {
        reason: String,
    },
}

/// Per-peer punching figures for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchStatus {
    pub attempts: u32,
    pub probes_sent: u64,
    pub time_to_direct_ms: Option<u64>,
    pub last_failure: Option<String>,
    /// Candidates ignored in the peer's offers (beyond the cap, or unusable).
    #[serde(default)]
    pub candidates_dropped: u64,
    /// Probes not sent because their address never answered and had used up its budget.
    #[serde(default)]
    pub probes_withheld: u64,
}
