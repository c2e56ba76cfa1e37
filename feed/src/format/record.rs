//! Records: the blocks of index and key feeds, and block 0 of every feed.
//!
//! ```text
//! block = version(1) || kind(1) || postcard(body)
//! ```
//!
//! `kind` says how to read the body; a reader skips kinds it does not know,
//! so later versions can add records without breaking older readers. The
//! body is postcard 1.0 (a documented, compact, varint-based format). Every
//! record is at most [`MAX_RECORD_LEN`] bytes, checked before decoding.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use serde::{Deserialize, Serialize};

use super::generation::{GenerationError, Generations};
use super::listing::MAX_LISTING_LEN;
use super::narinfo::{Compression, NarHash, NarInfo};
use super::run::{Manifest, RunError, RunPage, MAX_MANIFEST_FEEDS, MAX_RUNS};
use super::segment::{Layout, PathKey, SegmentError};
use super::storepath::StorePath;

/// Record format version in the first byte of every record block.
pub const RECORD_VERSION: u8 = 1;
/// Largest record block accepted (checked before decoding).
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// Magic in every feed header.
pub const FEED_MAGIC: &str = "hypernar";

const KIND_HEADER: u8 = 0;
const KIND_FEED: u8 = 1;
const KIND_PATH: u8 = 2;
const KIND_KEY: u8 = 3;
const KIND_WEB_SEEDS: u8 = 4;
const KIND_LISTING: u8 = 5;
const KIND_SET_ENTRY: u8 = 6;
const KIND_RUN_PAGE: u8 = 7;
const KIND_GENERATIONS: u8 = 9;
const KIND_SET_CHANNEL: u8 = 10;
const KIND_MANIFEST: u8 = 8;

/// Most web-seed URLs one index record may list.
pub const MAX_WEB_SEED_URLS: usize = 8;
/// Longest web-seed URL accepted.
pub const MAX_WEB_SEED_URL_LEN: usize = 512;

/// What a feed holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeedRole {
    /// Path records and feed declarations; its key is the publisher identity.
    Index,
    /// Encrypted segments.
    Data,
    /// Released per-path keys.
    Keys,
    /// A safe-path set: entries vouching for (publisher, store path).
    Set,
    /// The index's runs: pages of (hash → record, key) and manifests
    /// (`run.rs`).
    Runs,
    /// A follower's committed releases: closure tables and
    /// `Generations` records (`generation.rs`).
    Generations,
    /// A group's meeting feed: the same one block at every member
    /// (`group.rs`).
    Group,
}

/// Block 0 of every feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedHeader {
    pub magic: String,
    pub role: FeedRole,
    /// The publisher identity (its index feed's public key).
    pub publisher: [u8; 32],
    /// The derivation name, e.g. `data/0`.
    pub name: String,
}

impl FeedHeader {
    pub fn new(role: FeedRole, publisher: [u8; 32], name: &str) -> Self {
        FeedHeader {
            magic: FEED_MAGIC.to_owned(),
            role,
            publisher,
            name: name.to_owned(),
        }
    }
}

/// An index record that declares a feed of this publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedDecl {
    /// Small number path records use to name a data feed.
    pub id: u32,
    pub role: FeedRole,
    pub name: String,
    pub public_key: [u8; 32],
}

/// A per-path key sealed under the publisher's wrap key, so the publisher
/// can release it later from the index alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub nonce: [u8; 12],
    /// The 32-byte key and its 16-byte tag.
    pub sealed: Vec<u8>,
}

/// One published store path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    pub store_path: StorePath,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    /// Upstream `Sig:` lines, verbatim.
    pub sigs: Vec<String>,
    /// `FeedDecl::id` of the data feed holding the segments.
    pub data_feed: u32,
    pub first_block: u64,
    pub block_count: u64,
    pub segment_size: u32,
    /// Commitment to the path key (see [`PathKey::check`]).
    pub key_check: [u8; 16],
    pub wrapped_key: WrappedKey,
}

impl PathRecord {
    /// The segment layout of this path.
    pub fn layout(&self) -> Result<Layout, SegmentError> {
        Layout::new(self.store_path.clone(), self.nar_size, self.segment_size)
    }

    /// A narinfo for this path, served under `url` uncompressed.
    pub fn narinfo(&self, url: String) -> NarInfo {
        NarInfo {
            store_path: self.store_path.clone(),
            url,
            compression: Compression::None,
            file_hash: None,
            file_size: None,
            nar_hash: self.nar_hash,
            nar_size: self.nar_size,
            references: self.references.clone(),
            deriver: self.deriver.clone(),
            sigs: self.sigs.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// A key released in a key feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRelease {
    /// Block number of the path record in the index feed.
    pub index_seq: u64,
    pub store_path: StorePath,
    pub key: [u8; 32],
}

/// Where a path's NAR listing ([`super::listing::Listing`]) is: `size`
/// bytes, cut and sealed like a NAR of that size under the path's listing
/// key ([`PathKey::listing`]) and segment size, in blocks
/// `first_block .. first_block + block_count` of the path's data feed.
/// Follows the path's record in the index; a path without one (published
/// before listings existed) is listed by scanning its NAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingRecord {
    /// Block number of the path's record in the index feed.
    pub index_seq: u64,
    pub store_path: StorePath,
    pub first_block: u64,
    pub block_count: u64,
    pub size: u64,
}

impl ListingRecord {
    /// The listing's segment layout, given its path's record; `None` when
    /// this record does not fit that path (another publish, a wrong count).
    pub fn layout(&self, path: &PathRecord, path_seq: u64) -> Option<Layout> {
        if path_seq != self.index_seq || path.store_path != self.store_path {
            return None;
        }
        let layout = Layout::new(self.store_path.clone(), self.size, path.segment_size).ok()?;
        (layout.count() == self.block_count).then_some(layout)
    }
}

/// An index record naming where the publisher's web seed is hosted
/// (`publish --web-seed-url`): the latest such record replaces earlier
/// ones, and an empty list withdraws them. Fetchers that trust the
/// publisher ask these URLs for blocks when peers are absent or slow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSeedList {
    pub urls: Vec<String>,
}

impl WebSeedList {
    /// Checks the list: at most [`MAX_WEB_SEED_URLS`] `http://` or
    /// `https://` URLs of at most [`MAX_WEB_SEED_URL_LEN`] bytes, with no
    /// whitespace or control characters, none twice.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.urls.len() > MAX_WEB_SEED_URLS {
            return Err("more than 8 web-seed URLs");
        }
        for (i, url) in self.urls.iter().enumerate() {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            match rest {
                None => return Err("a web-seed URL is not http:// or https://"),
                Some("") => return Err("a web-seed URL has no host"),
                Some(_) => {}
            }
            if url.len() > MAX_WEB_SEED_URL_LEN {
                return Err("a web-seed URL is over 512 bytes");
            }
            if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("a web-seed URL has whitespace or control characters");
            }
            if self.urls[..i].contains(url) {
                return Err("a web-seed URL is listed twice");
            }
        }
        Ok(())
    }
}

/// A change to a safe-path set: its maintainer vouches for a store path
/// as published by `publisher`, or withdraws that.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetEntry {
    /// The publisher identity whose record of the path is vouched for.
    pub publisher: [u8; 32],
    pub store_path: StorePath,
    /// `true` adds the path to the set, `false` removes it.
    pub vouched: bool,
}

/// A change to a safe-path set: its maintainer vouches for every path of
/// the newest generation of `channel` as `publisher` commits it (its
/// `hypernar follow`), or withdraws that.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetChannelEntry {
    pub publisher: [u8; 32],
    /// A channel name (`generation::is_channel_name`).
    pub channel: String,
    pub vouched: bool,
}

/// Any record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Header(FeedHeader),
    Feed(FeedDecl),
    Path(Box<PathRecord>),
    Key(KeyRelease),
    WebSeeds(WebSeedList),
    Listing(ListingRecord),
    SetEntry(SetEntry),
    /// A set vouching for a publisher's channel (set feeds).
    SetChannel(SetChannelEntry),
    /// A page of a run (runs feed).
    RunPage(RunPage),
    /// The live runs (the last block of a runs feed).
    Manifest(Box<Manifest>),
    /// The newest generation of each channel (the last block of a
    /// generations feed).
    Generations(Box<Generations>),
    /// A kind this build does not know; readers skip it.
    Unknown(u8),
}

/// Errors decoding records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record of {0} bytes is over the {MAX_RECORD_LEN}-byte limit")]
    TooLarge(usize),
    #[error("record is empty or cut short")]
    Short,
    #[error("record has version {0}, this build reads version {RECORD_VERSION}")]
    Version(u8),
    #[error("record body is malformed: {0}")]
    Body(#[from] postcard::Error),
    #[error("record is inconsistent: {0}")]
    Invalid(&'static str),
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("{0}")]
    Generation(#[from] GenerationError),
}

impl Record {
    /// What kind of record this is, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::Header(_) => "a feed header",
            Record::Feed(_) => "a feed declaration",
            Record::Path(_) => "a path record",
            Record::Key(_) => "a key release",
            Record::WebSeeds(_) => "a web-seed list",
            Record::Listing(_) => "a listing record",
            Record::SetEntry(_) => "a set entry",
            Record::SetChannel(_) => "a set's channel entry",
            Record::RunPage(_) => "a page of a run",
            Record::Manifest(_) => "a manifest",
            Record::Generations(_) => "a generations record",
            Record::Unknown(_) => "a record of an unknown kind",
        }
    }

    /// Encodes a record block.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body) = match self {
            Record::Header(h) => (KIND_HEADER, postcard::to_stdvec(h)),
            Record::Feed(f) => (KIND_FEED, postcard::to_stdvec(f)),
            Record::Path(p) => (KIND_PATH, postcard::to_stdvec(p)),
            Record::Key(k) => (KIND_KEY, postcard::to_stdvec(k)),
            Record::WebSeeds(w) => (KIND_WEB_SEEDS, postcard::to_stdvec(w)),
            Record::Listing(l) => (KIND_LISTING, postcard::to_stdvec(l)),
            Record::SetEntry(e) => (KIND_SET_ENTRY, postcard::to_stdvec(e)),
            Record::SetChannel(e) => (KIND_SET_CHANNEL, postcard::to_stdvec(e)),
            Record::RunPage(p) => (KIND_RUN_PAGE, postcard::to_stdvec(p)),
            Record::Manifest(m) => (KIND_MANIFEST, postcard::to_stdvec(m)),
            Record::Generations(g) => (KIND_GENERATIONS, postcard::to_stdvec(g)),
            Record::Unknown(_) => panic!("unknown records are never written"),
        };
        let body = body.expect("records serialize");
        let mut out = Vec::with_capacity(2 + body.len());
        out.push(RECORD_VERSION);
        out.push(kind);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and checks a record block.
    pub fn decode(block: &[u8]) -> Result<Self, RecordError> {
        if block.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge(block.len()));
        }
        let [version, kind, body @ ..] = block else {
            return Err(RecordError::Short);
        };
        if *version != RECORD_VERSION {
            return Err(RecordError::Version(*version));
        }
        let record = match *kind {
            KIND_HEADER => {
                let h: FeedHeader = postcard::from_bytes(body)?;
                if h.magic != FEED_MAGIC {
                    return Err(RecordError::Invalid("feed header magic"));
                }
                plain(&h.name)?;
                Record::Header(h)
            }
            KIND_FEED => {
                let d: FeedDecl = postcard::from_bytes(body)?;
                plain(&d.name)?;
                Record::Feed(d)
            }
            KIND_PATH => {
                let p: PathRecord = postcard::from_bytes(body)?;
                let layout = p
                    .layout()
                    .map_err(|_| RecordError::Invalid("segment size out of range"))?;
                if layout.count() != p.block_count {
                    return Err(RecordError::Invalid("block count does not match NAR size"));
                }
                if p.first_block.checked_add(p.block_count).is_none() {
                    return Err(RecordError::Invalid("block range overflows"));
                }
                if p.wrapped_key.sealed.len() != 48 {
                    return Err(RecordError::Invalid("wrapped key length"));
                }
                // These are rendered into narinfo lines for Nix: a line
                // break would add lines of the publisher's choosing.
                for s in p.deriver.iter().chain(&p.ca).chain(&p.sigs) {
                    plain(s)?;
                }
                Record::Path(Box::new(p))
            }
            KIND_KEY => Record::Key(postcard::from_bytes(body)?),
            KIND_WEB_SEEDS => {
                let w: WebSeedList = postcard::from_bytes(body)?;
                w.check().map_err(RecordError::Invalid)?;
                Record::WebSeeds(w)
            }
            KIND_LISTING => {
                let l: ListingRecord = postcard::from_bytes(body)?;
                if l.size == 0 || l.size > MAX_LISTING_LEN {
                    return Err(RecordError::Invalid("listing size out of range"));
                }
                if l.first_block.checked_add(l.block_count).is_none() {
                    return Err(RecordError::Invalid("block range overflows"));
                }
                Record::Listing(l)
            }
            KIND_SET_ENTRY => Record::SetEntry(postcard::from_bytes(body)?),
            KIND_SET_CHANNEL => {
                let e: SetChannelEntry = postcard::from_bytes(body)?;
                if !super::generation::is_channel_name(&e.channel) {
                    return Err(RecordError::Invalid(
                        "a set's channel entry names no channel",
                    ));
                }
                Record::SetChannel(e)
            }
            KIND_RUN_PAGE => {
                let p: RunPage = postcard::from_bytes(body)?;
                p.check()?;
                Record::RunPage(p)
            }
            KIND_MANIFEST => {
                let m: Manifest = postcard::from_bytes(body)?;
                if m.runs.len() > MAX_RUNS || m.feeds.len() > MAX_MANIFEST_FEEDS {
                    return Err(RecordError::Invalid(
                        "manifest lists too many runs or feeds",
                    ));
                }
                for f in &m.feeds {
                    plain(&f.name)?;
                }
                WebSeedList {
                    urls: m.web_seeds.clone(),
                }
                .check()
                .map_err(RecordError::Invalid)?;
                Record::Manifest(Box::new(m))
            }
            KIND_GENERATIONS => {
                let g: Generations = postcard::from_bytes(body)?;
                g.check_fields()?;
                Record::Generations(Box::new(g))
            }
            other => Record::Unknown(other),
        };
        Ok(record)
    }
}

/// A record string holds no control character (CR, LF, tab, escapes).
fn plain(s: &str) -> Result<(), RecordError> {
    if s.chars().any(char::is_control) {
        return Err(RecordError::Invalid("a string holds a control character"));
    }
    Ok(())
}

fn wrap_aead(wrap_key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, wrap_key).expect("32-byte key"))
}

fn wrap_aad(path: &StorePath) -> Vec<u8> {
    let mut aad = b"hypernar/wrap/v1".to_vec();
    aad.extend_from_slice(path.base_name().as_bytes());
    aad
}

/// Seals a path key under the publisher's wrap key (random 96-bit nonce).
pub fn wrap_path_key(wrap_key: &[u8; 32], path: &StorePath, key: &PathKey) -> WrappedKey {
    let mut nonce = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let mut sealed = key.0.to_vec();
    wrap_aead(wrap_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(path)),
            &mut sealed,
        )
        .expect("sealing 32 bytes");
    WrappedKey { nonce, sealed }
}

/// Opens a wrapped key; `None` if it was not wrapped by this wrap key for this path.
pub fn unwrap_path_key(wrap_key: &[u8; 32], path: &StorePath, w: &WrappedKey) -> Option<PathKey> {
    let mut buf = w.sealed.clone();
    let plain = wrap_aead(wrap_key)
        .open_in_place(
            Nonce::assume_unique_for_key(w.nonce),
            Aad::from(wrap_aad(path)),
            &mut buf,
        )
        .ok()?;
    Some(PathKey(plain.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_path(nar_size: u64) -> PathRecord {
        let store_path =
            StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a").unwrap();
        let key = PathKey([3; 32]);
        PathRecord {
            references: vec![store_path.clone()],
            wrapped_key: wrap_path_key(&[9; 32], &store_path, &key),
            store_path,
            nar_hash: NarHash([1; 32]),
            nar_size,
            deriver: Some("pz8zva3vwjqfwnhyn9i7q438d91ndz4y-hn-a.drv".into()),
            ca: None,
            sigs: vec!["test1:abc==".into()],
            data_feed: 0,
            first_block: 1,
            block_count: nar_size.div_ceil(4096),
            segment_size: 4096,
            key_check: key.check(),
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let records = [
            Record::Header(FeedHeader::new(FeedRole::Data, [5; 32], "data/0")),
            Record::Feed(FeedDecl {
                id: 0,
                role: FeedRole::Data,
                name: "data/0".into(),
                public_key: [6; 32],
            }),
            Record::Path(Box::new(sample_path(10_000))),
            Record::Key(KeyRelease {
                index_seq: 4,
                store_path: sample_path(0).store_path,
                key: [3; 32],
            }),
            Record::WebSeeds(WebSeedList {
                urls: vec![
                    "https://seed.example.org/hn".into(),
                    "http://[::1]:80".into(),
                ],
            }),
            Record::WebSeeds(WebSeedList { urls: vec![] }),
            Record::Listing(ListingRecord {
                index_seq: 3,
                store_path: sample_path(0).store_path,
                first_block: 4,
                block_count: 1,
                size: 100,
            }),
            Record::Header(FeedHeader::new(FeedRole::Set, [5; 32], "sets/lab")),
            Record::SetEntry(SetEntry {
                publisher: [8; 32],
                store_path: sample_path(0).store_path,
                vouched: true,
            }),
            Record::SetEntry(SetEntry {
                publisher: [8; 32],
                store_path: sample_path(0).store_path,
                vouched: false,
            }),
            Record::Header(FeedHeader::new(FeedRole::Runs, [5; 32], "runs")),
            Record::RunPage(RunPage {
                bucket: 3,
                entries: vec![super::super::run::RunEntry {
                    hash: [7; 20],
                    index_seq: 1 << 40,
                    key_seq: 0,
                }],
            }),
            Record::Manifest(Box::new(Manifest {
                indexed_to: 9,
                runs: vec![super::super::run::RunRef {
                    first_block: 1,
                    bits: 0,
                    entries: 5,
                    from: 0,
                    to: 9,
                }],
                keys_indexed_to: 3,
                feeds: vec![FeedDecl {
                    id: 2,
                    role: FeedRole::Runs,
                    name: "runs".into(),
                    public_key: [6; 32],
                }],
                web_seeds: vec!["https://seed.example.org/hn".into()],
            })),
        ];
        for r in records {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn run_pages_and_manifests_over_their_bounds_do_not_decode() {
        use super::super::run::{RunEntry, MAX_PAGE_ENTRIES};
        let e = |i: u32| RunEntry {
            hash: {
                let mut h = [0; 20];
                h[..4].copy_from_slice(&i.to_be_bytes());
                h
            },
            index_seq: 1,
            key_seq: 0,
        };
        let full = Record::RunPage(RunPage {
            bucket: 0,
            entries: (0..=MAX_PAGE_ENTRIES as u32).map(e).collect(),
        });
        assert!(matches!(
            Record::decode(&full.encode()),
            Err(RecordError::Run(RunError::PageTooFull(n))) if n == MAX_PAGE_ENTRIES + 1
        ));
        let unsorted = Record::RunPage(RunPage {
            bucket: 0,
            entries: vec![e(2), e(1)],
        });
        assert!(matches!(
            Record::decode(&unsorted.encode()),
            Err(RecordError::Run(RunError::Unsorted))
        ));
        let crowded = Record::Manifest(Box::new(Manifest {
            indexed_to: 0,
            runs: vec![
                super::super::run::RunRef {
                    first_block: 0,
                    bits: 0,
                    entries: 0,
                    from: 0,
                    to: 1,
                };
                MAX_RUNS + 1
            ],
            keys_indexed_to: 0,
            feeds: vec![],
            web_seeds: vec![],
        }));
        assert!(matches!(
            Record::decode(&crowded.encode()),
            Err(RecordError::Invalid(_))
        ));
    }

    #[test]
    fn a_listing_record_fits_only_its_own_path_record() {
        let path = sample_path(10_000);
        let l = ListingRecord {
            index_seq: 3,
            store_path: path.store_path.clone(),
            first_block: 4,
            block_count: 2,
            size: 4097,
        };
        assert_eq!(l.layout(&path, 3).unwrap().count(), 2);
        assert!(l.layout(&path, 4).is_none(), "another publish");
        let short = ListingRecord {
            block_count: 1,
            ..l.clone()
        };
        assert!(short.layout(&path, 3).is_none());
        let mut other = path.clone();
        other.store_path =
            StorePath::parse("/nix/store/7vy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-b").unwrap();
        assert!(l.layout(&other, 3).is_none());
        for (size, first, count) in [(0, 4, 0), (MAX_LISTING_LEN + 1, 4, 1), (1, u64::MAX, 1)] {
            let bad = Record::Listing(ListingRecord {
                size,
                first_block: first,
                block_count: count,
                ..l.clone()
            });
            assert!(matches!(
                Record::decode(&bad.encode()),
                Err(RecordError::Invalid(_))
            ));
        }
    }

    #[test]
    fn refuses_bad_blocks() {
        assert!(matches!(Record::decode(&[]), Err(RecordError::Short)));
        assert!(matches!(
            Record::decode(&[2, 0]),
            Err(RecordError::Version(2))
        ));
        assert!(matches!(
            Record::decode(&[1, 99, 1, 2]).unwrap(),
            Record::Unknown(99)
        ));
        assert!(matches!(
            Record::decode(&vec![1; MAX_RECORD_LEN + 1]),
            Err(RecordError::TooLarge(_))
        ));
        let mut p = sample_path(10_000);
        p.block_count += 1;
        assert!(matches!(
            Record::decode(&Record::Path(Box::new(p)).encode()),
            Err(RecordError::Invalid(_))
        ));
        let mut block = Record::Path(Box::new(sample_path(10))).encode();
        block.truncate(block.len() - 3);
        assert!(matches!(Record::decode(&block), Err(RecordError::Body(_))));
        // A line break (or any control character) in a string that becomes
        // a narinfo line.
        for bad in ["k:abc\nURL: elsewhere", "k:abc\r", "k:\u{1b}[2J", "k:\0"] {
            let mut p = sample_path(10);
            p.sigs.push(bad.into());
            let block = Record::Path(Box::new(p)).encode();
            assert!(
                matches!(Record::decode(&block), Err(RecordError::Invalid(_))),
                "{bad:?}"
            );
            let mut p = sample_path(10);
            p.deriver = Some(bad.into());
            assert!(Record::decode(&Record::Path(Box::new(p)).encode()).is_err());
            let mut p = sample_path(10);
            p.ca = Some(bad.into());
            assert!(Record::decode(&Record::Path(Box::new(p)).encode()).is_err());
            let h = FeedHeader::new(FeedRole::Index, [0; 32], bad);
            assert!(Record::decode(&Record::Header(h).encode()).is_err());
        }
        let bad_magic = FeedHeader {
            magic: "other".into(),
            ..FeedHeader::new(FeedRole::Index, [0; 32], "index")
        };
        assert!(Record::decode(&Record::Header(bad_magic).encode()).is_err());
    }

    #[test]
    fn web_seed_lists_are_checked() {
        let list = |urls: &[&str]| WebSeedList {
            urls: urls.iter().map(|u| u.to_string()).collect(),
        };
        let ok = "https://a.example/x";
        assert!(list(&[ok]).check().is_ok());
        assert!(list(&["http://a/"]).check().is_ok());
        let long = format!("https://{}", "a".repeat(MAX_WEB_SEED_URL_LEN - 8));
        assert_eq!(long.len(), MAX_WEB_SEED_URL_LEN);
        assert!(list(&[&long]).check().is_ok());
        assert!(list(&[&format!("{long}a")]).check().is_err());
        for bad in [
            "ftp://a/",
            "file:///etc",
            "https://",
            "https://a b",
            "https://a\nb",
            "/relative",
            "",
        ] {
            assert!(list(&[bad]).check().is_err(), "{bad:?} accepted");
        }
        assert!(list(&[ok, ok]).check().is_err());
        let many: Vec<String> = (0..=MAX_WEB_SEED_URLS)
            .map(|i| format!("https://s{i}.example"))
            .collect();
        let refs: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        assert!(list(&refs[..MAX_WEB_SEED_URLS]).check().is_ok());
        assert!(list(&refs).check().is_err());
        // An invalid list is refused when decoded, not just when written.
        let block = Record::WebSeeds(list(&["ftp://a/"])).encode();
        assert!(matches!(
            Record::decode(&block),
            Err(RecordError::Invalid(_))
        ));
    }

    #[test]
    fn wrapped_keys_open_only_for_their_path_and_wrap_key() {
        let p = sample_path(1);
        assert_eq!(
            unwrap_path_key(&[9; 32], &p.store_path, &p.wrapped_key),
            Some(PathKey([3; 32]))
        );
        assert_eq!(
            unwrap_path_key(&[8; 32], &p.store_path, &p.wrapped_key),
            None
        );
        let other = StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-b").unwrap();
        assert_eq!(unwrap_path_key(&[9; 32], &other, &p.wrapped_key), None);
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::decode(&bytes);
            let mut with_header = vec![RECORD_VERSION, KIND_PATH];
            with_header.extend_from_slice(&bytes);
            let _ = Record::decode(&with_header);
        }
    }
}
