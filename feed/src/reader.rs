//! Reading a published path back: blocks in, verified NAR bytes out.
//!
//! Two stages so both cores work: an async task reads blocks from the feed,
//! a blocking thread authenticates, decrypts, decompresses, hashes and
//! writes them. Every block is authenticated before its bytes are written;
//! the NarHash and NarSize are checked at the end.

use std::io::Write;

use tokio::sync::mpsc;

use crate::format::narinfo::{NarHash, NarHasher};
use crate::format::record::PathRecord;
use crate::format::segment::{Opener, PathKey, SegmentError};
use crate::format::storepath::StorePath;
use crate::store::Feed;

/// Blocks read ahead of the decrypting thread.
const READ_AHEAD: usize = 8;

/// Where a reader gets a path's blocks: the local feed store, or (in the
/// fetcher) peers behind a feed's hub. Implementations return each block
/// only once it is verified against the publisher's signed tree.
pub trait BlockSource: Send {
    /// Block `index` of the feed, verified.
    fn block(
        &mut self,
        index: u64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, BoxError>> + Send;
}

/// A boxed error from a block source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl BlockSource for Feed {
    async fn block(&mut self, index: u64) -> Result<Vec<u8>, BoxError> {
        Ok(self.get(index).await?)
    }
}

/// Why a NAR could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Source {
        path: StorePath,
        #[source]
        source: BoxError,
    },
    #[error("{path}: {source}")]
    Segment {
        path: StorePath,
        #[source]
        source: SegmentError,
    },
    #[error("{path}: the key does not match the index record's commitment")]
    WrongKey { path: StorePath },
    #[error("{path}: NAR hash mismatch: index says {expected}, blocks give {got}")]
    NarHash {
        path: StorePath,
        expected: NarHash,
        got: NarHash,
    },
    #[error("{path}: writing the NAR failed: {source}")]
    Write {
        path: StorePath,
        #[source]
        source: std::io::Error,
    },
}

/// Summary of a NAR read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    pub nar_bytes: u64,
    pub stored_bytes: u64,
}

/// Writes the NAR of `record` from `data` to `out`, verifying as it goes.
pub async fn write_nar<W: Write + Send + 'static, S: BlockSource>(
    data: &mut S,
    record: &PathRecord,
    key: &PathKey,
    out: W,
) -> Result<(W, ReadSummary), ReadError> {
    let path = record.store_path.clone();
    if key.check() != record.key_check {
        return Err(ReadError::WrongKey { path });
    }
    let seg_err = |source| ReadError::Segment {
        path: path.clone(),
        source,
    };
    let layout = record.layout().map_err(seg_err)?;
    let mut opener = Opener::new(layout, key).map_err(seg_err)?;
    let (tx, mut rx) = mpsc::channel::<(u64, Vec<u8>)>(READ_AHEAD);

    let expected = record.nar_hash;
    let worker_path = path.clone();
    let worker = tokio::task::spawn_blocking(move || -> Result<(W, u64), ReadError> {
        let path = worker_path;
        let mut out = out;
        let mut hasher = NarHasher::new();
        let mut plain = Vec::new();
        let mut written = 0u64;
        while let Some((i, mut block)) = rx.blocking_recv() {
            plain.clear();
            opener
                .open_into(i, &mut block, &mut plain)
                .map_err(|source| ReadError::Segment {
                    path: path.clone(),
                    source,
                })?;
            hasher.update(&plain);
            out.write_all(&plain).map_err(|source| ReadError::Write {
                path: path.clone(),
                source,
            })?;
            written += plain.len() as u64;
        }
        out.flush().map_err(|source| ReadError::Write {
            path: path.clone(),
            source,
        })?;
        let got = hasher.finish();
        if got != expected {
            return Err(ReadError::NarHash {
                path,
                expected,
                got,
            });
        }
        Ok((out, written))
    });

    let mut stored = 0u64;
    let mut read_err = None;
    for i in 0..record.block_count {
        match data.block(record.first_block + i).await {
            Ok(block) => {
                stored += block.len() as u64;
                if tx.send((i, block)).await.is_err() {
                    break; // the worker stopped; its error says why
                }
            }
            Err(source) => {
                read_err = Some(ReadError::Source {
                    path: path.clone(),
                    source,
                });
                break;
            }
        }
    }
    drop(tx);
    let worker_result = worker.await.expect("NAR worker panicked");
    if let Some(e) = read_err {
        return Err(e);
    }
    let (out, nar_bytes) = worker_result?;
    Ok((
        out,
        ReadSummary {
            nar_bytes,
            stored_bytes: stored,
        },
    ))
}

/// Why `cat` failed: the path could not be found or unlocked, or read.
#[derive(Debug, thiserror::Error)]
pub enum CatError {
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Finds `path` among the publishers in `store` by lookup
/// ([`crate::lookup::locate`]: no index is read whole) and writes its
/// verified NAR to `out`. The key comes from a key feed, or, for the
/// publisher itself, from unwrapping the index record with `wrap_key`.
/// Returns what was found with what was read.
pub async fn cat<W: Write + Send + 'static>(
    store: &crate::store::FeedStore,
    path: &StorePath,
    wrap_key: Option<&[u8; 32]>,
    out: W,
) -> Result<(W, ReadSummary, crate::lookup::Located), CatError> {
    use crate::catalog::CatalogError;
    let found = crate::lookup::locate(store, path).await?;
    let record = &found.record;
    let key = match &found.key {
        Some(k) => k.clone(),
        None => wrap_key
            .and_then(|w| crate::format::record::unwrap_path_key(w, path, &record.wrapped_key))
            .ok_or_else(|| CatalogError::NoKey(path.clone()))?,
    };
    let no_feed = || CatalogError::NoDataFeed {
        path: path.clone(),
        feed: hex::encode(found.data_feed.public_key),
    };
    let public = ed25519_dalek::VerifyingKey::from_bytes(&found.data_feed.public_key)
        .map_err(|_| no_feed())?;
    let mut data = store
        .open_existing(&public)
        .await
        .map_err(CatalogError::from)?
        .ok_or_else(no_feed)?;
    let (out, summary) = write_nar(&mut data, record, &key, out).await?;
    Ok((out, summary, found))
}
