//! Preparing one path: read its NAR from the source, check it, cut, compress
//! and seal it into a spool file of ready blocks, all before anything
//! touches a feed. A spool is a sequence of `u32le(len) || block`: the
//! NAR's segments, then its listing's (see [`hypernar_feed::format::listing`]),
//! computed from the same bytes as they pass.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use hypernar_feed::format::listing::{NarScanner, MAX_LISTING_LEN};
use hypernar_feed::format::narinfo::{NarHash, NarHasher, NarInfo};
use hypernar_feed::format::segment::{Layout, PathKey, Sealer, SegmentError};
use hypernar_feed::format::storepath::StorePath;
use tracing::warn;

use crate::origin::{Origin, OriginError};

/// Why a path could not be prepared. Each names the path.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{path}: {source}")]
    Origin {
        path: StorePath,
        #[source]
        source: OriginError,
    },
    #[error("{path}: the {compression} NAR archive is corrupt or truncated: {source}")]
    Archive {
        path: StorePath,
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: NAR is {got} bytes, narinfo says NarSize {expected}")]
    NarSize {
        path: StorePath,
        expected: u64,
        got: String,
    },
    #[error("{path}: NAR hash mismatch: narinfo says {expected}, the NAR hashes to {got}")]
    NarHash {
        path: StorePath,
        expected: NarHash,
        got: NarHash,
    },
    #[error("{path}: {source}")]
    Segment {
        path: StorePath,
        #[source]
        source: SegmentError,
    },
    #[error("{path}: writing spool {spool}: {source}")]
    Spool {
        path: StorePath,
        spool: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How to cut and compress.
#[derive(Debug, Clone, Copy)]
pub struct SealSettings {
    pub segment_size: u32,
    pub zstd_level: i32,
}

/// A path ready to commit.
#[derive(Debug)]
pub struct Prepared {
    pub info: NarInfo,
    pub key: PathKey,
    pub spool: PathBuf,
    pub block_count: u64,
    pub segment_size: u32,
    /// Bytes of all blocks.
    pub stored_bytes: u64,
    /// The listing's blocks, after the NAR's in the spool; `None` when the
    /// NAR could not be listed (see [`prepare`]).
    pub listing: Option<PreparedListing>,
}

/// A listing sealed into the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedListing {
    /// Bytes of the encoded listing.
    pub size: u64,
    pub block_count: u64,
}

/// Spool file name of a path in the staging directory.
pub fn spool_path(staging: &Path, path: &StorePath) -> PathBuf {
    staging.join(format!("{}.spool", path.hash_part()))
}

/// Reads, verifies and seals the NAR of `info` into a spool file, then its
/// listing. `progress` is called with NAR bytes as they are read.
///
/// A NAR that verifies against its narinfo but cannot be listed (it breaks
/// the NAR grammar, or its listing is over the limits) is still published,
/// without a listing: Nix only needs the bytes it signed. The store view
/// then cannot show it.
pub fn prepare(
    source: &Origin,
    info: NarInfo,
    settings: SealSettings,
    staging: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Prepared, PrepareError> {
    let spool = spool_path(staging, &info.store_path);
    let result = prepare_inner(source, &info, settings, &spool, progress);
    match result {
        Ok(Spooled {
            key,
            block_count,
            stored,
            listing,
        }) => Ok(Prepared {
            info,
            key,
            spool,
            block_count,
            segment_size: settings.segment_size,
            stored_bytes: stored,
            listing,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&spool);
            Err(e)
        }
    }
}

struct Spooled {
    key: PathKey,
    block_count: u64,
    stored: u64,
    listing: Option<PreparedListing>,
}

fn prepare_inner(
    source: &Origin,
    info: &NarInfo,
    settings: SealSettings,
    spool: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Spooled, PrepareError> {
    let path = &info.store_path;
    let src_err = |source| PrepareError::Origin {
        path: path.clone(),
        source,
    };
    let archive_err = |source| PrepareError::Archive {
        path: path.clone(),
        compression: info.compression.as_str(),
        source,
    };
    let seg_err = |source| PrepareError::Segment {
        path: path.clone(),
        source,
    };
    let spool_err = |source| PrepareError::Spool {
        path: path.clone(),
        spool: spool.to_owned(),
        source,
    };

    let file = source.nar_file(info).map_err(src_err)?;
    let mut nar = info.compression.decoder(file).map_err(archive_err)?;
    let layout =
        Layout::new(path.clone(), info.nar_size, settings.segment_size).map_err(seg_err)?;
    let key = PathKey::generate();
    let mut sealer = Sealer::new(layout.clone(), &key, settings.zstd_level).map_err(seg_err)?;
    let mut out = BufWriter::with_capacity(
        1 << 20,
        hypernar_feed::private::create_temp(spool).map_err(spool_err)?,
    );
    let mut hasher = NarHasher::new();
    let mut buf = vec![0u8; settings.segment_size as usize];
    let mut stored = 0u64;
    let mut read_total = 0u64;
    let mut scanner = NarScanner::new();

    for index in 0..layout.count() {
        let len = layout.len(index).map_err(seg_err)?;
        let got = read_full(&mut nar, &mut buf[..len]).map_err(archive_err)?;
        read_total += got as u64;
        if got < len {
            return Err(PrepareError::NarSize {
                path: path.clone(),
                expected: info.nar_size,
                got: read_total.to_string(),
            });
        }
        hasher.update(&buf[..len]);
        // The first error is kept and reported below; the bytes still count.
        let _ = scanner.feed(&buf[..len]);
        let block = sealer.seal(index, &buf[..len]).map_err(seg_err)?;
        out.write_all(&(block.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&block))
            .map_err(spool_err)?;
        stored += block.len() as u64;
        progress(len as u64);
    }
    // The NAR must end exactly at NarSize.
    let mut probe = [0u8; 1];
    if read_full(&mut nar, &mut probe).map_err(archive_err)? != 0 {
        return Err(PrepareError::NarSize {
            path: path.clone(),
            expected: info.nar_size,
            got: format!("more than {}", info.nar_size),
        });
    }
    let got = hasher.finish();
    // Test-only: publish as a hostile publisher would, a NAR that is not
    // the one its (signed) narinfo names.
    let lie = cfg!(feature = "fault-injection")
        && std::env::var_os("HYPERNAR_FAULT_PUBLISH_WRONG_NAR").is_some();
    if got != info.nar_hash && !lie {
        return Err(PrepareError::NarHash {
            path: path.clone(),
            expected: info.nar_hash,
            got,
        });
    }
    // Test-only: publish as a build before listings did.
    let no_listings = cfg!(feature = "fault-injection")
        && std::env::var_os("HYPERNAR_FAULT_NO_LISTINGS").is_some();
    let listing = match scanner.finish().map(|l| l.encode()) {
        _ if no_listings => None,
        Ok(bytes) if bytes.len() as u64 <= MAX_LISTING_LEN => Some(bytes),
        Ok(bytes) => {
            warn!(%path, "its listing is {} bytes, over the 64 MiB limit; published without a listing (the store view cannot show it)", bytes.len());
            None
        }
        Err(e) => {
            warn!(%path, "{e}; published without a listing (the store view cannot show it)");
            None
        }
    };
    let listing = match listing {
        Some(bytes) => {
            let layout = Layout::new(path.clone(), bytes.len() as u64, settings.segment_size)
                .map_err(seg_err)?;
            let mut sealer = Sealer::new(layout.clone(), &key.listing(), settings.zstd_level)
                .map_err(seg_err)?;
            let mut at = 0;
            for index in 0..layout.count() {
                let len = layout.len(index).map_err(seg_err)?;
                let block = sealer.seal(index, &bytes[at..at + len]).map_err(seg_err)?;
                at += len;
                out.write_all(&(block.len() as u32).to_le_bytes())
                    .and_then(|()| out.write_all(&block))
                    .map_err(spool_err)?;
                stored += block.len() as u64;
            }
            Some(PreparedListing {
                size: bytes.len() as u64,
                block_count: layout.count(),
            })
        }
        None => None,
    };
    let file = out.into_inner().map_err(|e| spool_err(e.into_error()))?;
    file.sync_all().map_err(spool_err)?;
    Ok(Spooled {
        key,
        block_count: layout.count(),
        stored,
        listing,
    })
}

/// Reads until `buf` is full or the stream ends; returns bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads blocks back from a spool, skipping the first `skip`.
#[derive(Debug)]
pub struct SpoolReader {
    file: BufReader<File>,
    max_block: usize,
}

impl SpoolReader {
    /// Opens a spool whose blocks are at most `max_block` bytes.
    pub fn open(path: &Path, max_block: usize) -> io::Result<Self> {
        Ok(SpoolReader {
            file: BufReader::with_capacity(1 << 20, File::open(path)?),
            max_block,
        })
    }

    /// The next block, or `None` at the end.
    pub fn next_block(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max_block {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "spool block of {len} bytes is over the {} limit",
                    self.max_block
                ),
            ));
        }
        let mut block = vec![0u8; len];
        self.file.read_exact(&mut block)?;
        Ok(Some(block))
    }
}
