//! A NAR (or a byte range of it) as an HTTP body, streamed as its blocks
//! arrive: each block verified against the publisher's tree by the hub,
//! then authenticated and decrypted here, then sent.
//!
//! Two tasks per response: one gets blocks from the feed's hub (which
//! fetches them from peers, read-ahead over the whole range), one opens
//! them and feeds the body. Both channels are small, so a response holds
//! at most [`BLOCKS_AHEAD`] + [`CHUNKS_AHEAD`] + 2 segments in memory
//! whatever the NAR's size. Dropping the body (the client went away)
//! aborts both tasks, and with them the hub wants.
//!
//! The NAR's SHA-256 is not computed again here: each segment is bound to
//! the path, its position and the path's length by its authentication tag,
//! under a key the signed index commits to, so the bytes are exactly what
//! the trusted publisher sealed (after checking them against the NarHash),
//! and Nix checks the NarHash of every NAR it receives anyway. Without
//! SHA-NI that second hash halved the throughput (docs/benchmarks.md).
//! Bytes from an upstream, which nothing else vouches for, are hashed
//! (`upstream.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http_body::{Body, Frame, SizeHint};
use hypernar_feed::format::segment::{Opener, SegmentError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::route::ByteRange;
use crate::hub::{FetchError, HubHandle};
use crate::metrics::Metrics;
use crate::node::{Node, NodeError};
use crate::publishers::Found;
use crate::upstream::{UpstreamError, UpstreamInfo, Upstreams};
use crate::webseed::{WebSeeds, BLOCKS_PER_REQUEST};
use hypernar_feed::store::StoreError;

/// Blocks got from the hub ahead of the one being decrypted.
pub const BLOCKS_AHEAD: usize = 4;
/// Decrypted chunks queued for the client.
pub const CHUNKS_AHEAD: usize = 2;

/// Why a NAR stream ended early. The client sees only a cut transfer;
/// this goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum NarStreamError {
    #[error("block {index} did not arrive within {deadline:?}")]
    Deadline { index: u64, deadline: Duration },
    #[error("fetching block {index}: {source}")]
    Fetch {
        index: u64,
        #[source]
        source: FetchError,
    },
    #[error("opening the data feed: {0}")]
    Node(#[from] NodeError),
    #[error("the index record does not match its segment layout: {0}")]
    Layout(String),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The body of a NAR response: chunks from the producer task, an error
/// (which makes hyper cut the connection) if it failed.
#[derive(Debug)]
pub struct NarBody {
    rx: mpsc::Receiver<Result<Bytes, NarStreamError>>,
    served: prometheus_client::metrics::counter::Counter,
    remaining: u64,
    _producer: AbortOnDrop,
}

impl Body for NarBody {
    type Data = Bytes;
    type Error = NarStreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, NarStreamError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.served.inc_by(chunk.len() as u64);
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Starts streaming `range` of the NAR of `found`; each block must arrive
/// within `deadline` of being needed (from peers, or web seeds behind
/// them), or the rest comes from `upstreams` (if there are any).
pub fn stream(
    node: Node,
    found: Found,
    range: ByteRange,
    deadline: Duration,
    behind: Behind,
    upstreams: Arc<Upstreams>,
) -> NarBody {
    let path = found.record.store_path.to_string();
    let served = node.metrics().served.clone();
    body(range, path, served, move |tx| async move {
        produce(node, found, range, deadline, behind, &upstreams, &tx).await
    })
}

/// Starts streaming `range` of a pulled-through NAR from its upstream.
/// `slot` is held until the stream ends.
pub fn stream_upstream(
    node: &Node,
    upstreams: Arc<Upstreams>,
    u: UpstreamInfo,
    range: ByteRange,
    slot: crate::upstream::StreamSlot,
) -> NarBody {
    let path = u.info.store_path.to_string();
    let metrics = node.metrics().clone();
    body(range, path, metrics.served.clone(), move |tx| async move {
        Ok(upstreams.stream_nar(&u, range, &tx, &metrics, slot).await?)
    })
}

/// A body fed by `producer`; its error, if any, is logged and cuts the
/// transfer.
fn body<F, Fut>(
    range: ByteRange,
    path: String,
    served: prometheus_client::metrics::counter::Counter,
    producer: F,
) -> NarBody
where
    F: FnOnce(mpsc::Sender<Result<Bytes, NarStreamError>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), NarStreamError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let err_tx = tx.clone();
    let run = producer(tx);
    let task = tokio::spawn(async move {
        if let Err(e) = run.await {
            warn!(%path, "NAR transfer cut: {e}");
            let _ = err_tx.send(Err(e)).await;
        }
    });
    NarBody {
        rx,
        served,
        remaining: range.end - range.start,
        _producer: AbortOnDrop(task),
    }
}

/// Segments `first..=last` of the path hold `range`.
fn segments(range: ByteRange, segment_size: u64) -> (u64, u64) {
    (range.start / segment_size, (range.end - 1) / segment_size)
}

async fn produce(
    node: Node,
    found: Found,
    range: ByteRange,
    deadline: Duration,
    behind: Behind,
    upstreams: &Upstreams,
    tx: &mpsc::Sender<Result<Bytes, NarStreamError>>,
) -> Result<(), NarStreamError> {
    let record = &found.record;
    let layout = record.layout()?;
    if layout.count() != record.block_count {
        return Err(NarStreamError::Layout(format!(
            "{} bytes in segments of {} make {} blocks, the record says {}",
            record.nar_size,
            record.segment_size,
            layout.count(),
            record.block_count
        )));
    }
    if range.start >= range.end || range.end > record.nar_size {
        return Ok(());
    }
    let seg = u64::from(record.segment_size);
    let (first, last) = segments(range, seg);
    let data_key = VerifyingKey::from_bytes(&found.data_feed)
        .map_err(|e| NarStreamError::Layout(format!("data feed key: {e}")))?;
    let hub = node.add_feed(&data_key, false).await?;
    let base = record.first_block;

    let (btx, mut brx) = mpsc::channel(BLOCKS_AHEAD);
    let getter = AbortOnDrop(tokio::spawn(get_blocks(
        hub,
        found.data_feed,
        base,
        first..=last,
        deadline,
        behind,
        btx,
    )));

    let mut opener = Opener::new(layout, &found.key)?;
    let mut next = first;
    // Not evicted while it is sent (see `node/evict.rs`).
    let _reading = node.publishers().reading(&record.store_path);
    while let Some(got) = brx.recv().await {
        let (s, mut block) = match got {
            Ok(b) => b,
            Err(e) if !upstreams.is_empty() => {
                drop(getter);
                let from = range.start.max(next * seg);
                warn!(path = %record.store_path, "{e}; the rest (from byte {from}) comes from upstream");
                let u = upstreams
                    .narinfo(record.store_path.hash_part(), |i| {
                        i.nar_hash == record.nar_hash && i.nar_size == record.nar_size
                    })
                    .await
                    .ok_or(UpstreamError::NoneHas)?;
                let rest = ByteRange {
                    start: from,
                    end: range.end,
                };
                node.metrics()
                    .fallbacks
                    .get_or_create(&crate::metrics::UPSTREAM)
                    .inc();
                // Bounded apart from pull-through, which cannot starve it.
                let Some(slot) = upstreams.stream_slot(None).await else {
                    return Err(UpstreamError::NoneHas.into());
                };
                return Ok(upstreams
                    .stream_nar(&u, rest, tx, node.metrics(), slot)
                    .await?);
            }
            Err(e) => return Err(e),
        };
        next = s + 1;
        node.publishers().touch(&record.store_path);
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
        if tx
            .send(Ok(plain.slice(lo as usize..hi as usize)))
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

/// What stands behind the peers for one stream's blocks.
#[derive(Debug, Clone)]
pub struct Behind {
    pub web_seeds: Arc<WebSeeds>,
    pub metrics: Arc<Metrics>,
    /// How long a block may take from peers before web seeds are asked too.
    pub web_after: Duration,
}

impl Behind {
    /// What stands behind `node`'s peers: its web seeds.
    pub fn of(node: &Node, web_after: Duration) -> Self {
        Behind {
            web_seeds: node.web_seeds().clone(),
            metrics: node.metrics().clone(),
            web_after,
        }
    }
}

/// After the first block a stream had to ask a web seed for, later ones
/// are asked of it this soon: the peers have shown they are slow.
const WEB_AGAIN_AFTER: Duration = Duration::from_millis(100);
/// With no peer on the feed, a block not here within this long is asked of
/// the web seeds (long enough for the hub to answer for a stored block).
const WEB_WITHOUT_PEERS_AFTER: Duration = Duration::from_millis(50);

/// Gets blocks `base + segments` in order into `out`, wanting the
/// whole range at once so the hub can spread it over peers. A block that
/// takes longer than `behind.web_after` is also asked of the web seeds (a
/// hedge: whichever verifies first is stored); past `deadline` the stream
/// fails over to upstream.
async fn get_blocks(
    hub: HubHandle,
    key: [u8; 32],
    base: u64,
    segments: std::ops::RangeInclusive<u64>,
    deadline: Duration,
    behind: Behind,
    out: mpsc::Sender<Result<(u64, Vec<u8>), NarStreamError>>,
) {
    let (first, last) = (*segments.start(), *segments.end());
    let ahead = {
        let hub = hub.clone();
        AbortOnDrop(tokio::spawn(async move {
            let _ = hub.want(base + first, base + last + 1).await;
        }))
    };
    let mut getter = BlockGetter::new(hub, key, base + last + 1, behind);
    for s in first..=last {
        let index = base + s;
        let got = getter.get(index, deadline).await.map(|b| (s, b));
        let failed = got.is_err();
        if out.send(got).await.is_err() || failed {
            break;
        }
    }
    drop(getter);
    drop(ahead);
}

/// Gets verified blocks of one feed, one at a time, from peers through the
/// hub, hedging with the web seeds when peers are slow: a block that takes
/// longer than `behind.web_after` (50 ms when no peer has the feed open)
/// is also asked of the web seeds with the blocks after it, up to `end`
/// (whichever verifies first is stored).
pub(crate) struct BlockGetter {
    hub: HubHandle,
    key: [u8; 32],
    end: u64,
    behind: Behind,
    web_after: Duration,
    hedge: Option<AbortOnDrop>,
}

impl BlockGetter {
    pub(crate) fn new(hub: HubHandle, key: [u8; 32], end: u64, behind: Behind) -> Self {
        BlockGetter {
            web_after: behind.web_after,
            hub,
            key,
            end,
            behind,
            hedge: None,
        }
    }

    /// Block `index`, or an error once `deadline` has passed without it.
    pub(crate) async fn get(
        &mut self,
        index: u64,
        deadline: Duration,
    ) -> Result<Vec<u8>, NarStreamError> {
        let hub = &self.hub;
        let web = !self.behind.web_seeds.is_empty();
        let started = tokio::time::Instant::now();
        let until = started + deadline;
        let mut hedged = false;
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(NarStreamError::Deadline { index, deadline });
            }
            // With no peer on the feed, nothing but the web seed will come:
            // ask it at once (after a moment for a block stored here).
            let after = if hub.state().borrow().peers == 0 {
                self.web_after.min(WEB_WITHOUT_PEERS_AFTER)
            } else {
                self.web_after
            };
            let wait_until = if web && !hedged {
                (started + after).min(until)
            } else {
                until
            };
            match tokio::time::timeout_at(wait_until, hub.want(index, index + 1)).await {
                Ok(Ok(())) => match hub.get(index).await {
                    // Cleared (evicted) between the want and the read:
                    // want it again, within the same deadline.
                    Err(FetchError::Store { source, .. })
                        if matches!(*source, StoreError::MissingBlock { .. }) =>
                    {
                        debug!(
                            index,
                            "a block went between its want and its read; wanting it again"
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    got => return got.map_err(|source| NarStreamError::Fetch { index, source }),
                },
                // The hub does not know the feed that far (no peer told
                // it): a web seed can upgrade it.
                Ok(Err(FetchError::PastEnd { .. })) if web && !hedged => {
                    hedged = true;
                    let to = (index + BLOCKS_PER_REQUEST).min(self.end);
                    let r = tokio::time::timeout_at(
                        until,
                        self.behind.web_seeds.fetch(
                            hub,
                            &self.key,
                            index,
                            to,
                            &self.behind.metrics,
                        ),
                    )
                    .await;
                    if let Ok(Err(e)) = r {
                        debug!(index, "web seed: {e}");
                    }
                }
                Ok(Err(source)) => return Err(NarStreamError::Fetch { index, source }),
                Err(_) if web && !hedged => {
                    hedged = true;
                    self.web_after = WEB_AGAIN_AFTER;
                    let (hub, key, seeds, metrics) = (
                        hub.clone(),
                        self.key,
                        self.behind.web_seeds.clone(),
                        self.behind.metrics.clone(),
                    );
                    let to = (index + BLOCKS_PER_REQUEST).min(self.end);
                    self.hedge = Some(AbortOnDrop(tokio::spawn(async move {
                        if let Err(e) = seeds.fetch(&hub, &key, index, to, &metrics).await {
                            debug!(index, "web seed: {e}");
                        }
                    })));
                }
                Err(_) => {}
            }
        }
    }
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
