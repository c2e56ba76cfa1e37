//! Keeping up with the followed safe-path sets: what they cover (the gate
//! of `--require-set`) and what they pin (fetched ahead and kept by the
//! pins front-end, `crate::pins`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hypernar_feed::format::storepath::StorePath;
use tracing::{debug, info, warn};

use super::Node;
use hypernar_feed::format::identity::Identity;

use crate::channels::ChannelRef;
use crate::sets::{cover, COVER_LIMIT};
use hypernar_feed::format::identity::FeedKey;

/// The discovery topic of one generation of a channel: a root the node
/// announces and looks up like a feed's (`hypernar-swarm`'s `dht.rs`),
/// computable only by whoever can read the publisher's generations feed.
pub fn generation_topic(feed: &FeedKey, channel: &str, release: &str) -> [u8; 32] {
    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};
    let mut h = Blake2b::<U32>::new();
    h.update(b"hypernar/v1/generation-topic");
    h.update(feed.to_bytes());
    h.update((channel.len() as u32).to_le_bytes());
    h.update(channel.as_bytes());
    h.update(release.as_bytes());
    h.finalize().into()
}

/// A burst of changes (an index replicating) is taken in one go.
const SETTLE: Duration = Duration::from_millis(200);
/// Between two walks that only the publishers' indexes moved (a
/// publisher publishing record after record), at least this many times
/// what the last walk took, up to [`WALK_SPACING_MAX`]: a walk of a few
/// paths the catalog holds is redone at once, one of 10^5 lookups is not
/// redone back to back. A set's change is walked at once.
const WALK_SPACING: u32 = 4;
const WALK_SPACING_MAX: Duration = Duration::from_secs(60);
/// Generations announced and looked up on the DHT before every other
/// topic: a few, so that the publishers' own topics stay within the cap.
const MAX_GENERATION_TOPICS: usize = 8;

impl Node {
    /// Recomputes coverage and pins whenever a set or what the publishers
    /// list changes ([`crate::publishers::Publishers::content_mark`]: not
    /// when a lookup, this walk's own among them, only found a record).
    pub(super) async fn keep_sets(self, require_set: bool, by_sets: bool) {
        let mut sets_rx = self.catalog.sets.subscribe();
        let mut channels_rx = self.catalog.channels.subscribe();
        let mut pubs_rx = self.catalog.publishers.subscribe();
        let mut walked: Option<((u64, u64), u64)> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            let sets_now = (
                *sets_rx.borrow_and_update(),
                *channels_rx.borrow_and_update(),
            );
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
                r = channels_rx.changed() => if r.is_err() { return },
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
        // The channels sets vouch for are followed too (of trusted
        // publishers only, as a set's paths are), then walked first.
        let mut vouched_channels = HashSet::new();
        for (id, _) in self.catalog.sets.ids() {
            for (publisher, name) in self.catalog.sets.channels_of(&id) {
                let Ok(publisher) = Identity::from_bytes(&publisher) else {
                    continue;
                };
                if self.catalog.publishers.is_trusted(&publisher) {
                    vouched_channels.insert(ChannelRef { publisher, name });
                }
            }
        }
        self.catalog.channels.set_by_sets(vouched_channels);
        let channels = self.walk_channels().await;
        for (channel, is_pinned, covered) in &channels {
            // Followed only for a set: what it covers counts for the set.
            let Some(is_pinned) = is_pinned else { continue };
            if *is_pinned {
                pinned.extend(covered.iter().cloned());
            }
            if require_set {
                self.catalog.publishers.widen_gate(covered);
            }
            all.extend(covered.iter().cloned());
            debug!(%channel, covered = covered.len(), "a channel's generation walked");
        }
        for (id, is_pinned) in self.catalog.sets.ids() {
            let vouched = self.catalog.sets.entries_of(&id);
            let mut covered = cover(
                &vouched,
                |k, s| self.references_listed(*k, s.clone()),
                |s| self.references_any(s.clone()),
                COVER_LIMIT,
            )
            .await;
            // A channel it vouches for: that generation's paths.
            for (publisher, name) in self.catalog.sets.channels_of(&id) {
                if let Some((_, _, c)) = channels
                    .iter()
                    .find(|(c, _, _)| c.publisher.to_bytes() == publisher && c.name == name)
                {
                    covered.extend(c.iter().cloned());
                }
            }
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

    /// What the newest generation of each followed channel covers: its
    /// table's paths, read once per release (a channel whose generation is
    /// not known yet covers nothing). Each generation followed is a
    /// discovery topic too, looked up first: peers on the same release
    /// hold the same closure.
    async fn walk_channels(&self) -> Vec<(ChannelRef, Option<bool>, Arc<HashSet<StorePath>>)> {
        let channels = &self.catalog.channels;
        let feeds: HashMap<Identity, FeedKey> = channels
            .feeds_to_read()
            .into_iter()
            .map(|(id, feed, _)| (id, feed))
            .collect();
        let mut out = Vec::new();
        let mut topics = Vec::new();
        for (channel, pinned, generation) in channels.followed() {
            let (Some(g), Some(feed)) = (generation, feeds.get(&channel.publisher)) else {
                out.push((channel, pinned, Arc::default()));
                continue;
            };
            if topics.len() < MAX_GENERATION_TOPICS {
                topics.push(generation_topic(feed, &g.channel, &g.release));
            }
            let at = format!("{}@{}", g.release, g.table.first_block);
            if let Some(covered) = channels.covered_at(&channel, &at) {
                out.push((channel, pinned, covered));
                continue;
            }
            let read = self
                .read_table(channel.publisher, *feed, g.table, COVER_LIMIT)
                .await;
            match read {
                Ok(paths) => {
                    let covered: Arc<HashSet<StorePath>> = Arc::new(paths.into_iter().collect());
                    info!(
                        %channel,
                        release = %g.release,
                        paths = covered.len(),
                        of = g.closure,
                        "following a channel's newest generation"
                    );
                    // Read whole: kept for this release. Part of it (records
                    // not reached yet): read again at the next walk.
                    if covered.len() as u64 >= g.closure {
                        channels.set_covered(&channel, at, covered.clone());
                    }
                    out.push((channel, pinned, covered));
                }
                Err(e) => {
                    warn!(%channel, release = %g.release, "reading the generation's table: {e}");
                    // What it covered before is kept until the new one reads.
                    let before = channels.covered_any(&channel).unwrap_or_default();
                    out.push((channel, pinned, before));
                }
            }
        }
        self.swarm.set_first_roots(topics);
        channels.forget_covered_but(out.iter().map(|(c, _, _)| c));
        out
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
    pub(super) async fn share_covered(&self, covered: &HashSet<StorePath>) {
        let p = &self.catalog.publishers;
        let (_, other) = p.feed_keys();
        let mut open: HashSet<[u8; 32]> = other.into_iter().collect();
        open.extend(self.swarm().roots());
        let mut ranges: HashMap<[u8; 32], Vec<crate::publishers::BlockRange>> = HashMap::new();
        // `--share-exclude`: a path whose name matches is never shared.
        for path in covered.iter().filter(|p| !self.share_excludes(p)) {
            if let Some((feed, r)) = p.ranges(path) {
                ranges.entry(feed).or_default().extend(r);
            }
        }
        debug!(
            covered = covered.len(),
            open = open.len(),
            data_feeds = ranges.len(),
            "what may be shared recomputed (--share sets, --share-exclude)"
        );
        // Peers already connected learn of blocks that may now be shared.
        for key in self.swarm.share().restrict(open, ranges) {
            if let Some(hub) = self.hub(&key) {
                hub.announce_held().await;
            }
        }
    }

    /// `--share all` with `--share-exclude`: the blocks of every path the
    /// catalog holds whose name no pattern matches are shared, recomputed
    /// as records arrive. Blocks of a path the catalog does not hold (never
    /// known, or forgotten by a node in runs) are not shared: an exclusion
    /// never depends on having seen a record in time.
    pub(super) async fn share_all_but_excluded(self) {
        let mut changed = self.catalog.publishers.subscribe();
        let mut shared_at = None;
        loop {
            let now = self.catalog.publishers.generation();
            if shared_at != Some(now) {
                shared_at = Some(now);
                let all: HashSet<StorePath> =
                    self.catalog.publishers.all_paths().into_iter().collect();
                self.share_covered(&all).await;
            }
            if changed.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(SETTLE).await;
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
