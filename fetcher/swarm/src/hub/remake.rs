//! Blocks of a feed this node writes that were dropped because they can be
//! made again, and are made again when asked for.
//!
//! A node keeps what it pulls through in feeds of its own; once such a path
//! is valid in the local Nix store, its blocks are a second copy of what
//! the store holds, and the fetcher drops them ([`HubHandle::drop_own`]).
//! The hub still announces them as held; when a peer or a local reader asks
//! for one, it asks the [`Remake`] (the fetcher's, which dumps the path
//! from the store and seals the segment again: same key, same nonce, zstd
//! at the same level) and takes the result back only if it is the block
//! the feed's signed tree names (`Feed::restore`). A block that is not (the
//! store path changed, zstd changed) is not served: the whole path is then
//! no longer announced ([`Remake::failed`]) and the askers hear `NoData`,
//! as they do when the block cannot be made now (a dump that failed).
//!
//! What the hub holds for this is bounded: at most [`MAX_REMAKING`] blocks
//! being made at once, each given up after [`REMAKE_TIMEOUT`], and
//! [`MAX_ASKERS`] peers' requests waiting for them, [`MAX_ASKERS_PER_PEER`]
//! of one peer (past that a request is answered `NoData`, as for a block
//! not here).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use hypercore_protocol::schema::{NoData, Request};
use hypercore_protocol::Message;
use hypernar_feed::store::{Feed, StoreError};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{store_err, Hub, HubHandle, Msg, PeerId, SwarmError};

/// Blocks of one feed being made again at once.
pub const MAX_REMAKING: usize = 16;
/// Peers' requests waiting for blocks being made again, per feed (local
/// reads are bounded by their readers).
pub const MAX_ASKERS: usize = 1024;
/// The same, for one peer: what one peer may hold of [`MAX_ASKERS`].
pub const MAX_ASKERS_PER_PEER: usize = super::MAX_QUEUED_ANSWERS;
/// A block not made in this time is given up on (a dump stuck on a stalled
/// file system holds nothing of the hub's).
pub const REMAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What makes blocks of the node's own feeds again (the fetcher's, from
/// the local Nix store). Called from hubs' threads: `covers` and `failed`
/// must not block.
pub trait Remake: Send + Sync + 'static {
    /// Whether block `index` of the feed `feed` was dropped because it can
    /// be made again: such a block is announced as held.
    fn covers(&self, feed: &[u8; 32], index: u64) -> bool;
    /// Makes block `index` again; `None` if it cannot now (the remaker
    /// logs why; a path gone from the store stops being covered).
    fn remake(&self, feed: [u8; 32], index: u64) -> BoxFuture<'static, Option<Vec<u8>>>;
    /// Block `index` was made again but is not the block the tree signed:
    /// it and the blocks that go with it (its path's) are not to be made
    /// again. Returns those blocks, to announce dropped.
    fn failed(&self, feed: &[u8; 32], index: u64) -> Option<Range<u64>>;
}

/// Where the swarm's hubs find the [`Remake`] once the fetcher has set one
/// (`Swarm::set_remake`).
#[derive(Clone, Default)]
pub struct RemakeSlot(Arc<OnceLock<Arc<dyn Remake>>>);

impl std::fmt::Debug for RemakeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemakeSlot")
            .field("set", &self.0.get().is_some())
            .finish()
    }
}

impl RemakeSlot {
    /// Sets the remaker; false if one was set already.
    pub fn set(&self, remake: Arc<dyn Remake>) -> bool {
        self.0.set(remake).is_ok()
    }

    fn get(&self) -> Option<&Arc<dyn Remake>> {
        self.0.get()
    }
}

/// Who waits for a block being made again.
pub(super) enum Asker {
    Local(oneshot::Sender<Result<Vec<u8>, SwarmError>>),
    Peer(PeerId, Request),
}

/// The blocks being made again and who waits for them.
#[derive(Default)]
pub(super) struct Remaking {
    askers: HashMap<u64, Vec<Asker>>,
    /// Peers' requests among the askers, in all and by peer.
    waiting: usize,
    by_peer: HashMap<PeerId, usize>,
    /// Asked for, not started yet: started lowest first, so that the
    /// remaker, which makes a path's blocks in order, moves forward
    /// (peers ask in no particular order).
    queue: BTreeSet<u64>,
    in_flight: HashSet<u64>,
    /// Blocks whose first try failed and that are being tried again.
    retried: HashSet<u64>,
}

impl HubHandle {
    /// Drops the stored blocks `start..end` of a feed we write whose every
    /// block the [`Remake`] covers; they stay announced as held and are
    /// made again when asked for. Returns how many were held.
    pub async fn drop_own(&self, start: u64, end: u64) -> Result<u64, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::DropOwn { start, end, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Tells every peer that blocks `start..end` not stored here are not
    /// here after all (the [`Remake`] no longer covers them).
    pub async fn announce_dropped(&self, start: u64, end: u64) {
        let _ = self.tx.send(Msg::AnnounceDropped { start, end }).await;
    }
}

impl Hub {
    fn remaker(&self) -> Option<&Arc<dyn Remake>> {
        if self.feed.writable() {
            self.remake.get()
        } else {
            None
        }
    }

    /// Whether block `index` is not stored but can be made again.
    pub(super) fn remakeable(&self, index: u64) -> bool {
        index < self.feed.len()
            && !self.feed.has(index)
            && self.remaker().is_some_and(|r| r.covers(&self.key, index))
    }

    /// Whether block `index` is stored or can be made again: what is
    /// announced of a feed we write.
    pub(super) fn holds(&self, index: u64) -> bool {
        self.feed.has(index) || self.remakeable(index)
    }

    /// Drops blocks `start..end` if the remaker covers every one of them.
    pub(super) async fn drop_own(&mut self, start: u64, end: u64) -> Result<u64, SwarmError> {
        let end = end.min(self.feed.len());
        let not_covered = match self.remaker() {
            Some(r) => (start..end).find(|&i| !r.covers(&self.key, i)),
            None => (start < end).then_some(start),
        };
        if let Some(index) = not_covered {
            return Err(SwarmError::NotRemakeable {
                feed: self.feed.name().to_owned(),
                index,
            });
        }
        let held = self.feed.held(start, end);
        self.feed
            .clear_own(start, end)
            .await
            .map_err(|e| store_err(self.feed.name(), e))?;
        self.publish_state();
        Ok(held)
    }

    /// Waits for block `index` to be made again on behalf of `asker`.
    pub(super) async fn ask_remade(&mut self, index: u64, asker: Asker) {
        if let Asker::Peer(peer, _) = &asker {
            let of_peer = self.remaking.by_peer.get(peer).copied().unwrap_or(0);
            if self.remaking.waiting >= MAX_ASKERS || of_peer >= MAX_ASKERS_PER_PEER {
                debug!(
                    feed = self.feed.name(),
                    index, peer, "too many waiting for blocks made again"
                );
                return self.refuse(index, vec![asker]);
            }
        }
        let known = self.remaking.askers.contains_key(&index);
        self.put_askers(index, vec![asker]);
        if !known {
            self.remaking.queue.insert(index);
        }
        self.start_remakes().await;
    }

    /// Adds `askers` of block `index`, counting peers' requests.
    fn put_askers(&mut self, index: u64, askers: Vec<Asker>) {
        for a in &askers {
            if let Asker::Peer(peer, _) = a {
                self.remaking.waiting += 1;
                *self.remaking.by_peer.entry(*peer).or_default() += 1;
            }
        }
        self.remaking
            .askers
            .entry(index)
            .or_default()
            .extend(askers);
    }

    /// Takes the askers of block `index`, counting them off.
    fn take_askers(&mut self, index: u64) -> Vec<Asker> {
        let askers = self.remaking.askers.remove(&index).unwrap_or_default();
        for a in &askers {
            if let Asker::Peer(peer, _) = a {
                self.remaking.waiting = self.remaking.waiting.saturating_sub(1);
                if let Some(n) = self.remaking.by_peer.get_mut(peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.remaking.by_peer.remove(peer);
                    }
                }
            }
        }
        askers
    }

    /// Starts making blocks again, asked-for ones first, then what
    /// readers' wants still miss, up to [`MAX_REMAKING`] at once.
    pub(super) async fn start_remakes(&mut self) {
        let Some(r) = self.remaker().cloned() else {
            return;
        };
        let mut next = Vec::new();
        let mut answered = Vec::new();
        let room = MAX_REMAKING.saturating_sub(self.remaking.in_flight.len());
        while next.len() < room {
            let Some(i) = self.remaking.queue.pop_first() else {
                break;
            };
            if !self.remaking.in_flight.contains(&i) && self.remakeable(i) {
                next.push(i);
            } else if !self.remaking.in_flight.contains(&i) {
                // Stored since it was asked for (made for a want), or no
                // longer covered: answered now.
                self.remaking.retried.remove(&i);
                answered.push((i, self.take_askers(i)));
            }
        }
        if next.len() < room {
            'wants: for w in self.waiters.iter().filter(|w| !w.done()) {
                let mut i = w.want.next;
                let stop = w.want.end.min(i.saturating_add(super::wants::MAX_STEPS));
                while i < stop {
                    if self.remakeable(i)
                        && !self.remaking.in_flight.contains(&i)
                        && !next.contains(&i)
                    {
                        next.push(i);
                        if next.len() >= room {
                            break 'wants;
                        }
                    }
                    i += 1;
                }
            }
        }
        for (index, askers) in answered {
            if self.feed.has(index) {
                self.answer_stored(index, askers).await;
            } else {
                self.refuse(index, askers);
            }
        }
        for index in next {
            self.remaking.in_flight.insert(index);
            let made = r.remake(self.key, index);
            let me = self.me.clone();
            tokio::spawn(async move {
                let value = tokio::time::timeout(REMAKE_TIMEOUT, made)
                    .await
                    .ok()
                    .flatten();
                if let Some(tx) = me.upgrade() {
                    let _ = tx.send(Msg::Remade { index, value }).await;
                }
            });
        }
    }

    /// A block made again (or not): taken back if the tree says it is
    /// that block, and everyone waiting for it answered.
    pub(super) async fn on_remade(&mut self, index: u64, value: Option<Vec<u8>>) {
        self.remaking.in_flight.remove(&index);
        let askers = self.take_askers(index);
        let restored = match value {
            Some(v) => self.feed.restore(index, v).await.map_err(Some),
            None => Err(None),
        };
        match restored {
            Ok(()) => {
                self.remaking.retried.remove(&index);
                self.publish_state();
                self.settle_waiters();
                self.answer_stored(index, askers).await;
            }
            // Not made (the remaker said why): tried once more, as a dump
            // may fail for a reason of the moment.
            Err(None) if self.remaking.retried.insert(index) => {
                self.put_askers(index, askers);
                self.remaking.queue.insert(index);
            }
            // Not made again: the askers go elsewhere; nothing is given up.
            Err(None) => {
                self.remaking.retried.remove(&index);
                self.fail_waiters(index);
                self.refuse(index, askers);
            }
            Err(Some(e)) => {
                self.remaking.retried.remove(&index);
                if !Feed::is_bad_proof(&e) {
                    // A full disk or a failing one: the block may be made
                    // and stored later; nothing is given up.
                    warn!(feed = self.feed.name(), index, error = %e, "a block made again could not be stored");
                } else if let Some(range) = self.remaker().and_then(|r| r.failed(&self.key, index))
                {
                    warn!(
                        feed = self.feed.name(),
                        index,
                        blocks = ?range,
                        "a block could not be made again as this feed signed it (its store path changed or is gone): its path is no longer offered"
                    );
                    self.announce_dropped(range.start, range.end).await;
                }
                self.fail_waiters(index);
                self.refuse(index, askers);
            }
        }
        self.start_remakes().await;
    }

    /// Answers `askers` of block `index`, stored now.
    async fn answer_stored(&mut self, index: u64, askers: Vec<Asker>) {
        for a in askers {
            match a {
                Asker::Local(reply) => {
                    let r = self
                        .feed
                        .get(index)
                        .await
                        .map_err(|e| store_err(self.feed.name(), e));
                    let _ = reply.send(r);
                }
                // Boxed: answering may ask for a block made again, which
                // starts remakes, which answer.
                Asker::Peer(peer, req) => Box::pin(self.answer(peer, req)).await,
            }
        }
    }

    /// Answers `askers` as for a block not here.
    fn refuse(&mut self, index: u64, askers: Vec<Asker>) {
        for a in askers {
            match a {
                Asker::Local(reply) => {
                    let _ = reply.send(Err(store_err(
                        self.feed.name(),
                        StoreError::MissingBlock {
                            feed: self.feed.name().to_owned(),
                            index,
                        },
                    )));
                }
                Asker::Peer(peer, req) => {
                    self.queue_answer(peer, Message::NoData(NoData { request: req.id }))
                }
            }
        }
    }

    /// Wants that need block `index`, which cannot be made, end in error.
    fn fail_waiters(&mut self, index: u64) {
        let name = self.feed.name().to_owned();
        for w in &mut self.waiters {
            if !w.done() && w.want.next <= index && index < w.want.end {
                w.answer(Err(store_err(
                    &name,
                    StoreError::MissingBlock {
                        feed: name.clone(),
                        index,
                    },
                )));
            }
        }
        self.prune_waiters();
    }

    /// Tells every peer the blocks of `start..end` not stored here are gone.
    pub(super) async fn announce_dropped(&mut self, start: u64, end: u64) {
        let end = end.min(self.feed.len());
        let mut i = start;
        let mut ranges = Vec::new();
        while i < end {
            if self.feed.has(i) || self.remakeable(i) {
                i += 1;
                continue;
            }
            let s = i;
            while i < end && !self.feed.has(i) && !self.remakeable(i) {
                i += 1;
            }
            ranges.push(hypercore_protocol::schema::Range {
                drop: true,
                start: s,
                length: i - s,
            });
        }
        // Wants that need a block gone end now, not at their deadline.
        for r in &ranges {
            for i in r.start..r.start + r.length {
                if self
                    .waiters
                    .iter()
                    .any(|w| !w.done() && w.want.next <= i && i < w.want.end)
                {
                    self.fail_waiters(i);
                }
            }
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            for r in &ranges {
                self.send(id, Message::Range(r.clone())).await;
            }
        }
    }
}
