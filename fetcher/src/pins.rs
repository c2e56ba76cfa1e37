//! The pins front-end: every path the catalog says is pinned (the closure
//! of pinned sets' paths, `node/pin.rs`) is fetched ahead through the
//! sources floor's chain — peers, hedged with the web seeds, like any read
//! — and kept. Its blocks are fetched as the index places them, before the
//! path's key is released too ([`Keeper`] needs no key). A path no longer
//! pinned stops being fetched; its blocks stay, now evictable.

use std::collections::HashMap;
use std::time::Duration;

use hypernar_feed::format::identity::FeedKey;
use hypernar_feed::format::storepath::StorePath;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::sources::reader::Keeper;
use crate::sources::{Sources, Timing};

/// Longest wait between tries to open a pinned path's data feed.
const OPEN_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A pin is not waited on by anyone: each block may take a minute before
/// it is asked again (the web seeds are asked after the usual second).
const KEEP_TIMING: Timing = Timing {
    patience: Duration::from_secs(1),
    deadline: Duration::from_secs(60),
};

/// Keeps the pinned paths of `sources`' node until `shutdown`; the tasks
/// fetching them end with it.
pub async fn run(sources: Sources, shutdown: CancellationToken) {
    let sources = sources.with_timing(KEEP_TIMING);
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

/// Brings all of `path`'s blocks here (its NAR's and its listing's, as
/// the catalog places them), waiting for the catalog to place them. No
/// key is needed: blocks are fetched ahead of a key's release.
async fn keep_path(sources: Sources, path: StorePath) {
    let mut backoff = Duration::from_secs(1);
    let (feed, ranges) = loop {
        if let Some(placed) = sources.node().publishers().ranges(&path) {
            break placed;
        }
        debug!(%path, "a pinned path is not placed by any index yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(OPEN_BACKOFF_MAX);
    };
    let Ok(feed) = FeedKey::from_bytes(&feed) else {
        warn!(%path, "the publisher declared this pinned path's data feed with an invalid key; not fetched");
        return;
    };
    let keeper = loop {
        match Keeper::open(&sources, feed).await {
            Ok(k) => break k,
            Err(e) => {
                warn!(%path, "cannot open the data feed of a pinned path; retrying: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(OPEN_BACKOFF_MAX);
            }
        }
    };
    keeper.keep(&ranges, &path).await;
    // Its key too, once released: a path held without it cannot be served
    // when the sources are gone. Asked again (a lookup fetches the release
    // its run entry names) until it is known.
    let mut backoff = Duration::from_secs(1);
    loop {
        match sources.node().publishers().key_known(&path) {
            Some(true) => {
                info!(%path, "pinned path ready: its blocks and key are here");
                return;
            }
            None => return,
            Some(false) => {
                sources.path_by_hash(path.hash_part()).await;
                if sources.node().publishers().key_known(&path) == Some(true) {
                    continue;
                }
                debug!(%path, "a pinned path's key is not known here yet; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(OPEN_BACKOFF_MAX);
            }
        }
    }
}
