//! The nominated path's life: validation of a probe's round trip (or of an authenticated session
//! packet) into a nominated path, the keepalive that watches it (fast while traffic flows, slow
//! when idle), and giving it up with backoff when it stops answering.

use super::*;

impl PeerPunch {
    /// An authenticated session datagram (WireGuard) from the peer on `socket` from `from`: it
    /// proves the path as a pong would. It keeps a nominated path alive, and adopts the path when
    /// the peer's handshake found us before our own probes were answered.
    pub fn handle_authenticated(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        ctx: &mut Ctx,
    ) -> Option<PunchEvent> {
        self.budget.answered(from.ip());
        if let Some(n) = &mut self.nominated {
            if n.socket == socket && n.addr == from {
                n.last_pong = ctx.now;
                n.unanswered_since = None;
            }
            return None;
        }
        let pending = Pending {
            socket,
            addr: from,
            technique: Technique::PeerReflexive,
            offset: 0,
            sent: ctx.now,
        };
        self.validated(pending, ctx)
    }

    /// An authenticated WireGuard handshake initiation from the peer on `socket` from `from`:
    /// the path its sender uses now. From the nominated path's IP but another port, on the
    /// same socket of ours, it means the peer's process, or its NAT's mapping, is new and the
    /// old port no longer leads to it (a restart with `listen_port = 0`, a NAT that rebound):
    /// that path is adopted at once, instead of answering the new run while data still goes to
    /// the old port until the old path's keepalives time out. A replayed initiation never gets
    /// here: WireGuard refuses a timestamp it has seen (whitepaper §5.1).
    pub fn handle_handshake_from(
        &mut self,
        socket: SocketId,
        from: SocketAddr,
        ctx: &mut Ctx,
    ) -> Option<PunchEvent> {
        let moved = self.nominated.as_ref().is_some_and(|n| {
            n.socket == socket && n.addr.ip() == from.ip() && n.addr.port() != from.port()
        });
        if moved {
            if let Some(old) = self.nominated.take() {
                tracing::debug!(old = %old.addr, new = %from, "the peer's handshake came from a new port");
            }
        }
        self.handle_authenticated(socket, from, ctx)
    }

    pub(super) fn validated(&mut self, p: Pending, ctx: &mut Ctx) -> Option<PunchEvent> {
        let now = ctx.now;
        if let Some(n) = &mut self.nominated {
            if n.socket == p.socket && n.addr == p.addr {
                n.last_pong = now;
                n.unanswered_since = None;
                return None;
            }
            // Only a LAN path replaces a working one (an IPv6 host candidate is not a LAN).
            let lan = |t: Technique, a: SocketAddr| {
                t == Technique::Lan && !crate::core::punch::ipv6::is_global_addr(a)
            };
            if !lan(p.technique, p.addr) || lan(n.technique, n.addr) {
                return None;
            }
        }
        let (theirs, their_offset) = self
            .seen
            .get(&p.addr)
            .copied()
            .unwrap_or((Technique::ServerReflexive, 0));
        // A reflexive path that is in fact one of the peer's candidates is named as such.
        let mut p = p;
        if p.technique == Technique::PeerReflexive {
            if let Some(c) = self.their_candidates.iter().find(|c| c.addr == p.addr) {
                p.technique = c.technique;
            }
        }
        let (technique, offset) = if p.technique == Technique::Lan {
            (Technique::Lan, 0)
        } else if theirs > p.technique {
            (theirs, their_offset)
        } else {
            (p.technique, p.offset)
        };
        let probes = self.status.probes_sent;
        let detail = match technique {
            Technique::Predicted => format!("direct (predicted, {offset:+})"),
            Technique::Birthday => format!("direct (birthday, {probes} probes)"),
            // The address family is what matters on IPv6: no NAT, the host's own address.
            _ if p.addr.is_ipv6() => "direct (IPv6)".to_string(),
            t => format!("direct ({t})"),
        };
        if self.status.time_to_direct_ms.is_none() {
            self.status.time_to_direct_ms =
                Some(now.saturating_duration_since(self.created).as_millis() as u64);
        }
        self.status.last_failure = None;
        self.nominated = Some(Nominated {
            socket: p.socket,
            addr: p.addr,
            technique,
            detail: detail.clone(),
            since: now,
            last_pong: now,
            next_keepalive: now + KEEPALIVE,
            unanswered_since: None,
        });
        self.end_attempt(ctx, Some(p.socket));
        self.phase = Phase::Idle { next_attempt: now };
        tracing::debug!(addr = %p.addr, %detail, "path nominated");
        Some(PunchEvent::Nominated {
            socket: p.socket,
            addr: p.addr,
            detail,
        })
    }

    /// Data went out on the direct path: keep a closer watch on it.
    pub fn note_tx(&mut self, now: Instant) {
        let was_active = self.is_active(now);
        self.last_tx = Some(now);
        if let (false, Some(n)) = (was_active, &mut self.nominated) {
            n.next_keepalive = n.next_keepalive.min(now + ACTIVE_KEEPALIVE);
        }
    }

    /// The node's underlay moved (`core::node::roaming`): the nominated path leaves from a local
    /// address or NAT mapping that is gone, so the next timeout finds it dead and punches again
    /// at once (as any stable path that dies), instead of after `ACTIVE_PATH_TIMEOUT` (or
    /// `PATH_TIMEOUT` when idle) of unanswered keepalives.
    pub fn expire_path(&mut self, now: Instant) {
        if let Some(n) = &mut self.nominated {
            // No earlier instant (a clock that started less than PATH_TIMEOUT ago): the
            // keepalives find the path dead the usual way.
            if let Some(t) = now.checked_sub(PATH_TIMEOUT) {
                n.unanswered_since = Some(t);
                n.next_keepalive = now;
            }
        }
    }

    pub(super) fn is_active(&self, now: Instant) -> bool {
        self.last_tx
            .is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_WINDOW)
    }

    pub(super) fn keepalive(&mut self, ctx: &mut Ctx) -> Option<PunchEvent> {
        let now = ctx.now;
        let active = self.is_active(now);
        let n = self.nominated.as_mut()?;
        let (interval, timeout) = if active {
            (ACTIVE_KEEPALIVE, ACTIVE_PATH_TIMEOUT)
        } else {
            (KEEPALIVE, PATH_TIMEOUT)
        };
        let dead = n
            .unanswered_since
            .is_some_and(|t| now.saturating_duration_since(t) >= timeout);
        if dead {
            let addr = n.addr;
            let socket = n.socket;
            let lived = now.saturating_duration_since(n.since);
            self.nominated = None;
            if socket != SocketId::MAIN {
                ctx.sockets.close(socket);
            }
            for s in self.kept.drain(..) {
                ctx.sockets.close(s);
            }
            self.pending.clear();
            // A path that held and had not died lately (a NAT that forgot its mappings, an
            // underlay that moved) is punched again at once, by whichever side noticed (as a
            // replan: the lower key's offer stands if both do). A path that keeps dying waits
            // longer each time, so it does not bounce traffic back and forth.
            let calm = self
                .last_lost
                .is_none_or(|t| now.saturating_duration_since(t) >= FLAP_WINDOW);
            self.last_lost = Some(now);
            if lived >= STABLE_PATH && calm {
                // The peer may have noticed first and offered already: the answer owed (or the
                // attempt it started) is the new punch, and an offer of ours would cross it.
                if !matches!(self.phase, Phase::Answering { .. } | Phase::Probing(_)) {
                    self.replan = true;
                    self.phase = Phase::Idle { next_attempt: now };
                }
                return Some(PunchEvent::Lost { addr });
            }
            if lived < FLAP_WINDOW {
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            } else {
                self.backoff = FIRST_BACKOFF;
            }
            self.phase = Phase::Idle {
                next_attempt: now + self.backoff,
            };
            return Some(PunchEvent::Lost { addr });
        }
        if now >= n.next_keepalive {
            n.next_keepalive = now + interval;
            n.unanswered_since.get_or_insert(now);
            let (socket, addr) = (n.socket, n.addr);
            // Forget keepalives nobody answered, so the table stays small on a dead path.
            self.pending
                .retain(|_, p| now.saturating_duration_since(p.sent) < PATH_TIMEOUT);
            self.ping(socket, addr, Technique::PeerReflexive, 0, None, ctx);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::VecDeque;

    fn nominated(punch: &PeerPunch) -> Option<(SocketId, SocketAddr)> {
        punch.nominated().map(|n| (n.socket, n.addr))
    }

    /// Only a handshake from the nominated path's IP on another port, on the same socket of
    /// ours, moves the path (a restarted peer, a rebound NAT); data from elsewhere, or a
    /// handshake from another IP or socket, leaves a working path alone.
    #[test]
    fn a_handshake_from_a_new_port_of_the_same_ip_moves_the_path() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let me = SecretKey::generate(&mut rng);
        let peer = SecretKey::generate(&mut rng);
        let now = crate::test_now();
        let mut punch = PeerPunch::new(&me, &peer.public_key(), now);
        let mut transmits = VecDeque::new();
        let mut sockets = SocketPool::new(1000);
        let mut ctx = Ctx {
            now,
            rng: &mut rng,
            transmits: &mut transmits,
            sockets: &mut sockets,
        };
        let old: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let new: SocketAddr = "203.0.113.5:41000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:40000".parse().unwrap();
        let main = SocketId::MAIN;
        assert!(punch.handle_authenticated(main, old, &mut ctx).is_some());
        assert_eq!(nominated(&punch), Some((main, old)));

        // Data (not a handshake) from a new port: the nominated path stays.
        assert_eq!(punch.handle_authenticated(main, new, &mut ctx), None);
        assert_eq!(nominated(&punch), Some((main, old)));
        // A handshake from another IP, or on another socket of ours: it stays too.
        assert_eq!(punch.handle_handshake_from(main, lan, &mut ctx), None);
        let other_socket = SocketId(1000);
        assert_eq!(
            punch.handle_handshake_from(other_socket, new, &mut ctx),
            None
        );
        assert_eq!(nominated(&punch), Some((main, old)));
        // A handshake from the old path itself only keeps it alive.
        assert_eq!(punch.handle_handshake_from(main, old, &mut ctx), None);

        // A handshake from the same IP on a new port: the path moves there at once.
        match punch.handle_handshake_from(main, new, &mut ctx) {
            Some(PunchEvent::Nominated { socket, addr, .. }) => {
                assert_eq!((socket, addr), (main, new));
            }
            other => panic!("expected the new port nominated, got {other:?}"),
        }
        assert_eq!(nominated(&punch), Some((main, new)));
    }
}
