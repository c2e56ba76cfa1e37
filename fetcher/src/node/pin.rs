//! Keeping up with the followed safe-path sets: what they cover (the gate
//! of `--require-set`) and what they pin (fetched ahead and kept by the
//! pins front-end, `crate::pins`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hypernar_feed::format::storepath::StorePath;
use tracing::debug;

use super::Node;
use crate::sets::cover;

/// A burst of changes (an index replicating) is taken in one go.
const SETTLE: Duration = Duration::from_millis(200);

impl Node {
    /// Recomputes coverage and pins whenever a set or an index changes.
    pub(super) async fn keep_sets(self, require_set: bool, by_sets: bool) {
        let mut sets_rx = self.catalog.sets.subscribe();
        let mut pubs_rx = self.catalog.publishers.subscribe();
        loop {
            sets_rx.mark_unchanged();
            pubs_rx.mark_unchanged();
            let (all, pinned) = self.catalog.sets.vouched();
            let p = &self.catalog.publishers;
            let limit = p.path_count();
            let lists = |k: &[u8; 32], s: &StorePath| p.references_listed(k, s);
            let any = |s: &StorePath| p.references_any(s);
            if require_set {
                p.set_gate(Some(cover(&all, lists, any, limit)));
            }
            if by_sets {
                let covered = cover(&all, lists, any, limit);
                self.share_covered(&covered).await;
            }
            let pinned = cover(&pinned, lists, any, limit);
            self.update_pins(pinned);
            tokio::select! {
                r = sets_rx.changed() => if r.is_err() { return },
                r = pubs_rx.changed() => if r.is_err() { return },
            }
            tokio::time::sleep(SETTLE).await;
        }
    }

    /// `--share sets`: of data feeds, only the blocks of covered paths are
    /// shared; index, key and set feeds, and `--feed` tokens, as usual.
    async fn share_covered(&self, covered: &HashSet<StorePath>) {
        let p = &self.catalog.publishers;
        let (_, other) = p.feed_keys();
        let mut open: HashSet<[u8; 32]> = other.into_iter().collect();
        open.extend(self.swarm().roots());
        let mut ranges: HashMap<[u8; 32], Vec<crate::publishers::BlockRange>> = HashMap::new();
        for path in covered {
            if let Some((feed, r)) = p.ranges(path) {
                ranges.entry(feed).or_default().extend(r);
            }
        }
        debug!(
            covered = covered.len(),
            open = open.len(),
            data_feeds = ranges.len(),
            "--share sets: what may be shared recomputed"
        );
        // Peers already connected learn of blocks that may now be shared.
        for key in self.swarm.share().restrict(open, ranges) {
            if let Some(hub) = self.hub(&key) {
                hub.announce_held().await;
            }
        }
    }

    /// Publishes the paths pinned now (those whose blocks the index
    /// places); the pins front-end (`crate::pins`) fetches and keeps them.
    fn update_pins(&self, pinned: HashSet<StorePath>) {
        let placed: HashSet<StorePath> = pinned
            .into_iter()
            .filter(|p| self.catalog.publishers.ranges(p).is_some())
            .collect();
        self.catalog.pins.send_if_modified(|now| {
            if **now == placed {
                return false;
            }
            *now = Arc::new(placed);
            true
        });
    }

    /// The paths pinned now, and their changes.
    pub fn subscribe_pinned(&self) -> tokio::sync::watch::Receiver<Arc<HashSet<StorePath>>> {
        self.catalog.pins.subscribe()
    }

    /// The paths pinned now.
    pub fn pinned(&self) -> Vec<StorePath> {
        let mut out: Vec<StorePath> = self.catalog.pins.borrow().iter().cloned().collect();
        out.sort_by(|a, b| a.base_name().cmp(b.base_name()));
        out
    }
}
