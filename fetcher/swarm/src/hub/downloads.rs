//! The requests a hub has out to its peers: which peer was asked, under
//! which id, for what, and since when.
//!
//! Request ids are the hub's own counter, so they are guessable: a reply
//! counts only if it comes from the peer that was asked. Every lookup is by
//! `(peer, id)`; a `Data` or `NoData` from one peer can never settle, free
//! or slow down a request to another.
//!
//! A request we give up on (a timeout, or a cancel after a faster peer
//! announced the block) may still be answered: the answer was on its way
//! when we gave up. Those ids are remembered for [`LATE_FOR`] (at most
//! [`MAX_ABANDONED`] per peer), and an answer to one is [`Answer::Late`],
//! not a violation. Anything else that matches no request is
//! [`Answer::Unsolicited`]: the peer made it up or sent it twice.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::PeerId;

/// How long an abandoned request's late answer is excused.
pub const LATE_FOR: Duration = Duration::from_secs(30);
/// Abandoned request ids remembered per peer; older ones are forgotten
/// first (their late answers then count as unsolicited).
pub const MAX_ABANDONED: usize = 4096;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// One block and the tree nodes that prove it.
    Block(u64),
    /// The signed tree up to the peer's length.
    Upgrade,
}

/// How a reply from a peer relates to what we asked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It answers a request out to that peer, sent `rtt` ago; the request
    /// is settled.
    Expected { what: Pending, rtt: Duration },
    /// It answers a request to that peer we had already given up on.
    Late,
    /// No request to that peer had this id, or it was answered already.
    Unsolicited,
}

#[derive(Debug)]
struct Out {
    what: Pending,
    sent: Instant,
}

#[derive(Debug, Default)]
struct PeerOut {
    count: usize,
    upgrading: bool,
    /// Ids given up on, oldest first, with when.
    abandoned: VecDeque<(u64, Instant)>,
}

/// Requests out, by `(peer, id)` and by block.
#[derive(Debug)]
pub struct Downloads {
    next_id: u64,
    out: HashMap<(PeerId, u64), Out>,
    /// Block index → the `(peer, id)` it is asked of.
    blocks: HashMap<u64, (PeerId, u64)>,
    peers: HashMap<PeerId, PeerOut>,
}

impl Default for Downloads {
    fn default() -> Self {
        Downloads {
            next_id: 1,
            out: HashMap::new(),
            blocks: HashMap::new(),
            peers: HashMap::new(),
        }
    }
}

impl Downloads {
    fn issue(&mut self, peer: PeerId, what: Pending, now: Instant) -> u64 {
        let id = self.next_id;
        // 2^64 requests are out of reach; checked all the same.
        self.next_id = self.next_id.checked_add(1).expect("request ids exhausted");
        self.out.insert((peer, id), Out { what, sent: now });
        self.peers.entry(peer).or_default().count += 1;
        id
    }

    /// Records a request to `peer` for block `index`; returns its id.
    /// `None` if the block is already asked of someone.
    pub fn block(&mut self, peer: PeerId, index: u64, now: Instant) -> Option<u64> {
        if self.blocks.contains_key(&index) {
            return None;
        }
        let id = self.issue(peer, Pending::Block(index), now);
        self.blocks.insert(index, (peer, id));
        Some(id)
    }

    /// Records an upgrade request to `peer`; `None` if one is out already.
    pub fn upgrade(&mut self, peer: PeerId, now: Instant) -> Option<u64> {
        if self.upgrading(peer) {
            return None;
        }
        let id = self.issue(peer, Pending::Upgrade, now);
        self.peers.entry(peer).or_default().upgrading = true;
        Some(id)
    }

    /// Takes a request off the books without abandoning it.
    fn settle(&mut self, peer: PeerId, id: u64) -> Option<Out> {
        let out = self.out.remove(&(peer, id))?;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.count = p.count.saturating_sub(1);
            if out.what == Pending::Upgrade {
                p.upgrading = false;
            }
        }
        if let Pending::Block(index) = out.what {
            if self.blocks.get(&index) == Some(&(peer, id)) {
                self.blocks.remove(&index);
            }
        }
        Some(out)
    }

    /// Gives up on a request: a late answer to it is excused.
    fn abandon(&mut self, peer: PeerId, id: u64, now: Instant) -> Option<Pending> {
        let out = self.settle(peer, id)?;
        let p = self.peers.entry(peer).or_default();
        p.abandoned.push_back((id, now));
        while p.abandoned.len() > MAX_ABANDONED {
            p.abandoned.pop_front();
        }
        Some(out.what)
    }

    /// A `Data` or `NoData` from `peer` for request `id`.
    pub fn answered(&mut self, peer: PeerId, id: u64, now: Instant) -> Answer {
        if let Some(out) = self.settle(peer, id) {
            return Answer::Expected {
                what: out.what,
                rtt: now.saturating_duration_since(out.sent),
            };
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Answer::Unsolicited;
        };
        while p
            .abandoned
            .front()
            .is_some_and(|&(_, at)| now.saturating_duration_since(at) > LATE_FOR)
        {
            p.abandoned.pop_front();
        }
        match p.abandoned.iter().position(|&(i, _)| i == id) {
            Some(k) => {
                // Excused once: a second answer to it is a duplicate.
                p.abandoned.remove(k);
                Answer::Late
            }
            None => Answer::Unsolicited,
        }
    }

    /// Whether block `index` is asked of some peer.
    pub fn in_flight(&self, index: u64) -> bool {
        self.blocks.contains_key(&index)
    }

    /// Who block `index` is asked of, under which id, since when.
    pub fn holder(&self, index: u64) -> Option<(PeerId, u64, Instant)> {
        let &(peer, id) = self.blocks.get(&index)?;
        let sent = self.out.get(&(peer, id))?.sent;
        Some((peer, id, sent))
    }

    /// Blocks asked of some peer now.
    pub fn blocks_in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.blocks.keys().copied()
    }

    /// Withdraws the request for block `index` (we will send `Cancel`);
    /// returns whom it was asked of and its id.
    pub fn cancel_block(&mut self, index: u64, now: Instant) -> Option<(PeerId, u64)> {
        let &(peer, id) = self.blocks.get(&index)?;
        self.abandon(peer, id, now)?;
        Some((peer, id))
    }

    /// Abandons every request older than `timeout`; returns them.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<(PeerId, u64, Pending)> {
        let old: Vec<(PeerId, u64)> = self
            .out
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.sent) > timeout)
            .map(|(k, _)| *k)
            .collect();
        old.into_iter()
            .filter_map(|(peer, id)| Some((peer, id, self.abandon(peer, id, now)?)))
            .collect()
    }

    /// Requests out to `peer`.
    pub fn count(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.count)
    }

    /// Whether an upgrade request is out to `peer`.
    pub fn upgrading(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.upgrading)
    }

    /// Drops every request to a peer that left.
    pub fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.out.retain(|(p, _), _| *p != peer);
        self.blocks.retain(|_, (p, _)| *p != peer);
    }

    /// Abandons every request (the local replica was reopened: what was
    /// asked for must be asked again).
    pub fn abandon_all(&mut self, now: Instant) {
        let all: Vec<(PeerId, u64)> = self.out.keys().copied().collect();
        for (peer, id) in all {
            self.abandon(peer, id, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = 1;
    const B: PeerId = 2;

    #[test]
    fn an_answer_settles_only_the_askers_request() {
        let mut d = Downloads::default();
        let t = Instant::now();
        let id = d.block(A, 7, t).unwrap();
        // B echoes A's id: nothing of A's is touched.
        assert_eq!(d.answered(B, id, t), Answer::Unsolicited);
        assert!(d.in_flight(7));
        assert_eq!(d.count(A), 1);
        let later = t + Duration::from_millis(30);
        assert_eq!(
            d.answered(A, id, later),
            Answer::Expected {
                what: Pending::Block(7),
                rtt: Duration::from_millis(30)
            }
        );
        assert!(!d.in_flight(7));
        assert_eq!(d.count(A), 0);
        // The same answer again is a duplicate.
        assert_eq!(d.answered(A, id, later), Answer::Unsolicited);
    }

    #[test]
    fn ids_never_issued_are_unsolicited() {
        let mut d = Downloads::default();
        let t = Instant::now();
        d.block(A, 1, t).unwrap();
        for id in [0, 2, 99, u64::MAX] {
            assert_eq!(d.answered(A, id, t), Answer::Unsolicited, "id {id}");
        }
        assert_eq!(d.count(A), 1);
    }

    #[test]
    fn a_block_is_asked_of_one_peer_at_a_time() {
        let mut d = Downloads::default();
        let t = Instant::now();
        assert!(d.block(A, 3, t).is_some());
        assert!(d.block(B, 3, t).is_none());
        assert_eq!(d.holder(3).map(|h| h.0), Some(A));
    }

    #[test]
    fn upgrades_are_one_per_peer_and_settle_apart_from_blocks() {
        let mut d = Downloads::default();
        let t = Instant::now();
        let up = d.upgrade(A, t).unwrap();
        assert!(d.upgrade(A, t).is_none());
        assert!(d.upgrading(A) && !d.upgrading(B));
        let blk = d.block(A, 0, t).unwrap();
        assert_eq!(d.count(A), 2);
        assert!(matches!(
            d.answered(A, up, t),
            Answer::Expected {
                what: Pending::Upgrade,
                ..
            }
        ));
        assert!(!d.upgrading(A));
        assert!(d.in_flight(0));
        assert!(matches!(d.answered(A, blk, t), Answer::Expected { .. }));
    }

    #[test]
    fn a_late_answer_to_a_cancelled_or_expired_request_is_excused_once() {
        let mut d = Downloads::default();
        let t = Instant::now();
        let c = d.block(A, 1, t).unwrap();
        let e = d.block(A, 2, t).unwrap();
        assert_eq!(d.cancel_block(1, t), Some((A, c)));
        let gone = d.expire(t + Duration::from_secs(9), Duration::from_secs(8));
        assert_eq!(gone, vec![(A, e, Pending::Block(2))]);
        assert_eq!(d.count(A), 0);
        assert!(!d.in_flight(1) && !d.in_flight(2));
        let now = t + Duration::from_secs(10);
        assert_eq!(d.answered(A, c, now), Answer::Late);
        assert_eq!(d.answered(A, c, now), Answer::Unsolicited);
        // Another peer cannot use A's abandoned ids either.
        assert_eq!(d.answered(B, e, now), Answer::Unsolicited);
        assert_eq!(d.answered(A, e, now), Answer::Late);
    }

    #[test]
    fn excuses_expire_and_are_bounded() {
        let mut d = Downloads::default();
        let t = Instant::now();
        let old = d.block(A, 0, t).unwrap();
        d.cancel_block(0, t);
        assert_eq!(
            d.answered(A, old, t + LATE_FOR + Duration::from_secs(1)),
            Answer::Unsolicited
        );
        let mut ids = Vec::new();
        for i in 0..(MAX_ABANDONED as u64 + 10) {
            ids.push(d.block(A, i, t).unwrap());
            d.cancel_block(i, t);
        }
        assert_eq!(d.peers[&A].abandoned.len(), MAX_ABANDONED);
        assert_eq!(d.answered(A, ids[0], t), Answer::Unsolicited);
        assert_eq!(d.answered(A, *ids.last().unwrap(), t), Answer::Late);
    }

    #[test]
    fn a_peer_that_leaves_takes_only_its_own_requests() {
        let mut d = Downloads::default();
        let t = Instant::now();
        d.block(A, 1, t).unwrap();
        let b = d.block(B, 2, t).unwrap();
        d.upgrade(A, t).unwrap();
        d.forget(A);
        assert_eq!(d.count(A), 0);
        assert!(!d.upgrading(A) && !d.in_flight(1));
        assert!(d.in_flight(2));
        assert!(matches!(d.answered(B, b, t), Answer::Expected { .. }));
    }

    #[test]
    fn abandon_all_frees_every_slot() {
        let mut d = Downloads::default();
        let t = Instant::now();
        let a = d.block(A, 1, t).unwrap();
        d.block(B, 2, t).unwrap();
        d.upgrade(B, t).unwrap();
        d.abandon_all(t);
        assert_eq!((d.count(A), d.count(B)), (0, 0));
        assert!(!d.upgrading(B) && !d.in_flight(1) && !d.in_flight(2));
        assert_eq!(d.answered(A, a, t), Answer::Late);
    }
}
