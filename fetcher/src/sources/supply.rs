//! Suppliers: what brings verified blocks of one feed into its local
//! replica. The peers (through the feed's hub, which spreads a want over
//! every peer that has the blocks) and the web seeds (whose blocks the hub
//! verifies as it would a peer's proof) are the two kinds; the hedge
//! combines them, and a fake of each is all a test of the readers needs.

use std::sync::Arc;

use futures::future::BoxFuture;
use hypernar_feed::store::StoreError;

use super::webseed::{WebSeedError, WebSeeds};
use hypernar_swarm::hub::{HubHandle, SwarmError};
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
    Swarm(SwarmError),
    /// No web seed gave the blocks.
    #[error(transparent)]
    WebSeed(#[from] WebSeedError),
}

impl From<SwarmError> for SupplyError {
    fn from(e: SwarmError) -> Self {
        match e {
            SwarmError::PastEnd { length, .. } => SupplyError::PastEnd { length },
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
                Err(SwarmError::Store { source, .. })
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

#[cfg(test)]
mod tests {
    //! One contract, run against every supplier that can run in-process: the
    //! peers over a real hub (its feed in a temporary directory, no peer, no
    //! socket) and the fake the hedge and reader tests use.

    use super::*;
    use crate::sources::hedge::tests::{Behaviour, Fake, FakeFeed};
    use std::time::Duration;

    /// What a supplier and its replica must do: a range stored here is
    /// brought at once and read back as stored; a range past the feed's
    /// known length is `PastEnd` (which tells the hedge to ask the web seed
    /// at once), not a wait until the deadline.
    async fn conformance(
        supplier: &dyn Supplier,
        replica: &dyn Replica,
        stored: std::ops::Range<u64>,
        blocks: &[Vec<u8>],
        past_end: u64,
    ) {
        let quick = Duration::from_secs(2);
        tokio::time::timeout(quick, supplier.bring(stored.start, stored.end))
            .await
            .expect("stored blocks are brought at once")
            .expect("stored blocks are brought");
        for (i, want) in stored.clone().zip(blocks) {
            let got = replica.read(i).await.expect("a stored block reads back");
            assert_eq!(&got, want, "block {i}");
        }
        let r = tokio::time::timeout(quick, supplier.bring(past_end, past_end + 1))
            .await
            .expect("past the end is said, not waited for");
        assert!(
            matches!(r, Err(SupplyError::PastEnd { .. })),
            "past the end: {r:?}"
        );
    }

    #[tokio::test]
    async fn the_peers_over_a_real_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let store = hypernar_feed::store::FeedStore::open(tmp.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let feed = store.open_writable(&key).await.unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let (hub, thread) = hypernar_swarm::hub::spawn(
            feed,
            store.clone(),
            false,
            Arc::new(|_, _| {}),
            cancel.clone(),
            Default::default(),
            Arc::new(hypernar_swarm::share::Share::new(Default::default())),
        );
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        hub.append(blocks.clone()).await.unwrap();
        let peers = Peers(hub);
        assert!(!peers.present(), "no peer has the feed open");
        conformance(&peers, &peers, 0..4, &blocks, 4).await;
        cancel.cancel();
        drop(peers);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_fake() {
        let feed = Arc::new(FakeFeed::default());
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        for (i, b) in blocks.iter().enumerate() {
            feed.content.lock().unwrap().insert(i as u64, b.clone());
        }
        feed.store(0..4);
        let fake = Fake::new(&feed, Behaviour::PastEnd);
        conformance(&fake, &feed, 0..4, &blocks, 4).await;
    }
}
