//! Key releases: to the public key feed, where every peer that trusts the
//! publisher can read them, or to an audience's unlisted key feed.

use std::collections::{HashMap, HashSet};

use hypernar_feed::format::identity::{feed_key_text, AUDIENCE_KEYS_PREFIX, PUBLIC_KEYS_FEED};
use hypernar_feed::format::record::{
    unwrap_path_key, FeedHeader, FeedRole, KeyRelease, PathRecord, Record,
};
use hypernar_feed::format::run::{self, PathHash};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::{ensure_header, FeedIo, FeedIoError, FeedOpener};

use crate::error::PublishError;
use crate::publisher::{Publisher, ReleaseSummary};

impl<O: FeedOpener> Publisher<O> {
    /// The key release of the path whose record is at index block `seq`.
    pub(crate) async fn key_release(&mut self, seq: u64) -> Result<KeyRelease, PublishError> {
        let rec = self.record_at(seq).await?;
        self.release_of(seq, &rec)
    }

    fn release_of(&self, seq: u64, rec: &PathRecord) -> Result<KeyRelease, PublishError> {
        let path = &rec.store_path;
        let key = unwrap_path_key(&self.secret.wrap_key(), path, &rec.wrapped_key)
            .ok_or_else(|| PublishError::Unwrap(path.clone()))?;
        Ok(KeyRelease {
            index_seq: seq,
            store_path: path.clone(),
            key: key.0,
        })
    }

    /// Releases keys of published paths (all of them, or `only`) to the
    /// public key feed, or to the key feed of `audience`.
    ///
    /// All of them is one pass over the index, with the hashes of the
    /// paths already released in memory (20 bytes each, from the runs);
    /// `only` is a lookup per path.
    pub async fn release(
        &mut self,
        only: Option<Vec<String>>,
        audience: Option<&str>,
    ) -> Result<ReleaseSummary, PublishError> {
        // Index blocks of the paths asked for, and whether each is known
        // to be released already (`None`: check the set below).
        let mut targets: Vec<(u64, Option<bool>)> = Vec::new();
        let all = only.is_none();
        for h in only.unwrap_or_default() {
            let found = self
                .find(&h)
                .await?
                .ok_or_else(|| PublishError::NotPublished(h.clone()))?;
            targets.push((found.index_seq, Some(found.key_seq.is_some())));
        }
        if all {
            targets.extend((1..self.index_feed.length()).map(|seq| (seq, None)));
        }
        let (mut audience_feed, audience_released, name) = match audience {
            None => (None, None, PUBLIC_KEYS_FEED.to_owned()),
            Some(a) => {
                let name = audience_feed_name(a)?;
                let mut feed = self
                    .opener
                    .writable(&self.secret.feed_signing_key(&name))
                    .await?;
                let me = self.index.identity.to_bytes();
                ensure_header(&mut feed, FeedHeader::new(FeedRole::Keys, me, &name)).await?;
                let released: HashSet<StorePath> =
                    releases_in(&mut feed, 1).await?.into_keys().collect();
                (Some(feed), Some(released), name)
            }
        };
        let public_released = match (&audience_released, all) {
            (None, true) => Some(self.released_hashes().await?),
            _ => None,
        };
        let mut batch = Vec::new();
        let mut already = 0;
        let mut newly = 0u64;
        let token = feed_key_text(&match &audience_feed {
            Some(f) => f.public_key(),
            None => self.public_keys.public_key(),
        });
        for (seq, known) in targets {
            let rec = match self.index_feed.read_record(seq).await {
                Ok(Record::Path(p)) => *p,
                // Release of everything walks every block of the index.
                Ok(_) | Err(FeedIoError::Record { .. }) if all => continue,
                Ok(other) => {
                    return Err(PublishError::Inconsistent(format!(
                        "block {seq} of the index should be a path record, is {}",
                        other.kind_name()
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            let done = match (&audience_released, &public_released, known) {
                (Some(set), _, _) => set.contains(&rec.store_path),
                (None, _, Some(known)) => known,
                (None, Some(set), None) => set.contains(&run::path_hash(&rec.store_path)),
                (None, None, None) => unreachable!("a set is read for every unknown target"),
            };
            if done {
                already += 1;
                continue;
            }
            batch.push((run::path_hash(&rec.store_path), self.release_of(seq, &rec)?));
            newly += 1;
            if batch.len() >= RELEASE_BATCH {
                self.write_releases(audience_feed.as_mut(), std::mem::take(&mut batch))
                    .await?;
            }
        }
        self.write_releases(audience_feed.as_mut(), batch).await?;
        Ok(ReleaseSummary {
            released: newly,
            already,
            feed_token: token,
            feed_name: name,
        })
    }

    /// Appends key releases to `audience`'s feed, or to the public key
    /// feed (then cutting a run once the tail is full).
    async fn write_releases(
        &mut self,
        audience: Option<&mut O::Feed>,
        batch: Vec<(PathHash, KeyRelease)>,
    ) -> Result<(), PublishError> {
        if batch.is_empty() {
            return Ok(());
        }
        let blocks = batch
            .iter()
            .map(|(_, k)| Record::Key(k.clone()).encode())
            .collect();
        match audience {
            Some(feed) => feed.write(blocks).await?,
            None => {
                let first = self.public_keys.length();
                self.public_keys.write(blocks).await?;
                self.released
                    .extend(batch.iter().map(|(h, _)| *h).zip(first..));
                self.cut_runs().await?;
            }
        }
        Ok(())
    }
}

/// Key releases appended in one batch.
const RELEASE_BATCH: usize = 1024;

/// `keys/audience/<name>`, after checking the name.
pub fn audience_feed_name(audience: &str) -> Result<String, PublishError> {
    let ok = !audience.is_empty()
        && audience.len() <= 64
        && audience
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c));
    if !ok {
        return Err(PublishError::Audience(audience.to_owned()));
    }
    Ok(format!("{AUDIENCE_KEYS_PREFIX}{audience}"))
}

/// The paths a key feed releases from block `from` on, each at the block
/// of its first release.
pub(crate) async fn releases_in<F: FeedIo>(
    feed: &mut F,
    from: u64,
) -> Result<HashMap<StorePath, u64>, FeedIoError> {
    let mut out = HashMap::new();
    for seq in from.max(1)..feed.length() {
        if let Record::Key(k) = feed.read_record(seq).await? {
            out.entry(k.store_path).or_insert(seq);
        }
    }
    Ok(out)
}
