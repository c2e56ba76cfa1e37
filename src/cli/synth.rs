//! `hypernar synth` (hidden): a synthetic publisher of many paths, fast,
//! for the index benchmark and tests at scale (`publisher/src/synth.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use hypernar_feed::FeedStore;
use hypernar_publisher::publisher::Publisher;

use super::common::{read_key, DataDir};

/// Publish synthetic paths (`<hash>-synth-<i>`, tiny NARs) in batches, for
/// benchmarks and tests at scale. Not for real use: anyone can forge the
/// `synth-1` signatures they carry.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Publisher key file
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// How many paths to publish
    #[arg(long, value_name = "N")]
    paths: u64,
    /// Number of the first path (to add to an earlier run's paths)
    #[arg(long, default_value_t = 0, value_name = "I")]
    from: u64,
    /// Hold the keys back (as `publish --no-release`)
    #[arg(long)]
    no_release: bool,
    /// Cut the index's newest entries into a run once this many are in none
    #[arg(long, default_value_t = hypernar_publisher::runs::DEFAULT_RUN_TAIL, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    run_tail: u64,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let secret = read_key(&args.key)?;
    let dir = args.data.path()?;
    // No fsync per write: synthetic data is synced once at the end.
    hypernar_feed::private::create_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let store = FeedStore::open_unsynced(&dir)
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    let mut publisher = Publisher::open_with(store.clone(), &dir, secret)
        .await
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    publisher.set_run_tail(args.run_tail);
    let started = Instant::now();
    let total = args.paths;
    let last = std::sync::Mutex::new(Instant::now());
    let progress = |done: u64| {
        let mut last = last.lock().expect("progress lock");
        if last.elapsed().as_secs() >= 5 || done == total {
            *last = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprintln!("{done} of {total} synthetic paths, {rate:.0}/s");
        }
    };
    let s = publisher
        .append_synthetic(args.from, args.paths, !args.no_release, &progress)
        .await?;
    publisher.flush_logs().await?;
    drop(publisher);
    store
        .sync_all()
        .with_context(|| format!("syncing {}", dir.display()))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "published {} synthetic paths ({} keys released) in {secs:.1} s, {:.0} paths/s",
        s.published,
        s.released,
        s.published as f64 / secs.max(1e-3)
    );
    Ok(ExitCode::SUCCESS)
}
