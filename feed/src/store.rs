//! Feeds on disk: one hypercore per directory `feeds/<hex public key>/`.
//!
//! The store knows nothing of peers; it creates, opens and lists feeds and
//! reads their records.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hypercore::{
    CacheOptionsBuilder, Hypercore, HypercoreBuilder, HypercoreError, PartialKeypair, Storage,
    StorageTraits, Store,
};
use hypercore_schema::{Proof, RequestBlock, RequestSeek, RequestUpgrade};

use crate::file::PlainFile;
use crate::oplog::OplogGuard;

use crate::format::record::{FeedHeader, Record, RecordError};

/// Errors from the feed store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("feed store at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hypercore {feed}: {source}")]
    Hypercore {
        feed: String,
        #[source]
        source: HypercoreError,
    },
    #[error("feed {feed} block {index}: {source}")]
    Record {
        feed: String,
        index: u64,
        #[source]
        source: RecordError,
    },
    #[error("feed {feed} block {index} is not stored locally")]
    MissingBlock { feed: String, index: u64 },
    #[error("feed {feed} has no hypernar header in block 0")]
    NoHeader { feed: String },
    #[error("{} is in use by another hypernar process (it holds the lock on {})", .0.display(), .0.join("lock").display())]
    Locked(PathBuf),
    /// Reading a feed through [`crate::io::FeedIo`] failed.
    #[error(transparent)]
    FeedIo(Box<crate::io::FeedIoError>),
    #[error("feed {feed} on disk has public key {found}, expected it from its directory name")]
    KeyMismatch { feed: String, found: String },
    #[error(transparent)]
    Private(#[from] crate::private::PrivateError),
}

/// A core with a cache of Merkle tree nodes (hypercore's `cache` feature,
/// which does nothing unless asked for; at most about 1 200 nodes, 100 KB,
/// per open feed). Without it every proof whose subtree root lies on disk
/// is verified twice, its block hashed twice: once to learn which node to
/// read, then with it (`Hypercore::verify_proof` in hypercore 0.16).
///
/// hypercore does not drop cached nodes when a core is truncated. That is
/// safe here because no feed is ever truncated: nothing in hypernar calls
/// `truncate`, and `verify_and_apply_proof` ignores a proof of another fork.
fn core_builder(storage: Storage) -> HypercoreBuilder {
    HypercoreBuilder::new(storage).node_cache_options(CacheOptionsBuilder::new())
}

impl StoreError {
    /// The operating system's error behind this one, if any: a full disk,
    /// a read-only file system, a failing device. Such an error says
    /// nothing about the data already stored.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        crate::error::io_cause(self)
    }
}

/// A directory of feeds, held by one process at a time: hypercore's files
/// are not safe to open from two processes, so the store takes an exclusive
/// lock on `data_dir/lock` for as long as any clone of it lives.
#[derive(Debug, Clone)]
pub struct FeedStore {
    root: PathBuf,
    _lock: Arc<File>,
    /// Feeds we write fsync every write (false only for
    /// [`FeedStore::open_unsynced`]).
    sync_writes: bool,
}

impl FeedStore {
    /// The directory the feeds live in (`data_dir/feeds`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens (creating if needed) the feed store under `data_dir/feeds`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("feeds");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let tightened = crate::private::prepare(data_dir)?;
        if tightened > 0 {
            tracing::warn!(
                data = %data_dir.display(),
                tightened,
                "made the data directory readable by its owner only (directories 0700, files 0600): it holds feed secrets and audience keys"
            );
        }
        crate::private::create_dir_all(&root).map_err(io(&root))?;
        let lock_path = data_dir.join("lock");
        let lock = crate::private::open_rw(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(data_dir.to_owned()));
        }
        Ok(FeedStore {
            root,
            _lock: Arc::new(lock),
            sync_writes: true,
        })
    }

    /// Like [`FeedStore::open`], but feeds we write do not fsync each write:
    /// for bulk data that need not survive a power cut until
    /// [`FeedStore::sync_all`] (the synthetic publisher of the benchmarks).
    /// A process killed is no matter either way: its writes are in the page
    /// cache.
    pub fn open_unsynced(data_dir: &Path) -> Result<Self, StoreError> {
        let mut store = FeedStore::open(data_dir)?;
        store.sync_writes = false;
        Ok(store)
    }

    /// Fsyncs every file of every feed in the store.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        for dir in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let dir = dir.map_err(io(&self.root))?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let path = file.map_err(io(&dir))?.path();
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&path))?;
            }
            File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(io(&dir))?;
        }
        Ok(())
    }

    fn feed_dir(&self, key: &VerifyingKey) -> PathBuf {
        self.root.join(hex::encode(key.as_bytes()))
    }

    /// Public keys of every feed in the store.
    pub fn list(&self) -> Result<Vec<VerifyingKey>, StoreError> {
        let io = |source| StoreError::Io {
            path: self.root.clone(),
            source,
        };
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(bytes) = name.to_str().and_then(|n| hex::decode(n).ok()) else {
                continue;
            };
            let Ok(bytes) = <[u8; 32]>::try_from(bytes) else {
                continue;
            };
            if let Ok(key) = VerifyingKey::from_bytes(&bytes) {
                if has_oplog(&entry.path()) {
                    keys.push(key);
                }
            }
        }
        keys.sort_by_key(|k| k.to_bytes());
        Ok(keys)
    }

    /// Opens the writable feed of `signing_key`, creating it if it does not exist.
    pub async fn open_writable(&self, signing_key: &SigningKey) -> Result<Feed, StoreError> {
        let public = signing_key.verifying_key();
        let dir = self.feed_dir(&public);
        if has_oplog(&dir) {
            return self.open_dir(dir, public).await;
        }
        self.create(PartialKeypair {
            public,
            secret: Some(signing_key.clone()),
        })
        .await
    }

    /// Opens a feed by its public key, creating an empty replica (no secret
    /// key: it can only store blocks verified against the writer's signed
    /// tree) if the store does not have it yet.
    pub async fn open_replica(&self, public: &VerifyingKey) -> Result<Feed, StoreError> {
        if let Some(feed) = self.open_existing(public).await? {
            return Ok(feed);
        }
        self.create(PartialKeypair {
            public: *public,
            secret: None,
        })
        .await
    }

    /// Creates a new, empty feed; fsynced if we hold its secret key.
    async fn create(&self, key_pair: PartialKeypair) -> Result<Feed, StoreError> {
        let public = key_pair.public;
        let dir = self.feed_dir(&public);
        crate::private::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = hex::encode(public.as_bytes());
        let hc = |source| StoreError::Hypercore {
            feed: name.clone(),
            source,
        };
        let sync = key_pair.secret.is_some() && self.sync_writes;
        let storage = disk_storage(&dir, true, sync).await.map_err(hc)?;
        let core = core_builder(storage)
            .key_pair(key_pair)
            .build()
            .await
            .map_err(hc)?;
        Ok(Feed {
            core,
            public,
            name,
            dir,
        })
    }

    /// Deletes a replica's local copy and starts it afresh. For a replica
    /// whose files a crash left unusable: everything in it was a verified
    /// copy of the writer's feed and is fetched again from peers.
    pub async fn reset_replica(&self, public: &VerifyingKey) -> Result<Feed, StoreError> {
        let dir = self.feed_dir(public);
        if let Err(source) = std::fs::remove_dir_all(&dir) {
            if source.kind() != std::io::ErrorKind::NotFound {
                return Err(StoreError::Io { path: dir, source });
            }
        }
        self.open_replica(public).await
    }

    /// Whether the store has the feed of `public`.
    pub fn has(&self, public: &VerifyingKey) -> bool {
        has_oplog(&self.feed_dir(public))
    }

    /// Opens an existing feed, if the store has it.
    pub async fn open_existing(&self, public: &VerifyingKey) -> Result<Option<Feed>, StoreError> {
        let dir = self.feed_dir(public);
        if !has_oplog(&dir) {
            return Ok(None);
        }
        self.open_dir(dir, *public).await.map(Some)
    }

    async fn open_dir(&self, dir: PathBuf, public: VerifyingKey) -> Result<Feed, StoreError> {
        let name = hex::encode(public.as_bytes());
        let dropped = crate::oplog::repair(&dir).map_err(|source| StoreError::Io {
            path: dir.join("oplog"),
            source,
        })?;
        if dropped > 0 {
            tracing::warn!(feed = %name, dropped, "dropped oplog entries a crash left stale or unreadable (see feed/src/oplog.rs)");
        }
        let hc = |source| StoreError::Hypercore {
            feed: name.clone(),
            source,
        };
        let open = |sync| {
            let dir = dir.clone();
            async move {
                let storage = disk_storage(&dir, false, sync).await?;
                core_builder(storage).open(true).build().await
            }
        };
        let mut core = open(false).await.map_err(hc)?;
        if core.key_pair().secret.is_some() && self.sync_writes {
            // A feed we write: reopen with every write fsynced.
            drop(core);
            core = open(true).await.map_err(hc)?;
        }
        if core.key_pair().public != public {
            return Err(StoreError::KeyMismatch {
                feed: name,
                found: hex::encode(core.key_pair().public.as_bytes()),
            });
        }
        let mut feed = Feed {
            core,
            public,
            name,
            dir,
        };
        feed.finish_clearing().await?;
        Ok(feed)
    }
}

/// hypercore's disk storage: four [`PlainFile`]s, the oplog behind
/// [`OplogGuard`]. `sync`: fsync every write (feeds we write).
async fn disk_storage(dir: &Path, overwrite: bool, sync: bool) -> Result<Storage, HypercoreError> {
    let dir = dir.to_owned();
    let create = move |store: Store| {
        let dir = dir.clone();
        Box::pin(async move {
            let name = match store {
                Store::Tree => "tree",
                Store::Data => "data",
                Store::Bitfield => "bitfield",
                Store::Oplog => "oplog",
            };
            let file = PlainFile::open(&dir.join(name), sync)?;
            let boxed: Box<dyn StorageTraits + Send> = match store {
                Store::Oplog => Box::new(OplogGuard::new(file).await?),
                _ => Box::new(file),
            };
            Ok(boxed)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    };
    Storage::open(create, overwrite).await
}

/// A feed exists once its oplog has its header; a directory left by a crash
/// before that is treated as absent and created afresh.
fn has_oplog(dir: &Path) -> bool {
    std::fs::metadata(dir.join("oplog")).is_ok_and(|m| m.len() > 0)
}

/// One open hypercore.
#[derive(Debug)]
pub struct Feed {
    core: Hypercore,
    public: VerifyingKey,
    name: String,
    dir: PathBuf,
}

impl Feed {
    /// The feed's public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Hex of the public key, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of blocks.
    pub fn len(&self) -> u64 {
        self.core.info().length
    }

    /// Whether the feed has no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hc(&self, source: HypercoreError) -> StoreError {
        StoreError::Hypercore {
            feed: self.name.clone(),
            source,
        }
    }

    /// Whether `e` says a peer's proof is bad (as opposed to a local problem).
    pub fn is_bad_proof(e: &StoreError) -> bool {
        matches!(
            e,
            StoreError::Hypercore {
                source: HypercoreError::InvalidSignature { .. }
                    | HypercoreError::InvalidChecksum { .. }
                    | HypercoreError::BadArgument { .. },
                ..
            }
        )
    }

    /// Whether this process holds the feed's secret key.
    pub fn writable(&self) -> bool {
        self.core.info().writeable
    }

    /// Hypercore's view of the feed (length, fork, contiguous length).
    pub fn info(&self) -> hypercore::Info {
        self.core.info()
    }

    /// Whether block `index` is stored locally.
    pub fn has(&self, index: u64) -> bool {
        self.core.has(index)
    }

    /// Builds the proof a peer asked for; `None` if the block is not here.
    pub async fn create_proof(
        &mut self,
        block: Option<RequestBlock>,
        hash: Option<RequestBlock>,
        seek: Option<RequestSeek>,
        upgrade: Option<RequestUpgrade>,
    ) -> Result<Option<Proof>, StoreError> {
        self.core
            .create_proof(block, hash, seek, upgrade)
            .await
            .map_err(|e| self.hc(e))
    }

    /// Verifies a proof from a peer against the signed tree and stores what
    /// it carries. `Ok(false)`: not applicable (another fork); `Err`: the
    /// proof does not verify.
    pub async fn verify_and_apply(&mut self, proof: &Proof) -> Result<bool, StoreError> {
        let applied = self
            .core
            .verify_and_apply_proof(proof)
            .await
            .map_err(|e| self.hc(e))?;
        self.flush_oplog().await?;
        Ok(applied)
    }

    /// Writes everything hypercore holds in its log to the tree, bitfield
    /// and data files (the web seed copies those files).
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_oplog().await
    }

    /// The feed's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes hypercore flush the entries a verified proof left in its oplog:
    /// 0.16 cannot read them back after a restart (see `oplog.rs`, bug 3);
    /// and a clear's, which is in the bitfield file only after a flush.
    /// An empty proof writes an empty entry and counts towards hypercore's
    /// flush cycle (one flush every four operations), so at most four of
    /// them flush it.
    async fn flush_oplog(&mut self) -> Result<(), StoreError> {
        for _ in 0..4 {
            if !crate::oplog::has_entries(&self.dir) {
                return Ok(());
            }
            let empty = Proof {
                fork: self.core.info().fork,
                block: None,
                hash: None,
                seek: None,
                upgrade: None,
            };
            self.core
                .verify_and_apply_proof(&empty)
                .await
                .map_err(|e| self.hc(e))?;
        }
        Ok(())
    }

    /// How many tree nodes a request for block `index` must ask for.
    pub async fn missing_nodes(&mut self, index: u64) -> Result<u64, StoreError> {
        self.core.missing_nodes(index).await.map_err(|e| self.hc(e))
    }

    /// Appends blocks atomically (one oplog entry).
    pub async fn append_batch(&mut self, blocks: &[Vec<u8>]) -> Result<(), StoreError> {
        self.core
            .append_batch(blocks)
            .await
            .map(drop)
            .map_err(|e| self.hc(e))
    }

    /// Drops the locally stored blocks `start..end` of a replica and gives
    /// their disk space back (a hole in the data file); the signed tree
    /// stays, so they can be fetched and verified again. Refused for a feed
    /// we write: its blocks exist nowhere else.
    pub async fn clear(&mut self, start: u64, end: u64) -> Result<(), StoreError> {
        if self.writable() {
            return Err(StoreError::Hypercore {
                feed: self.name.clone(),
                source: HypercoreError::InvalidOperation {
                    context: "blocks of a feed we write are never cleared".into(),
                },
            });
        }
        self.clear_range(start, end).await
    }

    /// The file naming blocks being cleared (see [`Feed::clear_range`]).
    fn clearing_path(&self) -> PathBuf {
        self.dir.join("clearing")
    }

    /// Clears blocks `start..end`, safe against a crash: hypercore 0.16
    /// punches the data file's holes at once but writes the bitfield only
    /// at its next flush, so a process killed between the two would reopen
    /// claiming blocks whose bytes are zeros (and serve them). The range is
    /// written to `clearing` (fsynced) first, hypercore made to flush after,
    /// and the file removed only then; a feed opened with the file there
    /// clears the range again before anything reads it.
    async fn clear_range(&mut self, start: u64, end: u64) -> Result<(), StoreError> {
        let end = end.min(self.len());
        if start >= end {
            return Ok(());
        }
        let path = self.clearing_path();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        {
            let mut f = crate::private::open_rw(&path).map_err(io)?;
            use std::io::Write;
            f.set_len(0)
                .and_then(|()| f.write_all(format!("{start} {end}\n").as_bytes()))
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        self.core.clear(start, end).await.map_err(|e| self.hc(e))?;
        self.flush_oplog().await?;
        std::fs::remove_file(&path).map_err(io)?;
        Ok(())
    }

    /// Finishes a clear a crash interrupted (see [`Feed::clear_range`]).
    async fn finish_clearing(&mut self) -> Result<(), StoreError> {
        let path = self.clearing_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let mut words = text.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(start)), Some(Ok(end))) = (words.next(), words.next()) {
            tracing::warn!(feed = %self.name, start, end, "finishing a clear of blocks a stop interrupted");
            let end = end.min(self.len());
            if start < end {
                self.core.clear(start, end).await.map_err(|e| self.hc(e))?;
                self.flush_oplog().await?;
            }
        }
        std::fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })
    }

    /// Drops the stored blocks `start..end` of a feed we write whose bytes
    /// can be made again elsewhere — a path the node kept from the
    /// upstream and that is now valid in the local Nix store
    /// (`src/cli/remake.rs`) — and gives their disk space back. The signed
    /// tree stays, so a block made again is taken back only if it is the
    /// block the tree signed ([`Feed::restore`]). Refused for a replica
    /// (that is [`Feed::clear`]).
    pub async fn clear_own(&mut self, start: u64, end: u64) -> Result<(), StoreError> {
        if !self.writable() {
            return Err(StoreError::Hypercore {
                feed: self.name.clone(),
                source: HypercoreError::InvalidOperation {
                    context:
                        "clear_own is for feeds we write; a replica's blocks are cleared with clear"
                            .into(),
                },
            });
        }
        self.clear_range(start, end).await
    }

    /// Stores again block `index` of a feed we write, dropped by
    /// [`Feed::clear_own`] and made again by the caller: only if it hashes
    /// to the leaf the tree holds for `index` (the tree the feed's key
    /// signed); an error otherwise, and nothing is stored.
    pub async fn restore(&mut self, index: u64, value: Vec<u8>) -> Result<(), StoreError> {
        if !self.writable() || index >= self.len() {
            return Err(StoreError::Hypercore {
                feed: self.name.clone(),
                source: HypercoreError::BadArgument {
                    context: format!(
                        "restore: block {index} of a feed we do not write or past its end"
                    ),
                },
            });
        }
        if self.core.has(index) {
            return Ok(());
        }
        // No tree nodes with it: hypercore checks the block's leaf against
        // the leaf it stores (MerkleTree::verify_proof), nothing else.
        let proof = Proof {
            fork: self.core.info().fork,
            block: Some(hypercore_schema::DataBlock {
                index,
                value,
                nodes: Vec::new(),
            }),
            hash: None,
            seek: None,
            upgrade: None,
        };
        if !self.verify_and_apply(&proof).await? {
            return Err(StoreError::Hypercore {
                feed: self.name.clone(),
                source: HypercoreError::InvalidOperation {
                    context: format!("restore: block {index} could not be applied"),
                },
            });
        }
        Ok(())
    }

    /// How many of blocks `start..end` are stored locally.
    pub fn held(&self, start: u64, end: u64) -> u64 {
        (start..end.min(self.len()))
            .filter(|&i| self.core.has(i))
            .count() as u64
    }

    /// Reads block `index`; an error if it is not stored locally.
    pub async fn get(&mut self, index: u64) -> Result<Vec<u8>, StoreError> {
        match self.core.get(index).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(StoreError::MissingBlock {
                feed: self.name.clone(),
                index,
            }),
            Err(e) => Err(self.hc(e)),
        }
    }

    /// Reads and decodes the record in block `index`.
    pub async fn record(&mut self, index: u64) -> Result<Record, StoreError> {
        let block = self.get(index).await?;
        Record::decode(&block).map_err(|source| StoreError::Record {
            feed: self.name.clone(),
            index,
            source,
        })
    }

    /// The feed header in block 0, if the feed has one.
    pub async fn header(&mut self) -> Result<FeedHeader, StoreError> {
        if self.is_empty() {
            return Err(StoreError::NoHeader {
                feed: self.name.clone(),
            });
        }
        match self.record(0).await? {
            Record::Header(h) => Ok(h),
            _ => Err(StoreError::NoHeader {
                feed: self.name.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
