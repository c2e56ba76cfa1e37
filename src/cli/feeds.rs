//! `hypernar feeds`.

use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::identity::{feed_key_text, Identity};
use hypernar_feed::FeedStore;

use super::common::DataDir;

/// List the feeds in a data directory: token, role, name, blocks.
///
/// The token (hypernar-feed1:…) of a data feed is what a blind mirror
/// passes to `hypernar serve --feed`; the token of an audience key feed is
/// what its audience passes. An index feed's key is its publisher identity.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Print one JSON array instead, for scripts: per feed its token, role,
    /// name, length, blocks held, whether this directory writes it (ours)
    /// and its publisher
    #[arg(long)]
    json: bool,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.data.path()?;
    let store = FeedStore::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut all = Vec::new();
    for key in store.list()? {
        let Some(mut feed) = store.open_existing(&key).await? else {
            continue;
        };
        let info = feed.info();
        let have = (0..info.length).filter(|i| feed.has(*i)).count();
        let (role, name, publisher) = match feed.header().await {
            Ok(h) => (
                format!("{:?}", h.role).to_lowercase(),
                h.name,
                Identity::from_bytes(&h.publisher)
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
            ),
            Err(_) => ("?".into(), "?".into(), String::new()),
        };
        if args.json {
            all.push(serde_json::json!({
                "token": feed_key_text(&key),
                "role": role,
                "name": name,
                "length": info.length,
                "held": have,
                "ours": feed.writable(),
                "publisher": publisher,
            }));
            continue;
        }
        println!(
            "{}  {role:<5} {name:<24} {have}/{} blocks{}  publisher {publisher}",
            feed_key_text(&key),
            info.length,
            if feed.writable() { " (ours)" } else { "" },
        );
    }
    if args.json {
        println!("{}", serde_json::Value::Array(all));
    }
    Ok(ExitCode::SUCCESS)
}
