//! The receiving side's replay window (WireGuard whitepaper §5.4.6, the bitmap of RFC 6479): a
//! ring of 64-bit blocks, so sliding the window clears whole words instead of shifting bits.
//! A counter is accepted once, and only if it is within [`WINDOW`] of the greatest seen so far;
//! datagrams reordered by less than that are still accepted.
//!
//! Checking is split from marking (RFC 6479 §2: check before authenticating, update after), so a
//! data worker can check, decrypt without holding the lock, then mark.

/// Blocks in the ring: 32 × 64 = 2048 bits, the size WireGuard's implementations use.
const BLOCKS: usize = 32;
const BITS: u64 = 64;

/// How far behind the greatest accepted counter a counter may be and still be accepted. One
/// block of the ring is the one being filled, so the guaranteed window is one block less.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BITS;

/// Whitepaper §6.1 (Reject-After-Messages): a session never uses a counter this high.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Which counters of one receiving key have been seen.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// The greatest counter accepted so far, if any.
    greatest: Option<u64>,
    ring: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            greatest: None,
            ring: [0; BLOCKS],
        }
    }
}

fn slot(counter: u64) -> (usize, u64) {
    // ok: the remainder of a division by 32 fits in usize.
    let block = ((counter / BITS) % BLOCKS as u64) as usize;
    (block, 1u64 << (counter % BITS))
}

impl ReplayWindow {
    /// Whether `counter` would be accepted now (no change). Cheap: call it before decrypting.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        let Some(greatest) = self.greatest else {
            return true;
        };
        if counter > greatest {
            return true;
        }
        if greatest - counter >= WINDOW {
            return false;
        }
        let (block, bit) = slot(counter);
        self.ring[block] & bit == 0
    }

    /// Marks `counter` as seen; false (and no change) if [`check`](Self::check) would refuse it.
    /// Call it only after the datagram authenticated, so a forged counter cannot move the window.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.greatest {
            Some(greatest) if counter <= greatest => {}
            Some(greatest) => {
                // Clear the blocks the window slides over (at most the whole ring).
                let (old, new) = (greatest / BITS, counter / BITS);
                let steps = (new - old).min(BLOCKS as u64);
                for i in 1..=steps {
                    let (block, _) = slot((old + i) * BITS);
                    self.ring[block] = 0;
                }
                self.greatest = Some(counter);
            }
            None => self.greatest = Some(counter),
        }
        let (block, bit) = slot(counter);
        self.ring[block] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The specification the bitmap must match: a set of every accepted counter.
    fn model_accepts(seen: &BTreeSet<u64>, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES || seen.contains(&counter) {
            return false;
        }
        match seen.last() {
            Some(&greatest) if counter < greatest => greatest - counter < WINDOW,
            _ => true,
        }
    }

    #[test]
    fn a_replay_is_refused_and_reordering_inside_the_window_accepted() {
        let mut w = ReplayWindow::default();
        assert!(w.update(10));
        assert!(!w.update(10), "replay");
        assert!(w.update(12));
        assert!(w.update(11), "reordered by one");
        assert!(!w.update(11));
        assert!(w.update(5000));
        assert!(w.update(5000 - WINDOW + 1), "oldest still inside");
        assert!(!w.update(5000 - WINDOW), "just outside");
        assert!(!w.update(12), "far behind");
        assert!(!w.update(REJECT_AFTER_MESSAGES));
    }

    #[test]
    fn check_does_not_mark() {
        let mut w = ReplayWindow::default();
        assert!(w.check(3));
        assert!(w.check(3));
        assert!(w.update(3));
        assert!(!w.check(3));
    }

    proptest! {
        /// Any sequence of counters, with jumps, repeats and reordering, gets exactly the
        /// answers of the set model.
        #[test]
        fn matches_the_set_model(
            steps in proptest::collection::vec((0u8..4, 0u64..3000), 1..400)
        ) {
            let mut w = ReplayWindow::default();
            let mut seen = BTreeSet::new();
            let mut base = 0u64;
            for (kind, n) in steps {
                let counter = match kind {
                    0 => base + n,                      // ahead (possibly far)
                    1 => base.saturating_sub(n),        // behind, in or out of the window
                    2 => seen.iter().next_back().copied().unwrap_or(0), // a replay of the top
                    _ => { base += n * 100; base }      // a long jump
                };
                let want = model_accepts(&seen, counter);
                prop_assert_eq!(w.check(counter), want, "check {}", counter);
                prop_assert_eq!(w.update(counter), want, "update {}", counter);
                if want {
                    seen.insert(counter);
                }
            }
        }
    }
}
