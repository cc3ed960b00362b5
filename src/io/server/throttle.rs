//! At most one log line per period for an event that can repeat many times a second (accept
//! failures, refused connections), with a count of what the quiet period swallowed, so that a
//! flood neither fills the journal nor goes unnoticed.

use std::time::{Duration, Instant};

pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    /// Events since the last line that was let through.
    pending: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Counts one event at `now`. Returns `Some(n)` when a line should be logged now, `n` being
    /// the events since the previous line, this one included; `None` while quiet.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gives_one_line_per_period_with_the_count() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(5));
        assert_eq!(t.hit(t0), Some(1));
        // Ten a second for five seconds, as the accept loop's back-off allows.
        let mut lines = Vec::new();
        for i in 1..=50u32 {
            if let Some(n) = t.hit(t0 + Duration::from_millis(100) * i) {
                lines.push(n);
            }
        }
        assert_eq!(lines, vec![50]);
        assert_eq!(t.hit(t0 + Duration::from_secs(6)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(11)), Some(2));
    }
}
