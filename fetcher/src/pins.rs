//! The pins front-end: every path the catalog says is pinned (the closure
//! of pinned sets' paths, `node/pin.rs`) is fetched ahead through the path
//! reader — peers, hedged with the web seeds, like any read — and kept.
//! A path no longer pinned stops being fetched; its blocks stay, now
//! evictable.

use std::collections::HashMap;
use std::time::Duration;

use hypernar_feed::format::storepath::StorePath;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::sources::Sources;

/// Longest wait between tries to open a pinned path the catalog cannot
/// give yet (its key not released, say).
const OPEN_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Keeps the pinned paths of `sources`' node until `shutdown`; the tasks
/// fetching them end with it.
pub async fn run(sources: Sources, shutdown: CancellationToken) {
    let mut pinned = sources.node().subscribe_pinned();
    let mut tasks: HashMap<StorePath, AbortOnDropHandle<()>> = HashMap::new();
    loop {
        let now = pinned.borrow_and_update().clone();
        tasks.retain(|path, _| now.contains(path));
        for path in now.iter() {
            if tasks.contains_key(path) {
                continue;
            }
            let (sources, path2) = (sources.clone(), path.clone());
            let task = tokio::spawn(async move { keep_path(sources, path2).await });
            tasks.insert(path.clone(), AbortOnDropHandle::new(task));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = pinned.changed() => if r.is_err() { return },
        }
    }
}

/// Opens `path` (waiting for the catalog to give it) and brings all its
/// blocks here.
async fn keep_path(sources: Sources, path: StorePath) {
    let mut backoff = Duration::from_secs(1);
    let reader = loop {
        match sources.open_path(&path).await {
            Ok(r) => break r,
            Err(e) => {
                debug!(%path, "a pinned path cannot be opened yet; retrying: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(OPEN_BACKOFF_MAX);
            }
        }
    };
    reader.keep().await;
}
