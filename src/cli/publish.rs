//! `hypernar publish`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use hypernar_feed::format::record::WebSeedList;
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_feed::io::FeedOpener;
use hypernar_feed::store::StoreError;
use hypernar_publisher::control::PublishJob;
use hypernar_publisher::{
    Origin, Progress, PublishError, PublishOptions, PublishSummary, Publisher, SealSettings,
};

use indicatif::HumanBytes;

use super::common::{hash_part_of, read_key, DataDir};
use super::control;
use super::progress::Bar;

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
///   hypernar publish --key pub.key --from local --sign-key ci.sec --closure ./result
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Publisher key file (from `hypernar keygen`)
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    pub(super) key: PathBuf,
    #[command(flatten)]
    pub(super) data: DataDir,
    /// Binary cache to read: file:///dir, http://… or https://…, or
    /// `local` for the local Nix store (narinfos from its own path info,
    /// NARs from `nix-store --dump`)
    #[arg(long, value_name = "SOURCE")]
    from: String,
    /// With --from local: also sign each path with this Nix secret key
    /// (as `nix-store --generate-binary-cache-key` writes it), so that
    /// machines whose Nix trusts its public key accept it
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
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
    /// Also keep a static copy of the feeds in DIR for any HTTP server or
    /// CDN to host: fetchers read blocks from it with range requests when
    /// peers are absent or slow (`serve --web-seed URL`). Audience key
    /// feeds are never copied
    #[arg(long, value_name = "DIR")]
    web_seed: Option<PathBuf>,
    /// Where that copy is hosted (repeatable, up to 8): recorded in the
    /// index, so every fetcher that trusts this publisher and reaches a
    /// peer uses it without configuration. Kept until changed; `none`
    /// withdraws it
    #[arg(long, value_name = "URL")]
    web_seed_url: Vec<String>,
    /// Cut the index's newest paths into a sorted run once this many are
    /// in none: fetchers look a path up in runs with a few block reads
    /// instead of replicating the whole index, and replicate only the
    /// newest paths (at most about this many) eagerly (docs/protocol.md,
    /// "Runs")
    #[arg(long, default_value_t = hypernar_publisher::runs::DEFAULT_RUN_TAIL, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    run_tail: u64,
    /// Start the next data feed (`data/1`, `data/2`, ...) once the current
    /// one would hold more than this many blocks: peers track at most 2^27
    /// blocks of a feed. A path is never split between feeds
    #[arg(long, default_value_t = hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS, value_name = "N",
          value_parser = clap::value_parser!(u64).range(2..))]
    data_feed_blocks: u64,
}

/// Where a publish's lines go: stdout for what it produces, stderr for
/// errors and per-path failures.
#[derive(Debug)]
pub enum Line {
    Out(String),
    Err(String),
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args, verbose: u8) -> anyhow::Result<ExitCode> {
    let job = args.to_job(verbose)?;
    let secret = read_key(&job.key_file)?;
    let dir = &job.data_dir;
    match Publisher::open(dir, secret).await {
        Ok(publisher) => {
            let bar = Arc::new(Bar::new());
            let (lines, code) = execute(publisher, &job, bar.clone()).await;
            bar.finish();
            for line in lines? {
                match line {
                    Line::Out(l) => println!("{l}"),
                    Line::Err(l) => eprintln!("{l}"),
                }
            }
            Ok(ExitCode::from(code))
        }
        // A running `hypernar serve` holds the directory: publish through it,
        // so new paths reach its peers at once.
        Err(PublishError::Store(StoreError::Locked(_))) if control::socket(dir).exists() => {
            control::client::via_serve(hypernar_publisher::control::Job::Publish(job)).await
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}

impl Args {
    /// The job these arguments describe, with absolute paths, so a serve
    /// process whose working directory is not ours can run it.
    pub fn to_job(&self, verbose: u8) -> anyhow::Result<PublishJob> {
        let abs = |p: &std::path::Path| std::path::absolute(p);
        let from =
            if self.from == "local" || self.from.starts_with('/') || self.from.contains("://") {
                self.from.clone()
            } else {
                abs(std::path::Path::new(&self.from))?
                    .to_string_lossy()
                    .into_owned()
            };
        Ok(PublishJob {
            key_file: abs(&self.key)?,
            data_dir: abs(&self.data.path()?)?,
            from,
            sign_key: self.sign_key.as_deref().map(abs).transpose()?,
            paths: self.paths.clone(),
            closure: self.closure,
            all: self.all,
            release: !self.no_release,
            jobs: self.jobs.map(|j| j.min(u32::MAX as usize) as u32),
            segment_size: self.segment_size,
            zstd_level: self.zstd_level,
            verbose,
            web_seed: self.web_seed.as_deref().map(abs).transpose()?,
            web_seed_urls: self.web_seed_url.clone(),
            run_tail: self.run_tail,
            data_feed_blocks: self.data_feed_blocks,
        })
    }
}

/// Runs a publish job with an open publisher; returns the lines to print
/// and the exit code.
pub async fn execute<O: FeedOpener>(
    mut publisher: Publisher<O>,
    job: &PublishJob,
    progress: Arc<dyn Progress>,
) -> (anyhow::Result<Vec<Line>>, u8) {
    let result = async {
        if job.paths.is_empty() && !job.all {
            bail!("name store paths to publish, or pass --all to publish a whole file:// cache");
        }
        let roots = job
            .paths
            .iter()
            .map(|p| hash_part_of(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut source = Origin::new(&job.from)?;
        if let Some(file) = &job.sign_key {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the Nix secret key {}", file.display()))?;
            let key: hypernar_feed::format::nixkey::NixSecretKey = text
                .parse()
                .with_context(|| format!("{} is no Nix secret key", file.display()))?;
            source = source.signed_by(key)?;
        }
        let source = Arc::new(source);
        let opts = PublishOptions {
            closure: job.closure,
            all: job.all,
            release: job.release,
            jobs: job.jobs.map_or_else(
                || std::thread::available_parallelism().map_or(2, |n| n.get()),
                |j| j as usize,
            ),
            seal: SealSettings {
                segment_size: job.segment_size,
                zstd_level: job.zstd_level,
            },
            run_tail: job.run_tail,
            data_feed_blocks: job.data_feed_blocks,
            trusted_keys: Vec::new(),
            most_referenced_first: false,
        };
        // Checked before the (maybe long) publish, written after it.
        let web_seed_urls = web_seed_urls(&job.web_seed_urls)?;
        let summary = publisher.publish(source, roots, &opts, progress).await?;
        let mut recorded = None;
        if let Some(urls) = web_seed_urls {
            if publisher.record_web_seed_urls(urls).await? {
                recorded = Some(publisher.web_seed_urls().to_vec());
            }
        }
        let mut lines: Vec<Line> = summary
            .failed
            .iter()
            .map(|f| Line::Err(format!("failed: {f}")))
            .collect();
        lines.push(Line::Out(summary_line(&summary, opts.release)));
        if let Some(root) = &job.web_seed {
            let lengths = publisher
                .sync_web_seed(root)
                .await
                .with_context(|| format!("updating the web seed in {}", root.display()))?;
            lines.push(Line::Out(format!(
                "web seed {} up to date: {} feeds, {} blocks",
                root.display(),
                lengths.len(),
                lengths.iter().sum::<u64>()
            )));
        }
        match recorded {
            Some(urls) if urls.is_empty() => {
                lines.push(Line::Out("web seed withdrawn from the index".into()))
            }
            Some(urls) => lines.push(Line::Out(format!(
                "web seed recorded in the index: {}",
                urls.join(" ")
            ))),
            None => {}
        }
        lines.push(Line::Out(format!("publisher {}", publisher.identity())));
        Ok((lines, summary.failed.is_empty()))
    }
    .await;
    match result {
        Ok((lines, true)) => (Ok(lines), 0),
        Ok((lines, false)) => (Ok(lines), 1),
        Err(e) => (Err(e), 1),
    }
}

/// The web-seed URLs to record (`Some(vec![])` withdraws), checked.
fn web_seed_urls(given: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    if given.is_empty() {
        return Ok(None);
    }
    if given.iter().any(|u| u == "none") {
        if given.len() > 1 {
            bail!("--web-seed-url none withdraws the web seed: give it alone");
        }
        return Ok(Some(vec![]));
    }
    let list = WebSeedList {
        urls: given
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
    };
    list.check()
        .map_err(|why| anyhow::anyhow!("--web-seed-url: {why}"))?;
    Ok(Some(list.urls))
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
        HumanBytes(s.nar_bytes),
        HumanBytes(s.stored_bytes),
        s.nar_bytes as f64 / secs / 1e6,
    )
}
