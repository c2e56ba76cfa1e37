//! Runs: the index looked up sparsely, at any size.
//!
//! A **run** is an immutable table of (store-path hash → where the path's
//! index record and key release are), sorted by hash and cut into `2^bits`
//! pages by the hash's top `bits` bits. Page `p` of a run is block
//! `first_block + p` of the publisher's `runs` feed, so a lookup asks for
//! the one block that can hold the hash — no search structure, one round
//! trip per run (git's pack-index fan-out, made implicit). Store-path
//! hashes are uniformly random, so pages are even: [`bits_for`] aims at
//! [`TARGET_PAGE_ENTRIES`] per page.
//!
//! A **manifest** (the last block of the runs feed, always) lists the live
//! runs, which tile the index's sequence numbers `0..indexed_to` with no
//! gap or overlap, and every feed the index declared. What is past
//! `indexed_to` — the **tail** — is read from the index itself, and so are
//! key releases past `keys_indexed_to` in the public key feed.
//!
//! A run covering `from..to` holds an entry for every path whose record is
//! in that range, and a *re-entry* for each path of an older run whose key
//! was released after that run was cut (its `index_seq` is below `from`,
//! its `key_seq` set). Of the entries for one hash across the live runs,
//! the [`newest`] wins: the highest `index_seq`, then the highest `key_seq`.
//!
//! Pages and manifests are records (`version || kind || postcard`, see
//! `record.rs`); blocks of a signed feed, so a page proves a hash absent as
//! well as present. This module decodes them with every bound checked and
//! says which page a hash must be on; [`RunRef::check_page`] checks a page
//! against the run and block it was asked for.

use serde::{Deserialize, Serialize};

use super::nixbase32;
use super::record::FeedDecl;
use super::storepath::{StorePath, HASH_LEN};

/// A store path's hash part, decoded (160 bits).
pub type PathHash = [u8; 20];

/// Entries a page is cut for, on average.
pub const TARGET_PAGE_ENTRIES: u64 = 64;
/// Most entries a page may hold (a decoder refuses more; the cutter adds a
/// bit before it would write more).
pub const MAX_PAGE_ENTRIES: usize = 4096;
/// Most bucket bits a run may have: 2^24 pages, 10^9 paths at the target.
pub const MAX_BUCKET_BITS: u8 = 24;
/// Most live runs a manifest may list.
pub const MAX_RUNS: usize = 64;
/// Most feed declarations a manifest may carry.
pub const MAX_MANIFEST_FEEDS: usize = 1024;

/// Most blocks a feed a manifest names may have (2^40; peers track far
/// fewer per feed): a larger mark is refused.
pub const MAX_FEED_BLOCKS: u64 = 1 << 40;

/// "No key released" in [`RunEntry::key_seq`] (block 0 of a key feed is its
/// header, so no release is there).
pub const NO_KEY: u64 = 0;

/// One path in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEntry {
    pub hash: PathHash,
    /// Block of the path's `PathRecord` in the index feed (its
    /// `ListingRecord`, if any, is the next block).
    pub index_seq: u64,
    /// Block of the path's `KeyRelease` in the public key feed, or
    /// [`NO_KEY`].
    pub key_seq: u64,
}

/// One page of a run: the entries whose hash falls in `bucket`, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPage {
    pub bucket: u32,
    pub entries: Vec<RunEntry>,
}

/// A live run, as the manifest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// Block of page 0 in the runs feed; pages are contiguous.
    pub first_block: u64,
    pub bits: u8,
    /// Entries in the run, all pages together.
    pub entries: u64,
    /// The index sequence numbers the run covers: `from..to` (re-entries
    /// point below `from`).
    pub from: u64,
    pub to: u64,
}

/// The last block of a runs feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Every path record below this index block is in a live run.
    pub indexed_to: u64,
    /// Live runs, oldest (lowest `from`) first.
    pub runs: Vec<RunRef>,
    /// Every release in the public key feed below this block is in an
    /// entry of a live run.
    pub keys_indexed_to: u64,
    /// Every feed the index declared below `indexed_to`.
    pub feeds: Vec<FeedDecl>,
    /// The index's latest web-seed list below `indexed_to` (a
    /// `WebSeedList`'s URLs; empty if none or withdrawn).
    pub web_seeds: Vec<String>,
}

/// Why a page or manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("a run page holds {0} entries, over the {MAX_PAGE_ENTRIES} limit")]
    PageTooFull(usize),
    #[error("a run page's entries are not sorted by hash, or one is there twice")]
    Unsorted,
    #[error("a run page claims bucket {got}, block {block} holds bucket {want}")]
    WrongBucket { block: u64, want: u32, got: u32 },
    #[error("a run page holds an entry outside its bucket {0}")]
    OutOfBucket(u32),
    #[error("a run's bucket bits are {0}, over the {MAX_BUCKET_BITS} limit")]
    TooManyBits(u8),
    #[error("a manifest lists {0} runs, over the {MAX_RUNS} limit")]
    TooManyRuns(usize),
    #[error("a manifest declares {0} feeds, over the {MAX_MANIFEST_FEEDS} limit")]
    TooManyFeeds(usize),
    #[error("a manifest's runs do not tile the index from 0 to {0} (a gap, an overlap or a backward range)")]
    NotTiled(u64),
    #[error("a run's pages overflow the feed's block numbers")]
    Overflow,
    #[error("a run's pages end at block {end}, past the manifest at {manifest}")]
    PastManifest { end: u64, manifest: u64 },
    #[error("a run holds {entries} entries, more than the {blocks} index blocks below its end")]
    TooManyEntries { entries: u64, blocks: u64 },
    #[error(
        "a manifest's marks ({indexed_to}, {keys_indexed_to}) are past {MAX_FEED_BLOCKS} blocks"
    )]
    AbsurdMarks {
        indexed_to: u64,
        keys_indexed_to: u64,
    },
    #[error("a page entry points at index block {0}, past the run's range")]
    EntryOutOfRange(u64),
}

/// The hash of a store path, decoded.
pub fn path_hash(path: &StorePath) -> PathHash {
    hash_of(path.hash_part()).expect("a store path's hash part decodes")
}

/// The hash a narinfo name (`<hash>`) stands for, if it is one.
pub fn hash_of(hash_part: &str) -> Option<PathHash> {
    if hash_part.len() != HASH_LEN {
        return None;
    }
    nixbase32::decode::<20>(hash_part).ok()
}

/// The bucket (page number) of `hash` in a run of `bits` bits: the hash's
/// top `bits` bits.
pub fn bucket(hash: &PathHash, bits: u8) -> u32 {
    if bits == 0 {
        return 0;
    }
    let top = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    top >> (32 - u32::from(bits.min(32)))
}

/// The fewest bucket bits that put at most [`TARGET_PAGE_ENTRIES`] in a
/// page on average.
pub fn bits_for(entries: u64) -> u8 {
    let mut bits = 0u8;
    while bits < MAX_BUCKET_BITS && entries > TARGET_PAGE_ENTRIES << bits {
        bits += 1;
    }
    bits
}

impl RunPage {
    /// Checks what a page can say about itself: bounded and sorted.
    pub fn check(&self) -> Result<(), RunError> {
        if self.entries.len() > MAX_PAGE_ENTRIES {
            return Err(RunError::PageTooFull(self.entries.len()));
        }
        if self.entries.windows(2).any(|w| w[0].hash >= w[1].hash) {
            return Err(RunError::Unsorted);
        }
        Ok(())
    }

    /// The entry of `hash`, if the page holds it.
    pub fn find(&self, hash: &PathHash) -> Option<&RunEntry> {
        self.entries
            .binary_search_by(|e| e.hash.cmp(hash))
            .ok()
            .map(|i| &self.entries[i])
    }
}

impl RunRef {
    /// Pages in the run.
    pub fn pages(&self) -> u64 {
        1u64 << self.bits
    }

    /// The block just past the run's last page.
    pub fn end_block(&self) -> Option<u64> {
        self.first_block.checked_add(self.pages())
    }

    /// The block of the page that must hold `hash` if the run does.
    pub fn page_block(&self, hash: &PathHash) -> u64 {
        self.first_block + u64::from(bucket(hash, self.bits))
    }

    /// Checks a page fetched as block `block` of this run: it is the
    /// bucket that block holds, and every entry belongs there and points
    /// below the run's end in the index. (The page's own bounds and order are
    /// checked when it is decoded.)
    pub fn check_page(&self, block: u64, page: &RunPage) -> Result<(), RunError> {
        let want = u32::try_from(block - self.first_block).map_err(|_| RunError::Overflow)?;
        if page.bucket != want {
            return Err(RunError::WrongBucket {
                block,
                want,
                got: page.bucket,
            });
        }
        for e in &page.entries {
            if bucket(&e.hash, self.bits) != want {
                return Err(RunError::OutOfBucket(want));
            }
            if e.index_seq >= self.to {
                return Err(RunError::EntryOutOfRange(e.index_seq));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Checks a manifest read as block `at` of the runs feed: bounded, its
    /// runs tiling `0..indexed_to` in order, each run's pages before `at`.
    pub fn check(&self, at: u64) -> Result<(), RunError> {
        if self.runs.len() > MAX_RUNS {
            return Err(RunError::TooManyRuns(self.runs.len()));
        }
        if self.feeds.len() > MAX_MANIFEST_FEEDS {
            return Err(RunError::TooManyFeeds(self.feeds.len()));
        }
        if self.indexed_to > MAX_FEED_BLOCKS || self.keys_indexed_to > MAX_FEED_BLOCKS {
            return Err(RunError::AbsurdMarks {
                indexed_to: self.indexed_to,
                keys_indexed_to: self.keys_indexed_to,
            });
        }
        let mut next = 0u64;
        for r in &self.runs {
            if r.bits > MAX_BUCKET_BITS {
                return Err(RunError::TooManyBits(r.bits));
            }
            let end = r.end_block().ok_or(RunError::Overflow)?;
            if end > at {
                return Err(RunError::PastManifest { end, manifest: at });
            }
            // A run of re-entries alone (keys released, no new record)
            // covers no index block: `from == to`.
            if r.from != next || r.to < r.from {
                return Err(RunError::NotTiled(self.indexed_to));
            }
            if r.entries > r.to {
                return Err(RunError::TooManyEntries {
                    entries: r.entries,
                    blocks: r.to,
                });
            }
            next = r.to;
        }
        if next != self.indexed_to {
            return Err(RunError::NotTiled(self.indexed_to));
        }
        Ok(())
    }
}

/// Of two entries for one hash, the one that wins: the highest `index_seq`
/// (the path published again), then the highest `key_seq` (a re-entry that
/// carries a key released later).
pub fn newest(a: RunEntry, b: RunEntry) -> RunEntry {
    if (b.index_seq, b.key_seq) > (a.index_seq, a.key_seq) {
        b
    } else {
        a
    }
}

/// Cuts `entries` into the pages of one run: sorted by hash, one entry per
/// hash (the [`newest`]), in
/// `2^bits` pages with no page over [`MAX_PAGE_ENTRIES`]. Returns the bits
/// and the pages, page `p` holding bucket `p`.
pub fn cut(mut entries: Vec<RunEntry>) -> (u8, Vec<RunPage>) {
    entries.sort_unstable_by(|a, b| {
        a.hash
            .cmp(&b.hash)
            .then((b.index_seq, b.key_seq).cmp(&(a.index_seq, a.key_seq)))
    });
    entries.dedup_by(|later, first| later.hash == first.hash);
    let mut bits = bits_for(entries.len() as u64);
    loop {
        let mut pages: Vec<RunPage> = (0..1u32 << bits)
            .map(|bucket| RunPage {
                bucket,
                entries: Vec::new(),
            })
            .collect();
        for e in &entries {
            pages[bucket(&e.hash, bits) as usize].entries.push(*e);
        }
        let full = pages.iter().any(|p| p.entries.len() > MAX_PAGE_ENTRIES);
        if !full || bits >= MAX_BUCKET_BITS {
            return (bits, pages);
        }
        bits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(top: u32, rest: u8) -> PathHash {
        let mut h = [rest; 20];
        h[..4].copy_from_slice(&top.to_be_bytes());
        h
    }

    fn entry(top: u32, seq: u64) -> RunEntry {
        RunEntry {
            hash: hash(top, seq as u8),
            index_seq: seq,
            key_seq: seq + 1,
        }
    }

    #[test]
    fn a_bucket_is_the_top_bits() {
        let h = hash(0xdead_beef, 0);
        assert_eq!(bucket(&h, 0), 0);
        assert_eq!(bucket(&h, 1), 1);
        assert_eq!(bucket(&h, 4), 0xd);
        assert_eq!(bucket(&h, 16), 0xdead);
        assert_eq!(bucket(&h, 24), 0x00de_adbe);
        assert_eq!(bucket(&hash(0, 0), 24), 0);
        assert_eq!(bucket(&hash(u32::MAX, 0), 24), (1 << 24) - 1);
    }

    #[test]
    fn bits_aim_at_the_target_per_page() {
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(TARGET_PAGE_ENTRIES), 0);
        assert_eq!(bits_for(TARGET_PAGE_ENTRIES + 1), 1);
        assert_eq!(bits_for(1_000_000), 14); // 61 per page
        assert_eq!(bits_for(100_000_000), 21);
        assert_eq!(bits_for(u64::MAX), MAX_BUCKET_BITS);
    }

    #[test]
    fn a_cut_run_finds_every_entry_on_its_page_and_refuses_others() {
        let entries: Vec<RunEntry> = (0..1000u64)
            .map(|i| entry((i as u32).wrapping_mul(0x9e37_79b9), i + 3))
            .collect();
        let (bits, pages) = cut(entries.clone());
        assert_eq!(bits, bits_for(1000));
        assert_eq!(pages.len(), 1 << bits);
        let run = RunRef {
            first_block: 10,
            bits,
            entries: 1000,
            from: 3,
            to: 1003,
        };
        for (p, page) in pages.iter().enumerate() {
            page.check().unwrap();
            run.check_page(10 + p as u64, page).unwrap();
        }
        for e in &entries {
            let block = run.page_block(&e.hash);
            let page = &pages[(block - 10) as usize];
            assert_eq!(page.find(&e.hash), Some(e));
        }
        let absent = hash(12345, 0xff);
        let page = &pages[(run.page_block(&absent) - 10) as usize];
        assert_eq!(page.find(&absent), None);
        // A page served for the wrong block is refused.
        assert!(matches!(
            run.check_page(11, &pages[0]),
            Err(RunError::WrongBucket { .. })
        ));
    }

    #[test]
    fn a_path_published_twice_keeps_its_latest_record_and_a_later_key_wins() {
        let mut a = entry(7, 5);
        let mut b = a;
        b.index_seq = 9;
        a.key_seq = 100;
        let (_, pages) = cut(vec![a, b]);
        assert_eq!(pages[0].entries, vec![b]);
        // A re-entry: the same record, its key released later.
        let plain = RunEntry {
            key_seq: NO_KEY,
            ..a
        };
        let (_, pages) = cut(vec![plain, a]);
        assert_eq!(pages[0].entries, vec![a]);
        assert_eq!(newest(plain, a), a);
        assert_eq!(newest(a, plain), a);
        assert_eq!(newest(a, b), b);
    }

    #[test]
    fn a_crowded_bucket_gets_another_bit_rather_than_an_oversized_page() {
        // All in bucket 0 at the natural bit count, spread at more bits.
        let entries: Vec<RunEntry> = (0..(MAX_PAGE_ENTRIES as u32 + 1))
            .map(|i| entry(i << 8, u64::from(i)))
            .collect();
        let (bits, pages) = cut(entries);
        assert!(bits > bits_for(MAX_PAGE_ENTRIES as u64 + 1));
        assert!(pages.iter().all(|p| p.entries.len() <= MAX_PAGE_ENTRIES));
    }

    #[test]
    fn hostile_pages_are_refused() {
        let run = RunRef {
            first_block: 0,
            bits: 4,
            entries: 2,
            from: 0,
            to: 10,
        };
        let sorted = RunPage {
            bucket: 1,
            entries: vec![entry(0x1000_0000, 1), entry(0x1100_0000, 2)],
        };
        sorted.check().unwrap();
        run.check_page(1, &sorted).unwrap();
        let mut unsorted = sorted.clone();
        unsorted.entries.reverse();
        assert_eq!(unsorted.check(), Err(RunError::Unsorted));
        let mut twice = sorted.clone();
        twice.entries[1] = twice.entries[0];
        assert_eq!(twice.check(), Err(RunError::Unsorted));
        let mut outside = sorted.clone();
        outside.entries[1] = entry(0x2000_0000, 2);
        assert_eq!(run.check_page(1, &outside), Err(RunError::OutOfBucket(1)));
        let mut far = sorted.clone();
        far.entries[1].index_seq = 10;
        assert_eq!(run.check_page(1, &far), Err(RunError::EntryOutOfRange(10)));
        // A re-entry below the run's range is fine.
        let older = RunRef { from: 5, ..run };
        older.check_page(1, &sorted).unwrap();
        let full = RunPage {
            bucket: 0,
            entries: (0..=MAX_PAGE_ENTRIES as u32).map(|i| entry(i, 1)).collect(),
        };
        assert_eq!(
            full.check(),
            Err(RunError::PageTooFull(MAX_PAGE_ENTRIES + 1))
        );
    }

    fn run(first_block: u64, bits: u8, from: u64, to: u64) -> RunRef {
        RunRef {
            first_block,
            bits,
            entries: to.saturating_sub(from),
            from,
            to,
        }
    }

    fn manifest(indexed_to: u64, runs: Vec<RunRef>) -> Manifest {
        Manifest {
            indexed_to,
            runs,
            keys_indexed_to: 0,
            feeds: vec![],
            web_seeds: vec![],
        }
    }

    #[test]
    fn a_manifest_tiles_the_index_in_order_before_itself() {
        let ok = manifest(30, vec![run(1, 2, 0, 10), run(5, 3, 10, 30)]);
        ok.check(13).unwrap();
        assert!(matches!(ok.check(12), Err(RunError::PastManifest { .. })));
        let empty = manifest(0, vec![]);
        empty.check(1).unwrap();
        // A run of re-entries covers no index block.
        let keys_only = manifest(10, vec![run(1, 0, 0, 10), run(2, 0, 10, 10)]);
        keys_only.check(3).unwrap();
        let cases = [
            (vec![run(1, 2, 0, 10), run(5, 3, 11, 30)], 30), // gap
            (vec![run(1, 2, 0, 10), run(5, 3, 9, 30)], 30),  // overlap
            (vec![run(5, 3, 10, 30), run(1, 2, 0, 10)], 30), // out of order
            (vec![run(1, 2, 0, 10)], 30),                    // short
            (vec![run(1, 2, 5, 4)], 4),                      // backwards
        ];
        for (runs, indexed_to) in cases {
            let m = Manifest {
                indexed_to,
                runs,
                keys_indexed_to: 0,
                feeds: vec![],
                web_seeds: vec![],
            };
            assert!(matches!(m.check(100), Err(RunError::NotTiled(_))), "{m:?}");
        }
        let bits = manifest(10, vec![run(1, MAX_BUCKET_BITS + 1, 0, 10)]);
        assert_eq!(bits.check(u64::MAX), Err(RunError::TooManyBits(25)));
        let overflow = manifest(10, vec![run(u64::MAX - 1, 2, 0, 10)]);
        assert_eq!(overflow.check(u64::MAX), Err(RunError::Overflow));
        let mut crowded = run(1, 2, 0, 10);
        crowded.entries = 11;
        let crowded = manifest(10, vec![crowded]);
        assert!(matches!(
            crowded.check(100),
            Err(RunError::TooManyEntries { .. })
        ));
        let far = Manifest {
            indexed_to: 0,
            runs: vec![],
            keys_indexed_to: u64::MAX - 3,
            feeds: vec![],
            web_seeds: vec![],
        };
        assert!(matches!(far.check(1), Err(RunError::AbsurdMarks { .. })));
        let many = manifest(
            MAX_RUNS as u64 + 1,
            (0..=MAX_RUNS as u64).map(|i| run(1, 0, i, i + 1)).collect(),
        );
        assert_eq!(many.check(100), Err(RunError::TooManyRuns(MAX_RUNS + 1)));
    }

    #[test]
    fn narinfo_names_decode_to_hashes_and_others_do_not() {
        let p = StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a").unwrap();
        assert_eq!(hash_of(p.hash_part()), Some(path_hash(&p)));
        assert_eq!(hash_of("dvy33zhzyzyqssgblsj9zn6xikj3y7w"), None);
        assert_eq!(hash_of("dvy33zhzyzyqssgblsj9zn6xikj3y7we"), None); // 'e' is no nix32 digit
    }
}
