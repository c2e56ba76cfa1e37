//! The FUSE view's [`Source`]: the paths whose keys this node holds, and
//! their segments from the node, the way the substituter gets its blocks
//! (local, then peers, hedged with the web seeds, within a deadline), each
//! verified against the publisher's tree and opened under the path's key
//! in memory.
//!
//! The view runs on its own threads (`fuser`'s); each read blocks one of
//! them on the node's runtime until its segment is had or the deadline
//! passes, and then fails with `EIO`. The upstream cache is not a fallback
//! here: a NAR from upstream can only be verified whole, and a view must
//! answer reads at any offset without writing plaintext anywhere.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::listing::Listing;
use hypernar_feed::format::record::PathRecord;
use hypernar_feed::format::segment::Opener;
use hypernar_fuse_store::{PathInfo, Source, SourceError};
use tracing::debug;

use crate::http::nar::{Behind, BlockGetter};
use crate::http::route::nar_url;
use crate::listing::listing;
use crate::node::Node;
use crate::publishers::Found;

/// A node seen as the FUSE view's source.
#[derive(Debug)]
pub struct NodeSource {
    node: Node,
    rt: tokio::runtime::Handle,
    /// How long one segment may take before its read fails with `EIO`.
    deadline: Duration,
    web_after: Duration,
}

impl NodeSource {
    /// A source reading through `node` on the runtime `rt`.
    pub fn new(node: Node, rt: tokio::runtime::Handle, deadline: Duration) -> Arc<Self> {
        Arc::new(NodeSource {
            node,
            rt,
            deadline,
            web_after: crate::http::HttpLimits::default().web_seed_after,
        })
    }

    fn found(&self, path: &PathInfo) -> Result<Found, SourceError> {
        let publishers = self.node.publishers();
        let store_path = publishers
            .path_by_hash(&path.hash)
            .ok_or_else(|| format!("{} is no longer listed", path.hash))?;
        Ok(publishers.lookup(&store_path)?)
    }

    fn record(&self, path: &PathInfo) -> Result<(PathRecord, [u8; 32], [u8; 32]), SourceError> {
        let found = self.found(path)?;
        Ok((found.record, found.data_feed, found.key.0))
    }
}

/// The view's entry for a path: its narinfo names `nar/<hash>-<nar hash>.nar`
/// (the same name the HTTP API uses).
pub fn path_info(record: &PathRecord) -> PathInfo {
    let hash = record.store_path.hash_part().to_owned();
    let url = nar_url(&hash, &record.nar_hash);
    PathInfo {
        nar_name: url.trim_start_matches("nar/").to_owned(),
        narinfo_len: record.narinfo(url).render().len() as u64,
        hash,
        name: record.store_path.base_name().to_owned(),
        nar_size: record.nar_size,
        segment_size: record.segment_size,
    }
}

impl Source for NodeSource {
    fn generation(&self) -> u64 {
        self.node.publishers().generation()
    }

    fn narinfo(&self, path: &PathInfo) -> Result<String, SourceError> {
        let (record, _, _) = self.record(path)?;
        let url = nar_url(&path.hash, &record.nar_hash);
        Ok(record.narinfo(url).render())
    }

    fn paths(&self) -> Vec<PathInfo> {
        self.node
            .publishers()
            .ready()
            .iter()
            .map(|(r, _)| path_info(r))
            .collect()
    }

    fn segment(&self, path: &PathInfo, index: u64) -> Result<Vec<u8>, SourceError> {
        let (record, data_feed, key) = self.record(path)?;
        if index >= record.block_count {
            return Err(format!("segment {index} is past the end of {}", path.hash).into());
        }
        let layout = record.layout()?;
        let block_index = record
            .first_block
            .checked_add(index)
            .ok_or("block index overflows")?;
        let end = record.first_block.saturating_add(record.block_count);
        let behind = Behind::of(&self.node, self.web_after);
        let node = self.node.clone();
        let deadline = self.deadline;
        let mut block = self.rt.block_on(async move {
            let vk =
                VerifyingKey::from_bytes(&data_feed).map_err(|e| format!("data feed key: {e}"))?;
            let hub = node.add_feed(&vk, false).await?;
            let mut getter = BlockGetter::new(hub, data_feed, end, behind);
            Ok::<_, SourceError>(getter.get(block_index, deadline).await?)
        })?;
        let mut opener = Opener::new(layout, &hypernar_feed::format::segment::PathKey(key))?;
        let mut plain = Vec::with_capacity(record.segment_size as usize);
        opener.open_into(index, &mut block, &mut plain)?;
        Ok(plain)
    }

    fn listing(&self, path: &PathInfo) -> Result<Arc<Listing>, SourceError> {
        let found = self.found(path)?;
        let behind = Behind::of(&self.node, self.web_after);
        let node = self.node.clone();
        let deadline = self.deadline;
        Ok(self
            .rt
            .block_on(async move { listing(&node, &found, deadline, behind).await })?)
    }

    fn prefetch(&self, path: &PathInfo, from: u64, to: u64) {
        let Ok((record, data_feed, _)) = self.record(path) else {
            return;
        };
        let to = to.min(record.block_count);
        if from >= to {
            return;
        }
        let (start, end) = (record.first_block + from, record.first_block + to);
        let node = self.node.clone();
        let deadline = self.deadline;
        self.rt.spawn(async move {
            let Ok(vk) = VerifyingKey::from_bytes(&data_feed) else {
                return;
            };
            let Ok(hub) = node.add_feed(&vk, false).await else {
                return;
            };
            // The want ends with the deadline, so an abandoned read-ahead
            // does not keep blocks wanted for ever.
            if tokio::time::timeout(deadline, hub.want(start, end))
                .await
                .is_err()
            {
                debug!(start, end, "read-ahead not complete within the deadline");
            }
        });
    }
}
