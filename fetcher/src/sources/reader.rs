//! The path reader: the one way every front-end reads a path — the HTTP
//! API (a byte range as a body), the mount (a segment at a time), pins
//! (every block kept), `hypernar fetch` (the whole NAR, checked).
//!
//! Every block comes through the same chain: stored here, else from the
//! peers through the feed's hub, hedged with the web seeds
//! ([`super::hedge`]), within the deadline of the reader's
//! [`super::Timing`]; each is verified against the publisher's signed
//! tree before it is stored, then authenticated and decrypted under the
//! path's key here. The upstream stands behind the whole chain only where
//! a NAR is streamed ([`super::fallback`]).

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use hypernar_feed::format::record::PathRecord;
use hypernar_feed::format::segment::{Layout, Opener};
use hypernar_feed::reader::{BlockSource, BoxError, ReadSummary};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info};

use super::fallback::{NarSupply, Sink};
use super::hedge::Hedge;
use super::supply::{Peers, Supplier, Web};
use super::{ByteRange, PathError, Sources};
use crate::publishers::Found;
use hypernar_swarm::hub::HubHandle;

/// Blocks got ahead of the one being decrypted, in a NAR stream.
pub const BLOCKS_AHEAD: usize = 4;
/// Longest pause between two tries of a kept (pinned) path.
const KEEP_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One path, open for reading: its record and key from the catalog, its
/// data feed opened in the swarm.
pub struct PathReader {
    sources: Sources,
    found: Found,
    hub: HubHandle,
    layout: Layout,
}

impl std::fmt::Debug for PathReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathReader")
            .field("path", &self.found.record.store_path)
            .finish_non_exhaustive()
    }
}

/// The blocks of one feed in order, from a hedge, with the whole range
/// wanted of the peers at once so the hub can spread it over them (rarest
/// first rather than in reading order). Dropping it withdraws the want.
pub struct Blocks {
    hedge: Hedge<Peers, Web, Peers>,
    next: u64,
    end: u64,
    _ahead: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Blocks {
    /// The next block and its feed index; `None` past the end.
    pub async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), PathError>> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        let got = self.hedge.get(index).await;
        self.next += 1;
        Some(got.map(|b| (index, b)))
    }

    /// Brings the next block here without reading it; its index, or
    /// `None` past the end.
    pub async fn bring_next(&mut self) -> Option<Result<u64, PathError>> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        let got = self.hedge.bring(index).await;
        self.next += 1;
        Some(got.map(|()| index))
    }
}

impl BlockSource for Blocks {
    async fn block(&mut self, index: u64) -> Result<Vec<u8>, BoxError> {
        Ok(self.hedge.get(index).await?)
    }
}

impl PathReader {
    pub(super) async fn open(sources: Sources, found: Found) -> Result<Self, PathError> {
        let record = &found.record;
        let layout = record.layout()?;
        if layout.count() != record.block_count {
            return Err(PathError::Layout {
                nar_size: record.nar_size,
                segment_size: record.segment_size,
                computed: layout.count(),
                recorded: record.block_count,
            });
        }
        let hub = sources
            .node()
            .add_feed(found.data_feed.verifying_key(), false)
            .await?;
        Ok(PathReader {
            sources,
            found,
            hub,
            layout,
        })
    }

    /// What the catalog said of the path.
    pub fn found(&self) -> &Found {
        &self.found
    }

    pub fn record(&self) -> &PathRecord {
        &self.found.record
    }

    /// The node's counters.
    pub fn metrics(&self) -> &std::sync::Arc<hypernar_swarm::metrics::Metrics> {
        self.sources.metrics()
    }

    /// Blocks `start..end` of the path's data feed, in order.
    pub fn blocks(&self, start: u64, end: u64) -> Blocks {
        let hedge = self.hedge(end);
        let ask = hedge.primary().bring(start, end);
        Blocks {
            hedge,
            next: start,
            end,
            _ahead: AbortOnDropHandle::new(tokio::spawn(async move {
                let _ = ask.await;
            })),
        }
    }

    fn hedge(&self, end: u64) -> Hedge<Peers, Web, Peers> {
        let timing = self.sources.timing();
        let web = Web {
            seeds: self.sources.web_seeds().clone(),
            hub: self.hub.clone(),
            key: self.found.data_feed.to_bytes(),
            metrics: self.sources.metrics().clone(),
        };
        Hedge::new(
            Peers(self.hub.clone()),
            web,
            Peers(self.hub.clone()),
            end,
            timing.patience,
            timing.deadline,
        )
    }

    /// The feed indices of the path's segments.
    fn span(&self) -> (u64, u64) {
        let r = &self.found.record;
        (r.first_block, r.first_block.saturating_add(r.block_count))
    }

    /// Segment `index` of the path, decrypted.
    pub async fn segment(&self, index: u64) -> Result<Vec<u8>, PathError> {
        let record = &self.found.record;
        let (first, end) = self.span();
        let at = first
            .checked_add(index)
            .filter(|&b| b < end)
            .ok_or(PathError::Block {
                index,
                source: super::SupplyError::PastEnd {
                    length: record.block_count,
                },
            })?;
        let mut block = self.hedge(end).get(at).await?;
        let mut opener = Opener::new(self.layout.clone(), &self.found.key)?;
        let mut plain = Vec::with_capacity(record.segment_size as usize);
        opener.open_into(index, &mut block, &mut plain)?;
        Ok(plain)
    }

    /// Brings segments `from..to` here ahead of their reads, all within
    /// one deadline (an abandoned read-ahead does not keep blocks wanted
    /// for ever).
    pub async fn prefetch(&self, from: u64, to: u64) {
        let (first, end) = self.span();
        let to = to.min(self.found.record.block_count);
        if from >= to {
            return;
        }
        let mut blocks = self.blocks(first + from, (first + to).min(end));
        let all = async {
            while let Some(got) = blocks.bring_next().await {
                if let Err(e) = got {
                    debug!(path = %self.found.record.store_path, "read-ahead stopped: {e}");
                    return;
                }
            }
        };
        if tokio::time::timeout(self.sources.timing().deadline, all)
            .await
            .is_err()
        {
            debug!(from, to, "read-ahead not complete within the deadline");
        }
    }

    /// Brings every block of the path here, its listing's too (a pinned
    /// path), trying again with backoff until they all are; returns once
    /// they are.
    pub async fn keep(&self) {
        let mut ranges = vec![self.span()];
        if let Some(l) = &self.found.listing {
            ranges.push((l.first_block, l.first_block.saturating_add(l.block_count)));
        }
        let mut backoff = Duration::from_secs(1);
        for (mut from, end) in ranges {
            while from < end {
                let mut blocks = self.blocks(from, end);
                while let Some(got) = blocks.bring_next().await {
                    match got {
                        Ok(i) => from = i + 1,
                        Err(e) => {
                            debug!(path = %self.found.record.store_path, "fetching a kept path; retrying: {e}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(KEEP_BACKOFF_MAX);
                            break;
                        }
                    }
                }
            }
        }
        info!(path = %self.found.record.store_path, "pinned path stored");
    }

    /// The whole NAR into `out`: every segment verified, authenticated and
    /// decrypted, the whole checked against its NarHash.
    pub async fn write_nar<W: Write + Send + 'static>(
        &self,
        out: W,
    ) -> Result<(W, ReadSummary), PathError> {
        let (first, end) = self.span();
        let mut blocks = self.blocks(first, end);
        let _reading = self
            .sources
            .node()
            .publishers()
            .reading(&self.record().store_path);
        Ok(
            hypernar_feed::reader::write_nar(&mut blocks, self.record(), &self.found.key, out)
                .await?,
        )
    }

    /// Streams `range` of the NAR into `sink`, a segment at a time as its
    /// block arrives (fetching runs ahead of decrypting by
    /// [`BLOCKS_AHEAD`] blocks). Ends early, with no error, when the
    /// sink's reader goes away.
    pub async fn stream(&self, range: ByteRange, sink: &Sink) -> Result<(), PathError> {
        let record = &self.found.record;
        if range.start >= range.end || range.end > record.nar_size {
            return Ok(());
        }
        let seg = u64::from(record.segment_size);
        let (first, last) = segments(range, seg);
        let base = record.first_block;
        let (btx, mut brx) = mpsc::channel(BLOCKS_AHEAD);
        let mut blocks = self.blocks(base + first, base + last + 1);
        let _getter = AbortOnDropHandle::new(tokio::spawn(async move {
            while let Some(got) = blocks.next().await {
                let failed = got.is_err();
                if btx.send(got).await.is_err() || failed {
                    break;
                }
            }
        }));
        let mut opener = Opener::new(self.layout.clone(), &self.found.key)?;
        let publishers = self.sources.node().publishers();
        // Not evicted while it is sent (see `node/evict.rs`).
        let _reading = publishers.reading(&record.store_path);
        while let Some(got) = brx.recv().await {
            let (i, mut block) = got?;
            let s = i - base;
            publishers.touch(&record.store_path);
            let (op, plain) = tokio::task::spawn_blocking(move || {
                let mut plain = Vec::with_capacity(seg as usize);
                let r = opener.open_into(s, &mut block, &mut plain);
                (opener, r.map(|()| plain))
            })
            .await
            .expect("segment opener panicked");
            opener = op;
            let plain = Bytes::from(plain?);
            let seg_start = s * seg;
            let lo = range.start.max(seg_start) - seg_start;
            let hi = range.end.min(seg_start + plain.len() as u64) - seg_start;
            if sink
                .send(plain.slice(lo as usize..hi as usize))
                .await
                .is_err()
            {
                debug!(path = %record.store_path, "client went away");
                return Ok(());
            }
            if s == last {
                break;
            }
        }
        Ok(())
    }
}

impl NarSupply for PathReader {
    fn stream<'a>(
        &'a self,
        range: ByteRange,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), PathError>> {
        Box::pin(PathReader::stream(self, range, sink))
    }
}

/// Segments `first..=last` of the path hold `range`.
fn segments(range: ByteRange, segment_size: u64) -> (u64, u64) {
    (range.start / segment_size, (range.end - 1) / segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_a_range() {
        let r = |start, end| ByteRange { start, end };
        assert_eq!(segments(r(0, 1), 100), (0, 0));
        assert_eq!(segments(r(0, 100), 100), (0, 0));
        assert_eq!(segments(r(0, 101), 100), (0, 1));
        assert_eq!(segments(r(99, 101), 100), (0, 1));
        assert_eq!(segments(r(100, 101), 100), (1, 1));
        assert_eq!(segments(r(250, 1000), 100), (2, 9));
    }
}
