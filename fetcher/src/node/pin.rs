//! Keeping up with the followed safe-path sets: what they cover (the gate
//! of `--require-set`) and what they pin (fetched ahead and kept by the
//! pins front-end, `crate::pins`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hypernar_feed::format::storepath::StorePath;
use tracing::debug;

use super::Node;
use hypernar_feed::format::identity::Identity;

use crate::sets::{cover, COVER_LIMIT};

/// A burst of changes (an index replicating) is taken in one go.
const SETTLE: Duration = Duration::from_millis(200);
/// Between two walks that only the publishers' indexes moved (a
/// publisher publishing record after record), at least this many times
/// what the last walk took, up to [`WALK_SPACING_MAX`]: a walk of a few
/// paths the catalog holds is redone at once, one of 10^5 lookups is not
/// redone back to back. A set's change is walked at once.
const WALK_SPACING: u32 = 4;
const WALK_SPACING_MAX: Duration = Duration::from_secs(60);

impl Node {
    /// Recomputes coverage and pins whenever a set or what the publishers
    /// list changes ([`crate::publishers::Publishers::content_mark`]: not
    /// when a lookup, this walk's own among them, only found a record).
    pub(super) async fn keep_sets(self, require_set: bool, by_sets: bool) {
        let mut sets_rx = self.catalog.sets.subscribe();
        let mut pubs_rx = self.catalog.publishers.subscribe();
        let mut walked: Option<(u64, u64)> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            let sets_now = *sets_rx.borrow_and_update();
            if walked.is_some_and(|(s, _)| s == sets_now) {
                tokio::time::sleep_until(next).await;
            }
            let now = (sets_now, self.catalog.publishers.content_mark());
            pubs_rx.mark_unchanged();
            if walked != Some(now) {
                walked = Some(now);
                let started = tokio::time::Instant::now();
                self.walk_sets(require_set, by_sets).await;
                let took = started.elapsed();
                next = tokio::time::Instant::now() + (took * WALK_SPACING).min(WALK_SPACING_MAX);
            }
            tokio::select! {
                r = sets_rx.changed() => if r.is_err() { return },
                r = pubs_rx.changed() => if r.is_err() { return },
            }
            tokio::time::sleep(SETTLE).await;
        }
    }

    /// Walks every followed set ([`cover`], each path asked of the
    /// catalog and, if it does not hold it, looked up), then sets the gate,
    /// what is shared and what is pinned from what they cover.
    async fn walk_sets(&self, require_set: bool, by_sets: bool) {
        let mut all: HashSet<StorePath> = HashSet::new();
        let mut pinned: HashSet<StorePath> = HashSet::new();
        for (id, is_pinned) in self.catalog.sets.ids() {
            let vouched = self.catalog.sets.entries_of(&id);
            let covered = cover(
                &vouched,
                |k, s| self.references_listed(*k, s.clone()),
                |s| self.references_any(s.clone()),
                COVER_LIMIT,
            )
            .await;
            debug!(set = %id, vouched = vouched.len(), covered = covered.len(), "a set's coverage walked");
            if is_pinned {
                pinned.extend(covered.iter().cloned());
            }
            // A long walk (10^5 lookups over a cold replica) serves what
            // each set covers as soon as that set is walked.
            if require_set {
                self.catalog.publishers.widen_gate(&covered);
            }
            all.extend(covered.iter().cloned());
            self.catalog.sets.set_covered(&id, Arc::new(covered));
        }
        let p = &self.catalog.publishers;
        if require_set {
            p.set_gate(Some(all.clone()));
        }
        // The pinned paths' records are kept from here on, whatever the
        // walk of other sets looked up meanwhile; any forgotten during the
        // walk is looked up again (from the local replica) to place it.
        p.keep(Arc::new(pinned.clone()));
        self.update_pins(pinned).await;
        if by_sets {
            self.share_covered(&all).await;
        }
    }

    /// The references of `path` if `publisher` lists it: in the catalog,
    /// or else looked up (when its index is in runs).
    async fn references_listed(
        &self,
        publisher: [u8; 32],
        path: StorePath,
    ) -> Option<Vec<StorePath>> {
        let p = &self.catalog.publishers;
        if let Some(refs) = p.references_listed(&publisher, &path) {
            return Some(refs);
        }
        let id = Identity::from_bytes(&publisher).ok()?;
        p.runs(&id)?;
        // In this publisher's runs, even if another publisher lists it.
        self.resolve_in(&id, path.hash_part()).await?;
        p.references_listed(&publisher, &path)
    }

    /// The references of `path` if any trusted publisher lists it: in the
    /// catalog, or else looked up.
    async fn references_any(&self, path: StorePath) -> Option<Vec<StorePath>> {
        let p = &self.catalog.publishers;
        if let Some(refs) = p.references_any(&path) {
            return Some(refs);
        }
        if p.all_runs().is_empty() {
            return None;
        }
        self.resolve(path.hash_part()).await?;
        p.references_any(&path)
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
    async fn update_pins(&self, pinned: HashSet<StorePath>) {
        let p = &self.catalog.publishers;
        let mut placed = HashSet::with_capacity(pinned.len());
        for path in pinned {
            if p.ranges(&path).is_none() {
                self.resolve(path.hash_part()).await;
            }
            if p.ranges(&path).is_some() {
                placed.insert(path);
            }
        }
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
