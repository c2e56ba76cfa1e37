//! A read-only FUSE view of a Nix binary cache, decrypted on the fly.
//!
//! The mount is laid out as a `file://` binary cache:
//!
//! ```text
//! nix-cache-info
//! <hash>.narinfo          one per path the source lists
//! nar/<name>.nar          the path's NAR, uncompressed
//! log/  realisations/     empty (Nix's file:// store wants them present)
//! store/<hash>-<name>/…   the files inside each path (the lazy store view)
//! ```
//!
//! The store view shows each path's tree from its NAR listing
//! ([`hypernar_feed::format::listing`]): directories, files with their
//! mode and size, symlinks with their targets. A file's bytes are its
//! range of the NAR, read through the same segments as `nar/`, so `cat` of
//! one small file of a 2 GiB path reads one or two segments.
//!
//! The view knows nothing of peers, feeds or HTTP: it reads each NAR one
//! segment at a time through a [`Backing`], which hands back a segment only
//! once it is verified and decrypted, or an error within its deadline (then
//! the read fails with `EIO`: Nix has no timeout on `file://` caches, so a
//! hang would be a bug). Decrypted segments are kept in a bounded memory
//! cache ([`cache`]) and never written anywhere; the kernel's page cache
//! keeps what it read of these immutable files (`FOPEN_KEEP_CACHE`).
//! `stat` and `readdir` never read a segment.
//!
//! [`mount`] (the `mount` module) says where and how the view is mounted;
//! [`mountinfo`] tells what is mounted where.

pub mod cache;
mod mount;
pub mod mountinfo;
pub mod table;

pub use mount::{clear_stale_mount, mount, MountError, Mounted};

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use tracing::warn;

use cache::ByteLru;
pub use cache::SegmentCache;
use hypernar_feed::format::listing::{Entry, Kind, Listing};
use table::{Inode, Table};

/// Bytes of listings the view keeps (the source may keep more).
const LISTING_CACHE_BYTES: usize = 16 << 20;

/// One store path the view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// The store path's hash part (names `<hash>.narinfo`).
    pub hash: String,
    /// The store path's base name, `<hash>-<name>` (names `store/<name>`).
    pub name: String,
    /// The file name under `nar/` (the narinfo's `URL:` is `nar/<nar_name>`).
    pub nar_name: String,
    /// Bytes of its narinfo ([`Backing::narinfo`] renders it on read, so
    /// the table keeps no narinfo text: most of its memory otherwise).
    pub narinfo_len: u64,
    pub nar_size: u64,
    /// Uncompressed bytes per segment (the last may be shorter).
    pub segment_size: u32,
}

impl PathInfo {
    /// Segments of the NAR.
    pub fn segments(&self) -> u64 {
        self.nar_size.div_ceil(u64::from(self.segment_size.max(1)))
    }
}

/// An error from a [`Backing`].
pub type BackingError = Box<dyn std::error::Error + Send + Sync>;

/// Where the view's paths and bytes come from.
pub trait Backing: Send + Sync + 'static {
    /// Bumped whenever [`Backing::paths`] would answer differently (cheap;
    /// asked before every listing and every lookup of an unknown name).
    fn generation(&self) -> u64;
    /// Every path the view shows now: not necessarily every path the
    /// source could find (see [`Backing::look_up`]).
    fn paths(&self) -> Vec<PathInfo>;
    /// Looks up the path whose hash part is `hash` (32 characters of
    /// Nix's base32) when the view does not show it, as a name that is
    /// not listed is asked for: true if [`Backing::paths`] lists it now.
    /// May block like [`Backing::segment`]. A source that lists every path
    /// it has keeps the default.
    fn look_up(&self, _hash: &str) -> bool {
        false
    }
    /// The narinfo of `path`, exactly `path.narinfo_len` bytes.
    fn narinfo(&self, path: &PathInfo) -> Result<String, BackingError>;
    /// Segment `index` of `path`'s NAR, verified and decrypted: exactly
    /// `segment_size` bytes (fewer for the last). Blocks until it is had
    /// or the source's deadline passes.
    fn segment(&self, path: &PathInfo, index: u64) -> Result<Vec<u8>, BackingError>;
    /// A hint that segments `from..to` will be read soon; must not block.
    fn prefetch(&self, path: &PathInfo, from: u64, to: u64);
    /// The listing of `path`'s NAR, for `store/`. Blocks like
    /// [`Backing::segment`].
    fn listing(&self, path: &PathInfo) -> Result<Arc<Listing>, BackingError>;
}

/// Who may read the view. What it shows is every path this node can
/// decrypt, private audiences' included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Only the user who mounted it (FUSE's default).
    #[default]
    Owner,
    /// That user and root (`allow_root`): what a nix-daemon, which reads
    /// as root, needs, and no more. A non-root mount needs
    /// `user_allow_other` in /etc/fuse.conf.
    RootAndOwner,
    /// Every local user (`allow_other`).
    Everyone,
}

/// How the view is mounted.
#[derive(Debug, Clone)]
pub struct Options {
    /// Who besides the mounting user may read the view.
    pub access: Access,
    /// Bytes of decrypted segments kept in memory.
    pub cache_bytes: usize,
    /// Segments fetched ahead of a sequential reader.
    pub read_ahead: u64,
    /// Threads answering the kernel (reads block on the network).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            access: Access::Owner,
            cache_bytes: 64 << 20,
            read_ahead: 8,
            threads: 8,
        }
    }
}

/// How long the kernel may cache names and attributes. Paths only ever
/// appear, and their files never change.
const TTL: Duration = Duration::from_secs(60);
/// A name that is not there now may appear when the index grows.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// How often the view takes in new paths from its source, at most.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// What `nix-cache-info` says.
pub const CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";

/// The filesystem.
struct View {
    source: Arc<dyn Backing>,
    table: Mutex<Table>,
    /// When the table last took in the source's paths.
    refreshed: Mutex<Option<std::time::Instant>>,
    cache: SegmentCache,
    /// Listings by path slot.
    listings: ByteLru<usize, Arc<Listing>>,
    read_ahead: u64,
    uid: u32,
    gid: u32,
    /// Open NAR files: where each handle's last read ended, for read-ahead.
    handles: Mutex<std::collections::HashMap<u64, u64>>,
    next_fh: AtomicU64,
}

impl View {
    fn new(source: Arc<dyn Backing>, opts: &Options) -> Self {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self").ok();
        View {
            source,
            table: Mutex::new(Table::default()),
            refreshed: Mutex::new(None),
            cache: SegmentCache::new(opts.cache_bytes),
            listings: ByteLru::new(LISTING_CACHE_BYTES),
            read_ahead: opts.read_ahead,
            uid: me.as_ref().map_or(0, |m| m.uid()),
            gid: me.as_ref().map_or(0, |m| m.gid()),
            handles: Mutex::new(std::collections::HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The table, brought up to date with the source if it changed, at
    /// most every [`REFRESH_EVERY`]: while an index of 100 000 paths
    /// replicates, its generation changes with every record, and a listing
    /// of every path per record would be quadratic.
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table_as_of(false)
    }

    /// The table, brought up to date with the source if it changed; at
    /// once if `now`, else as [`View::table`].
    fn table_as_of(&self, now: bool) -> std::sync::MutexGuard<'_, Table> {
        let mut t = self.table.lock().expect("table lock");
        let g = self.source.generation();
        let mut last = self.refreshed.lock().expect("refreshed lock");
        let due = now || last.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if t.generation() != Some(g) && due {
            t.refresh(g, self.source.paths());
            *last = Some(std::time::Instant::now());
        }
        t
    }

    /// The listing of the path in `slot`, checked against the path.
    fn listing(&self, slot: usize, path: &PathInfo) -> Result<Arc<Listing>, BackingError> {
        if let Some(l) = self.listings.get(&slot) {
            return Ok(l);
        }
        let l = self.source.listing(path)?;
        if l.nar_size() != path.nar_size {
            return Err(format!(
                "the listing of {} is of a {}-byte NAR, the path's is {}",
                path.name,
                l.nar_size(),
                path.nar_size
            )
            .into());
        }
        self.listings.insert(slot, l.clone());
        Ok(l)
    }

    /// The listing entry an inode under `store/` names.
    fn store_entry(
        &self,
        path: &PathInfo,
        slot: usize,
        entry: u32,
    ) -> Result<(Arc<Listing>, u32), Errno> {
        let listing = self.listing(slot, path).map_err(|e| {
            warn!(path = %path.name, "listing: {e}");
            Errno::EIO
        })?;
        match listing.get(entry) {
            Some(_) => Ok((listing, entry)),
            None => Err(Errno::ENOENT),
        }
    }

    /// Attributes of a node; for an entry under `store/`, from its listing.
    fn node_attr(&self, ino: u64, node: &Inode) -> Result<FileAttr, Errno> {
        match node {
            Inode::Store { path, slot, entry } => {
                let (listing, entry) = self.store_entry(path, *slot, *entry)?;
                Ok(self.entry_attr(ino, listing.get(entry).expect("checked")))
            }
            _ => Ok(self.attr(ino, node)),
        }
    }

    fn entry_attr(&self, ino: u64, e: &Entry) -> FileAttr {
        let (kind, perm, size, nlink) = match &e.kind {
            Kind::Directory { .. } => (FileType::Directory, 0o555, 0, 2),
            Kind::Regular {
                executable, size, ..
            } => (
                FileType::RegularFile,
                if *executable { 0o555 } else { 0o444 },
                *size,
                1,
            ),
            Kind::Symlink { target } => (FileType::Symlink, 0o777, target.len() as u64, 1),
        };
        self.make_attr(ino, kind, perm, size, nlink)
    }

    fn attr(&self, ino: u64, node: &Inode) -> FileAttr {
        let (kind, perm, size, nlink) = match node {
            Inode::Dir(_) => (FileType::Directory, 0o555, 0, 2),
            Inode::CacheInfo => (FileType::RegularFile, 0o444, CACHE_INFO.len() as u64, 1),
            Inode::NarInfo(p) => (FileType::RegularFile, 0o444, p.narinfo_len, 1),
            Inode::Nar(p) => (FileType::RegularFile, 0o444, p.nar_size, 1),
            Inode::Store { .. } => {
                unreachable!("store entries take their attributes from listings")
            }
        };
        self.make_attr(ino, kind, perm, size, nlink)
    }

    fn make_attr(&self, ino: u64, kind: FileType, perm: u16, size: u64, nlink: u32) -> FileAttr {
        // A fixed time: the files never change.
        let t = UNIX_EPOCH + Duration::from_secs(1);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 64 << 10,
        }
    }

    /// Bytes `offset..offset + size` of `path`'s NAR.
    fn read_nar(
        &self,
        slot: usize,
        path: &PathInfo,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, BackingError> {
        let end = offset.saturating_add(u64::from(size)).min(path.nar_size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let seg = u64::from(path.segment_size.max(1));
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / seg;
            let plain = match self.cache.get(&(slot, index)) {
                Some(p) => p,
                None => {
                    let p = Arc::new(self.source.segment(path, index)?);
                    let want = seg.min(path.nar_size - index * seg);
                    if p.len() as u64 != want {
                        return Err(format!(
                            "segment {index} of {} has {} bytes, not {want}",
                            path.hash,
                            p.len()
                        )
                        .into());
                    }
                    self.cache.insert((slot, index), p.clone());
                    p
                }
            };
            let from = (at - index * seg) as usize;
            let to = ((end - index * seg).min(seg)) as usize;
            out.extend_from_slice(&plain[from..to]);
            at = index * seg + to as u64;
        }
        Ok(out)
    }
}

impl View {
    /// Bytes `offset..offset + size` of a file that is bytes
    /// `base..base + len` of `path`'s NAR, fetching the next segments of
    /// the file ahead of a sequential reader.
    #[allow(clippy::too_many_arguments)]
    fn read_file(
        &self,
        fh: u64,
        slot: usize,
        path: &PathInfo,
        base: u64,
        len: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, BackingError> {
        let start = offset.min(len);
        let end = offset.saturating_add(u64::from(size)).min(len);
        // A read that starts where the handle's last one ended is
        // sequential: fetch the next segments ahead, up to the file's end.
        let sequential = {
            let mut h = self.handles.lock().expect("handles lock");
            let last = h.insert(fh, end);
            last == Some(offset) || offset == 0
        };
        if sequential && self.read_ahead > 0 {
            let seg = u64::from(path.segment_size.max(1));
            let next = base.saturating_add(end).div_ceil(seg);
            let last = base.saturating_add(len).div_ceil(seg).min(path.segments());
            let to = next.saturating_add(self.read_ahead).min(last);
            if next < to {
                self.source.prefetch(path, next, to);
            }
        }
        let n = u32::try_from(end - start).expect("at most `size`");
        self.read_nar(slot, path, base.saturating_add(start), n)
    }
}

/// The kind a directory listing shows for a listing entry.
fn entry_type(e: &Entry) -> FileType {
    match e.kind {
        Kind::Directory { .. } => FileType::Directory,
        Kind::Regular { .. } => FileType::RegularFile,
        Kind::Symlink { .. } => FileType::Symlink,
    }
}

impl Filesystem for View {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        use std::os::unix::ffi::OsStrExt;
        let table = self.table();
        let found = match table.node(parent.0) {
            // A name inside a path: from the path's listing.
            Some(Inode::Store { path, slot, entry }) => {
                drop(table);
                match self.store_entry(&path, slot, entry) {
                    Ok((listing, dir)) => listing.lookup(dir, name.as_bytes()).map(|child| {
                        let ino = table::store_ino(slot, child);
                        Ok(self.entry_attr(ino, listing.get(child).expect("listed")))
                    }),
                    Err(e) => Some(Err(e)),
                }
            }
            _ => {
                let name = name.to_str();
                let mut hit = name.and_then(|n| table.lookup(parent.0, n));
                drop(table);
                // A path the view does not list may still be had: an index
                // in runs lists only what was looked up.
                if hit.is_none() {
                    if let Some(hash) = name.and_then(|n| table::hash_of_name(parent.0, n)) {
                        if self.source.look_up(hash) {
                            hit = self.table_as_of(true).lookup(parent.0, name.unwrap_or(""));
                        }
                    }
                }
                hit.map(|(ino, node)| self.node_attr(ino, &node))
            }
        };
        match found {
            Some(Ok(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Some(Err(e)) => reply.error(e),
            None => reply.entry(&NEGATIVE_TTL, &negative(), Generation(0)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let node = self.table().node(ino.0);
        match node.map(|n| self.node_attr(ino.0, &n)) {
            Some(Ok(attr)) => reply.attr(&TTL, &attr),
            Some(Err(e)) => reply.error(e),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let node = self.table().node(ino.0);
        let Some(Inode::Store { path, slot, entry }) = node else {
            reply.error(Errno::EINVAL);
            return;
        };
        match self.store_entry(&path, slot, entry) {
            Ok((listing, e)) => match &listing.get(e).expect("checked").kind {
                Kind::Symlink { target } => reply.data(target),
                _ => reply.error(Errno::EINVAL),
            },
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let node = self.table().node(ino.0);
        let is_dir = match &node {
            None => {
                reply.error(Errno::ENOENT);
                return;
            }
            Some(Inode::Dir(_)) => true,
            Some(Inode::Store { path, slot, entry }) => {
                match self.store_entry(path, *slot, *entry) {
                    Ok((listing, e)) => {
                        !matches!(listing.get(e).expect("checked").kind, Kind::Regular { .. })
                    }
                    Err(e) => {
                        reply.error(e);
                        return;
                    }
                }
            }
            Some(_) => false,
        };
        if is_dir {
            reply.error(Errno::EISDIR);
            return;
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .expect("handles lock")
            .insert(fh, u64::MAX);
        // Immutable files: keep what the kernel cached.
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.handles.lock().expect("handles lock").remove(&fh.0);
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let node = self.table().node(ino.0);
        let small = |bytes: &[u8]| {
            let start = (offset as usize).min(bytes.len());
            let end = start.saturating_add(size as usize).min(bytes.len());
            bytes[start..end].to_vec()
        };
        let (slot, path, base, len) = match node {
            Some(Inode::CacheInfo) => return reply.data(&small(CACHE_INFO.as_bytes())),
            Some(Inode::NarInfo(p)) => {
                return match self.source.narinfo(&p) {
                    Ok(text) if text.len() as u64 == p.narinfo_len => {
                        reply.data(&small(text.as_bytes()))
                    }
                    Ok(text) => {
                        warn!(path = %p.name, "its narinfo is now {} bytes, not {}", text.len(), p.narinfo_len);
                        reply.error(Errno::EIO)
                    }
                    Err(e) => {
                        warn!(path = %p.name, "narinfo: {e}");
                        reply.error(Errno::EIO)
                    }
                };
            }
            Some(Inode::Nar(p)) => {
                let slot = table::slot_of(ino.0).expect("a NAR inode has a slot");
                let len = p.nar_size;
                (slot, p, 0, len)
            }
            Some(Inode::Store { path, slot, entry }) => {
                match self.store_entry(&path, slot, entry) {
                    Ok((listing, e)) => match listing.get(e).expect("checked").kind {
                        Kind::Regular { size, offset, .. } => (slot, path, offset, size),
                        _ => return reply.error(Errno::EISDIR),
                    },
                    Err(e) => return reply.error(e),
                }
            }
            Some(Inode::Dir(_)) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        match self.read_file(fh.0, slot, &path, base, len, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => {
                warn!(path = %path.name, offset, size, "read failed: {e}");
                reply.error(Errno::EIO);
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let table = self.table();
        let mut i = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Some(Inode::Store { path, slot, entry }) = table.node(ino.0) {
            drop(table);
            let (listing, dir) = match self.store_entry(&path, slot, entry) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            let e = listing.get(dir).expect("checked");
            let Kind::Directory { children } = &e.kind else {
                return reply.error(Errno::ENOTDIR);
            };
            let parent = match dir {
                0 => table::STORE_DIR,
                _ => table::store_ino(slot, e.parent),
            };
            loop {
                let (child, kind, name): (u64, FileType, &[u8]) = match i {
                    0 => (ino.0, FileType::Directory, b"."),
                    1 => (parent, FileType::Directory, b".."),
                    _ => match children.get(i - 2) {
                        Some(&c) => {
                            let ce = listing.get(c).expect("listed");
                            (table::store_ino(slot, c), entry_type(ce), &ce.name)
                        }
                        None => break,
                    },
                };
                i += 1;
                use std::os::unix::ffi::OsStrExt;
                if reply.add(INodeNo(child), i as u64, kind, OsStr::from_bytes(name)) {
                    break;
                }
            }
            return reply.ok();
        }
        if !table.is_dir(ino.0) {
            drop(table);
            reply.error(Errno::ENOTDIR);
            return;
        }
        while let Some((child, is_dir, name)) = table.entry(ino.0, i) {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            i += 1;
            if reply.add(INodeNo(child), i as u64, kind, name.as_ref()) {
                break;
            }
        }
        drop(table);
        reply.ok();
    }
}

/// A negative entry (inode 0): the kernel caches "not there" for its TTL.
fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 512,
    }
}
