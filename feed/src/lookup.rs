//! Finding one published path by lookup (docs/protocol.md, "Runs"), in
//! feeds read through [`FeedIo`]: what `cat-nar` and the demo do in a data
//! directory, and what the publisher does in its own feeds, without a map
//! of every path.
//!
//! A lookup reads the runs feed's last manifest, one page of each live run,
//! and then the path's record and key release; a path not in any run is
//! looked for in the index's **tail** (the records past the manifest's
//! `indexed_to`, bounded by the publisher's run tail) and its key in the
//! key feed's tail. An index made before runs has no manifest: its whole
//! index is the tail, read one block at a time (memory does not grow with
//! it, time does). Over the network the fetcher does the same through its
//! hubs (`fetcher/src/sources/lookup.rs`).
//!
//! What the feeds say is checked as a fetcher checks it: the manifest and
//! each page against their bounds ([`Manifest::check`],
//! [`RunRef::check_page`]), the record against the path asked, the key
//! against the record's commitment. A record or key block this store does
//! not hold (a sparse replica) is an error naming it; a run page or the
//! manifest not held is the store's "not stored locally" error; neither is
//! ever a "not published".

use ed25519_dalek::VerifyingKey;

use crate::catalog::CatalogError;
use crate::format::generation::{GenerationError, Generations};
use crate::format::identity::{Identity, PUBLIC_KEYS_FEED, RUNS_FEED};
use crate::format::record::{FeedDecl, FeedRole, PathRecord, Record};
use crate::format::run::{self, Manifest, PathHash, RunEntry, RunError, RunRef, NO_KEY};
use crate::format::segment::PathKey;
use crate::format::storepath::StorePath;
use crate::io::{FeedIo, FeedIoError};
use crate::store::{Feed, FeedStore, StoreError};

/// The most feed declarations read at the head of an index looking for its
/// runs feed: a publisher declares its feeds in its first blocks.
const HEAD_DECLS: u64 = run::MAX_MANIFEST_FEEDS as u64;

/// Why a lookup could not say whether a publisher has a path.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Io(#[from] FeedIoError),
    #[error("block {block} of the runs feed should be a page of a run, is {kind}")]
    NotAPage { block: u64, kind: &'static str },
    #[error("the path's {what} (block {seq} of its feed) is not in this data directory, a sparse copy: fetch the path through `hypernar serve` first")]
    NotHeld { what: &'static str, seq: u64 },
    #[error("a run points at index block {seq} for this path, which holds {found}")]
    WrongRecord { seq: u64, found: String },
    #[error("block {block} of the runs feed: {source}")]
    Run {
        block: u64,
        #[source]
        source: RunError,
    },
    #[error(
        "block {block} of the generations feed should be a page or a generations record, is {kind}"
    )]
    NotGenerations { block: u64, kind: &'static str },
    #[error("block {block} of the generations feed: {source}")]
    Generations {
        block: u64,
        #[source]
        source: GenerationError,
    },
}

/// The manifest a runs feed ends with, and its block; `None` for a feed
/// that holds none (a publisher that has cut no run). A feed whose last
/// blocks are pages of a run cut short ends, for readers, at the manifest
/// before them (the publisher appends it again when it next opens).
pub async fn last_manifest<F: FeedIo>(
    feed: &mut F,
) -> Result<Option<(u64, Manifest)>, FeedIoError> {
    let mut at = feed.length();
    while at > 1 {
        at -= 1;
        if let Record::Manifest(m) = feed.read_record(at).await? {
            return Ok(Some((at, *m)));
        }
    }
    Ok(None)
}

/// The `Generations` record a generations feed ends with, and its block,
/// checked against it; `None` for a feed that holds none. Pages of a
/// commit cut short after it are read past, as readers do.
pub async fn last_generations<F: FeedIo>(
    feed: &mut F,
) -> Result<Option<(u64, Generations)>, LookupError> {
    let mut at = feed.length();
    while at > 1 {
        at -= 1;
        match feed.read_record(at).await? {
            Record::Generations(g) => {
                g.check(at)
                    .map_err(|source| LookupError::Generations { block: at, source })?;
                return Ok(Some((at, *g)));
            }
            Record::RunPage(_) => {}
            other => {
                return Err(LookupError::NotGenerations {
                    block: at,
                    kind: other.kind_name(),
                })
            }
        }
    }
    Ok(None)
}

/// The newest entry for `hash` in the live runs of `m`: one page of each
/// run, each checked to be the page it was read as.
pub async fn find_in_runs<F: FeedIo>(
    runs: &mut F,
    m: &Manifest,
    hash: &PathHash,
) -> Result<Option<RunEntry>, LookupError> {
    let mut found: Option<RunEntry> = None;
    for r in &m.runs {
        if let Some(e) = find_in_run(runs, r, hash).await? {
            found = Some(found.map_or(e, |f| run::newest(f, e)));
        }
    }
    Ok(found)
}

/// The entry for `hash` in run `r`, if it holds one.
async fn find_in_run<F: FeedIo>(
    runs: &mut F,
    r: &RunRef,
    hash: &PathHash,
) -> Result<Option<RunEntry>, LookupError> {
    let block = r.page_block(hash);
    let page = match runs.read_record(block).await? {
        Record::RunPage(page) => page,
        other => {
            return Err(LookupError::NotAPage {
                block,
                kind: other.kind_name(),
            })
        }
    };
    r.check_page(block, &page)
        .map_err(|source| LookupError::Run { block, source })?;
    Ok(page.find(hash).copied())
}

/// A published path found in a data directory.
#[derive(Debug, Clone)]
pub struct Located {
    pub publisher: Identity,
    pub record: PathRecord,
    /// Its released key, checked against the record's commitment; `None`
    /// if the publisher has not released it, or released it to a key feed
    /// this store lacks (a key block a run names that a sparse copy lacks
    /// is an error instead: [`LookupError::NotHeld`]).
    pub key: Option<PathKey>,
    /// The data feed holding its blocks.
    pub data_feed: FeedDecl,
}

/// Finds `path` among the publishers in `store` by lookup, without reading
/// any index whole (but an index made before runs, whose tail is all of
/// it). The first publisher that has it answers.
pub async fn locate(store: &FeedStore, path: &StorePath) -> Result<Located, CatalogError> {
    // Every index feed, and every key feed by its publisher: an audience's
    // key feed is not declared in the index.
    let mut indexes = Vec::new();
    let mut key_feeds: Vec<([u8; 32], VerifyingKey)> = Vec::new();
    for key in store.list()? {
        let Some(mut feed) = store.open_existing(&key).await? else {
            continue;
        };
        match feed.header().await {
            // An index feed's header names its own key as the publisher.
            Ok(h) if h.role == FeedRole::Index && h.publisher == key.to_bytes() => {
                indexes.push(feed);
            }
            Ok(h) if h.role == FeedRole::Keys => key_feeds.push((h.publisher, key)),
            _ => {}
        }
    }
    let mut failed = None;
    for mut index in indexes {
        let Ok(publisher) = Identity::from_bytes(index.public_key().as_bytes()) else {
            continue;
        };
        let others: Vec<VerifyingKey> = key_feeds
            .iter()
            .filter(|(p, _)| *p == publisher.to_bytes())
            .map(|(_, k)| *k)
            .collect();
        match locate_in(store, publisher, &mut index, &others, path).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    Err(failed.unwrap_or_else(|| CatalogError::UnknownPath(path.clone())))
}

/// [`locate`] in one publisher's feeds (`index` its index feed,
/// `key_feeds` every key feed of it this store holds).
async fn locate_in(
    store: &FeedStore,
    publisher: Identity,
    index: &mut Feed,
    key_feeds: &[VerifyingKey],
    path: &StorePath,
) -> Result<Option<Located>, CatalogError> {
    let lookup = |source: LookupError| CatalogError::Lookup {
        publisher: publisher.to_string(),
        source,
    };
    let io = |e: FeedIoError| lookup(LookupError::Io(e));
    let hash = run::path_hash(path);
    let mut feeds: Vec<FeedDecl> = Vec::new();
    // The feeds the index declares first: its runs and key feeds.
    for seq in 1..index.len().min(HEAD_DECLS + 1) {
        match read_held(index, seq).await.map_err(io)? {
            Some(Record::Feed(d)) => feeds.push(d),
            _ => break,
        }
    }
    let (manifest, entry) = match open_decl(store, &feeds, FeedRole::Runs, RUNS_FEED).await? {
        Some(mut runs) => match last_manifest(&mut runs).await.map_err(io)? {
            Some((at, m)) => {
                m.check(at)
                    .map_err(|source| lookup(LookupError::Run { block: at, source }))?;
                let entry = find_in_runs(&mut runs, &m, &hash).await.map_err(lookup)?;
                (Some(m), entry)
            }
            None => (None, None),
        },
        None => (None, None),
    };
    let (indexed_to, keys_indexed_to) = manifest
        .as_ref()
        .map_or((1, 1), |m| (m.indexed_to.max(1), m.keys_indexed_to.max(1)));
    if let Some(m) = &manifest {
        feeds.extend(m.feeds.iter().cloned());
    }
    // The record: where the run's entry says, or else the newest in the tail.
    let mut record: Option<PathRecord> = None;
    if let Some(e) = &entry {
        if !index.has(e.index_seq) {
            return Err(lookup(LookupError::NotHeld {
                what: "index record",
                seq: e.index_seq,
            }));
        }
        match index.read_record(e.index_seq).await.map_err(io)? {
            Record::Path(p) if p.store_path == *path => record = Some(*p),
            // The same hash under another name: the path asked is not
            // published (a store path is its hash and its name).
            Record::Path(p) if run::path_hash(&p.store_path) == hash => {}
            other => {
                return Err(lookup(LookupError::WrongRecord {
                    seq: e.index_seq,
                    found: match other {
                        Record::Path(p) => p.store_path.to_string(),
                        other => other.kind_name().to_owned(),
                    },
                }))
            }
        }
    }
    for seq in indexed_to..index.len() {
        match read_held(index, seq).await.map_err(io)? {
            Some(Record::Feed(d)) => feeds.push(d),
            Some(Record::Path(p)) if p.store_path == *path => record = Some(*p),
            _ => {}
        }
    }
    let Some(record) = record else {
        return Ok(None);
    };
    let Some(data_feed) = feeds
        .iter()
        .rev()
        .find(|d| d.id == record.data_feed && d.role == FeedRole::Data)
        .cloned()
    else {
        return Err(CatalogError::NoDataFeed {
            path: path.clone(),
            feed: format!("id {} (not declared)", record.data_feed),
        });
    };
    // The key: where the entry says, or else in the public key feed's
    // tail, or else in another key feed of the publisher's (an audience's,
    // read through: it is not in the runs).
    let matches = |r: &Record| match r {
        Record::Key(k) if k.store_path == *path => {
            let key = PathKey(k.key);
            (key.check() == record.key_check).then_some(key)
        }
        _ => None,
    };
    let mut key = None;
    let public = open_decl(store, &feeds, FeedRole::Keys, PUBLIC_KEYS_FEED).await?;
    let public_key = public.as_ref().map(|f| *f.public_key());
    if let Some(mut keys) = public {
        if let Some(seq) = entry.map(|e| e.key_seq).filter(|&s| s != NO_KEY) {
            if !keys.has(seq) {
                return Err(lookup(LookupError::NotHeld {
                    what: "key release",
                    seq,
                }));
            }
            if let Some(r) = read_held(&mut keys, seq).await.map_err(io)? {
                key = matches(&r);
            }
        }
        let mut seq = keys_indexed_to;
        while key.is_none() && seq < keys.len() {
            if let Some(r) = read_held(&mut keys, seq).await.map_err(io)? {
                key = matches(&r);
            }
            seq += 1;
        }
    }
    for k in key_feeds.iter().filter(|k| Some(**k) != public_key) {
        if key.is_some() {
            break;
        }
        let Some(mut keys) = store.open_existing(k).await? else {
            continue;
        };
        let mut seq = 1;
        while key.is_none() && seq < keys.len() {
            if let Some(r) = read_held(&mut keys, seq).await.map_err(io)? {
                key = matches(&r);
            }
            seq += 1;
        }
    }
    Ok(Some(Located {
        publisher,
        record,
        key,
        data_feed,
    }))
}

/// Block `seq` as a record; `None` if it does not decode (one bad record
/// must not hide the rest) or this store does not hold it.
async fn read_held(feed: &mut Feed, seq: u64) -> Result<Option<Record>, FeedIoError> {
    if !feed.has(seq) {
        return Ok(None);
    }
    match feed.read_record(seq).await {
        Ok(r) => Ok(Some(r)),
        Err(FeedIoError::Record { source, .. }) => {
            tracing::warn!(feed = feed.name(), seq, %source, "malformed record skipped");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The feed `feeds` declares with `role` and `name`, if this store has it.
async fn open_decl(
    store: &FeedStore,
    feeds: &[FeedDecl],
    role: FeedRole,
    name: &str,
) -> Result<Option<Feed>, StoreError> {
    let Some(d) = feeds.iter().find(|d| d.role == role && d.name == name) else {
        return Ok(None);
    };
    let Ok(key) = VerifyingKey::from_bytes(&d.public_key) else {
        return Ok(None);
    };
    store.open_existing(&key).await
}
