//! How a node reaches peers: dialling (configured peers forever, learned
//! ones while they answer), and the root feeds it is found under on the DHT.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{Swarm, CONNECT_TIMEOUT};

/// Called when a dialled connection completes the Noise handshake.
pub type OnHandshake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// How a connection ended, as `run_conn` tells it.
#[derive(Debug)]
pub enum ConnEnd {
    /// The Noise handshake never completed.
    NoHandshake,
    /// A hypernar node, until the connection ended.
    Handshaken,
    /// A second connection to a node already connected (or to this node
    /// itself), closed at once; `Some`: notified when the kept one ends.
    Duplicate(Option<tokio_util::sync::CancellationToken>),
}

/// How long a dialler whose connection was a duplicate waits for the kept
/// one to end before it looks again.
const DUPLICATE_WAIT: Duration = Duration::from_secs(60);

/// How one dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No TCP connection (refused, timed out), or the address is banned.
    Refused,
    /// TCP connected but the Noise handshake never completed: whatever
    /// listens there (a web server, sshd) is not a hypernar node.
    NoHandshake,
    /// A hypernar node, until the connection ended.
    Handshaken,
    /// A node already connected another way (or this node itself).
    Duplicate,
    /// A handshake, then closed by the other side within [`SHORT`]: not
    /// a connection to lean on (it might be closing duplicates we do not
    /// know of); backed off like a failure.
    Short,
}

/// A handshaken connection that ends sooner than this counts as
/// [`Attempt::Short`].
pub(crate) const SHORT: Duration = Duration::from_secs(5);

/// Why a learned address was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// Nothing answered (gone, or never there).
    NoAnswer,
    /// Something answered TCP but no attempt in the run completed a
    /// handshake: not a hypernar node (or one at its connection cap, which
    /// closes on arrival too). Not worth dialling again soon.
    NotHypernar,
    /// Every attempt reached a hypernar node already connected another way
    /// (or one that kept closing at once): a peer worth remembering.
    AlreadyConnected,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Wait(Duration),
    GiveUp(GaveUp),
}

/// First wait after an attempt, doubled after each failure up to
/// [`REDIAL_MAX`]; reset by a handshake.
pub(crate) const REDIAL_FIRST: Duration = Duration::from_millis(250);
pub(crate) const REDIAL_MAX: Duration = Duration::from_secs(10);

/// When to dial an address again (pure). A failed handshake counts as a
/// failure like a refused connect: before, a TCP connect alone reset the
/// count, so an address that accepts TCP but is no hypernar node was dialled
/// about four times a second for ever.
#[derive(Debug)]
pub(crate) struct Redial {
    give_up_after: Option<u32>,
    failed: u32,
    accepted: u32,
    /// Of the failures, how many reached a node already connected.
    connected: u32,
    wait: Duration,
}

impl Redial {
    pub(crate) fn new(give_up_after: Option<u32>) -> Self {
        Redial {
            give_up_after,
            failed: 0,
            accepted: 0,
            connected: 0,
            wait: REDIAL_FIRST,
        }
    }

    pub(crate) fn ended(&mut self, attempt: Attempt) -> Next {
        match attempt {
            Attempt::Handshaken => {
                self.failed = 0;
                self.accepted = 0;
                self.connected = 0;
                self.wait = REDIAL_FIRST;
            }
            Attempt::Short => {
                self.failed = self.failed.saturating_add(1);
                self.connected = self.connected.saturating_add(1);
            }
            Attempt::NoHandshake => {
                self.failed = self.failed.saturating_add(1);
                self.accepted = self.accepted.saturating_add(1);
            }
            Attempt::Refused => self.failed = self.failed.saturating_add(1),
            // Waited for already: dial again soon, but a learned address
            // that only ever duplicates is given up like one that fails.
            Attempt::Duplicate => {
                self.failed = self.failed.saturating_add(1);
                self.connected = self.connected.saturating_add(1);
                self.wait = REDIAL_FIRST;
            }
        }
        if self.give_up_after.is_some_and(|n| self.failed >= n) {
            return Next::GiveUp(if self.connected >= self.failed {
                GaveUp::AlreadyConnected
            } else if self.accepted > 0 {
                GaveUp::NotHypernar
            } else {
                GaveUp::NoAnswer
            });
        }
        let wait = self.wait;
        if !matches!(attempt, Attempt::Handshaken | Attempt::Duplicate) {
            self.wait = (self.wait * 2).min(REDIAL_MAX);
        }
        Next::Wait(wait)
    }
}
use crate::hub::HubHandle;

impl Swarm {
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
        self.dial_while(addr, None, None).await;
    }

    /// Dials `addr` and keeps it connected, like [`Swarm::dial`], until
    /// `attempts` in a row fail (no TCP connection, no Noise handshake, or
    /// the address is banned): for peers learned from others, which may be
    /// gone or not hypernar nodes at all. `on_handshake` runs each time a
    /// connection completes the handshake. Resolves when it gives up.
    pub async fn dial_while_reachable(
        &self,
        addr: String,
        attempts: u32,
        on_handshake: Option<OnHandshake>,
    ) -> GaveUp {
        self.clone()
            .dial_while(addr, Some(attempts.max(1)), on_handshake)
            .await
    }

    async fn dial_while(
        self,
        addr: String,
        give_up_after: Option<u32>,
        on_handshake: Option<OnHandshake>,
    ) -> GaveUp {
        let mut redial = Redial::new(give_up_after);
        loop {
            let attempt = if self.is_banned(&addr) {
                Attempt::Refused
            } else {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                    Ok(Ok(stream)) => {
                        debug!(peer = %addr, "TCP connected");
                        let began = std::time::Instant::now();
                        let end = self
                            .clone()
                            .run_conn(stream, true, Some(addr.clone()), on_handshake.clone())
                            .await;
                        match end {
                            ConnEnd::Handshaken if began.elapsed() < SHORT => {
                                debug!(peer = %addr, "closed soon after its handshake");
                                Attempt::Short
                            }
                            ConnEnd::Handshaken => {
                                info!(peer = %addr, "disconnected");
                                Attempt::Handshaken
                            }
                            ConnEnd::NoHandshake => {
                                debug!(peer = %addr, "no Noise handshake: not a hypernar node, or not now");
                                Attempt::NoHandshake
                            }
                            ConnEnd::Duplicate(kept) => {
                                // Dial again once the connection kept
                                // instead ends (or after a while).
                                if let Some(kept) = kept {
                                    let _ = tokio::time::timeout(DUPLICATE_WAIT, kept.cancelled())
                                        .await;
                                } else {
                                    tokio::time::sleep(DUPLICATE_WAIT).await;
                                }
                                Attempt::Duplicate
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        debug!(peer = %addr, %e, "connect failed");
                        Attempt::Refused
                    }
                    Err(_) => {
                        debug!(peer = %addr, "connect timed out");
                        Attempt::Refused
                    }
                }
            };
            match redial.ended(attempt) {
                Next::Wait(wait) => tokio::time::sleep(wait).await,
                Next::GiveUp(why) => {
                    debug!(peer = %addr, ?why, "giving up on a learned peer");
                    return why;
                }
            }
        }
    }

    /// Adds a feed to [`Swarm::roots`] (once).
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
    ///
    /// Topics set by [`Swarm::set_first_roots`] come before them all.
    pub fn roots(&self) -> Vec<[u8; 32]> {
        let mut out = self.inner.lead_roots.lock().expect("roots lock").clone();
        for r in self.inner.first_roots.lock().expect("roots lock").iter() {
            if !out.contains(r) {
                out.push(*r);
            }
        }
        let roots = self.inner.roots.lock().expect("roots lock").clone();
        for r in roots {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// A topic looked up before every other, first come first: a group's
    /// meeting feed (members are met through it before anything else).
    pub fn add_lead_root(&self, key: [u8; 32]) {
        let mut roots = self.inner.lead_roots.lock().expect("roots lock");
        if !roots.contains(&key) {
            roots.push(key);
        }
    }

    /// Replaces the topics announced and looked up before every root:
    /// those of the generations this node follows (peers on the same
    /// release hold the same closure, so they are met first), at most a
    /// few, within the DHT's cap on topics.
    pub fn set_first_roots(&self, mut topics: Vec<[u8; 32]>) {
        topics.dedup();
        *self.inner.first_roots.lock().expect("roots lock") = topics;
    }

    /// Index and set feeds among the feeds stored here whose header is
    /// already here (never fetched for this), added to [`Swarm::roots`].
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
                let key = hub.key().to_bytes();
                use hypernar_feed::format::record::FeedRole;
                if (h.role == FeedRole::Index && key == h.publisher) || h.role == FeedRole::Set {
                    self.add_root(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_handshakes_count_back_off_and_give_up_like_refused_connects() {
        let mut r = Redial::new(Some(5));
        let waits: Vec<Next> = (0..5).map(|_| r.ended(Attempt::NoHandshake)).collect();
        assert_eq!(
            waits,
            vec![
                Next::Wait(Duration::from_millis(250)),
                Next::Wait(Duration::from_millis(500)),
                Next::Wait(Duration::from_secs(1)),
                Next::Wait(Duration::from_secs(2)),
                Next::GiveUp(GaveUp::NotHypernar),
            ]
        );
        let mut r = Redial::new(Some(2));
        assert_eq!(r.ended(Attempt::Refused), Next::Wait(REDIAL_FIRST));
        assert_eq!(r.ended(Attempt::Refused), Next::GiveUp(GaveUp::NoAnswer));
    }

    #[test]
    fn a_handshake_resets_the_count_and_the_wait() {
        let mut r = Redial::new(Some(3));
        r.ended(Attempt::NoHandshake);
        r.ended(Attempt::Refused);
        assert_eq!(r.ended(Attempt::Handshaken), Next::Wait(REDIAL_FIRST));
        assert_eq!(r.ended(Attempt::Refused), Next::Wait(REDIAL_FIRST));
        assert_eq!(r.ended(Attempt::Refused), Next::Wait(REDIAL_FIRST * 2));
        assert_eq!(r.ended(Attempt::Refused), Next::GiveUp(GaveUp::NoAnswer));
    }

    #[test]
    fn connections_that_end_at_once_back_off_and_a_node_connected_otherwise_is_kept() {
        let mut r = Redial::new(Some(4));
        assert_eq!(r.ended(Attempt::Short), Next::Wait(REDIAL_FIRST));
        assert_eq!(r.ended(Attempt::Short), Next::Wait(REDIAL_FIRST * 2));
        // A duplicate was waited for already (until the kept one ended).
        assert_eq!(r.ended(Attempt::Duplicate), Next::Wait(REDIAL_FIRST));
        assert_eq!(
            r.ended(Attempt::Duplicate),
            Next::GiveUp(GaveUp::AlreadyConnected)
        );
    }

    #[test]
    fn configured_peers_are_dialled_for_ever_at_most_every_ten_seconds() {
        let mut r = Redial::new(None);
        let mut last = Duration::ZERO;
        for _ in 0..1000 {
            match r.ended(Attempt::NoHandshake) {
                Next::Wait(w) => last = w,
                Next::GiveUp(_) => panic!("a configured peer is never given up"),
            }
        }
        assert_eq!(last, REDIAL_MAX);
    }
}
