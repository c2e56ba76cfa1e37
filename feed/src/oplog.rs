//! Crash safety for hypercore 0.16's operation log (oplog).
//!
//! hypercore 0.16 has two crash-safety bugs in its oplog, both found by our
//! kill -9 test (tests/faults.rs), both of which corrupt a feed's Merkle
//! tree ("Could not load node: N, store tree, blank"). This module works
//! around them without changing hypercore: [`repair`] runs before a feed is
//! opened, and [`OplogGuard`] wraps the oplog file while it is open.
//!
//! **1. Stale entries after an interrupted flush.** hypercore 0.16 flushes a feed by writing the tree and bitfield, then a
//! new oplog header into the other header slot, then truncating the oplog
//! entries the header now covers. Killed between the last two writes, the
//! oplog holds a new header *and* the old entries. On open, 0.16 replays
//! those stale entries against a tree that already contains them, which
//! marks tree nodes blank ("Could not load node: N, store tree, blank") and
//! then writes the blanks over good nodes: the feed is corrupted. Found by
//! our kill -9 test (tests/faults.rs).
//!
//! Every oplog entry carries the header bit that was current when it was
//! written (as in the JavaScript hypercore, which ignores entries whose bit
//! does not match). Entries with the other bit are therefore stale, and so
//! is everything after a torn (bad checksum) entry. [`repair`] drops them
//! by truncating the file before hypercore reads it.
//!
//! **2. Pending entries overwritten after a restart.** When 0.16 opens a
//! feed whose oplog still holds entries, it replays them into memory but
//! forgets where they end, so the next append writes its entry over them at
//! the start of the entry area. Until the next flush, the replayed entries
//! exist only in memory; a crash in that window loses tree nodes for good.
//! [`OplogGuard`] shifts every write into the entry area past the entries
//! that were on disk at open, so nothing is overwritten; once hypercore
//! flushes (writes a header and truncates to the start of the entry area)
//! the shift is dropped. On the next open hypercore then finds old and new
//! entries one after the other and replays them in order, as it does for
//! any run of entries between flushes.
//!
//! **3. Entries the 0.16 decoder misreads.** `Entry::decode` tests the
//! tree-nodes flag where it means the upgrade and bitfield flags, so an
//! entry with nodes but without both an upgrade and a bitfield update (what
//! a replica writes for every verified block or upgrade) does not decode:
//! a replica with such entries pending cannot be opened ("Could not parse
//! changeset signature"). [`Feed::verify_and_apply`](crate::store::Feed)
//! therefore makes hypercore flush right after each such entry (with empty
//! proofs, which write empty entries that decode fine), and [`repair`]
//! truncates at the first misreadable entry a crash may have left in that
//! short window. Dropping it and what follows only forgets blocks or an
//! upgrade that are fetched again.
//!
//! All three read hypercore 0.16's on-disk layout: two 4 KiB header slots, then
//! entries; each record has an 8-byte leader
//! `crc32 (u32le) || len << 2 | partial << 1 | header_bit (u32le)` with the
//! CRC over the second word and the payload. A hypercore upgrade must
//! re-check both bugs (the kill -9 test does) before this module is dropped
//! or changed.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::Path;

use random_access_storage::{RandomAccess, RandomAccessError};

const HEADER_SIZE: usize = 4096;
const ENTRIES: usize = 2 * HEADER_SIZE;
const LEADER: usize = 8;

struct Leader {
    len: usize,
    header_bit: bool,
}

fn leader(buf: &[u8]) -> Option<Leader> {
    if buf.len() < LEADER {
        return None;
    }
    let crc = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let info = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let len = (info >> 2) as usize;
    if len == 0 || buf.len() < LEADER + len {
        return None;
    }
    if crc32fast::hash(&buf[4..LEADER + len]) != crc {
        return None;
    }
    Some(Leader {
        len,
        header_bit: info & 1 == 1,
    })
}

/// Where the valid part of an oplog ends, if something after it must go.
pub fn valid_len(oplog: &[u8]) -> Option<usize> {
    let h1 = oplog.get(..HEADER_SIZE).and_then(leader);
    let h2 = oplog.get(HEADER_SIZE..ENTRIES).and_then(leader);
    // The header bit entries are written with, per hypercore 0.16's
    // `get_current_header_bit` and the slot rule in `open`.
    let current = match (h1, h2) {
        (Some(a), Some(b)) => a.header_bit != b.header_bit,
        (Some(_), None) => false,
        (None, Some(_)) => true,
        (None, None) => return None, // not ours to judge: let hypercore report it
    };
    let mut at = ENTRIES;
    while at < oplog.len() {
        match leader(&oplog[at..]) {
            Some(l) if l.header_bit == current && decodes(oplog[at + LEADER]) => {
                at += LEADER + l.len
            }
            _ => return Some(at),
        }
    }
    None
}

/// Whether hypercore 0.16's `Entry::decode` reads an entry with these flags
/// (1 user data, 2 tree nodes, 4 tree upgrade, 8 bitfield) as written.
pub fn decodes(flags: u8) -> bool {
    let parts = flags & 0b1110;
    parts == 0 || parts == 0b1110
}

/// Whether the oplog in `dir` holds entries not yet flushed.
pub fn has_entries(dir: &Path) -> bool {
    std::fs::metadata(dir.join("oplog")).is_ok_and(|m| m.len() > ENTRIES as u64)
}

/// Truncates stale or torn entries from `dir/oplog`; returns the bytes dropped.
pub fn repair(dir: &Path) -> io::Result<u64> {
    let path = dir.join("oplog");
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    match valid_len(&bytes) {
        Some(keep) => {
            file.set_len(keep as u64)?;
            file.sync_all()?;
            Ok((bytes.len() - keep) as u64)
        }
        None => Ok(0),
    }
}

/// The oplog file of an open feed, with writes to the entry area shifted
/// past the entries hypercore replayed at open (see the module docs).
#[derive(Debug)]
pub struct OplogGuard<S> {
    inner: S,
    /// Bytes of entries on disk that hypercore does not know it must keep.
    shift: u64,
}

impl<S: RandomAccess + Send> OplogGuard<S> {
    /// Wraps an oplog storage; call after [`repair`].
    pub async fn new(mut inner: S) -> Result<Self, RandomAccessError> {
        let len = inner.len().await?;
        Ok(OplogGuard {
            shift: len.saturating_sub(ENTRIES as u64),
            inner,
        })
    }

    fn map(&self, offset: u64) -> u64 {
        if offset >= ENTRIES as u64 {
            offset + self.shift
        } else {
            offset
        }
    }
}

#[async_trait::async_trait]
impl<S: RandomAccess + Send> RandomAccess for OplogGuard<S> {
    async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), RandomAccessError> {
        let at = self.map(offset);
        self.inner.write(at, data).await
    }

    async fn read(&mut self, offset: u64, length: u64) -> Result<Vec<u8>, RandomAccessError> {
        // hypercore reads the oplog only when opening, before any write,
        // when the shift does not apply.
        self.inner.read(offset, length).await
    }

    async fn del(&mut self, offset: u64, length: u64) -> Result<(), RandomAccessError> {
        let at = self.map(offset);
        self.inner.del(at, length).await
    }

    async fn truncate(&mut self, length: u64) -> Result<(), RandomAccessError> {
        if length <= ENTRIES as u64 {
            // A flush: the new header covers every entry, ours included.
            self.shift = 0;
            return self.inner.truncate(length).await;
        }
        let at = self.map(length);
        self.inner.truncate(at).await
    }

    async fn len(&mut self) -> Result<u64, RandomAccessError> {
        self.inner.len().await
    }

    async fn is_empty(&mut self) -> Result<bool, RandomAccessError> {
        self.inner.is_empty().await
    }

    async fn sync_all(&mut self) -> Result<(), RandomAccessError> {
        self.inner.sync_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8], header_bit: bool) -> Vec<u8> {
        let info = ((payload.len() as u32) << 2) | header_bit as u32;
        let mut tail = info.to_le_bytes().to_vec();
        tail.extend_from_slice(payload);
        let mut out = crc32fast::hash(&tail).to_le_bytes().to_vec();
        out.extend_from_slice(&tail);
        out
    }

    fn oplog(h1: bool, h2: Option<bool>, entries: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = record(b"header one", h1);
        out.resize(HEADER_SIZE, 0);
        if let Some(b) = h2 {
            out.extend_from_slice(&record(b"header two", b));
        }
        out.resize(ENTRIES, 0);
        for (p, bit) in entries {
            out.extend_from_slice(&record(p, *bit));
        }
        out
    }

    #[test]
    fn keeps_entries_of_the_current_header() {
        // Only the first slot written: entries carry bit false.
        assert_eq!(
            valid_len(&oplog(true, None, &[(b"\x0ea", false), (b"\x00b", false)])),
            None
        );
        // Slots differ: second is current, entries carry bit true.
        assert_eq!(
            valid_len(&oplog(true, Some(false), &[(b"\x0ea", true)])),
            None
        );
        assert_eq!(valid_len(&oplog(false, Some(false), &[])), None);
    }

    #[test]
    fn drops_stale_entries_left_by_a_crash_between_header_and_truncate() {
        // Entries written under header bits [true, false] carry `true`;
        // the flush wrote slot one (bits now [false, false]) and died before
        // truncating: the entries are stale.
        let log = oplog(false, Some(false), &[(b"old1", true), (b"old2", true)]);
        assert_eq!(valid_len(&log), Some(ENTRIES));
    }

    #[test]
    fn drops_entries_hypercore_0_16_would_misread() {
        let nodes_and_bitfield = [0b1010u8, 1, 2, 3];
        let all = [0b1110u8, 1, 2, 3];
        let empty = [0u8];
        let log = oplog(
            true,
            None,
            &[(&all, false), (&empty, false), (&nodes_and_bitfield, false)],
        );
        assert_eq!(valid_len(&log), Some(ENTRIES + 2 * LEADER + 4 + 1));
        assert!(decodes(0) && decodes(0b1110) && decodes(0b1111));
        assert!(!decodes(0b0010) && !decodes(0b0110) && !decodes(0b1010) && !decodes(0b1000));
    }

    #[test]
    fn drops_a_torn_tail() {
        let mut log = oplog(
            true,
            None,
            &[(b"\x0eood", false), (b"\x0eorn entry", false)],
        );
        let n = log.len();
        log[n - 2] ^= 0xff;
        assert_eq!(valid_len(&log), Some(ENTRIES + LEADER + 4));
        log.truncate(n - 3); // cut short
        assert_eq!(valid_len(&log), Some(ENTRIES + LEADER + 4));
    }

    #[tokio::test]
    async fn the_guard_appends_after_entries_left_at_open_until_a_flush() {
        let mut log = oplog(true, None, &[(b"\x0eending", false)]);
        let disk_len = log.len() as u64;
        let mut mem = random_access_memory_like(log.clone());
        let mut guard = OplogGuard::new(&mut mem).await.unwrap();
        // hypercore thinks the entry area is empty and writes at its start.
        let entry = record(b"\x0eext", false);
        guard.write(ENTRIES as u64, &entry).await.unwrap();
        log.extend_from_slice(&entry);
        assert_eq!(guard.inner.bytes, log, "the pending entry was overwritten");
        assert_eq!(valid_len(&log), None);
        // A flush: header written, entries truncated; then writes are direct.
        guard.truncate(ENTRIES as u64).await.unwrap();
        guard.write(ENTRIES as u64, &entry).await.unwrap();
        assert_eq!(
            guard.inner.len().await.unwrap(),
            ENTRIES as u64 + entry.len() as u64
        );
        assert!(disk_len > ENTRIES as u64);
    }

    /// A byte vector with the RandomAccess trait, for the guard test.
    #[derive(Debug)]
    struct Bytes {
        bytes: Vec<u8>,
    }

    fn random_access_memory_like(bytes: Vec<u8>) -> Bytes {
        Bytes { bytes }
    }

    #[async_trait::async_trait]
    impl RandomAccess for &mut Bytes {
        async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), RandomAccessError> {
            let end = offset as usize + data.len();
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
        async fn read(&mut self, offset: u64, length: u64) -> Result<Vec<u8>, RandomAccessError> {
            Ok(self.bytes[offset as usize..(offset + length) as usize].to_vec())
        }
        async fn del(&mut self, _: u64, _: u64) -> Result<(), RandomAccessError> {
            Ok(())
        }
        async fn truncate(&mut self, length: u64) -> Result<(), RandomAccessError> {
            self.bytes.truncate(length as usize);
            Ok(())
        }
        async fn len(&mut self) -> Result<u64, RandomAccessError> {
            Ok(self.bytes.len() as u64)
        }
        async fn is_empty(&mut self) -> Result<bool, RandomAccessError> {
            Ok(self.bytes.is_empty())
        }
        async fn sync_all(&mut self) -> Result<(), RandomAccessError> {
            Ok(())
        }
    }

    #[test]
    fn repairs_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = oplog(false, Some(false), &[(b"old", true)]);
        std::fs::write(dir.path().join("oplog"), &log).unwrap();
        assert_eq!(repair(dir.path()).unwrap(), (log.len() - ENTRIES) as u64);
        assert_eq!(
            std::fs::metadata(dir.path().join("oplog")).unwrap().len(),
            ENTRIES as u64
        );
        assert_eq!(repair(dir.path()).unwrap(), 0);
    }
}
