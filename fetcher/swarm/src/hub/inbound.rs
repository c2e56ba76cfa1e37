//! What peers send a hub: announcements (`Synchronize`, `Range`,
//! `Bitfield`), requests (handed to `upload.rs`), and answers to our own
//! requests (`Data`, `NoData`, matched in `downloads.rs`), and what a peer
//! that breaks the protocol costs it.

use hypercore_protocol::schema::{Bitfield, Data, NoData, Range, Request};
use hypercore_protocol::Message;
use hypercore_schema::RequestUpgrade;
use hypernar_feed::store::Feed;
use std::time::Instant;
use tracing::{debug, warn};

use super::downloads::{Answer, Pending};
use super::{Hub, PeerId, HEDGE_RANGE, MAX_VIOLATIONS};

impl Hub {
    /// A reply that matches nothing we asked this peer (an id we never
    /// sent it, or an answer it already gave): tolerated a few times, since
    /// a reply and our cancel can cross, then the peer is dropped.
    pub(super) async fn violation(&mut self, peer: PeerId, what: &str) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.violations += 1;
        debug!(
            feed = self.feed.name(),
            peer,
            violations = p.violations,
            what,
            "protocol violation"
        );
        if p.violations >= MAX_VIOLATIONS {
            let reason = format!("{} protocol violations, the last: {what}", p.violations);
            self.misbehaved(peer, reason).await;
        }
    }

    pub(super) async fn misbehaved(&mut self, peer: PeerId, reason: String) {
        warn!(feed = self.feed.name(), peer, %reason, "peer misbehaved");
        self.leave(peer);
        (self.on_misbehaved)(peer, &reason);
        self.reschedule().await;
    }

    pub(super) async fn on_message(&mut self, peer: PeerId, msg: Message) {
        match msg {
            Message::Synchronize(s) => {
                debug!(
                    feed = self.feed.name(),
                    peer,
                    length = s.length,
                    ours = self.feed.len(),
                    "synchronize"
                );
                let first = {
                    let p = self.peers.get_mut(&peer).expect("checked");
                    let first = !p.synced;
                    p.synced = true;
                    p.remote_length = s.length;
                    p.remote_fork = s.fork;
                    first
                };
                if first {
                    let msg = self.sync_message(&self.peers[&peer]);
                    self.send(peer, msg).await;
                }
                self.maybe_upgrade(peer).await;
                self.fill(peer).await;
            }
            Message::Range(r) => {
                let p = self.peers.get_mut(&peer).expect("checked");
                p.haves.set_range(r.start, r.length, !r.drop);
                if r.drop {
                    p.complete = false;
                } else if r.start == 0 && r.length > 0 && r.length >= p.remote_length {
                    p.complete = true;
                }
                // A single block announced: someone just got it. The peer
                // picks both numbers: the end is computed without overflow.
                if !r.drop && r.length <= HEDGE_RANGE {
                    for index in r.start..r.start.saturating_add(r.length) {
                        self.hedge(index, peer).await;
                    }
                }
                self.fill(peer).await;
            }
            Message::Bitfield(Bitfield { start, bitfield }) => {
                let p = self.peers.get_mut(&peer).expect("checked");
                p.haves.set_words(start, &bitfield);
                self.fill(peer).await;
            }
            Message::Request(req) => self.on_request(peer, req).await,
            Message::Data(data) => self.on_data(peer, data).await,
            Message::NoData(NoData { request }) => {
                match self.downloads.answered(peer, request, Instant::now()) {
                    Answer::Expected { what, .. } => {
                        if let (Pending::Block(index), Some(p)) = (what, self.peers.get_mut(&peer))
                        {
                            p.haves.set_range(index, 1, false);
                        }
                        self.schedule().await;
                    }
                    Answer::Late => {}
                    Answer::Unsolicited => {
                        self.violation(peer, "a NoData for a request it was not sent")
                            .await
                    }
                }
            }
            Message::Cancel(c) => {
                if self.uploads.cancel(peer, c.request) {
                    debug!(
                        feed = self.feed.name(),
                        peer, "held duplicate upload cancelled"
                    );
                }
            }
            Message::Want(_) | Message::Unwant(_) => {}
            other => debug!(peer, ?other, "ignored message"),
        }
    }

    pub(super) async fn maybe_upgrade(&mut self, peer: PeerId) {
        let info = self.feed.info();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.remote_fork != info.fork || p.remote_length <= info.length {
            return;
        }
        let length = p.remote_length - info.length;
        let Some(id) = self.downloads.upgrade(peer, Instant::now()) else {
            return;
        };
        let req = Request {
            id,
            fork: info.fork,
            block: None,
            hash: None,
            seek: None,
            upgrade: Some(RequestUpgrade {
                start: info.length,
                length,
            }),
            manifest: false,
            priority: 0,
        };
        self.send(peer, Message::Request(req)).await;
    }

    pub(super) async fn on_data(&mut self, peer: PeerId, data: Data) {
        let what = match self.downloads.answered(peer, data.request, Instant::now()) {
            Answer::Expected { what, rtt } => {
                let in_flight = self.downloads.count(peer) + 1;
                if let Some(p) = self.peers.get_mut(&peer) {
                    if matches!(what, Pending::Block(_)) {
                        p.window.delivered(rtt, in_flight);
                    }
                    p.strikes = 0;
                }
                what
            }
            // Asked for, then given up on: another peer has it or will.
            Answer::Late => return,
            Answer::Unsolicited => {
                return self
                    .violation(peer, "a Data for a request it was not sent")
                    .await
            }
        };
        let got_block = data.block.as_ref().map(|b| b.index);
        let fits = match what {
            Pending::Block(index) => got_block == Some(index),
            Pending::Upgrade => got_block.is_none() && data.upgrade.is_some(),
        };
        if !fits {
            return self
                .misbehaved(
                    peer,
                    format!("answered a request for {what:?} with block {got_block:?}"),
                )
                .await;
        }
        let proof = data.into_proof();
        let before = self.feed.info();
        match self.feed.verify_and_apply(&proof).await {
            Ok(_) => {}
            Err(e) if Feed::is_bad_proof(&e) => return self.misbehaved(peer, e.to_string()).await,
            Err(e) => return self.local_failure(e).await,
        }
        self.stored(got_block, before.length, Some(peer)).await;
    }

    /// A proof from outside the swarm (a web seed): verified and stored
    /// exactly as a peer's, then announced to every peer.
    pub(super) async fn on_outside_proof(
        &mut self,
        proof: hypercore_schema::Proof,
    ) -> Result<bool, super::SwarmError> {
        let got_block = proof.block.as_ref().map(|b| b.index);
        if got_block.is_some_and(|b| self.feed.has(b)) && proof.upgrade.is_none() {
            return Ok(false);
        }
        let before = self.feed.info().length;
        match self.feed.verify_and_apply(&proof).await {
            Ok(_) => {}
            Err(e) if Feed::is_bad_proof(&e) => {
                return Err(super::SwarmError::Rejected {
                    feed: self.feed.name().to_owned(),
                    source: std::sync::Arc::new(e),
                })
            }
            Err(e) => {
                // Not the source's fault: the caller must not drop it.
                let closed = super::SwarmError::Closed(self.feed.name().to_owned());
                self.local_failure(e).await;
                return Err(self.storage_error.clone().unwrap_or(closed));
            }
        }
        self.stored(got_block, before, None).await;
        Ok(true)
    }

    /// After a verified proof was stored: tell peers (all but `from`) of a
    /// new length or block, wake readers, and ask for what is next.
    pub(super) async fn stored(
        &mut self,
        got_block: Option<u64>,
        before: u64,
        from: Option<PeerId>,
    ) {
        self.storage_works();
        if let Some(index) = got_block {
            debug!(feed = self.feed.name(), index, ?from, "block stored");
            self.avoid.remove(&index);
        }
        let after = self.feed.info().length;
        if after != before {
            self.announce_length().await;
        }
        if let Some(b) = got_block {
            if self.feed.has(b) && self.may_share(b) {
                let ids: Vec<PeerId> = self
                    .peers
                    .keys()
                    .copied()
                    .filter(|p| Some(*p) != from)
                    .collect();
                for id in ids {
                    self.send(
                        id,
                        Message::Range(Range {
                            drop: false,
                            start: b,
                            length: 1,
                        }),
                    )
                    .await;
                }
            }
        }
        self.publish_state();
        self.settle_waiters();
        match from {
            Some(peer) if after == before => self.fill(peer).await,
            // Blocks past the old length may be wanted now.
            _ => self.reschedule().await,
        }
    }
}
