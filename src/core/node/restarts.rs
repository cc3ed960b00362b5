//! A peer that restarted: a new process with the same key (`systemctl restart`), which holds
//! none of the old run's WireGuard sessions and may listen on another UDP port.
//!
//! Without this, the node that stayed up kept the old run's session and its nominated direct
//! path: it believed its session fresh, so it never started a handshake (the new run, when it
//! had the higher key, waited `2 × HANDSHAKE_RETRY` for one), and after the new run's own
//! handshake it still sent every reply to the old run's address, because an authenticated
//! packet from another address does not replace a working nominated path
//! (`PeerPunch::validated`); only the path's death, seconds later, moved it.
//!
//! Every node draws a run number once per process and names it in each Hello; the server
//! passes it on in `PeerInfo::run` while the node is online. A record whose run differs from
//! the one we knew is a restart even when the server never saw the old run leave, or when the
//! offline and online records were merged into one batch: the peer's tunnel, path and punch
//! state start from nothing and this side starts a handshake at once, whatever the key order
//! (either side may initiate, whitepaper §5.1; crossing initiations both complete). A record
//! without a run (an older server or node) changes nothing.

use super::{relaying, Node, HANDSHAKE_RETRY};
use crate::core::keys::PublicKey;
use crate::core::punch::session::PeerPunch;
use crate::core::rendezvous::messages::PeerInfo;
use crate::core::transmit::SocketId;

impl Node {
    /// `info` names another run of a peer we hold: both runs known, and different.
    pub(super) fn is_new_run(&self, info: &PeerInfo) -> bool {
        let Some(new) = info.run else {
            return false;
        };
        self.peers
            .get(&info.public_key)
            .and_then(|p| p.run)
            .is_some_and(|old| old != new)
    }

    /// Drops what belonged to the peer's old run: its WireGuard sessions (their keys died with
    /// the process), its direct path and punch attempt (the new run may have another port, and
    /// its NAT a new mapping). The peer's record is applied afterwards, as for any update.
    pub(super) fn forget_old_run(&mut self, key: &PublicKey) {
        let now = self.now_hint;
        if !self.peers.renew_tunnel(key, &self.secret, now) {
            return;
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        tracing::info!(
            peer = peer.name,
            "peer restarted (a new run of its process): starting a new session"
        );
        peer.punch.close(&mut self.sockets);
        let their_nat = peer.punch.their_nat.take();
        peer.punch = PeerPunch::new(&self.secret, key, now);
        peer.punch.their_nat = their_nat;
        peer.endpoint = None;
        peer.socket = SocketId::MAIN;
        peer.handshake_retry = None;
    }

    /// The first handshake with the peer's new run, sent now over whatever route there is (the
    /// relay, until punching finds a direct path again). Our retry timer covers a lost one.
    pub(super) fn greet_new_run(&mut self, key: &PublicKey) {
        let Some(route) = self.peers.get(key).and_then(|p| self.route_to(p)) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.handshake_retry = Some(self.now_hint + HANDSHAKE_RETRY);
        if let Some(init) = peer.tunnel.initiate(&mut self.scratch, true, self.now_hint) {
            relaying::send(route, init, &mut self.transmits, &mut self.control);
        }
    }
}
