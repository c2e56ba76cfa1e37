//! How far a publisher's followers have read its index and key feed, and
//! whether a miss must wait for them ([`Progress::settling`]).

/// Which of a publisher's feeds a follower reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    Index,
    Keys,
}

/// How long a miss waits for a publisher's index to settle (see
/// [`Progress::settling`]): past this since the follower last moved, a
/// follower that cannot get the blocks it lacks no longer slows misses.
/// Longer than the swarm's request timeout (8 s), so a request lost and
/// asked again is not taken for a stall.
pub const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a publisher's index follower has read, against what the feed says
/// it holds: a path in the part not yet read is in no run and not in the
/// catalog, and a miss there must not be answered (Nix caches a 404 for an
/// hour) while the follower is getting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Index blocks read and applied, from 0 (or from where the runs end).
    pub applied: u64,
    /// The index's verified length.
    pub length: u64,
    /// Peers that have the index open.
    pub peers: usize,
    /// The index is in runs and its manifest is not read yet: nothing of
    /// its tail is replicated until it is.
    pub awaiting_manifest: bool,
    /// When any of the above last changed.
    pub moved: tokio::time::Instant,
}

impl Progress {
    /// Whether a miss should wait for this publisher at `now`: its index
    /// is known (or is being told by a peer) to hold more than is applied,
    /// and the follower moved within [`SETTLE_WAIT`]. A publisher nobody
    /// has told of (no length, no peer) never makes a miss wait, so an
    /// offline node answers at once.
    pub fn settling(&self, now: tokio::time::Instant) -> bool {
        if now.saturating_duration_since(self.moved) >= SETTLE_WAIT {
            return false;
        }
        if self.length == 0 {
            return self.peers > 0;
        }
        self.awaiting_manifest || self.applied < self.length
    }

    /// No source has told this index's length, and nothing of it is
    /// applied: it has not been heard of yet.
    ///
    /// A key feed's follower starts past block 0 (the header), so `applied`
    /// 1 is nothing applied yet: the key feed is declared by the index, so
    /// its hub starts after the index's records are in, and until a peer
    /// tells its length a record's key is unheard of, not missing (seen as
    /// a "no key" answered a moment too early by a fresh node on a loaded
    /// machine).
    pub fn unheard(&self) -> bool {
        self.length == 0 && self.peers == 0 && self.applied <= 1
    }

    /// Block `seq` was read and applied: a move, if it is past `applied`.
    pub(super) fn read(&mut self, seq: u64) {
        if seq >= self.applied {
            self.applied = seq + 1;
            self.moved = tokio::time::Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_waits_only_for_an_index_that_is_behind_and_moving() {
        let t0 = tokio::time::Instant::now();
        let at = |applied, length, peers, awaiting_manifest| Progress {
            applied,
            length,
            peers,
            awaiting_manifest,
            moved: t0,
        };
        let soon = t0 + SETTLE_WAIT / 2;
        let late = t0 + SETTLE_WAIT;
        for (p, now, want, why) in [
            (
                at(0, 0, 0, false),
                soon,
                false,
                "nobody told of it: offline",
            ),
            (
                at(0, 0, 1, false),
                soon,
                true,
                "a peer has it, length not yet told",
            ),
            (at(2, 10, 1, false), soon, true, "records not applied yet"),
            (at(10, 10, 1, false), soon, false, "all applied"),
            (at(10, 10, 0, false), soon, false, "all applied, peer gone"),
            (
                at(10, 10, 1, true),
                soon,
                true,
                "manifest not read: tail unknown",
            ),
            (
                at(2, 10, 0, false),
                soon,
                true,
                "behind with no peer (a web seed)",
            ),
            (at(2, 10, 1, false), late, false, "stalled for SETTLE_WAIT"),
            (at(0, 0, 1, true), late, false, "stalled before its length"),
        ] {
            assert_eq!(p.settling(now), want, "{why}: {p:?}");
        }
    }
}
