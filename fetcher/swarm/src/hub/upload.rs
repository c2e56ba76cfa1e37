//! The uploading side of a hub: answering peers' requests, and holding
//! back a seed's duplicate uploads.
//!
//! When fetchers start together, two of them sometimes ask a seed for the
//! same block within a few milliseconds: neither can know the other asked.
//! The first gets it at once. The second is held for [`HOLD`]: by then the
//! first has stored the block and announced it, and the second, seeing that
//! announcement, cancels its request at the seed (hypercore's `Cancel`) and
//! asks the first instead (`Hub::hedge` in `schedule.rs`). A held request that
//! is not cancelled is answered when its time is up, so a requester that
//! cannot reach the first recipient only waits a little longer.
//!
//! Only a node seeding the feed holds (it wrote the feed, or has all of
//! it): a fetcher passing on a block it just got is *meant* to send it to
//! every neighbour, and holding those would slow the swarm down.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hypercore_protocol::schema::{Data, NoData, Request};
use hypercore_protocol::Message;
use tracing::debug;

use super::{Hub, PeerId, MAX_QUEUED_ANSWERS};

/// A second request for a block sent to another peer this recently is held.
pub const DUP_WINDOW: Duration = Duration::from_secs(1);
/// How long a held request waits for a cancel before it is answered.
pub const HOLD: Duration = Duration::from_millis(150);
/// Requests held for one peer at most; past that they are answered at once.
pub const MAX_HELD_PER_PEER: usize = 32;

#[derive(Debug, Default)]
pub struct Uploads {
    /// Block index → the peer it was last sent to, and when.
    recent: HashMap<u64, (PeerId, Instant)>,
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    peer: PeerId,
    req: Request,
    since: Instant,
}

impl Uploads {
    /// Whether to answer `peer`'s request now (and note the upload), or to
    /// hold it: held requests come back from [`Uploads::due`].
    pub fn admit(&mut self, peer: PeerId, req: Request, now: Instant) -> Option<Request> {
        let Some(index) = req.block.as_ref().map(|b| b.index) else {
            return Some(req);
        };
        let duplicate = self
            .recent
            .get(&index)
            .is_some_and(|&(to, at)| to != peer && now.duration_since(at) < DUP_WINDOW);
        if duplicate && self.held.iter().filter(|h| h.peer == peer).count() < MAX_HELD_PER_PEER {
            self.held.push(Held {
                peer,
                req,
                since: now,
            });
            return None;
        }
        self.recent.insert(index, (peer, now));
        Some(req)
    }

    /// `peer` no longer wants request `id`: true if it was held (and is
    /// now dropped).
    pub fn cancel(&mut self, peer: PeerId, id: u64) -> bool {
        let before = self.held.len();
        self.held.retain(|h| !(h.peer == peer && h.req.id == id));
        self.held.len() != before
    }

    /// Drops everything held for a peer that left.
    pub fn forget(&mut self, peer: PeerId) {
        self.held.retain(|h| h.peer != peer);
    }

    /// Held requests whose time is up, to answer now; also forgets uploads
    /// older than [`DUP_WINDOW`].
    pub fn due(&mut self, now: Instant) -> Vec<(PeerId, Request)> {
        self.recent
            .retain(|_, (_, at)| now.duration_since(*at) < DUP_WINDOW);
        let (due, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| now.duration_since(h.since) >= HOLD);
        self.held = keep;
        due.into_iter().map(|h| (h.peer, h.req)).collect()
    }
}

/// Tree nodes a request may say it already has: a tree of 2^64 blocks is
/// 64 levels, so anything above this is made up.
const MAX_NODES: u64 = 128;

/// Why a peer's request is not passed to hypercore (it is answered
/// `NoData`). Every number in a request is the peer's choice, and
/// hypercore 0.16 does tree arithmetic on them unchecked; only requests
/// within the feed as we hold it reach it.
pub fn out_of_bounds(req: &Request, length: u64, byte_length: u64) -> Option<&'static str> {
    let nodes_ok = |n: u64| n <= MAX_NODES;
    if let Some(b) = &req.block {
        if b.index >= length || !nodes_ok(b.nodes) {
            return Some("block past the feed");
        }
    }
    if let Some(h) = &req.hash {
        // Tree node indexes of a feed of `length` blocks stay below 2 length.
        if h.index >= length.saturating_mul(2) || !nodes_ok(h.nodes) {
            return Some("tree node past the feed");
        }
    }
    if let Some(s) = &req.seek {
        if s.bytes >= byte_length {
            return Some("seek past the feed");
        }
    }
    if let Some(u) = &req.upgrade {
        if u.length == 0 || u.start.checked_add(u.length).is_none_or(|end| end > length) {
            return Some("upgrade past the feed");
        }
    }
    None
}

impl Hub {
    /// Whether this node seeds the feed: it writes it or has all of it.
    fn seeding(&self) -> bool {
        let info = self.feed.info();
        info.writeable || (info.length > 0 && info.contiguous_length == info.length)
    }

    pub(super) async fn on_request(&mut self, peer: PeerId, req: Request) {
        if req.block.is_some()
            && (self.silent_uploads || self.silent_after.is_some_and(|n| self.uploaded >= n))
        {
            return;
        }
        // Answers wait in the peer's queue until its connection takes them:
        // a peer that asks for more than it reads gets no more, so one
        // cannot make us hold more than MAX_QUEUED_ANSWERS blocks for it.
        // An honest peer keeps at most MAX_WINDOW requests in flight.
        if self
            .peers
            .get(&peer)
            .is_some_and(|p| p.answers.load(Ordering::Relaxed) >= MAX_QUEUED_ANSWERS)
        {
            debug!(
                feed = self.feed.name(),
                peer, "peer's queue is full; request dropped"
            );
            return;
        }
        // What --share keeps to itself is answered as not held.
        if let Some(b) = &req.block {
            if !self.may_share(b.index) {
                let id = req.id;
                debug!(
                    feed = self.feed.name(),
                    index = b.index,
                    "not shared (--share)"
                );
                return self.queue_answer(peer, Message::NoData(NoData { request: id }));
            }
        }
        let req = if self.seeding() {
            match self.uploads.admit(peer, req, Instant::now()) {
                Some(req) => req,
                None => return,
            }
        } else {
            req
        };
        self.answer(peer, req).await;
    }

    pub(super) async fn answer(&mut self, peer: PeerId, req: Request) {
        let id = req.id;
        let info = self.feed.info();
        if let Some(why) = out_of_bounds(&req, info.length, info.byte_length) {
            debug!(feed = self.feed.name(), peer, why, "request not answerable");
            return self.queue_answer(peer, Message::NoData(NoData { request: id }));
        }
        if let Some(index) = req.block.as_ref().map(|b| b.index) {
            if self.remakeable(index) {
                return self
                    .ask_remade(index, super::remake::Asker::Peer(peer, req))
                    .await;
            }
        }
        let proof = self
            .feed
            .create_proof(req.block, req.hash, req.seek, req.upgrade)
            .await;
        let msg = match proof {
            Ok(Some(proof)) => {
                let mut data = Data {
                    request: id,
                    fork: proof.fork,
                    hash: proof.hash,
                    block: proof.block,
                    seek: proof.seek,
                    upgrade: proof.upgrade,
                };
                if let Some(b) = &data.block {
                    self.uploaded += b.value.len() as u64;
                }
                if self.corrupt_uploads {
                    if let Some(b) = data.block.as_mut().filter(|b| !b.value.is_empty()) {
                        let mid = b.value.len() / 2;
                        b.value[mid] ^= 0x01;
                    }
                }
                Message::Data(data)
            }
            Ok(None) => Message::NoData(NoData { request: id }),
            Err(e) => {
                debug!(feed = self.feed.name(), peer, %e, "cannot answer request");
                Message::NoData(NoData { request: id })
            }
        };
        self.queue_answer(peer, msg);
    }

    /// Queues an answer for `peer`. A block is counted before it is queued
    /// (the pump counts it off when it takes it), uncounted if the queue
    /// refuses it.
    pub(super) fn queue_answer(&self, peer: PeerId, msg: Message) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let data = matches!(msg, Message::Data(_));
        if data {
            p.answers.fetch_add(1, Ordering::Relaxed);
        }
        if p.out.try_send(msg).is_err() {
            debug!(peer, "peer queue full; answer dropped");
            if data {
                p.answers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypercore_schema::RequestBlock;

    fn req(id: u64, index: u64) -> Request {
        Request {
            id,
            fork: 0,
            block: Some(RequestBlock { index, nodes: 0 }),
            hash: None,
            seek: None,
            upgrade: None,
            manifest: false,
            priority: 0,
        }
    }

    #[test]
    fn requests_outside_the_feed_are_refused_before_hypercore_sees_them() {
        use hypercore_schema::{RequestSeek, RequestUpgrade};
        let (len, bytes) = (10, 1000);
        let ok = |r: &Request| out_of_bounds(r, len, bytes).is_none();
        assert!(ok(&req(1, 0)) && ok(&req(1, 9)));
        for index in [10, 11, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            assert!(!ok(&req(1, index)), "block {index}");
        }
        let mut r = req(1, 3);
        r.block.as_mut().unwrap().nodes = u64::MAX;
        assert!(!ok(&r));
        let hash = |index| Request {
            block: None,
            hash: Some(RequestBlock { index, nodes: 0 }),
            ..req(1, 0)
        };
        assert!(ok(&hash(19)) && !ok(&hash(20)) && !ok(&hash(u64::MAX)));
        let seek = |bytes| Request {
            block: None,
            seek: Some(RequestSeek { bytes }),
            ..req(1, 0)
        };
        assert!(ok(&seek(999)) && !ok(&seek(1000)) && !ok(&seek(u64::MAX)));
        let up = |start, length| Request {
            block: None,
            upgrade: Some(RequestUpgrade { start, length }),
            ..req(1, 0)
        };
        assert!(ok(&up(0, 10)) && ok(&up(4, 6)));
        for (s, l) in [(0, 0), (4, 7), (10, 1), (u64::MAX - 1, 5), (5, u64::MAX)] {
            assert!(!ok(&up(s, l)), "upgrade {s}+{l}");
        }
        // An empty feed answers nothing.
        assert!(out_of_bounds(&req(1, 0), 0, 0).is_some());
    }

    #[test]
    fn a_second_peer_asking_for_a_block_just_sent_is_held_then_answered() {
        let mut u = Uploads::default();
        let t = Instant::now();
        assert!(u.admit(1, req(10, 5), t).is_some());
        assert!(u.admit(2, req(20, 5), t).is_none(), "held");
        assert!(u.due(t + HOLD / 2).is_empty());
        let due = u.due(t + HOLD);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, due[0].1.id), (2, 20));
    }

    #[test]
    fn a_cancelled_held_request_is_never_answered() {
        let mut u = Uploads::default();
        let t = Instant::now();
        u.admit(1, req(10, 5), t);
        assert!(u.admit(2, req(20, 5), t).is_none());
        assert!(!u.cancel(2, 99));
        assert!(u.cancel(2, 20));
        assert!(u.due(t + HOLD * 2).is_empty());
    }

    #[test]
    fn the_same_peer_again_or_an_old_upload_is_answered_at_once() {
        let mut u = Uploads::default();
        let t = Instant::now();
        u.admit(1, req(10, 5), t);
        assert!(u.admit(1, req(11, 5), t).is_some(), "same peer");
        assert!(
            u.admit(2, req(20, 5), t + DUP_WINDOW).is_some(),
            "old upload"
        );
        assert!(u.admit(3, req(30, 6), t).is_some(), "other block");
    }

    #[test]
    fn holding_is_bounded_per_peer_and_dropped_when_it_leaves() {
        let mut u = Uploads::default();
        let t = Instant::now();
        for i in 0..(MAX_HELD_PER_PEER as u64 + 5) {
            u.admit(1, req(i, i), t);
        }
        let held = (0..(MAX_HELD_PER_PEER as u64 + 5))
            .filter(|&i| u.admit(2, req(100 + i, i), t).is_none())
            .count();
        assert_eq!(held, MAX_HELD_PER_PEER);
        u.forget(2);
        assert!(u.due(t + HOLD).is_empty());
    }
}
