//! `hypernar status`.

use std::process::ExitCode;

use hypernar_feed::error::StoreError;
use hypernar_feed::format::identity::Identity;
use hypernar_feed::FeedStore;
use hypernar_fetcher::http::status;
use hypernar_fetcher::sources::Sources;
use hypernar_publisher::control::Job;

use super::common::DataDir;
use super::control;

/// Show what a node holds and does: disk use per publisher and set, peers,
/// what is pinned.
///
/// Asks the `hypernar serve` that holds the data directory (through its
/// control socket). With no serve running, says so and lists what the
/// directory's feeds take on disk, per publisher.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Print one JSON object instead of text, for scripts: `running` says
    /// whether a serve holds the directory; with one, the same facts as the
    /// text (disk, share, bytes, kept, groups, peers, publishers, sets,
    /// channels, following, pinned_paths), without, `disk` per owner
    #[arg(long)]
    json: bool,
}

/// The running node's state as text, or JSON (for the control socket).
pub async fn report(sources: &Sources, json: bool) -> String {
    let node = sources.node();
    let disk = status::DiskUsage::default().get(node).await;
    let snapshot = status::Snapshot::take(sources, disk);
    let pinned: Vec<String> = node.pinned().iter().map(|p| p.to_string()).collect();
    if json {
        status::render_json(&snapshot, &snapshot.usage, &pinned)
    } else {
        status::render_text(&snapshot, &snapshot.usage, &pinned)
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(args.data.path()?)?;
    if !dir.is_dir() {
        anyhow::bail!("there is no data directory at {} (--data)", dir.display());
    }
    match FeedStore::open(&dir) {
        Ok(store) => {
            if !args.json {
                eprintln!(
                    "no hypernar serve runs on {}; what its feeds take on disk:",
                    dir.display()
                );
            }
            let mut per: std::collections::BTreeMap<String, u64> = Default::default();
            for key in store.list()? {
                let Some(mut feed) = store.open_existing(&key).await? else {
                    continue;
                };
                let owner = match feed.header().await {
                    Ok(h) => Identity::from_bytes(&h.publisher)
                        .map(|i| format!("{} ({:?} feeds)", i, h.role).to_lowercase())
                        .unwrap_or_else(|_| "unknown".into()),
                    Err(_) => "feeds with no header yet".into(),
                };
                *per.entry(owner).or_default() +=
                    hypernar_fetcher::node::evict::disk_usage(feed.dir());
            }
            if args.json {
                let disk: Vec<_> = per
                    .iter()
                    .map(|(owner, bytes)| serde_json::json!({ "owner": owner, "bytes": bytes }))
                    .collect();
                let v = serde_json::json!({
                    "running": false,
                    "data_dir": dir.display().to_string(),
                    "disk": disk,
                });
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            if per.is_empty() {
                eprintln!("  nothing stored yet");
            }
            for (owner, bytes) in per {
                println!("  {owner}  {}", indicatif::HumanBytes(bytes));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Locked(_)) if control::socket(&dir).exists() => {
            control::client::via_serve(Job::Status {
                data_dir: dir,
                json: args.json,
            })
            .await
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}
