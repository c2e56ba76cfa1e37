//! `hypernar release`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hypernar_publisher::Publisher;

use super::common::{hash_part_of, read_key, DataDir};

/// Release the decryption keys of published paths.
///
/// Without --audience the keys go to the public key feed listed in the
/// index: every peer that trusts this publisher can then read the paths.
/// With --audience NAME they go to a key feed of that name that is not
/// listed anywhere; hand its token (printed last) to the audience.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Publisher key file
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// Paths to release [default: every published path]
    paths: Vec<String>,
    /// Release to this audience's private key feed instead of everyone
    #[arg(long, value_name = "NAME")]
    audience: Option<String>,
    /// Update the web-seed copy of the feeds in DIR (see `publish --web-seed`)
    #[arg(long, value_name = "DIR")]
    web_seed: Option<PathBuf>,
    /// Cut the index's newest entries into a sorted run once this many are
    /// in none (as `publish --run-tail`)
    #[arg(long, default_value_t = hypernar_publisher::runs::DEFAULT_RUN_TAIL, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    run_tail: u64,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let only = if args.paths.is_empty() {
        None
    } else {
        Some(
            args.paths
                .iter()
                .map(|p| hash_part_of(p))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let secret = read_key(&args.key)?;
    let dir = args.data.path()?;
    let mut publisher = Publisher::open(&dir, secret)
        .await
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    publisher.set_run_tail(args.run_tail);
    let s = publisher.release(only, args.audience.as_deref()).await?;
    println!(
        "released {} keys to {} ({} were already released)",
        s.released, s.feed_name, s.already
    );
    if let Some(root) = &args.web_seed {
        publisher
            .sync_web_seed(root)
            .await
            .with_context(|| format!("updating the web seed in {}", root.display()))?;
        println!("web seed {} up to date", root.display());
    }
    println!("{}", s.feed_token);
    Ok(ExitCode::SUCCESS)
}
