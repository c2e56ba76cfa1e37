//! What a node knows of its trusted publishers: their index records and the
//! keys released for their paths, as the feeds replicate.
//!
//! Shared state is a table per lock: `by_id` (each publisher's index,
//! keys, runs and followers' progress), `by_hash` (hash part to path),
//! `gate` (`--require-set`), `used` (last use per path, for eviction),
//! `reading` (reads in progress) and `kept` (records never forgotten).
//! Each is taken alone and briefly, never across an await and never while
//! another is held (a method that needs two copies out of the first and
//! drops it before taking the second), so there is no lock order to keep.
//!
//! For an index in runs the catalog holds its tail, the pinned paths, and
//! at most [`FOUND_MAX`] records found by lookup (least recently found
//! forgotten first): its memory does not grow with the index.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use hypernar_feed::format::identity::{FeedKey, Identity};
use hypernar_feed::format::record::{KeyRelease, ListingRecord, PathRecord, Record};
use hypernar_feed::format::run::Manifest;
use hypernar_feed::format::segment::PathKey;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::PublisherIndex;

mod members;
mod progress;
pub use progress::{Followed, Progress, SETTLE_WAIT};

#[derive(Debug)]
struct Known {
    index: PublisherIndex,
    releases: HashMap<StorePath, PathKey>,
    /// Paths whose records are held not as the index's tail but because a
    /// lookup found them (or a cut put the tail they were in into a run),
    /// least recently found first: at most [`FOUND_MAX`] are kept.
    found: lru::LruCache<StorePath, ()>,
    /// Releases the key feed's follower read (past the manifest's key
    /// mark), by path, with their block: kept whatever `found` forgets,
    /// until a cut puts them in a run.
    tail_keys: HashMap<StorePath, u64>,
    /// How the index is read: whole, or by lookup in runs.
    runs: Option<Runs>,
    /// How far the followers have read the index and the public key feed
    /// (`node/follow.rs`).
    progress: Option<Progress>,
    keys_progress: Option<Progress>,
    /// A group member's node, trusted for nothing (`members.rs`).
    member: Option<members::Member>,
}

/// The most records a node keeps per publisher of paths it looked up in
/// runs (about 0.75 KB each: 12 MiB), besides the index's tail and the
/// pinned paths. One forgotten is looked up again when next asked, from
/// the pages and record the node's replica keeps (no round trip).
pub const FOUND_MAX: usize = 16_384;

/// A publisher whose index is looked up in runs (docs/protocol.md, "Runs"):
/// its runs feed, and what its last block said.
#[derive(Debug, Clone)]
pub struct Runs {
    pub feed: FeedKey,
    pub manifest: ManifestState,
}

/// What a runs feed's last block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestState {
    /// Not read yet: the index's tail is not replicated until it is.
    Unknown,
    /// The runs feed holds no manifest (no run is cut yet): the index is
    /// read whole, as small.
    None,
    /// The manifest at this block of the runs feed.
    At(u64, Arc<Manifest>),
}

/// Trusted publishers' indexes and released keys.
#[derive(Debug)]
pub struct Publishers {
    by_id: Mutex<HashMap<[u8; 32], Known>>,
    /// Store paths by their hash part, for narinfo and NAR requests (which
    /// name only the hash).
    by_hash: Mutex<HashMap<String, StorePath>>,
    /// Bumped on every record and key applied (`Sources::wait_path`).
    changed: watch::Sender<u64>,
    /// Bumped when what the publishers list may have changed: a record or
    /// key their followers read, a manifest, a publisher added. Not by a
    /// lookup's find, which only brings in what was listed already (what
    /// the coverage walk waits on: `node/pin.rs`).
    content: std::sync::atomic::AtomicU64,
    /// With `--require-set`: the only paths served (those trusted sets
    /// cover, see [`crate::sets`]); `None` serves every listed path.
    gate: Mutex<Option<Arc<HashSet<StorePath>>>>,
    /// When each path was last asked for (narinfo, NAR, listing, mount),
    /// in milliseconds since the epoch, for evicting the least recently
    /// used first; and whether that changed since [`Publishers::recent`].
    used: Mutex<(HashMap<StorePath, u64>, bool)>,
    /// Readers in progress per path (see [`Publishers::reading`]).
    reading: Arc<Mutex<HashMap<StorePath, usize>>>,
    /// Paths whose records are never forgotten (the pinned ones).
    kept: Mutex<Arc<HashSet<StorePath>>>,
}

/// A read in progress of one path: while it lives, the path is not
/// evicted.
#[derive(Debug)]
pub struct Reading {
    map: Arc<Mutex<HashMap<StorePath, usize>>>,
    path: StorePath,
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("reading lock");
        if let Some(n) = map.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.path);
            }
        }
    }
}

impl Default for Publishers {
    fn default() -> Self {
        Publishers {
            by_id: Mutex::new(HashMap::new()),
            by_hash: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            content: std::sync::atomic::AtomicU64::new(0),
            gate: Mutex::new(None),
            used: Mutex::new((HashMap::new(), false)),
            reading: Arc::default(),
            kept: Mutex::default(),
        }
    }
}

/// Blocks `start..end` of a feed.
pub use hypernar_swarm::share::BlockRange;

/// Now, in milliseconds since the epoch (0 for a clock before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A path ready to fetch: its publisher, record, data feed and key.
#[derive(Debug, Clone)]
pub struct Found {
    pub publisher: Identity,
    pub record: PathRecord,
    pub data_feed: FeedKey,
    pub key: PathKey,
    /// Where the path's listing is, if it was published with one.
    pub listing: Option<ListingRecord>,
    /// Its publisher is a group member, trusted for nothing: its narinfo
    /// says only what the signature covers (and where the NAR is).
    pub member: bool,
    /// A member's path not checked yet: its NAR must be read whole and
    /// checked against the (signed) NarHash before any byte of it is
    /// served, as its blocks are only as good as the member.
    pub check_whole: bool,
}

/// Why a path is not ready to fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("{path} is not in the index of any trusted publisher ({known} paths known)")]
    Unknown { path: StorePath, known: usize },
    #[error("no key has been released for {0} by its publisher")]
    NoKey(StorePath),
    #[error("{0} is in no followed safe-path set nor channel release (this node serves only those: --require-set)")]
    NotInSet(StorePath),
    #[error("the publisher of {0} declared its data feed with a key that is not a valid key")]
    BadFeed(StorePath),
}

impl Publishers {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A change to what the publishers list (see `content`), then [`bump`].
    fn bump_content(&self) {
        self.content
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.bump();
    }

    /// Moves when what the publishers list may have changed (not on a
    /// lookup's find): a coverage walk done at one mark is current until
    /// it moves.
    pub fn content_mark(&self) -> u64 {
        self.content.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves only `paths` from now on (`None`: every listed path).
    pub(crate) fn set_gate(&self, paths: Option<HashSet<StorePath>>) {
        let mut gate = self.gate.lock().expect("gate lock");
        if gate.as_deref() == paths.as_ref() {
            return;
        }
        *gate = paths.map(Arc::new);
        drop(gate);
        self.bump();
    }

    /// Lets `paths` through the gate too (a walk of the sets under way:
    /// what it has found covered so far is served before it ends; the end
    /// of the walk sets the gate exactly). No gate: nothing to widen.
    pub(crate) fn widen_gate(&self, paths: &HashSet<StorePath>) {
        let mut gate = self.gate.lock().expect("gate lock");
        let Some(now) = gate.as_ref() else {
            return;
        };
        if paths.iter().all(|p| now.contains(p)) {
            return;
        }
        let mut wider: HashSet<StorePath> = (**now).clone();
        wider.extend(paths.iter().cloned());
        *gate = Some(Arc::new(wider));
        drop(gate);
        self.bump();
    }

    /// Whether the gate lets `path` through.
    fn admits(&self, path: &StorePath) -> bool {
        self.gate
            .lock()
            .expect("gate lock")
            .as_ref()
            .is_none_or(|g| g.contains(path))
    }

    /// The references of `path` if `publisher` (trusted) lists it.
    pub fn references_listed(
        &self,
        publisher: &[u8; 32],
        path: &StorePath,
    ) -> Option<Vec<StorePath>> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let (_, rec) = by_id.get(publisher)?.index.paths.get(path)?;
        Some(rec.references.clone())
    }

    /// Each trusted publisher with its index key and every feed it declares.
    pub fn feeds_of_each(&self) -> Vec<(Identity, Vec<[u8; 32]>)> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let mut out: Vec<(Identity, Vec<[u8; 32]>)> = by_id
            .values()
            .map(|k| {
                let mut feeds = vec![k.index.identity.to_bytes()];
                feeds.extend(k.index.feeds.values().map(|d| d.public_key));
                (k.index.identity, feeds)
            })
            .collect();
        out.sort_by_key(|(id, _)| id.to_string());
        out
    }

    /// Every trusted publisher's index key and the feeds its index declares,
    /// split into data feeds and the rest (index and key feeds).
    pub fn feed_keys(&self) -> (Vec<[u8; 32]>, Vec<[u8; 32]>) {
        use hypernar_feed::format::record::FeedRole;
        let by_id = self.by_id.lock().expect("publishers lock");
        let (mut data, mut other) = (Vec::new(), Vec::new());
        for (id, k) in by_id.iter() {
            other.push(*id);
            for decl in k.index.feeds.values() {
                match decl.role {
                    FeedRole::Data => data.push(decl.public_key),
                    _ => other.push(decl.public_key),
                }
            }
        }
        (data, other)
    }

    /// When `path` was last looked up (milliseconds since the epoch), if
    /// known: since start, or from the history [`Publishers::remember_used`]
    /// was given.
    pub fn last_used(&self, path: &StorePath) -> Option<u64> {
        self.used.lock().expect("used lock").0.get(path).copied()
    }

    /// Marks `path` used now: on every lookup, and by readers for each
    /// segment they read, so a NAR or file being read is not evicted under
    /// them however long the read takes.
    pub fn touch(&self, path: &StorePath) {
        let mut used = self.used.lock().expect("used lock");
        used.0.insert(path.clone(), now_ms());
        used.1 = true;
    }

    /// Marks `path` as being read until the guard is dropped (a NAR
    /// stream holds one for its whole length).
    pub fn reading(&self, path: &StorePath) -> Reading {
        *self
            .reading
            .lock()
            .expect("reading lock")
            .entry(path.clone())
            .or_insert(0) += 1;
        Reading {
            map: self.reading.clone(),
            path: path.clone(),
        }
    }

    /// Whether a read of `path` is in progress.
    pub fn is_being_read(&self, path: &StorePath) -> bool {
        self.reading
            .lock()
            .expect("reading lock")
            .contains_key(path)
    }

    /// Takes uses from an earlier run (see [`crate::recent`]); a use since
    /// start wins over an older one.
    pub fn remember_used(&self, entries: Vec<crate::recent::Used>) {
        let mut used = self.used.lock().expect("used lock");
        for (path, at) in entries {
            let e = used.0.entry(path).or_insert(at);
            *e = (*e).max(at);
        }
    }

    /// The uses of listed paths, if any changed since the last call. The
    /// map forgets paths no trusted publisher lists any more when every
    /// index is read whole; with an index in runs the catalog holds only
    /// part of what is listed, so the map keeps the newest
    /// [`crate::recent::MAX_ENTRIES`] uses instead.
    pub fn recent(&self) -> Option<Vec<crate::recent::Used>> {
        let in_runs = !self.all_runs().is_empty();
        let listed: HashSet<StorePath> = if in_runs {
            HashSet::new()
        } else {
            self.all_paths().into_iter().collect()
        };
        let mut used = self.used.lock().expect("used lock");
        if !std::mem::take(&mut used.1) {
            return None;
        }
        // Before the indexes are read, nothing is listed: keep the history.
        if !listed.is_empty() {
            used.0.retain(|p, _| listed.contains(p));
        }
        let max = crate::recent::MAX_ENTRIES;
        if used.0.len() > max {
            let mut all: Vec<(StorePath, u64)> = used.0.drain().collect();
            all.sort_by_key(|u| std::cmp::Reverse(u.1));
            all.truncate(max);
            used.0.extend(all);
        }
        Some(used.0.iter().map(|(p, t)| (p.clone(), *t)).collect())
    }

    /// Forgets when `path` was used (its blocks were all evicted).
    pub fn forget_use(&self, path: &StorePath) {
        let mut used = self.used.lock().expect("used lock");
        if used.0.remove(path).is_some() {
            used.1 = true;
        }
    }

    /// Every path whose use is remembered.
    pub fn used_paths(&self) -> Vec<StorePath> {
        let used = self.used.lock().expect("used lock");
        used.0.keys().cloned().collect()
    }

    /// Every path the catalog holds of the trusted publishers' (for an
    /// index in runs: its tail and what was looked up).
    pub fn all_paths(&self) -> Vec<StorePath> {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id
            .values()
            .flat_map(|k| k.index.paths.keys().cloned())
            .collect()
    }

    /// The references of `path` if any trusted publisher lists it.
    pub fn references_any(&self, path: &StorePath) -> Option<Vec<StorePath>> {
        self.find(path).map(|(_, rec, _)| rec.references)
    }

    /// The data feed and block ranges (the NAR's, and its listing's) of a
    /// listed path: what pinning it keeps.
    pub fn ranges(&self, path: &StorePath) -> Option<([u8; 32], Vec<BlockRange>)> {
        let (publisher, rec, feed) = self.find(path)?;
        let mut ranges = vec![(rec.first_block, rec.first_block + rec.block_count)];
        let by_id = self.by_id.lock().expect("publishers lock");
        if let Some(l) = by_id
            .get(&publisher.to_bytes())
            .and_then(|k| k.index.listings.get(path))
        {
            ranges.push((l.first_block, l.first_block + l.block_count));
        }
        Some((feed, ranges))
    }

    /// The path with its released key, or why not (now).
    /// Whether the key of `path` is known here (`None`: no trusted
    /// publisher lists it); unlike [`Publishers::lookup`], not a use.
    pub fn key_known(&self, path: &StorePath) -> Option<bool> {
        let (publisher, _, _) = self.find(path)?;
        Some(self.key(&publisher, path).is_some())
    }

    pub fn lookup(&self, path: &StorePath) -> Result<Found, NotFound> {
        if !self.admits(path) {
            return Err(NotFound::NotInSet(path.clone()));
        }
        let Some((publisher, record, data_feed)) = self.find(path) else {
            return Err(NotFound::Unknown {
                path: path.clone(),
                known: self.path_count(),
            });
        };
        let data_feed =
            FeedKey::from_bytes(&data_feed).map_err(|_| NotFound::BadFeed(path.clone()))?;
        // Only listed paths are remembered: the map is bounded by the indexes.
        self.touch(path);
        let key = self
            .key(&publisher, path)
            .ok_or_else(|| NotFound::NoKey(path.clone()))?;
        let (listing, member, check_whole) = self
            .by_id
            .lock()
            .expect("publishers lock")
            .get(&publisher.to_bytes())
            // A member's listing is not checked by anything: the listing
            // front-end makes one from the (checked) NAR instead.
            .map(|k| match &k.member {
                Some(m) => (None, true, !m.is_checked(&record)),
                None => (k.index.listings.get(path).cloned(), false, false),
            })
            .unwrap_or((None, false, false));
        Ok(Found {
            publisher,
            record,
            data_feed,
            key,
            listing,
            member,
            check_whole,
        })
    }

    /// The store path whose hash part is `hash`, if a trusted publisher's
    /// index lists it.
    pub fn path_by_hash(&self, hash: &str) -> Option<StorePath> {
        self.by_hash
            .lock()
            .expect("by_hash lock")
            .get(hash)
            .cloned()
    }

    pub(crate) fn add(&self, id: Identity) {
        self.add_as(id, None);
    }

    fn add_as(&self, id: Identity, member: Option<members::Member>) {
        let mut by_id = self.by_id.lock().expect("publishers lock");
        match by_id.get_mut(&id.to_bytes()) {
            // Trusted outright beats vouched for by signatures.
            Some(k) => {
                if member.is_none() {
                    k.member = None;
                }
            }
            None => {
                by_id.insert(
                    id.to_bytes(),
                    Known {
                        index: PublisherIndex::new(id),
                        releases: HashMap::new(),
                        found: lru::LruCache::unbounded(),
                        tail_keys: HashMap::new(),
                        runs: None,
                        progress: None,
                        keys_progress: None,
                        member,
                    },
                );
            }
        }
        drop(by_id);
        self.bump_content();
    }

    /// `id`'s index is looked up in the runs of `feed` (its index declared
    /// the runs feed before its key feed: see `node/follow.rs`).
    pub(crate) fn set_runs_feed(&self, id: &Identity, feed: FeedKey) {
        if let Some(k) = self
            .by_id
            .lock()
            .expect("publishers lock")
            .get_mut(&id.to_bytes())
        {
            k.runs.get_or_insert(Runs {
                feed,
                manifest: ManifestState::Unknown,
            });
        }
        self.bump_content();
    }

    /// The follower of `id`'s index (or key feed) read it up to `applied`
    /// of `length` (see [`Progress`]); the time it moved is kept when
    /// nothing changed.
    pub(crate) fn follower_at(
        &self,
        id: &Identity,
        feed: Followed,
        applied: u64,
        length: u64,
        peers: usize,
        awaiting_manifest: bool,
    ) {
        let mut by_id = self.by_id.lock().expect("publishers lock");
        let Some(known) = by_id.get_mut(&id.to_bytes()) else {
            return;
        };
        let moved = tokio::time::Instant::now();
        let now = Progress {
            applied,
            length,
            peers,
            awaiting_manifest,
            moved,
        };
        let progress = match feed {
            Followed::Index => &mut known.progress,
            Followed::Keys => &mut known.keys_progress,
        };
        let same = progress.is_some_and(|p| Progress { moved, ..p } == now);
        if !same {
            *progress = Some(now);
            drop(by_id);
            self.bump();
        }
    }

    /// Whether a miss should wait for some publisher's index to settle
    /// ([`Progress::settling`]).
    pub fn settling(&self) -> bool {
        let now = tokio::time::Instant::now();
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id
            .values()
            // A group member never makes a miss wait: one whose index
            // nobody holds yet (it kept nothing) is still "told of" by the
            // other members that follow it, and a hostile one could drip
            // its index to slow every miss; the upstream answers instead.
            .filter(|k| k.member.is_none())
            .flat_map(|k| [k.progress, k.keys_progress])
            .any(|p| p.is_some_and(|p| p.settling(now)))
    }

    /// Whether some trusted publisher's index or public key feed is not
    /// heard of yet: no source told its length and nothing of it is
    /// applied (a node that has not reached its peers yet).
    pub fn unheard_of(&self) -> bool {
        let by_id = self.by_id.lock().expect("publishers lock");
        // Group members are met, not configured: none is waited for.
        by_id.values().filter(|k| k.member.is_none()).any(|k| {
            k.progress.is_none_or(|p| p.unheard()) || k.keys_progress.is_none_or(|p| p.unheard())
        })
    }

    /// What `id`'s runs feed says now; `None` for a publisher whose index
    /// is read whole.
    pub fn runs(&self, id: &Identity) -> Option<Runs> {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id.get(&id.to_bytes())?.runs.clone()
    }

    /// Every publisher whose index is looked up in runs, with its runs.
    pub fn all_runs(&self) -> Vec<(Identity, Runs)> {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id
            .values()
            .filter_map(|k| Some((k.index.identity, k.runs.clone()?)))
            .collect()
    }

    /// Takes in what `id`'s runs feed's last block says (checked by the
    /// caller against its position). A manifest never goes back to an
    /// older one, and a known one is not forgotten for a block that is no
    /// manifest (a cut the publisher is writing).
    pub fn set_manifest(&self, id: &Identity, state: ManifestState) {
        let kept = self.kept.lock().expect("kept lock").clone();
        let mut by_id = self.by_id.lock().expect("publishers lock");
        let Some(runs) = by_id.get_mut(&id.to_bytes()).and_then(|k| k.runs.as_mut()) else {
            return;
        };
        let newer = match (&runs.manifest, &state) {
            (ManifestState::At(old, _), ManifestState::At(new, _)) => new > old,
            (ManifestState::At(..), _) => false,
            (old, new) => old != new,
        };
        if newer {
            runs.manifest = state;
            // What a cut put into a run is no longer the tail: its records
            // are kept as if found, within the bound.
            let mut forgot = Vec::new();
            if let Some(k) = by_id.get_mut(&id.to_bytes()) {
                if let Some(Runs {
                    manifest: ManifestState::At(_, m),
                    ..
                }) = &k.runs
                {
                    let to = m.indexed_to;
                    // Keys a cut put in a run: kept only with a record.
                    let keys_to = m.keys_indexed_to;
                    let cut_keys: Vec<StorePath> = k
                        .tail_keys
                        .iter()
                        .filter(|(_, seq)| **seq < keys_to)
                        .map(|(p, _)| p.clone())
                        .collect();
                    for p in cut_keys {
                        k.tail_keys.remove(&p);
                        if !k.index.paths.contains_key(&p) {
                            k.releases.remove(&p);
                        }
                    }
                    let cut: Vec<StorePath> = k
                        .index
                        .paths
                        .iter()
                        .filter(|(p, (seq, _))| *seq < to && !k.found.contains(*p))
                        .map(|(p, _)| p.clone())
                        .collect();
                    for p in cut {
                        forgot.extend(bound_found(k, p, &kept));
                    }
                }
            }
            drop(by_id);
            self.unhash(forgot);
            self.bump_content();
        }
    }

    /// Takes in a path found by lookup in `id`'s runs: its record at index
    /// block `seq`, its listing's record if any, and its key release (each
    /// checked by the caller against the signed feeds and the path).
    pub(crate) fn insert_found(
        &self,
        id: &Identity,
        seq: u64,
        record: PathRecord,
        listing: Option<ListingRecord>,
        release: Option<KeyRelease>,
    ) {
        let path = record.store_path.clone();
        self.take(id, seq, Record::Path(Box::new(record)), true);
        if let Some(l) = listing {
            self.take(id, seq + 1, Record::Listing(l), true);
        }
        if let Some(r) = release {
            if r.store_path == path {
                self.add_key(id, r, None);
            }
        }
    }

    /// Never forgets the records of `paths` (the pinned ones), from now on.
    pub(crate) fn keep(&self, paths: Arc<HashSet<StorePath>>) {
        *self.kept.lock().expect("kept lock") = paths;
    }

    /// Drops forgotten paths from `by_hash` (each if it still names it).
    fn unhash(&self, forgot: Vec<StorePath>) {
        if forgot.is_empty() {
            return;
        }
        let mut by_hash = self.by_hash.lock().expect("by_hash lock");
        for p in forgot {
            if by_hash.get(p.hash_part()) == Some(&p) {
                by_hash.remove(p.hash_part());
            }
        }
    }

    /// Takes in index record `seq` as the index's follower read it.
    pub(crate) fn apply(&self, id: &Identity, seq: u64, record: Record) {
        self.take(id, seq, record, false)
    }

    /// [`Publishers::apply`], or (`found`) a record a lookup found.
    fn take(&self, id: &Identity, seq: u64, record: Record, found: bool) {
        let path = match &record {
            Record::Path(p) => Some(p.store_path.clone()),
            _ => None,
        };
        let kept = self.kept.lock().expect("kept lock").clone();
        let mut forgot = Vec::new();
        let taken = {
            let mut by_id = self.by_id.lock().expect("publishers lock");
            match by_id.get_mut(&id.to_bytes()) {
                Some(k) => {
                    // A path found by lookup may name a data feed the index
                    // declared in its part in runs: the manifest declares it.
                    if let (
                        Record::Path(p),
                        Some(Runs {
                            manifest: ManifestState::At(_, m),
                            ..
                        }),
                    ) = (&record, &k.runs)
                    {
                        if !k.index.feeds.contains_key(&p.data_feed) {
                            for d in m.feeds.iter().filter(|d| d.id == p.data_feed) {
                                k.index.apply(0, Record::Feed(d.clone()));
                            }
                        }
                    }
                    // A member's path that no trusted key signed is not
                    // taken: it is as if the index did not list it.
                    let refused = match (&record, &k.member) {
                        (Record::Path(p), Some(m)) => !m.takes(p),
                        _ => false,
                    };
                    if refused {
                        tracing::debug!(
                            seq,
                            "a group member's path no trusted key signed is not served"
                        );
                    } else {
                        k.index.apply(seq, record);
                    }
                    // Each record applied is a move: a miss waiting for
                    // this index keeps waiting while records arrive.
                    if let Some(p) = k.progress.as_mut() {
                        p.read(seq);
                    }
                    let taken = path.as_ref().is_some_and(|p| k.index.paths.contains_key(p));
                    match (found, taken, &path) {
                        (true, true, Some(p)) => forgot = bound_found(k, p.clone(), &kept),
                        // The tail's record now: not one a lookup found.
                        (false, true, Some(p)) => {
                            k.found.pop(p);
                        }
                        _ => {}
                    }
                    taken
                }
                None => false,
            }
        };
        self.unhash(forgot);
        // Only a record the index took is found by its hash.
        if let (Some(p), true) = (path, taken) {
            self.by_hash
                .lock()
                .expect("by_hash lock")
                .insert(p.hash_part().to_owned(), p);
        }
        if found {
            self.bump();
        } else {
            self.bump_content();
        }
    }

    /// Takes in a key release; `seq` is its block of the key feed when the
    /// key feed's follower read it (a move, as for [`Publishers::apply`]),
    /// `None` when a lookup found it.
    pub(crate) fn add_key(&self, id: &Identity, release: KeyRelease, seq: Option<u64>) {
        if let Some(k) = self
            .by_id
            .lock()
            .expect("publishers lock")
            .get_mut(&id.to_bytes())
        {
            if let Some(seq) = seq {
                k.tail_keys.insert(release.store_path.clone(), seq);
            }
            k.releases.insert(release.store_path, PathKey(release.key));
            if let (Some(p), Some(seq)) = (k.keys_progress.as_mut(), seq) {
                p.read(seq);
            }
        }
        if seq.is_some() {
            self.bump_content();
        } else {
            self.bump();
        }
    }

    /// The publisher, record and data-feed key of a published path.
    pub fn find(&self, path: &StorePath) -> Option<(Identity, PathRecord, [u8; 32])> {
        let by_id = self.by_id.lock().expect("publishers lock");
        // A trusted publisher's record before a group member's (whose NAR
        // must be read whole before it is served).
        let mut member = None;
        for k in by_id.values() {
            let Some((_, rec)) = k.index.paths.get(path) else {
                continue;
            };
            let Some(feed) = k.index.feeds.get(&rec.data_feed) else {
                continue;
            };
            let found = (k.index.identity, rec.clone(), feed.public_key);
            if k.member.is_none() {
                return Some(found);
            }
            member.get_or_insert(found);
        }
        member
    }

    /// The released key of a path, if it matches the index's commitment
    /// (a key feed is not trusted on its own).
    pub fn key(&self, id: &Identity, path: &StorePath) -> Option<PathKey> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let k = by_id.get(&id.to_bytes())?;
        let (_, rec) = k.index.paths.get(path)?;
        let key = k.releases.get(path)?;
        (key.check() == rec.key_check).then(|| key.clone())
    }

    /// Whether `id` is trusted by this node.
    pub fn is_trusted(&self, id: &Identity) -> bool {
        self.by_id
            .lock()
            .expect("publishers lock")
            .contains_key(&id.to_bytes())
    }

    /// Each trusted publisher: its identity, paths listed, keys released.
    pub fn summary(&self) -> Vec<(Identity, usize, usize)> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let mut out: Vec<_> = by_id
            .values()
            .map(|k| (k.index.identity, k.index.paths.len(), k.releases.len()))
            .collect();
        out.sort_by_key(|(id, _, _)| id.to_string());
        out
    }

    /// The web seeds each trusted publisher records in its index
    /// (`publish --web-seed-url`), latest list first applied.
    pub fn recorded_web_seeds(&self) -> Vec<([u8; 32], Vec<String>)> {
        let by_id = self.by_id.lock().expect("publishers lock");
        // A member's web seeds are not fetched from: a member could name any
        // URL (one inside this network) for the node to ask.
        by_id
            .iter()
            .filter(|(_, k)| k.member.is_none())
            .map(|(id, k)| (*id, k.index.web_seeds.clone()))
            .collect()
    }

    /// The web seeds publisher `id` records, if it is trusted.
    pub fn recorded_web_seeds_of(&self, id: &Identity) -> Option<Vec<String>> {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id
            .get(&id.to_bytes())
            .filter(|k| k.member.is_none())
            .map(|k| k.index.web_seeds.clone())
    }

    /// Resolves on the next record, key or gate change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Bumped on every record and key applied: a listing taken at one
    /// generation is current until it changes.
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Every path whose key is released (and matches its record), with its
    /// publisher's data-feed key: what a reader can open now.
    pub fn ready(&self) -> Vec<(PathRecord, [u8; 32])> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let mut out = Vec::new();
        for k in by_id.values() {
            for (path, (_, rec)) in &k.index.paths {
                let keyed = k
                    .releases
                    .get(path)
                    .is_some_and(|key| key.check() == rec.key_check);
                if let (true, Some(feed)) = (keyed, k.index.feeds.get(&rec.data_feed)) {
                    out.push((rec.clone(), feed.public_key));
                }
            }
        }
        drop(by_id);
        out.retain(|(rec, _)| self.admits(&rec.store_path));
        out
    }

    /// Number of paths known across publishers.
    pub fn path_count(&self) -> usize {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id.values().map(|k| k.index.paths.len()).sum()
    }
}

/// Counts `path` as found (the most recent) in `k`, and forgets the least
/// recently found past [`FOUND_MAX`]: their records, listings and keys.
/// Returns the paths forgotten (for `by_hash`). A path in `kept` is never
/// forgotten: it leaves the count instead.
fn bound_found(k: &mut Known, path: StorePath, kept: &HashSet<StorePath>) -> Vec<StorePath> {
    k.found.push(path, ());
    let mut forgot = Vec::new();
    while k.found.len() > FOUND_MAX {
        let Some((p, ())) = k.found.pop_lru() else {
            break;
        };
        if kept.contains(&p) {
            continue;
        }
        k.index.paths.remove(&p);
        k.index.listings.remove(&p);
        // A key the follower read is in no run yet: no lookup would find it.
        if !k.tail_keys.contains_key(&p) {
            k.releases.remove(&p);
        }
        forgot.push(p);
    }
    forgot
}

#[cfg(test)]
mod tests;
