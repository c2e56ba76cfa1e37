//! Inodes and names of the view: six fixed ones, then two per path (its
//! narinfo and its NAR), by the order the path was first seen, and one per
//! entry of each path's listing under `store/` (the top bit set, the path's
//! slot in bits 32..63, the entry's index below). Paths only ever appear,
//! so an inode, once given, always means the same file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::PathInfo;

pub const ROOT: u64 = 1;
pub const CACHE_INFO: u64 = 2;
pub const NAR_DIR: u64 = 3;
pub const LOG_DIR: u64 = 4;
pub const REALISATIONS_DIR: u64 = 5;
pub const STORE_DIR: u64 = 6;
/// The narinfo of path slot `s` is `FIRST + 2s`, its NAR `FIRST + 2s + 1`.
pub const FIRST: u64 = 16;

/// Entries of the root before the narinfos: `.`, `..`, then these.
const ROOT_FIXED: [(u64, bool, &str); 5] = [
    (CACHE_INFO, false, "nix-cache-info"),
    (NAR_DIR, true, "nar"),
    (LOG_DIR, true, "log"),
    (REALISATIONS_DIR, true, "realisations"),
    (STORE_DIR, true, "store"),
];

/// Set in the inodes of entries under `store/`.
const STORE_BIT: u64 = 1 << 63;

/// The inode of entry `entry` of the listing of path slot `slot`.
pub fn store_ino(slot: usize, entry: u32) -> u64 {
    STORE_BIT | ((slot as u64) << 32) | u64::from(entry)
}

/// The path slot and listing entry of an inode under `store/`.
pub fn store_of(ino: u64) -> Option<(usize, u32)> {
    if ino & STORE_BIT == 0 {
        return None;
    }
    let slot = usize::try_from((ino & !STORE_BIT) >> 32).ok()?;
    Some((slot, ino as u32))
}

/// What an inode is.
#[derive(Debug, Clone)]
pub enum Inode {
    Dir(u64),
    CacheInfo,
    NarInfo(Arc<PathInfo>),
    Nar(Arc<PathInfo>),
    /// Entry `entry` of the listing of the path in slot `slot`; what it is
    /// only the listing says.
    Store {
        path: Arc<PathInfo>,
        slot: usize,
        entry: u32,
    },
}

/// The path slot of a narinfo or NAR inode.
pub fn slot_of(ino: u64) -> Option<usize> {
    if ino & STORE_BIT != 0 {
        return None;
    }
    ino.checked_sub(FIRST)
        .and_then(|i| usize::try_from(i / 2).ok())
}

/// The store-path hash part a name in directory `parent` would be the
/// path of, if it has one's form: `<hash>.narinfo` at the root,
/// `<hash>-…` under `nar/` and `store/` (32 characters of Nix's base32).
/// Whether a path has it is the source's to say.
pub fn hash_of_name(parent: u64, name: &str) -> Option<&str> {
    let hash = match parent {
        ROOT => name.strip_suffix(".narinfo")?,
        NAR_DIR | STORE_DIR => name.split_once('-')?.0,
        _ => return None,
    };
    let base32 = |c: u8| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&c);
    (hash.len() == 32 && hash.bytes().all(base32)).then_some(hash)
}

/// Every path the view has shown, by slot.
#[derive(Debug, Default)]
pub struct Table {
    generation: Option<u64>,
    paths: Vec<Arc<PathInfo>>,
    by_hash: HashMap<String, usize>,
    by_nar: HashMap<String, usize>,
}

impl Table {
    /// The source generation this table reflects.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Takes in the source's paths at `generation`: new ones get the next
    /// slots; known ones keep theirs.
    pub fn refresh(&mut self, generation: u64, paths: Vec<PathInfo>) {
        for p in paths {
            // Slots must fit the 31 bits a store inode gives them.
            let full = self.paths.len() >= 1 << 31;
            if full || self.by_hash.contains_key(&p.hash) || self.by_nar.contains_key(&p.nar_name) {
                continue;
            }
            let slot = self.paths.len();
            self.by_hash.insert(p.hash.clone(), slot);
            self.by_nar.insert(p.nar_name.clone(), slot);
            self.paths.push(Arc::new(p));
        }
        self.generation = Some(generation);
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The inode of `name` in directory `parent` (not under a path of
    /// `store/`: those names are in the path's listing).
    pub fn lookup(&self, parent: u64, name: &str) -> Option<(u64, Inode)> {
        let ino = match parent {
            STORE_DIR => {
                let slot = *self.by_hash.get(name.split_once('-')?.0)?;
                if self.paths[slot].name != name {
                    return None;
                }
                store_ino(slot, 0)
            }
            ROOT => match ROOT_FIXED.iter().find(|(_, _, n)| *n == name) {
                Some((ino, _, _)) => *ino,
                None => {
                    let slot = *self.by_hash.get(name.strip_suffix(".narinfo")?)?;
                    FIRST + 2 * slot as u64
                }
            },
            NAR_DIR => FIRST + 2 * *self.by_nar.get(name)? as u64 + 1,
            _ => return None,
        };
        Some((ino, self.node(ino)?))
    }

    /// What inode `ino` is, if it is anything.
    pub fn node(&self, ino: u64) -> Option<Inode> {
        if let Some((slot, entry)) = store_of(ino) {
            return Some(Inode::Store {
                path: self.paths.get(slot)?.clone(),
                slot,
                entry,
            });
        }
        match ino {
            ROOT | NAR_DIR | LOG_DIR | REALISATIONS_DIR | STORE_DIR => Some(Inode::Dir(ino)),
            CACHE_INFO => Some(Inode::CacheInfo),
            _ => {
                let p = self.paths.get(slot_of(ino)?)?.clone();
                Some(if (ino - FIRST).is_multiple_of(2) {
                    Inode::NarInfo(p)
                } else {
                    Inode::Nar(p)
                })
            }
        }
    }

    /// Entry `i` of directory `dir` (`.` and `..` first): its inode, whether
    /// it is a directory, and its name; `None` past the end. `None` from
    /// [`Self::entry_count`] means `dir` is not a directory.
    pub fn entry(&self, dir: u64, i: usize) -> Option<(u64, bool, Cow<'_, str>)> {
        match i {
            0 => return Some((dir, true, ".".into())),
            1 => return Some((ROOT, true, "..".into())),
            _ => {}
        }
        let i = i - 2;
        match dir {
            ROOT => match ROOT_FIXED.get(i) {
                Some(&(ino, is_dir, name)) => Some((ino, is_dir, name.into())),
                None => {
                    let slot = i - ROOT_FIXED.len();
                    let p = self.paths.get(slot)?;
                    Some((
                        FIRST + 2 * slot as u64,
                        false,
                        format!("{}.narinfo", p.hash).into(),
                    ))
                }
            },
            NAR_DIR => {
                let p = self.paths.get(i)?;
                Some((FIRST + 2 * i as u64 + 1, false, p.nar_name.as_str().into()))
            }
            // Shown as directories (most are; `stat` tells exactly, from
            // the path's listing, which a listing of store/ must not fetch).
            STORE_DIR => {
                let p = self.paths.get(i)?;
                Some((store_ino(i, 0), true, p.name.as_str().into()))
            }
            _ => None,
        }
    }

    /// Whether `ino` is one of the fixed directories.
    pub fn is_dir(&self, ino: u64) -> bool {
        matches!(ino, ROOT | NAR_DIR | LOG_DIR | REALISATIONS_DIR | STORE_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_paths_give_their_hash_and_nothing_else_does() {
        let h = "0123456789abcdfghijklmnpqrsvwxyz";
        assert_eq!(hash_of_name(ROOT, &format!("{h}.narinfo")), Some(h));
        assert_eq!(hash_of_name(NAR_DIR, &format!("{h}-{h}.nar")), Some(h));
        assert_eq!(hash_of_name(STORE_DIR, &format!("{h}-hello-2.12")), Some(h));
        // Not a hash: too short, too long, a letter Nix's base32 lacks
        // (e, o, t, u), no suffix, or a directory with no paths.
        assert_eq!(hash_of_name(ROOT, "0123.narinfo"), None);
        assert_eq!(hash_of_name(ROOT, &format!("{h}0.narinfo")), None);
        assert_eq!(hash_of_name(ROOT, &format!("{}e.narinfo", &h[..31])), None);
        assert_eq!(hash_of_name(ROOT, h), None);
        assert_eq!(hash_of_name(STORE_DIR, h), None);
        assert_eq!(hash_of_name(LOG_DIR, &format!("{h}-x")), None);
        assert_eq!(hash_of_name(ROOT, "nix-cache-info"), None);
    }

    fn path(hash: &str, size: u64) -> PathInfo {
        PathInfo {
            hash: hash.into(),
            name: format!("{hash}-x"),
            nar_name: format!("{hash}-nar.nar"),
            narinfo_len: 30,
            nar_size: size,
            segment_size: 4096,
        }
    }

    #[test]
    fn inodes_are_stable_as_paths_appear() {
        let mut t = Table::default();
        t.refresh(1, vec![path("aaa", 1), path("bbb", 2)]);
        let (a, _) = t.lookup(ROOT, "aaa.narinfo").unwrap();
        let (b_nar, node) = t.lookup(NAR_DIR, "bbb-nar.nar").unwrap();
        assert!(matches!(node, Inode::Nar(p) if p.nar_size == 2));
        // A new generation lists the paths in another order, plus one.
        t.refresh(2, vec![path("ccc", 3), path("bbb", 2), path("aaa", 1)]);
        assert_eq!(t.lookup(ROOT, "aaa.narinfo").unwrap().0, a);
        assert_eq!(t.lookup(NAR_DIR, "bbb-nar.nar").unwrap().0, b_nar);
        assert_eq!(t.len(), 3);
        assert!(matches!(t.node(a), Some(Inode::NarInfo(p)) if p.hash == "aaa"));
        assert_eq!(slot_of(b_nar), Some(1));
    }

    #[test]
    fn names_that_are_not_there() {
        let mut t = Table::default();
        t.refresh(1, vec![path("aaa", 1)]);
        for (dir, name) in [
            (ROOT, "bbb.narinfo"),
            (ROOT, "aaa"),
            (ROOT, "aaa-nar.nar"),
            (NAR_DIR, "aaa.narinfo"),
            (LOG_DIR, "aaa.narinfo"),
            (FIRST, "x"),
            (ROOT, ""),
        ] {
            assert!(t.lookup(dir, name).is_none(), "{dir} {name}");
        }
        assert!(t.node(FIRST + 2).is_none());
        assert!(t.node(0).is_none());
        assert!(t.node(u64::MAX).is_none());
    }

    #[test]
    fn listings_hold_every_entry_once() {
        let mut t = Table::default();
        t.refresh(1, (0..1000).map(|i| path(&format!("h{i}"), i)).collect());
        let names: Vec<String> = (0..)
            .map_while(|i| t.entry(ROOT, i))
            .map(|(_, _, n)| n.into_owned())
            .collect();
        assert_eq!(names.len(), 2 + 5 + 1000);
        assert_eq!(
            &names[..7],
            [
                ".",
                "..",
                "nix-cache-info",
                "nar",
                "log",
                "realisations",
                "store"
            ]
        );
        assert_eq!(names[7], "h0.narinfo");
        for (i, name) in names.iter().enumerate().skip(7) {
            let (ino, _) = t.lookup(ROOT, name).unwrap();
            assert_eq!(t.entry(ROOT, i).unwrap().0, ino);
        }
        let nars = (0..).map_while(|i| t.entry(NAR_DIR, i)).count();
        assert_eq!(nars, 2 + 1000);
        assert_eq!((0..).map_while(|i| t.entry(LOG_DIR, i)).count(), 2);
        assert!(
            t.entry(FIRST, 0).is_some_and(|(_, d, _)| d),
            ". of anything"
        );
        assert!(t.entry(FIRST, 2).is_none());
        let store: Vec<_> = (2..).map_while(|i| t.entry(STORE_DIR, i)).collect();
        assert_eq!(store.len(), 1000);
        for (ino, is_dir, name) in store {
            assert!(is_dir);
            assert_eq!(t.lookup(STORE_DIR, &name).unwrap().0, ino);
        }
    }

    #[test]
    fn store_inodes_name_a_slot_and_an_entry() {
        let mut t = Table::default();
        t.refresh(1, vec![path("aaa", 1), path("bbb", 2)]);
        let (ino, node) = t.lookup(STORE_DIR, "bbb-x").unwrap();
        assert_eq!(store_of(ino), Some((1, 0)));
        assert!(matches!(node, Inode::Store { slot: 1, entry: 0, ref path } if path.hash == "bbb"));
        assert!(
            t.lookup(STORE_DIR, "bbb-y").is_none(),
            "the hash alone is not enough"
        );
        assert!(t.lookup(STORE_DIR, "bbb").is_none());
        assert!(t.lookup(STORE_DIR, "").is_none());
        for (slot, entry) in [(0, 0), (1, 7), ((1 << 31) - 1, u32::MAX)] {
            let ino = store_ino(slot, entry);
            assert_eq!(store_of(ino), Some((slot, entry)));
            assert_eq!(slot_of(ino), None);
        }
        assert!(matches!(
            t.node(store_ino(1, 99)),
            Some(Inode::Store { entry: 99, .. })
        ));
        assert!(t.node(store_ino(2, 0)).is_none(), "no such slot");
        assert_eq!(store_of(FIRST + 3), None);
    }
}
