//! `hypernar follow`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hypernar_feed::error::StoreError;
use hypernar_feed::format::generation::Generation;
use hypernar_feed::format::nixkey::{NixPublicKey, CACHE_NIXOS_ORG_1};
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::FeedOpener;
use hypernar_feed::FeedStore;
use hypernar_fetcher::following::{FollowStatus, Phase};
use hypernar_publisher::control::{FollowJob, Job};
use hypernar_publisher::follow::{self, Channel, ChannelClient};
use hypernar_publisher::{
    Origin, Outcome, Progress, PublishError, PublishOptions, Publisher, SealSettings,
};
use tracing::{info, warn};

use super::common::{error_chain, read_key, DataDir};
use super::control;
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
/// Progress: a bar on a terminal (NAR bytes and paths done of the plan,
/// rate, time left), else a plain line on stderr every 30 s
/// (HYPERNAR_PROGRESS_SECS sets it). On a data directory a running
/// `hypernar serve` holds, the follow runs inside that serve (so peers get
/// each path at once) and its figures are in `hypernar status`, on the
/// status page and in /metrics (hypernar_follow_*: paths by state, bytes,
/// lag behind the channel).
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

impl Args {
    /// The job these arguments describe, with absolute paths, so a serve
    /// process whose working directory is not ours can run it.
    fn to_job(&self) -> anyhow::Result<FollowJob> {
        if self
            .max_upstream_requests
            .is_some_and(|r| !(0.01..=1e6).contains(&r))
        {
            anyhow::bail!(
                "--max-upstream-requests: give a number of requests a second from 0.01 to 1000000"
            );
        }
        Ok(FollowJob {
            key_file: std::path::absolute(&self.key)?,
            data_dir: std::path::absolute(self.data.path()?)?,
            channels: self
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.url.clone()))
                .collect(),
            upstream: self.upstream.clone(),
            trusted_keys: self.trusted_keys.iter().map(|k| k.to_string()).collect(),
            allow_older: self.allow_older,
            once: self.once,
            interval_secs: self.interval.max(1),
            jobs: self.jobs.map(|j| j.min(u32::MAX as usize) as u32),
            max_upstream_millirequests: self
                .max_upstream_requests
                .map(|r| (r * 1000.0).round() as u64),
            max_upstream_rate: self.max_upstream_rate,
            release: !self.no_release,
            run_tail: self.run_tail,
        })
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = args.to_job()?;
    let secret = read_key(&job.key_file)?;
    let dir = job.data_dir.clone();
    match Publisher::open(&dir, secret).await {
        Ok(publisher) => {
            let report = Arc::new(Local::default());
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let gate = tokio::sync::Mutex::new(());
            // The data directory is this process's alone: one publisher
            // for every look.
            let mut open = Some(publisher);
            let mut opener = || {
                let p = open.take();
                Box::pin(async move {
                    p.ok_or_else(|| anyhow::anyhow!("the publisher was opened once already"))
                }) as OpenFuture<'_, FeedStore>
            };
            let code = execute(&mut opener, true, &job, report, stop, &gate).await;
            Ok(ExitCode::from(code))
        }
        // A running `hypernar serve` holds the directory: follow through it,
        // so what is published reaches its peers at once, and its status
        // page and metrics show the follower.
        Err(PublishError::Store(StoreError::Locked(_))) if control::socket(&dir).exists() => {
            control::client::via_serve(Job::Follow(job)).await
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}

/// Where a follow run says what it does: lines for the user, and each
/// channel's figures ([`FollowStatus`]).
pub trait Report: Send + Sync {
    /// A line of what the command produces (stdout).
    fn out(&self, line: String);
    /// An error or a progress line (stderr).
    fn err(&self, line: String);
    /// Changes `channel`'s figures.
    fn update(&self, channel: &str, f: &mut dyn FnMut(&mut FollowStatus));
    /// A release's walk begins: what draws its progress, if anything.
    fn walk_started(&self) -> Option<Arc<dyn Progress>> {
        None
    }
    /// The walk ended.
    fn walk_ended(&self) {}
    /// Seconds between progress lines.
    fn line_every(&self) -> Duration;
}

/// The figures as they are now, as a line.
fn line_of(report: &dyn Report, channel: &str) -> String {
    let mut line = String::new();
    report.update(channel, &mut |s| {
        line = s.line(Instant::now(), SystemTime::now());
    });
    line
}

/// `hypernar follow` on its own: a bar on a terminal, progress lines on
/// stderr every 30 s otherwise (a log), the figures kept here.
#[derive(Default)]
struct Local {
    statuses: Mutex<BTreeMap<String, FollowStatus>>,
    bar: Mutex<Option<Arc<Bar>>>,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
impl Report for Local {
    fn out(&self, line: String) {
        println!("{line}");
    }
    fn err(&self, line: String) {
        match &*self.bar.lock().expect("bar lock") {
            Some(bar) => bar.println(&line),
            None => eprintln!("{line}"),
        }
    }
    fn update(&self, channel: &str, f: &mut dyn FnMut(&mut FollowStatus)) {
        let mut all = self.statuses.lock().expect("statuses lock");
        f(all.entry(channel.to_owned()).or_default());
    }
    fn walk_started(&self) -> Option<Arc<dyn Progress>> {
        let bar = Arc::new(Bar::new());
        *self.bar.lock().expect("bar lock") = Some(bar.clone());
        Some(bar)
    }
    fn walk_ended(&self) {
        if let Some(bar) = self.bar.lock().expect("bar lock").take() {
            bar.finish();
        }
    }
    fn line_every(&self) -> Duration {
        // HYPERNAR_PROGRESS_SECS sets it (0: a line at every event).
        if let Some(secs) = std::env::var("HYPERNAR_PROGRESS_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return Duration::from_secs(secs);
        }
        if std::io::stderr().is_terminal() {
            // The bar says it.
            Duration::MAX
        } else {
            Duration::from_secs(30)
        }
    }
}

/// A walk's progress: into the report's figures (and its bar), with a
/// line every so often.
struct Tracked {
    channel: String,
    report: Arc<dyn Report>,
    draw: Option<Arc<dyn Progress>>,
    last_line: Mutex<Instant>,
}

impl Tracked {
    fn changed(&self, f: &mut dyn FnMut(&mut FollowStatus)) {
        self.report.update(&self.channel, f);
        let every = self.report.line_every();
        let mut last = self.last_line.lock().expect("line lock");
        if last.elapsed() >= every {
            *last = Instant::now();
            drop(last);
            let line = line_of(&*self.report, &self.channel);
            self.report.err(format!("channel {}: {line}", self.channel));
        }
    }
}

impl Progress for Tracked {
    fn planned(&self, paths: u64, nar_bytes: u64) {
        if let Some(d) = &self.draw {
            d.planned(paths, nar_bytes);
        }
        self.changed(&mut |s| {
            s.phase = Phase::Publishing;
            s.paths.planned = paths;
            s.bytes_planned = nar_bytes;
            s.publishing_since = Some(Instant::now());
        });
    }
    fn nar_bytes(&self, n: u64) {
        if let Some(d) = &self.draw {
            d.nar_bytes(n);
        }
        self.changed(&mut |s| s.bytes_done += n);
    }
    fn path_done(&self, path: &StorePath, outcome: &Outcome) {
        if let Some(d) = &self.draw {
            d.path_done(path, outcome);
        }
        self.changed(&mut |s| match outcome {
            Outcome::Published { .. } => s.paths.published += 1,
            Outcome::AlreadyPublished => s.paths.already += 1,
            Outcome::Failed(_) => s.paths.failed += 1,
        });
    }
}

/// Opens the follower's publisher.
pub type OpenFuture<'a, O> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Publisher<O>>> + Send + 'a>>;

/// Follows `job`'s channels until `stop` (or once, with `once`), each look
/// taken under `gate` (a serve runs one writing job at a time, and lets
/// others in between looks) with a publisher from `open`: opened once and
/// kept (`keep`, when nothing else writes the feeds), or opened afresh for
/// each look (in a serve, where a `publish` may have written between two
/// looks, and a publisher's view of its feeds must not be stale). Returns
/// the exit code.
pub async fn execute<O: FeedOpener>(
    open: &mut (dyn FnMut() -> OpenFuture<'static, O> + Send),
    keep: bool,
    job: &FollowJob,
    report: Arc<dyn Report>,
    stop: impl std::future::Future<Output = ()>,
    gate: &tokio::sync::Mutex<()>,
) -> u8 {
    match prepare(job) {
        Ok((channels, opts, upstream, client)) => {
            let env = Env {
                job,
                channels: &channels,
                opts: &opts,
                upstream: &upstream,
                client: &client,
            };
            follow_loop(open, keep, env, report, stop, gate).await
        }
        Err(e) => {
            report.err(format!("error: {}", error_chain(&e)));
            1
        }
    }
}

type Prepared = (Vec<Channel>, PublishOptions, Arc<Origin>, ChannelClient);

fn prepare(job: &FollowJob) -> anyhow::Result<Prepared> {
    let channels = job
        .channels
        .iter()
        .map(|(name, url)| format!("{name}={url}").parse::<Channel>())
        .collect::<Result<Vec<_>, _>>()?;
    let keys = if job.trusted_keys.is_empty() {
        vec![CACHE_NIXOS_ORG_1.parse().expect("the built-in key parses")]
    } else {
        job.trusted_keys
            .iter()
            .map(|k| k.parse::<NixPublicKey>())
            .collect::<Result<Vec<_>, _>>()?
    };
    let client = ChannelClient::new().context("building the HTTP client")?;
    let requests = match job.max_upstream_millirequests {
        Some(m) if !(10..=1_000_000_000).contains(&m) => {
            anyhow::bail!(
                "--max-upstream-requests: give a number of requests a second from 0.01 to 1000000"
            )
        }
        m => m.map(|m| m as f64 / 1000.0),
    };
    let limits = hypernar_publisher::limit::Limits::new(requests, job.max_upstream_rate);
    let upstream = Arc::new(Origin::new(&job.upstream)?.with_limits(limits));
    let opts = PublishOptions {
        closure: true,
        all: false,
        release: job.release,
        jobs: job.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            |j| j as usize,
        ),
        seal: SealSettings {
            segment_size: DEFAULT_SEGMENT_SIZE,
            zstd_level: 3,
        },
        run_tail: job.run_tail,
        data_feed_blocks: hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS,
        trusted_keys: keys,
        most_referenced_first: true,
    };
    Ok((channels, opts, upstream, client))
}

/// What every look needs.
#[derive(Clone, Copy)]
struct Env<'a> {
    job: &'a FollowJob,
    channels: &'a [Channel],
    opts: &'a PublishOptions,
    upstream: &'a Arc<Origin>,
    client: &'a ChannelClient,
}

async fn follow_loop<O: FeedOpener>(
    open: &mut (dyn FnMut() -> OpenFuture<'static, O> + Send),
    keep: bool,
    env: Env<'_>,
    report: Arc<dyn Report>,
    stop: impl std::future::Future<Output = ()>,
    gate: &tokio::sync::Mutex<()>,
) -> u8 {
    tokio::pin!(stop);
    for c in env.channels {
        report.update(&c.name, &mut |s| s.url = c.url.clone());
    }
    let mut kept: Option<Publisher<O>> = None;
    let mut failed = false;
    loop {
        for channel in env.channels {
            let _one = gate.lock().await;
            let mut publisher = match kept.take() {
                Some(p) => p,
                None => match open().await {
                    Ok(p) => p,
                    Err(e) => {
                        report.err(format!("error: {}", error_chain(&e)));
                        return 1;
                    }
                },
            };
            if let Some(g) = publisher.generations().get(&channel.name) {
                let (release, at) = (g.release.clone(), g.committed_at);
                report.update(&channel.name, &mut |s| {
                    if s.committed.as_ref().is_none_or(|(r, _)| *r != release) {
                        s.committed(&release, at);
                    }
                });
            }
            // Stopped mid-look (a serve shutting down, its client gone):
            // what is committed stays; a commit cut short is finished when
            // the publisher next opens (its journal), as after a kill.
            let looked = tokio::select! {
                r = look(&mut publisher, env, channel, &report) => r,
                _ = &mut stop => {
                    stopped(&report, env.channels);
                    return 0;
                }
            };
            match looked {
                Ok(Some(line)) => report.out(line),
                Ok(None) => {}
                Err(e) => {
                    failed = true;
                    let why = error_chain(&e);
                    warn!(channel = %channel.name, "{why}");
                    report.update(&channel.name, &mut |s| s.phase = Phase::Failed(why.clone()));
                    report.err(format!("error: channel {}: {why}", channel.name));
                }
            }
            if keep {
                kept = Some(publisher);
            }
        }
        if env.job.once {
            return u8::from(failed);
        }
        failed = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(env.job.interval_secs.max(1))) => {}
            _ = &mut stop => {
                stopped(&report, env.channels);
                return 0;
            }
        }
    }
}

/// The follow ends: its figures say so.
fn stopped(report: &Arc<dyn Report>, channels: &[Channel]) {
    for c in channels {
        report.update(&c.name, &mut |s| s.phase = Phase::Stopped);
    }
}

/// One look at `channel`: its release ingested if new. Returns the line
/// to print, if something was done; what was refused or missing goes to
/// the report's errors as it is known.
async fn look<O: FeedOpener>(
    publisher: &mut Publisher<O>,
    env: Env<'_>,
    channel: &Channel,
    report: &Arc<dyn Report>,
) -> anyhow::Result<Option<String>> {
    let Env {
        client,
        upstream,
        opts,
        ..
    } = env;
    let allow_older = env.job.allow_older;
    let name = &channel.name;
    let mut release = client.resolve(channel).await?;
    report.update(name, &mut |s| s.saw(&release.name, SystemTime::now()));
    let last = publisher.generations().get(name).cloned();
    let should = |release: &hypernar_publisher::channel::Release| match follow::should_ingest(
        name,
        last.as_ref(),
        release,
    ) {
        Err(follow::FollowError::Older { .. }) if allow_older => {
            warn!(channel = %name, release = %release.name, "older than the release last committed; taken (--allow-older)");
            Ok(true)
        }
        r => r,
    };
    if !should(&release)? {
        info!(channel = %name, release = %release.name, "no new release");
        report.update(name, &mut |s| s.phase = Phase::Waiting);
        return Ok(Some(format!(
            "channel {name}: {} is committed already",
            release.name
        )));
    }
    report.update(name, &mut |s| s.walk());
    let (roots, git_revision) = client.roots(&mut release).await?;
    // The time may order it when its name does not.
    should(&release)?;
    // What the generation will say, checked before anything is ingested
    // (a release whose name or URL could not be committed is refused now).
    let mut generation = Generation {
        channel: name.clone(),
        release: release.name.clone(),
        url: release.url.clone(),
        revision_count: release.revision_count,
        modified: release.modified,
        git_revision,
        committed_at: SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        roots: roots.len() as u64,
        closure: 0,
        missing: 0,
        table: hypernar_feed::format::run::RunRef {
            first_block: 0,
            bits: 0,
            entries: 0,
            from: 0,
            to: 0,
        },
    };
    generation
        .check_fields()
        .with_context(|| format!("release {} cannot be committed", release.name))?;
    info!(channel = %name, release = %release.name, roots = roots.len(), "ingesting a release");
    let hashes: Vec<String> = roots.iter().map(|p| p.hash_part().to_owned()).collect();
    let progress = Arc::new(Tracked {
        channel: name.clone(),
        report: report.clone(),
        draw: report.walk_started(),
        last_line: Mutex::new(Instant::now()),
    });
    let summary = publisher
        .publish(upstream.clone(), hashes, opts, progress)
        .await;
    report.walk_ended();
    let summary = summary?;
    report.update(name, &mut |s| {
        s.paths.failed = summary.failed.len() as u64;
        s.paths.missing = summary.missing.len() as u64;
        s.paths.refused = summary.refused.len() as u64;
    });
    for m in &summary.missing {
        report.err(format!("missing upstream: {m}"));
    }
    for r in &summary.refused {
        report.err(format!("refused: {r}"));
    }
    let others = summary.failed.len() - summary.missing.len() - summary.refused.len();
    for f in summary
        .failed
        .iter()
        .filter(|f| !summary.missing.contains(f) && !summary.refused.contains(f))
    {
        report.err(format!("failed: {f}"));
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
    generation.missing = summary.missing.len() as u64;
    generation.committed_at = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let generation = publisher
        .commit_generation(generation, summary.entries)
        .await
        .context("committing the generation")?;
    report.update(name, &mut |s| {
        s.committed(&generation.release, generation.committed_at)
    });
    info!(channel = %name, release = %release.name, "release committed");
    Ok(Some(format!(
        "channel {name}: committed {} ({} roots, {} closure paths: {} published now, {} before; {} missing upstream)",
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
