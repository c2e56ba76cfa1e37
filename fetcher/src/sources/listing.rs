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

use hypernar_feed::format::listing::{Listing, NarScanner};
use hypernar_feed::format::segment::{Layout, Opener};
use hypernar_fuse_store::cache::ByteLru;
use tracing::info;

use super::{PathError, PathReader, Sources};
use crate::publishers::Found;

/// Bytes of decoded listings kept in memory.
pub const LISTING_CACHE_BYTES: usize = 32 << 20;

/// Listings by (data feed, first block of the path): one publish.
pub type ListingCache = ByteLru<([u8; 32], u64), Arc<Listing>>;

/// A new, empty cache of [`LISTING_CACHE_BYTES`].
pub fn cache() -> ListingCache {
    ByteLru::new(LISTING_CACHE_BYTES)
}

/// The listing of `found`, from the cache, its listing blocks, or a scan
/// of its NAR, through the path reader.
pub async fn listing(sources: &Sources, found: &Found) -> Result<Arc<Listing>, PathError> {
    let cache_key = (found.data_feed.to_bytes(), found.record.first_block);
    if let Some(l) = sources.listings().get(&cache_key) {
        return Ok(l);
    }
    let reader = sources.open(found.clone()).await?;
    let listing = match &found.listing {
        Some(l) => Listing::decode(&listing_bytes(&reader, l).await?, found.record.nar_size)?,
        None => scan(&reader).await?,
    };
    let listing = Arc::new(listing);
    sources.listings().insert(cache_key, listing.clone());
    Ok(listing)
}

/// The opened bytes of a path's listing blocks.
async fn listing_bytes(
    reader: &PathReader,
    l: &hypernar_feed::format::record::ListingRecord,
) -> Result<Vec<u8>, PathError> {
    let record = reader.record();
    let layout = Layout::new(record.store_path.clone(), l.size, record.segment_size)?;
    let mut opener = Opener::new(layout.clone(), &reader.found().key.listing())?;
    let mut bytes = Vec::with_capacity(layout.nar_size.min(1 << 20) as usize);
    let mut blocks = reader.blocks(l.first_block, l.first_block.saturating_add(l.block_count));
    let mut i = 0;
    while let Some(got) = blocks.next().await {
        let (_, mut block) = got?;
        opener.open_into(i, &mut block, &mut bytes)?;
        i += 1;
    }
    Ok(bytes)
}

/// A path published without a listing: its NAR scanned once.
async fn scan(reader: &PathReader) -> Result<Listing, PathError> {
    let record = reader.record();
    info!(path = %record.store_path, "no listing was published for this path: scanning its NAR");
    let mut opener = Opener::new(record.layout()?, &reader.found().key)?;
    let mut scanner = NarScanner::new();
    let mut plain = Vec::with_capacity(record.segment_size as usize);
    let first = record.first_block;
    let mut blocks = reader.blocks(first, first.saturating_add(record.block_count));
    while let Some(got) = blocks.next().await {
        let (i, mut block) = got?;
        plain.clear();
        opener.open_into(i - first, &mut block, &mut plain)?;
        scanner.feed(&plain)?;
    }
    Ok(scanner.finish()?)
}
