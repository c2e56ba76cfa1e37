//! A synthetic publisher of many paths, built fast: what the index
//! benchmark (`benches/index.rs`) and the tests at scale publish.
//!
//! Path `i` is `/nix/store/<hash>-synth-<i>`, its hash the first 20 bytes
//! of SHA-256(`hypernar-synth:<i>`), so a benchmark knows every name
//! without a list; its NAR is one small regular file, signed by the fixed
//! key [`signing_key`] (`synth-1`). Each path is sealed under a key of its
//! own exactly as `publish` seals it, but in batches of [`BATCH`]: one
//! append to the data feed, one to the index, one to the key feed, then a
//! cut of the runs. No spool, no journal and no listing (the store view
//! shows synthetic paths as empty): a batch killed between its appends
//! leaves unread data blocks or paths without keys (`release` gives them),
//! never a record without its data.

use hypernar_feed::format::narinfo::{fingerprint, NarHasher};
use hypernar_feed::format::nixbase32;
use hypernar_feed::format::record::{wrap_path_key, KeyRelease, PathRecord, Record};
use hypernar_feed::format::run;
use hypernar_feed::format::segment::{Layout, PathKey, Sealer, DEFAULT_SEGMENT_SIZE};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::{FeedIo, FeedOpener};

use crate::error::PublishError;
use crate::publisher::Publisher;
use crate::sample::{nar_of, Entry, NixSigningKey};

/// Paths appended in one batch (one run's worth with the default tail).
pub const BATCH: u64 = 4096;

/// The store path of synthetic path `i`.
pub fn store_path(i: u64) -> StorePath {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("hypernar-synth:{i}").as_bytes());
    let hash = nixbase32::encode(&digest[..20]);
    StorePath::from_base_name(&format!("{hash}-synth-{i}")).expect("a valid store path")
}

/// The file synthetic path `i` holds: a fixed width, so that every NAR is
/// one template with these bytes in place ([`Nars`]).
fn contents(i: u64) -> Vec<u8> {
    format!("synthetic path {i:020}\n").into_bytes()
}

/// The NAR of synthetic path `i`.
pub fn nar(i: u64) -> Vec<u8> {
    Nars::new().nar(i)
}

/// Makes synthetic NARs from one packed by [`nar_of`] (which writes the
/// tree to a temporary directory, too slow to do 10^6 times).
#[derive(Debug)]
pub struct Nars {
    template: Vec<u8>,
    at: usize,
}

impl Nars {
    pub fn new() -> Self {
        let file = contents(0);
        let template = nar_of(&Entry::File {
            contents: file.clone(),
            executable: false,
        })
        .expect("packing a NAR");
        let at = template
            .windows(file.len())
            .position(|w| w == file)
            .expect("a NAR holds its file's bytes");
        Nars { template, at }
    }

    pub fn nar(&self, i: u64) -> Vec<u8> {
        let file = contents(i);
        let mut nar = self.template.clone();
        nar[self.at..self.at + file.len()].copy_from_slice(&file);
        nar
    }
}

impl Default for Nars {
    fn default() -> Self {
        Nars::new()
    }
}

/// The Nix signing key of synthetic paths (`synth-1:…`; a fixed seed, so
/// anyone can check them and nobody should trust them).
pub fn signing_key() -> NixSigningKey {
    NixSigningKey::from_seed("synth-1", [0x5e; 32])
}

/// What [`Publisher::append_synthetic`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SynthSummary {
    pub published: u64,
    pub released: u64,
}

impl Publisher<hypernar_feed::FeedStore> {
    /// Writes what hypercore holds in each feed's log to its tree,
    /// bitfield and data files. Synthetic batches are large, and hypercore
    /// writes their tree nodes only at its next flush: without this the
    /// first `publish` into a synthetic publisher of 10^6 paths wrote
    /// ~1 150 tree nodes per feed, each fsynced (0.9 s, which a publisher
    /// appending path by path never leaves behind).
    pub async fn flush_logs(&mut self) -> Result<(), PublishError> {
        for feed in [
            &mut self.index_feed,
            &mut self.data,
            &mut self.public_keys,
            &mut self.runs,
        ] {
            feed.flush().await?;
        }
        Ok(())
    }
}

impl<O: FeedOpener> Publisher<O> {
    /// Publishes synthetic paths `from..from + count` (see the module), with
    /// their keys released when `release`. `progress` is told the paths
    /// done after each batch. Refuses a range whose first or last path is
    /// already published (checking every path would be the slow way this
    /// exists to avoid).
    pub async fn append_synthetic(
        &mut self,
        from: u64,
        count: u64,
        release: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<SynthSummary, PublishError> {
        let end = from.checked_add(count).ok_or_else(|| {
            PublishError::Inconsistent(format!("{from} + {count} paths overflow"))
        })?;
        for i in [from, end.saturating_sub(1)] {
            let path = store_path(i);
            if count > 0 && self.find(path.hash_part()).await?.is_some() {
                return Err(PublishError::Inconsistent(format!(
                    "synthetic path {i} ({path}) is already published; start after it (--from)"
                )));
            }
        }
        let nix_key = signing_key();
        let nars = Nars::new();
        let wrap = self.secret.wrap_key();
        let mut summary = SynthSummary::default();
        let mut at = from;
        while at < end {
            let n = BATCH.min(end - at);
            let mut data = Vec::with_capacity(n as usize);
            let mut records = Vec::with_capacity(n as usize);
            let mut keys = Vec::with_capacity(n as usize);
            let first_block = self.data.length();
            let first_seq = self.index_feed.length();
            for k in 0..n {
                let i = at + k;
                let path = store_path(i);
                let nar = nars.nar(i);
                let mut hasher = NarHasher::new();
                hasher.update(&nar);
                let nar_hash = hasher.finish();
                let key = PathKey::generate();
                let layout = Layout::new(path.clone(), nar.len() as u64, DEFAULT_SEGMENT_SIZE)
                    .map_err(|e| PublishError::Inconsistent(e.to_string()))?;
                let mut sealer = Sealer::new(layout, &key, 1)
                    .map_err(|e| PublishError::Inconsistent(e.to_string()))?;
                data.push(
                    sealer
                        .seal(0, &nar)
                        .map_err(|e| PublishError::Inconsistent(e.to_string()))?,
                );
                let sig = nix_key.sign(&fingerprint(&path, &nar_hash, nar.len() as u64, &[]));
                let record = PathRecord {
                    store_path: path.clone(),
                    nar_hash,
                    nar_size: nar.len() as u64,
                    references: Vec::new(),
                    deriver: None,
                    ca: None,
                    sigs: vec![sig],
                    data_feed: self.data_id,
                    first_block: first_block + k,
                    block_count: 1,
                    segment_size: DEFAULT_SEGMENT_SIZE,
                    key_check: key.check(),
                    wrapped_key: wrap_path_key(&wrap, &path, &key),
                };
                if release {
                    keys.push(KeyRelease {
                        index_seq: first_seq + k,
                        store_path: path,
                        key: key.0,
                    });
                }
                records.push(record);
            }
            self.data.write(data).await?;
            self.index_feed
                .write(
                    records
                        .iter()
                        .map(|r| Record::Path(Box::new(r.clone())).encode())
                        .collect(),
                )
                .await?;
            for (k, r) in records.into_iter().enumerate() {
                self.by_hash
                    .insert(r.store_path.hash_part().to_owned(), r.store_path.clone());
                self.index
                    .apply(first_seq + k as u64, Record::Path(Box::new(r)));
            }
            if release {
                let first_key = self.public_keys.length();
                let hashes: Vec<_> = keys.iter().map(|k| run::path_hash(&k.store_path)).collect();
                self.public_keys
                    .write(keys.into_iter().map(|k| Record::Key(k).encode()).collect())
                    .await?;
                self.released.extend(hashes.into_iter().zip(first_key..));
                summary.released += n;
            }
            self.cut_runs().await?;
            summary.published += n;
            at += n;
            progress(at - from);
        }
        Ok(summary)
    }
}
