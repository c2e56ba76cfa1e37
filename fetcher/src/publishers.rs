//! What a node knows of its trusted publishers: their index records and the
//! keys released for their paths, as the feeds replicate.

use std::collections::HashMap;
use std::sync::Mutex;

use hypernar_feed::format::identity::Identity;
use hypernar_feed::format::record::{KeyRelease, PathRecord, Record};
use hypernar_feed::format::segment::PathKey;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::PublisherIndex;

#[derive(Debug)]
struct Known {
    index: PublisherIndex,
    releases: HashMap<StorePath, PathKey>,
}

/// Trusted publishers' indexes and released keys.
#[derive(Debug, Default)]
pub struct Publishers {
    by_id: Mutex<HashMap<[u8; 32], Known>>,
}

impl Publishers {
    pub(crate) fn add(&self, id: Identity) {
        self.by_id
            .lock()
            .expect("publishers lock")
            .entry(id.to_bytes())
            .or_insert_with(|| Known {
                index: PublisherIndex::new(id),
                releases: HashMap::new(),
            });
    }

    pub(crate) fn apply(&self, id: &Identity, seq: u64, record: Record) {
        if let Some(k) = self
            .by_id
            .lock()
            .expect("publishers lock")
            .get_mut(&id.to_bytes())
        {
            k.index.apply(seq, record);
        }
    }

    pub(crate) fn add_key(&self, id: &Identity, release: KeyRelease) {
        if let Some(k) = self
            .by_id
            .lock()
            .expect("publishers lock")
            .get_mut(&id.to_bytes())
        {
            k.releases.insert(release.store_path, PathKey(release.key));
        }
    }

    /// The publisher, record and data-feed key of a published path.
    pub fn find(&self, path: &StorePath) -> Option<(Identity, PathRecord, [u8; 32])> {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id.values().find_map(|k| {
            let (_, rec) = k.index.paths.get(path)?;
            let feed = k.index.feeds.get(&rec.data_feed)?;
            Some((k.index.identity, rec.clone(), feed.public_key))
        })
    }

    /// The released key of a path, if it matches the index's commitment
    /// (a key feed is not trusted on its own).
    pub fn key(&self, id: &Identity, path: &StorePath) -> Option<PathKey> {
        let by_id = self.by_id.lock().expect("publishers lock");
        let k = by_id.get(&id.to_bytes())?;
        let (_, rec) = k.index.paths.get(path)?;
        let key = k.releases.get(path)?;
        (key.check() == rec.key_check).then(|| key.clone())
    }

    /// Whether `id` is trusted by this node.
    pub fn is_trusted(&self, id: &Identity) -> bool {
        self.by_id
            .lock()
            .expect("publishers lock")
            .contains_key(&id.to_bytes())
    }

    /// Number of paths known across publishers.
    pub fn path_count(&self) -> usize {
        let by_id = self.by_id.lock().expect("publishers lock");
        by_id.values().map(|k| k.index.paths.len()).sum()
    }
}
