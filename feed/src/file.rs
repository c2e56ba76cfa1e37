//! A hypercore storage file with plain positioned reads and writes.
//!
//! hypercore's `random-access-disk` 3 (tokio) sends every read and write
//! through tokio's blocking thread pool and fsyncs after every write. A
//! hypercore write of one block is several small writes (data, tree nodes,
//! bitfield, oplog), so that cost ~3.7 ms of CPU per block when fetching
//! (docs/benchmarks.md). This does the same with `pread`/`pwrite` on the
//! calling thread (page-cache I/O, microseconds) and fsyncs only where the
//! caller asks: feeds we write (the publisher's, whose durability matters)
//! keep an fsync per write; replicas, which are verified copies that can be
//! fetched again, do not.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use random_access_storage::{RandomAccess, RandomAccessError};

/// One storage file of a hypercore.
#[derive(Debug)]
pub struct PlainFile {
    file: File,
    length: u64,
    sync: bool,
}

impl PlainFile {
    /// Opens (creating) `path`; with `sync`, every change is fsynced.
    pub fn open(path: &Path, sync: bool) -> io::Result<Self> {
        let file = crate::private::open_rw(path)?;
        let length = file.metadata()?.len();
        Ok(PlainFile { file, length, sync })
    }

    fn synced(&self) -> Result<(), RandomAccessError> {
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RandomAccess for PlainFile {
    async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), RandomAccessError> {
        self.file.write_all_at(data, offset)?;
        self.length = self.length.max(offset + data.len() as u64);
        self.synced()
    }

    async fn read(&mut self, offset: u64, length: u64) -> Result<Vec<u8>, RandomAccessError> {
        if offset + length > self.length {
            return Err(RandomAccessError::OutOfBounds {
                offset,
                end: Some(offset + length),
                length: self.length,
            });
        }
        let mut buf = vec![0u8; length as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    async fn del(&mut self, offset: u64, length: u64) -> Result<(), RandomAccessError> {
        if offset > self.length {
            return Err(RandomAccessError::OutOfBounds {
                offset,
                end: None,
                length: self.length,
            });
        }
        if length == 0 {
            return Ok(());
        }
        if offset.saturating_add(length) >= self.length {
            return self.truncate(offset).await;
        }
        // Give the space back (the size stays); a file system that cannot
        // punch holes gets zeros, written a bounded chunk at a time.
        use rustix::fs::{fallocate, FallocateFlags};
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if fallocate(&self.file, punch, offset, length).is_err() {
            const CHUNK: u64 = 1 << 20;
            let zeros = vec![0u8; CHUNK.min(length) as usize];
            let mut at = offset;
            let end = offset + length;
            while at < end {
                let n = CHUNK.min(end - at) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        self.synced()
    }

    async fn truncate(&mut self, length: u64) -> Result<(), RandomAccessError> {
        self.file.set_len(length)?;
        self.length = length;
        self.synced()
    }

    async fn len(&mut self) -> Result<u64, RandomAccessError> {
        Ok(self.length)
    }

    async fn is_empty(&mut self) -> Result<bool, RandomAccessError> {
        Ok(self.length == 0)
    }

    async fn sync_all(&mut self) -> Result<(), RandomAccessError> {
        self.file.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_random_access_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = PlainFile::open(&dir.path().join("x"), false).unwrap();
        assert!(f.is_empty().await.unwrap());
        f.write(10, b"hello").await.unwrap();
        assert_eq!(f.len().await.unwrap(), 15);
        assert_eq!(f.read(10, 5).await.unwrap(), b"hello");
        assert_eq!(f.read(0, 2).await.unwrap(), [0, 0]);
        assert!(f.read(12, 5).await.is_err());
        f.del(11, 2).await.unwrap();
        assert_eq!(f.read(10, 5).await.unwrap(), b"h\0\0lo");
        f.del(13, 100).await.unwrap();
        assert_eq!(f.len().await.unwrap(), 13);
        f.truncate(0).await.unwrap();
        assert!(f.is_empty().await.unwrap());
        let mut again = PlainFile::open(&dir.path().join("x"), true).unwrap();
        assert_eq!(again.len().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn deleting_a_range_gives_its_space_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut f = PlainFile::open(&path, false).unwrap();
        f.write(0, &vec![7u8; 8 << 20]).await.unwrap();
        f.file.sync_all().unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks() * 512;
        f.del(1 << 20, 6 << 20).await.unwrap();
        f.file.sync_all().unwrap();
        let after = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert_eq!(f.len().await.unwrap(), 8 << 20, "the size stays");
        assert_eq!(f.read((1 << 20) - 1, 2).await.unwrap(), [7, 0]);
        assert_eq!(f.read((7 << 20) - 1, 2).await.unwrap(), [0, 7]);
        // tmpfs, ext4, xfs and btrfs punch holes; the space comes back.
        assert!(
            after + (5 << 20) <= before,
            "{before} bytes on disk before, {after} after"
        );
    }
}
