//! `hypernar follow`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hypernar_feed::format::generation::Generation;
use hypernar_feed::format::nixkey::{NixPublicKey, CACHE_NIXOS_ORG_1};
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_publisher::follow::{self, Channel, ChannelClient};
use hypernar_publisher::{Origin, PublishOptions, Publisher, SealSettings};
use tracing::{info, warn};

use super::common::{read_key, DataDir};
use super::progress::Bar;

/// Follow channels: publish each new release's closure as it appears.
///
/// A channel is a URL that redirects to a release directory holding
/// `store-paths.xz`, as https://channels.nixos.org/<name> does. For each new
/// release the follower reads the paths it lists, walks their closure
/// through the upstream's narinfo References, checks every narinfo's Sig:
/// against the trusted keys before fetching anything of it, and publishes
/// the paths not yet published, the most referenced first, through the
/// same journaled publisher as `publish` (a killed run is finished by the
/// next; nothing is published twice). Once only paths the upstream does
/// not have remain, the release is committed (DATA/channels/<name>.json);
/// a release older than the last committed is refused. It vouches for
/// nothing the trusted keys did not sign.
///
/// Examples:
///   hypernar follow --key pub.key --channel https://channels.nixos.org/nixos-unstable
///   hypernar follow --key pub.key --once --channel test=http://localhost/channel \
///       --upstream http://localhost/cache --trusted-public-key test-1:…
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Publisher key file (from `hypernar keygen`)
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// A channel to follow, NAME=URL or URL (named after its last path
    /// segment); repeatable
    #[arg(long = "channel", value_name = "[NAME=]URL", required = true)]
    channels: Vec<Channel>,
    /// The binary cache the closure is read from
    #[arg(long, default_value = "https://cache.nixos.org", value_name = "URL")]
    upstream: String,
    /// A key whose signature a narinfo must carry to be published, as in
    /// nix.conf's trusted-public-keys (repeatable) [default: cache.nixos.org-1]
    #[arg(long = "trusted-public-key", value_name = "NAME:BASE64")]
    trusted_keys: Vec<NixPublicKey>,
    /// Take the release a channel points at even if it is older than the
    /// one last committed (after a commit of a release that should not
    /// have been; docs/threat-model.md)
    #[arg(long)]
    allow_older: bool,
    /// Look at each channel once and exit (default: keep following)
    #[arg(long)]
    once: bool,
    /// Seconds between looks at the channels when following
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    interval: u64,
    /// NARs downloaded and sealed at once [default: number of CPUs]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// At most this many requests a second to the upstream (narinfos and
    /// NARs together) [default: no limit]
    #[arg(long, value_name = "N")]
    max_upstream_requests: Option<f64>,
    /// At most this many bytes a second from the upstream, e.g. 10M
    /// [default: no limit]
    #[arg(long, value_name = "SIZE", value_parser = parse_rate)]
    max_upstream_rate: Option<u64>,
    /// Keep the paths' keys back; release them later with `hypernar release`
    #[arg(long)]
    no_release: bool,
    /// Cut the index's newest records into a sorted run once this many
    /// are past the last one, as `publish --run-tail` (docs/protocol.md,
    /// "Runs")
    #[arg(long, default_value_t = hypernar_publisher::runs::DEFAULT_RUN_TAIL, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    run_tail: u64,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let secret = read_key(&args.key)?;
    let dir = args.data.path()?;
    let keys = if args.trusted_keys.is_empty() {
        vec![CACHE_NIXOS_ORG_1.parse().expect("the built-in key parses")]
    } else {
        args.trusted_keys.clone()
    };
    let mut publisher = Publisher::open(&dir, secret)
        .await
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    let client = ChannelClient::new().context("building the HTTP client")?;
    if args
        .max_upstream_requests
        .is_some_and(|r| !(0.01..=1e6).contains(&r))
    {
        anyhow::bail!(
            "--max-upstream-requests: give a number of requests a second from 0.01 to 1000000"
        );
    }
    let limits =
        hypernar_publisher::limit::Limits::new(args.max_upstream_requests, args.max_upstream_rate);
    let upstream = Arc::new(Origin::new(&args.upstream)?.with_limits(limits));
    let opts = PublishOptions {
        closure: true,
        all: false,
        release: !args.no_release,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        seal: SealSettings {
            segment_size: DEFAULT_SEGMENT_SIZE,
            zstd_level: 3,
        },
        run_tail: args.run_tail,
        data_feed_blocks: hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS,
        trusted_keys: keys,
        most_referenced_first: true,
    };
    let mut failed = false;
    loop {
        for channel in &args.channels {
            let looked = look(
                &mut publisher,
                &client,
                &upstream,
                &opts,
                channel,
                args.allow_older,
            );
            match looked.await {
                Ok(Some(line)) => println!("{line}"),
                Ok(None) => {}
                Err(e) => {
                    failed = true;
                    warn!(channel = %channel.name, "{e:#}");
                    if args.once {
                        eprintln!("error: channel {}: {e:#}", channel.name);
                    }
                }
            }
        }
        if args.once {
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        failed = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One look at `channel`: its release ingested if new. Returns the line
/// to print, if something was done; what was refused or missing goes to
/// stderr as it is known.
#[allow(clippy::print_stderr)]
async fn look(
    publisher: &mut Publisher,
    client: &ChannelClient,
    upstream: &Arc<Origin>,
    opts: &PublishOptions,
    channel: &Channel,
    allow_older: bool,
) -> anyhow::Result<Option<String>> {
    let mut release = client.resolve(channel).await?;
    let last = publisher.generations().get(&channel.name).cloned();
    let should = |release: &hypernar_publisher::channel::Release| match follow::should_ingest(
        &channel.name,
        last.as_ref(),
        release,
    ) {
        Err(follow::FollowError::Older { .. }) if allow_older => {
            warn!(channel = %channel.name, release = %release.name, "older than the release last committed; taken (--allow-older)");
            Ok(true)
        }
        r => r,
    };
    if !should(&release)? {
        info!(channel = %channel.name, release = %release.name, "no new release");
        return Ok(Some(format!(
            "channel {}: {} is committed already",
            channel.name, release.name
        )));
    }
    let (roots, git_revision) = client.roots(&mut release).await?;
    // The time may order it when its name does not.
    should(&release)?;
    info!(channel = %channel.name, release = %release.name, roots = roots.len(), "ingesting a release");
    let hashes: Vec<String> = roots.iter().map(|p| p.hash_part().to_owned()).collect();
    let bar = Arc::new(Bar::new());
    let summary = publisher
        .publish(upstream.clone(), hashes, opts, bar.clone())
        .await;
    bar.finish();
    let summary = summary?;
    for m in &summary.missing {
        eprintln!("missing upstream: {m}");
    }
    for r in &summary.refused {
        eprintln!("refused: {r}");
    }
    let others = summary.failed.len() - summary.missing.len() - summary.refused.len();
    for f in summary
        .failed
        .iter()
        .filter(|f| !summary.missing.contains(f) && !summary.refused.contains(f))
    {
        eprintln!("failed: {f}");
    }
    if !summary.refused.is_empty() || others > 0 {
        anyhow::bail!(
            "release {} not committed: {} narinfos not signed by a trusted key, {} other failures; \
             {} paths published so far (run again to go on)",
            release.name,
            summary.refused.len(),
            others,
            summary.published
        );
    }
    let generation = Generation {
        channel: channel.name.clone(),
        release: release.name.clone(),
        url: release.url.clone(),
        revision_count: release.revision_count,
        modified: release.modified,
        git_revision,
        committed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        roots: roots.len() as u64,
        closure: 0,
        missing: summary.missing.len() as u64,
        table: hypernar_feed::format::run::RunRef {
            first_block: 0,
            bits: 0,
            entries: 0,
            from: 0,
            to: 0,
        },
    };
    let generation = publisher
        .commit_generation(generation, summary.entries)
        .await
        .context("committing the generation")?;
    info!(channel = %channel.name, release = %release.name, "release committed");
    Ok(Some(format!(
        "channel {}: committed {} ({} roots, {} closure paths: {} published now, {} before; {} missing upstream)",
        channel.name,
        release.name,
        generation.roots,
        generation.closure,
        summary.published,
        summary.already,
        generation.missing
    )))
}

/// A rate in bytes a second: bytes, or a number with K, M or G.
fn parse_rate(text: &str) -> Result<u64, String> {
    match hypernar_fetcher::node::evict::parse_size(text)? {
        0 => Err(format!("{text:?}: a rate of 0 would never finish")),
        n => Ok(n),
    }
}
