//! A node following its trusted publishers as their feeds replicate: index
//! records (feed declarations, paths, web seeds) and key releases.

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::identity::{Identity, SetId};
use hypernar_feed::format::record::{FeedRole, Record};
use tracing::warn;

use super::Node;
use hypernar_swarm::hub::HubHandle;

impl Node {
    pub(super) async fn follow_index(self, id: Identity, index: HubHandle) {
        let mut state = index.state();
        let mut next = 0u64;
        loop {
            let contiguous = state.borrow_and_update().contiguous;
            while next < contiguous {
                let block = match index.get(next).await {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(%e, "reading index block");
                        break;
                    }
                };
                match Record::decode(&block) {
                    Ok(Record::Feed(decl)) => {
                        if let Ok(key) = VerifyingKey::from_bytes(&decl.public_key) {
                            let eager = match decl.role {
                                FeedRole::Keys => true,
                                FeedRole::Data => self.catalog.mirror,
                                FeedRole::Index | FeedRole::Set | FeedRole::Runs => false,
                            };
                            match self.add_feed(&key, eager).await {
                                Ok(hub) if decl.role == FeedRole::Keys => {
                                    self.spawn(self.clone().follow_keys(id, hub));
                                }
                                Ok(_) => {}
                                Err(e) => warn!(%e, "adding a declared feed"),
                            }
                        }
                        self.catalog.publishers.apply(&id, next, Record::Feed(decl));
                    }
                    Ok(record) => self.catalog.publishers.apply(&id, next, record),
                    Err(e) => {
                        warn!(publisher = %id, seq = next, %e, "malformed index record skipped")
                    }
                }
                next += 1;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// A feed given by key alone: once its header arrives, follow its key
    /// releases if it is a key feed of a trusted publisher.
    pub(super) async fn follow_if_keys(self, hub: HubHandle) {
        if hub.want(0, 1).await.is_err() {
            return;
        }
        let Ok(Ok(Record::Header(h))) = hub.get(0).await.map(|b| Record::decode(&b)) else {
            return;
        };
        if h.role != FeedRole::Keys {
            return;
        }
        match Identity::from_bytes(&h.publisher) {
            Ok(id) if self.catalog.publishers.is_trusted(&id) => {
                self.follow_keys(id, hub).await;
            }
            _ => {}
        }
    }

    /// Reads key releases from a key feed as they arrive.
    pub(crate) async fn follow_keys(self, id: Identity, keys: HubHandle) {
        let mut state = keys.state();
        let mut next = 1u64; // block 0 is the header
        loop {
            let contiguous = state.borrow_and_update().contiguous;
            while next < contiguous {
                match keys.get(next).await.map(|b| Record::decode(&b)) {
                    Ok(Ok(Record::Key(release))) => self.catalog.publishers.add_key(&id, release),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(seq = next, %e, "malformed key record skipped"),
                    Err(e) => {
                        warn!(%e, "reading key feed");
                        break;
                    }
                }
                next += 1;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Node {
    /// Applies a set feed's entries as they replicate. Block 0 must be a
    /// set header; a feed that is something else is ignored, saying so.
    pub(super) async fn follow_set_feed(self, id: SetId, hub: HubHandle) {
        let mut state = hub.state();
        let mut next = 0u64;
        loop {
            let contiguous = state.borrow_and_update().contiguous;
            while next < contiguous {
                let block = match hub.get(next).await {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(set = %id, %e, "reading a set block");
                        break;
                    }
                };
                match (next, Record::decode(&block)) {
                    (0, Ok(Record::Header(h))) if h.role == FeedRole::Set => {}
                    (0, _) => {
                        warn!(set = %id, "not a safe-path set (its first block is no set header); ignored");
                        return;
                    }
                    (_, Ok(Record::SetEntry(e))) => {
                        if let Err(e) = self.catalog.sets.apply(&id, &e) {
                            warn!(set = %id, seq = next, %e, "set entry not applied");
                        }
                    }
                    (_, Ok(_)) => {}
                    (_, Err(e)) => warn!(set = %id, seq = next, %e, "malformed set entry skipped"),
                }
                next += 1;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }
}
