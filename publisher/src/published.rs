//! What this publisher has published, without a map of every path.
//!
//! The publisher keeps in memory only the **tail** of its index: path
//! records past the last manifest's `indexed_to` and key releases past its
//! `keys_indexed_to` (bounded by the run tail, [`crate::runs`]). Anything
//! older it looks up in its own runs, exactly as a fetcher does over the
//! network (`fetcher/src/sources/lookup.rs`) but reading its local feeds:
//! one page of each live run, then the record. So opening a publisher of
//! 10^6 paths reads a few thousand blocks, not 10^6, and its memory does
//! not grow with the index.
//!
//! A publisher made before runs existed has no manifest: its whole index
//! is the tail until the first cut (`docs/protocol.md`, "Runs").

use std::collections::HashSet;

use hypernar_feed::format::record::{PathRecord, Record};
use hypernar_feed::format::run::{self, PathHash, RunEntry, NO_KEY};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::{FeedIo, FeedOpener};

use crate::error::PublishError;
use crate::publisher::Publisher;

/// Where a published path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its record's block in the index feed.
    pub index_seq: u64,
    /// Its key release's block in the public key feed, if released.
    pub key_seq: Option<u64>,
}

impl<O: FeedOpener> Publisher<O> {
    /// Where the path of hash part `hash` is published, if it is: the tail
    /// first, then one page of each live run.
    pub(crate) async fn find(&mut self, hash: &str) -> Result<Option<Found>, PublishError> {
        let Some(h) = run::hash_of(hash) else {
            return Ok(None);
        };
        let released = self.released.get(&h).copied();
        if let Some(path) = self.by_hash.get(hash) {
            let index_seq = self.index.paths[path].0;
            return Ok(Some(Found {
                index_seq,
                key_seq: released,
            }));
        }
        Ok(self.find_in_runs(&h).await?.map(|e| Found {
            index_seq: e.index_seq,
            key_seq: released.or((e.key_seq != NO_KEY).then_some(e.key_seq)),
        }))
    }

    /// Where the path of hash part `hash` is published, if the tail holds
    /// it: what a commit checks. A journaled commit's record, if written,
    /// is always in the tail, because runs are cut only after a commit
    /// clears its journal, and opening finishes a journal before anything
    /// else; and a path in a run was skipped when the publish was planned.
    pub(crate) fn find_in_tail(&self, hash: &str) -> Option<Found> {
        let path = self.by_hash.get(hash)?;
        let released = run::hash_of(hash).and_then(|h| self.released.get(&h).copied());
        Some(Found {
            index_seq: self.index.paths[path].0,
            key_seq: released,
        })
    }

    /// The newest entry for `hash` in the live runs
    /// ([`hypernar_feed::lookup::find_in_runs`], as `cat-nar` reads them).
    pub(crate) async fn find_in_runs(
        &mut self,
        hash: &PathHash,
    ) -> Result<Option<RunEntry>, PublishError> {
        use hypernar_feed::lookup::{self, LookupError};
        lookup::find_in_runs(&mut self.runs, &self.manifest, hash)
            .await
            .map_err(|e| match e {
                LookupError::Io(e) => e.into(),
                other => PublishError::Inconsistent(other.to_string()),
            })
    }

    /// The path record at block `seq` of the index (the tail's copy when
    /// it holds it).
    pub(crate) async fn record_at(&mut self, seq: u64) -> Result<PathRecord, PublishError> {
        match self.index_feed.read_record(seq).await? {
            Record::Path(p) => Ok(*p),
            other => Err(PublishError::Inconsistent(format!(
                "block {seq} of the index should be a path record, is {}",
                other.kind_name()
            ))),
        }
    }

    /// Whether the index holds a listing for `path`, whose record is at
    /// `seq`. A listing is written in the same append as its record (the
    /// block after it); a journal of an earlier build may have left it out.
    pub(crate) async fn has_listing(
        &mut self,
        path: &StorePath,
        seq: u64,
    ) -> Result<bool, PublishError> {
        if self.index.paths.contains_key(path) {
            return Ok(self.index.listings.contains_key(path));
        }
        if seq + 1 >= self.index_feed.length() {
            return Ok(false);
        }
        Ok(matches!(
            self.index_feed.read_record(seq + 1).await?,
            Record::Listing(l) if l.store_path == *path && l.index_seq == seq
        ))
    }

    /// Hashes of every path whose key is in the public key feed: the runs'
    /// entries that carry a key, and the tail's releases. One pass over
    /// every live run's pages; what `release` of everything needs.
    pub(crate) async fn released_hashes(&mut self) -> Result<HashSet<PathHash>, PublishError> {
        let mut out: HashSet<PathHash> = self.released.keys().copied().collect();
        for i in 0..self.manifest.runs.len() {
            let r = self.manifest.runs[i];
            for block in r.first_block..r.first_block + r.pages() {
                if let Record::RunPage(page) = self.runs.read_record(block).await? {
                    out.extend(
                        page.entries
                            .iter()
                            .filter(|e| e.key_seq != NO_KEY)
                            .map(|e| e.hash),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Forgets the tail once a cut put it into a run.
    pub(crate) fn tail_cut(&mut self) {
        self.index.paths.clear();
        self.index.listings.clear();
        self.by_hash.clear();
        self.released.clear();
    }
}
