//! The block-fetching API the substituter and the FUSE view use: blocks of
//! a feed, in order, from whichever peers have them, each verified before
//! it is returned, with read-ahead, a deadline per block, and cancellation
//! by dropping.

use std::io::Write;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::reader::{self, BlockSource, BoxError, ReadError, ReadSummary};
use tokio::task::JoinHandle;

use crate::hub::HubHandle;
use crate::node::{Node, NodeError};

/// Blocks requested ahead of the one being read: wide enough (64 MiB of
/// 256 KiB segments) that many peers can each serve a different part.
pub const READ_AHEAD: u64 = 256;

/// Why a path could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchPathError {
    #[error("{0} is not published by any trusted publisher known so far")]
    Unknown(StorePath),
    #[error("no key has been released for {0}")]
    NoKey(StorePath),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A feed's blocks from its hub, with read-ahead.
#[derive(Debug)]
pub struct HubSource {
    hub: HubHandle,
    end: u64,
    deadline: Duration,
    requested_until: u64,
    ahead: Vec<JoinHandle<()>>,
}

impl HubSource {
    /// Blocks below `end` of the feed behind `hub`; each must arrive within
    /// `deadline` of being asked for.
    pub fn new(hub: HubHandle, end: u64, deadline: Duration) -> Self {
        HubSource {
            hub,
            end,
            deadline,
            requested_until: 0,
            ahead: Vec::new(),
        }
    }
}

impl Drop for HubSource {
    fn drop(&mut self) {
        // Dropping the wants cancels them at the hub.
        for t in &self.ahead {
            t.abort();
        }
    }
}

/// A block did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("block {index} of feed {feed} did not arrive within {deadline:?}")]
pub struct Timeout {
    pub feed: String,
    pub index: u64,
    pub deadline: Duration,
}

impl BlockSource for HubSource {
    async fn block(&mut self, index: u64) -> Result<Vec<u8>, BoxError> {
        if index + READ_AHEAD / 2 >= self.requested_until {
            let start = index.max(self.requested_until);
            let until = (index + READ_AHEAD).min(self.end);
            if start < until {
                let hub = self.hub.clone();
                self.ahead.retain(|t| !t.is_finished());
                self.ahead.push(tokio::spawn(async move {
                    let _ = hub.want(start, until).await;
                }));
                self.requested_until = until;
            }
        }
        let asked = std::time::Instant::now();
        tokio::time::timeout(self.deadline, self.hub.want(index, index + 1))
            .await
            .map_err(|_| Timeout {
                feed: self.hub.name().to_owned(),
                index,
                deadline: self.deadline,
            })??;
        if asked.elapsed() > Duration::from_millis(1) {
            tracing::debug!(feed = self.hub.name(), index, waited = ?asked.elapsed(), "block arrived");
        }
        Ok(self.hub.get(index).await?)
    }
}

impl Node {
    /// Fetches the NAR of `path` from the swarm into `out`: every block
    /// verified against the publisher's tree, authenticated and decrypted
    /// with the released key, the whole checked against its NarHash.
    pub async fn fetch_nar<W: Write + Send + 'static>(
        &self,
        path: &StorePath,
        out: W,
        deadline: Duration,
    ) -> Result<(W, ReadSummary), FetchPathError> {
        let (publisher, record, data_key) = self
            .publishers()
            .find(path)
            .ok_or_else(|| FetchPathError::Unknown(path.clone()))?;
        let key = self
            .publishers()
            .key(&publisher, path)
            .ok_or_else(|| FetchPathError::NoKey(path.clone()))?;
        let data_key = VerifyingKey::from_bytes(&data_key)
            .map_err(|_| FetchPathError::Unknown(path.clone()))?;
        let hub = self.add_feed(&data_key, false).await?;
        let end = record.first_block + record.block_count;
        let mut source = HubSource::new(hub.clone(), end, deadline);
        // The whole path is needed: want all of it now, so the hub can
        // spread it over peers rarest first rather than in reading order
        // (peers that start together then ask the seed for different
        // blocks). The reader still consumes in order.
        let first = record.first_block;
        source.ahead.push(tokio::spawn(async move {
            let _ = hub.want(first, end).await;
        }));
        Ok(reader::write_nar(&mut source, &record, &key, out).await?)
    }
}
