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

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use crate::sources::fallback::{Continue, NarSupply, Sink, UpstreamNar};
use crate::sources::upstream::{StreamSlot, UpstreamInfo, Upstreams};
use crate::sources::{ByteRange, PathError, PathReader};

/// Decrypted chunks queued for the client.
pub const CHUNKS_AHEAD: usize = 2;

/// The body of a NAR response: chunks from the producer task, an error
/// (which makes hyper cut the connection) if it failed.
#[derive(Debug)]
pub struct NarBody {
    rx: mpsc::Receiver<Result<Bytes, PathError>>,
    served: prometheus_client::metrics::counter::Counter,
    remaining: u64,
    _producer: AbortOnDropHandle<()>,
}

impl Body for NarBody {
    type Data = Bytes;
    type Error = PathError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PathError>>> {
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

/// Starts streaming `range` of a listed path's NAR through its reader:
/// verified blocks from the swarm and the web seeds, and (if there are
/// upstreams) the rest from upstream should a block not come in time.
pub fn stream(reader: PathReader, range: ByteRange, upstreams: Arc<Upstreams>) -> NarBody {
    let path = reader.record().store_path.to_string();
    let metrics = reader.metrics().clone();
    let served = metrics.served.clone();
    let then = (!upstreams.is_empty()).then(|| UpstreamNar {
        upstreams,
        record: reader.record().clone(),
        metrics,
    });
    body(
        range,
        path,
        served,
        Continue {
            first: reader,
            then,
        },
    )
}

/// Starts streaming `range` of a pulled-through NAR from its upstream.
/// `slot` is held until the stream ends.
pub fn stream_upstream(
    metrics: &Arc<hypernar_swarm::metrics::Metrics>,
    upstreams: Arc<Upstreams>,
    u: UpstreamInfo,
    range: ByteRange,
    slot: StreamSlot,
) -> NarBody {
    let path = u.info.store_path.to_string();
    let slot = std::sync::Mutex::new(Some(slot));
    body(
        range,
        path,
        metrics.served.clone(),
        PullThrough {
            upstreams,
            u,
            metrics: metrics.clone(),
            slot,
        },
    )
}

/// A pulled-through NAR as a supplier: one stream, holding its slot.
struct PullThrough {
    upstreams: Arc<Upstreams>,
    u: UpstreamInfo,
    metrics: Arc<hypernar_swarm::metrics::Metrics>,
    slot: std::sync::Mutex<Option<StreamSlot>>,
}

impl NarSupply for PullThrough {
    fn stream<'a>(
        &'a self,
        range: ByteRange,
        sink: &'a Sink,
    ) -> futures::future::BoxFuture<'a, Result<(), PathError>> {
        let slot = self.slot.lock().expect("slot lock").take();
        Box::pin(async move {
            let Some(slot) = slot else {
                return Ok(()); // streamed once already
            };
            Ok(self
                .upstreams
                .stream_nar(&self.u, range, sink, &self.metrics, slot, true)
                .await?)
        })
    }
}

/// A body fed by `supply` on a task of its own; its error, if any, is
/// logged and cuts the transfer.
fn body(
    range: ByteRange,
    path: String,
    served: prometheus_client::metrics::counter::Counter,
    supply: impl NarSupply + 'static,
) -> NarBody {
    let (sink, rx) = Sink::new(CHUNKS_AHEAD);
    let task = tokio::spawn(async move {
        if let Err(e) = supply.stream(range, &sink).await {
            warn!(%path, "NAR transfer cut: {e}");
            sink.fail(e).await;
        }
    });
    NarBody {
        rx,
        served,
        remaining: range.end - range.start,
        _producer: AbortOnDropHandle::new(task),
    }
}
