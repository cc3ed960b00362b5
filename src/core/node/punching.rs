//! The node's side of hole punching: it lends each peer's `PeerPunch` the node's clock, RNG,
//! transmit queue and socket pool, sends offers through the control channel when a session
//! asks, routes probes to the right session, and turns a nominated path into the peer's endpoint
//! and a WireGuard handshake. The algorithms live in `core::punch`.

use super::{DatagramOutcome, Node, NodeEvent};
use crate::core::counters::DropReason;
use crate::core::keys::PublicKey;
use crate::core::punch::probe::{sender_of, ProbeError};
use crate::core::punch::session::{LocalInfo, PunchEvent};
use crate::core::punch::PunchOffer;
use crate::core::transmit::SocketId;
use std::net::SocketAddr;
use std::time::Instant;

impl Node {
    fn local_info(&mut self) -> LocalInfo {
        LocalInfo {
            profile: self.discovery.offer_profile().unwrap_or_default(),
            candidates: self.own_candidates(),
            prediction: None,
            config: self.punch_config,
        }
    }

    /// Runs every session's timers and sends the offers they want.
    pub(super) fn drive_punches(&mut self, now: Instant) {
        let keys: Vec<PublicKey> = self.peers.iter().map(|p| p.key).collect();
        for key in keys {
            let event = {
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                let mut ctx = punch_ctx!(self, now);
                peer.punch.handle_timeout(&mut ctx)
            };
            if let Some(event) = event {
                self.apply_punch_event(&key, event);
            }
            self.offer_if_wanted(&key, now);
        }
    }

    pub(super) fn offer_if_wanted(&mut self, key: &PublicKey, now: Instant) {
        let wants = self
            .peers
            .get_mut(key)
            .is_some_and(|p| p.punch.wants_offer(now, p.online));
        if !wants || !self.control.is_registered() {
            return;
        }
        if !self
            .discovery
            .ready_for_offer(&mut self.sockets, &mut self.transmits, now)
        {
            return;
        }
        let mut local = self.local_info();
        local.prediction = self.discovery.take_prediction();
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let mut ctx = punch_ctx!(self, now);
        if let Some(offer) = peer.punch.make_offer(&local, &mut ctx) {
            if !offer.answer && offer.prediction.is_none() {
                // Open our own NAT's mapping toward the peer before it can know to probe us, so
                // its first probe never finds our router without one (order independence; see
                // PeerPunch::prime_before_offer).
                let endpoints = peer.candidates.clone();
                peer.punch
                    .prime_before_offer(&endpoints, self.punch_config.priming_ttl, &mut ctx);
            }
            let line = if offer.answer {
                format!("peer {}: punching (answering its offer)", peer.name)
            } else {
                let n = crate::core::punch::session::attempt_label(offer.attempt);
                format!("peer {}: punching (attempt {n})", peer.name)
            };
            tracing::debug!(
                peer = peer.name,
                attempt = offer.attempt,
                answer = offer.answer,
                "punch offer"
            );
            self.events.push_back(NodeEvent::Progress(line));
            self.control.send_punch(*key, offer);
        }
    }

    pub(super) fn handle_punch_offer(&mut self, from: PublicKey, offer: PunchOffer) {
        let now = self.now_hint;
        let local = self.local_info();
        let Some(peer) = self.peers.get_mut(&from) else {
            tracing::debug!(peer = %from.short(), "punch offer from an unknown peer ignored");
            return;
        };
        // The server passes no public address in a member's endpoints but the one it saw the
        // member at, so that is where sweeps may aim (core::punch::budget).
        peer.punch.set_vouched(&peer.candidates);
        let mut ctx = punch_ctx!(self, now);
        peer.punch.handle_offer(offer, &local, &mut ctx);
        // The peer may be punching because our NAT forgot its mappings: renew ours toward the
        // server, which the relay rides on, right away.
        self.discovery.keepalive_now(now);
        self.offer_if_wanted(&from, now);
    }

    pub(super) fn handle_probe_datagram<'a>(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> DatagramOutcome<'a> {
        let Ok(key) = sender_of(datagram) else {
            return DatagramOutcome::Dropped(DropReason::Malformed);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return DatagramOutcome::Dropped(DropReason::UnknownPeer);
        };
        let probe = match peer.punch.key().open(datagram) {
            Ok(p) => p,
            Err(ProbeError::Unauthenticated) => {
                return DatagramOutcome::Dropped(DropReason::DecryptFailed)
            }
            Err(_) => return DatagramOutcome::Dropped(DropReason::Malformed),
        };
        let mut ctx = punch_ctx!(self, now);
        if let Some(event) = peer.punch.handle_probe(socket, from, probe, &mut ctx) {
            self.apply_punch_event(&key, event);
        }
        DatagramOutcome::Consumed
    }

    pub(super) fn handle_stun_datagram<'a>(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> DatagramOutcome<'a> {
        if from.is_ipv6() && self.handle_ipv6_stun(from, datagram, now) {
            return DatagramOutcome::Consumed;
        }
        let ours = self
            .discovery
            .handle_stun(socket, from, datagram, &mut self.sockets, now);
        self.discovery.flush(&mut self.sockets, &mut self.transmits);
        self.after_discovery();
        if ours || crate::core::stun::message::parse_binding_response(datagram).is_ok() {
            // A well-formed answer nobody waits for any more (a retransmission's second
            // answer, or one arriving after the netcheck finished) is discarded, not counted
            // as malformed (RFC 5389 §7.3.3).
            DatagramOutcome::Consumed
        } else {
            DatagramOutcome::Dropped(DropReason::Malformed)
        }
    }

    /// Reports discovery progress and publishes a newly measured profile.
    pub(super) fn after_discovery(&mut self) {
        let mut changed = self.discovery.take_provisional_news();
        while let Some(line) = self.discovery.progress.pop_front() {
            changed |= line.starts_with("NAT:") || line.starts_with("public address moved");
            self.events.push_back(NodeEvent::Progress(line));
        }
        if changed {
            self.publish_endpoints();
        }
        if self.discovery.take_public_ip_moved() {
            self.handle_public_ip_moved(self.now_hint);
        }
        if self.discovery.take_replan_news() {
            // Attempts made on the provisional profile assumed a cone; a symmetric NAT needs
            // its prediction window, port block or birthday sockets (core::punch::plan).
            for peer in self.peers.iter_mut() {
                peer.punch.request_replan();
            }
            // Offer now rather than at the next timer tick.
            let keys: Vec<PublicKey> = self.peers.iter().map(|p| p.key).collect();
            for key in keys {
                self.offer_if_wanted(&key, self.now_hint);
            }
        }
    }

    fn apply_punch_event(&mut self, key: &PublicKey, event: PunchEvent) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        match event {
            PunchEvent::Nominated {
                socket,
                addr,
                detail,
            } => {
                peer.endpoint = Some(addr);
                peer.socket = socket;
                let lower = self.public < *key;
                let wait = if lower { 1 } else { 2 };
                peer.handshake_retry = Some(self.now_hint + super::HANDSHAKE_RETRY * wait);
                announce_switch(peer, &detail, addr, &mut self.events);
                if lower && !peer.session_fresh(self.now_hint) {
                    // Punching can win before the relay has carried a handshake (its binding
                    // may not exist yet, and an initiation sent through it may be lost): the
                    // lower key starts one over the new path now instead of at the retry.
                    let route = super::Route::Direct { socket, dst: addr };
                    if let Some(init) = peer.tunnel.initiate(&mut self.scratch, true, self.now_hint)
                    {
                        super::relaying::send(route, init, &mut self.transmits, &mut self.control);
                    }
                }
            }
            PunchEvent::Lost { addr } => {
                self.remap_wanted = true;
                self.discovery.keepalive_now(self.now_hint);
                if peer.endpoint == Some(addr) {
                    peer.endpoint = None;
                    peer.socket = SocketId::MAIN;
                }
                let line = format!(
                    "peer {}: path via {addr} stopped answering; punching again",
                    peer.name
                );
                self.events.push_back(NodeEvent::Progress(line));
            }
            PunchEvent::Failed { reason } => {
                let line = format!("peer {}: no direct path yet: {reason}", peer.name);
                self.events.push_back(NodeEvent::Progress(line));
            }
        }
    }
}

/// A nominated path is announced once: the `PathChanged` event that follows when the session
/// runs over it carries the detail, so here only a switch between two direct paths (a LAN path
/// replacing a reflexive one) gets a line, since the path stays "direct" and no `PathChanged`
/// follows.
pub(super) fn announce_switch(
    peer: &crate::core::peers::Peer,
    detail: &str,
    addr: SocketAddr,
    events: &mut std::collections::VecDeque<NodeEvent>,
) {
    if peer.last_path == crate::core::peers::Path::Direct {
        events.push_back(NodeEvent::Progress(format!(
            "peer {}: now {detail} via {addr}",
            peer.name
        )));
    } else {
        tracing::debug!(peer = peer.name, %detail, %addr, "path nominated");
    }
}
