//! What every sans-IO state machine hands its driver: datagrams to send (from which of the
//! node's UDP sockets, and with which IP TTL) and sockets to open or close. Socket 0 is the
//! node's one long-lived socket; extra sockets exist only for NAT discovery and birthday probing.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Names one of the driver's UDP sockets.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct SocketId(pub u16);

impl SocketId {
    /// The node's listening socket: it carries the data path, STUN keepalives and most probes.
    pub const MAIN: SocketId = SocketId(0);
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub socket: SocketId,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    /// An IP TTL for this datagram only (low-TTL priming); `None` keeps the socket's default.
    pub ttl: Option<u8>,
}

impl Transmit {
    pub fn main(dst: SocketAddr, payload: Vec<u8>) -> Self {
        Transmit {
            socket: SocketId::MAIN,
            dst,
            payload,
            ttl: None,
        }
    }
}

/// A change to the driver's set of sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketCommand {
    /// Bind a new UDP socket on an ephemeral port (same local address family as the main one)
    /// and report it with `handle_socket_opened`.
    Open(SocketId),
    /// Close it; datagrams still arriving on it are lost.
    Close(SocketId),
}
