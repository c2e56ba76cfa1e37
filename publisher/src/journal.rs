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

const JOURNAL_VERSION: u8 = 1;
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
}

impl Pending {
    pub fn new(record: PathRecord, release: bool, spool: String) -> Self {
        Pending {
            version: JOURNAL_VERSION,
            record,
            release,
            spool,
        }
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
    let mut f = File::create(&tmp)?;
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
    let pending: Pending =
        postcard::from_bytes(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
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
