//! NAR listings: what is inside a path's NAR — directories, regular files
//! with their mode, size and byte range in the NAR, symlinks with their
//! targets — without the file contents.
//!
//! A publisher computes a path's listing while it reads the NAR
//! ([`NarScanner`]) and stores it, sealed under the path's listing key,
//! after the path's segments ([`crate::format::record::ListingRecord`]).
//! A fetcher decodes it ([`Listing::decode`]) to show the files of a path
//! (the FUSE store view, Nix's `.ls` files) while fetching only the blocks
//! a read touches. A path published without a listing is scanned from its
//! NAR once, by the same [`NarScanner`].
//!
//! Encoded form (postcard 1.0), entries in NAR order (depth first, a
//! directory's entries sorted by name, as in the NAR):
//!
//! ```text
//! listing = version (u8, = 1) || entries: [entry]
//! entry   = name (bytes; empty for the root)
//!        || kind: Directory { entries: u32 }        number of direct entries
//!                | Regular { executable: bool, size: u64 }
//!                | Symlink { target: bytes }
//! ```
//!
//! Byte ranges are not stored: a NAR's layout follows from its listing, so
//! the decoder recomputes every file's offset and checks that the whole
//! comes to the record's NAR size. Everything is bounded: names of at most
//! [`MAX_NAME_LEN`] bytes, targets of at most [`MAX_TARGET_LEN`], at most
//! [`MAX_ENTRIES`] entries, encoded listings of at most [`MAX_LISTING_LEN`],
//! all arithmetic checked. A listing that breaks any rule is an error,
//! never a panic or an allocation its input chose.

use serde::{Deserialize, Serialize};

/// Longest entry name (Linux's NAME_MAX; no file system restores longer).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target (Linux's PATH_MAX less the terminating NUL).
pub const MAX_TARGET_LEN: usize = 4095;
/// Most entries in one listing (a path with more is shown without one).
pub const MAX_ENTRIES: usize = 1 << 21;
/// Largest encoded listing accepted.
pub const MAX_LISTING_LEN: u64 = 64 << 20;

const LISTING_VERSION: u8 = 1;
const NAR_MAGIC: &[u8] = b"nix-archive-1";

pub mod json;
mod scan;
pub use scan::{scan, NarScanner};

/// Why a NAR or an encoded listing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("not a NAR at byte {pos}: {what}")]
    Nar { pos: u64, what: &'static str },
    #[error("listing: {0}")]
    Invalid(&'static str),
    #[error("listing is malformed: {0}")]
    Body(String),
    #[error("listing has version {0}, this build reads version {LISTING_VERSION}")]
    Version(u8),
    #[error("listing describes a NAR of {computed} bytes, the record says {expected}")]
    Size { computed: u64, expected: u64 },
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Its entries (indexes into the listing), sorted by name.
    Directory {
        children: Vec<u32>,
    },
    /// `offset` is where its contents start in the NAR.
    Regular {
        executable: bool,
        size: u64,
        offset: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// One file, directory or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name in its directory (empty for the root).
    pub name: Vec<u8>,
    /// Index of its directory (the root's is 0, itself).
    pub parent: u32,
    pub kind: Kind,
}

/// A path's NAR, without the contents. Entry 0 is the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    entries: Vec<Entry>,
    nar_size: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    version: u8,
    entries: Vec<WireEntry>,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    name: Vec<u8>,
    kind: WireKind,
}

#[derive(Serialize, Deserialize)]
enum WireKind {
    Directory { entries: u32 },
    Regular { executable: bool, size: u64 },
    Symlink { target: Vec<u8> },
}

impl Listing {
    /// The root entry.
    pub fn root(&self) -> &Entry {
        &self.entries[0]
    }

    /// Entry `index`, if there is one.
    pub fn get(&self, index: u32) -> Option<&Entry> {
        self.entries.get(index as usize)
    }

    /// Number of entries (at least 1).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never: a listing has at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Size of the NAR this listing describes.
    pub fn nar_size(&self) -> u64 {
        self.nar_size
    }

    /// The entry named `name` in directory `dir`.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let Kind::Directory { children } = &self.get(dir)?.kind else {
            return None;
        };
        let at = children
            .binary_search_by(|&c| self.entries[c as usize].name.as_slice().cmp(name))
            .ok()?;
        Some(children[at])
    }

    /// The entry at `path` (`a/b/c`, relative to the root; empty for the
    /// root itself).
    pub fn resolve(&self, path: &[u8]) -> Option<u32> {
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .try_fold(0, |dir, name| self.lookup(dir, name))
    }

    /// About how many bytes of memory this listing holds.
    pub fn approx_bytes(&self) -> usize {
        let per = std::mem::size_of::<Entry>();
        self.entries
            .iter()
            .map(|e| {
                per + e.name.len()
                    + match &e.kind {
                        Kind::Directory { children } => children.len() * 4,
                        Kind::Symlink { target } => target.len(),
                        Kind::Regular { .. } => 0,
                    }
            })
            .sum()
    }

    /// The encoded listing.
    pub fn encode(&self) -> Vec<u8> {
        let entries = self
            .entries
            .iter()
            .map(|e| WireEntry {
                name: e.name.clone(),
                kind: match &e.kind {
                    Kind::Directory { children } => WireKind::Directory {
                        entries: children.len() as u32,
                    },
                    Kind::Regular {
                        executable, size, ..
                    } => WireKind::Regular {
                        executable: *executable,
                        size: *size,
                    },
                    Kind::Symlink { target } => WireKind::Symlink {
                        target: target.clone(),
                    },
                },
            })
            .collect();
        postcard::to_stdvec(&Wire {
            version: LISTING_VERSION,
            entries,
        })
        .expect("listings serialize")
    }

    /// Decodes and checks an encoded listing of a NAR of `nar_size` bytes.
    pub fn decode(bytes: &[u8], nar_size: u64) -> Result<Self, ListingError> {
        if bytes.len() as u64 > MAX_LISTING_LEN {
            return Err(ListingError::Invalid("encoded listing is over 64 MiB"));
        }
        // The version first, so a later format is named, not "malformed".
        match bytes.first() {
            None => return Err(ListingError::Invalid("empty")),
            Some(&v) if v != LISTING_VERSION => return Err(ListingError::Version(v)),
            Some(_) => {}
        }
        let wire: Wire =
            postcard::from_bytes(bytes).map_err(|e| ListingError::Body(e.to_string()))?;
        let mut b = Builder::new();
        // Entries still to come in each open directory.
        let mut remaining: Vec<u32> = Vec::new();
        for (i, e) in wire.entries.into_iter().enumerate() {
            if i > 0 && remaining.is_empty() {
                return Err(ListingError::Invalid("entries after the root is complete"));
            }
            if let Some(r) = remaining.last_mut() {
                *r -= 1;
            }
            if i == 0 && !e.name.is_empty() {
                return Err(ListingError::Invalid("the root has a name"));
            }
            let name = (i > 0).then_some(e.name);
            match e.kind {
                WireKind::Directory { entries } => {
                    b.open_dir(name).map_err(ListingError::Invalid)?;
                    remaining.push(entries);
                }
                WireKind::Regular { executable, size } => {
                    b.file(name, executable, size)
                        .map_err(ListingError::Invalid)?;
                }
                WireKind::Symlink { target } => {
                    b.symlink(name, target).map_err(ListingError::Invalid)?;
                }
            }
            while remaining.last() == Some(&0) {
                remaining.pop();
                b.close_dir().map_err(ListingError::Invalid)?;
            }
        }
        if b.entries.is_empty() || !remaining.is_empty() {
            return Err(ListingError::Invalid("cut short"));
        }
        let listing = b.finish().map_err(ListingError::Invalid)?;
        if listing.nar_size != nar_size {
            return Err(ListingError::Size {
                computed: listing.nar_size,
                expected: nar_size,
            });
        }
        Ok(listing)
    }

    /// The listing as Nix writes it next to a NAR (`write-nar-listing`,
    /// the `<hash>.ls` file of a binary cache):
    /// `{"version":1,"root":{"type":"directory","entries":{…}}}`. Names that
    /// are not UTF-8 are shown with U+FFFD in place of the bad bytes. For a
    /// large listing, [`json::NixJson`] writes the same a chunk at a time.
    pub fn to_nix_json(&self) -> String {
        json::NixJson::new(self).collect()
    }
}

/// Bytes a NAR string of `len` bytes takes: its length, then the bytes
/// padded to 8.
fn nar_str(len: u64) -> Option<u64> {
    len.checked_next_multiple_of(8)?.checked_add(8)
}

/// `(`, `)`, `type`, `entry`, `name`, `node`, `target`, `contents`,
/// `regular`, `symlink`: each 8 bytes of length and 8 of padded text.
const SHORT: u64 = 16;
/// `directory`, `executable`, `nix-archive-1`.
const LONG: u64 = 24;

/// Builds a listing from entries in NAR order, checking names, order and
/// limits, and tracking where each token of the NAR falls.
#[derive(Debug)]
struct Builder {
    entries: Vec<Entry>,
    /// Open directories, innermost last.
    open: Vec<u32>,
    /// NAR bytes so far.
    pos: u64,
    /// The root is complete.
    done: bool,
}

type Step = Result<(), &'static str>;

impl Builder {
    fn new() -> Self {
        Builder {
            entries: Vec::new(),
            open: Vec::new(),
            pos: LONG,
            done: false,
        }
    }

    fn add(&mut self, n: u64) -> Step {
        self.pos = self.pos.checked_add(n).ok_or("NAR size overflows")?;
        Ok(())
    }

    /// Starts an entry: its place, name checks, and the tokens up to its
    /// type. `name` is `None` for the root only.
    fn begin(&mut self, name: Option<Vec<u8>>, kind: Kind) -> Result<u32, &'static str> {
        if self.done {
            return Err("entries after the root is complete");
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err("more than 2^21 entries");
        }
        let index = self.entries.len() as u32;
        let (name, parent) = match (name, self.open.last()) {
            (None, None) if self.entries.is_empty() => (Vec::new(), 0),
            (Some(name), Some(&dir)) => {
                check_name(&name)?;
                let Kind::Directory { children } = &self.entries[dir as usize].kind else {
                    unreachable!("only directories are opened")
                };
                if let Some(&last) = children.last() {
                    if self.entries[last as usize].name >= name {
                        return Err("directory entries are not sorted, or a name is repeated");
                    }
                }
                // entry ( name <name> node
                self.add(SHORT * 3 + nar_str(name.len() as u64).ok_or("overflow")? + SHORT)?;
                (name, dir)
            }
            _ => return Err("an entry is outside any directory"),
        };
        // ( type
        self.add(SHORT * 2)?;
        if let Some(&dir) = self.open.last() {
            if let Kind::Directory { children } = &mut self.entries[dir as usize].kind {
                children.push(index);
            }
        }
        self.entries.push(Entry { name, parent, kind });
        Ok(index)
    }

    /// Closes an entry that is not a directory.
    fn end_leaf(&mut self) -> Step {
        // ) and, for an entry of a directory, the entry's )
        self.add(if self.open.is_empty() {
            SHORT
        } else {
            SHORT * 2
        })?;
        if self.open.is_empty() {
            self.done = true;
        }
        Ok(())
    }

    fn file(&mut self, name: Option<Vec<u8>>, executable: bool, size: u64) -> Step {
        // regular [executable ""] contents <size>
        let head = SHORT + if executable { LONG + 8 } else { 0 } + SHORT + 8;
        let index = self.begin(name, Kind::Directory { children: vec![] })?;
        self.add(head)?;
        let offset = self.pos;
        self.entries[index as usize].kind = Kind::Regular {
            executable,
            size,
            offset,
        };
        self.add(
            size.checked_next_multiple_of(8)
                .ok_or("file size overflows")?,
        )?;
        self.end_leaf()
    }

    fn symlink(&mut self, name: Option<Vec<u8>>, target: Vec<u8>) -> Step {
        if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains(&0) {
            return Err("a symlink target is empty, over 4095 bytes, or holds NUL");
        }
        // symlink target <target>
        let len = SHORT * 2 + nar_str(target.len() as u64).ok_or("overflow")?;
        self.begin(name, Kind::Symlink { target })?;
        self.add(len)?;
        self.end_leaf()
    }

    fn open_dir(&mut self, name: Option<Vec<u8>>) -> Step {
        let index = self.begin(name, Kind::Directory { children: vec![] })?;
        // directory
        self.add(LONG)?;
        self.open.push(index);
        Ok(())
    }

    fn close_dir(&mut self) -> Step {
        self.open.pop().ok_or("a directory is closed twice")?;
        self.end_leaf()
    }

    fn depth(&self) -> usize {
        self.open.len()
    }

    fn finish(self) -> Result<Listing, &'static str> {
        if !self.done {
            return Err("cut short");
        }
        Ok(Listing {
            entries: self.entries,
            nar_size: self.pos,
        })
    }
}

fn check_name(name: &[u8]) -> Step {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == b"."
        || name == b".."
        || name.contains(&b'/')
        || name.contains(&0)
    {
        return Err("an entry name is empty, over 255 bytes, `.`, `..`, or holds `/` or NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NAR writer for tests, independent of the scanner.
    #[derive(Debug, Clone)]
    enum T {
        F(&'static [u8], bool),
        L(&'static str),
        D(Vec<(&'static str, T)>),
    }

    fn w(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
        out.resize(out.len().next_multiple_of(8), 0);
    }

    fn node(out: &mut Vec<u8>, t: &T) {
        w(out, b"(");
        w(out, b"type");
        match t {
            T::F(data, x) => {
                w(out, b"regular");
                if *x {
                    w(out, b"executable");
                    w(out, b"");
                }
                w(out, b"contents");
                w(out, data);
            }
            T::L(target) => {
                w(out, b"symlink");
                w(out, b"target");
                w(out, target.as_bytes());
            }
            T::D(entries) => {
                w(out, b"directory");
                for (name, child) in entries {
                    w(out, b"entry");
                    w(out, b"(");
                    w(out, b"name");
                    w(out, name.as_bytes());
                    w(out, b"node");
                    node(out, child);
                    w(out, b")");
                }
            }
        }
        w(out, b")");
    }

    fn nar(t: &T) -> Vec<u8> {
        let mut out = Vec::new();
        w(&mut out, NAR_MAGIC);
        node(&mut out, t);
        out
    }

    fn sample() -> T {
        T::D(vec![
            (
                "bin",
                T::D(vec![
                    ("hello", T::F(b"#!/bin/sh\necho hi\n", true)),
                    ("hi", T::L("hello")),
                ]),
            ),
            ("empty", T::D(vec![])),
            ("empty-file", T::F(b"", false)),
            ("name with space ü", T::F(b"12345678", false)),
            ("z", T::F(b"tail", false)),
        ])
    }

    #[test]
    fn a_scanned_nar_lists_every_entry_with_its_byte_range() {
        let bytes = nar(&sample());
        let l = scan(&bytes).unwrap();
        assert_eq!(l.nar_size(), bytes.len() as u64);
        assert_eq!(l.len(), 8);
        let hello = l.resolve(b"bin/hello").unwrap();
        let Kind::Regular {
            executable,
            size,
            offset,
        } = l.get(hello).unwrap().kind
        else {
            panic!("a file")
        };
        assert!(executable);
        assert_eq!(
            &bytes[offset as usize..(offset + size) as usize],
            b"#!/bin/sh\necho hi\n"
        );
        let hi = l.resolve(b"/bin//hi").unwrap();
        assert_eq!(
            l.get(hi).unwrap().kind,
            Kind::Symlink {
                target: b"hello".to_vec()
            }
        );
        assert_eq!(l.get(hi).unwrap().parent, l.resolve(b"bin").unwrap());
        let sp = l.resolve("name with space ü".as_bytes()).unwrap();
        let Kind::Regular { size, offset, .. } = l.get(sp).unwrap().kind else {
            panic!()
        };
        assert_eq!(&bytes[offset as usize..][..size as usize], b"12345678");
        assert_eq!(l.resolve(b""), Some(0));
        assert_eq!(l.resolve(b"bin/nope"), None);
        assert_eq!(l.resolve(b"z/under-a-file"), None);
        assert!(
            matches!(l.get(l.resolve(b"empty").unwrap()).unwrap().kind, Kind::Directory { ref children } if children.is_empty())
        );
    }

    #[test]
    fn any_split_of_the_nar_gives_the_same_listing() {
        let bytes = nar(&sample());
        let whole = scan(&bytes).unwrap();
        for piece in [1, 3, 7, 8, 9, 64] {
            let mut s = NarScanner::new();
            for c in bytes.chunks(piece) {
                s.feed(c).unwrap();
            }
            assert_eq!(s.finish().unwrap(), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn roots_that_are_a_file_or_a_symlink() {
        for t in [
            T::F(b"just a file", true),
            T::F(b"", false),
            T::L("/nix/store/x"),
        ] {
            let bytes = nar(&t);
            let l = scan(&bytes).unwrap();
            assert_eq!(l.len(), 1);
            assert_eq!(Listing::decode(&l.encode(), bytes.len() as u64).unwrap(), l);
        }
    }

    #[test]
    fn encoding_round_trips_and_offsets_are_recomputed() {
        let bytes = nar(&sample());
        let l = scan(&bytes).unwrap();
        let enc = l.encode();
        assert!(enc.len() < 200, "{} bytes", enc.len());
        assert_eq!(Listing::decode(&enc, bytes.len() as u64).unwrap(), l);
        assert!(matches!(
            Listing::decode(&enc, bytes.len() as u64 + 8),
            Err(ListingError::Size { .. })
        ));
    }

    #[test]
    fn broken_nars_are_refused_with_where() {
        let good = nar(&sample());
        // Every strict prefix is cut short.
        for cut in [0, 1, 8, 24, 100, good.len() - 1] {
            assert!(scan(&good[..cut]).is_err(), "prefix of {cut}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert!(
            matches!(scan(&trailing), Err(ListingError::Nar { what, .. }) if what.contains("after the end"))
        );
        let mut bad_magic = good.clone();
        bad_magic[8] = b'N';
        assert!(scan(&bad_magic).is_err());
        let unsorted = nar(&T::D(vec![
            ("b", T::F(b"", false)),
            ("a", T::F(b"", false)),
        ]));
        assert!(
            matches!(scan(&unsorted), Err(ListingError::Nar { what, .. }) if what.contains("sorted"))
        );
        let twice = nar(&T::D(vec![
            ("a", T::F(b"", false)),
            ("a", T::F(b"", false)),
        ]));
        assert!(scan(&twice).is_err());
        for bad in [".", "..", "a/b", "a\0b"] {
            let n = nar(&T::D(vec![(bad, T::F(b"", false))]));
            assert!(scan(&n).is_err(), "{bad:?}");
        }
        // Non-zero padding after a file's contents.
        let mut pad = nar(&T::F(b"abc", false));
        let at = pad.len() - 16 - 1;
        pad[at] = 1;
        assert!(
            matches!(scan(&pad), Err(ListingError::Nar { what, .. }) if what.contains("padding"))
        );
    }

    #[test]
    fn hostile_lengths_cost_nothing() {
        // A name claiming 2^64-1 bytes, a file claiming 2^64-1 bytes.
        let mut n = Vec::new();
        w(&mut n, NAR_MAGIC);
        for t in [&b"("[..], b"type", b"directory", b"entry", b"(", b"name"] {
            w(&mut n, t);
        }
        let mut long_name = n.clone();
        long_name.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(scan(&long_name).is_err());
        let mut f = Vec::new();
        w(&mut f, NAR_MAGIC);
        for t in [&b"("[..], b"type", b"regular", b"contents"] {
            w(&mut f, t);
        }
        f.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut s = NarScanner::new();
        assert!(
            matches!(s.feed(&f), Err(ListingError::Nar { what, .. }) if what.contains("overflow"))
        );
        // A file of 2^63 bytes is accepted as a claim, and only ends early.
        let mut f = Vec::new();
        w(&mut f, NAR_MAGIC);
        for t in [&b"("[..], b"type", b"regular", b"contents"] {
            w(&mut f, t);
        }
        f.extend_from_slice(&(1u64 << 63).to_le_bytes());
        f.extend_from_slice(&[0; 64]);
        let mut s = NarScanner::new();
        s.feed(&f).unwrap();
        assert!(s.finish().is_err());
    }

    fn wire(entries: Vec<WireEntry>) -> Vec<u8> {
        postcard::to_stdvec(&Wire {
            version: 1,
            entries,
        })
        .unwrap()
    }

    fn e(name: &str, kind: WireKind) -> WireEntry {
        WireEntry {
            name: name.as_bytes().to_vec(),
            kind,
        }
    }

    #[test]
    fn hostile_encoded_listings_are_refused() {
        let file = |size| WireKind::Regular {
            executable: false,
            size,
        };
        let dir = |entries| WireKind::Directory { entries };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![2, 0], "version"),
            (wire(vec![]), "cut short"),
            (wire(vec![e("x", file(0))]), "root has a name"),
            (
                wire(vec![e("", dir(u32::MAX)), e("a", file(1))]),
                "cut short",
            ),
            (
                wire(vec![e("", file(1)), e("a", file(1))]),
                "after the root",
            ),
            (
                wire(vec![e("", dir(2)), e("b", file(1)), e("a", file(1))]),
                "sorted",
            ),
            (wire(vec![e("", dir(1)), e("", file(1))]), "name"),
            (wire(vec![e("", dir(1)), e("..", file(1))]), "name"),
            (wire(vec![e("", file(u64::MAX))]), "overflow"),
            (
                wire(vec![
                    e("", dir(2)),
                    e("a", file(u64::MAX / 2)),
                    e("b", file(u64::MAX / 2)),
                ]),
                "overflow",
            ),
            (
                wire(vec![e(
                    "",
                    WireKind::Symlink {
                        target: vec![b'a'; 5000],
                    },
                )]),
                "symlink",
            ),
        ];
        for (bytes, what) in cases {
            let err = Listing::decode(&bytes, 1234).unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
        // A listing claiming 2^32 entries in a few bytes allocates nothing.
        let mut claim = vec![1u8];
        claim.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Listing::decode(&claim, 0).is_err());
    }

    #[test]
    fn nix_json_comes_in_bounded_chunks_that_make_the_whole() {
        let names: Vec<&'static str> = (0..20_000)
            .map(|i| &*Box::leak(format!("file-{i:05}").into_boxed_str()))
            .collect();
        let files = names.iter().map(|n| (*n, T::F(b"x", false))).collect();
        let t = T::D(vec![("dir", T::D(files)), ("z", T::L("dir"))]);
        let l = scan(&nar(&t)).unwrap();
        let chunks: Vec<String> = json::NixJson::new(&l).collect();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for c in &chunks[..chunks.len() - 1] {
            assert!(
                (json::CHUNK..json::CHUNK + 4096).contains(&c.len()),
                "{}",
                c.len()
            );
        }
        let whole = chunks.concat();
        let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
        let dir = v["root"]["entries"]["dir"]["entries"].as_object().unwrap();
        assert_eq!(dir.len(), 20_000);
        assert_eq!(dir["file-12345"]["size"], 1);
        assert_eq!(v["root"]["entries"]["z"]["target"], "dir");
        // A root that is no directory is one chunk.
        let l = scan(&nar(&T::L("/nix/store/x"))).unwrap();
        let chunks: Vec<String> = json::NixJson::new(&l).collect();
        assert_eq!(
            chunks,
            vec![r#"{"version":1,"root":{"type":"symlink","target":"/nix/store/x"}}"#]
        );
    }

    #[test]
    fn nix_json_has_the_shape_nix_writes() {
        let bytes = nar(&sample());
        let l = scan(&bytes).unwrap();
        let v: serde_json::Value = serde_json::from_str(&l.to_nix_json()).unwrap();
        assert_eq!(v["version"], 1);
        let root = &v["root"];
        assert_eq!(root["type"], "directory");
        let hello = &root["entries"]["bin"]["entries"]["hello"];
        assert_eq!(hello["type"], "regular");
        assert_eq!(hello["executable"], true);
        assert_eq!(hello["size"], 18);
        let off = hello["narOffset"].as_u64().unwrap() as usize;
        assert_eq!(&bytes[off..off + 18], b"#!/bin/sh\necho hi\n");
        assert_eq!(root["entries"]["bin"]["entries"]["hi"]["target"], "hello");
        assert!(root["entries"]["z"].get("executable").is_none());
        assert_eq!(root["entries"]["empty"]["entries"], serde_json::json!({}));
        assert_eq!(root["entries"]["name with space ü"]["size"], 8);
        assert_eq!(root["entries"].as_object().unwrap().len(), 5);
    }

    use proptest::prelude::*;

    fn tree(depth: u32) -> BoxedStrategy<T> {
        let leaf = prop_oneof![
            (prop::collection::vec(any::<u8>(), 0..40), any::<bool>())
                .prop_map(|(d, x)| T::F(Box::leak(d.into_boxed_slice()), x)),
            "[a-z/.]{1,20}".prop_map(|t| T::L(Box::leak(t.into_boxed_str()))),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            leaf,
            prop::collection::btree_map("[a-zA-Z0-9 ._é-]{1,12}", tree(depth - 1), 0..5)
                .prop_filter("no . or ..", |m| m.keys().all(|k| k != "." && k != ".."))
                .prop_map(|m| T::D(
                    m.into_iter()
                        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
                        .collect()
                )),
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn scan_and_decode_agree_on_any_tree(t in tree(3), piece in 1usize..40) {
            let bytes = nar(&t);
            let mut s = NarScanner::new();
            for c in bytes.chunks(piece) {
                s.feed(c).unwrap();
            }
            let l = s.finish().unwrap();
            prop_assert_eq!(l.nar_size(), bytes.len() as u64);
            prop_assert_eq!(&Listing::decode(&l.encode(), bytes.len() as u64).unwrap(), &l);
            for i in 0..l.len() as u32 {
                if let Kind::Regular { size, offset, .. } = l.get(i).unwrap().kind {
                    prop_assert!(offset + size <= bytes.len() as u64);
                }
            }
        }

        #[test]
        fn scanning_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&bytes);
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Listing::decode(&bytes, 1000);
        }
    }
}
