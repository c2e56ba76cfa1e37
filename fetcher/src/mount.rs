//! The FUSE view's [`Backing`]: the paths whose keys this node holds (of
//! an index in runs, those looked up so far and its tail; any other is
//! looked up when its name is asked for), and
//! their segments through the path reader (`sources::reader`), the way the
//! substituter gets its blocks (local, then peers, hedged with the web
//! seeds, within a deadline), each verified against the publisher's tree
//! and opened under the path's key in memory.
//!
//! The view runs on its own threads (`fuser`'s); each read blocks one of
//! them on the node's runtime until its segment is had or the deadline
//! passes, and then fails with `EIO`. The upstream cache is not a fallback
//! here: a NAR from upstream can only be verified whole, and a view must
//! answer reads at any offset without writing plaintext anywhere.

use std::sync::Arc;
use std::time::Duration;

use hypernar_feed::format::listing::Listing;
use hypernar_feed::format::narinfo::nar_url;
use hypernar_feed::format::record::PathRecord;
use hypernar_fuse_store::{Backing, BackingError, PathInfo};

use crate::publishers::Found;
use crate::sources::{Sources, Timing};

/// The paths of a node's catalog, read through its sources, as the FUSE
/// view's source.
#[derive(Debug)]
pub struct MountBacking {
    sources: Sources,
    rt: tokio::runtime::Handle,
}

impl MountBacking {
    /// A source reading through `sources` on the runtime `rt`; one segment
    /// may take `deadline` before its read fails with `EIO`.
    pub fn new(sources: &Sources, rt: tokio::runtime::Handle, deadline: Duration) -> Arc<Self> {
        Arc::new(MountBacking {
            sources: sources.with_timing(Timing {
                deadline,
                ..sources.timing()
            }),
            rt,
        })
    }

    fn found(&self, path: &PathInfo) -> Result<Found, BackingError> {
        let publishers = self.sources.node().publishers();
        let store_path = publishers
            .path_by_hash(&path.hash)
            .ok_or_else(|| format!("{} is no longer listed", path.hash))?;
        Ok(publishers.lookup(&store_path)?)
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

impl Backing for MountBacking {
    fn generation(&self) -> u64 {
        self.sources.node().publishers().generation()
    }

    fn narinfo(&self, path: &PathInfo) -> Result<String, BackingError> {
        let record = self.found(path)?.record;
        let url = nar_url(&path.hash, &record.nar_hash);
        Ok(record.narinfo(url).render())
    }

    fn paths(&self) -> Vec<PathInfo> {
        self.sources
            .node()
            .publishers()
            .ready()
            .iter()
            .map(|(r, _)| path_info(r))
            .collect()
    }

    /// A path not in the catalog yet is looked up in its publisher's runs
    /// (`sources/lookup.rs`), as a narinfo request is; once found it is in
    /// the catalog, so in [`Backing::paths`].
    fn look_up(&self, hash: &str) -> bool {
        let sources = self.sources.clone();
        let hash = hash.to_owned();
        self.rt.block_on(async move {
            match sources.path_by_hash(&hash).await {
                Some(p) => sources.node().publishers().lookup(&p).is_ok(),
                None => false,
            }
        })
    }

    fn segment(&self, path: &PathInfo, index: u64) -> Result<Vec<u8>, BackingError> {
        let found = self.found(path)?;
        if index >= found.record.block_count {
            return Err(format!("segment {index} is past the end of {}", path.hash).into());
        }
        let sources = self.sources.clone();
        Ok(self.rt.block_on(async move {
            let reader = sources.open(found).await?;
            reader.segment(index).await
        })?)
    }

    fn listing(&self, path: &PathInfo) -> Result<Arc<Listing>, BackingError> {
        let found = self.found(path)?;
        let sources = self.sources.clone();
        Ok(self
            .rt
            .block_on(async move { crate::sources::listing::listing(&sources, &found).await })?)
    }

    fn prefetch(&self, path: &PathInfo, from: u64, to: u64) {
        let Ok(found) = self.found(path) else {
            return;
        };
        let sources = self.sources.clone();
        self.rt.spawn(async move {
            if let Ok(reader) = sources.open(found).await {
                reader.prefetch(from, to).await;
            }
        });
    }
}
