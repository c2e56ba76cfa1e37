//! Keeping up with the followed safe-path sets: what they cover (the gate
//! of `--require-set`) and what they pin (fetched ahead, kept).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::storepath::StorePath;
use tracing::{debug, info, warn};

use super::Node;
use crate::http::nar::AbortOnDrop;
use crate::sets::cover;

/// A burst of changes (an index replicating) is taken in one go.
const SETTLE: Duration = Duration::from_millis(200);

impl Node {
    /// Recomputes coverage and pins whenever a set or an index changes.
    pub(super) async fn keep_sets(self, require_set: bool, by_sets: bool) {
        let mut sets_rx = self.inner.sets.subscribe();
        let mut pubs_rx = self.inner.publishers.subscribe();
        loop {
            sets_rx.mark_unchanged();
            pubs_rx.mark_unchanged();
            let (all, pinned) = self.inner.sets.vouched();
            let p = &self.inner.publishers;
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
        let p = &self.inner.publishers;
        let (_, other) = p.feed_keys();
        let mut open: HashSet<[u8; 32]> = other.into_iter().collect();
        open.extend(self.roots());
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
        for key in self.inner.share.restrict(open, ranges) {
            if let Some(hub) = self.hub(&key) {
                hub.announce_held().await;
            }
        }
    }

    /// Starts fetching newly pinned paths; stops for paths no longer pinned
    /// (their blocks stay, now evictable).
    fn update_pins(&self, pinned: HashSet<StorePath>) {
        let mut pins = self.inner.pins.lock().expect("pins lock");
        pins.retain(|path, _| pinned.contains(path));
        for path in pinned {
            if pins.contains_key(&path) {
                continue;
            }
            let Some((feed, ranges)) = self.inner.publishers.ranges(&path) else {
                continue;
            };
            let (node, cancel, p) = (self.clone(), self.inner.cancel.clone(), path.clone());
            let task = tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = node.fetch_pinned(p, feed, ranges) => {}
                }
            });
            pins.insert(path, AbortOnDrop(task));
        }
    }

    /// Fetches a pinned path's blocks, retrying with backoff until done.
    async fn fetch_pinned(
        self,
        path: StorePath,
        feed: [u8; 32],
        ranges: Vec<crate::publishers::BlockRange>,
    ) {
        let Ok(key) = VerifyingKey::from_bytes(&feed) else {
            return;
        };
        let mut backoff = Duration::from_secs(1);
        let hub = loop {
            match self.add_feed(&key, false).await {
                Ok(hub) => break hub,
                Err(e) => {
                    warn!(%path, %e, "cannot open the data feed of a pinned path; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        };
        for (start, end) in ranges {
            loop {
                match hub.want(start, end).await {
                    Ok(()) => break,
                    Err(e) => {
                        debug!(%path, %e, "fetching a pinned path; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(300));
                    }
                }
            }
        }
        info!(%path, "pinned path stored");
    }

    /// The paths pinned now.
    pub fn pinned(&self) -> Vec<StorePath> {
        let mut out: Vec<StorePath> = self
            .inner
            .pins
            .lock()
            .expect("pins lock")
            .keys()
            .cloned()
            .collect();
        out.sort_by(|a, b| a.base_name().cmp(b.base_name()));
        out
    }
}
