//! Writing a node's own feeds through their hubs, so a publisher can run
//! inside `hypernar serve` and every append reaches connected peers at once.

use ed25519_dalek::{SigningKey, VerifyingKey};
use hypernar_feed::io::{FeedIo, FeedIoError, FeedOpener};

use crate::hub::HubHandle;
use crate::swarm::Swarm;

/// A feed written through its hub.
#[derive(Debug, Clone)]
pub struct HubFeed {
    hub: HubHandle,
    key: VerifyingKey,
}

fn other(feed: &HubHandle, e: crate::hub::SwarmError) -> FeedIoError {
    FeedIoError::Owner {
        feed: feed.name().to_owned(),
        source: Box::new(e),
    }
}

impl FeedIo for HubFeed {
    fn public_key(&self) -> VerifyingKey {
        self.key
    }
    fn length(&self) -> u64 {
        self.hub.state().borrow().length
    }
    async fn read(&mut self, index: u64) -> Result<Vec<u8>, FeedIoError> {
        self.hub.get(index).await.map_err(|e| other(&self.hub, e))
    }
    async fn write(&mut self, blocks: Vec<Vec<u8>>) -> Result<(), FeedIoError> {
        self.hub
            .append(blocks)
            .await
            .map(drop)
            .map_err(|e| other(&self.hub, e))
    }
    async fn sync_web_seed(
        &mut self,
        root: &std::path::Path,
    ) -> Result<Option<hypernar_feed::webseed::Head>, FeedIoError> {
        self.hub
            .sync_web_seed(root.to_owned())
            .await
            .map_err(|e| other(&self.hub, e))
    }
}

impl FeedOpener for Swarm {
    type Feed = HubFeed;
    async fn writable(&self, key: &SigningKey) -> Result<HubFeed, FeedIoError> {
        let hub = self.writable_hub(key).await?;
        Ok(HubFeed {
            hub,
            key: key.verifying_key(),
        })
    }
    fn exists(&self, key: &VerifyingKey) -> bool {
        self.hub(&key.to_bytes()).is_some() || self.store().has(key)
    }
}
