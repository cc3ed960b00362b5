//! When the server gives up on a control connection. Each connection passes three stages, each
//! with its own deadline, so that nothing a peer sends short of real progress keeps it open:
//!
//! 1. Noise handshake: must be complete `handshake` after the connection opened. Bytes that
//!    arrive in the meantime (a dribbled frame, say) do not move the deadline.
//! 2. Established, no session: the node must send `Join` or a successful `Hello` within `join`
//!    of the handshake. A stranger with a random key gets this far and no further.
//! 3. Session (a registered member): closed after `idle` without a complete message. Only whole
//!    decrypted messages count, so a partial frame trickled a byte at a time keeps nobody alive.

use std::time::{Duration, Instant};

/// How long each stage may last; see the module comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnDeadlines {
    pub handshake: Duration,
    pub join: Duration,
    pub idle: Duration,
}

impl ConnDeadlines {
    /// A node completes the handshake in one round trip and sends `Join`/`Hello` in the same
    /// flight, so 10 s leaves room for a slow link; `idle` is four missed 15 s pings.
    pub const DEFAULT: ConnDeadlines = ConnDeadlines {
        handshake: Duration::from_secs(10),
        join: Duration::from_secs(10),
        idle: super::IDLE_TIMEOUT,
    };
}

/// The stage a connection is in, for the log line when it is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Handshake,
    Join,
    Idle,
}

impl Stage {
    /// Why the connection was closed, for the operator's log.
    pub fn reason(self) -> &'static str {
        match self {
            Stage::Handshake => "no Noise handshake in time",
            Stage::Join => "no Join or Hello in time after the handshake",
            Stage::Idle => "no message in time",
        }
    }
}

/// One connection's progress through the stages.
#[derive(Clone, Copy, Debug)]
pub struct ConnClock {
    opened: Instant,
    established: Option<Instant>,
    /// The last complete message, once there is a session.
    last_message: Option<Instant>,
}

impl ConnClock {
    pub fn new(now: Instant) -> Self {
        ConnClock {
            opened: now,
            established: None,
            last_message: None,
        }
    }

    /// The Noise handshake completed.
    pub fn established(&mut self, now: Instant) {
        self.established.get_or_insert(now);
    }

    /// A complete message arrived on a connection that has a session (or just got one).
    pub fn message(&mut self, now: Instant) {
        self.last_message = Some(now);
    }

    pub fn stage(&self, has_session: bool) -> Stage {
        match (self.established, has_session) {
            (None, _) => Stage::Handshake,
            (Some(_), false) => Stage::Join,
            (Some(_), true) => Stage::Idle,
        }
    }

    /// When the connection must be closed unless it moves on first.
    pub fn deadline(&self, limits: &ConnDeadlines, has_session: bool) -> Instant {
        match (self.established, has_session) {
            (None, _) => self.opened + limits.handshake,
            (Some(at), false) => at + limits.join,
            (Some(at), true) => self.last_message.unwrap_or(at) + limits.idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn each_stage_has_its_own_deadline() {
        let t0 = crate::test_now();
        let limits = ConnDeadlines::DEFAULT;
        let mut clock = ConnClock::new(t0);
        assert_eq!(clock.stage(false), Stage::Handshake);
        assert_eq!(clock.deadline(&limits, false), t0 + 10 * S);
        clock.established(t0 + 2 * S);
        assert_eq!(clock.stage(false), Stage::Join);
        assert_eq!(clock.deadline(&limits, false), t0 + 12 * S);
        clock.message(t0 + 3 * S);
        assert_eq!(clock.stage(true), Stage::Idle);
        assert_eq!(clock.deadline(&limits, true), t0 + 63 * S);
        clock.message(t0 + 40 * S);
        assert_eq!(clock.deadline(&limits, true), t0 + 100 * S);
    }

    #[test]
    fn messages_before_a_session_do_not_move_the_join_deadline() {
        let t0 = crate::test_now();
        let limits = ConnDeadlines::DEFAULT;
        let mut clock = ConnClock::new(t0);
        clock.established(t0 + S);
        clock.message(t0 + 5 * S);
        assert_eq!(clock.deadline(&limits, false), t0 + 11 * S);
        // A second "established" (cannot happen, but) does not restart the clock either.
        clock.established(t0 + 9 * S);
        assert_eq!(clock.deadline(&limits, false), t0 + 11 * S);
    }
}
