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
use std::sync::Arc;
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
use super::supply::{Peers, Replica, Supplier, Web};
use super::{ByteRange, PathError, Sources, Timing};
use crate::node::Node;
use crate::publishers::Found;
use hypernar_feed::format::identity::FeedKey;
use hypernar_feed::format::storepath::StorePath;
use hypernar_swarm::metrics::Metrics;

/// Blocks got ahead of the one being decrypted, in a NAR stream.
pub const BLOCKS_AHEAD: usize = 4;
/// Longest pause between two tries of a kept (pinned) path.
const KEEP_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The suppliers a reader's blocks come through, as values: the peers
/// (primary), the web seeds (secondary), the feed's replica.
type Chain = Hedge<Arc<dyn Supplier>, Arc<dyn Supplier>, Arc<dyn Replica>>;

/// One path, open for reading: its record and key from the catalog, its
/// data feed opened in the swarm, the suppliers of its blocks.
pub struct PathReader {
    found: Found,
    layout: Layout,
    chain: Suppliers,
    metrics: Arc<Metrics>,
    /// The catalog, told of each use and of reads in progress (so the
    /// path is not evicted while read); none in the middle tests.
    node: Option<Node>,
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
    hedge: Chain,
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
        let chain = Suppliers::of(&sources, found.data_feed).await?;
        let mut reader = PathReader::with_chain(found, chain, sources.metrics().clone())?;
        reader.node = Some(sources.node().clone());
        Ok(reader)
    }

    /// A reader of `found` over the given suppliers: fakes, in the tests
    /// ([`Sources::open`] builds them from the swarm and the web seeds).
    #[cfg(test)]
    pub(crate) fn from_parts(
        found: Found,
        primary: Arc<dyn Supplier>,
        secondary: Arc<dyn Supplier>,
        replica: Arc<dyn Replica>,
        timing: Timing,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PathError> {
        let chain = Suppliers {
            primary,
            secondary,
            replica,
            timing,
        };
        PathReader::with_chain(found, chain, metrics)
    }

    fn with_chain(
        found: Found,
        chain: Suppliers,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PathError> {
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
        Ok(PathReader {
            found,
            layout,
            chain,
            metrics,
            node: None,
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
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Blocks `start..end` of the path's data feed, in order.
    pub fn blocks(&self, start: u64, end: u64) -> Blocks {
        self.chain.blocks(start, end)
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
        let mut block = self.chain.hedge(end).get(at).await?;
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
        if tokio::time::timeout(self.chain.timing.deadline, all)
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
        Keeper(self.chain.clone())
            .keep(&ranges, &self.found.record.store_path)
            .await
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
            .node
            .as_ref()
            .map(|n| n.publishers().reading(&self.record().store_path));
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
        let publishers = self.node.as_ref().map(|n| n.publishers());
        // Not evicted while it is sent (see `node/evict.rs`).
        let _reading = publishers.map(|p| p.reading(&record.store_path));
        while let Some(got) = brx.recv().await {
            let (i, mut block) = got?;
            let s = i - base;
            if let Some(p) = publishers {
                p.touch(&record.store_path);
            }
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

/// The suppliers of one data feed's blocks, as values, and their timing.
#[derive(Clone)]
struct Suppliers {
    primary: Arc<dyn Supplier>,
    secondary: Arc<dyn Supplier>,
    replica: Arc<dyn Replica>,
    timing: Timing,
}

impl Suppliers {
    /// The chain `sources` reads `feed` through: its peers (the hub, which
    /// also holds the replica), hedged with the web seeds.
    async fn of(sources: &Sources, feed: FeedKey) -> Result<Self, PathError> {
        let hub = sources.node().add_feed(feed.verifying_key(), false).await?;
        let web = Web {
            seeds: sources.web_seeds().clone(),
            hub: hub.clone(),
            key: feed.to_bytes(),
            metrics: sources.metrics().clone(),
        };
        Ok(Suppliers {
            primary: Arc::new(Peers(hub.clone())),
            secondary: Arc::new(web),
            replica: Arc::new(Peers(hub)),
            timing: sources.timing(),
        })
    }

    fn hedge(&self, end: u64) -> Chain {
        Hedge::new(
            self.primary.clone(),
            self.secondary.clone(),
            self.replica.clone(),
            end,
            self.timing.patience,
            self.timing.deadline,
        )
    }

    /// Blocks `start..end` in order, the whole range wanted at once.
    fn blocks(&self, start: u64, end: u64) -> Blocks {
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
}

/// Block `index` of `feed`, verified, through the chain a path reader uses
/// (peers hedged with the web seeds, within the sources' deadline).
pub(crate) async fn block_of(
    sources: &Sources,
    feed: FeedKey,
    index: u64,
) -> Result<Vec<u8>, PathError> {
    let chain = Suppliers::of(sources, feed).await?;
    let mut blocks = chain.blocks(index, index + 1);
    match blocks.next().await {
        Some(got) => got.map(|(_, b)| b),
        None => unreachable!("a range of one block yields it"),
    }
}

/// Blocks of one data feed brought here and kept. It needs no path key:
/// a pinned path whose key is not released (yet, or not to this node) is
/// still fetched ahead, as the catalog places its blocks.
pub struct Keeper(Suppliers);

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("timing", &self.0.timing)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// A keeper of the data feed `feed`, through `sources`' chain.
    pub async fn open(sources: &Sources, feed: FeedKey) -> Result<Self, PathError> {
        Ok(Keeper(Suppliers::of(sources, feed).await?))
    }

    /// Brings blocks `ranges` here, trying again with backoff (reset
    /// whenever blocks came) until they all are; returns once they are.
    /// `path` names them in the log.
    pub async fn keep(&self, ranges: &[(u64, u64)], path: &StorePath) {
        let mut backoff = Duration::from_secs(1);
        for &(mut from, end) in ranges {
            while from < end {
                let mut blocks = self.0.blocks(from, end);
                let started = from;
                while let Some(got) = blocks.bring_next().await {
                    match got {
                        Ok(i) => from = i + 1,
                        Err(e) => {
                            if from > started {
                                backoff = Duration::from_secs(1);
                            }
                            debug!(%path, "fetching a kept path; retrying: {e}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(KEEP_BACKOFF_MAX);
                            break;
                        }
                    }
                }
            }
        }
        info!(%path, "pinned path stored");
    }
}

/// Segments `first..=last` of the path hold `range`.
fn segments(range: ByteRange, segment_size: u64) -> (u64, u64) {
    (range.start / segment_size, (range.end - 1) / segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fallback::Continue;
    use crate::sources::hedge::tests::{Behaviour, Fake, FakeFeed};
    use hypernar_feed::format::identity::{FeedKey, PublisherSecret};
    use hypernar_feed::format::narinfo::NarHasher;
    use hypernar_feed::format::record::WrappedKey;
    use hypernar_feed::format::segment::{PathKey, Sealer, MIN_SEGMENT_SIZE};
    use hypernar_feed::format::storepath::StorePath;
    use std::sync::Mutex;

    const SEG: u64 = MIN_SEGMENT_SIZE as u64;
    /// The path's blocks start here in its data feed, as a later path's do.
    const BASE: u64 = 10;

    /// A NAR of five and a half segments, sealed as a publisher would, its
    /// blocks in `feed` (none of them stored here yet).
    fn sealed(feed: &FakeFeed) -> (Found, Vec<u8>) {
        let nar: Vec<u8> = (0..SEG * 11 / 2).map(|i| (i * 7 % 251) as u8).collect();
        let store_path =
            StorePath::parse("/nix/store/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-reader-test").unwrap();
        let key = PathKey::generate();
        let layout = Layout::new(store_path.clone(), nar.len() as u64, SEG as u32).unwrap();
        let mut sealer = Sealer::new(layout.clone(), &key, 1).unwrap();
        let mut content = feed.content.lock().unwrap();
        for (i, chunk) in nar.chunks(SEG as usize).enumerate() {
            content.insert(BASE + i as u64, sealer.seal(i as u64, chunk).unwrap());
        }
        drop(content);
        let mut hasher = NarHasher::new();
        hasher.update(&nar);
        let secret = PublisherSecret::generate();
        let record = PathRecord {
            store_path,
            nar_hash: hasher.finish(),
            nar_size: nar.len() as u64,
            references: vec![],
            deriver: None,
            ca: None,
            sigs: vec![],
            data_feed: 1,
            first_block: BASE,
            block_count: layout.count(),
            segment_size: SEG as u32,
            key_check: key.check(),
            wrapped_key: WrappedKey {
                nonce: [0; 12],
                sealed: vec![0; 48],
            },
        };
        let found = Found {
            publisher: secret.identity(),
            data_feed: FeedKey::from(secret.identity().0),
            record,
            key,
            listing: None,
            member: false,
            check_whole: false,
        };
        (found, nar)
    }

    fn timing() -> Timing {
        Timing {
            patience: Duration::from_secs(1),
            deadline: Duration::from_secs(8),
        }
    }

    fn reader(found: Found, feed: &Arc<FakeFeed>, peers: &Fake, web: &Fake) -> PathReader {
        PathReader::from_parts(
            found,
            Arc::new(peers.clone()),
            Arc::new(web.clone()),
            feed.clone(),
            timing(),
            Arc::default(),
        )
        .unwrap()
    }

    async fn collect(supply: &impl NarSupply, range: ByteRange) -> Result<Vec<u8>, PathError> {
        let (out, r) = crate::sources::fallback::tests::collect(supply, range).await;
        r.map(|()| out)
    }

    fn range(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[tokio::test(start_paused = true)]
    async fn every_range_of_the_nar_is_exactly_its_bytes() {
        let feed = Arc::new(FakeFeed::default());
        let (found, nar) = sealed(&feed);
        let len = nar.len() as u64;
        let peers = Fake::new(&feed, Behaviour::After(Duration::from_millis(3)));
        let web = Fake::new(&feed, Behaviour::Silent).absent();
        let r = reader(found, &feed, &peers, &web);
        for (a, b) in [
            (0, len),
            (0, 1),
            (SEG - 1, SEG + 1),
            (SEG, 2 * SEG),
            (len - 1, len),
            (100, len - 100),
            (5 * SEG, len),
        ] {
            let got = collect(&r, range(a, b)).await.unwrap();
            assert!(got == nar[a as usize..b as usize], "{a}..{b}");
        }
        // Only the path's own blocks were asked for.
        assert!(peers
            .asks()
            .iter()
            .all(|&(s, e, _)| s >= BASE && e <= BASE + 6));
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_nar_is_checked_and_a_block_that_does_not_open_fails_it() {
        let feed = Arc::new(FakeFeed::default());
        let (found, nar) = sealed(&feed);
        // Every block here already: under the paused clock, a timer would
        // never fire while write_nar's writer thread (spawn_blocking)
        // waits, since tokio does not advance paused time then.
        feed.store(BASE..BASE + 6);
        let peers = Fake::new(&feed, Behaviour::Silent);
        let web = Fake::new(&feed, Behaviour::Silent).absent();
        let r = reader(found, &feed, &peers, &web);
        let (out, summary) = r.write_nar(Vec::new()).await.unwrap();
        assert!(out == nar);
        assert_eq!(summary.nar_bytes, nar.len() as u64);
        // A flipped byte in one block (a store that lies): the read fails.
        feed.content.lock().unwrap().get_mut(&(BASE + 3)).unwrap()[40] ^= 1;
        let err = r.write_nar(Vec::new()).await.unwrap_err();
        assert!(matches!(err, PathError::Nar(_)), "{err}");
        let err = collect(&r, range(0, nar.len() as u64)).await.unwrap_err();
        assert!(matches!(err, PathError::Segment(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_peer_every_block_comes_from_the_web_seed() {
        let feed = Arc::new(FakeFeed::default());
        let (found, nar) = sealed(&feed);
        let peers = Fake::new(&feed, Behaviour::Silent).absent();
        let web = Fake::new(&feed, Behaviour::After(Duration::from_millis(5)));
        let r = reader(found, &feed, &peers, &web);
        let got = collect(&r, range(0, nar.len() as u64)).await.unwrap();
        assert!(got == nar);
        // One ask from the first block, up to the path's end.
        assert_eq!(
            web.asks()
                .iter()
                .map(|&(s, e, _)| (s, e))
                .collect::<Vec<_>>(),
            [(BASE, BASE + 6)]
        );
    }

    /// The NAR's bytes as an upstream would stream them.
    struct Upstream {
        nar: Vec<u8>,
        asked: Mutex<Vec<ByteRange>>,
    }

    impl NarSupply for Upstream {
        fn stream<'a>(
            &'a self,
            range: ByteRange,
            sink: &'a Sink,
        ) -> BoxFuture<'a, Result<(), PathError>> {
            self.asked.lock().unwrap().push(range);
            Box::pin(async move {
                let bytes = self.nar[range.start as usize..range.end as usize].to_vec();
                let _ = sink.send(Bytes::from(bytes)).await;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_swarm_hands_over_to_the_upstream_at_the_byte_reached() {
        let feed = Arc::new(FakeFeed::default());
        let (found, nar) = sealed(&feed);
        // Two blocks are here; the peers send nothing more; no web seed.
        feed.store(BASE..BASE + 2);
        let peers = Fake::new(&feed, Behaviour::Silent);
        let web = Fake::new(&feed, Behaviour::Silent).absent();
        let len = nar.len() as u64;
        let chain = Continue {
            first: reader(found, &feed, &peers, &web),
            then: Some(Upstream {
                nar: nar.clone(),
                asked: Mutex::default(),
            }),
        };
        let t = tokio::time::Instant::now();
        let got = collect(&chain, range(10, len)).await.unwrap();
        assert!(got == nar[10..]);
        assert_eq!(t.elapsed(), timing().deadline, "after one block's deadline");
        assert_eq!(
            *chain.then.as_ref().unwrap().asked.lock().unwrap(),
            [range(2 * SEG, len)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_brings_every_block_and_prefetch_only_what_was_asked() {
        let feed = Arc::new(FakeFeed::default());
        let (found, _) = sealed(&feed);
        let peers = Fake::new(&feed, Behaviour::After(Duration::from_millis(2)));
        let web = Fake::new(&feed, Behaviour::Silent).absent();
        let r = reader(found, &feed, &peers, &web);
        r.prefetch(1, 3).await;
        let here: std::collections::BTreeSet<u64> =
            feed.stored.lock().unwrap().iter().copied().collect();
        assert_eq!(here.into_iter().collect::<Vec<_>>(), [BASE + 1, BASE + 2]);
        r.keep().await;
        let here = feed.stored.lock().unwrap().len();
        assert_eq!(here, 6);
    }

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
