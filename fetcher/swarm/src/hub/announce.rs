//! What a hub tells its peers it holds: the ranges of stored blocks, as
//! far as `--share` lets it (`crate::share`).

use hypercore_protocol::schema::Range;

use super::Hub;

impl Hub {
    /// Whether block `index` may be announced and served: always for a
    /// feed we write, else as `--share` says.
    pub(super) fn may_share(&self, index: u64) -> bool {
        self.feed.writable() || self.share.allows(&self.key, index)
    }

    /// Ranges of blocks stored here that may be shared, for announcing to
    /// a new peer.
    pub(super) fn have_ranges(&self) -> Vec<Range> {
        let all = self.have_ranges_unfiltered();
        if self.feed.writable() || self.share.unrestricted() {
            return all;
        }
        let mut out = Vec::new();
        for r in all {
            let mut i = r.start;
            let end = r.start.saturating_add(r.length);
            while i < end {
                if !self.may_share(i) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < end && self.may_share(i) {
                    i += 1;
                }
                out.push(Range {
                    drop: false,
                    start,
                    length: i - start,
                });
            }
        }
        out
    }

    fn have_ranges_unfiltered(&self) -> Vec<Range> {
        let info = self.feed.info();
        let mut out = Vec::new();
        if info.contiguous_length > 0 {
            out.push(Range {
                drop: false,
                start: 0,
                length: info.contiguous_length,
            });
        }
        // A feed we write also holds what it can make again (`remake.rs`).
        let holds = |i| self.holds(i);
        let mut i = info.contiguous_length;
        while i < info.length {
            if holds(i) {
                let start = i;
                while i < info.length && holds(i) {
                    i += 1;
                }
                out.push(Range {
                    drop: false,
                    start,
                    length: i - start,
                });
            } else {
                i += 1;
            }
        }
        out
    }
}
