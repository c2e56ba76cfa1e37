//! Reading the generations feeds of the publishers whose channels the
//! node follows (docs/protocol.md, "Generations"): the last block of each,
//! kept current as the manifests are, and a generation's table read page by
//! page with the records its entries point at.

use futures::StreamExt;
use hypernar_feed::format::identity::{FeedKey, Identity};
use hypernar_feed::format::nixbase32;
use hypernar_feed::format::record::Record;
use hypernar_feed::format::run::RunRef;
use hypernar_feed::format::storepath::StorePath;
use tracing::{debug, warn};

use hypernar_swarm::hub::HubHandle;

use super::lookup::{wait_for_growth, Cost, MANIFEST_POLL};
use super::Sources;
use crate::publishers::ManifestState;

/// Pages, and records, asked at once when a table is read.
const TABLE_CONCURRENCY: usize = 32;

impl Sources {
    /// Reads the last block of every generations feed a followed channel
    /// needs, now and whenever one grows, another is declared, or every
    /// [`MANIFEST_POLL`], and gives the node's channels what it says. Part
    /// of [`Sources::follow`].
    pub(super) async fn follow_generations(&self) {
        let channels = self.node().channels();
        let mut changed = channels.subscribe();
        loop {
            let feeds = channels.feeds_to_read();
            let keys: Vec<FeedKey> = feeds.iter().map(|(_, f, _)| *f).collect();
            let mut watched = Vec::new();
            for (id, feed, at) in feeds {
                if let Some(seen) = self.refresh_generations(id, feed, at).await {
                    watched.push(seen);
                }
            }
            let same = || {
                let now: Vec<FeedKey> = channels
                    .feeds_to_read()
                    .iter()
                    .map(|(_, f, _)| *f)
                    .collect();
                now == keys
            };
            if !wait_for_growth(&watched, &mut changed, same, MANIFEST_POLL).await {
                return;
            }
        }
    }

    /// Reads one generations feed's last block (`known`: the block its
    /// last record was read at); returns its hub, to watch, and the length
    /// read.
    async fn refresh_generations(
        &self,
        id: Identity,
        feed: FeedKey,
        known: Option<u64>,
    ) -> Option<(HubHandle, u64)> {
        let hub = self
            .node()
            .add_feed(feed.verifying_key(), false)
            .await
            .ok()?;
        self.ask_length(&hub, &feed).await;
        let length = hub.state().borrow().length;
        if length < 2 || known == Some(length - 1) {
            return Some((hub, length));
        }
        let at = length - 1;
        match self.block(feed, at).await.map(|b| Record::decode(&b)) {
            Ok(Ok(Record::Generations(g))) => match g.check(at) {
                Ok(()) => {
                    debug!(publisher = %id, at, channels = g.channels.len(), "generations read");
                    self.node().channels().set_newest(id, at, *g);
                }
                Err(e) => warn!(publisher = %id, at, "the generations record is refused: {e}"),
            },
            // A commit being written (its record comes last), or one cut
            // short (the publisher appends its record again): keep what is
            // known.
            Ok(Ok(_)) => {
                debug!(publisher = %id, at, "the generations feed's last block is no record yet")
            }
            Ok(Err(e)) => {
                warn!(publisher = %id, at, "the generations feed's last block does not decode: {e}")
            }
            Err(e) => debug!(publisher = %id, at, "reading the generations feed: {e}"),
        }
        Some((hub, length))
    }

    /// The paths of `table` in publisher `id`'s generations feed `feed`: its
    /// pages, [`TABLE_CONCURRENCY`] at once, each checked to be the page it
    /// was asked as; then, for each entry, the path the catalog holds of
    /// that hash, or else the record the entry points at, fetched and
    /// checked as a lookup's. At most `limit` paths.
    pub async fn read_table(
        &self,
        id: &Identity,
        feed: FeedKey,
        table: RunRef,
        limit: usize,
    ) -> Result<Vec<StorePath>, String> {
        let pages = futures::stream::iter(table.first_block..table.end_block().unwrap_or(0))
            .map(|block| async move {
                let bytes = self
                    .block(feed, block)
                    .await
                    .map_err(|e| format!("block {block} of the generations feed: {e}"))?;
                let page = match Record::decode(&bytes) {
                    Ok(Record::RunPage(p)) => p,
                    Ok(r) => {
                        return Err(format!(
                            "block {block} of the generations feed is {}, not a page of a table",
                            r.kind_name()
                        ))
                    }
                    Err(e) => return Err(format!("block {block} of the generations feed: {e}")),
                };
                table
                    .check_page(block, &page)
                    .map_err(|e| format!("block {block} of the generations feed: {e}"))?;
                Ok(page.entries)
            })
            .buffered(TABLE_CONCURRENCY);
        if table.entries > limit as u64 {
            return Err(format!(
                "the generation lists {} paths, more than the {limit} a node follows of one channel",
                table.entries
            ));
        }
        futures::pin_mut!(pages);
        let mut entries = Vec::new();
        while let Some(page) = pages.next().await {
            entries.extend(page?);
            // Pages holding more than the table says are a lie.
            if entries.len() as u64 > table.entries {
                return Err(format!(
                    "the table's pages hold more than the {} entries it has",
                    table.entries
                ));
            }
        }
        let publishers = self.node().publishers();
        let manifest = match publishers.runs(id).map(|r| r.manifest) {
            Some(ManifestState::At(_, m)) => Some(m),
            _ => None,
        };
        let found = futures::stream::iter(entries)
            .map(|entry| {
                let manifest = manifest.clone();
                async move {
                    let hash = nixbase32::encode(&entry.hash);
                    // Held already, as this publisher lists it.
                    if let Some(p) = publishers.path_by_hash(&hash) {
                        if publishers.references_listed(&id.to_bytes(), &p).is_some() {
                            return Ok(Some(p));
                        }
                    }
                    // An index read whole lists every path: one it does not
                    // list yet is not there yet.
                    let Some(m) = manifest else {
                        return Ok(None);
                    };
                    self.fetch_entry(id, &m, &entry, &mut Cost::default())
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            })
            .buffer_unordered(TABLE_CONCURRENCY);
        futures::pin_mut!(found);
        // What could not be fetched now is left out (the caller reads the
        // table again later: it is not whole), one failure logged.
        let mut out = Vec::new();
        let mut failed = 0u64;
        while let Some(p) = found.next().await {
            match p {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e) => {
                    if failed == 0 {
                        warn!(publisher = %id, "a path of a generation's table could not be read (others may follow): {e}");
                    }
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            debug!(publisher = %id, failed, "paths of a generation's table not read this time");
        }
        Ok(out)
    }
}
