//! `hypernar publish`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_publisher::{PublishOptions, PublishSummary, Publisher, SealSettings, Source};

use super::{hash_part_of, human_bytes, progress::Bar, read_key, DataDir};

/// Publish store paths from a Nix binary cache.
///
/// Each path's NAR is checked against its NarHash and NarSize, cut into
/// segments, compressed, encrypted under a key of its own and appended to
/// this publisher's data feed; its narinfo (with the upstream signatures)
/// goes to the index feed and its key to the public key feed. Publishing a
/// path again does nothing; a run that was killed is finished by the next.
///
/// Examples:
///   hypernar publish --key pub.key --from file:///srv/cache --all
///   hypernar publish --key pub.key --from https://cache.example.org --closure /nix/store/…-hello-2.12
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Publisher key file (from `hypernar keygen`)
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// Binary cache to read: file:///dir, http://… or https://…
    #[arg(long, value_name = "SOURCE")]
    from: String,
    /// Store paths to publish (/nix/store/<hash>-<name>, <hash>-<name> or <hash>)
    paths: Vec<String>,
    /// Also publish everything the named paths reference, recursively
    #[arg(long)]
    closure: bool,
    /// Publish every path of a file:// cache
    #[arg(long)]
    all: bool,
    /// Keep the paths' keys back; release them later with `hypernar release`
    #[arg(long)]
    no_release: bool,
    /// Paths prepared at once [default: number of CPUs]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Uncompressed segment size in bytes (4 KiB to 4 MiB)
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE, value_name = "BYTES")]
    segment_size: u32,
    /// zstd level for segments (1-19)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    zstd_level: i32,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.paths.is_empty() && !args.all {
        bail!("name store paths to publish, or pass --all to publish a whole file:// cache");
    }
    let roots = args
        .paths
        .iter()
        .map(|p| hash_part_of(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secret = read_key(&args.key)?;
    let dir = args.data.path()?;
    let source = Arc::new(Source::new(&args.from)?);
    let mut publisher = Publisher::open(&dir, secret)
        .await
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    let opts = PublishOptions {
        closure: args.closure,
        all: args.all,
        release: !args.no_release,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        seal: SealSettings {
            segment_size: args.segment_size,
            zstd_level: args.zstd_level,
        },
    };
    let bar = Arc::new(Bar::new());
    let summary = publisher.publish(source, roots, &opts, bar.clone()).await;
    bar.finish();
    let summary = summary?;
    println!("{}", summary_line(&summary, opts.release));
    for f in &summary.failed {
        println!("failed: {f}");
    }
    println!("publisher {}", publisher.identity());
    Ok(if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn summary_line(s: &PublishSummary, release: bool) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-6);
    format!(
        "published {} path{} ({} already published, {} failed){}: {} NAR in, {} stored, {:.1} MB/s",
        s.published,
        if s.published == 1 { "" } else { "s" },
        s.already,
        s.failed.len(),
        if release {
            ", keys released"
        } else {
            ", keys held back"
        },
        human_bytes(s.nar_bytes),
        human_bytes(s.stored_bytes),
        s.nar_bytes as f64 / secs / 1e6,
    )
}
