//! A node following its trusted publishers as their feeds replicate: index
//! records (feed declarations, paths, web seeds) and key releases.

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::identity::{FeedKey, Identity, SetId};
use hypernar_feed::format::record::{FeedDecl, FeedRole, Record};
use tracing::{info, warn};

use crate::publishers::{Followed, ManifestState};

use super::Node;
use hypernar_swarm::hub::{EagerRange, HubHandle};

/// How long an index in runs waits for its manifest before it is read
/// whole (from peers that do not know its runs feed).
const MANIFEST_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one index's follower has declared so far.
#[derive(Default)]
struct Declared {
    keys: HashSet<[u8; 32]>,
    /// A key feed was declared: a runs feed declared after it does not
    /// change how the index is read (an index made before runs).
    key_feed: Option<HubHandle>,
    /// The index declared its runs feed first: it is looked up in runs,
    /// and only its tail past the manifest is replicated.
    runs: bool,
    /// Where the key feed is replicated from, once a manifest (or its
    /// absence) said; a key feed declared later starts there.
    keys_from: Option<u64>,
}

impl Node {
    /// Follows a trusted publisher's index as it replicates. An index that
    /// declares a runs feed in its first block (every index made since
    /// runs exist) is looked up in its runs: its replication is paused
    /// until the runs feed's manifest is read (by the sources floor, which
    /// brings blocks from peers and web seeds), and then only its tail past
    /// the manifest is replicated, and its key feed's past the manifest's
    /// key mark. An older index is replicated whole, as before.
    pub(super) async fn follow_index(self, id: Identity, index: HubHandle) {
        let mut state = index.state();
        let mut changed = self.catalog.publishers.subscribe();
        let mut next = 0u64;
        let mut declared = Declared::default();
        let mut applied: Option<ManifestState> = None;
        let mut decided = false;
        // When an index in runs whose manifest nobody gave is read whole.
        let mut give_up: Option<tokio::time::Instant> = None;
        loop {
            let st = *state.borrow_and_update();
            next = next.max(st.eager.map_or(0, |e| e.from));
            while next < st.ready {
                let block = match index.get(next).await {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(%e, "reading index block");
                        break;
                    }
                };
                match Record::decode(&block) {
                    Ok(Record::Feed(decl)) => {
                        self.declare(id, &index, &decl, &mut declared).await;
                        self.catalog.publishers.apply(&id, next, Record::Feed(decl));
                    }
                    Ok(record) => self.catalog.publishers.apply(&id, next, record),
                    Err(e) => {
                        warn!(publisher = %id, seq = next, %e, "malformed index record skipped")
                    }
                }
                next += 1;
            }
            // Block 1 says how the index is read: an index that does not
            // declare its runs feed there is replicated whole.
            if !decided && next >= 2 {
                decided = true;
                if !declared.runs {
                    self.swarm
                        .set_eager_range(&index, Some(EagerRange::ALL))
                        .await;
                }
            }
            if declared.runs {
                let mut now = self.catalog.publishers.runs(&id).map(|r| r.manifest);
                let unknown = matches!(now, Some(ManifestState::Unknown));
                let waited = give_up.is_some_and(|t| tokio::time::Instant::now() >= t);
                if unknown && waited {
                    // Peers that do not know the runs feed (an older build,
                    // the JavaScript reference) can still give the index.
                    warn!(
                        publisher = %id,
                        "no peer or web seed gave this index's runs within {MANIFEST_WAIT:?}; reading the index whole"
                    );
                    now = Some(ManifestState::None);
                }
                if unknown && give_up.is_none() {
                    give_up = Some(tokio::time::Instant::now() + MANIFEST_WAIT);
                }
                if now != applied {
                    self.apply_manifest(id, &index, now.clone(), &mut declared)
                        .await;
                    applied = now;
                }
            }
            let waiting = declared.runs && matches!(applied, None | Some(ManifestState::Unknown));
            // A miss waits while this is behind (`Progress::settling`).
            self.catalog.publishers.follower_at(
                &id,
                Followed::Index,
                next,
                st.length,
                st.peers,
                waiting,
            );
            let until = give_up.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                r = changed.changed(), if declared.runs => if r.is_err() { return },
                _ = tokio::time::sleep_until(until), if waiting && give_up.is_some() => {}
            }
        }
    }

    /// Starts replicating a feed the index declares, as its role says.
    async fn declare(&self, id: Identity, index: &HubHandle, decl: &FeedDecl, d: &mut Declared) {
        let Ok(key) = VerifyingKey::from_bytes(&decl.public_key) else {
            return;
        };
        if !d.keys.insert(decl.public_key) {
            return;
        }
        if decl.role == FeedRole::Runs && d.key_feed.is_none() {
            d.runs = true;
            self.catalog
                .publishers
                .set_runs_feed(&id, FeedKey::from(key));
            // Nothing more of the index until its manifest says from where
            // (a mirror keeps replicating everything).
            if !self.catalog.mirror {
                self.swarm.set_eager_range(index, None).await;
            }
        }
        if decl.role == FeedRole::Generations {
            self.catalog.channels.set_feed(id, FeedKey::from(key));
        }
        let eager = match decl.role {
            FeedRole::Keys => !d.runs || self.catalog.mirror,
            FeedRole::Data => self.catalog.mirror,
            FeedRole::Runs | FeedRole::Generations => self.catalog.mirror,
            FeedRole::Index | FeedRole::Set | FeedRole::Group => false,
        };
        match self.add_feed(&key, eager).await {
            Ok(hub) if decl.role == FeedRole::Keys => {
                if d.key_feed.is_none() {
                    d.key_feed = Some(hub.clone());
                    if let (true, false, Some(from)) = (d.runs, self.catalog.mirror, d.keys_from) {
                        let range = EagerRange { from, to: None };
                        self.swarm.set_eager_range(&hub, Some(range)).await;
                    }
                }
                self.spawn(self.clone().follow_keys(id, hub));
            }
            Ok(_) => {}
            Err(e) => warn!(%e, "adding a declared feed"),
        }
    }

    /// The runs feed's last block changed: replicate the index (and the key
    /// feed) from where its manifest says, with the feeds it declares.
    async fn apply_manifest(
        &self,
        id: Identity,
        index: &HubHandle,
        state: Option<ManifestState>,
        d: &mut Declared,
    ) {
        let (index_from, keys_from) = match state {
            None | Some(ManifestState::Unknown) => return,
            // No run cut yet: the index is small, read it whole.
            Some(ManifestState::None) => (0, 0),
            Some(ManifestState::At(_, m)) => {
                for decl in &m.feeds {
                    self.declare(id, index, decl, d).await;
                    self.catalog
                        .publishers
                        .apply(&id, 0, Record::Feed(decl.clone()));
                }
                // Web seeds recorded in the part of the index in runs (a
                // later record in the tail replaces them).
                if !m.web_seeds.is_empty()
                    && self
                        .catalog
                        .publishers
                        .recorded_web_seeds_of(&id)
                        .is_none_or(|u| u.is_empty())
                {
                    self.catalog.publishers.apply(
                        &id,
                        0,
                        Record::WebSeeds(hypernar_feed::format::record::WebSeedList {
                            urls: m.web_seeds.clone(),
                        }),
                    );
                }
                (m.indexed_to, m.keys_indexed_to)
            }
        };
        info!(
            publisher = %id,
            from = index_from,
            "index looked up in runs; replicating its tail"
        );
        if self.catalog.mirror {
            return;
        }
        let from = |from| Some(EagerRange { from, to: None });
        d.keys_from = Some(keys_from);
        self.swarm.set_eager_range(index, from(index_from)).await;
        if let Some(keys) = &d.key_feed {
            self.swarm.set_eager_range(keys, from(keys_from)).await;
        }
    }

    /// A feed given by key alone: once its header arrives, follow its key
    /// releases if it is a key feed of a trusted publisher.
    pub(super) async fn follow_if_keys(self, hub: HubHandle) {
        let Ok(Some(publisher)) = key_feed_publisher(&hub).await else {
            return;
        };
        match Identity::from_bytes(&publisher) {
            Ok(id) if self.catalog.publishers.is_trusted(&id) => {
                self.follow_keys(id, hub).await;
            }
            _ => {}
        }
    }

    /// Follows a group member's key feed, if its header says it is a key
    /// feed of that member.
    pub(super) async fn follow_keys_of(self, id: Identity, hub: HubHandle) {
        match key_feed_publisher(&hub).await {
            Ok(Some(p)) if p == id.to_bytes() => self.follow_keys(id, hub).await,
            Ok(_) => {
                warn!(member = %id, "a group member's key feed is not a key feed of that member; ignored")
            }
            Err(()) => {}
        }
    }

    /// Reads key releases from a key feed as they arrive (from where it
    /// is replicated: past the manifest's key mark for an index in runs).
    pub(crate) async fn follow_keys(self, id: Identity, keys: HubHandle) {
        let mut state = keys.state();
        let mut next = 1u64; // block 0 is the header
        loop {
            let st = *state.borrow_and_update();
            next = next.max(st.eager.map_or(0, |e| e.from));
            while next < st.ready {
                match keys.get(next).await.map(|b| Record::decode(&b)) {
                    Ok(Ok(Record::Key(release))) => {
                        self.catalog.publishers.add_key(&id, release, Some(next))
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(seq = next, %e, "malformed key record skipped"),
                    Err(e) => {
                        warn!(%e, "reading key feed");
                        break;
                    }
                }
                next += 1;
            }
            self.catalog.publishers.follower_at(
                &id,
                Followed::Keys,
                next,
                st.length,
                st.peers,
                false,
            );
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
                    (_, Ok(Record::SetChannel(e))) => {
                        if let Err(e) = self.catalog.sets.apply_channel(&id, &e) {
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

/// The publisher a key feed's header names, once block 0 is here:
/// `Ok(None)` if the feed is not a key feed, `Err` if its header never
/// came (the hub closed).
async fn key_feed_publisher(hub: &HubHandle) -> Result<Option<[u8; 32]>, ()> {
    hub.want(0, 1).await.map_err(drop)?;
    Ok(match hub.get(0).await.map(|b| Record::decode(&b)) {
        Ok(Ok(Record::Header(h))) if h.role == FeedRole::Keys => Some(h.publisher),
        Ok(_) => None,
        Err(_) => return Err(()),
    })
}
