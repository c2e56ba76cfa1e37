//! Which blocks to ask for, from whom, and what to do when a peer is slow.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hypercore_protocol::schema::{Cancel, Request};
use hypercore_protocol::Message;
use hypercore_schema::RequestBlock;
use tracing::debug;

use super::downloads::Pending;
use super::wants;
use super::{FetchError, Hub, PeerId, REQUEST_TIMEOUT, SCHEDULE_WINDOW};

/// How long a reader waits on one block before it jumps the rarest-first queue.
const URGENT_AFTER: Duration = Duration::from_secs(10);
/// How long a computed block order is used before it is ranked again.
const ORDER_TTL: Duration = Duration::from_millis(100);
/// How many of the best blocks a peer has one request is drawn from. Two
/// fetchers drawing the same block from a seed cost little since the seed
/// holds the second request until it is cancelled (`upload.rs`); a narrower
/// draw keeps blocks closer to reading order and newer blocks fewer, so
/// they spread faster. Measured in the swarm benchmark (efficiency, two
/// runs each): 32 → 0.83/0.86, 64 → 0.87/0.87, 128 → 0.84/0.82.
const SPREAD: usize = 64;

impl Hub {
    /// Blocks wanted and not here or in flight: at most [`SCHEDULE_WINDOW`]
    /// of them, lowest first, then ordered rarest first (fewest peers have
    /// them), lowest index first among equals. [`Self::pick`] draws each
    /// request at random from the first [`SPREAD`] of these that a peer
    /// has: nodes that start together thus ask the seed for different
    /// blocks and trade the rest among themselves, as BitTorrent's
    /// rarest-first does, while each node's blocks still arrive close
    /// enough to reading order that it can decode and hand them on as the
    /// transfer goes rather than all at its end.
    fn wanted(&self) -> Vec<u64> {
        let info = self.feed.info();
        let mut set = BTreeSet::new();
        let has = |i| self.feed.has(i);
        let asked = |i| self.downloads.in_flight(i);
        for w in self.waiters.iter().filter(|w| !w.done()) {
            wants::collect(&w.want, info.length, has, asked, SCHEDULE_WINDOW, &mut set);
        }
        if self.eager {
            let all = wants::Want::new(info.contiguous_length, info.length);
            wants::collect(&all, info.length, has, asked, SCHEDULE_WINDOW, &mut set);
        }
        let mut out: Vec<u64> = set.into_iter().take(SCHEDULE_WINDOW).collect();
        // A block a reader has waited on alone for a while goes first, or a
        // block many peers have could wait behind rarer ones past the
        // reader's deadline. Not at once: at the start every fetcher would
        // ask the seed for the same first blocks.
        let now = Instant::now();
        let urgent: BTreeSet<u64> = self
            .waiters
            .iter()
            .filter(|w| {
                w.want.end - w.want.start == 1 && now.duration_since(w.since) > URGENT_AFTER
            })
            .map(|w| w.want.start)
            .collect();
        out.sort_by_cached_key(|&i| {
            let holders = self.peers.values().filter(|p| p.haves.has(i)).count();
            (!urgent.contains(&i), holders, i)
        });
        out
    }

    /// The cached [`Self::wanted`] order, rebuilt when wants changed or it
    /// is older than [`ORDER_TTL`] (peers' announcements shift rarity).
    fn refresh_order(&mut self) {
        if self.order_dirty || self.order_built.elapsed() > ORDER_TTL {
            self.order = self.wanted();
            self.order_built = Instant::now();
            self.order_dirty = false;
        }
    }

    /// The wants, the peers or the feed changed: rank again, then fill
    /// every peer's free slots.
    pub(super) async fn reschedule(&mut self) {
        self.order_dirty = true;
        self.schedule().await;
    }

    /// Fills every peer's free request slots, least loaded peers first.
    pub(super) async fn schedule(&mut self) {
        let mut ids: Vec<(u32, usize, PeerId)> = self
            .peers
            .iter()
            .map(|(id, p)| (p.strikes, self.downloads.count(*id), p.window(), *id))
            .filter(|&(_, inflight, window, _)| inflight < window)
            .map(|(strikes, inflight, _, id)| (strikes, inflight, id))
            .collect();
        ids.sort_unstable();
        for (_, _, id) in ids {
            self.fill(id).await;
        }
    }

    /// Fills `peer`'s free request slots with the best wanted blocks it
    /// has. Called when a slot frees (data, no-data, a timeout) or the peer
    /// announces blocks, so each call walks the cached order once instead
    /// of re-ranking every wanted block.
    pub(super) async fn fill(&mut self, peer: PeerId) {
        let info = self.feed.info();
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let inflight = self.downloads.count(peer);
        if inflight >= p.window() || p.remote_fork != info.fork {
            return;
        }
        if self.health.stalled() {
            return;
        }
        let free = p.window() - inflight;
        // An order whose blocks are all here or asked for is ranked again
        // after ORDER_TTL at the latest, and at once when wants change.
        self.refresh_order();
        let picks = self.pick(peer, free, info.fork);
        for index in picks {
            self.request(peer, index, info.fork).await;
        }
    }

    /// Up to `free` blocks to ask `peer` for: drawn at random from the
    /// first [`SPREAD`] blocks of the cached order that `peer` has and that
    /// are neither here nor asked of anyone.
    fn pick(&self, peer: PeerId, free: usize, fork: u64) -> Vec<u64> {
        let p = &self.peers[&peer];
        let mut candidates = Vec::new();
        for &index in &self.order {
            if candidates.len() == SPREAD.max(free) {
                break;
            }
            if !p.haves.has(index) || self.feed.has(index) || self.downloads.in_flight(index) {
                continue;
            }
            // A peer that just failed this block, or whose requests time
            // out, is asked only when no healthy peer has the block.
            if p.strikes > 0 || self.avoid.get(&index) == Some(&peer) {
                let other = self.peers.iter().any(|(id, q)| {
                    *id != peer && q.strikes == 0 && q.remote_fork == fork && q.haves.has(index)
                });
                if other {
                    continue;
                }
            }
            candidates.push(index);
        }
        let mut rng = rand::thread_rng();
        let n = free.min(candidates.len());
        rand::seq::index::sample(&mut rng, candidates.len(), n)
            .into_iter()
            .map(|k| candidates[k])
            .collect()
    }

    /// `index` is in flight at a seed and `holder` just announced it: the
    /// seed most likely sent it to `holder` a moment ago and is holding our
    /// request as a duplicate (see `upload.rs`). Cancel it there, so the
    /// seed's upload goes to a block nobody has yet; [`Self::fill`] then
    /// asks `holder`. Only young requests: an old one is on its way.
    pub(super) async fn hedge(&mut self, index: u64, holder: PeerId) {
        let Some((at, _, sent)) = self.downloads.holder(index) else {
            return;
        };
        if at == holder
            || sent.elapsed() > super::upload::DUP_WINDOW
            || !self.peers.get(&at).is_some_and(|p| p.complete)
        {
            return;
        }
        let Some((at, id)) = self.downloads.cancel_block(index, Instant::now()) else {
            return;
        };
        self.send(at, Message::Cancel(Cancel { request: id })).await;
    }

    async fn request(&mut self, peer: PeerId, index: u64, fork: u64) {
        let nodes = match self.feed.missing_nodes(index).await {
            Ok(n) => n,
            Err(e) => {
                debug!(feed = self.feed.name(), index, %e, "missing_nodes failed");
                return;
            }
        };
        let Some(id) = self.downloads.block(peer, index, Instant::now()) else {
            return;
        };
        debug!(feed = self.feed.name(), index, peer, "block requested");
        let req = Request {
            id,
            fork,
            block: Some(RequestBlock { index, nodes }),
            hash: None,
            seek: None,
            upgrade: None,
            manifest: false,
            priority: 0,
        };
        self.send(peer, Message::Request(req)).await;
    }

    /// Sends requests that timed out elsewhere; fails waiters past the end.
    pub(super) async fn expire(&mut self) {
        self.retry_storage().await;
        let now = Instant::now();
        for (peer, req) in self.uploads.due(now) {
            if self.peers.contains_key(&peer) {
                self.answer(peer, req).await;
            }
        }
        for (peer, id, what) in self.downloads.expire(now, REQUEST_TIMEOUT) {
            debug!(feed = self.feed.name(), ?what, peer, "request timed out");
            if let Pending::Block(index) = what {
                self.avoid.insert(index, peer);
            }
            if let Some(p) = self.peers.get_mut(&peer) {
                p.strikes += 1;
                p.window.timed_out();
            }
            self.send(peer, Message::Cancel(Cancel { request: id }))
                .await;
            if what == Pending::Upgrade {
                self.maybe_upgrade(peer).await;
            }
        }
        // Past the end of a feed we write, nothing will arrive.
        let info = self.feed.info();
        if info.writeable {
            let name = self.feed.name().to_owned();
            for w in &mut self.waiters {
                if w.want.end > info.length {
                    w.answer(Err(FetchError::PastEnd {
                        feed: name.clone(),
                        start: w.want.start,
                        end: w.want.end,
                        length: info.length,
                    }));
                }
            }
        }
        self.prune_waiters();
        if std::mem::take(&mut self.readers_left) {
            self.cancel_unwanted().await;
        }
        self.reschedule().await;
    }

    /// Readers left (an HTTP client disconnected, a fetch was dropped):
    /// withdraws the requests out for blocks no reader wants any more, so
    /// peers stop sending them. Not for a feed replicated in full, which
    /// wants every block anyway.
    async fn cancel_unwanted(&mut self) {
        if self.eager {
            return;
        }
        let unwanted: Vec<u64> = self
            .downloads
            .blocks_in_flight()
            .filter(|&i| {
                !self
                    .waiters
                    .iter()
                    .any(|w| w.want.start <= i && i < w.want.end)
            })
            .collect();
        let now = Instant::now();
        for index in unwanted {
            if let Some((peer, id)) = self.downloads.cancel_block(index, now) {
                debug!(
                    feed = self.feed.name(),
                    index, peer, "no reader wants it: request cancelled"
                );
                self.cancelled_unwanted.inc();
                self.send(peer, Message::Cancel(Cancel { request: id }))
                    .await;
            }
        }
    }
}
