//! `hypernar channels`.

use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::identity::Identity;
use hypernar_feed::format::record::FeedRole;
use hypernar_feed::FeedStore;

use super::common::DataDir;

/// Show the channels a data directory's generations feeds say were
/// committed: for each, the newest release, its git revision, when it was
/// committed and its counts.
///
/// A follower's own generations feed (`hypernar follow`) is always here;
/// a node's copy of another publisher's is shown as far as it replicated.
/// One line per channel:
///   CHANNEL RELEASE git REV committed TIME: N roots, N closure paths, N missing upstream, publisher ID
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    data: DataDir,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.data.path()?;
    let store = FeedStore::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut lines = Vec::new();
    for key in store.list()? {
        let Some(mut feed) = store.open_existing(&key).await? else {
            continue;
        };
        let Ok(header) = feed.header().await else {
            continue;
        };
        if header.role != FeedRole::Generations {
            continue;
        }
        let publisher = Identity::from_bytes(&header.publisher)
            .map(|i| i.to_string())
            .unwrap_or_default();
        let last = hypernar_feed::lookup::last_generations(&mut feed)
            .await
            .with_context(|| format!("reading the generations feed of {publisher}"))?;
        for g in last.map(|(_, g)| g.channels).unwrap_or_default() {
            let when = hypernar_feed::format::generation::http_date(g.committed_at);
            lines.push(format!(
                "{} {} git {} committed {when}: {} roots, {} closure paths, {} missing upstream, publisher {publisher}",
                g.channel,
                g.release,
                g.git_revision.as_deref().unwrap_or("-"),
                g.roots,
                g.closure,
                g.missing,
            ));
        }
    }
    lines.sort();
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
