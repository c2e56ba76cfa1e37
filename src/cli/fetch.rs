//! `hypernar fetch`.

use std::io::BufWriter;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hypernar_feed::format::identity::Identity;
use hypernar_feed::format::storepath::StorePath;
use hypernar_fetcher::node::{Node, NodeConfig};
use hypernar_fetcher::sources::upstream::Upstreams;
use hypernar_fetcher::sources::webseed::WebSeeds;
use hypernar_fetcher::sources::{Sources, Timing};

use super::common::DataDir;

/// Fetch a path's NAR from peers and web seeds and write it to stdout.
///
/// Starts a node on the data directory, connects to the given peers, waits
/// for the trusted publishers' index to name the path, then fetches its
/// blocks the way `hypernar serve` does for Nix: from whichever peers have
/// them, and from the web seeds (given here, or recorded by the publisher)
/// when peers are absent or slow. Every block is verified against the
/// publisher's signed tree; the decrypted NAR is checked against its
/// NarHash. The blocks stay in the data directory, so a later `hypernar
/// serve` on it seeds them to others.
///
/// Examples:
///   hypernar fetch --trust hypernar1:… --peer 10.0.0.5:7469 /nix/store/…-hello > hello.nar
///   hypernar fetch --trust hypernar1:… --web-seed https://seed.example.org/hypernar /nix/store/…-hello > hello.nar
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Publisher identity to trust (repeatable)
    #[arg(
        long,
        value_name = "ID",
        required = true,
        env = "HYPERNAR_TRUST",
        value_delimiter = ','
    )]
    trust: Vec<Identity>,
    /// Peer to fetch from (HOST:PORT, repeatable)
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "web_seed")]
    peer: Vec<String>,
    /// Web seed to fetch from when peers are absent or slow: a static copy
    /// of the publisher's feeds (`publish --web-seed`) on any HTTP server
    /// (repeatable). Web seeds the publisher records in its index are
    /// asked after these
    #[arg(long, value_name = "URL")]
    web_seed: Vec<String>,
    /// Store path to fetch
    store_path: String,
    /// Give up if the path is not known, or a block does not arrive from
    /// peers or web seeds, in this many seconds
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// Also accept peers on this address while fetching (ADDR:PORT)
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// After the fetch, keep seeding for this many seconds
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    linger: u64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = StorePath::parse(args.store_path.trim_end_matches('/'))
        .with_context(|| format!("{:?} is not a store path", args.store_path))?;
    let data_dir = args.data.path()?;
    let node = Node::start(NodeConfig {
        peers: args.peer.clone(),
        trust: args.trust.clone(),
        ..NodeConfig::new(data_dir.clone())
    })
    .await
    .with_context(|| format!("starting a node on {}", data_dir.display()))?;
    if let Some(addr) = &args.listen {
        node.listen_on(addr).await?;
    }
    let web_seeds = WebSeeds::new(&args.web_seed, true).context("--web-seed")?;
    let deadline = Duration::from_secs(args.timeout.max(1));
    let sources = Sources::new(&node, Arc::new(web_seeds), Arc::new(Upstreams::none()));
    node.spawn(sources.clone().follow(node.shutdown_token()));
    let sources = sources.with_timing(Timing {
        deadline,
        ..Timing::default()
    });
    let started = Instant::now();
    // Index and key feeds replicate (or their runs are read) as the node
    // connects: wait for the path.
    sources
        .wait_path(&path, deadline)
        .await
        .with_context(|| format!("after waiting {}s for the index and keys", args.timeout))?;
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
    let (_, summary) = sources.open_path(&path).await?.write_nar(out).await?;
    tracing::info!(
        path = %path,
        nar_bytes = summary.nar_bytes,
        secs = started.elapsed().as_secs_f64(),
        "fetch complete"
    );
    if args.linger > 0 {
        tokio::time::sleep(Duration::from_secs(args.linger)).await;
    }
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
