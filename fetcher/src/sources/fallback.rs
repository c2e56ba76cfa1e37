//! The NAR-level fallback: the upstream cannot give verified blocks, only a
//! NAR checked whole against its NarHash, so it stands behind the block
//! chain as a supplier of NAR bytes. [`Continue`] streams a range from its
//! first supplier and, should that fail, the rest from its second, from the
//! byte the first reached ([`Sink::sent`] counts them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use hypernar_feed::format::record::PathRecord;
use tokio::sync::mpsc;
use tracing::warn;

use super::upstream::{UpstreamError, Upstreams};
use super::{ByteRange, PathError};
use hypernar_swarm::metrics::{Metrics, UPSTREAM};

/// The reader of a sink is gone (the client went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reader went away")]
pub struct Gone;

/// Where a NAR stream's bytes go: a small channel to the response body,
/// counting what was sent so a fallback can go on from there.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Result<Bytes, PathError>>,
    sent: Arc<AtomicU64>,
}

impl Sink {
    /// A sink holding at most `capacity` chunks, and its reader.
    pub fn new(capacity: usize) -> (Sink, mpsc::Receiver<Result<Bytes, PathError>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Sink {
                tx,
                sent: Arc::default(),
            },
            rx,
        )
    }

    /// Sends the next bytes.
    pub async fn send(&self, bytes: Bytes) -> Result<(), Gone> {
        let n = bytes.len() as u64;
        self.tx.send(Ok(bytes)).await.map_err(|_| Gone)?;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// [`Sink::send`] from a blocking thread.
    pub fn blocking_send(&self, bytes: Bytes) -> Result<(), Gone> {
        let n = bytes.len() as u64;
        self.tx.blocking_send(Ok(bytes)).map_err(|_| Gone)?;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the stream with `e` (the body cuts the transfer).
    pub async fn fail(&self, e: PathError) {
        let _ = self.tx.send(Err(e)).await;
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Streams byte ranges of one path's NAR.
pub trait NarSupply: Send + Sync {
    /// Sends `range` of the NAR into `sink`; `Ok` also when the sink's
    /// reader went away.
    fn stream<'a>(
        &'a self,
        range: ByteRange,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), PathError>>;
}

/// `first`, then (should it fail) `then` from the byte `first` reached.
#[derive(Debug)]
pub struct Continue<A, B> {
    pub first: A,
    pub then: Option<B>,
}

impl<A: NarSupply, B: NarSupply> NarSupply for Continue<A, B> {
    fn stream<'a>(
        &'a self,
        range: ByteRange,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), PathError>> {
        Box::pin(async move {
            let before = sink.sent();
            let e = match self.first.stream(range, sink).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(then) = &self.then else {
                return Err(e);
            };
            if sink.is_closed() {
                return Ok(());
            }
            let from = range.start + (sink.sent() - before);
            warn!("{e}; the rest (from byte {from}) comes from upstream");
            then.stream(
                ByteRange {
                    start: from,
                    end: range.end,
                },
                sink,
            )
            .await
        })
    }
}

/// A listed path's NAR from the upstreams: the narinfo of the first that
/// has the path with the signed index's NarHash and NarSize, the NAR held
/// to both (`upstream.rs`).
#[derive(Debug)]
pub struct UpstreamNar {
    pub upstreams: Arc<Upstreams>,
    pub record: PathRecord,
    pub metrics: Arc<Metrics>,
}

impl NarSupply for UpstreamNar {
    fn stream<'a>(
        &'a self,
        range: ByteRange,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), PathError>> {
        Box::pin(async move {
            let r = &self.record;
            let u = self
                .upstreams
                .narinfo(r.store_path.hash_part(), |i| {
                    i.nar_hash == r.nar_hash && i.nar_size == r.nar_size
                })
                .await
                .ok_or(UpstreamError::NoneHas)?;
            self.metrics.fallbacks.get_or_create(&UPSTREAM).inc();
            // Bounded apart from pull-through, which cannot starve it.
            let Some(slot) = self.upstreams.stream_slot(None).await else {
                return Err(UpstreamError::NoneHas.into());
            };
            Ok(self
                .upstreams
                .stream_nar(&u, range, sink, &self.metrics, slot, false)
                .await?)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A NAR of `len` bytes (byte `i` is `i as u8`); sends chunks of 10 and
    /// fails after `fail_after` bytes, if given; writes down the ranges
    /// asked.
    struct FakeNar {
        fail_after: Option<u64>,
        asked: Mutex<Vec<ByteRange>>,
    }

    impl FakeNar {
        fn new(fail_after: Option<u64>) -> Self {
            FakeNar {
                fail_after,
                asked: Mutex::default(),
            }
        }
    }

    impl NarSupply for FakeNar {
        fn stream<'a>(
            &'a self,
            range: ByteRange,
            sink: &'a Sink,
        ) -> BoxFuture<'a, Result<(), PathError>> {
            self.asked.lock().unwrap().push(range);
            Box::pin(async move {
                let mut at = range.start;
                while at < range.end {
                    if self.fail_after.is_some_and(|f| at - range.start >= f) {
                        return Err(PathError::Deadline {
                            index: at,
                            deadline: std::time::Duration::ZERO,
                        });
                    }
                    let to = (at + 10).min(range.end);
                    let chunk: Vec<u8> = (at..to).map(|i| i as u8).collect();
                    if sink.send(Bytes::from(chunk)).await.is_err() {
                        return Ok(());
                    }
                    at = to;
                }
                Ok(())
            })
        }
    }

    /// What `supply` streams of `range`, and how it ended.
    pub(crate) async fn collect(
        supply: &impl NarSupply,
        range: ByteRange,
    ) -> (Vec<u8>, Result<(), PathError>) {
        let (sink, mut rx) = Sink::new(1024);
        let r = supply.stream(range, &sink).await;
        drop(sink);
        let mut out = Vec::new();
        while let Some(Ok(b)) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        (out, r)
    }

    fn range(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rest_comes_from_the_byte_the_first_reached() {
        let c = Continue {
            first: FakeNar::new(Some(30)),
            then: Some(FakeNar::new(None)),
        };
        let (out, r) = collect(&c, range(5, 95)).await;
        r.unwrap();
        let want: Vec<u8> = (5..95).map(|i| i as u8).collect();
        assert_eq!(out, want);
        assert_eq!(
            *c.then.as_ref().unwrap().asked.lock().unwrap(),
            [range(35, 95)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_that_delivers_leaves_the_second_unasked() {
        let c = Continue {
            first: FakeNar::new(None),
            then: Some(FakeNar::new(None)),
        };
        let (out, r) = collect(&c, range(0, 64)).await;
        r.unwrap();
        assert_eq!(out.len(), 64);
        assert!(c.then.as_ref().unwrap().asked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_behind_the_first_its_error_ends_the_stream() {
        let c: Continue<FakeNar, FakeNar> = Continue {
            first: FakeNar::new(Some(20)),
            then: None,
        };
        let (out, r) = collect(&c, range(0, 64)).await;
        assert!(matches!(r, Err(PathError::Deadline { .. })));
        assert_eq!(out.len(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_gone_is_not_a_reason_to_ask_the_upstream() {
        let c = Continue {
            first: FakeNar::new(Some(0)),
            then: Some(FakeNar::new(None)),
        };
        let (sink, rx) = Sink::new(1024);
        drop(rx);
        c.stream(range(0, 64), &sink).await.unwrap();
        assert!(c.then.as_ref().unwrap().asked.lock().unwrap().is_empty());
    }
}
