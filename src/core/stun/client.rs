//! One STUN client transaction over UDP: send, retransmit on a schedule, give up (RFC 5389
//! §7.2.1). The RFC's schedule (RTO 500 ms doubling, 7 tries, ~39.5 s) suits a single lookup;
//! NAT discovery runs a dozen transactions and wants an answer in seconds, and an unanswered
//! request is itself a finding (filtering, hairpinning), so [`Schedule::FAST`] gives up after
//! 4 tries over 2.2 s.

use super::TransactionId;
use crate::core::transmit::{SocketId, Transmit};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// When to (re)send, counted from the first send, and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub sends: &'static [Duration],
    pub give_up: Duration,
}

impl Schedule {
    /// 4 tries at 0, 0.3, 0.8 and 1.5 s; no answer by 2.2 s is a loss.
    pub const FAST: Schedule = Schedule {
        sends: &[
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::from_millis(800),
            Duration::from_millis(1500),
        ],
        give_up: Duration::from_millis(2200),
    };
}

/// A request waiting for its answer.
#[derive(Clone, Debug)]
pub struct ClientTransaction {
    pub tid: TransactionId,
    pub socket: SocketId,
    pub dst: SocketAddr,
    payload: Vec<u8>,
    schedule: Schedule,
    /// The first send may not happen before this (e.g. a mapping-lifetime check).
    not_before: Instant,
    started: Option<Instant>,
    sent: usize,
}

impl ClientTransaction {
    pub fn new(
        tid: TransactionId,
        socket: SocketId,
        dst: SocketAddr,
        payload: Vec<u8>,
        not_before: Instant,
    ) -> Self {
        ClientTransaction {
            tid,
            socket,
            dst,
            payload,
            schedule: Schedule::FAST,
            not_before,
            started: None,
            sent: 0,
        }
    }

    /// The next (re)transmission if one is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let due = self.next_send()?;
        if now < due {
            return None;
        }
        self.started.get_or_insert(now);
        self.sent += 1;
        Some(Transmit {
            socket: self.socket,
            dst: self.dst,
            payload: self.payload.clone(),
            ttl: None,
        })
    }

    fn next_send(&self) -> Option<Instant> {
        let offset = self.schedule.sends.get(self.sent)?;
        Some(match self.started {
            Some(t) => t + *offset,
            None => self.not_before,
        })
    }

    /// When the transaction fails if still unanswered. A request that could not be sent yet
    /// (its socket is not open) counts from `not_before`, so a socket that never opens cannot
    /// stall the caller.
    pub fn deadline(&self) -> Instant {
        self.started.unwrap_or(self.not_before) + self.schedule.give_up
    }

    pub fn timed_out(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// The next instant this transaction needs attention.
    pub fn next_timeout(&self) -> Instant {
        match self.next_send() {
            Some(t) => t.min(self.deadline()),
            None => self.deadline(),
        }
    }

    pub fn sent(&self) -> usize {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_on_schedule_then_gives_up() {
        let t0 = crate::test_now();
        let mut tx = ClientTransaction::new(
            TransactionId([1; 12]),
            SocketId(3),
            "192.0.2.1:3478".parse().unwrap(),
            vec![1, 2, 3],
            t0,
        );
        let mut sends = Vec::new();
        let mut now = t0;
        while !tx.timed_out(now) {
            if let Some(t) = tx.poll_transmit(now) {
                assert_eq!(t.socket, SocketId(3));
                sends.push(now - t0);
            }
            now = tx.next_timeout().max(now + Duration::from_millis(1));
        }
        assert_eq!(sends, Schedule::FAST.sends.to_vec());
        assert_eq!(now - t0, Schedule::FAST.give_up);
        assert_eq!(tx.sent(), 4);
    }

    #[test]
    fn waits_for_not_before() {
        let t0 = crate::test_now();
        let later = t0 + Duration::from_secs(5);
        let mut tx = ClientTransaction::new(
            TransactionId([1; 12]),
            SocketId::MAIN,
            "192.0.2.1:3478".parse().unwrap(),
            vec![],
            later,
        );
        assert!(tx.poll_transmit(t0).is_none());
        assert_eq!(tx.next_timeout(), later);
        assert!(tx.poll_transmit(later).is_some());
    }
}
