//! `hypernar publish`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_feed::io::FeedOpener;
use hypernar_feed::store::StoreError;
use hypernar_publisher::{
    Progress, PublishError, PublishOptions, PublishSummary, Publisher, SealSettings, Source,
};

use super::{control, hash_part_of, human_bytes, progress::Bar, read_key, DataDir};

/// Publish store paths from a Nix binary cache.
///
/// Each path's NAR is checked against its NarHash and NarSize, cut into
/// segments, compressed, encrypted under a key of its own and appended to
/// this publisher's data feed; its narinfo (with the upstream signatures)
/// goes to the index feed and its key to the public key feed. Publishing a
/// path again does nothing; a run that was killed is finished by the next.
/// While a `hypernar serve` runs on the same data directory, the publish is
/// done by that serve process, and new paths reach its peers at once.
///
/// Examples:
///   hypernar publish --key pub.key --from file:///srv/cache --all
///   hypernar publish --key pub.key --from https://cache.example.org --closure /nix/store/…-hello-2.12
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Publisher key file (from `hypernar keygen`)
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    pub(super) key: PathBuf,
    #[command(flatten)]
    pub(super) data: DataDir,
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
    let secret = read_key(&args.key)?;
    let dir = args.data.path()?;
    match Publisher::open(&dir, secret.clone()).await {
        Ok(publisher) => {
            let bar = Arc::new(Bar::new());
            let (lines, code) = execute(publisher, &args, bar.clone()).await;
            bar.finish();
            for line in lines? {
                println!("{line}");
            }
            Ok(ExitCode::from(code))
        }
        // A running `hypernar serve` holds the directory: publish through it,
        // so new paths reach its peers at once.
        Err(PublishError::Store(StoreError::Locked(_))) if control::socket(&dir).exists() => {
            control::publish_via_serve(&dir, &args.to_argv()?).await
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}

impl Args {
    /// The arguments as a `hypernar publish` command line with absolute
    /// paths, for a serve process whose working directory is not ours.
    pub fn to_argv(&self) -> anyhow::Result<Vec<String>> {
        let abs = |p: &std::path::Path| -> anyhow::Result<String> {
            Ok(std::path::absolute(p)?.to_string_lossy().into_owned())
        };
        let mut v = vec![
            "hypernar".into(),
            "publish".into(),
            "--key".into(),
            abs(&self.key)?,
        ];
        v.extend(["--data".into(), abs(&self.data.path()?)?]);
        let from = if self.from.starts_with('/') || self.from.contains("://") {
            self.from.clone()
        } else {
            abs(std::path::Path::new(&self.from))?
        };
        v.extend(["--from".into(), from]);
        v.extend(self.paths.iter().cloned());
        for (on, flag) in [
            (self.closure, "--closure"),
            (self.all, "--all"),
            (self.no_release, "--no-release"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        if let Some(j) = self.jobs {
            v.extend(["--jobs".into(), j.to_string()]);
        }
        v.extend(["--segment-size".into(), self.segment_size.to_string()]);
        v.extend(["--zstd-level".into(), self.zstd_level.to_string()]);
        Ok(v)
    }
}

/// Runs a publish with an open publisher; returns the lines to print and
/// the exit code.
pub async fn execute<O: FeedOpener>(
    mut publisher: Publisher<O>,
    args: &Args,
    progress: Arc<dyn Progress>,
) -> (anyhow::Result<Vec<String>>, u8) {
    let result = async {
        if args.paths.is_empty() && !args.all {
            bail!("name store paths to publish, or pass --all to publish a whole file:// cache");
        }
        let roots = args
            .paths
            .iter()
            .map(|p| hash_part_of(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let source = Arc::new(Source::new(&args.from)?);
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
        let summary = publisher.publish(source, roots, &opts, progress).await?;
        let mut lines = vec![summary_line(&summary, opts.release)];
        lines.extend(summary.failed.iter().map(|f| format!("failed: {f}")));
        lines.push(format!("publisher {}", publisher.identity()));
        Ok((lines, summary.failed.is_empty()))
    }
    .await;
    match result {
        Ok((lines, true)) => (Ok(lines), 0),
        Ok((lines, false)) => (Ok(lines), 1),
        Err(e) => (Err(e), 1),
    }
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
