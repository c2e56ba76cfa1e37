//! `hypernar cat-nar`.

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::{reader, FeedStore};

use super::common::{read_key, DataDir};

/// Write the NAR of a published path to stdout.
///
/// The path is read from the feeds in the data directory alone, found by
/// lookup (one page of each run, then its record and key: no index is read
/// whole): each block is authenticated and decrypted with the path's
/// released key, and the whole NAR is checked against its NarHash. Exits non-zero (after writing
/// what was verified) if anything does not check out.
///
/// Example:  hypernar cat-nar --data DIR /nix/store/…-hello | nix-store --restore ./hello
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Store path to read (/nix/store/<hash>-<name>)
    store_path: String,
    /// Publisher key file: read paths whose keys are not released yet
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = StorePath::parse(args.store_path.trim_end_matches('/'))
        .with_context(|| format!("{:?} is not a store path", args.store_path))?;
    let wrap = match &args.key {
        Some(k) => Some(read_key(k)?.wrap_key()),
        None => None,
    };
    let dir = args.data.path()?;
    let store = FeedStore::open(&dir)?;
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
    reader::cat(&store, &path, wrap.as_ref(), out).await?;
    Ok(ExitCode::SUCCESS)
}
