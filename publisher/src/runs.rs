//! Cutting and merging the index's runs (`feed/src/format/run.rs`).
//!
//! Once the tail of the index — path records past the last manifest's
//! `indexed_to`, and key releases past its `keys_indexed_to` — holds
//! [`DEFAULT_RUN_TAIL`] entries (or the configured number), the publisher
//! cuts it into a new run. Runs are merged like a size-tiered LSM tree:
//! a run's **level** is how many times [`MERGE_FAN`] its covered range is
//! over the tail size, and whenever the newest `MERGE_FAN` runs share a
//! level they are merged into one run of the next. So a path is rewritten
//! about `log_fan(N / tail)` times, and at most `(MERGE_FAN - 1)` runs live
//! per level: ~13 runs at 10^6 paths, ~18 at 10^7 with the defaults.
//!
//! [`plan`] is the pure part (which runs to merge); [`Publisher::cut_runs`]
//! reads the entries and appends.
//!
//! **Crash safety.** The new run's pages are appended in batches and the
//! manifest last, so a manifest only ever names pages already in the feed.
//! A run killed between batches leaves pages after the last manifest;
//! readers take the last block as the manifest only when it is one (else
//! they read the index whole, as for a publisher with no runs), and the
//! next open re-appends the last manifest ([`Publisher::open_with`]), so
//! the pages written are dead blocks, never read.

use std::collections::HashSet;

use hypernar_feed::format::record::{FeedDecl, Record};
use hypernar_feed::format::run::{self, Manifest, RunEntry, RunPage, RunRef, MAX_RUNS, NO_KEY};
use hypernar_feed::io::{FeedIo, FeedIoError, FeedOpener};
use tracing::{info, warn};

use crate::error::PublishError;
use crate::publisher::{fault_point, Publisher};

impl<O: FeedOpener> Publisher<O> {
    /// Sets how many tail entries make a run (the default is
    /// [`DEFAULT_RUN_TAIL`]; tests use tiny ones).
    pub fn set_run_tail(&mut self, entries: u64) {
        self.run_tail = entries.max(1);
    }

    /// The runs feed's last manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Cuts the tail of the index into a run once it holds the configured
    /// number of entries, merging the runs [`plan`] says to, and
    /// appends the pages and then the new manifest (see `runs.rs` for the
    /// policy and its crash safety). Returns whether a run was cut.
    pub async fn cut_runs(&mut self) -> Result<bool, PublishError> {
        let indexed_to = self.manifest.indexed_to;
        let index_len = self.index_feed.length();
        let keys_len = self.public_keys.length();
        // Called after every path `publish` commits: the tail's entries
        // are at most its paths and its releases, so most calls end here
        // without building them.
        if ((self.index.paths.len() + self.released.len()) as u64) < self.run_tail {
            return Ok(false);
        }
        // The tail's paths, each with its key if released since.
        let mut entries: Vec<run::RunEntry> = self
            .index
            .paths
            .iter()
            .map(|(p, (seq, _))| {
                let hash = run::path_hash(p);
                entry(hash, *seq, self.released.get(&hash).copied())
            })
            .collect();
        // Keys released since the last cut for paths already in a run.
        let in_tail: HashSet<run::PathHash> = entries.iter().map(|e| e.hash).collect();
        let later: Vec<(run::PathHash, u64)> = self
            .released
            .iter()
            .filter(|(h, _)| !in_tail.contains(*h))
            .map(|(h, k)| (*h, *k))
            .collect();
        if ((entries.len() + later.len()) as u64) < self.run_tail {
            return Ok(false);
        }
        for (hash, key) in later {
            match self.find_in_runs(&hash).await? {
                Some(e) => entries.push(entry(hash, e.index_seq, Some(key))),
                None => warn!(
                    key_block = key,
                    "a key release names a path in no run; left out of the new run"
                ),
            }
        }
        let live = self.manifest.runs.len();
        let merge = plan(&self.manifest.runs, (indexed_to, index_len), self.run_tail);
        let kept = &self.manifest.runs[..live - merge];
        for r in &self.manifest.runs[live - merge..] {
            for block in r.first_block..r.first_block + r.pages() {
                let record = self.runs.read_record(block).await?;
                entries.extend(page_entries(record));
            }
        }
        let from = self
            .manifest
            .runs
            .get(live - merge)
            .map_or(indexed_to, |r| r.from);
        let first_block = self.runs.length();
        let (new_run, pages) = encode_run(entries, first_block, from, index_len);
        let mut feeds: Vec<FeedDecl> = self.index.feeds.values().cloned().collect();
        feeds.sort_by_key(|f| f.id);
        let manifest = Manifest {
            indexed_to: index_len,
            runs: kept.iter().copied().chain([new_run]).collect(),
            keys_indexed_to: keys_len,
            feeds,
            web_seeds: self.index.web_seeds.clone(),
        };
        manifest
            .check(first_block + new_run.pages())
            .map_err(|e| PublishError::Inconsistent(format!("a new run's manifest: {e}")))?;
        for batch in batches(pages) {
            self.runs.write(batch).await?;
            fault_point("run-pages");
        }
        self.runs
            .write(vec![Record::Manifest(Box::new(manifest.clone())).encode()])
            .await?;
        info!(
            entries = new_run.entries,
            pages = new_run.pages(),
            merged = merge,
            live_runs = manifest.runs.len(),
            "cut a run of the index"
        );
        self.manifest = manifest;
        self.tail_cut();
        Ok(true)
    }
}

/// Tail entries that make a run, by default.
pub const DEFAULT_RUN_TAIL: u64 = 4096;
/// Runs of one level merged into one of the next.
pub const MERGE_FAN: usize = 4;
/// Bytes of pages appended to the runs feed in one batch.
const BATCH_BYTES: usize = 8 << 20;

/// The level of a run covering `range` index blocks, for a tail of `tail`.
pub fn level(range: u64, tail: u64) -> u32 {
    let mut units = range / tail.max(1);
    let mut level = 0;
    while units >= MERGE_FAN as u64 {
        units /= MERGE_FAN as u64;
        level += 1;
    }
    level
}

/// How many of the newest live runs to merge into a new run covering
/// `new` (`0`: none, the new run is cut from the tail alone). The runs are
/// the manifest's, oldest first; `new` follows the last.
pub fn plan(runs: &[RunRef], new: (u64, u64), tail: u64) -> usize {
    // Ranges of the runs as they would be, newest last.
    let mut ranges: Vec<(u64, u64)> = runs.iter().map(|r| (r.from, r.to)).collect();
    ranges.push(new);
    loop {
        let n = ranges.len();
        let lvl = |r: (u64, u64)| level(r.1 - r.0, tail);
        let last = lvl(ranges[n - 1]);
        let same = ranges.iter().rev().take_while(|r| lvl(**r) == last).count();
        // Never more live runs than a manifest may list: merge the newest.
        let crowded = n > MAX_RUNS;
        if same >= MERGE_FAN || crowded {
            let k = if crowded { same.max(2) } else { same };
            let merged = (ranges[n - k].0, ranges[n - 1].1);
            ranges.truncate(n - k);
            ranges.push(merged);
        } else {
            break;
        }
    }
    // Everything from the first range that changed is rewritten.
    let unchanged = runs
        .iter()
        .zip(&ranges)
        .take_while(|(r, m)| (r.from, r.to) == **m)
        .count();
    runs.len() - unchanged
}

/// The pages of a run of `entries`, encoded, and the run as a manifest
/// would list it (its pages starting at `first_block`).
pub fn encode_run(
    entries: Vec<RunEntry>,
    first_block: u64,
    from: u64,
    to: u64,
) -> (RunRef, Vec<Vec<u8>>) {
    let (bits, pages) = run::cut(entries);
    let count: u64 = pages.iter().map(|p| p.entries.len() as u64).sum();
    let blocks = pages
        .into_iter()
        .map(|p| Record::RunPage(p).encode())
        .collect();
    (
        RunRef {
            first_block,
            bits,
            entries: count,
            from,
            to,
        },
        blocks,
    )
}

/// Batches of encoded blocks of at most [`BATCH_BYTES`] each.
pub fn batches(blocks: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for b in blocks {
        bytes += b.len();
        batch.push(b);
        if bytes >= BATCH_BYTES {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The entries of a decoded page, or nothing for a block that is no page.
pub fn page_entries(record: Record) -> Vec<RunEntry> {
    match record {
        Record::RunPage(RunPage { entries, .. }) => entries,
        _ => Vec::new(),
    }
}

/// An entry for a path whose key is at `key_seq`, if released.
pub fn entry(hash: run::PathHash, index_seq: u64, key_seq: Option<u64>) -> RunEntry {
    RunEntry {
        hash,
        index_seq,
        key_seq: key_seq.unwrap_or(NO_KEY),
    }
}

/// The manifest a publisher's runs feed ends with. A feed whose last block
/// is no manifest (a cut killed between its batches) has the last manifest
/// before it appended again, so that readers see it; one with none is a
/// publisher that has cut no run.
pub async fn last_manifest<F: FeedIo>(feed: &mut F) -> Result<Manifest, FeedIoError> {
    let len = feed.length();
    let Some((at, m)) = hypernar_feed::lookup::last_manifest(feed).await? else {
        return Ok(empty_manifest());
    };
    if at + 1 != len {
        warn!(
            dead = len - at - 1,
            "the runs feed ends with pages of a run cut short; appending its last manifest again"
        );
        feed.write(vec![Record::Manifest(Box::new(m.clone())).encode()])
            .await?;
    }
    Ok(m)
}

/// The empty manifest of a publisher that has cut no run.
pub fn empty_manifest() -> Manifest {
    Manifest {
        indexed_to: 0,
        runs: Vec::new(),
        keys_indexed_to: 0,
        feeds: Vec::new(),
        web_seeds: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(ranges: &[(u64, u64)]) -> Vec<RunRef> {
        ranges
            .iter()
            .map(|&(from, to)| RunRef {
                first_block: 1,
                bits: 0,
                entries: 0,
                from,
                to,
            })
            .collect()
    }

    #[test]
    fn levels_count_fan_fold_multiples_of_the_tail() {
        assert_eq!(level(0, 100), 0);
        assert_eq!(level(399, 100), 0);
        assert_eq!(level(400, 100), 1);
        assert_eq!(level(1599, 100), 1);
        assert_eq!(level(1600, 100), 2);
        assert_eq!(level(16, 0), 2); // a zero tail is taken as 1
    }

    #[test]
    fn the_fourth_run_of_a_level_merges_the_four() {
        assert_eq!(plan(&[], (0, 100), 100), 0);
        let three = runs_of(&[(0, 100), (100, 200), (200, 300)]);
        assert_eq!(plan(&three[..2], (200, 300), 100), 0);
        assert_eq!(plan(&three, (300, 400), 100), 3);
        // A big run stays; the small ones after it merge.
        let mixed = runs_of(&[(0, 400), (400, 500), (500, 600), (600, 700)]);
        assert_eq!(plan(&mixed, (700, 800), 100), 3);
        // A merge that makes a fourth run of the next level merges on.
        let cascade = runs_of(&[
            (0, 400),
            (400, 800),
            (800, 1200),
            (1200, 1300),
            (1300, 1400),
            (1400, 1500),
        ]);
        assert_eq!(plan(&cascade, (1500, 1600), 100), 6);
    }

    #[test]
    fn live_runs_stay_few_as_the_index_grows() {
        let tail = 100;
        let mut runs: Vec<RunRef> = Vec::new();
        let mut most = 0;
        let mut rewritten = 0u64;
        for i in 0..10_000u64 {
            let new = (i * tail, (i + 1) * tail);
            let k = plan(&runs, new, tail);
            let from = if k == 0 {
                new.0
            } else {
                runs[runs.len() - k].from
            };
            rewritten += new.1 - from;
            runs.truncate(runs.len() - k);
            runs.extend(runs_of(&[(from, new.1)]));
            most = most.max(runs.len());
            let tiles = runs.windows(2).all(|w| w[0].to == w[1].from);
            assert!(tiles && runs[0].from == 0);
        }
        // 10^4 tails: log4 is 6.6, so at most 3 per level and one more.
        assert!(most <= 3 * 7 + 1, "{most} live runs");
        // Each entry rewritten about once per level.
        assert!(rewritten <= 8 * 10_000 * tail, "{rewritten}");
    }
}
