//! Making one block of a kept path again: straight from the file it lies
//! in when one holds all of it (found in the path's listing), else from a
//! dump of the path (`nix-store --dump`), which makes blocks in order and
//! holds the last [`RECENT`](super::RECENT) it made.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hypernar_feed::format::listing::Listing;
use hypernar_feed::format::segment::Sealer;
use hypernar_feed::format::storepath::StorePath;
use tracing::info;

use super::{Entry, Remaker, KEPT_ZSTD_LEVEL, MAX_DUMPS, MAX_SESSIONS, RECENT};

/// A regular file of a kept path: its contents are NAR bytes
/// `offset..offset + size`.
#[derive(Debug, Clone)]
pub(super) struct FileSpan {
    pub(super) offset: u64,
    pub(super) size: u64,
    /// Its path under the store path (empty: the store path is the file).
    pub(super) rel: PathBuf,
}

/// Entry `i`'s path from the listing's root; `None` for a name that is not
/// one path component.
pub(super) fn relative_path(listing: &Listing, mut i: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut parts = Vec::new();
    let mut steps = 0;
    while i != 0 {
        let e = listing.get(i)?;
        let name = std::ffi::OsStr::from_bytes(&e.name);
        if e.name.is_empty() || e.name.contains(&b'/') || name == "." || name == ".." {
            return None;
        }
        parts.push(name.to_owned());
        i = e.parent;
        steps += 1;
        if steps > listing.len() {
            return None;
        }
    }
    Some(parts.iter().rev().collect())
}

/// A store path being dumped and sealed again, segment after segment (the
/// list of shared dumps names its path).
pub(super) struct Session {
    _counted: DumpCount,
    dump: hypernar_publisher::local::Dump,
    sealer: Sealer,
    next: u64,
    recent: VecDeque<(u64, Vec<u8>)>,
    used: Instant,
}

impl Remaker {
    /// Block `index` (of `e`'s path) made again: straight from its file if
    /// one holds it, else from an open dump of the path at or before it,
    /// else from a new one.
    pub(super) fn make(&self, e: &Entry, index: u64) -> Result<Vec<u8>, String> {
        let segment = index - e.first;
        match self.read_direct(e, segment) {
            Ok(Some(block)) => return Ok(block),
            Ok(None) => {}
            // The dump says what the store holds now.
            Err(err) => {
                tracing::debug!(path = %e.path, segment, "reading a segment from its file: {err}; dumping the path")
            }
        }
        let serves = |s: &Session| s.next <= segment || s.recent.iter().any(|(i, _)| *i == segment);
        // Another thread may move a shared dump past this segment between
        // choosing it and locking it: then choose again, and at the last
        // try take a new one, locked before it is shared.
        for attempt in 0..3 {
            let session = match self.shared_session(&e.path, attempt == 2, &serves) {
                Some(s) => s,
                None => {
                    let s = self.new_session(e, segment)?;
                    let mut g = s.lock().map_err(|_| "a dump panicked".to_owned())?;
                    self.share_session(&e.path, s.clone());
                    return Self::advance(&mut g, e, segment);
                }
            };
            let mut g = session.lock().map_err(|_| "a dump panicked".to_owned())?;
            if !serves(&g) {
                continue;
            }
            return Self::advance(&mut g, e, segment);
        }
        Err("every dump of this path moved past the segment".into())
    }

    /// Segment `segment` read straight from the file it lies in, if one
    /// holds all of it (most of a large path): no dump, in any order.
    fn read_direct(&self, e: &Entry, segment: u64) -> Result<Option<Vec<u8>>, String> {
        use std::os::unix::fs::FileExt;
        let len = e.layout.len(segment).map_err(|err| err.to_string())?;
        let start = segment * u64::from(e.layout.segment_size);
        let end = start + len as u64;
        let Some(f) = e
            .files
            .iter()
            .find(|f| f.offset <= start && end <= f.offset + f.size)
        else {
            return Ok(None);
        };
        // A path that is one file is that file (a join of "" would add a
        // trailing slash).
        let mut path = self.real_path(&e.path);
        if !f.rel.as_os_str().is_empty() {
            path = path.join(&f.rel);
        }
        let mut buf = vec![0; len];
        let read = std::fs::File::open(&path).and_then(|file| {
            // Not a regular file (a symlink put in its place) is refused:
            // the tree check would refuse its bytes anyway.
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            file.read_exact_at(&mut buf, start - f.offset)
        });
        read.map_err(|err| format!("reading {}: {err}", path.display()))?;
        let mut sealer = Sealer::new(e.layout.clone(), &e.key, KEPT_ZSTD_LEVEL)
            .map_err(|err| err.to_string())?;
        sealer
            .seal(segment, &buf)
            .map(Some)
            .map_err(|err| err.to_string())
    }

    /// Moves dump `s` to `segment` and returns that block. A dump that
    /// failed is spent: it serves nothing more (its place in the NAR is
    /// lost), and a new one is taken for the next block.
    fn advance(s: &mut Session, e: &Entry, segment: u64) -> Result<Vec<u8>, String> {
        s.used = Instant::now();
        if let Some((_, b)) = s.recent.iter().find(|(i, _)| *i == segment) {
            return Ok(b.clone());
        }
        let mut buf = Vec::new();
        while s.next <= segment {
            let i = s.next;
            let step = e
                .layout
                .len(i)
                .map_err(|err| err.to_string())
                .and_then(|len| {
                    buf.resize(len, 0);
                    s.dump
                        .read_exact(&mut buf)
                        .map_err(|err| format!("nix-store --dump {}: {err}", e.path))?;
                    // Only what it will hold is sealed: a segment far behind
                    // this one is read past.
                    if i + RECENT as u64 > segment {
                        let block = s.sealer.seal(i, &buf).map_err(|err| err.to_string())?;
                        s.recent.push_back((i, block));
                        if s.recent.len() > RECENT {
                            s.recent.pop_front();
                        }
                    }
                    Ok(())
                });
            if let Err(err) = step {
                s.next = u64::MAX;
                s.recent.clear();
                return Err(err);
            }
            s.next += 1;
        }
        Ok(s.recent.back().expect("just made").1.clone())
    }

    /// A shared dump of `path` that `serves` the segment, or one busy
    /// making another block of it (its lock is waited for outside the
    /// list's, and what it serves checked again); none if `fresh`.
    fn shared_session(
        &self,
        path: &StorePath,
        fresh: bool,
        serves: &dyn Fn(&Session) -> bool,
    ) -> Option<Arc<Mutex<Session>>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|(_, s)| {
            s.try_lock()
                .map(|s| s.used.elapsed() < self.idle && s.next != u64::MAX)
                .unwrap_or(true)
        });
        if fresh {
            return None;
        }
        let mut busy = None;
        for (p, s) in sessions.iter() {
            if p != path {
                continue;
            }
            match s.try_lock() {
                Ok(g) if serves(&g) => return Some(s.clone()),
                Ok(_) => {}
                Err(_) => busy = busy.or(Some(s.clone())),
            }
        }
        busy
    }

    /// A new dump of `e`'s path; refused past [`MAX_DUMPS`] open at once.
    fn new_session(&self, e: &Entry, segment: u64) -> Result<Arc<Mutex<Session>>, String> {
        let open = self.dumps.clone();
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_DUMPS {
            open.fetch_sub(1, Ordering::AcqRel);
            return Err(format!("{MAX_DUMPS} dumps of the store are open already"));
        }
        let counted = DumpCount(open);
        info!(path = %e.path, from_segment = segment, "making dropped blocks again from the Nix store");
        let dump = hypernar_publisher::local::dump_at(&self.real_path(&e.path))
            .map_err(|err| err.to_string())?;
        let sealer = Sealer::new(e.layout.clone(), &e.key, KEPT_ZSTD_LEVEL)
            .map_err(|err| err.to_string())?;
        Ok(Arc::new(Mutex::new(Session {
            dump,
            sealer,
            next: 0,
            recent: VecDeque::new(),
            used: Instant::now(),
            _counted: counted,
        })))
    }

    /// Shares a dump with the blocks after the one it is making; the least
    /// recently used goes past [`MAX_SESSIONS`] (it ends once those using
    /// it are done).
    fn share_session(&self, path: &StorePath, s: Arc<Mutex<Session>>) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if sessions.len() >= MAX_SESSIONS {
            let oldest = (0..sessions.len()).min_by_key(|&i| {
                sessions[i]
                    .1
                    .try_lock()
                    .map(|s| s.used)
                    .unwrap_or_else(|_| Instant::now())
            });
            if let Some(i) = oldest {
                sessions.remove(i);
            }
        }
        sessions.push((path.clone(), s));
    }
}

/// Counts a dump as open until it is dropped.
pub(super) struct DumpCount(Arc<AtomicUsize>);

impl Drop for DumpCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
