//! Which blocks to ask for, from whom, and what to do when a peer is slow.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hypercore_protocol::schema::{Cancel, Request};
use hypercore_protocol::Message;
use hypercore_schema::RequestBlock;
use tracing::debug;

use super::{mix, FetchError, Hub, Inflight, PeerId, REQUEST_TIMEOUT, SCHEDULE_WINDOW};

/// How long a reader waits on one block before it jumps the rarest-first queue.
const URGENT_AFTER: Duration = Duration::from_secs(10);

impl Hub {
    /// Blocks wanted and not here or in flight: at most [`SCHEDULE_WINDOW`]
    /// of them, lowest first, then ordered rarest first (fewest peers have
    /// them) with a per-node random tie-break. Nodes that start together
    /// thus ask the seed for different blocks and trade the rest among
    /// themselves, as BitTorrent's rarest-first does.
    fn wanted(&self) -> Vec<u64> {
        let info = self.feed.info();
        let mut set = BTreeSet::new();
        let add = |i: u64, set: &mut BTreeSet<u64>| {
            if !self.feed.has(i) && !self.inflight.contains_key(&i) {
                set.insert(i);
            }
        };
        for w in &self.waiters {
            for i in w.start..w.end.min(info.length) {
                add(i, &mut set);
            }
        }
        if self.eager {
            for i in info.contiguous_length..info.length {
                if set.len() >= SCHEDULE_WINDOW {
                    break;
                }
                add(i, &mut set);
            }
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
            .filter(|w| w.end - w.start == 1 && now.duration_since(w.since) > URGENT_AFTER)
            .map(|w| w.start)
            .collect();
        out.sort_by_cached_key(|&i| {
            let holders = self.peers.values().filter(|p| p.haves.has(i)).count();
            (!urgent.contains(&i), holders, mix(i ^ self.salt))
        });
        out
    }

    pub(super) async fn schedule(&mut self) {
        // Most calls come while every peer's window is full (a Range or a
        // Synchronize arriving): then there is nothing to decide.
        if !self.peers.values().any(|p| p.inflight < p.window()) {
            return;
        }
        let info = self.feed.info();
        for index in self.wanted() {
            // Prefer a peer that did not just fail this block; fall back to
            // it when it is the only one that has the block.
            let avoid = self.avoid.get(&index).copied();
            // A peer whose requests timed out is asked only for blocks no
            // other peer has.
            let holders = || {
                self.peers
                    .iter()
                    .filter(|(_, p)| p.haves.has(index) && p.remote_fork == info.fork)
            };
            let healthy_holder = holders().any(|(_, p)| p.strikes == 0);
            let choice = holders()
                .filter(|(_, p)| p.inflight < p.window() && (p.strikes == 0 || !healthy_holder))
                .min_by_key(|(id, p)| (Some(**id) == avoid, p.strikes, p.inflight))
                .map(|(id, _)| *id);
            let Some(peer) = choice else {
                if self.peers.values().all(|p| p.inflight >= p.window()) {
                    break;
                }
                continue;
            };
            let nodes = match self.feed.missing_nodes(index).await {
                Ok(n) => n,
                Err(e) => {
                    debug!(feed = self.feed.name(), index, %e, "missing_nodes failed");
                    continue;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            self.requests.insert(id, (peer, index));
            self.inflight.insert(
                index,
                Inflight {
                    peer,
                    id,
                    sent: Instant::now(),
                },
            );
            if let Some(p) = self.peers.get_mut(&peer) {
                p.inflight += 1;
            }
            let req = Request {
                id,
                fork: info.fork,
                block: Some(RequestBlock { index, nodes }),
                hash: None,
                seek: None,
                upgrade: None,
                manifest: false,
                priority: 0,
            };
            self.send(peer, Message::Request(req)).await;
        }
    }

    /// Sends requests that timed out elsewhere; fails waiters past the end.
    pub(super) async fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<(u64, PeerId, u64)> = self
            .inflight
            .iter()
            .filter(|(_, r)| now.duration_since(r.sent) > REQUEST_TIMEOUT)
            .map(|(i, r)| (*i, r.peer, r.id))
            .collect();
        for (index, peer, id) in expired {
            debug!(feed = self.feed.name(), index, peer, "request timed out");
            self.inflight.remove(&index);
            self.requests.remove(&id);
            self.avoid.insert(index, peer);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.inflight = p.inflight.saturating_sub(1);
            }
            self.send(peer, Message::Cancel(Cancel { request: id }))
                .await;
        }
        // Past the end of a feed we write, nothing will arrive.
        let info = self.feed.info();
        if info.writeable {
            let name = self.feed.name().to_owned();
            for w in &mut self.waiters {
                if w.end > info.length {
                    w.answer(Err(FetchError::PastEnd {
                        feed: name.clone(),
                        start: w.start,
                        end: w.end,
                        length: info.length,
                    }));
                }
            }
        }
        self.waiters.retain(|w| !w.done());
        self.schedule().await;
    }
}
