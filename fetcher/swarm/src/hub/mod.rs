//! One actor per feed: it owns the hypercore, answers peers' requests,
//! verifies and stores what peers send, and schedules block requests over
//! every peer that has the blocks.
//!
//! Peers are thin pumps (see `pump.rs`): each replication channel forwards
//! the messages it receives to the feed's hub and sends what the hub gives
//! it. Everything that touches the hypercore happens here, one message at a
//! time, so nothing needs a lock.
//!
//! - `inbound.rs`: what peers send (announcements, data, violations);
//! - `upload.rs`: answering requests; a seed holds duplicates;
//! - `downloads.rs`: our requests out, keyed by (peer, id);
//! - `schedule.rs` (the shell), `plan.rs` (its pure decisions), `wants.rs`,
//!   `window.rs`: which block next, from whom,
//!   how many in flight;
//! - `storage.rs`: what a failing disk does to a hub;
//! - `eager.rs`: which blocks are replicated in full, wanted or not;
//! - `remake.rs`: dropped blocks of a feed we write, made again on request;
//! - `handle.rs`: the [`HubHandle`] and the messages it sends the hub.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypercore_protocol::schema::{Range, Synchronize};
use hypercore_protocol::Message;
use hypernar_feed::format::identity::FeedKey;
use hypernar_feed::store::{Feed, FeedStore, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

mod announce;
mod downloads;
mod eager;
mod handle;
mod inbound;
mod plan;
mod remake;
mod schedule;
mod storage;
mod upload;
pub mod wants;
mod window;

use crate::haves::Haves;
use downloads::Downloads;

pub use eager::EagerRange;
pub use handle::HubHandle;
use handle::Msg;
pub use remake::{Remake, RemakeSlot, MAX_ASKERS, MAX_REMAKING};
pub use upload::out_of_bounds;
pub use window::MAX_WINDOW;
/// Blocks waiting for one peer past which its requests are dropped.
const MAX_QUEUED_ANSWERS: usize = 64;
/// Replies matching no request we sent a peer, past which it is dropped.
const MAX_VIOLATIONS: u32 = 4;
/// Announcements this short may cancel a duplicate request (see `hedge`).
const HEDGE_RANGE: u64 = 16;
/// Most blocks considered in one scheduling pass.
pub const SCHEDULE_WINDOW: usize = 1024;
/// A request not answered in this time goes to another peer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Hub inbox size: a full inbox slows the peers feeding it.
const INBOX: usize = 256;
/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

/// A replication channel, unique for the life of the process.
pub type PeerId = u64;

pub use crate::error::SwarmError;

/// Called by a hub, on its own thread and before it handles anything
/// else, when a peer sent data that failed verification: the node
/// disconnects and bans it. Synchronous so the ban is in force (and
/// logged) before the fetch that the honest peers finish can end.
pub type OnMisbehaved = Arc<dyn Fn(PeerId, &str) + Send + Sync>;

/// The state of a feed others can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedState {
    /// Tree length (verified).
    pub length: u64,
    /// Blocks stored locally from 0 without a gap.
    pub contiguous: u64,
    /// The blocks replicated in full ([`HubHandle::set_eager_range`]), if
    /// any.
    pub eager: Option<EagerRange>,
    /// Blocks stored without a gap from the eager range's start (from 0
    /// when not eager): what a follower of the feed may read up to.
    pub ready: u64,
    /// Peers that have this feed open now.
    pub peers: usize,
}

struct Peer {
    out: mpsc::Sender<Message>,
    /// Blocks queued in `out`, not yet taken by the pump.
    answers: Arc<AtomicUsize>,
    synced: bool,
    remote_length: u64,
    remote_fork: u64,
    haves: Haves,
    /// Requests that timed out since this peer last delivered: a struck
    /// peer gets one request at a time and comes after the others.
    strikes: u32,
    /// How many requests it may have in flight (see `window.rs`).
    window: window::Window,
    /// It announced every block of the feed: a seed.
    complete: bool,
    /// Replies that matched nothing we asked it (see [`Self::violation`]).
    violations: u32,
}

impl Peer {
    fn window(&self) -> usize {
        if self.strikes > 0 {
            1
        } else {
            self.window.get()
        }
    }
}

struct Waiter {
    want: wants::Want,
    reply: Option<oneshot::Sender<Result<(), SwarmError>>>,
    since: Instant,
}

impl Waiter {
    fn done(&self) -> bool {
        self.reply.as_ref().is_none_or(|r| r.is_closed())
    }

    fn answer(&mut self, r: Result<(), SwarmError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(r);
        }
    }
}

struct Hub {
    feed: Feed,
    store: FeedStore,
    /// Replicate every block of this range (`None`: only what is wanted).
    eager: Option<EagerRange>,
    /// The first block at or after the eager range's start not stored
    /// (see [`FeedState::ready`]).
    ready: u64,
    peers: HashMap<PeerId, Peer>,
    waiters: Vec<Waiter>,
    /// Requests out to peers (see `downloads.rs`).
    downloads: Downloads,
    /// Blocks a peer failed to deliver, not to ask it again for a while.
    avoid: HashMap<u64, PeerId>,
    state: watch::Sender<FeedState>,
    on_misbehaved: OnMisbehaved,
    corrupt_uploads: bool,
    silent_uploads: bool,
    /// Fault switch: bytes of blocks to upload before going silent, and
    /// how many went out.
    silent_after: Option<u64>,
    uploaded: u64,
    /// Wanted blocks, best first, as last ranked (see `schedule.rs`).
    order: Vec<u64>,
    /// Whether storing works (see `storage.rs`), and why not.
    health: storage::Health,
    storage_error: Option<SwarmError>,
    /// Duplicate uploads held back (see `upload.rs`).
    uploads: upload::Uploads,
    order_built: Instant,
    /// The wants changed since `order` was ranked.
    order_dirty: bool,
    /// Requests withdrawn because no reader wanted their blocks any more
    /// (the node's `requests_cancelled` metric).
    cancelled_unwanted: prometheus_client::metrics::counter::Counter,
    /// A reader went away since the last [`Self::cancel_unwanted`].
    readers_left: bool,
    /// What of a replica may be announced and served (`--share`).
    share: Arc<crate::share::Share>,
    /// What makes dropped blocks of a feed we write again.
    remake: RemakeSlot,
    remaking: remake::Remaking,
    /// The hub's own inbox, for tasks it starts to answer into.
    me: mpsc::WeakSender<Msg>,
    key: [u8; 32],
}

/// What a hub may serve of its feed, and what makes again the blocks of a
/// feed we write that it dropped.
#[derive(Debug, Clone)]
pub struct Serving {
    /// What of a replica may be announced and served (`--share`).
    pub share: Arc<crate::share::Share>,
    pub remake: RemakeSlot,
}

/// Starts the hub of `feed` on a thread of its own, which ends when
/// `cancel` is cancelled (between two messages, never inside one) or every
/// handle is dropped. With `eager`, it fetches every block any peer has;
/// otherwise only what [`HubHandle::want`] asks for.
///
/// A thread per hub, with a single-threaded runtime, keeps hypercore's
/// file I/O (a write and, for feeds we write, an fsync per append) off the
/// node's async workers, where it would stall every connection; each feed
/// still has exactly one owner, so nothing needs a lock.
pub fn spawn(
    feed: Feed,
    store: FeedStore,
    eager: bool,
    on_misbehaved: OnMisbehaved,
    cancel: CancellationToken,
    cancelled_unwanted: prometheus_client::metrics::counter::Counter,
    serving: Serving,
) -> (HubHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INBOX);
    let info = feed.info();
    let (state, state_rx) = watch::channel(FeedState {
        length: info.length,
        contiguous: info.contiguous_length,
        eager: eager.then_some(EagerRange::ALL),
        ready: info.contiguous_length,
        peers: 0,
    });
    let name = feed.name().to_owned();
    let hub_key = *feed.public_key();
    let feed_key = feed.public_key().to_bytes();
    let writable = feed.writable();
    let hub = Hub {
        feed,
        store,
        eager: eager.then_some(EagerRange::ALL),
        ready: info.contiguous_length,
        peers: HashMap::new(),
        waiters: Vec::new(),
        downloads: Downloads::default(),
        avoid: HashMap::new(),
        state,
        on_misbehaved,
        corrupt_uploads: crate::fault::corrupt_uploads(),
        silent_uploads: crate::fault::silent_uploads(),
        silent_after: crate::fault::silent_after_bytes(),
        uploaded: 0,
        order: Vec::new(),
        uploads: upload::Uploads::default(),
        health: storage::Health::default(),
        storage_error: None,
        order_built: Instant::now(),
        order_dirty: true,
        cancelled_unwanted,
        readers_left: false,
        share: serving.share,
        remake: serving.remake,
        remaking: remake::Remaking::default(),
        me: tx.downgrade(),
        key: feed_key,
    };
    let thread = std::thread::Builder::new()
        .name(format!("hub-{}", &name[..8.min(name.len())]))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a hub's runtime");
            rt.block_on(hub.run(rx, cancel));
        })
        .expect("a hub's thread");
    let handle = HubHandle {
        tx,
        state: state_rx,
        name,
        key: FeedKey::from(hub_key),
        writable,
    };
    (handle, thread)
}

fn store_err(feed: &str, e: StoreError) -> SwarmError {
    SwarmError::store(feed, e)
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg).await;
                }
                _ = tick.tick() => self.expire().await,
            }
        }
    }

    fn publish_state(&mut self) {
        let info = self.feed.info();
        let was = *self.state.borrow();
        // The stored run from the eager range's start (from 0 when not
        // eager): a cursor that only moves forward, past what a follower
        // may read.
        let start = self.eager.map_or(0, |e| e.from);
        let floor = start.max(info.contiguous_length);
        let mut ready = self.ready.max(floor).min(info.length);
        // Blocks cleared or a replica started afresh: count again.
        if ready > floor && !self.feed.has(ready - 1) {
            ready = floor;
        }
        while ready < info.length && self.feed.has(ready) {
            ready += 1;
        }
        self.ready = ready;
        if self.eager == Some(EagerRange::ALL)
            && info.length > 0
            && info.contiguous_length == info.length
            && was.contiguous < info.length
        {
            info!(
                feed = self.feed.name(),
                blocks = info.length,
                "feed complete"
            );
        }
        let _ = self.state.send_if_modified(|s| {
            let new = FeedState {
                length: info.length,
                contiguous: info.contiguous_length,
                eager: self.eager,
                ready,
                peers: self.peers.len(),
            };
            let changed = *s != new;
            *s = new;
            changed
        });
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            // A new peer has announced nothing yet: nothing to ask it.
            Msg::Join { peer, out, answers } => self.join(peer, out, answers).await,
            Msg::Leave { peer } => {
                self.leave(peer);
                self.reschedule().await;
            }
            Msg::FromPeer { peer, msg } => {
                if self.peers.contains_key(&peer) {
                    self.on_message(peer, msg).await;
                } else {
                    debug!(
                        feed = self.feed.name(),
                        peer, "message from a peer that left"
                    );
                }
            }
            Msg::Want { start, end, reply } => {
                // A reader asks for every block in turn, most of them here
                // already or wanted by a wider want: only a want that adds
                // blocks to fetch changes the schedule.
                let mut want = wants::Want::new(start, end);
                if want.advance(|i| self.feed.has(i)) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                if let Some(e) = self
                    .storage_error
                    .as_ref()
                    .filter(|_| self.health.stalled())
                {
                    let _ = reply.send(Err(e.clone()));
                    return;
                }
                let covered = self
                    .waiters
                    .iter()
                    .any(|w| !w.done() && w.want.start <= start && end <= w.want.end);
                self.waiters.push(Waiter {
                    want,
                    reply: Some(reply),
                    since: Instant::now(),
                });
                if !covered {
                    self.reschedule().await;
                }
                self.start_remakes().await;
            }
            Msg::Reannounce => {
                // Blocks covered since a reader asked are made for it now.
                self.start_remakes().await;
                let ranges = self.have_ranges();
                let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                for id in ids {
                    for r in &ranges {
                        self.send(id, Message::Range(r.clone())).await;
                    }
                }
            }
            Msg::Held { start, end, reply } => {
                let _ = reply.send(self.feed.held(start, end));
            }
            Msg::Clear { start, end, reply } => {
                let held = self.feed.held(start, end);
                let r = self.feed.clear(start, end).await;
                if r.is_ok() && held > 0 {
                    let end = end.min(self.feed.len());
                    let range = Range {
                        drop: true,
                        start,
                        length: end.saturating_sub(start),
                    };
                    let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                    for id in ids {
                        self.send(id, Message::Range(range.clone())).await;
                    }
                    self.publish_state();
                }
                let _ = reply.send(r.map(|()| held).map_err(|e| store_err(self.feed.name(), e)));
            }
            Msg::Get { index, reply } if self.remakeable(index) => {
                self.ask_remade(index, remake::Asker::Local(reply)).await;
            }
            Msg::Get { index, reply } => {
                let r = self
                    .feed
                    .get(index)
                    .await
                    .map_err(|e| store_err(self.feed.name(), e));
                let _ = reply.send(r);
            }
            Msg::SetEager(range) => {
                self.eager = range;
                self.ready = range.map_or(0, |r| r.from);
                self.publish_state();
                self.reschedule().await;
            }
            Msg::Tree { reply } => {
                let info = self.feed.info();
                let _ = reply.send((info.length, info.fork));
            }
            Msg::MissingNodes { index, reply } => {
                let r = self
                    .feed
                    .missing_nodes(index)
                    .await
                    .map_err(|e| store_err(self.feed.name(), e));
                let _ = reply.send(r);
            }
            Msg::Proof { proof, reply } => {
                let r = self.on_outside_proof(*proof).await;
                let _ = reply.send(r);
            }
            Msg::WebSeedSync { root, reply } => {
                let r = hypernar_feed::webseed::sync(&mut self.feed, &root)
                    .await
                    .map_err(|e| store_err(self.feed.name(), e));
                let _ = reply.send(r);
            }
            Msg::DropOwn { start, end, reply } => {
                let _ = reply.send(self.drop_own(start, end).await);
                // What readers already wait for is made again now.
                self.start_remakes().await;
            }
            Msg::AnnounceDropped { start, end } => self.announce_dropped(start, end).await,
            Msg::Remade { index, value } => self.on_remade(index, value).await,
            Msg::Append { blocks, reply } => {
                let start = self.feed.len();
                let r = self.feed.append_batch(&blocks).await;
                let r = r
                    .map(|()| self.feed.len())
                    .map_err(|e| store_err(self.feed.name(), e));
                if r.is_ok() {
                    self.announce_length().await;
                    // Tell peers we have the new blocks, not only the new length.
                    let range = Range {
                        drop: false,
                        start,
                        length: blocks.len() as u64,
                    };
                    let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                    for id in ids {
                        self.send(id, Message::Range(range.clone())).await;
                    }
                }
                let _ = reply.send(r);
            }
        }
    }

    fn sync_message(&self, peer: &Peer) -> Message {
        let info = self.feed.info();
        Message::Synchronize(Synchronize {
            fork: info.fork,
            length: info.length,
            remote_length: if peer.remote_fork == info.fork {
                peer.remote_length
            } else {
                0
            },
            can_upgrade: true,
            uploading: true,
            downloading: true,
        })
    }

    async fn join(&mut self, id: PeerId, out: mpsc::Sender<Message>, answers: Arc<AtomicUsize>) {
        let peer = Peer {
            out,
            answers,
            synced: false,
            remote_length: 0,
            remote_fork: 0,
            haves: Haves::default(),
            strikes: 0,
            window: window::Window::default(),
            complete: false,
            violations: 0,
        };
        let mut hello = vec![self.sync_message(&peer)];
        hello.extend(self.have_ranges().into_iter().map(Message::Range));
        for m in hello {
            let _ = peer.out.send(m).await;
        }
        self.peers.insert(id, peer);
        self.publish_state();
    }

    fn leave(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.uploads.forget(peer);
        self.downloads.forget(peer);
        self.publish_state();
    }

    /// Queues a message for a peer without waiting: one slow peer must not
    /// stall the feed for all. The queue holds [`crate::pump::PEER_QUEUE`]
    /// messages; past that the message is dropped, which is safe: a dropped
    /// request or block times out and is asked of another peer, a dropped
    /// announcement only makes us look less useful. Block answers go
    /// through `answer`, which keeps at most MAX_QUEUED_ANSWERS per peer.
    async fn send(&mut self, peer: PeerId, msg: Message) {
        if let Some(p) = self.peers.get(&peer) {
            if p.out.try_send(msg).is_err() {
                debug!(peer, "peer queue full; message dropped");
            }
        }
    }

    async fn announce_length(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        debug!(
            feed = self.feed.name(),
            length = self.feed.len(),
            peers = ids.len(),
            "announcing length"
        );
        for id in ids {
            let msg = self.sync_message(&self.peers[&id]);
            self.send(id, msg).await;
        }
        self.publish_state();
    }

    /// Answers waiters whose blocks are all here, or cannot be.
    fn settle_waiters(&mut self) {
        let feed = &self.feed;
        for w in &mut self.waiters {
            if !w.done() && w.want.advance(|i| feed.has(i)) {
                w.answer(Ok(()));
            }
        }
        self.prune_waiters();
    }

    /// Drops answered waiters and those whose reader went away, noting the
    /// latter for [`Self::cancel_unwanted`].
    fn prune_waiters(&mut self) {
        if self
            .waiters
            .iter()
            .any(|w| w.reply.as_ref().is_some_and(|r| r.is_closed()))
        {
            self.readers_left = true;
        }
        self.waiters.retain(|w| !w.done());
    }
}
