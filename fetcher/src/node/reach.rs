//! How a node reaches peers: dialling (configured peers forever, learned
//! ones while they answer), and the root feeds it is found under on the DHT.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{Node, CONNECT_TIMEOUT};
use crate::hub::HubHandle;

impl Node {
    fn is_banned(&self, addr: &str) -> bool {
        let mut banned = self.inner.banned.lock().expect("ban lock");
        banned.retain(|_, until| *until > Instant::now());
        banned.contains_key(addr)
    }

    /// Dials `addr` and keeps it connected, like a configured peer.
    pub fn dial(&self, addr: String) {
        self.spawn(self.clone().dial_forever(addr));
    }

    pub(super) async fn dial_forever(self, addr: String) {
        self.dial_while(addr, None).await
    }

    /// Dials `addr` and keeps it connected, like [`Node::dial`], until
    /// `attempts` connects in a row fail (or the address is banned): for
    /// peers learned from others, which may be gone. Resolves then.
    pub async fn dial_while_reachable(&self, addr: String, attempts: u32) {
        self.clone().dial_while(addr, Some(attempts.max(1))).await
    }

    async fn dial_while(self, addr: String, give_up_after: Option<u32>) {
        let mut backoff = Duration::from_millis(250);
        let mut failed = 0u32;
        loop {
            if self.is_banned(&addr) {
                failed = failed.saturating_add(1);
            } else {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                    Ok(Ok(stream)) => {
                        info!(peer = %addr, "connected");
                        backoff = Duration::from_millis(250);
                        failed = 0;
                        self.clone()
                            .run_conn(stream, true, Some(addr.clone()))
                            .await;
                        info!(peer = %addr, "disconnected");
                    }
                    Ok(Err(e)) => {
                        failed = failed.saturating_add(1);
                        debug!(peer = %addr, %e, "connect failed");
                    }
                    Err(_) => {
                        failed = failed.saturating_add(1);
                        debug!(peer = %addr, "connect timed out");
                    }
                }
            }
            if give_up_after.is_some_and(|n| failed >= n) {
                debug!(peer = %addr, failed, "giving up on a learned peer");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Adds a feed to [`Node::roots`] (once).
    pub fn add_root(&self, key: [u8; 32]) {
        let mut roots = self.inner.roots.lock().expect("roots lock");
        if !roots.contains(&key) {
            roots.push(key);
        }
    }

    /// The feeds through which this node meets peers beyond those it is
    /// told of: trusted publishers' indexes, the feeds it replicates by
    /// token, and publishers' index feeds in its data directory (its own,
    /// for a publisher's seed), in that order. A publisher's other feeds
    /// need no topic of their own: a peer met through its index is offered
    /// every feed both sides hold on the same connection.
    pub fn roots(&self) -> Vec<[u8; 32]> {
        self.inner.roots.lock().expect("roots lock").clone()
    }

    /// Index and set feeds among the feeds stored here whose header is
    /// already here (never fetched for this), added to [`Node::roots`].
    pub async fn find_stored_indexes(&self) {
        let hubs: Vec<HubHandle> = self
            .inner
            .feeds
            .lock()
            .expect("feeds lock")
            .values()
            .map(|e| e.hub.clone())
            .collect();
        for hub in hubs {
            if hub.state().borrow().contiguous == 0 {
                continue;
            }
            let Ok(block) = hub.get(0).await else {
                continue;
            };
            if let Ok(hypernar_feed::format::record::Record::Header(h)) =
                hypernar_feed::format::record::Record::decode(&block)
            {
                let key: Option<[u8; 32]> =
                    hex::decode(hub.name()).ok().and_then(|b| b.try_into().ok());
                use hypernar_feed::format::record::FeedRole;
                if let Some(key) = key.filter(|k| {
                    (h.role == FeedRole::Index && *k == h.publisher) || h.role == FeedRole::Set
                }) {
                    self.add_root(key);
                }
            }
        }
    }
}
