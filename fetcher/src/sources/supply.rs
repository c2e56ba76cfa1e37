//! Suppliers: what brings verified blocks of one feed into its local
//! replica. The peers (through the feed's hub, which spreads a want over
//! every peer that has the blocks) and the web seeds (whose blocks the hub
//! verifies as it would a peer's proof) are the two kinds; the hedge
//! combines them, and a fake of each is all a test of the readers needs.

use std::sync::Arc;

use futures::future::BoxFuture;
use hypernar_feed::store::StoreError;

use super::webseed::{WebSeedError, WebSeeds};
use hypernar_swarm::hub::{FetchError, HubHandle};
use hypernar_swarm::metrics::Metrics;

/// Why a supplier could not bring blocks, or the replica read one.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// The replica does not know the feed that far: no peer told it a
    /// longer signed length (a web seed may).
    #[error("the blocks are past the feed's known length ({length})")]
    PastEnd { length: u64 },
    /// The block is not stored here (it was dropped between being brought
    /// and being read: evicted): bring it again.
    #[error("block {index} is not stored here")]
    NotHere { index: u64 },
    /// The swarm failed (the local feed, its storage, a closed hub).
    #[error(transparent)]
    Swarm(FetchError),
    /// No web seed gave the blocks.
    #[error(transparent)]
    WebSeed(#[from] WebSeedError),
}

impl From<FetchError> for SupplyError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::PastEnd { length, .. } => SupplyError::PastEnd { length },
            e => SupplyError::Swarm(e),
        }
    }
}

/// Brings verified blocks of one feed into its local replica.
pub trait Supplier: Send + Sync + 'static {
    /// Brings blocks `start..end` here, each verified against the feed's
    /// signed tree. Resolves once they are all stored (by this supplier or
    /// another), or with why they cannot be; dropping it withdraws the ask.
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>>;

    /// Whether anyone is there to ask now (a peer has the feed open, a web
    /// seed is usable). An absent supplier may still bring blocks stored
    /// here already.
    fn present(&self) -> bool;
}

/// The local copy of a feed, read once blocks are brought.
pub trait Replica: Send + Sync + 'static {
    /// Block `index`, verified when it was stored.
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>>;
}

impl<T: Supplier + ?Sized> Supplier for Arc<T> {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        (**self).bring(start, end)
    }

    fn present(&self) -> bool {
        (**self).present()
    }
}

impl<T: Replica + ?Sized> Replica for Arc<T> {
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>> {
        (**self).read(index)
    }
}

/// The peers of one feed, through its hub (which also holds the replica).
#[derive(Debug, Clone)]
pub struct Peers(pub HubHandle);

impl Supplier for Peers {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        let hub = self.0.clone();
        Box::pin(async move { Ok(hub.want(start, end).await?) })
    }

    fn present(&self) -> bool {
        self.0.state().borrow().peers > 0
    }
}

impl Replica for Peers {
    fn read(&self, index: u64) -> BoxFuture<'static, Result<Vec<u8>, SupplyError>> {
        let hub = self.0.clone();
        Box::pin(async move {
            match hub.get(index).await {
                Err(FetchError::Store { source, .. })
                    if matches!(*source, StoreError::MissingBlock { .. }) =>
                {
                    Err(SupplyError::NotHere { index })
                }
                r => Ok(r?),
            }
        })
    }
}

/// The web seeds, for one feed: their blocks handed to its hub as proofs.
#[derive(Debug, Clone)]
pub struct Web {
    pub seeds: Arc<WebSeeds>,
    pub hub: HubHandle,
    pub key: [u8; 32],
    pub metrics: Arc<Metrics>,
}

impl Supplier for Web {
    fn bring(&self, start: u64, end: u64) -> BoxFuture<'static, Result<(), SupplyError>> {
        let me = self.clone();
        Box::pin(async move {
            me.seeds
                .fetch(&me.hub, &me.key, start, end, &me.metrics)
                .await?;
            Ok(())
        })
    }

    fn present(&self) -> bool {
        !self.seeds.is_empty()
    }
}
