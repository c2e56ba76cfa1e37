//! The swarm floor's one error type.
//!
//! Everything the swarm can fail at — opening or storing a feed, a range
//! past a feed's end, a closed hub, a proof from outside that did not
//! verify, listening, making the Noise key or a connection's Noise state —
//! is one [`SwarmError`], so the floors above match one type and decide by
//! variant. It is `Clone` (a hub answers every waiter of a range with the
//! same error), so the sources it wraps are behind `Arc`.

use std::sync::Arc;

use hypernar_feed::store::StoreError;

/// Why the swarm could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwarmError {
    /// Opening, reading or writing a local feed failed.
    #[error("feed {feed}: {source}")]
    Store {
        feed: String,
        #[source]
        source: Arc<StoreError>,
    },
    /// Opening the data directory failed.
    #[error("data directory: {0}")]
    DataDir(#[source] Arc<StoreError>),
    /// Blocks cannot be stored here now (see `hub/storage.rs`); what is
    /// stored is kept. `reason` is the operator's wording of `source`.
    #[error("feed {feed}: cannot store blocks: {reason}")]
    Storage {
        feed: String,
        reason: String,
        #[source]
        source: Arc<StoreError>,
    },
    /// The wanted blocks are past the feed's end.
    #[error("feed {feed}: blocks {start}..{end} are past its end ({length})")]
    PastEnd {
        feed: String,
        start: u64,
        end: u64,
        length: u64,
    },
    /// The feed's hub has stopped.
    #[error("feed {0} is closed")]
    Closed(String),
    /// A group's meeting feed could not be written.
    #[error("group meeting feed: {0}")]
    Group(String),
    /// A proof from outside the swarm (a web seed) did not verify: the
    /// source is bad, not this node.
    #[error("feed {feed}: {source}")]
    Rejected {
        feed: String,
        #[source]
        source: Arc<StoreError>,
    },
    /// A block of a feed we write was to be dropped but nothing can make
    /// it again (see `hub/remake.rs`): it is kept.
    #[error("feed {feed}: block {index} cannot be made again, so it is not dropped")]
    NotRemakeable { feed: String, index: u64 },
    /// Binding or inspecting a listening socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Making the Noise key or a connection's Noise state failed.
    #[error("noise handshake setup: {0}")]
    Noise(#[source] Arc<hypercore_handshake::Error>),
}

impl SwarmError {
    pub(crate) fn store(feed: &str, e: StoreError) -> Self {
        SwarmError::Store {
            feed: feed.to_owned(),
            source: Arc::new(e),
        }
    }
}

impl From<hypercore_handshake::Error> for SwarmError {
    fn from(e: hypercore_handshake::Error) -> Self {
        SwarmError::Noise(Arc::new(e))
    }
}
