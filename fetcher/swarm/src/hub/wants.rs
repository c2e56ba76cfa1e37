//! What readers want, kept so that scheduling costs the same for a path of
//! a thousand blocks as for one of a hundred thousand.
//!
//! A want is a block range with a cursor: the lowest block of the range not
//! yet known to be stored. Stored blocks stay stored (a replica started
//! afresh rewinds every cursor), so a cursor only moves forward, and over
//! the life of a want it passes each block once. Settling wants and
//! listing the blocks to ask for both start at the cursors, so neither
//! walks the part of a path that is already here.

/// Most steps one want may take past its cursor in one listing: the walk
/// skips blocks stored out of order (rarest first stores a few hundred
/// ahead of the cursor) and blocks already asked for, and stops here
/// rather than walk a whole path of scattered holes.
pub const MAX_STEPS: u64 = 8 * 1024;

/// A block range wanted, and how far it is known to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub start: u64,
    pub end: u64,
    /// Every block in `start..next` is stored.
    pub next: u64,
}

impl Want {
    pub fn new(start: u64, end: u64) -> Self {
        Want {
            start,
            end,
            next: start,
        }
    }

    /// Moves the cursor over stored blocks; true once all are stored.
    pub fn advance(&mut self, has: impl Fn(u64) -> bool) -> bool {
        while self.next < self.end && has(self.next) {
            self.next += 1;
        }
        self.next >= self.end
    }

    /// Forgets what was stored (the replica was started afresh).
    pub fn rewind(&mut self) {
        self.next = self.start;
    }
}

/// Adds to `out` the blocks of `want` below `length` that are neither
/// stored nor asked for, lowest first, until it found `limit` of them or
/// looked at [`MAX_STEPS`] blocks. (Counting its own finds, not the size
/// of `out`: the lowest `limit` blocks of several wants are then among
/// what they added together.)
pub fn collect(
    want: &Want,
    length: u64,
    has: impl Fn(u64) -> bool,
    asked: impl Fn(u64) -> bool,
    limit: usize,
    out: &mut std::collections::BTreeSet<u64>,
) {
    let end = want.end.min(length);
    let stop = want.next.saturating_add(MAX_STEPS).min(end);
    let mut found = 0;
    for i in want.next..stop {
        if found >= limit {
            return;
        }
        if !has(i) && !asked(i) {
            out.insert(i);
            found += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_cursor_passes_stored_blocks_once_and_stops_at_a_hole() {
        let stored: BTreeSet<u64> = [0, 1, 2, 4, 5].into();
        let mut w = Want::new(0, 6);
        assert!(!w.advance(|i| stored.contains(&i)));
        assert_eq!(w.next, 3);
        let stored: BTreeSet<u64> = (0..6).collect();
        assert!(w.advance(|i| stored.contains(&i)));
        assert_eq!(w.next, 6);
        w.rewind();
        assert_eq!(w.next, 0);
        // An empty range is done at once.
        assert!(Want::new(7, 7).advance(|_| false));
    }

    #[test]
    fn collect_skips_stored_and_asked_blocks_and_stays_in_bounds() {
        let mut w = Want::new(10, 100);
        w.next = 12;
        let mut out = BTreeSet::new();
        collect(&w, 20, |i| i % 3 == 0, |i| i == 13, 4, &mut out);
        assert_eq!(out, [14, 16, 17, 19].into());
        let mut out = BTreeSet::new();
        collect(&w, 20, |_| false, |_| false, 100, &mut out);
        assert_eq!(out, (12..20).collect());
        // Ranges at the edge of u64 do not overflow.
        let w = Want::new(u64::MAX - 2, u64::MAX);
        let mut out = BTreeSet::new();
        collect(&w, u64::MAX, |_| false, |_| false, 10, &mut out);
        assert_eq!(out, [u64::MAX - 2, u64::MAX - 1].into());
    }

    #[test]
    fn several_wants_together_give_the_lowest_blocks_of_all() {
        let high = Want::new(1000, 5000);
        let low = Want::new(0, 10);
        let mut out = BTreeSet::new();
        collect(&high, 10_000, |_| false, |_| false, 16, &mut out);
        collect(&low, 10_000, |_| false, |_| false, 16, &mut out);
        let lowest: Vec<u64> = out.into_iter().take(16).collect();
        let want: Vec<u64> = (0..10).chain(1000..1006).collect();
        assert_eq!(lowest, want);
    }

    #[test]
    fn collect_looks_at_most_max_steps_past_the_cursor() {
        let w = Want::new(0, 1 << 20);
        let mut out = BTreeSet::new();
        let looked = std::cell::Cell::new(0u64);
        collect(
            &w,
            1 << 20,
            |_| {
                looked.set(looked.get() + 1);
                true
            },
            |_| false,
            1024,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(looked.get(), MAX_STEPS);
    }
}
