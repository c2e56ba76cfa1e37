//! No second copy: what a node kept from the upstream (`keep.rs`) and is
//! now valid in the local Nix store is dropped from its feeds and made
//! again from the store when a peer or Nix asks for it.
//!
//! Every `--store-check-every`, the node's own index is read for its kept
//! paths and the Nix store asked (`nix-store --query --hash`) which of them
//! it holds with the NAR hash the record names. [`decide`] says what then
//! happens to each path; the shell ([`Remaker::sweep`]) does it through
//! the hubs (`hub/remake.rs`). A dropped block is made again by dumping the
//! path from the store (`nix-store --dump`), cutting it where the record's
//! layout cuts and sealing the segment as the keeper did: the same path
//! key (unwrapped from the record with the node key), the same nonce (the
//! segment's index), zstd at [`KEPT_ZSTD_LEVEL`] with the zstd the binary
//! was built with. The hub takes it back only if the feed's signed tree
//! names exactly that block; one that is not (the store path changed, a
//! different zstd) is never served, and its path is no longer offered.
//!
//! Bounded: the kept paths' records in memory (about 200 bytes each), at
//! most [`MAX_SESSIONS`] dumps open at once, each holding the last
//! [`RECENT`] blocks it made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::listing::{Kind as ListingKind, Listing};
use hypernar_feed::format::narinfo::NarHash;
use hypernar_feed::format::record::{unwrap_path_key, PathRecord, Record};
use hypernar_feed::format::segment::{Layout, Opener, PathKey};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::PublisherIndex;
use hypernar_fetcher::hub::Remake;
use hypernar_fetcher::node::Node;
use hypernar_fetcher::node::Shutdown;
use tracing::{info, warn};

mod segments;
use segments::{relative_path, FileSpan, Session};

/// The zstd level kept paths are sealed at: fixed, so a block made again
/// is the block kept.
pub const KEPT_ZSTD_LEVEL: i32 = 3;
/// Dumps of store paths kept open for the blocks after the one each
/// made.
pub const MAX_SESSIONS: usize = 8;
/// Dumps (`nix-store --dump` processes) open at once, shared or not.
pub const MAX_DUMPS: usize = 16;
/// Blocks a dump holds after making them (peers ask out of order; the hub
/// starts the lowest asked first). With [`MAX_SESSIONS`]: at most 64 MiB
/// of 256 KiB blocks.
pub const RECENT: usize = 32;
/// A dump left this long unused is closed.
const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Paths asked of `nix-store --query` at once.
const QUERY_BATCH: usize = 100;

/// Where a kept path's blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In the node's feeds (all, or some made again since they were
    /// dropped).
    Kept,
    /// Dropped, or some: valid in the Nix store, made again from it.
    Dropped,
    /// Dropped blocks the store no longer holds: not offered (until it
    /// holds the path again).
    Gone,
    /// A block made again was not the block the feed signed (the store
    /// path changed): not offered again while this node runs.
    Broken,
}

/// What to do about one kept path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Drop its stored blocks; `announce`: tell peers again that it is
    /// all here (some of it was not announced).
    Drop {
        announce: bool,
    },
    /// Tell peers again that it is all here.
    Announce,
    /// Tell peers the blocks not stored are gone.
    AnnounceGone,
}

/// What becomes of a kept path in `state`, `held` of whose `count` blocks
/// are stored, which the Nix store holds (`valid`) or not.
pub fn decide(state: State, valid: bool, held: u64, count: u64) -> (State, Action) {
    if state == State::Broken {
        // Left the store since (collected, maybe mid-dump): Gone, which
        // the store holding it again undoes.
        let state = if held >= count {
            State::Kept
        } else if valid {
            State::Broken
        } else {
            State::Gone
        };
        return (state, Action::Nothing);
    }
    if valid {
        let announce = state != State::Dropped && held < count;
        if held > 0 {
            (State::Dropped, Action::Drop { announce })
        } else if announce {
            (State::Dropped, Action::Announce)
        } else {
            (State::Dropped, Action::Nothing)
        }
    } else if held >= count {
        (State::Kept, Action::Nothing)
    } else if state == State::Gone {
        (State::Gone, Action::Nothing)
    } else {
        (State::Gone, Action::AnnounceGone)
    }
}

/// One kept path.
#[derive(Debug, Clone)]
struct Entry {
    path: StorePath,
    nar_hash: NarHash,
    layout: Layout,
    key: PathKey,
    first: u64,
    count: u64,
    state: State,
    /// Its regular files a segment long or more, where their contents are
    /// in its NAR: a segment inside one is read straight from the file.
    files: Arc<Vec<FileSpan>>,
    /// When a block of it was last made again: a path being read is not
    /// dropped again under its reader.
    made: Option<Instant>,
}

/// The [`Remake`] of a serve that keeps.
pub struct Remaker {
    me: std::sync::Weak<Remaker>,
    node: Node,
    /// The root of the Nix store's file system (`/`, or a chroot store).
    root: PathBuf,
    wrap_key: [u8; 32],
    index_key: [u8; 32],
    /// Kept paths by (data feed, first block).
    kept: Mutex<BTreeMap<([u8; 32], u64), Entry>>,
    index: Mutex<PublisherIndex>,
    sessions: Mutex<Vec<(StorePath, Arc<Mutex<Session>>)>>,
    /// A dump unused this long is closed: what it made may be stale (the
    /// store path changed since).
    idle: Duration,
    /// Whether the store could not be asked, said once.
    warned: std::sync::atomic::AtomicBool,
    /// Dumps open now (`segments::DumpCount`).
    dumps: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Remaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remaker").field("root", &self.root).finish()
    }
}

impl Remaker {
    /// Starts checking `node`'s kept paths against the Nix store rooted at
    /// `root` every `every`, and making their dropped blocks again.
    pub fn start(node: &Node, secret: &PublisherSecret, root: PathBuf, every: Duration) {
        let me = Arc::new_cyclic(|me| Remaker {
            me: me.clone(),
            node: node.clone(),
            root,
            wrap_key: secret.wrap_key(),
            index_key: secret.identity().to_bytes(),
            kept: Mutex::new(BTreeMap::new()),
            index: Mutex::new(PublisherIndex::new(secret.identity())),
            sessions: Mutex::new(Vec::new()),
            idle: every.min(SESSION_IDLE),
            warned: Default::default(),
            dumps: Default::default(),
        });
        node.swarm().set_remake(me.clone());
        let stop = node.shutdown_token();
        node.spawn(async move { me.run(every, stop).await });
    }

    async fn run(self: Arc<Self>, every: Duration, stop: Shutdown) {
        loop {
            self.sweep().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Reads the kept paths new in the node's index.
    async fn catch_up(&self) {
        let Some(hub) = self.node.swarm().hub(&self.index_key) else {
            return;
        };
        let length = hub.state().borrow().length;
        let mut from = self.index.lock().expect("index lock").len;
        let mut fresh = Vec::new();
        while from < length {
            match hub.get(from).await {
                Ok(block) => {
                    let mut index = self.index.lock().expect("index lock");
                    match Record::decode(&block) {
                        Ok(Record::Path(p)) => {
                            fresh.push((*p).clone());
                            index.apply(from, Record::Path(p));
                        }
                        Ok(r) => index.apply(from, r),
                        Err(e) => {
                            warn!(seq = from, %e, "a record of this node's own index does not decode");
                            index.len = from + 1;
                        }
                    }
                }
                Err(e) => {
                    // What was read is taken; the rest at the next check.
                    warn!(%e, "reading this node's own index");
                    break;
                }
            }
            from += 1;
        }
        let mut made = Vec::new();
        for p in fresh {
            let entry = {
                let index = self.index.lock().expect("index lock");
                self.entry(&index, &p)
                    .map(|e| (e, index.listings.get(&p.store_path).cloned()))
            };
            let Some(((at, mut e), listing)) = entry else {
                continue;
            };
            if let Some(l) = listing {
                e.files = Arc::new(self.big_files(&at.0, &e, &l).await);
            }
            made.push((at, e));
        }
        let mut kept = self.kept.lock().expect("kept lock");
        kept.extend(made);
    }

    /// The regular files of a kept path at least a segment long, from its
    /// listing (read from the node's own feed and opened with the path's
    /// listing key); none if the listing cannot be read.
    async fn big_files(
        &self,
        feed: &[u8; 32],
        e: &Entry,
        l: &hypernar_feed::format::record::ListingRecord,
    ) -> Vec<FileSpan> {
        let Some(hub) = self.node.swarm().hub(feed) else {
            return Vec::new();
        };
        let Ok(layout) = Layout::new(e.path.clone(), l.size, e.layout.segment_size) else {
            return Vec::new();
        };
        let Ok(mut opener) = Opener::new(layout, &e.key.listing()) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        for i in 0..l.block_count {
            let Ok(mut block) = hub.get(l.first_block + i).await else {
                return Vec::new();
            };
            if opener.open_into(i, &mut block, &mut bytes).is_err() {
                return Vec::new();
            }
        }
        let Ok(listing) = Listing::decode(&bytes, e.layout.nar_size) else {
            return Vec::new();
        };
        let min = u64::from(e.layout.segment_size);
        (0..listing.len() as u32)
            .filter_map(|i| {
                let entry = listing.get(i)?;
                let ListingKind::Regular { size, offset, .. } = entry.kind else {
                    return None;
                };
                if size < min {
                    return None;
                }
                Some(FileSpan {
                    offset,
                    size,
                    rel: relative_path(&listing, i)?,
                })
            })
            .collect()
    }

    fn entry(&self, index: &PublisherIndex, p: &PathRecord) -> Option<(([u8; 32], u64), Entry)> {
        let feed = index.feeds.get(&p.data_feed)?.public_key;
        let key = unwrap_path_key(&self.wrap_key, &p.store_path, &p.wrapped_key)?;
        let layout = p.layout().ok()?;
        Some((
            (feed, p.first_block),
            Entry {
                path: p.store_path.clone(),
                nar_hash: p.nar_hash,
                layout,
                key,
                first: p.first_block,
                count: p.block_count,
                state: State::Kept,
                files: Arc::new(Vec::new()),
                made: None,
            },
        ))
    }

    /// Checks every kept path against the store and acts on [`decide`].
    async fn sweep(self: &Arc<Self>) {
        self.catch_up().await;
        let entries: Vec<(([u8; 32], u64), Entry)> = self
            .kept
            .lock()
            .expect("kept lock")
            .iter()
            .map(|(k, e)| (*k, e.clone()))
            .collect();
        if entries.is_empty() {
            return;
        }
        let me = self.clone();
        let paths: Vec<(StorePath, NarHash)> = entries
            .iter()
            .map(|(_, e)| (e.path.clone(), e.nar_hash))
            .collect();
        let valid = match tokio::task::spawn_blocking(move || me.valid(&paths)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    warn!("cannot ask the Nix store which kept paths it holds, so their blocks are kept (asked again every check; said once): {e}");
                }
                return;
            }
            Err(_) => return,
        };
        let (mut dropped, mut blocks) = (0usize, 0u64);
        for ((feed, first), e) in entries.into_iter() {
            let valid = valid.get(&e.path).copied().unwrap_or(false);
            let Some(hub) = self.node.swarm().hub(&feed) else {
                continue;
            };
            let Ok(held) = hub.held(e.first, e.first + e.count).await else {
                continue;
            };
            // The new state first (a hub drops only what is covered), and
            // only if the path's state is still the one decided on: a
            // block found wrong meanwhile (Broken) stays so.
            let action = {
                let mut kept = self.kept.lock().expect("kept lock");
                let Some(k) = kept.get_mut(&(feed, first)) else {
                    continue;
                };
                if k.state != e.state {
                    continue;
                }
                let (state, mut action) = decide(k.state, valid, held, e.count);
                // Made again for a reader since the last check: dropped at
                // a later one, not under it.
                if k.made.is_some_and(|t| t.elapsed() < self.idle * 2) {
                    if let Action::Drop { announce } = action {
                        action = if announce {
                            Action::Announce
                        } else {
                            Action::Nothing
                        };
                    }
                }
                k.state = state;
                action
            };
            match action {
                Action::Nothing => {}
                Action::Drop { announce } => {
                    match hub.drop_own(e.first, e.first + e.count).await {
                        Ok(n) => {
                            dropped += 1;
                            blocks += n;
                        }
                        Err(err) => {
                            warn!(path = %e.path, "dropping the blocks of a kept path: {err}");
                        }
                    }
                    if announce {
                        hub.announce_held().await;
                    }
                }
                Action::Announce => hub.announce_held().await,
                Action::AnnounceGone => {
                    warn!(path = %e.path, "a kept path whose blocks were dropped is no longer in the Nix store: it is no longer offered");
                    hub.announce_dropped(e.first, e.first + e.count).await;
                }
            }
        }
        if dropped > 0 {
            info!(
                paths = dropped,
                blocks,
                "dropped the blocks of kept paths the Nix store holds: made again from it when asked for"
            );
        }
    }

    /// Which of `paths` the Nix store holds with that NAR hash.
    fn valid(
        &self,
        paths: &[(StorePath, NarHash)],
    ) -> Result<std::collections::HashMap<StorePath, bool>, String> {
        let mut out = std::collections::HashMap::new();
        // Paths on disk asked about, and those the store answered for.
        let (mut asked, mut known) = (0usize, 0usize);
        for chunk in paths.chunks(QUERY_BATCH) {
            // Only what is on disk is asked about: nix-store fails the
            // whole query on one path it does not know.
            let present: Vec<&(StorePath, NarHash)> = chunk
                .iter()
                .filter(|(p, _)| self.real_path(p).symlink_metadata().is_ok())
                .collect();
            for (p, _) in chunk {
                out.insert(p.clone(), false);
            }
            if present.is_empty() {
                continue;
            }
            asked += present.len();
            match self.query_hashes(present.iter().map(|(p, _)| p)) {
                Ok(hashes) if hashes.len() == present.len() => {
                    for ((p, want), got) in present.iter().zip(hashes) {
                        known += usize::from(got.is_some());
                        out.insert(p.clone(), got.as_ref() == Some(want));
                    }
                }
                // One is not valid (or the answer is odd): one at a time.
                _ => {
                    for (p, want) in present {
                        let got = self.query_hashes(std::iter::once(p))?;
                        known += usize::from(got.first().is_some_and(Option::is_some));
                        out.insert(
                            p.clone(),
                            got.first().and_then(|h| h.as_ref()) == Some(want),
                        );
                    }
                }
            }
        }
        // Not one path on disk known to the store: the store was not
        // answering (a daemon down), which says nothing of the paths.
        if asked > 0 && known == 0 {
            return Err(format!(
                "nix-store --query --hash knew none of the {asked} kept paths on disk"
            ));
        }
        Ok(out)
    }

    /// `nix-store --query --hash` of `paths`: one hash each, or `Err` only
    /// if nix-store cannot be run. A failed query of one path is `None`.
    fn query_hashes<'a>(
        &self,
        paths: impl Iterator<Item = &'a StorePath>,
    ) -> Result<Vec<Option<NarHash>>, String> {
        let mut cmd = std::process::Command::new("nix-store");
        if self.root != Path::new("/") {
            cmd.arg("--store").arg(&self.root);
        }
        cmd.args(["--query", "--hash"]);
        let mut n = 0;
        for p in paths {
            cmd.arg(p.to_string());
            n += 1;
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running nix-store: {e}"))?;
        if !out.status.success() {
            return Ok(vec![None; n.min(1)]);
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| NarHash::parse(l.trim()).ok())
            .collect())
    }

    fn real_path(&self, p: &StorePath) -> PathBuf {
        let s = p.to_string();
        self.root.join(s.trim_start_matches('/'))
    }

    /// The kept path block `index` of data feed `feed` belongs to.
    fn entry_at(&self, feed: &[u8; 32], index: u64) -> Option<Entry> {
        let kept = self.kept.lock().expect("kept lock");
        let (k, e) = kept.range(..=(*feed, index)).next_back()?;
        (&k.0 == feed && index < e.first + e.count).then(|| e.clone())
    }
}

impl Remake for Remaker {
    fn covers(&self, feed: &[u8; 32], index: u64) -> bool {
        let kept = self.kept.lock().expect("kept lock");
        kept.range(..=(*feed, index))
            .next_back()
            .is_some_and(|(k, e)| {
                &k.0 == feed && index < e.first + e.count && e.state == State::Dropped
            })
    }

    fn remake(
        &self,
        feed: [u8; 32],
        index: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        let (Some(e), Some(me)) = (self.entry_at(&feed, index), self.me.upgrade()) else {
            return Box::pin(async { None });
        };
        if let Some(k) = self
            .kept
            .lock()
            .expect("kept lock")
            .get_mut(&(feed, e.first))
        {
            k.made = Some(Instant::now());
        }
        Box::pin(async move {
            let path = e.path.clone();
            match tokio::task::spawn_blocking(move || me.make(&e, index)).await {
                Ok(Ok(block)) => Some(block),
                Ok(Err(err)) => {
                    warn!(%path, index, "making a dropped block again from the Nix store: {err}");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn failed(&self, feed: &[u8; 32], index: u64) -> Option<std::ops::Range<u64>> {
        let mut kept = self.kept.lock().expect("kept lock");
        let (k, e) = kept.range_mut(..=(*feed, index)).next_back()?;
        if &k.0 != feed || index >= e.first + e.count {
            return None;
        }
        e.state = State::Broken;
        Some(e.first..e.first + e.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_in_the_store_is_dropped_and_announced_again_where_it_was_not() {
        // Kept, all blocks here, now in the store: dropped; nothing was
        // missing from what peers were told.
        assert_eq!(
            decide(State::Kept, true, 8, 8),
            (State::Dropped, Action::Drop { announce: false })
        );
        // After a restart some were dropped and not announced: announced.
        assert_eq!(
            decide(State::Kept, true, 3, 8),
            (State::Dropped, Action::Drop { announce: true })
        );
        assert_eq!(
            decide(State::Kept, true, 0, 8),
            (State::Dropped, Action::Announce)
        );
        // Made again for a peer since: dropped again, quietly.
        assert_eq!(
            decide(State::Dropped, true, 2, 8),
            (State::Dropped, Action::Drop { announce: false })
        );
        assert_eq!(
            decide(State::Dropped, true, 0, 8),
            (State::Dropped, Action::Nothing)
        );
        // Back in the store after it was gone: offered again.
        assert_eq!(
            decide(State::Gone, true, 0, 8),
            (State::Dropped, Action::Announce)
        );
    }

    #[test]
    fn a_path_not_in_the_store_is_kept_if_whole_and_unoffered_if_not() {
        assert_eq!(
            decide(State::Kept, false, 8, 8),
            (State::Kept, Action::Nothing)
        );
        assert_eq!(
            decide(State::Dropped, false, 8, 8),
            (State::Kept, Action::Nothing)
        );
        assert_eq!(
            decide(State::Dropped, false, 5, 8),
            (State::Gone, Action::AnnounceGone)
        );
        assert_eq!(
            decide(State::Kept, false, 0, 8),
            (State::Gone, Action::AnnounceGone)
        );
        assert_eq!(
            decide(State::Gone, false, 0, 8),
            (State::Gone, Action::Nothing)
        );
    }

    #[test]
    fn a_path_made_again_wrong_is_never_offered_again_while_the_node_runs() {
        // The store still says it holds the path (its database does not
        // see a file changed under it): not offered, not dropped.
        assert_eq!(
            decide(State::Broken, true, 0, 8),
            (State::Broken, Action::Nothing)
        );
        assert_eq!(
            decide(State::Broken, true, 4, 8),
            (State::Broken, Action::Nothing)
        );
        assert_eq!(
            decide(State::Broken, false, 8, 8),
            (State::Kept, Action::Nothing)
        );
        // Collected from the store since: gone, offered again once back.
        assert_eq!(
            decide(State::Broken, false, 2, 8),
            (State::Gone, Action::Nothing)
        );
    }
}
