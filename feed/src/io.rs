//! Reading and appending a feed without owning it: directly (a [`Feed`]
//! this process opened) or through whatever owns it (in a running node,
//! the feed's hub). The publisher writes through this trait, so it can run
//! on its own or inside `hypernar serve`.

use std::future::Future;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::format::record::{FeedHeader, Record, RecordError};
use crate::store::{Feed, FeedStore, StoreError};

/// Errors of a [`FeedIo`].
#[derive(Debug, thiserror::Error)]
pub enum FeedIoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The process or actor that owns the feed (a node's hub) failed.
    #[error("feed {feed}: {source}")]
    Owner {
        feed: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("feed {feed}: block 0 is {found}, expected the header {expected}")]
    WrongHeader {
        feed: String,
        found: String,
        expected: String,
    },
    #[error("feed {feed} block {index}: {source}")]
    Record {
        feed: String,
        index: u64,
        #[source]
        source: RecordError,
    },
}

/// A feed to read and (if ours) append to.
pub trait FeedIo: Send {
    /// The feed's public key.
    fn public_key(&self) -> VerifyingKey;
    /// Hex of the key, for messages.
    fn name(&self) -> String {
        hex::encode(self.public_key().as_bytes())
    }
    /// Number of blocks.
    fn length(&self) -> u64;
    /// Block `index`, stored locally.
    fn read(&mut self, index: u64) -> impl Future<Output = Result<Vec<u8>, FeedIoError>> + Send;
    /// Appends blocks atomically.
    fn write(
        &mut self,
        blocks: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<(), FeedIoError>> + Send;

    /// Brings this feed's web-seed copy under `root` up to date
    /// ([`crate::webseed::sync`]); `None` for an empty feed.
    fn sync_web_seed(
        &mut self,
        root: &std::path::Path,
    ) -> impl Future<Output = Result<Option<crate::webseed::Head>, FeedIoError>> + Send;

    /// Block `index` decoded as a record.
    fn read_record(
        &mut self,
        index: u64,
    ) -> impl Future<Output = Result<Record, FeedIoError>> + Send {
        async move {
            let block = self.read(index).await?;
            Record::decode(&block).map_err(|source| FeedIoError::Record {
                feed: self.name(),
                index,
                source,
            })
        }
    }
}

impl FeedIo for Feed {
    fn public_key(&self) -> VerifyingKey {
        *Feed::public_key(self)
    }
    fn length(&self) -> u64 {
        self.len()
    }
    async fn read(&mut self, index: u64) -> Result<Vec<u8>, FeedIoError> {
        Ok(self.get(index).await?)
    }
    /// A feed we write fsyncs every append: on a multi-threaded runtime
    /// the worker tells tokio it blocks (`block_in_place`), so the
    /// runtime's other tasks move to another thread meanwhile.
    async fn write(&mut self, blocks: Vec<Vec<u8>>) -> Result<(), FeedIoError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let handle = Handle::try_current().ok();
        if let Some(h) = handle.filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
            return Ok(tokio::task::block_in_place(|| {
                h.block_on(self.append_batch(&blocks))
            })?);
        }
        Ok(self.append_batch(&blocks).await?)
    }
    async fn sync_web_seed(
        &mut self,
        root: &std::path::Path,
    ) -> Result<Option<crate::webseed::Head>, FeedIoError> {
        Ok(crate::webseed::sync(self, root).await?)
    }
}

/// Opens the writable feeds of a publisher.
pub trait FeedOpener: Send + Sync {
    type Feed: FeedIo;
    /// The feed of `key`, created if it does not exist.
    fn writable(
        &self,
        key: &SigningKey,
    ) -> impl Future<Output = Result<Self::Feed, FeedIoError>> + Send;
    /// Whether the feed of `key` exists (without creating it).
    fn exists(&self, key: &VerifyingKey) -> bool;
}

impl FeedOpener for FeedStore {
    type Feed = Feed;
    async fn writable(&self, key: &SigningKey) -> Result<Feed, FeedIoError> {
        Ok(self.open_writable(key).await?)
    }
    fn exists(&self, key: &VerifyingKey) -> bool {
        self.has(key)
    }
}

/// Appends `want` as block 0 of an empty feed, or checks block 0 is `want`.
pub async fn ensure_header<F: FeedIo>(feed: &mut F, want: FeedHeader) -> Result<(), FeedIoError> {
    if feed.length() == 0 {
        return feed.write(vec![Record::Header(want).encode()]).await;
    }
    match feed.read_record(0).await? {
        Record::Header(have) if have == want => Ok(()),
        other => Err(FeedIoError::WrongHeader {
            feed: feed.name(),
            found: format!("{other:?}"),
            expected: format!("{want:?}"),
        }),
    }
}
