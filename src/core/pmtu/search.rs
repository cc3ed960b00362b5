//! One peer's packetization-layer path MTU search, DPLPMTUD-style (RFC 8899 §5). Sizes are inner
//! IPv4 packet sizes (what the TUN device carries); a probe of size S is acknowledged only when
//! a packet of S bytes went through the tunnel and its answer came back, so a confirmed size fits
//! the whole path, WireGuard and relay framing included.
//!
//! Phases (RFC 8899 §5.2): `Base` confirms BASE_PLPMTU; `Search` probes the maximum first (most
//! paths carry it, one probe) and then bisects between the largest confirmed and the smallest
//! failed size; `Complete` re-confirms the current size now and then, treats a failed
//! confirmation as a black hole (§4.3: back to `Base`) and searches upward again after
//! PMTU_RAISE_TIMER; `Error` means even the base size got no answer (the peer may drop echo
//! requests), so nothing is enforced and the base is retried later. Sans-IO: the caller passes
//! `now` and sends what `poll_probe` returns.

use std::time::{Duration, Instant};

/// The first size confirmed (RFC 8899 §5.1.2 BASE_PLPMTU: 1200 for IPv4 is the usual choice).
pub const BASE_PLPMTU: u16 = 1200;
/// The smallest size the search ever settles on (IPv4's minimum datagram every host takes).
pub const MIN_PLPMTU: u16 = 576;
/// Probes sent for one size before it counts as too big (RFC 8899 §5.1.2 MAX_PROBES).
pub const MAX_PROBES: u8 = 3;
/// How long a probe's answer may take. RFC 8899 suggests 15 s for a transport that knows no RTT;
/// one overlay round trip is normally well under this, and a late answer is still accepted
/// while the probe is the one in flight.
pub const PROBE_TIMER: Duration = Duration::from_millis(600);
/// How often the confirmed size is probed again: the black-hole check (RFC 8899 §4.3) for a path
/// that carries no traffic large enough to show it.
pub const CONFIRMATION_TIMER: Duration = Duration::from_secs(60);
/// A completed search tries the sizes above again after this (RFC 8899 §5.1.1, 600 s).
pub const PMTU_RAISE_TIMER: Duration = Duration::from_secs(600);
/// After the base size went unanswered, it is tried again after this.
pub const ERROR_RETRY: Duration = Duration::from_secs(30);
/// Black-hole symptoms trigger a confirmation probe at most this often.
pub const BLACK_HOLE_PACE: Duration = Duration::from_secs(5);
/// The search stops once the failed and the confirmed sizes are this close (§5.3.2 leaves the
/// step to the implementation; a few bytes of MTU are not worth more probes).
pub const GRANULARITY: u16 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started: no session to probe over yet.
    Idle,
    /// Confirming BASE_PLPMTU.
    Base,
    Search,
    Complete,
    /// The base size went unanswered.
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Base | Phase::Search => "searching",
            Phase::Complete => "complete",
            Phase::Error => "unanswered",
        }
    }
}

/// A probe the caller must send now: an inner packet of `size` bytes carrying `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub size: u16,
    pub seq: u16,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    probe: Probe,
    deadline: Instant,
}

#[derive(Clone, Debug)]
pub struct Search {
    phase: Phase,
    /// The largest size the path may carry (the TUN MTU).
    max: u16,
    /// The largest confirmed size (0 before the base is confirmed).
    low: u16,
    /// The smallest size known too big, or `max + 1` when none is.
    high: u16,
    in_flight: Option<InFlight>,
    /// Probes sent at the current candidate size.
    attempts: u8,
    next_probe: Option<Instant>,
    raise_at: Option<Instant>,
    seq: u16,
    black_holes: u32,
    /// The last answered probe, to pace black-hole checks.
    last_ack: Option<Instant>,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            phase: Phase::Idle,
            max: 0,
            low: 0,
            high: 1,
            in_flight: None,
            attempts: 0,
            next_probe: None,
            raise_at: None,
            seq: 0,
            black_holes: 0,
            last_ack: None,
        }
    }
}

impl Search {
    /// Starts (or restarts, on a new path) the search for sizes up to `max`.
    pub fn start(&mut self, max: u16, now: Instant) {
        let max = max.max(MIN_PLPMTU);
        *self = Search {
            phase: Phase::Base,
            max,
            high: max.saturating_add(1),
            next_probe: Some(now),
            seq: self.seq,
            black_holes: self.black_holes,
            ..Search::default()
        };
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The path MTU to enforce: the largest confirmed size, once the base is confirmed on this
    /// path. `None` means unknown (nothing is enforced beyond the TUN MTU).
    pub fn mtu(&self) -> Option<u16> {
        match self.phase {
            Phase::Search | Phase::Complete => Some(self.low),
            Phase::Idle | Phase::Base | Phase::Error => None,
        }
    }

    /// Black holes detected (a confirmed size stopped getting through).
    pub fn black_holes(&self) -> u32 {
        self.black_holes
    }

    /// The size the next probe carries.
    fn candidate(&self) -> u16 {
        match self.phase {
            Phase::Base | Phase::Error | Phase::Idle => BASE_PLPMTU.min(self.max),
            Phase::Complete => self.low,
            // Optimistic first: the maximum, then bisect.
            Phase::Search if self.high > self.max => self.max,
            Phase::Search => self.low + (self.high - self.low) / 2,
        }
    }

    /// A probe to send now, if one is due.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.phase == Phase::Complete && self.raise_at.is_some_and(|t| now >= t) {
            // RFC 8899 §5.2: PMTU_RAISE_TIMER sends a completed search back to searching.
            self.phase = Phase::Search;
            self.high = self.max.saturating_add(1);
            self.raise_at = None;
            self.attempts = 0;
            self.next_probe = Some(now);
        }
        if self.next_probe.is_none_or(|t| now < t) {
            return None;
        }
        self.seq = self.seq.wrapping_add(1);
        let probe = Probe {
            size: self.candidate(),
            seq: self.seq,
        };
        self.attempts = self.attempts.saturating_add(1);
        self.in_flight = Some(InFlight {
            probe,
            deadline: now + PROBE_TIMER,
        });
        self.next_probe = None;
        Some(probe)
    }

    /// The answer to a probe came back: `size` bytes with `seq`. Anything but the probe in
    /// flight (a stale or forged answer) is ignored.
    pub fn handle_ack(&mut self, seq: u16, size: u16, now: Instant) -> bool {
        let Some(f) = self.in_flight else {
            return false;
        };
        if f.probe.seq != seq || f.probe.size != size {
            return false;
        }
        self.in_flight = None;
        self.attempts = 0;
        self.last_ack = Some(now);
        match self.phase {
            Phase::Idle => {}
            Phase::Base | Phase::Error => {
                self.low = size;
                self.phase = Phase::Search;
                self.next_probe = Some(now);
                self.check_done(now);
            }
            Phase::Search => {
                self.low = self.low.max(size);
                self.next_probe = Some(now);
                self.check_done(now);
            }
            Phase::Complete => self.next_probe = Some(now + CONFIRMATION_TIMER),
        }
        true
    }

    /// Runs the probe timer: a lost probe is sent again, up to MAX_PROBES; then the size failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(f) = self.in_flight else { return };
        if now < f.deadline {
            return;
        }
        self.in_flight = None;
        if self.attempts < MAX_PROBES {
            self.next_probe = Some(now);
            return;
        }
        self.attempts = 0;
        match self.phase {
            Phase::Idle => {}
            Phase::Base | Phase::Error => {
                self.phase = Phase::Error;
                self.next_probe = Some(now + ERROR_RETRY);
            }
            Phase::Search => {
                self.high = f.probe.size;
                self.next_probe = Some(now);
                self.check_done(now);
            }
            Phase::Complete => {
                // RFC 8899 §4.3: the confirmed size no longer gets through: a black hole.
                // Start over from the base rather than trust anything learnt on this path.
                self.black_holes = self.black_holes.saturating_add(1);
                let max = self.max;
                self.start(max, now);
            }
        }
    }

    /// Traffic shows signs of a black hole (e.g. large packets sent, nothing back): confirm the
    /// current size now instead of at the next confirmation (at most every BLACK_HOLE_PACE).
    pub fn suspect_black_hole(&mut self, now: Instant) {
        let paced = self
            .last_ack
            .is_none_or(|t| now.saturating_duration_since(t) >= BLACK_HOLE_PACE);
        if self.phase == Phase::Complete && self.in_flight.is_none() && paced {
            self.next_probe = Some(now);
        }
    }

    /// When the caller must call `handle_timeout` or `poll_probe` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = self.in_flight.map(|f| f.deadline).or(self.next_probe);
        match (probe, self.raise_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_done(&mut self, now: Instant) {
        if self.phase == Phase::Search
            && (self.low >= self.max || self.high.saturating_sub(self.low) <= GRANULARITY)
        {
            self.complete(now);
        }
    }

    fn complete(&mut self, now: Instant) {
        self.phase = Phase::Complete;
        self.next_probe = Some(now + CONFIRMATION_TIMER);
        self.raise_at = (self.low < self.max).then_some(now + PMTU_RAISE_TIMER);
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
