//! Which blocks to ask for, from whom, and what to do when a peer is slow:
//! the shell around `plan.rs`, whose pure functions decide.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hypercore_protocol::schema::{Cancel, Request};
use hypercore_protocol::Message;
use hypercore_schema::RequestBlock;
use tracing::debug;

use super::downloads::Pending;
use super::plan::{self, Seen};
use super::wants;
use super::{Hub, PeerId, SwarmError, REQUEST_TIMEOUT, SCHEDULE_WINDOW};

/// How long a computed block order is used before it is ranked again.
const ORDER_TTL: Duration = Duration::from_millis(100);

impl Hub {
    /// Blocks wanted and not here or in flight: at most [`SCHEDULE_WINDOW`]
    /// of them, lowest first, then ordered by [`plan::rank`] (urgent,
    /// rarest, lowest). [`Self::pick`] draws each request at random from
    /// the first [`plan::SPREAD`] of these that a peer
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
        if let Some(r) = self.eager {
            let end = r.to.map_or(info.length, |t| t.min(info.length));
            // From the first block missing in the range: `wants::collect`
            // looks a bounded number of blocks past its start, so a start
            // far behind what is stored would want nothing.
            let start = self.ready.max(r.from).max(info.contiguous_length);
            let all = wants::Want::new(start, end);
            wants::collect(&all, info.length, has, asked, SCHEDULE_WINDOW, &mut set);
        }
        let wanted: Vec<u64> = set.into_iter().take(SCHEDULE_WINDOW).collect();
        let now = Instant::now();
        let urgent = plan::urgent(
            self.waiters
                .iter()
                .map(|w| (w.want.start, w.want.end, now.duration_since(w.since))),
        );
        plan::rank(wanted, &urgent, |i| {
            self.peers.values().filter(|p| p.haves.has(i)).count()
        })
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
        let ids = plan::fill_order(
            self.peers
                .iter()
                .map(|(id, p)| (*id, p.strikes, self.downloads.count(*id), p.window())),
        );
        for id in ids {
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

    /// Up to `free` blocks to ask `peer` for: drawn at random from its
    /// [`plan::candidates`] in the cached order.
    fn pick(&self, peer: PeerId, free: usize, fork: u64) -> Vec<u64> {
        let p = &self.peers[&peer];
        let seen = |index| Seen {
            peer_has: p.haves.has(index),
            here: self.feed.has(index),
            in_flight: self.downloads.in_flight(index),
            peer_failed_it: self.avoid.get(&index) == Some(&peer),
        };
        let healthy_other_has = |index| {
            self.peers.iter().any(|(id, q)| {
                *id != peer && q.strikes == 0 && q.remote_fork == fork && q.haves.has(index)
            })
        };
        let candidates =
            plan::candidates(&self.order, free, p.strikes > 0, seen, healthy_other_has);
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
        let complete = self.peers.get(&at).is_some_and(|p| p.complete);
        if !plan::withdraw_duplicate(
            at,
            holder,
            complete,
            sent.elapsed(),
            super::upload::DUP_WINDOW,
        ) {
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
                    w.answer(Err(SwarmError::PastEnd {
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
        if self.eager == Some(super::EagerRange::ALL) {
            return;
        }
        let eager = self.eager;
        let unwanted: Vec<u64> = self
            .downloads
            .blocks_in_flight()
            .filter(|&i| !eager.is_some_and(|r| r.contains(i)))
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
