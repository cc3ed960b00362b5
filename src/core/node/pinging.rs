//! `p2pvpn ping`: the node sends an ICMP echo request from its own virtual address through the
//! same code as a TUN packet, so it takes the route real traffic takes, and takes the peer
//! kernel's echo reply out of the receive path before the TUN device sees it, noting the round
//! trip and the path the reply came back on. The driver owns the per-request timeout; this side
//! only keeps a bounded list of outstanding requests.

use super::{Node, Transmit, TunOutcome, MAX_DATAGRAM};
use crate::core::counters::DropReason;
use crate::core::icmp::{self, EchoKind, PING_ID};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Requests outstanding at once; the oldest is forgotten beyond this.
pub const MAX_OUTSTANDING: usize = 64;
/// A request unanswered this long is forgotten (the driver reports "timeout" by then).
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// An answered ping, as the control socket sends it to `p2pvpn ping` (one JSON line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PingReply {
    pub name: String,
    pub virtual_ip: Ipv4Addr,
    pub seq: u16,
    pub rtt_us: u64,
    /// The path the reply came back on: "direct (predicted, +1)", "relay (udp)", ...
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("not registered with the server yet")]
    NotRegistered,
    #[error("no peer named or addressed {0:?} in this network")]
    UnknownPeer(String),
    #[error("the packet was dropped: {}", .0.as_str())]
    Dropped(DropReason),
}

struct Outstanding {
    peer: Ipv4Addr,
    seq: u16,
    sent: Instant,
}

#[derive(Default)]
pub(super) struct Pings {
    outstanding: VecDeque<Outstanding>,
    replies: VecDeque<PingReply>,
}

impl Node {
    /// Sends echo request `seq` to `target` (a peer's name or virtual address) and returns the
    /// peer's address; the answer appears in `poll_ping_reply`, and the datagram in
    /// `poll_transmit` (or the control stream).
    pub fn ping(&mut self, target: &str, seq: u16, now: Instant) -> Result<Ipv4Addr, PingError> {
        self.now_hint = now;
        let ours = self
            .assignment
            .as_ref()
            .map(|a| a.virtual_ip)
            .ok_or(PingError::NotRegistered)?;
        let by_ip = target.parse::<Ipv4Addr>().ok();
        let peer = self
            .peers
            .iter()
            .find(|p| Some(p.virtual_ip) == by_ip || p.name == target)
            .map(|p| p.virtual_ip)
            .ok_or_else(|| PingError::UnknownPeer(target.to_string()))?;
        let packet = icmp::echo_request(ours, peer, seq);
        // Pings are rare: a buffer of their own keeps the data path's buffers untouched.
        let mut out = vec![0u8; MAX_DATAGRAM.min(packet.len() + 512)];
        match self.route_tun_packet(&packet, &mut out) {
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
            TunOutcome::Queued | TunOutcome::Stream | TunOutcome::Reply(_) => {}
            TunOutcome::Dropped(reason) => {
                self.drops.bump(reason);
                return Err(PingError::Dropped(reason));
            }
        }
        let pings = &mut self.pings;
        pings
            .outstanding
            .retain(|o| now.saturating_duration_since(o.sent) < PING_TIMEOUT);
        pings.outstanding.retain(|o| (o.peer, o.seq) != (peer, seq));
        if pings.outstanding.len() >= MAX_OUTSTANDING {
            pings.outstanding.pop_front();
        }
        pings.outstanding.push_back(Outstanding {
            peer,
            seq,
            sent: now,
        });
        Ok(peer)
    }

    /// An answered ping.
    pub fn poll_ping_reply(&mut self) -> Option<PingReply> {
        self.pings.replies.pop_front()
    }

    /// True when `packet` (decrypted, from the peer at `from`) answers one of our pings: then
    /// it is noted with `path` and must not reach the TUN device.
    pub(super) fn take_ping_reply(
        &mut self,
        packet: &[u8],
        from: Ipv4Addr,
        path: impl FnOnce(&Node) -> String,
        now: Instant,
    ) -> bool {
        // The cheap checks first: this runs on every received packet.
        if packet.get(9) != Some(&1) || self.pings.outstanding.is_empty() {
            return false;
        }
        let Some(echo) = icmp::parse_echo(packet) else {
            return false;
        };
        if echo.kind != EchoKind::Reply || echo.id != PING_ID || echo.src != from {
            return false;
        }
        let Some(i) = self
            .pings
            .outstanding
            .iter()
            .position(|o| o.peer == from && o.seq == echo.seq)
        else {
            return false;
        };
        let Some(sent) = self.pings.outstanding.remove(i) else {
            return false;
        };
        let name = self
            .peers
            .iter()
            .find(|p| p.virtual_ip == from)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let reply = PingReply {
            name,
            virtual_ip: from,
            seq: echo.seq,
            rtt_us: u64::try_from(now.saturating_duration_since(sent.sent).as_micros())
                .unwrap_or(u64::MAX),
            path: path(self),
        };
        if self.pings.replies.len() >= MAX_OUTSTANDING {
            self.pings.replies.pop_front();
        }
        self.pings.replies.push_back(reply);
        true
    }
}
