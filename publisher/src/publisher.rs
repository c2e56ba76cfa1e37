//! The publisher: owns a data directory, its feeds and its commit journal.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypernar_feed::format::identity::{
    Identity, PublisherSecret, DATA_FEED_0, INDEX_FEED, PUBLIC_KEYS_FEED, RUNS_FEED,
};
use hypernar_feed::format::narinfo::NarInfo;
use hypernar_feed::format::nixkey::{self, NixPublicKey};
use hypernar_feed::format::record::{
    wrap_path_key, FeedDecl, FeedHeader, FeedRole, ListingRecord, PathRecord, Record, WebSeedList,
};
use hypernar_feed::format::run::{self, Manifest, PathHash, RunEntry};
use hypernar_feed::format::segment::{ENVELOPE_OVERHEAD, MAX_SEGMENT_SIZE};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::{ensure_header, FeedIo, FeedOpener};
use hypernar_feed::store::FeedStore;
use hypernar_feed::PublisherIndex;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::error::PublishError;
use crate::journal::{self, Pending, PendingListing};
use crate::origin::{Origin, OriginError};
pub use crate::release::audience_feed_name;
use crate::release::releases_in;
use crate::runs;
use crate::spool::{self, PrepareError, Prepared, SealSettings, SpoolReader};

/// Most bytes appended to the data feed in one hypercore batch.
const BATCH_BYTES: usize = 8 << 20;
/// Narinfos fetched at once while walking a closure.
const NARINFO_CONCURRENCY: usize = 16;

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Follow `References:` from the named paths.
    pub closure: bool,
    /// Publish every narinfo of a `file://` cache.
    pub all: bool,
    /// Release keys to the public key feed as paths are published.
    pub release: bool,
    /// Paths prepared (downloaded, compressed, sealed) at once.
    pub jobs: usize,
    pub seal: SealSettings,
    /// Index entries not yet in a run that make one (`runs.rs`).
    pub run_tail: u64,
    /// Blocks a data feed holds before the next is opened (`data.rs`).
    pub data_feed_blocks: u64,
    /// If not empty, a narinfo is published (and its references followed)
    /// only if one of these keys signed it: what `follow` asks of an
    /// upstream; any other is refused ([`PublishSummary::refused`]).
    pub trusted_keys: Vec<NixPublicKey>,
    /// Publish the paths the most others in the plan reference first (a
    /// half-done closure is then already useful), not in the order found.
    pub most_referenced_first: bool,
}

/// Receives progress; the CLI draws it, tests ignore it.
pub trait Progress: Send + Sync {
    /// The plan is known: how many paths and NAR bytes will be prepared.
    fn planned(&self, _paths: u64, _nar_bytes: u64) {}
    /// NAR bytes read and sealed.
    fn nar_bytes(&self, _n: u64) {}
    /// A path was committed, skipped or failed.
    fn path_done(&self, _path: &StorePath, _outcome: &Outcome) {}
}

/// Sorts `plan` so the paths the most others in it reference come first
/// (ties in the order found): a closure half published is then mostly the
/// paths everything needs.
fn order_by_referrers(plan: &mut [NarInfo]) {
    let mut referrers: HashMap<String, u64> = HashMap::new();
    for info in plan.iter() {
        for r in info.references.iter().filter(|r| **r != info.store_path) {
            *referrers.entry(r.hash_part().to_owned()).or_default() += 1;
        }
    }
    plan.sort_by_key(|i| {
        std::cmp::Reverse(
            referrers
                .get(i.store_path.hash_part())
                .copied()
                .unwrap_or(0),
        )
    });
}

/// No progress output.
#[derive(Debug)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What happened to one path.
#[derive(Debug, Clone)]
pub enum Outcome {
    Published {
        stored_bytes: u64,
    },
    AlreadyPublished,
    /// The path was refused (its NAR did not match its narinfo, its source
    /// failed, …); the run goes on with the others.
    Failed(Arc<PrepareError>),
}

/// What a publish run did.
#[derive(Debug, Default)]
pub struct PublishSummary {
    pub published: u64,
    pub already: u64,
    pub released: u64,
    pub failed: Vec<String>,
    /// Of `failed`: paths the source does not have (404), as named or
    /// referenced.
    pub missing: Vec<String>,
    /// Of `failed`: narinfos refused because no trusted key signed them
    /// (with `trusted_keys`): never published.
    pub refused: Vec<String>,
    /// Where every path of the walk published now or before is, in this
    /// publisher's index and public key feed: the closure's table when
    /// the walk is a release's (`generations.rs`).
    pub entries: Vec<RunEntry>,
    pub nar_bytes: u64,
    pub stored_bytes: u64,
    pub elapsed: Duration,
}

/// What a release run did.
#[derive(Debug)]
pub struct ReleaseSummary {
    pub released: u64,
    pub already: u64,
    /// The key feed's public key in text form: the token an audience needs.
    pub feed_token: String,
    pub feed_name: String,
}

/// A publisher with its data directory open and locked.
/// A publisher with its feeds open: on its own (`Publisher<FeedStore>`,
/// holding the data directory's lock) or inside a running node, through
/// the node's feed hubs.
pub struct Publisher<O: FeedOpener = FeedStore> {
    pub(crate) secret: PublisherSecret,
    dir: PathBuf,
    staging: PathBuf,
    pub(crate) opener: O,
    pub(crate) index_feed: O::Feed,
    pub(crate) data: O::Feed,
    pub(crate) public_keys: O::Feed,
    /// The index's runs and manifests (`runs.rs`).
    pub(crate) runs: O::Feed,
    /// The runs feed's last manifest (empty before the first run).
    pub(crate) manifest: Manifest,
    /// Tail entries that make a run.
    pub(crate) run_tail: u64,
    /// The tail of the index: records past the manifest's `indexed_to`
    /// (`published.rs`), with the feed declarations and web seeds of all.
    pub(crate) index: PublisherIndex,
    /// The tail's paths by hash part.
    pub(crate) by_hash: HashMap<String, StorePath>,
    /// Key releases past the manifest's `keys_indexed_to`, by path hash,
    /// at their block of the public key feed.
    pub(crate) released: HashMap<PathHash, u64>,
    pub(crate) data_id: u32,
    /// Blocks a data feed holds before the next is opened (`data.rs`).
    pub(crate) data_bound: u64,
    /// The generations feed, once declared (`generations.rs`).
    pub(crate) generations: Option<crate::generations::GenerationsFeed<O::Feed>>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_owned(),
        source,
    }
}

impl<O: FeedOpener> std::fmt::Debug for Publisher<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("identity", &self.index.identity)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Publisher<FeedStore> {
    /// Opens (creating if needed) the publisher's data directory, takes its
    /// lock, makes sure every feed has its header and declaration, and
    /// finishes any commit a previous run was killed in the middle of.
    pub async fn open(dir: &Path, secret: PublisherSecret) -> Result<Self, PublishError> {
        hypernar_feed::private::create_dir_all(dir).map_err(io_err(dir))?;
        let store = FeedStore::open(dir)?;
        Publisher::open_with(store, dir, secret).await
    }
}

impl<O: FeedOpener> Publisher<O> {
    /// Like [`Publisher::open`], with feeds opened by `opener` (a running
    /// node's hubs) in a data directory the caller already holds.
    pub async fn open_with(
        opener: O,
        dir: &Path,
        secret: PublisherSecret,
    ) -> Result<Self, PublishError> {
        let staging = dir.join("staging");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .map_err(io_err(&staging))?;
        let identity = secret.identity();
        let me = identity.to_bytes();
        let mut index_feed = opener
            .writable(&secret.feed_signing_key(INDEX_FEED))
            .await?;
        let mut data = opener
            .writable(&secret.feed_signing_key(DATA_FEED_0))
            .await?;
        let mut public_keys = opener
            .writable(&secret.feed_signing_key(PUBLIC_KEYS_FEED))
            .await?;
        let mut runs_feed = opener.writable(&secret.feed_signing_key(RUNS_FEED)).await?;
        ensure_header(
            &mut index_feed,
            FeedHeader::new(FeedRole::Index, me, INDEX_FEED),
        )
        .await?;
        ensure_header(&mut data, FeedHeader::new(FeedRole::Data, me, DATA_FEED_0)).await?;
        ensure_header(
            &mut public_keys,
            FeedHeader::new(FeedRole::Keys, me, PUBLIC_KEYS_FEED),
        )
        .await?;
        ensure_header(
            &mut runs_feed,
            FeedHeader::new(FeedRole::Runs, me, RUNS_FEED),
        )
        .await?;

        // Only the tail is read: what is older is found in the runs.
        let manifest = runs::last_manifest(&mut runs_feed).await?;
        if manifest.indexed_to > index_feed.length()
            || manifest.keys_indexed_to > public_keys.length()
        {
            return Err(PublishError::Inconsistent(format!(
                "the runs' manifest indexes {} index blocks and {} key blocks; the feeds hold {} and {}",
                manifest.indexed_to,
                manifest.keys_indexed_to,
                index_feed.length(),
                public_keys.length()
            )));
        }
        let mut index = PublisherIndex::new(identity);
        index.feeds = manifest.feeds.iter().map(|d| (d.id, d.clone())).collect();
        index.web_seeds = manifest.web_seeds.clone();
        index.len = manifest.indexed_to;
        index.catch_up(&mut index_feed).await?;
        // Ids in this order (data/0 is 0 and keys/public 1 in a new index);
        // written with the runs feed first, so that a fetcher reading a new
        // index learns from its block 1 that the index is looked up in runs
        // before it replicates anything else of it (docs/protocol.md).
        let mut missing = Vec::new();
        let mut next_id = index.feeds.keys().max().map_or(0, |m| m + 1);
        for (role, name, key) in [
            (FeedRole::Data, DATA_FEED_0, data.public_key()),
            (FeedRole::Keys, PUBLIC_KEYS_FEED, public_keys.public_key()),
            (FeedRole::Runs, RUNS_FEED, runs_feed.public_key()),
        ] {
            if index.feed_named(role, name).is_none() {
                missing.push(FeedDecl {
                    id: next_id,
                    role,
                    name: name.to_owned(),
                    public_key: key.to_bytes(),
                });
                next_id += 1;
            }
        }
        missing.sort_by_key(|d| d.role != FeedRole::Runs);
        for decl in missing {
            index_feed.write(vec![Record::Feed(decl).encode()]).await?;
            index.catch_up(&mut index_feed).await?;
        }
        // Blocks go to the newest declared data feed (`data.rs`).
        let current = index
            .feeds
            .values()
            .filter(|d| d.role == FeedRole::Data)
            .max_by_key(|d| d.id)
            .expect("declared above")
            .clone();
        if current.name != DATA_FEED_0 {
            data = opener
                .writable(&secret.feed_signing_key(&current.name))
                .await?;
            ensure_header(
                &mut data,
                FeedHeader::new(FeedRole::Data, me, &current.name),
            )
            .await?;
            if data.public_key().to_bytes() != current.public_key {
                return Err(PublishError::Inconsistent(format!(
                    "the index declares {} with another key than this publisher's",
                    current.name
                )));
            }
        }
        let data_id = current.id;
        let released = releases_in(&mut public_keys, manifest.keys_indexed_to)
            .await?
            .into_iter()
            .map(|(p, at)| (run::path_hash(&p), at))
            .collect();
        let by_hash = index
            .paths
            .keys()
            .map(|p| (p.hash_part().to_owned(), p.clone()))
            .collect();
        let mut publisher = Publisher {
            secret,
            dir: dir.to_owned(),
            staging,
            opener,
            index_feed,
            data,
            public_keys,
            runs: runs_feed,
            manifest,
            run_tail: runs::DEFAULT_RUN_TAIL,
            index,
            by_hash,
            released,
            data_id,
            data_bound: crate::data::DEFAULT_DATA_FEED_BLOCKS,
            generations: None,
        };
        publisher.open_generations().await?;
        publisher.recover().await?;
        Ok(publisher)
    }

    /// Brings the web-seed copy under `root` of the index, data and public
    /// key feeds up to date (never an audience's key feed: its blocks are
    /// for that audience only). Returns each feed's new length.
    pub async fn sync_web_seed(&mut self, root: &Path) -> Result<Vec<u64>, PublishError> {
        let mut out = Vec::new();
        // The data feeds before the current one (`data.rs`): full, but a
        // copy made before they filled is brought up to date once.
        let mut older: Vec<FeedDecl> = self
            .index
            .feeds
            .values()
            .filter(|d| d.role == FeedRole::Data && d.id != self.data_id)
            .cloned()
            .collect();
        older.sort_by_key(|d| d.id);
        for decl in older {
            let mut feed = self
                .opener
                .writable(&self.secret.feed_signing_key(&decl.name))
                .await?;
            if let Some(head) = feed.sync_web_seed(root).await? {
                out.push(head.length);
            }
        }
        for feed in [
            &mut self.index_feed,
            &mut self.data,
            &mut self.public_keys,
            &mut self.runs,
        ] {
            if let Some(head) = feed.sync_web_seed(root).await? {
                out.push(head.length);
            }
        }
        if let Some(g) = &mut self.generations {
            if let Some(head) = g.feed.sync_web_seed(root).await? {
                out.push(head.length);
            }
        }
        Ok(out)
    }

    /// Records in the index where the web seed is hosted, so fetchers that
    /// trust this publisher use it without configuration. Appends a record
    /// only when `urls` differ from the last recorded list; an empty list
    /// withdraws it. Returns whether a record was written.
    pub async fn record_web_seed_urls(&mut self, urls: Vec<String>) -> Result<bool, PublishError> {
        if urls == self.index.web_seeds {
            return Ok(false);
        }
        let list = WebSeedList { urls };
        list.check()
            .map_err(|why| PublishError::WebSeedUrl(why.to_owned()))?;
        self.index_feed
            .write(vec![Record::WebSeeds(list).encode()])
            .await?;
        self.index.catch_up(&mut self.index_feed).await?;
        Ok(true)
    }

    /// The web-seed URLs recorded in the index.
    pub fn web_seed_urls(&self) -> &[String] {
        &self.index.web_seeds
    }

    /// The publisher identity.
    pub fn identity(&self) -> Identity {
        self.index.identity
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn recover(&mut self) -> Result<(), PublishError> {
        let pending = journal::read(&self.staging).map_err(io_err(&self.staging))?;
        if let Some(pending) = pending {
            info!(path = %pending.record.store_path, "finishing a commit interrupted by an earlier run");
            self.finish(pending).await?;
        }
        // Spools of runs killed while preparing: no journal names them.
        let entries = std::fs::read_dir(&self.staging).map_err(io_err(&self.staging))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".spool") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Publishes `roots` (hash parts) from `source`.
    pub async fn publish(
        &mut self,
        source: Arc<Origin>,
        roots: Vec<String>,
        opts: &PublishOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PublishSummary, PublishError> {
        let started = Instant::now();
        self.set_run_tail(opts.run_tail);
        self.set_data_feed_blocks(opts.data_feed_blocks);
        if opts.all && source.dir().is_none() {
            return Err(PublishError::Cache {
                url: source.describe(),
                source: OriginError::NotListable,
            });
        }
        let check = source.clone();
        tokio::task::spawn_blocking(move || check.check_cache_info())
            .await
            .expect("cache info task")
            .map_err(|e| PublishError::Cache {
                url: source.describe(),
                source: e,
            })?;
        let mut roots = roots;
        if opts.all {
            let lister = source.clone();
            roots.extend(
                tokio::task::spawn_blocking(move || lister.list())
                    .await
                    .expect("list task")
                    .map_err(|e| PublishError::Cache {
                        url: source.describe(),
                        source: e,
                    })?,
            );
        }
        let mut summary = PublishSummary::default();
        let mut plan = self
            .plan(&source, roots, opts, &mut summary, &*progress)
            .await?;
        if opts.most_referenced_first {
            order_by_referrers(&mut plan);
        }
        let nar_total: u64 = plan.iter().map(|i| i.nar_size).sum();
        progress.planned(plan.len() as u64, nar_total);

        // Prepare up to `jobs` paths at once; commit each as it is ready.
        let mut queue: VecDeque<NarInfo> = plan.into();
        let mut running: JoinSet<Result<Prepared, PrepareError>> = JoinSet::new();
        loop {
            while running.len() < opts.jobs.max(1) {
                let Some(info) = queue.pop_front() else { break };
                let (source, staging, seal, progress) = (
                    source.clone(),
                    self.staging.clone(),
                    opts.seal,
                    progress.clone(),
                );
                running.spawn_blocking(move || {
                    spool::prepare(&source, info, seal, &staging, &|n| progress.nar_bytes(n))
                });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done.expect("prepare task panicked") {
                Ok(prepared) => {
                    let path = prepared.info.store_path.clone();
                    let (nar, stored) = (prepared.info.nar_size, prepared.stored_bytes);
                    self.commit(prepared, opts.release).await?;
                    // Where it went, before a cut forgets the tail.
                    if let Some(found) = self.find_in_tail(path.hash_part()) {
                        summary.entries.push(runs::entry(
                            run::path_hash(&path),
                            found.index_seq,
                            found.key_seq,
                        ));
                    }
                    // A long run cuts as it goes, so the tail stays bounded.
                    self.cut_runs().await?;
                    summary.published += 1;
                    info!(%path, nar_bytes = nar, stored_bytes = stored, "published");
                    summary.released += opts.release as u64;
                    summary.nar_bytes += nar;
                    summary.stored_bytes += stored;
                    progress.path_done(
                        &path,
                        &Outcome::Published {
                            stored_bytes: stored,
                        },
                    );
                }
                // A local write error is no fault of the path: stop, keeping
                // every path committed so far; a later run goes on from there.
                Err(PrepareError::Spool { spool, source, .. }) => {
                    return Err(PublishError::Io {
                        path: spool,
                        source,
                    })
                }
                Err(e) => {
                    let path = prepare_error_path(&e).clone();
                    info!(%e, "path not published");
                    summary.failed.push(e.to_string());
                    progress.path_done(&path, &Outcome::Failed(Arc::new(e)));
                }
            }
        }
        self.cut_runs().await?;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Resolves roots (and their closure) to the narinfos still to publish.
    /// Paths already in the index are counted and skipped; failures are
    /// recorded in `summary` and do not stop the others.
    async fn plan(
        &mut self,
        source: &Arc<Origin>,
        roots: Vec<String>,
        opts: &PublishOptions,
        summary: &mut PublishSummary,
        progress: &dyn Progress,
    ) -> Result<Vec<NarInfo>, PublishError> {
        let closure = opts.closure;
        let keys = &opts.trusted_keys;
        let mut seen: HashSet<String> = HashSet::new();
        let mut frontier: Vec<(String, Option<StorePath>)> =
            roots.into_iter().map(|h| (h, None)).collect();
        let mut plan = Vec::new();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            let mut fetches = JoinSet::new();
            for (hash, referrer) in frontier.drain(..) {
                if !seen.insert(hash.clone()) {
                    continue;
                }
                if let Some(found) = self.find(&hash).await? {
                    let rec = self.record_at(found.index_seq).await?;
                    summary.already += 1;
                    summary.entries.push(runs::entry(
                        run::path_hash(&rec.store_path),
                        found.index_seq,
                        found.key_seq,
                    ));
                    progress.path_done(&rec.store_path, &Outcome::AlreadyPublished);
                    if closure {
                        next.extend(
                            rec.references
                                .iter()
                                .map(|r| (r.hash_part().to_owned(), Some(rec.store_path.clone()))),
                        );
                    }
                    continue;
                }
                let source = source.clone();
                fetches.spawn_blocking(move || {
                    let r = source.narinfo(&hash);
                    (hash, referrer, r)
                });
                if fetches.len() >= NARINFO_CONCURRENCY {
                    let done = fetches
                        .join_next()
                        .await
                        .expect("non-empty")
                        .expect("narinfo task");
                    self.planned(done, closure, keys, &mut plan, &mut next, summary);
                }
            }
            while let Some(done) = fetches.join_next().await {
                self.planned(
                    done.expect("narinfo task"),
                    closure,
                    keys,
                    &mut plan,
                    &mut next,
                    summary,
                );
            }
            frontier = next;
        }
        Ok(plan)
    }

    fn planned(
        &self,
        (hash, referrer, result): (String, Option<StorePath>, Result<NarInfo, OriginError>),
        closure: bool,
        keys: &[NixPublicKey],
        plan: &mut Vec<NarInfo>,
        next: &mut Vec<(String, Option<StorePath>)>,
        summary: &mut PublishSummary,
    ) {
        let named = |what: &str| match &referrer {
            Some(by) => format!("{hash} (a reference of {by}): {what}"),
            None => format!("{hash}: {what}"),
        };
        match result {
            Ok(info) if info.store_path.hash_part() != hash => summary.failed.push(format!(
                "{hash}.narinfo describes {} instead",
                info.store_path
            )),
            // Refused before anything of it is fetched or followed.
            Ok(info) if !keys.is_empty() && nixkey::signed_by(&info, keys).is_none() => {
                let names: Vec<&str> = keys.iter().map(|k| k.name()).collect();
                let msg = named(&format!(
                    "{} is not signed by a trusted key ({}): not published",
                    info.store_path,
                    names.join(", ")
                ));
                info!("{msg}");
                summary.failed.push(msg.clone());
                summary.refused.push(msg);
            }
            Err(e @ OriginError::NotFound(_)) => {
                let msg = named(&e.to_string());
                info!("{msg}");
                summary.failed.push(msg.clone());
                summary.missing.push(msg);
            }
            Ok(info) => {
                if closure {
                    next.extend(
                        info.references
                            .iter()
                            .map(|r| (r.hash_part().to_owned(), Some(info.store_path.clone()))),
                    );
                }
                plan.push(info);
            }
            Err(e) => {
                let msg = match referrer {
                    Some(by) => format!("{hash} (a reference of {by}): {e}"),
                    None => format!("{hash}: {e}"),
                };
                info!("{msg}");
                summary.failed.push(msg);
            }
        }
    }

    async fn commit(&mut self, prepared: Prepared, release: bool) -> Result<(), PublishError> {
        let blocks = prepared.block_count + prepared.listing.as_ref().map_or(0, |l| l.block_count);
        if crate::data::must_roll(self.data.length(), blocks, self.data_bound) {
            self.roll_data_feed().await?;
        }
        let info = &prepared.info;
        let path = info.store_path.clone();
        let record = PathRecord {
            store_path: path.clone(),
            nar_hash: info.nar_hash,
            nar_size: info.nar_size,
            references: info.references.clone(),
            deriver: info.deriver.clone(),
            ca: info.ca.clone(),
            sigs: info.sigs.clone(),
            data_feed: self.data_id,
            first_block: self.data.length(),
            block_count: prepared.block_count,
            segment_size: prepared.segment_size,
            key_check: prepared.key.check(),
            wrapped_key: wrap_path_key(&self.secret.wrap_key(), &path, &prepared.key),
        };
        let spool_name = prepared
            .spool
            .file_name()
            .and_then(|n| n.to_str())
            .expect("spool names are ASCII")
            .to_owned();
        let listing = prepared.listing.map(|l| PendingListing {
            size: l.size,
            block_count: l.block_count,
        });
        let pending = Pending::new(record, release, spool_name, listing);
        journal::write(&self.staging, &pending).map_err(io_err(&self.staging))?;
        self.finish(pending).await
    }

    /// Carries a journaled commit to its end; safe to run again at any point.
    async fn finish(&mut self, pending: Pending) -> Result<(), PublishError> {
        let rec = &pending.record;
        if rec.data_feed != self.data_id {
            return Err(PublishError::Inconsistent(format!(
                "journal for {} appends to data feed {}, the current one is {}",
                rec.store_path, rec.data_feed, self.data_id
            )));
        }
        let end = rec.first_block + pending.blocks();
        let have = self.data.length();
        if have < rec.first_block || have > end {
            return Err(PublishError::Inconsistent(format!(
                "journal for {} expects data blocks {}..{end}, data feed has {have}",
                rec.store_path, rec.first_block
            )));
        }
        let spool = self.staging.join(&pending.spool);
        if have < end {
            let max = MAX_SEGMENT_SIZE as usize + ENVELOPE_OVERHEAD;
            let mut reader = SpoolReader::open(&spool, max).map_err(io_err(&spool))?;
            let mut skip = have - rec.first_block;
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut batch_bytes = 0;
            while let Some(block) = reader.next_block().map_err(io_err(&spool))? {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                batch_bytes += block.len();
                batch.push(block);
                if batch_bytes >= BATCH_BYTES {
                    self.data.write(std::mem::take(&mut batch)).await?;
                    fault_point("data-batch");
                    batch_bytes = 0;
                }
            }
            if !batch.is_empty() {
                self.data.write(batch).await?;
            }
            fault_point("data");
            if self.data.length() != end {
                return Err(PublishError::Inconsistent(format!(
                    "spool {} held {} blocks for {}, expected {}",
                    spool.display(),
                    self.data.length() - rec.first_block,
                    rec.store_path,
                    pending.blocks()
                )));
            }
        }
        let listing = |index_seq| {
            pending.listing.map(|l| {
                Record::Listing(ListingRecord {
                    index_seq,
                    store_path: rec.store_path.clone(),
                    first_block: rec.first_block + rec.block_count,
                    block_count: l.block_count,
                    size: l.size,
                })
                .encode()
            })
        };
        let found = self.find_in_tail(rec.store_path.hash_part());
        let seq = match found {
            None => {
                // The path's record and its listing's, in one append.
                let seq = self.index_feed.length();
                let mut records = vec![Record::Path(Box::new(rec.clone())).encode()];
                records.extend(listing(seq));
                self.index_feed.write(records).await?;
                self.index.catch_up(&mut self.index_feed).await?;
                self.by_hash.insert(
                    rec.store_path.hash_part().to_owned(),
                    rec.store_path.clone(),
                );
                fault_point("index");
                seq
            }
            Some(found) => {
                // A journal of an earlier build may have left the path's
                // record without its listing's.
                let seq = found.index_seq;
                if !self.has_listing(&rec.store_path, seq).await? {
                    if let Some(l) = listing(seq) {
                        self.index_feed.write(vec![l]).await?;
                        self.index.catch_up(&mut self.index_feed).await?;
                    }
                }
                seq
            }
        };
        if pending.release && found.and_then(|f| f.key_seq).is_none() {
            let release = self.key_release(seq).await?;
            let at = self.public_keys.length();
            self.public_keys
                .write(vec![Record::Key(release).encode()])
                .await?;
            self.released.insert(run::path_hash(&rec.store_path), at);
            fault_point("release");
        }
        journal::clear(&self.staging).map_err(io_err(&self.staging))?;
        match std::fs::remove_file(&spool) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!(spool = %spool.display(), %e, "could not remove spool")
            }
            _ => {}
        }
        Ok(())
    }
}

fn prepare_error_path(e: &PrepareError) -> &StorePath {
    match e {
        PrepareError::Origin { path, .. }
        | PrepareError::Archive { path, .. }
        | PrepareError::NarSize { path, .. }
        | PrepareError::NarHash { path, .. }
        | PrepareError::Segment { path, .. }
        | PrepareError::Spool { path, .. } => path,
    }
}

/// Test-only crash switch: with `HYPERNAR_FAULT_ABORT_AT=<point>` in the
/// environment the process aborts (no unwinding, no cleanup, like kill -9)
/// when it reaches that point of a commit. Off unless that variable is set
/// by whoever starts the process; nothing from the network or the cache
/// can turn it on. The crash-recovery tests use it to hit each step.
pub(crate) fn fault_point(point: &str) {
    // Only in a build with the `fault-injection` feature (the test command's).
    if cfg!(feature = "fault-injection")
        && std::env::var_os("HYPERNAR_FAULT_ABORT_AT").is_some_and(|v| v == point)
    {
        tracing::error!(point, "HYPERNAR_FAULT_ABORT_AT: aborting on purpose");
        std::process::abort();
    }
}
