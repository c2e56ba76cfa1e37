//! The commit journal: what a publisher is in the middle of appending.
//!
//! Written (atomically: temp file, fsync, rename, fsync directory) before the
//! first data block of a path is appended, and removed after the path's
//! index record and key release are in their feeds. A publisher that finds
//! a journal on start finishes that commit first, from the spool the journal
//! names, so a kill at any instant leaves no block without its record.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hypernar_feed::format::record::PathRecord;
use serde::{Deserialize, Serialize};

const JOURNAL_VERSION: u8 = 2;
const MAX_JOURNAL_LEN: u64 = 2 << 20;

/// A commit in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub version: u8,
    /// The index record to append, with its final `first_block`.
    pub record: PathRecord,
    /// Release the key to the public key feed once the record is in.
    pub release: bool,
    /// File name of the spool, inside the staging directory.
    pub spool: String,
    /// The path's listing, in the spool after its segments and in the data
    /// feed right after them (version 2 on).
    pub listing: Option<PendingListing>,
}

/// Where a journaled path's listing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingListing {
    pub size: u64,
    pub block_count: u64,
}

/// A journal written by a build before listings (version 1).
#[derive(Deserialize)]
struct PendingV1 {
    version: u8,
    record: PathRecord,
    release: bool,
    spool: String,
}

impl Pending {
    pub fn new(
        record: PathRecord,
        release: bool,
        spool: String,
        listing: Option<PendingListing>,
    ) -> Self {
        Pending {
            version: JOURNAL_VERSION,
            record,
            release,
            spool,
            listing,
        }
    }

    /// Data blocks the commit appends: the segments, then the listing's.
    pub fn blocks(&self) -> u64 {
        self.record.block_count + self.listing.map_or(0, |l| l.block_count)
    }
}

/// Journal file location inside the staging directory.
pub fn journal_path(staging: &Path) -> PathBuf {
    staging.join("commit.journal")
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Writes the journal durably.
pub fn write(staging: &Path, pending: &Pending) -> io::Result<()> {
    let path = journal_path(staging);
    let tmp = staging.join("commit.journal.tmp");
    let bytes = postcard::to_stdvec(pending).map_err(|e| invalid(e.to_string()))?;
    let mut f = hypernar_feed::private::create_temp(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(staging)?.sync_all()
}

/// Reads the journal, if there is one.
pub fn read(staging: &Path) -> io::Result<Option<Pending>> {
    let path = journal_path(staging);
    let bytes = match fs::metadata(&path) {
        Ok(m) if m.len() > MAX_JOURNAL_LEN => {
            return Err(invalid(format!(
                "{} is {} bytes: not a journal",
                path.display(),
                m.len()
            )))
        }
        Ok(_) => fs::read(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |e: postcard::Error| invalid(format!("{}: {e}", path.display()));
    // A journal left by an earlier build is finished as it was written.
    if bytes.first() == Some(&1) {
        let v1: PendingV1 = postcard::from_bytes(&bytes).map_err(bad)?;
        return Ok(Some(Pending {
            version: v1.version,
            record: v1.record,
            release: v1.release,
            spool: v1.spool,
            listing: None,
        }));
    }
    let pending: Pending = postcard::from_bytes(&bytes).map_err(bad)?;
    if pending.version != JOURNAL_VERSION {
        return Err(invalid(format!(
            "{}: journal version {} is not {JOURNAL_VERSION}",
            path.display(),
            pending.version
        )));
    }
    Ok(Some(pending))
}

/// Removes the journal after its commit is complete.
pub fn clear(staging: &Path) -> io::Result<()> {
    match fs::remove_file(journal_path(staging)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => File::open(staging)?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernar_feed::format::narinfo::NarHash;
    use hypernar_feed::format::record::WrappedKey;
    use hypernar_feed::format::storepath::StorePath;

    fn record() -> PathRecord {
        PathRecord {
            store_path: StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a").unwrap(),
            nar_hash: NarHash([1; 32]),
            nar_size: 5000,
            references: vec![],
            deriver: None,
            ca: None,
            sigs: vec![],
            data_feed: 0,
            first_block: 1,
            block_count: 2,
            segment_size: 4096,
            key_check: [0; 16],
            wrapped_key: WrappedKey {
                nonce: [0; 12],
                sealed: vec![0; 48],
            },
        }
    }

    #[test]
    fn a_journal_round_trips_and_counts_its_listing_blocks() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let listing = PendingListing {
            size: 100,
            block_count: 1,
        };
        let p = Pending::new(record(), true, "x.spool".into(), Some(listing));
        write(dir.path(), &p).unwrap();
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!(back.listing, Some(listing));
        assert_eq!(back.blocks(), 3);
        clear(dir.path()).unwrap();
        assert!(read(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_journal_of_an_earlier_build_is_still_finished() {
        #[derive(Serialize)]
        struct V1 {
            version: u8,
            record: PathRecord,
            release: bool,
            spool: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let v1 = V1 {
            version: 1,
            record: record(),
            release: false,
            spool: "y.spool".into(),
        };
        fs::write(journal_path(dir.path()), postcard::to_stdvec(&v1).unwrap()).unwrap();
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!(back.record, record());
        assert_eq!(
            (back.listing, back.blocks(), back.spool.as_str()),
            (None, 2, "y.spool")
        );
        fs::write(journal_path(dir.path()), [9, 9, 9]).unwrap();
        assert!(read(dir.path()).is_err());
    }
}
