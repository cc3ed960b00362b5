//! Roaming: the node's underlay moved under it (a laptop that changed networks, a default route
//! switched to another router, an uplink whose public IP changed). Direct paths notice on their
//! own within `ACTIVE_PATH_TIMEOUT` and punch again; what nothing else notices in time is the
//! control stream, a TCP connection bound to the old local address or riding the old NAT
//! mapping, which would sit dead until `SERVER_TIMEOUT` (45 s) while every punch offer and peer
//! update sent through it is lost, and the relay binding the server holds for the old public
//! address. So: reconnect the stream now (the new registration brings a fresh relay ticket,
//! bound from the new address), refresh the server-reflexive address, ask the gateway for a
//! port mapping again, and count every direct path as lost now, so each is punched again as
//! soon as the node is registered (traffic takes the relay meanwhile) rather than after two
//! seconds of unanswered keepalives.

use super::Node;
use crate::core::keys::PublicKey;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One move is one reconnect: the driver's route check and discovery's "public IP moved"
/// usually both see the same move, a moment apart.
const SAME_MOVE: Duration = Duration::from_secs(5);

impl Node {
    /// The driver saw the host's route toward the server leave from another local address.
    pub fn handle_underlay_changed(&mut self, now: Instant) {
        self.roamed_at = Some(now);
        self.roam(now);
    }

    /// Discovery saw the server answer for a new public IP: a move, unless the driver just
    /// reported this one.
    pub(super) fn handle_public_ip_moved(&mut self, now: Instant) {
        if self
            .roamed_at
            .is_some_and(|t| now.saturating_duration_since(t) < SAME_MOVE)
        {
            return;
        }
        self.roamed_at = Some(now);
        self.roam(now);
    }

    /// The server sent a peer's record with other endpoints than `before`. When an address the
    /// peer had is gone, the peer moved: a direct path to that address is dead (count it lost
    /// now, not after two seconds of unanswered keepalives), and an offer this side sent
    /// meanwhile may have died with the peer's old control stream.
    pub(super) fn handle_peer_endpoints(&mut self, key: &PublicKey, before: &[SocketAddr]) {
        let now = self.now_hint;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let gone = |ip| !peer.candidates.iter().any(|c: &SocketAddr| c.ip() == ip);
        if !before.iter().any(|b| gone(b.ip())) {
            return;
        }
        tracing::debug!(peer = %key.short(), ?before, now = ?peer.candidates, "the peer moved");
        if peer
            .punch
            .nominated()
            .is_some_and(|n| before.iter().any(|b| b.ip() == n.addr.ip()) && gone(n.addr.ip()))
        {
            peer.punch.expire_path(now);
        }
        peer.punch.offer_again_if_waiting();
        self.offer_if_wanted(key, now);
    }

    fn roam(&mut self, now: Instant) {
        self.now_hint = now;
        self.events.push_back(super::NodeEvent::Progress(
            "the network changed under this node; reconnecting to the server".into(),
        ));
        self.control.reconnect_now(now);
        self.pump_control();
        self.discovery.keepalive_now(now);
        self.discovery.flush(&mut self.sockets, &mut self.transmits);
        self.remap_wanted = true;
        for peer in self.peers.iter_mut() {
            peer.punch.expire_path(now);
            // an offer in flight went into the old stream
            peer.punch.offer_again_if_waiting();
        }
    }
}
