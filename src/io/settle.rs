//! When a node gives back the pages it ran only to start or to change (`os::trim`): once its
//! control plane has been quiet for [`QUIET`] after a change (the TUN device came up, a peer
//! joined or left, a path moved, the server came back), or [`MAX_WAIT`] after the first change
//! of a spell that never goes quiet (a peer whose punching keeps failing reports each retry),
//! and at most once per [`MIN_GAP`].
//!
//! The node task owns one `Settle` and tells it of each event; the trim itself runs on the
//! node task when [`Settle::fire`] says so. A trim costs the next packets a few page faults
//! (the data path maps itself back from the page cache), so it waits for the node to stop
//! changing, or for `MAX_WAIT` when it never does, and never comes twice within `MIN_GAP`.

use std::time::{Duration, Instant};

/// Quiet time after the last change before the trim: longer than a punch's retries and the
/// relay-to-direct upgrade take to settle on a lab pair (about a second), so that the code of
/// a change in progress is not given back just before it runs again.
pub const QUIET: Duration = Duration::from_secs(5);
/// At most one trim per this long, whatever the churn of peers.
pub const MIN_GAP: Duration = Duration::from_secs(60);
/// The longest a change waits for quiet before the trim happens anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Settle {
    due: Option<Instant>,
    /// The first change since the last trim (the start of the current spell).
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Settle {
    /// Something changed at `now`: trim once things have been quiet for `QUIET`, at the latest
    /// `MAX_WAIT` after the spell's first change, never sooner than `MIN_GAP` after the last.
    pub fn changed(&mut self, now: Instant) {
        let first = *self.first.get_or_insert(now);
        let mut at = (now + QUIET).min(first + MAX_WAIT);
        if let Some(last) = self.last {
            at = at.max(last + MIN_GAP);
        }
        self.due = Some(at);
    }

    /// When the next trim is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether to trim now; a yes is given once per quiet spell.
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.due {
            Some(at) if at <= now => {
                self.due = None;
                self.first = None;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_after_quiet() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        assert!(
            !s.fire(t0 + Duration::from_secs(100)),
            "nothing changed yet"
        );
        s.changed(t0);
        s.changed(t0 + Duration::from_secs(3));
        assert!(!s.fire(t0 + Duration::from_secs(7)), "3 + 5 s not reached");
        assert_eq!(s.due(), Some(t0 + Duration::from_secs(8)));
        assert!(s.fire(t0 + Duration::from_secs(8)));
        assert!(!s.fire(t0 + Duration::from_secs(9)), "once per quiet spell");
        assert_eq!(s.due(), None);
    }

    #[test]
    fn churn_waits_for_the_gap() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        s.changed(t0);
        assert!(s.fire(t0 + QUIET));
        s.changed(t0 + Duration::from_secs(10));
        assert_eq!(s.due(), Some(t0 + QUIET + MIN_GAP));
        assert!(!s.fire(t0 + Duration::from_secs(20)));
        assert!(s.fire(t0 + QUIET + MIN_GAP));
    }

    #[test]
    fn endless_changes_still_trim() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        // A change every 2 s never leaves 5 quiet seconds.
        let mut fired = None;
        for i in 0..40u64 {
            let now = t0 + Duration::from_secs(2 * i);
            if s.fire(now) {
                fired = Some(now);
                break;
            }
            s.changed(now);
        }
        assert_eq!(fired, Some(t0 + MAX_WAIT));
        // The next spell waits for the gap, then again at most MAX_WAIT.
        s.changed(t0 + MAX_WAIT + Duration::from_secs(1));
        assert_eq!(s.due(), Some(t0 + MAX_WAIT + MIN_GAP));
    }
}
