//! The handle to a hub and the messages it takes: every call is a message
//! into the hub's inbox, answered on a oneshot.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use hypercore_protocol::Message;
use hypernar_feed::format::identity::FeedKey;
use tokio::sync::{mpsc, oneshot, watch};

use super::{EagerRange, FeedState, PeerId, SwarmError};

pub(super) enum Msg {
    Join {
        peer: PeerId,
        out: mpsc::Sender<Message>,
        answers: Arc<AtomicUsize>,
    },
    Leave {
        peer: PeerId,
    },
    FromPeer {
        peer: PeerId,
        msg: Message,
    },
    Want {
        start: u64,
        end: u64,
        reply: oneshot::Sender<Result<(), SwarmError>>,
    },
    Get {
        index: u64,
        reply: oneshot::Sender<Result<Vec<u8>, SwarmError>>,
    },
    Append {
        blocks: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<u64, SwarmError>>,
    },
    SetEager(Option<EagerRange>),
    Tree {
        reply: oneshot::Sender<(u64, u64)>,
    },
    MissingNodes {
        index: u64,
        reply: oneshot::Sender<Result<u64, SwarmError>>,
    },
    Proof {
        proof: Box<hypercore_schema::Proof>,
        reply: oneshot::Sender<Result<bool, SwarmError>>,
    },
    WebSeedSync {
        root: std::path::PathBuf,
        reply: oneshot::Sender<Result<Option<hypernar_feed::webseed::Head>, SwarmError>>,
    },
    /// Evict blocks: how many were held and are now dropped.
    Clear {
        start: u64,
        end: u64,
        reply: oneshot::Sender<Result<u64, SwarmError>>,
    },
    Held {
        start: u64,
        end: u64,
        reply: oneshot::Sender<u64>,
    },
    /// Tell every peer again what may be shared of what is held.
    Reannounce,
    /// Drop blocks of a feed we write that can be made again
    /// (`remake.rs`).
    DropOwn {
        start: u64,
        end: u64,
        reply: oneshot::Sender<Result<u64, SwarmError>>,
    },
    /// Tell every peer that blocks not stored and no longer made again
    /// are gone.
    AnnounceDropped {
        start: u64,
        end: u64,
    },
    /// A block made again, or `None` if it could not be.
    Remade {
        index: u64,
        value: Option<Vec<u8>>,
    },
}

/// A handle to a feed's hub.
#[derive(Debug, Clone)]
pub struct HubHandle {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) state: watch::Receiver<FeedState>,
    pub(super) name: String,
    pub(super) key: FeedKey,
    pub(super) writable: bool,
}

impl HubHandle {
    pub(super) fn closed(&self) -> SwarmError {
        SwarmError::Closed(self.name.clone())
    }

    /// The feed's state now, and a way to wait for changes.
    pub fn state(&self) -> watch::Receiver<FeedState> {
        self.state.clone()
    }

    /// Hex of the feed key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The feed's key.
    pub fn key(&self) -> FeedKey {
        self.key
    }

    /// Whether this node writes the feed (its blocks exist nowhere else).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// A peer joins: its messages go to `out`; `answers` counts the blocks
    /// queued there, which its pump takes off as it sends them.
    pub(crate) async fn join(
        &self,
        peer: PeerId,
        out: mpsc::Sender<Message>,
        answers: Arc<AtomicUsize>,
    ) {
        let _ = self.tx.send(Msg::Join { peer, out, answers }).await;
    }

    pub(crate) async fn leave(&self, peer: PeerId) {
        let _ = self.tx.send(Msg::Leave { peer }).await;
    }

    /// Room in the hub's inbox for one message from a peer; `None` once
    /// the hub has ended.
    pub(crate) async fn delivery(&self) -> Option<Delivery<'_>> {
        self.tx.reserve().await.ok().map(Delivery)
    }

    /// Resolves when blocks `start..end` are stored locally (verified),
    /// fetching them from peers as needed. Dropping the future cancels the
    /// want; wrap it in a timeout for a deadline.
    pub async fn want(&self, start: u64, end: u64) -> Result<(), SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Want { start, end, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Drops the stored blocks `start..end` (a replica's only; the disk
    /// space is given back) and tells peers; returns how many were held.
    pub async fn clear(&self, start: u64, end: u64) -> Result<u64, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Clear { start, end, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Announces again to every peer what may be shared of what is held
    /// (after `--share sets` allows more).
    pub async fn announce_held(&self) {
        let _ = self.tx.send(Msg::Reannounce).await;
    }

    /// How many of blocks `start..end` are stored here.
    pub async fn held(&self, start: u64, end: u64) -> Result<u64, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Held { start, end, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())
    }

    /// A locally stored block.
    pub async fn get(&self, index: u64) -> Result<Vec<u8>, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Get { index, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// The feed's verified length and fork.
    pub async fn tree(&self) -> Result<(u64, u64), SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Tree { reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())
    }

    /// How many tree nodes a proof of block `index` must carry here.
    pub async fn missing_nodes(&self, index: u64) -> Result<u64, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::MissingNodes { index, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Verifies a proof from outside the swarm (a web seed) against the
    /// signed tree and stores what it carries, as one from a peer; `false`
    /// if there was nothing new in it.
    pub async fn apply_proof(&self, proof: hypercore_schema::Proof) -> Result<bool, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Proof {
                proof: Box::new(proof),
                reply,
            })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Brings the feed's web-seed copy under `root` up to date.
    pub async fn sync_web_seed(
        &self,
        root: std::path::PathBuf,
    ) -> Result<Option<hypernar_feed::webseed::Head>, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::WebSeedSync { root, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// From now on, fetch every block peers have (index and key feeds, mirrors).
    pub async fn set_eager(&self) {
        self.set_eager_range(Some(EagerRange::ALL)).await
    }

    /// From now on, fetch every block of `range` that peers have (the head
    /// or the tail of an index whose middle is read by lookup), or, with
    /// `None`, only what is wanted.
    pub async fn set_eager_range(&self, range: Option<EagerRange>) {
        let _ = self.tx.send(Msg::SetEager(range)).await;
    }

    /// Appends blocks to a writable feed and tells every peer.
    pub async fn append(&self, blocks: Vec<Vec<u8>>) -> Result<u64, SwarmError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append { blocks, reply })
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }
}

/// A reserved place in a hub's inbox (see [`HubHandle::delivery`]).
pub(crate) struct Delivery<'a>(mpsc::Permit<'a, Msg>);

impl Delivery<'_> {
    pub(crate) fn send(self, peer: PeerId, msg: Message) {
        self.0.send(Msg::FromPeer { peer, msg });
    }
}
