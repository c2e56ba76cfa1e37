//! Making one block of a kept path again: straight from the file it lies
//! in when one holds all of it (found in the path's listing), else from a
//! dump of the path (`nix-store --dump`), which makes blocks in order and
//! holds the last [`RECENT`](super::RECENT) it made.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hypernar_feed::format::listing::Listing;
use hypernar_feed::format::segment::Sealer;
use hypernar_feed::format::storepath::StorePath;
use tracing::info;

use super::{Entry, Remaker, KEPT_ZSTD_LEVEL, MAX_SESSIONS, RECENT};

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

/// A store path being dumped and sealed again, segment after segment.
pub(super) struct Session {
    path: StorePath,
    dump: hypernar_publisher::local::Dump,
    sealer: Sealer,
    next: u64,
    recent: VecDeque<(u64, Vec<u8>)>,
    used: Instant,
}

impl Remaker {
    /// Block `index` (of `e`'s path) made again: from an open dump of the
    /// path at or before it, else from a new one.
    pub(super) fn make(&self, e: &Entry, index: u64) -> Result<Vec<u8>, String> {
        let segment = index - e.first;
        if let Some(block) = self.read_direct(e, segment)? {
            return Ok(block);
        }
        let serves = |s: &Session| {
            s.path == e.path && (s.next <= segment || s.recent.iter().any(|(i, _)| *i == segment))
        };
        // Another thread may move a shared dump past this segment between
        // choosing it and locking it: then choose again, and at the last
        // try take a new one, shared only once it has made this block.
        for attempt in 0..3 {
            let (session, new) = self.session_for(e, segment, attempt == 2, &serves)?;
            let mut s = session.lock().map_err(|_| "a dump panicked".to_owned())?;
            if !serves(&s) {
                continue;
            }
            let made = Self::advance(&mut s, e, segment);
            drop(s);
            if new {
                self.share_session(session);
            }
            return made;
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
        let path = self.real_path(&e.path).join(&f.rel);
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

    /// Moves dump `s` to `segment` and returns that block.
    fn advance(s: &mut Session, e: &Entry, segment: u64) -> Result<Vec<u8>, String> {
        s.used = Instant::now();
        if let Some((_, b)) = s.recent.iter().find(|(i, _)| *i == segment) {
            return Ok(b.clone());
        }
        let mut buf = Vec::new();
        while s.next <= segment {
            let i = s.next;
            let len = e.layout.len(i).map_err(|err| err.to_string())?;
            buf.resize(len, 0);
            s.dump
                .read_exact(&mut buf)
                .map_err(|err| format!("nix-store --dump {}: {err}", e.path))?;
            // Only what it will hold is sealed: a segment far behind this
            // one is read past.
            if i + RECENT as u64 > segment {
                let block = s.sealer.seal(i, &buf).map_err(|err| err.to_string())?;
                s.recent.push_back((i, block));
                if s.recent.len() > RECENT {
                    s.recent.pop_front();
                }
            }
            s.next += 1;
        }
        Ok(s.recent.back().expect("just made").1.clone())
    }

    /// An open dump of the path that `serves` the segment (`false`), or,
    /// if none or `fresh`, a new one not shared yet (`true`).
    fn session_for(
        &self,
        e: &Entry,
        segment: u64,
        fresh: bool,
        serves: &dyn Fn(&Session) -> bool,
    ) -> Result<(Arc<Mutex<Session>>, bool), String> {
        if !fresh {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            sessions.retain(|(_, s)| {
                s.try_lock()
                    .map(|s| s.used.elapsed() < self.idle)
                    .unwrap_or(true)
            });
            // A free dump of the path that serves the segment, else one
            // busy making another block of it (its lock is waited for
            // outside this one, and what it serves checked again).
            let mut busy = None;
            for (path, s) in sessions.iter() {
                if path != &e.path {
                    continue;
                }
                match s.try_lock() {
                    Ok(g) if serves(&g) => return Ok((s.clone(), false)),
                    Ok(_) => {}
                    Err(_) => busy = busy.or(Some(s.clone())),
                }
            }
            if let Some(s) = busy {
                return Ok((s, false));
            }
        }
        info!(path = %e.path, from_segment = segment, "making dropped blocks again from the Nix store");
        let dump = hypernar_publisher::local::dump_at(&self.real_path(&e.path))
            .map_err(|err| err.to_string())?;
        let sealer = Sealer::new(e.layout.clone(), &e.key, KEPT_ZSTD_LEVEL)
            .map_err(|err| err.to_string())?;
        let s = Arc::new(Mutex::new(Session {
            path: e.path.clone(),
            dump,
            sealer,
            next: 0,
            recent: VecDeque::new(),
            used: Instant::now(),
        }));
        Ok((s, true))
    }

    /// Shares a dump made for one block with the blocks after it; the
    /// least recently used goes past [`MAX_SESSIONS`].
    fn share_session(&self, s: Arc<Mutex<Session>>) {
        let Ok(path) = s.lock().map(|g| g.path.clone()) else {
            return;
        };
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
        sessions.push((path, s));
    }
}
