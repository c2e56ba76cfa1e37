//! Data feeds: which one a path's blocks go to.
//!
//! A publisher appends every path's blocks to its current data feed
//! (`data/0`, then `data/1`, …). Peers track the blocks they have of a
//! feed up to `MAX_TRACKED_BLOCKS` (2^27) and a feed's Merkle tree grows
//! with it, so once the current feed would pass the bound (by default
//! [`DEFAULT_DATA_FEED_BLOCKS`], `publish --data-feed-blocks`) the
//! publisher opens the next one, declares it in the index, and appends
//! there. A path is never split between feeds: its segments and its
//! listing go to one feed, and a path larger than the bound gets a feed of
//! its own. Fetchers need nothing new: a path record names its data feed
//! by the id its declaration gives.
//!
//! [`must_roll`] is the pure part; [`Publisher::roll_data_feed`] acts.
//!
//! **Crash safety.** The next feed is created and given its header, then
//! declared in the index, and only then is a path journaled into it. A
//! run killed before the declaration leaves an undeclared feed holding
//! only its header: the next open still appends to the last declared
//! feed, rolls again at its next path, and finds that feed's header
//! already there. The current feed at open is the declared data feed with
//! the highest id, so a journal (which names its feed's id) always
//! resumes in the feed it was written for.

use hypernar_feed::format::record::{FeedDecl, FeedHeader, FeedRole, Record};
use hypernar_feed::io::{ensure_header, FeedIo, FeedOpener};
use tracing::info;

use crate::error::PublishError;
use crate::publisher::{fault_point, Publisher};

/// Blocks a data feed holds before the publisher opens the next one:
/// 2^25, a quarter of what peers track per feed (8 TiB of 256 KiB
/// segments).
pub const DEFAULT_DATA_FEED_BLOCKS: u64 = 1 << 25;

/// Whether a path of `blocks` blocks must go to a new data feed, the
/// current one holding `length` blocks (its header included) of at most
/// `bound`. A feed that holds no path yet takes any path.
pub fn must_roll(length: u64, blocks: u64, bound: u64) -> bool {
    length > 1 && length.checked_add(blocks).is_none_or(|end| end > bound)
}

/// The name of data feed number `n`.
pub fn data_feed_name(n: u32) -> String {
    format!("data/{n}")
}

/// The number in a data feed's name (`data/7` → 7).
fn number_of(name: &str) -> Option<u32> {
    name.strip_prefix("data/")?.parse().ok()
}

impl<O: FeedOpener> Publisher<O> {
    /// Sets the data-feed bound (see [`must_roll`]; tests use tiny ones).
    pub fn set_data_feed_blocks(&mut self, blocks: u64) {
        self.data_bound = blocks.max(2);
    }

    /// The declared data feed with the highest id: where blocks go.
    pub(crate) fn current_data_decl(&self) -> Option<&FeedDecl> {
        self.index
            .feeds
            .values()
            .filter(|d| d.role == FeedRole::Data)
            .max_by_key(|d| d.id)
    }

    /// Opens the next data feed, declares it in the index, and makes it
    /// the current one.
    pub(crate) async fn roll_data_feed(&mut self) -> Result<(), PublishError> {
        let current = self
            .current_data_decl()
            .cloned()
            .ok_or_else(|| PublishError::Inconsistent("no data feed is declared".into()))?;
        let n = number_of(&current.name)
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| {
                PublishError::Inconsistent(format!(
                    "the current data feed is named {:?}, not data/<number>",
                    current.name
                ))
            })?;
        let name = data_feed_name(n);
        let mut feed = self
            .opener
            .writable(&self.secret.feed_signing_key(&name))
            .await?;
        let me = self.index.identity.to_bytes();
        ensure_header(&mut feed, FeedHeader::new(FeedRole::Data, me, &name)).await?;
        fault_point("data-rolled");
        let id = self.index.feeds.keys().max().map_or(0, |m| m + 1);
        let decl = FeedDecl {
            id,
            role: FeedRole::Data,
            name: name.clone(),
            public_key: feed.public_key().to_bytes(),
        };
        self.index_feed
            .write(vec![Record::Feed(decl).encode()])
            .await?;
        self.index.catch_up(&mut self.index_feed).await?;
        info!(
            feed = %name,
            previous = %current.name,
            blocks = self.data.length(),
            "data feed full; appending to the next one"
        );
        self.data = feed;
        self.data_id = id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_goes_to_a_new_feed_only_when_it_would_pass_the_bound() {
        // (length with header, blocks of the path, bound) → roll?
        for (length, blocks, bound, want) in [
            (1, 3, 4, false),              // empty feed: anything fits
            (1, 100, 4, false),            // even a path over the bound
            (2, 2, 4, false),              // ends exactly at the bound
            (2, 3, 4, true),               // one past it
            (4, 1, 4, true),               // full
            (3, 0, 4, false),              // nothing to add
            (u64::MAX, 1, u64::MAX, true), // no overflow
            (2, u64::MAX, 10, true),
        ] {
            assert_eq!(
                must_roll(length, blocks, bound),
                want,
                "length {length}, blocks {blocks}, bound {bound}"
            );
        }
    }

    #[test]
    fn data_feed_names_number_up() {
        assert_eq!(
            data_feed_name(0),
            hypernar_feed::format::identity::DATA_FEED_0
        );
        assert_eq!(number_of(&data_feed_name(41)), Some(41));
        assert_eq!(number_of("data/x"), None);
        assert_eq!(number_of("keys/public"), None);
        assert_eq!(number_of("data/4294967296"), None);
    }
}
