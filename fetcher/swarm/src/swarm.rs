//! The swarm: the feeds of one data directory, each behind its hub, and the
//! connections to peers that replicate them.
//!
//! Every feed in the data directory is seeded. Which feeds are replicated
//! eagerly (in full and live) and which on demand is the floors' above to
//! say ([`Swarm::add_feed`]); with `mirror`, every stored feed is eager.
//! Each connection runs the Hypercore protocol; each replication channel
//! is a pump between the wire and the feed's hub (`swarm/conn.rs`; one
//! connection per remote node, `swarm/dedup.rs`).
//!
//! Shared state is a table per lock: `feeds`, `conns`, `peer_conn`,
//! `banned`, `remotes`, `eager`, `accepted`, `roots`, `tasks`,
//! `hub_threads`, each taken alone and briefly (never across an await).
//! The one nesting, and so the lock order: `conns`, then a connection's
//! `opened` (in [`Swarm::add_hub`], which offers a new feed on every
//! connection that has not opened it). `opening` (async) is held across a
//! feed's open and its hub's registration; inside it only `feeds` and then
//! `conns` are taken, one after the other.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use hypercore_protocol::{discovery_key, CommandTx};
use hypernar_feed::store::{FeedStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

mod conn;
mod dedup;
mod reach;
pub use reach::{GaveUp, OnHandshake};

use crate::error::SwarmError;
use crate::hub::{self, HubHandle, PeerId};

/// A misbehaving peer's address is not dialled again for this long.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// Time allowed for a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Swarm::shutdown`] waits for tasks and hubs to end.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// A connection whose Noise handshake is not done by then is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no frame either way for this long is closed (a
/// dialled peer is dialled again).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How many connections a node accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Accepted connections at once, from anywhere.
    pub max_connections: usize,
    /// Accepted connections at once from one IP address.
    pub max_per_ip: usize,
}

impl Default for Limits {
    /// A connection costs tens of KiB at rest. Its worst case is about
    /// 32 MiB (a full read backlog, [`wire::MAX_BACKLOG_BYTES`]; a frame
    /// being read, [`wire::MAX_FRAME`]; a full write queue,
    /// [`wire::MAX_UNSENT`]), reached only while our hubs or the peer
    /// stall; measured figures are in docs/benchmarks.md. The per-IP cap
    /// keeps one host from taking every place.
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_per_ip: 32,
        }
    }
}

/// Where the swarm's feeds are and whom it talks to.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    pub data_dir: PathBuf,
    /// Peers to dial and keep dialling (`host:port`).
    pub peers: Vec<String>,
    /// Replicate every block of every stored feed.
    pub mirror: bool,
    /// Caps on accepted connections.
    pub limits: Limits,
    /// What of the fetched blocks to announce and serve (`--share`).
    pub share: crate::share::ShareMode,
    /// `--share-exclude` is given: even `all` shares only what the node
    /// lists (`Share::filtered`).
    pub share_filtered: bool,
    /// Greetings by feed key (see [`Swarm::set_greeting`]), in place
    /// before the first connection.
    pub greetings: Vec<([u8; 32], Greeting)>,
}

struct FeedEntry {
    key: [u8; 32],
    hub: HubHandle,
}

struct Conn {
    /// The remote's address.
    addr: Option<SocketAddr>,
    traffic: crate::pump::Traffic,
    commands: CommandTx,
    kill: Arc<Notify>,
    dialled: Option<String>,
    /// Discovery keys of the feeds opened on this connection. hypercore-
    /// protocol makes a second channel when a key is opened twice (say,
    /// once as the remote offers it and once as a new feed is added here),
    /// which would make the same remote two peers of one hub.
    opened: Arc<Mutex<HashSet<[u8; 32]>>>,
}

/// Marks `dkey` opened in `opened`; false if it already was.
fn claim(opened: &Mutex<HashSet<[u8; 32]>>, dkey: [u8; 32]) -> bool {
    opened.lock().expect("opened lock").insert(dkey)
}

struct Inner {
    store: FeedStore,
    mirror: bool,
    feeds: Mutex<HashMap<[u8; 32], FeedEntry>>,
    conns: Mutex<HashMap<u64, Conn>>,
    peer_conn: Mutex<HashMap<PeerId, u64>>,
    banned: Mutex<HashMap<String, Instant>>,
    next_id: AtomicU64,
    /// This process's Noise static key, on every connection.
    noise: hypercore_handshake::state_machine::hc_specific::Keypair,
    /// Its public half.
    noise_public: [u8; 32],
    /// The connection kept to each remote node (`swarm/dedup.rs`).
    remotes: Mutex<dedup::Remotes>,
    /// Feeds replicated in full (trusted indexes, key feeds, mirrors), for
    /// the web seeds to keep up to date.
    eager: Mutex<Vec<([u8; 32], HubHandle)>>,
    /// Woken when a feed joins `eager`.
    eager_added: Notify,
    metrics: Arc<crate::metrics::Metrics>,
    limits: Limits,
    /// Accepted connections open now, by remote IP.
    accepted: Mutex<HashMap<IpAddr, usize>>,
    /// Cancelled by [`Swarm::shutdown`]: every task and hub ends.
    cancel: CancellationToken,
    /// The node's tasks (connections, pumps, dialers, followers).
    tasks: Mutex<JoinSet<()>>,
    /// The hubs' threads (see `hub::spawn`).
    hub_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Held while a feed is opened and its hub registered, so one feed is
    /// never opened twice.
    opening: tokio::sync::Mutex<()>,
    /// Feeds whose peers are looked for on the DHT, in order of priority
    /// (see [`Swarm::roots`]).
    roots: Mutex<Vec<[u8; 32]>>,
    /// Topics looked up before the roots (`Swarm::set_first_roots`).
    first_roots: Mutex<Vec<[u8; 32]>>,
    /// What hubs may announce and serve of replicas.
    share: Arc<crate::share::Share>,
    /// What makes dropped blocks of feeds we write again (`hub/remake.rs`).
    remake: hub::RemakeSlot,
    /// Greetings by discovery key (see [`Swarm::set_greeting`]).
    greetings: Mutex<HashMap<[u8; 32], Greeting>>,
    /// Topics looked up before all others (`Swarm::add_lead_root`).
    lead_roots: Mutex<Vec<[u8; 32]>>,
}

/// Called with the remote node's Noise key and the message it greeted with.
pub type OnGreeting = Arc<dyn Fn(&[u8; 32], &[u8]) + Send + Sync>;
/// Makes the greeting this node sends, given its own Noise key (the key
/// the remote sees as the connection's sender).
pub type MakeGreeting = Arc<dyn Fn(&[u8; 32]) -> Vec<u8> + Send + Sync>;

/// What a node says first on one feed's channel, as a hypercore extension
/// message, and what it does with what the peer says under the same name
/// (see [`Swarm::set_greeting`]).
#[derive(Clone)]
pub struct Greeting {
    pub name: String,
    pub message: MakeGreeting,
    pub on_receive: OnGreeting,
}

impl std::fmt::Debug for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greeting")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The most greetings taken from one peer on one channel, and the most
/// bytes of each: more is ignored.
pub const MAX_GREETINGS: usize = 4;
pub const MAX_GREETING_BYTES: usize = 1024;

/// An accepted connection's place within the [`Limits`].
struct Slot {
    node: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut accepted = self.node.accepted.lock().expect("accepted lock");
        if let Some(n) = accepted.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                accepted.remove(&self.ip);
            }
        }
    }
}

/// A connected peer, for the status page.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: Option<SocketAddr>,
    /// This node dialled it (a `--peer`), rather than accepted it.
    pub dialled: bool,
    /// Block bytes received from it and uploaded to it.
    pub received: u64,
    pub uploaded: u64,
}

/// A running swarm. Cloning shares it.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm").finish_non_exhaustive()
    }
}

impl Swarm {
    /// Opens the data directory, starts a hub for every feed in it and for
    /// every trusted publisher, and dials the configured peers. Call
    /// [`Swarm::bind`] and run [`Swarm::accept`] to accept connections too.
    pub async fn start(config: SwarmConfig) -> Result<Self, SwarmError> {
        let store =
            FeedStore::open(&config.data_dir).map_err(|e| SwarmError::DataDir(Arc::new(e)))?;
        let noise = hypercore_handshake::state_machine::hc_specific::generate_keypair()?;
        let inner = Arc::new(Inner {
            store,
            mirror: config.mirror,
            feeds: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            peer_conn: Mutex::new(HashMap::new()),
            banned: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            noise_public: noise
                .public
                .as_slice()
                .try_into()
                .expect("a 32-byte Noise key"),
            noise,
            remotes: Mutex::new(dedup::Remotes::default()),
            eager: Mutex::new(Vec::new()),
            eager_added: Notify::new(),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            limits: config.limits,
            accepted: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
            hub_threads: Mutex::new(Vec::new()),
            opening: tokio::sync::Mutex::new(()),
            roots: Mutex::new(Vec::new()),
            first_roots: Mutex::new(Vec::new()),
            share: Arc::new(crate::share::Share::filtered(
                config.share,
                config.share_filtered,
            )),
            remake: hub::RemakeSlot::default(),
            greetings: Mutex::new(
                config
                    .greetings
                    .iter()
                    .map(|(k, g)| (discovery_key(k), g.clone()))
                    .collect(),
            ),
            lead_roots: Mutex::new(Vec::new()),
        });
        let node = Swarm { inner };

        // Seed everything already here.
        for key in node
            .inner
            .store
            .list()
            .map_err(|e| SwarmError::DataDir(Arc::new(e)))?
        {
            let eager = node.inner.mirror;
            node.add_feed(&key, eager).await?;
        }
        for peer in &config.peers {
            node.spawn(node.clone().dial_forever(peer.clone()));
        }
        Ok(node)
    }

    /// The accept service: takes peers on `listener` until `shutdown`,
    /// within the node's [`Limits`] (a connection over a cap is closed at
    /// once). Each connection runs in the swarm's task set, so
    /// [`Swarm::shutdown`] closes them.
    pub async fn accept(self, listener: TcpListener, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, addr)) => {
                    failures = 0;
                    let Some(slot) = self.admit(addr.ip()) else {
                        debug!(%addr, "connection refused: over the connection limit");
                        continue;
                    };
                    debug!(%addr, "peer connected");
                    let conn = self.clone();
                    self.spawn(async move {
                        conn.run_conn(stream, false, None, None).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: back off, and say so
                    // once in a while rather than on every try.
                    failures += 1;
                    if failures.is_power_of_two() {
                        warn!(%e, failures, "accepting connections fails");
                    }
                    let wait = Duration::from_millis(100) * failures.min(50);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// A place for one more accepted connection from `ip`, if the limits
    /// allow it; the place is given back when the slot is dropped.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut accepted = self.inner.accepted.lock().expect("accepted lock");
        let total: usize = accepted.values().sum();
        let here = accepted.get(&ip).copied().unwrap_or(0);
        if total >= self.inner.limits.max_connections || here >= self.inner.limits.max_per_ip {
            return None;
        }
        *accepted.entry(ip).or_default() += 1;
        Some(Slot {
            node: self.inner.clone(),
            ip,
        })
    }

    /// Binds `addr` for [`Swarm::accept`]; returns the listener and the
    /// bound address.
    pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), SwarmError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SwarmError::Listen {
                addr: addr.to_owned(),
                source: Arc::new(source),
            })?;
        let local = listener.local_addr().map_err(|source| SwarmError::Listen {
            addr: addr.to_owned(),
            source: Arc::new(source),
        })?;
        Ok((listener, local))
    }

    /// What this node shares of what it fetched (`--share`).
    pub fn share(&self) -> &crate::share::Share {
        &self.inner.share
    }

    /// Sets what makes dropped blocks of the feeds this node writes again
    /// (`hub/remake.rs`), for every hub, open or opened later; false if
    /// one was set already.
    pub fn set_remake(&self, remake: Arc<dyn hub::Remake>) -> bool {
        self.inner.remake.set(remake)
    }

    /// The hub of a feed, if the node has it.
    pub fn hub(&self, key: &[u8; 32]) -> Option<HubHandle> {
        self.inner
            .feeds
            .lock()
            .expect("feeds lock")
            .get(&discovery_key(key))
            .map(|e| e.hub.clone())
    }

    /// Starts replicating a feed (opening or creating its local replica).
    pub async fn add_feed(&self, key: &VerifyingKey, eager: bool) -> Result<HubHandle, SwarmError> {
        let _opening = self.inner.opening.lock().await;
        let bytes = key.to_bytes();
        let hub = match self.hub(&bytes) {
            Some(hub) => {
                if eager {
                    hub.set_eager().await;
                }
                hub
            }
            None => {
                let feed = self
                    .inner
                    .store
                    .open_replica(key)
                    .await
                    .map_err(|e| SwarmError::store(&hex::encode(bytes), e))?;
                self.spawn_hub(feed, eager).await
            }
        };
        if eager {
            let mut list = self.inner.eager.lock().expect("eager lock");
            if !list.iter().any(|(k, _)| *k == bytes) {
                list.push((bytes, hub.clone()));
                self.inner.eager_added.notify_one();
            }
        }
        Ok(hub)
    }

    /// Replicates the blocks of `range` of the feed of `hub` in full (the
    /// head or the tail of an index read by lookup in between), or, with
    /// `None`, only what is wanted; it joins or leaves
    /// [`Swarm::eager_feeds`] accordingly.
    pub async fn set_eager_range(&self, hub: &HubHandle, range: Option<hub::EagerRange>) {
        hub.set_eager_range(range).await;
        let bytes = hub.key().to_bytes();
        let mut list = self.inner.eager.lock().expect("eager lock");
        list.retain(|(k, _)| *k != bytes);
        if range.is_some() {
            list.push((bytes, hub.clone()));
            self.inner.eager_added.notify_one();
        }
    }

    /// Feeds this node replicates in full (trusted indexes, key feeds,
    /// mirrored feeds), by key; from where [`crate::hub::FeedState::ready`]
    /// says.
    pub fn eager_feeds(&self) -> Vec<([u8; 32], HubHandle)> {
        self.inner.eager.lock().expect("eager lock").clone()
    }

    /// Resolves when a feed joins [`Swarm::eager_feeds`].
    pub async fn eager_feed_added(&self) {
        self.inner.eager_added.notified().await
    }

    /// Starts the hub of an opened feed and registers it.
    async fn spawn_hub(&self, feed: hypernar_feed::Feed, eager: bool) -> HubHandle {
        // Weak: the hubs outlive nothing of the node's, and a strong
        // reference from each would keep `Inner` alive forever.
        let node = Arc::downgrade(&self.inner);
        let on_misbehaved: hub::OnMisbehaved = Arc::new(move |peer, reason: &str| {
            if let Some(inner) = node.upgrade() {
                Swarm { inner }.misbehaved(peer, reason);
            }
        });
        let (hub, thread) = hub::spawn(
            feed,
            self.inner.store.clone(),
            eager,
            on_misbehaved,
            self.inner.cancel.clone(),
            self.inner.metrics.requests_cancelled.clone(),
            hub::Serving {
                share: self.inner.share.clone(),
                remake: self.inner.remake.clone(),
            },
        );
        self.inner
            .hub_threads
            .lock()
            .expect("hub threads lock")
            .push(thread);
        self.add_hub(hub).await
    }

    /// Runs `task` as one of the node's tasks: [`Swarm::shutdown`] ends it
    /// (at its next await) and waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let cancel = self.inner.cancel.clone();
        let mut tasks = self.inner.tasks.lock().expect("tasks lock");
        // Finished tasks leave their results behind until collected.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Ends the node: stops accepting, closes every connection, lets each
    /// hub finish the message it is on and close its feed, and waits for
    /// all of it (at most [`SHUTDOWN_WAIT`]; what is still running then is
    /// left to the process exit). Stored blocks are already on disk.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        let threads =
            std::mem::take(&mut *self.inner.hub_threads.lock().expect("hub threads lock"));
        let all = async {
            while tasks.join_next().await.is_some() {}
            let _ = tokio::task::spawn_blocking(move || {
                for t in threads {
                    let _ = t.join();
                }
            })
            .await;
        };
        if tokio::time::timeout(SHUTDOWN_WAIT, all).await.is_err() {
            warn!("shutdown: some tasks did not end within {SHUTDOWN_WAIT:?}");
        }
    }

    /// Cancelled when [`Swarm::shutdown`] is called: what a service run by
    /// the floors above (`run(listener, shutdown)`) stops on.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.cancel.child_token()
    }

    /// Whether [`Swarm::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// The peers connected now, with what they moved.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let conns = self.inner.conns.lock().expect("conns lock");
        let mut out: Vec<PeerInfo> = conns
            .values()
            .map(|c| PeerInfo {
                addr: c.addr,
                dialled: c.dialled.is_some(),
                received: c.traffic.received.get(),
                uploaded: c.traffic.uploaded.get(),
            })
            .collect();
        out.sort_by_key(|p| p.addr);
        out
    }

    /// Where the feeds are stored (`DATA/feeds`).
    pub fn feeds_dir(&self) -> &std::path::Path {
        self.inner.store.root()
    }

    /// Registers a hub (unless one for the same feed won a race) and offers
    /// its feed on every open connection. Returns the registered hub.
    pub(crate) async fn add_hub(&self, hub: HubHandle) -> HubHandle {
        let key = hub.key().to_bytes();
        let dkey = discovery_key(&key);
        let fresh = {
            let mut feeds = self.inner.feeds.lock().expect("feeds lock");
            match feeds.entry(dkey) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(FeedEntry {
                        key,
                        hub: hub.clone(),
                    });
                    true
                }
            }
        };
        if fresh {
            let commands: Vec<CommandTx> = self
                .inner
                .conns
                .lock()
                .expect("conns lock")
                .values()
                .filter(|c| claim(&c.opened, dkey))
                .map(|c| c.commands.clone())
                .collect();
            for c in commands {
                let _ = c.open(key).await;
            }
        }
        self.hub(&key).expect("just added")
    }

    /// Greets on the channel of feed `key`: whenever a channel of it opens
    /// (on a connection where both sides proved they know the key), sends
    /// what `greeting.message` makes of this node's Noise key as extension
    /// `greeting.name`, and hands what the
    /// peer sends under that name (at most [`MAX_GREETINGS`] messages of at
    /// most [`MAX_GREETING_BYTES`] per channel) to `greeting.on_receive`.
    /// Set it before the feed is added (or in [`SwarmConfig::greetings`]
    /// for a stored feed); channels open already are not greeted.
    pub fn set_greeting(&self, key: &[u8; 32], greeting: Greeting) {
        self.inner
            .greetings
            .lock()
            .expect("greetings lock")
            .insert(discovery_key(key), greeting);
    }

    /// The greeting of a feed's channel and what this node says in it.
    pub(crate) fn greeting(&self, dkey: &[u8; 32]) -> Option<(Greeting, Vec<u8>)> {
        let g = self
            .inner
            .greetings
            .lock()
            .expect("greetings lock")
            .get(dkey)
            .cloned()?;
        let hello = (g.message)(&self.inner.noise_public);
        Some((g, hello))
    }

    /// The node's feed store.
    pub fn store(&self) -> &FeedStore {
        &self.inner.store
    }

    /// The hub of a writable feed, opening it (created if new) if needed.
    pub async fn writable_hub(
        &self,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<HubHandle, StoreError> {
        let _opening = self.inner.opening.lock().await;
        if let Some(hub) = self.hub(&key.verifying_key().to_bytes()) {
            return Ok(hub);
        }
        let feed = self.inner.store.open_writable(key).await?;
        Ok(self.spawn_hub(feed, false).await)
    }

    /// A hub found `peer` sending bad data: count it, disconnect its
    /// connection and ban the address it was dialled at.
    fn misbehaved(&self, peer: PeerId, reason: &str) {
        self.inner
            .metrics
            .verification_failures
            .get_or_create(&crate::metrics::PEER)
            .inc();
        let conn = self
            .inner
            .peer_conn
            .lock()
            .expect("peer lock")
            .get(&peer)
            .copied();
        let found = conn.and_then(|conn| {
            self.inner
                .conns
                .lock()
                .expect("conns lock")
                .get(&conn)
                .map(|c| (conn, c.kill.clone(), c.dialled.clone()))
        });
        let Some((conn, kill, dialled)) = found else {
            warn!(peer, %reason, "a peer that sent bad data had already disconnected");
            return;
        };
        warn!(conn, peer_addr = ?dialled, %reason, "disconnecting a peer that sent bad data");
        if let Some(addr) = dialled {
            self.inner
                .banned
                .lock()
                .expect("ban lock")
                .insert(addr, Instant::now() + BAN_TIME);
        }
        kill.notify_one();
    }
}
