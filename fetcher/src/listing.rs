//! Paths' NAR listings, for the FUSE store view (`store/<path>/…`) and the
//! HTTP API's `/<hash>.ls`.
//!
//! A path published with a listing has it sealed under its listing key in
//! the blocks right after its segments ([`ListingRecord`]): a few blocks,
//! fetched like any others (local, peers, web seed), verified against the
//! publisher's tree, opened and decoded with every bound checked. A path
//! published before listings existed is listed by scanning its NAR once —
//! every segment is fetched, so for a large path that costs what reading
//! it does; `hypernar publish` of the same paths into a new data directory
//! gives them listings (docs/protocol.md). Decoded listings are kept in a
//! bounded memory cache shared by the view and the HTTP API.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::listing::{Listing, ListingError, NarScanner};
use hypernar_feed::format::record::ListingRecord;
use hypernar_feed::format::segment::{Layout, Opener, SegmentError};
use hypernar_fuse_store::cache::ByteLru;
use tracing::info;

use crate::http::nar::{AbortOnDrop, Behind, BlockGetter, NarStreamError};
use crate::node::{Node, NodeError};
use crate::publishers::Found;

/// Bytes of decoded listings kept in memory.
pub const LISTING_CACHE_BYTES: usize = 32 << 20;

/// Why a listing could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ListingFetchError {
    #[error("opening the data feed: {0}")]
    Node(#[from] NodeError),
    #[error(transparent)]
    Blocks(#[from] NarStreamError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Listing(#[from] ListingError),
}

/// Listings by (data feed, first block of the path): one publish.
pub type ListingCache = ByteLru<([u8; 32], u64), Arc<Listing>>;

/// A new, empty cache of [`LISTING_CACHE_BYTES`].
pub fn cache() -> ListingCache {
    ByteLru::new(LISTING_CACHE_BYTES)
}

/// The listing of `found`, from the cache, its listing blocks, or a scan
/// of its NAR. Each block may take up to `deadline`.
pub async fn listing(
    node: &Node,
    found: &Found,
    deadline: Duration,
    behind: Behind,
) -> Result<Arc<Listing>, ListingFetchError> {
    let cache_key = (found.data_feed, found.record.first_block);
    if let Some(l) = node.listings().get(&cache_key) {
        return Ok(l);
    }
    let vk = VerifyingKey::from_bytes(&found.data_feed).map_err(|e| {
        NarStreamError::Layout(format!("the data feed key is not a valid key: {e}"))
    })?;
    let hub = node.add_feed(&vk, false).await?;
    let record = &found.record;
    let listing = match &found.listing {
        Some(l) => {
            let layout = Layout::new(record.store_path.clone(), l.size, record.segment_size)?;
            let bytes = read(
                hub,
                found.data_feed,
                l,
                &layout,
                Opener::new(layout.clone(), &found.key.listing())?,
                deadline,
                behind,
            )
            .await?;
            Listing::decode(&bytes, record.nar_size)?
        }
        None => {
            info!(path = %record.store_path, "no listing was published for this path: scanning its NAR");
            let layout = record.layout()?;
            let mut opener = Opener::new(layout.clone(), &found.key)?;
            let (first, count) = (record.first_block, record.block_count);
            let end = first.saturating_add(count);
            let _ahead = want_all(&hub, first, end);
            let mut getter = BlockGetter::new(hub, found.data_feed, end, behind);
            let mut scanner = NarScanner::new();
            let mut plain = Vec::with_capacity(record.segment_size as usize);
            for i in 0..count {
                let mut block = getter.get(first + i, deadline).await?;
                plain.clear();
                opener.open_into(i, &mut block, &mut plain)?;
                scanner.feed(&plain)?;
            }
            scanner.finish()?
        }
    };
    let listing = Arc::new(listing);
    node.listings().insert(cache_key, listing.clone());
    Ok(listing)
}

/// Wants `start..end` at once, so the hub spreads it over peers; the want
/// ends when the guard is dropped.
fn want_all(hub: &crate::hub::HubHandle, start: u64, end: u64) -> AbortOnDrop {
    let hub = hub.clone();
    AbortOnDrop(tokio::spawn(async move {
        let _ = hub.want(start, end).await;
    }))
}

/// The opened bytes of a listing's blocks.
async fn read(
    hub: crate::hub::HubHandle,
    data_feed: [u8; 32],
    l: &ListingRecord,
    layout: &Layout,
    mut opener: Opener,
    deadline: Duration,
    behind: Behind,
) -> Result<Vec<u8>, ListingFetchError> {
    let end = l.first_block.saturating_add(l.block_count);
    let _ahead = want_all(&hub, l.first_block, end);
    let mut getter = BlockGetter::new(hub, data_feed, end, behind);
    let mut bytes = Vec::with_capacity(layout.nar_size.min(1 << 20) as usize);
    for i in 0..layout.count() {
        let mut block = getter.get(l.first_block + i, deadline).await?;
        opener.open_into(i, &mut block, &mut bytes)?;
    }
    Ok(bytes)
}
