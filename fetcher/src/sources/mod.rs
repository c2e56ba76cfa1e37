//! The sources floor: where verified bytes of a path come from.
//!
//! Byte sources are values, not control flow:
//!
//! - [`supply`]: one trait, [`Supplier`] — "bring blocks `start..end` of
//!   this feed here, verified" — implemented by the peers (through the
//!   feed's hub) and by the web seeds ([`webseed`]), and [`Replica`], the
//!   feed's local copy the blocks are read from once brought.
//! - [`hedge`]: a combinator over two suppliers, the second asked when the
//!   first is slow; its timing policy is a pure function ([`hedge::step`]).
//! - [`reader`]: the one [`PathReader`] every front-end uses (the HTTP API,
//!   the mount, pins, `hypernar fetch`): open a path, read a segment,
//!   stream a byte range, write the whole NAR, prefetch, keep.
//! - [`fallback`]: the upstream is a NAR-level supplier (it cannot give
//!   verified blocks): [`fallback::Continue`] goes on from the byte the
//!   swarm reached.
//! - [`listing`]: a path's NAR listing, read through the path reader.
//!
//! This floor imports the swarm and the catalog below it (`node`, `hub`,
//! `publishers`), never a front-end (`http`, `mount`, `pins`).

pub mod fallback;
mod generations;
pub mod hedge;
pub mod listing;
pub mod lookup;
pub mod passthrough;
pub mod reader;
pub mod supply;
pub mod upstream;
pub mod webseed;

use std::sync::Arc;
use std::time::Duration;

use hypernar_feed::format::listing::ListingError;
use hypernar_feed::format::segment::SegmentError;
use hypernar_feed::format::storepath::StorePath;

use crate::node::{Node, SwarmError};
use crate::publishers::{Found, NotFound};
use hypernar_swarm::metrics::Metrics;
pub use reader::PathReader;
pub use supply::{Replica, Supplier, SupplyError};
use upstream::{UpstreamError, Upstreams};
use webseed::WebSeeds;

/// A byte range of a NAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
}

/// Why a path's bytes could not be had: the one error of this floor.
/// Each variant carries its typed source, so a caller (the HTTP API's
/// status mapping, the mount's errno) decides on the kind, not on text.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The catalog cannot give the path (not listed, no key, not in a set).
    #[error(transparent)]
    NotReady(#[from] NotFound),
    /// Opening the path's data feed in the swarm failed.
    #[error("opening the data feed: {0}")]
    Open(#[from] SwarmError),
    /// The record's block count does not match its sizes.
    #[error(
        "the index record does not match its segment layout: {nar_size} bytes in segments \
         of {segment_size} make {computed} blocks, the record says {recorded}"
    )]
    Layout {
        nar_size: u64,
        segment_size: u32,
        computed: u64,
        recorded: u64,
    },
    /// A block did not come within the deadline.
    #[error("block {index} did not arrive within {deadline:?}")]
    Deadline { index: u64, deadline: Duration },
    /// A supplier failed for a block, in a way waiting will not mend.
    #[error("fetching block {index}: {source}")]
    Block {
        index: u64,
        #[source]
        source: SupplyError,
    },
    /// A block did not open under the path's key (authenticated
    /// decryption), or the layout is impossible.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The path's listing does not decode.
    #[error(transparent)]
    Listing(#[from] ListingError),
    /// The whole NAR did not check (its NarHash), or could not be written.
    #[error(transparent)]
    Nar(#[from] hypernar_feed::reader::ReadError),
    /// The upstream, behind the swarm, failed too.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
}

/// How long blocks may take: the hedge's patience and the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a block may take from peers before web seeds are asked too.
    pub patience: Duration,
    /// How long a block may take at all.
    pub deadline: Duration,
}

impl Default for Timing {
    /// The HTTP API's: web seeds after 1 s, the upstream after 8 s.
    fn default() -> Self {
        Timing {
            patience: Duration::from_secs(1),
            deadline: Duration::from_secs(8),
        }
    }
}

struct Shared {
    node: Node,
    web_seeds: Arc<WebSeeds>,
    upstreams: Arc<Upstreams>,
    listings: listing::ListingCache,
}

/// The floor's handle: the swarm and catalog it reads through, the web
/// seeds, the upstreams, and the timing its readers use. Cloning shares
/// it; [`Sources::with_timing`] gives a front-end its own deadline.
#[derive(Clone)]
pub struct Sources {
    shared: Arc<Shared>,
    timing: Timing,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// The sources of `node`'s paths. Nothing runs until the composition
    /// root runs [`Sources::follow`].
    ///
    /// The node's own services (set coverage, eviction) look paths up
    /// through these sources from now on ([`Node::set_resolver`]).
    pub fn new(node: &Node, web_seeds: Arc<WebSeeds>, upstreams: Arc<Upstreams>) -> Self {
        let sources = Sources {
            shared: Arc::new(Shared {
                node: node.clone(),
                web_seeds,
                upstreams,
                listings: listing::cache(),
            }),
            timing: Timing::default(),
        };
        // Weak: the node must not keep its sources alive.
        let weak = Arc::downgrade(&sources.shared);
        node.set_resolver(Arc::new(move |hash: String, only| {
            let weak = weak.clone();
            Box::pin(async move {
                let shared = weak.upgrade()?;
                let sources = Sources {
                    shared,
                    timing: Timing::default(),
                };
                match only {
                    Some(id) => sources.look_up_in(&id, &hash).await,
                    None => sources.look_up_now(&hash).await,
                }
            })
        }));
        let weak = Arc::downgrade(&sources.shared);
        node.set_table_reader(Arc::new(move |id, feed, table, limit| {
            let weak = weak.clone();
            Box::pin(async move {
                let Some(shared) = weak.upgrade() else {
                    return Err("the node is shutting down".into());
                };
                let sources = Sources {
                    shared,
                    timing: Timing::default(),
                };
                sources.read_table(&id, feed, table, limit).await
            })
        }));
        sources
    }

    /// The service that keeps the sources current until `shutdown`: the
    /// node's fully replicated feeds followed on the web seeds as well as
    /// from peers ([`webseed::follow`]), and the web seeds its trusted
    /// publishers record taken in as their indexes replicate.
    pub async fn follow(self, shutdown: crate::node::Shutdown) {
        let node = self.shared.node.clone();
        let seeds = self.shared.web_seeds.clone();
        let learn = async {
            let mut changed = node.publishers().subscribe();
            loop {
                for (publisher, urls) in node.publishers().recorded_web_seeds() {
                    seeds.learn(&publisher, &urls);
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = async {
                tokio::join!(
                    webseed::follow(node.clone(), seeds.clone()),
                    learn,
                    self.follow_manifests(),
                    self.follow_generations()
                )
            } => {}
        }
    }

    /// The same sources, read with `timing`.
    pub fn with_timing(&self, timing: Timing) -> Self {
        Sources {
            shared: self.shared.clone(),
            timing,
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    pub fn web_seeds(&self) -> &Arc<WebSeeds> {
        &self.shared.web_seeds
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.shared.upstreams
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.shared.node.metrics()
    }

    /// Decoded NAR listings, shared by the mount and the HTTP API.
    pub fn listings(&self) -> &listing::ListingCache {
        &self.shared.listings
    }

    /// A reader of the path `found` describes (its data feed opened).
    pub async fn open(&self, found: Found) -> Result<PathReader, PathError> {
        // A publisher's recorded web seeds are known before its first read
        // (the learning task may not have run since its index said so).
        let seeds = self
            .shared
            .node
            .publishers()
            .recorded_web_seeds_of(&found.publisher);
        if let Some(urls) = seeds {
            self.shared
                .web_seeds
                .learn(&found.publisher.to_bytes(), &urls);
        }
        let check_whole = found.check_whole;
        let reader = PathReader::open(self.clone(), found).await?;
        if check_whole {
            self.check_whole(&reader).await?;
        }
        Ok(reader)
    }

    /// Reads a group member's NAR whole and checks it against the signed
    /// NarHash before anything of it is served (its blocks are only as
    /// good as the member). The blocks are then stored here, so serving
    /// reads them again from disk. A NAR that does not check is never
    /// read from that member again.
    async fn check_whole(&self, reader: &PathReader) -> Result<(), PathError> {
        use hypernar_feed::reader::ReadError;
        let found = reader.found();
        match reader.write_nar(std::io::sink()).await {
            Ok(_) => {
                self.shared
                    .node
                    .publishers()
                    .mark_checked(&found.publisher, &found.record);
                Ok(())
            }
            Err(e) => {
                let forged = matches!(
                    &e,
                    PathError::Segment(_)
                        | PathError::Nar(
                            ReadError::NarHash { .. }
                                | ReadError::Segment { .. }
                                | ReadError::WrongKey { .. }
                        )
                );
                if forged {
                    tracing::warn!(
                        member = %found.publisher,
                        path = %found.record.store_path,
                        "a group member's NAR does not match its signed narinfo ({e}); never served from that member"
                    );
                    self.shared
                        .node
                        .publishers()
                        .refuse(&found.publisher, &found.record.store_path);
                }
                Err(e)
            }
        }
    }

    /// A reader of `path`, as the catalog lists it now (looked up in the
    /// runs of publishers whose index is in runs, if it holds no record).
    pub async fn open_path(&self, path: &StorePath) -> Result<PathReader, PathError> {
        self.path_by_hash(path.hash_part()).await;
        let found = self.shared.node.publishers().lookup(path)?;
        self.open(found).await
    }

    /// Waits until `path` is known with its key — as index and key feeds
    /// replicate, or by lookup in runs once their manifests are read — or
    /// `deadline` passes; then says why not.
    pub async fn wait_path(&self, path: &StorePath, deadline: Duration) -> Result<Found, NotFound> {
        let publishers = self.shared.node.publishers();
        let until = tokio::time::Instant::now() + deadline;
        let mut changed = publishers.subscribe();
        loop {
            changed.mark_unchanged();
            self.path_by_hash(path.hash_part()).await;
            let why = match publishers.lookup(path) {
                Ok(found) => return Ok(found),
                Err(why) => why,
            };
            let wait = tokio::time::timeout_at(until, changed.changed()).await;
            if !matches!(wait, Ok(Ok(()))) {
                return publishers.lookup(path).or(Err(why));
            }
        }
    }
}
