//! Hole punching: the candidates two peers exchange through the server, the strategy ladder chosen
//! from both NAT profiles (`plan`), the authenticated probes (`probe`) and the per-peer attempt
//! state machine that sends them, nominates the first path with a verified round trip and keeps it
//! alive (`session`).

pub mod budget;
pub mod ipv6;
pub mod mapped;
pub mod plan;
pub mod probe;
pub mod session;

use crate::core::nat::NatProfile;
pub use crate::core::portmap::MapProtocol;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// How a probe (and so a path) was found, weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Technique {
    /// A local address of the peer (same LAN, RFC 8445 §5.1.1.1 host candidate).
    Lan,
    /// The peer's address as the server saw it (RFC 8445 server-reflexive candidate).
    ServerReflexive,
    /// An address a probe from the peer came from (RFC 8445 §7.3.1.3 peer-reflexive).
    PeerReflexive,
    /// A port predicted from the peer's sequential allocator (Wei et al.).
    Predicted,
    /// A port found by sweeping a symmetric NAT's small port block (CGNAT block, hash range).
    PortBlock,
    /// A random port of a symmetric NAT, hit by many-port (birthday) probing.
    Birthday,
    /// A public port the peer's gateway forwards to it (UPnP IGD, NAT-PMP or PCP;
    /// `core::portmap`). Strongest: a path through it needs no luck on either side.
    PortMapping(MapProtocol),
}

impl Technique {
    pub fn code(self) -> u8 {
        match self {
            Technique::Lan => 1,
            Technique::ServerReflexive => 2,
            Technique::PeerReflexive => 3,
            Technique::Predicted => 4,
            Technique::Birthday => 5,
            Technique::PortBlock => 6,
            Technique::PortMapping(MapProtocol::Upnp) => 7,
            Technique::PortMapping(MapProtocol::NatPmp) => 8,
            Technique::PortMapping(MapProtocol::Pcp) => 9,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Technique::Lan,
            2 => Technique::ServerReflexive,
            3 => Technique::PeerReflexive,
            4 => Technique::Predicted,
            5 => Technique::Birthday,
            6 => Technique::PortBlock,
            7 => Technique::PortMapping(MapProtocol::Upnp),
            8 => Technique::PortMapping(MapProtocol::NatPmp),
            9 => Technique::PortMapping(MapProtocol::Pcp),
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Technique::Lan => "LAN",
            Technique::ServerReflexive => "server-reflexive",
            Technique::PeerReflexive => "peer-reflexive",
            Technique::Predicted => "predicted",
            Technique::PortBlock => "port block",
            Technique::Birthday => "birthday",
            Technique::PortMapping(MapProtocol::Upnp) => "UPnP mapping",
            Technique::PortMapping(MapProtocol::NatPmp) => "NAT-PMP mapping",
            Technique::PortMapping(MapProtocol::Pcp) => "PCP mapping",
        }
    }
}

impl fmt::Display for Technique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address a peer may be reachable at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub technique: Technique,
}

/// Where a sequential allocator will put this node's next mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    pub ip: IpAddr,
    pub next_port: u16,
    pub delta: i32,
}

/// What one side tells the other (through the server) to start an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchOffer {
    /// Chosen by the side that starts; the answer carries the same number.
    pub attempt: u64,
    /// This is the answer to an offer.
    #[serde(default)]
    pub answer: bool,
    pub candidates: Vec<Candidate>,
    pub nat: NatProfile,
    #[serde(default)]
    pub prediction: Option<Prediction>,
}
