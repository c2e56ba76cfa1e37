//! Looking a path up in a publisher's runs (docs/protocol.md, "Runs"), and
//! keeping each runs feed's manifest current.
//!
//! A lookup of a hash the catalog does not hold costs, per publisher whose
//! index is in runs: one page of every live run, asked at once (one round
//! trip), then the path's index record (and its listing's, the next block)
//! and its key release, asked at once (a second). Every block comes through
//! the same chain as a path's data (peers, hedged with the web seeds), so
//! it is verified against the publisher's signed tree; a miss is proven by
//! the signed pages, not by a silence. A page once fetched stays in the
//! runs feed's replica: a second lookup on it (a warm miss) reads it here,
//! with no round trip. What a lookup finds is checked (the record names the
//! hash; the key release names the path and matches the record's key
//! commitment, in the catalog) and then put in the catalog, so the readers
//! above find it as if the index had been replicated.
//!
//! A page that does not decode, or does not belong to the block it was
//! asked as, or points past the run, fails the lookup of that publisher
//! with [`LookupError`]; the reader then answers as for any source error
//! (the HTTP API falls through to the upstream).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use hypernar_feed::format::identity::{FeedKey, Identity};
use hypernar_feed::format::record::{FeedRole, KeyRelease, ListingRecord, Record, RecordError};
use hypernar_feed::format::run::{self, Manifest, RunEntry, RunError, NO_KEY};
use hypernar_feed::format::storepath::StorePath;
use tracing::{debug, warn};

use hypernar_swarm::hub::HubHandle;

use super::{reader, PathError, Sources};
use crate::publishers::{ManifestState, NotFound, Runs, SETTLE_WAIT};

/// The longest a miss waits for publishers' indexes to settle, however
/// steadily they move: the tail replicated eagerly is bounded (4096 paths
/// by default, about a second), an index read whole is not.
pub const SETTLE_MAX: Duration = Duration::from_secs(30);

/// How often a runs feed's manifest is read again when nothing said it
/// changed (a web seed tells nothing by itself).
pub const MANIFEST_POLL: Duration = Duration::from_secs(30);

/// Longest a lookup waits for one block.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(3);

/// Why a lookup in a publisher's runs failed (not: "the path is not there").
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("block {block} of the runs feed: {source}")]
    Fetch {
        block: u64,
        #[source]
        source: Box<PathError>,
    },
    #[error("block {block} of the runs feed does not decode: {source}")]
    Decode {
        block: u64,
        #[source]
        source: RecordError,
    },
    #[error("block {block} of the runs feed is no run page")]
    NotAPage { block: u64 },
    #[error("block {block} of the runs feed: {source}")]
    Page {
        block: u64,
        #[source]
        source: RunError,
    },
    #[error("index block {seq}: {why}")]
    Record { seq: u64, why: String },
}

/// What one lookup cost, for the benchmark and the logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Rounds of block requests made (each round's requests go at once).
    pub rounds: u32,
    /// Blocks asked for.
    pub blocks: u32,
}

impl Sources {
    /// The store path whose hash part is `hash`, if a trusted publisher
    /// lists it: from the catalog, or else by lookup in the runs of each
    /// publisher whose index is in runs (what is found is then in the
    /// catalog). `None` when no publisher has it, or none could be asked.
    ///
    /// A miss is not answered while a publisher's index or key feed is
    /// settling (its runs manifest not read yet, or records a peer told of
    /// not applied yet: [`crate::publishers::Progress::settling`]): it
    /// waits for them while they move, up to [`SETTLE_MAX`] in all, looking
    /// again as they arrive. A fresh node asked for a path in the index's
    /// tail would otherwise say "no" a moment before it knows, and Nix
    /// keeps that "no" for an hour.
    pub async fn path_by_hash(&self, hash: &str) -> Option<StorePath> {
        let publishers = self.node().publishers();
        let until = tokio::time::Instant::now() + SETTLE_MAX;
        let mut changed = publishers.subscribe();
        // The manifest each publisher was probed at, in this call.
        let mut probed: HashMap<[u8; 32], u64> = HashMap::new();
        let mut waited = false;
        loop {
            changed.mark_unchanged();
            let known = publishers.path_by_hash(hash);
            if let Some(p) = &known {
                // A record read with the index's head, or one whose key
                // could not be fetched: its key is looked up again.
                if !matches!(
                    publishers.lookup(p),
                    Err(NotFound::NoKey(_) | NotFound::Unknown { .. })
                ) {
                    return known;
                }
            }
            let Some(h) = run::hash_of(hash) else {
                return known;
            };
            if let Some(found) = self.probe_runs(hash, &h, &mut probed).await {
                return Some(found);
            }
            // A miss, or a record whose key is not read yet: answered,
            // unless an index is still arriving or the peers that will bring
            // it are still being reached.
            let reaching = self.node().reaching_peers();
            if !publishers.settling() && !reaching {
                return known;
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return known;
            }
            if !waited {
                waited = true;
                debug!(hash, "a publisher's index is settling; the miss waits");
            }
            // Woken by progress, or to see that it stalled (or, reaching
            // peers, to look again soon: a connection is no progress).
            let step = if reaching {
                std::time::Duration::from_millis(100)
            } else {
                SETTLE_WAIT
            };
            let wake = until.min(now + step);
            if let Ok(Err(_)) = tokio::time::timeout_at(wake, changed.changed()).await {
                return publishers.path_by_hash(hash);
            }
        }
    }

    /// The path of `hash`: the catalog's, or else looked up once in the
    /// runs of every publisher whose manifest is read, without waiting for
    /// indexes to settle: what the node's own services ask
    /// ([`crate::node::Resolver`]).
    pub async fn look_up_now(&self, hash: &str) -> Option<StorePath> {
        if let Some(p) = self.node().publishers().path_by_hash(hash) {
            return Some(p);
        }
        let h = run::hash_of(hash)?;
        self.probe_runs(hash, &h, &mut HashMap::new()).await
    }

    /// The path of `hash` in publisher `id`'s runs, looked up there (its
    /// manifest read), whatever the catalog holds of other publishers.
    pub async fn look_up_in(&self, id: &Identity, hash: &str) -> Option<StorePath> {
        let h = run::hash_of(hash)?;
        let runs = self.node().publishers().runs(id)?;
        let ManifestState::At(_, m) = runs.manifest.clone() else {
            return None;
        };
        match self.lookup_in(id, &runs, &m, &h).await {
            Ok((found, _)) => found,
            Err(e) => {
                warn!(publisher = %id, hash, "looking a path up in runs: {e}");
                None
            }
        }
    }

    /// Looks `h` up in the runs of every publisher whose manifest is read
    /// and was not probed at that manifest yet (`probed`), all at once: a
    /// miss waits for the slowest, not the sum.
    async fn probe_runs(
        &self,
        hash: &str,
        h: &run::PathHash,
        probed: &mut HashMap<[u8; 32], u64>,
    ) -> Option<StorePath> {
        let all = self.node().publishers().all_runs();
        let asked = all.into_iter().filter_map(|(id, runs)| {
            let ManifestState::At(at, m) = runs.manifest.clone() else {
                return None;
            };
            if probed.insert(id.to_bytes(), at) == Some(at) {
                return None;
            }
            Some(async move {
                let r = self.lookup_in(&id, &runs, &m, h).await;
                (id, r)
            })
        });
        let mut found = None;
        for (id, r) in join_all(asked).await {
            match r {
                Ok((Some(path), _)) => found = found.or(Some(path)),
                Ok((None, _)) => {}
                Err(e) => warn!(publisher = %id, hash, "looking a path up in runs: {e}"),
            }
        }
        found
    }

    /// Looks `hash` up in one publisher's runs (manifest `m`, checked
    /// against its position when it was read); on a hit, the path is put in
    /// the catalog.
    pub async fn lookup_in(
        &self,
        id: &Identity,
        runs: &Runs,
        m: &Manifest,
        hash: &run::PathHash,
    ) -> Result<(Option<StorePath>, Cost), LookupError> {
        let mut cost = Cost::default();
        let Some(entry) = self.probe(runs.feed, m, hash, &mut cost).await? else {
            return Ok((None, cost));
        };
        debug!(publisher = %id, index_seq = entry.index_seq, key_seq = entry.key_seq, "found in a run");
        let path = self.fetch_entry(id, m, &entry, &mut cost).await?;
        Ok((Some(path), cost))
    }

    /// The record (and listing's record, and key release) `entry` of a
    /// run or a generation's table points at, fetched at once, checked,
    /// and put in the catalog; the index's feeds as manifest `m` declares
    /// them.
    pub(super) async fn fetch_entry(
        &self,
        id: &Identity,
        m: &Manifest,
        entry: &RunEntry,
        cost: &mut Cost,
    ) -> Result<StorePath, LookupError> {
        let hash = &entry.hash;
        let (index, keys) = feeds_of(id, m);
        // The listing's record is the next block, if the index has one.
        let index_length = self
            .node()
            .hub(&index.to_bytes())
            .map_or(0, |h| h.state().borrow().length);
        let listing_seq = entry.index_seq + 1;
        let record = async {
            let next = async {
                if listing_seq < index_length {
                    Some(self.block(index, listing_seq).await)
                } else {
                    None
                }
            };
            futures::join!(self.block(index, entry.index_seq), next)
        };
        let release = async {
            match (keys, entry.key_seq) {
                (Some(keys), k) if k != NO_KEY => Some(self.block(keys, k).await),
                _ => None,
            }
        };
        let ((block, next), key) = futures::join!(record, release);
        cost.rounds += 1;
        cost.blocks += 1 + u32::from(next.is_some()) + u32::from(key.is_some());
        let bad = |why: String| LookupError::Record {
            seq: entry.index_seq,
            why,
        };
        let block = block.map_err(|e| bad(e.to_string()))?;
        let record = match Record::decode(&block) {
            Ok(Record::Path(p)) if run::path_hash(&p.store_path) == *hash => *p,
            Ok(Record::Path(p)) => {
                return Err(bad(format!(
                    "it records {}, not the hash looked up",
                    p.store_path
                )))
            }
            Ok(_) => return Err(bad("it is no path record".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let path = record.store_path.clone();
        // The listing's record follows the path's, if it has one.
        let listing: Option<ListingRecord> = match next.map(|b| b.map(|b| Record::decode(&b))) {
            Some(Ok(Ok(Record::Listing(l)))) if l.layout(&record, entry.index_seq).is_some() => {
                Some(l)
            }
            _ => None,
        };
        let release: Option<KeyRelease> = match key.map(|k| k.map(|b| Record::decode(&b))) {
            Some(Ok(Ok(Record::Key(k)))) if k.store_path == path => Some(k),
            Some(Ok(Ok(_))) => {
                warn!(publisher = %id, %path, "the key release a run points at is for another path; ignored");
                None
            }
            Some(Ok(Err(e))) => {
                warn!(publisher = %id, %path, "the key release a run points at does not decode: {e}");
                None
            }
            Some(Err(e)) => {
                debug!(publisher = %id, %path, "fetching the key release: {e}");
                None
            }
            None => None,
        };
        self.node()
            .publishers()
            .insert_found(id, entry.index_seq, record, listing, release);
        Ok(path)
    }

    /// The newest entry for `hash` in the live runs: one page of each,
    /// asked at once.
    async fn probe(
        &self,
        feed: FeedKey,
        m: &Manifest,
        hash: &run::PathHash,
        cost: &mut Cost,
    ) -> Result<Option<RunEntry>, LookupError> {
        if m.runs.is_empty() {
            return Ok(None);
        }
        let pages = join_all(m.runs.iter().map(|r| async move {
            let block = r.page_block(hash);
            let bytes = self
                .block(feed, block)
                .await
                .map_err(|e| LookupError::Fetch {
                    block,
                    source: Box::new(e),
                })?;
            let page = match Record::decode(&bytes) {
                Ok(Record::RunPage(p)) => p,
                Ok(_) => return Err(LookupError::NotAPage { block }),
                Err(source) => return Err(LookupError::Decode { block, source }),
            };
            r.check_page(block, &page)
                .map_err(|source| LookupError::Page { block, source })?;
            Ok(page.find(hash).copied())
        }))
        .await;
        cost.rounds += 1;
        cost.blocks += m.runs.len() as u32;
        let mut found: Option<RunEntry> = None;
        for p in pages {
            if let Some(e) = p? {
                found = Some(found.map_or(e, |f| run::newest(f, e)));
            }
        }
        Ok(found)
    }

    /// Block `index` of `feed`, verified, through the chain, within at
    /// most [`LOOKUP_DEADLINE`]: a narinfo question must not wait out a
    /// NAR's deadline on a swarm that cannot answer.
    pub(super) async fn block(&self, feed: FeedKey, index: u64) -> Result<Vec<u8>, PathError> {
        let timing = self.timing();
        let quick = self.with_timing(super::Timing {
            deadline: timing.deadline.min(LOOKUP_DEADLINE),
            patience: timing.patience.min(LOOKUP_DEADLINE),
        });
        reader::block_of(&quick, feed, index).await
    }

    /// Reads the last block of every runs feed the catalog knows, now and
    /// whenever a runs feed grows (peers tell) or every [`MANIFEST_POLL`]
    /// (web seeds do not), and gives the catalog what it says. Part of
    /// [`Sources::follow`].
    pub(super) async fn follow_manifests(&self) {
        let publishers = self.node().publishers();
        let mut changed = publishers.subscribe();
        loop {
            let all = publishers.all_runs();
            let feeds = feed_set(&all);
            let mut watched = Vec::new();
            for (id, runs) in &all {
                if let Some(seen) = self.refresh_manifest(id, runs).await {
                    watched.push(seen);
                }
            }
            // Until a runs feed grows, another is declared, or the poll.
            let same = || feed_set(&publishers.all_runs()) == feeds;
            if !wait_for_growth(&watched, &mut changed, same, MANIFEST_POLL).await {
                return;
            }
        }
    }

    /// Makes the web seeds (if any) tell `hub`'s signed length: asking
    /// past the end does.
    pub(super) async fn ask_length(&self, hub: &HubHandle, feed: &FeedKey) {
        let seeds = self.web_seeds();
        if !seeds.is_empty() {
            let key = feed.to_bytes();
            let _ = seeds
                .fetch(hub, &key, u64::MAX - 1, u64::MAX, self.metrics())
                .await;
        }
    }

    /// Reads one runs feed's last block; returns its hub, to watch, and
    /// the length that was read.
    async fn refresh_manifest(&self, id: &Identity, runs: &Runs) -> Option<(HubHandle, u64)> {
        let hub = self
            .node()
            .add_feed(runs.feed.verifying_key(), false)
            .await
            .ok()?;
        self.ask_length(&hub, &runs.feed).await;
        let length = hub.state().borrow().length;
        let state = match length {
            0 => return Some((hub, 0)), // no source has told its length yet
            1 => ManifestState::None,
            _ => {
                let at = length - 1;
                if let ManifestState::At(old, _) = &runs.manifest {
                    if *old == at {
                        return Some((hub, length));
                    }
                }
                match self.block(runs.feed, at).await.map(|b| Record::decode(&b)) {
                    Ok(Ok(Record::Manifest(m))) => match m.check(at) {
                        Ok(()) => ManifestState::At(at, m.into()),
                        Err(e) => {
                            warn!(publisher = %id, at, "the runs feed's manifest is refused: {e}");
                            return Some((hub, length));
                        }
                    },
                    // A cut the publisher is writing (its manifest comes
                    // last), or one it was killed in (it appends the last
                    // manifest again when it opens): keep what is known, and
                    // a node that knows nothing waits (then, past
                    // `node/follow.rs`'s wait, reads the index whole).
                    Ok(Ok(_)) => {
                        debug!(publisher = %id, at, "the runs feed's last block is no manifest yet");
                        return Some((hub, length));
                    }
                    Ok(Err(e)) => {
                        warn!(publisher = %id, at, "the runs feed's last block does not decode: {e}");
                        return Some((hub, length));
                    }
                    Err(e) => {
                        debug!(publisher = %id, at, "reading the runs feed's manifest: {e}");
                        return Some((hub, length));
                    }
                }
            }
        };
        self.node().publishers().set_manifest(id, state);
        Some((hub, length))
    }
}

/// Waits until a `watched` hub's length moves from the one read with it,
/// `changed` fires and `same()` says the feeds to watch are no longer
/// the same, or `poll` passes. False once `changed` is closed (the node
/// is gone).
pub(super) async fn wait_for_growth(
    watched: &[(HubHandle, u64)],
    changed: &mut tokio::sync::watch::Receiver<u64>,
    same: impl Fn() -> bool,
    poll: Duration,
) -> bool {
    let poll = tokio::time::sleep(poll);
    tokio::pin!(poll);
    loop {
        let mut states: Vec<_> = watched.iter().map(|(h, _)| h.state()).collect();
        for s in &mut states {
            s.mark_unchanged();
        }
        // A length that moved since it was read (before the marks above)
        // is not missed.
        let grew = || {
            watched
                .iter()
                .any(|(h, length)| h.state().borrow().length != *length)
        };
        if grew() {
            return true;
        }
        let moved = async {
            if states.is_empty() {
                return std::future::pending().await;
            }
            let waits = states.iter_mut().map(|s| Box::pin(s.changed()));
            let _ = futures::future::select_all(waits).await;
        };
        changed.mark_unchanged();
        tokio::select! {
            _ = &mut poll => return true,
            _ = moved => {
                if grew() {
                    return true;
                }
            }
            r = changed.changed() => {
                if r.is_err() {
                    return false;
                }
                if !same() {
                    return true;
                }
            }
        }
    }
}

/// The runs feeds of `all`, in one order.
fn feed_set(all: &[(Identity, Runs)]) -> Vec<[u8; 32]> {
    let mut keys: Vec<[u8; 32]> = all.iter().map(|(_, r)| r.feed.to_bytes()).collect();
    keys.sort_unstable();
    keys
}

/// The index feed and the public key feed of `id`, by the manifest's
/// declarations.
fn feeds_of(id: &Identity, m: &Manifest) -> (FeedKey, Option<FeedKey>) {
    let keys = m
        .feeds
        .iter()
        .find(|d| {
            d.role == FeedRole::Keys && d.name == hypernar_feed::format::identity::PUBLIC_KEYS_FEED
        })
        .and_then(|d| FeedKey::from_bytes(&d.public_key).ok());
    (FeedKey::from(id.0), keys)
}
