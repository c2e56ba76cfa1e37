//! A node: the floors of one data directory together. It holds the swarm
//! (`hypernar_swarm`: feeds, hubs, connections, dialling, and the task set
//! every floor runs on) and the catalog — what the node knows and keeps:
//! its trusted publishers' indexes and keys as they replicate
//! (`node/follow.rs`), the safe-path sets it follows, their coverage and
//! the pinned set (`node/pin.rs`), and the bounded disk (`node/evict.rs`).
//! `serve` builds it, then puts the sources floor and the front-ends on
//! top (`crate::sources`, `crate::http`, `crate::mount`, `crate::pins`).
//!
//! The catalog's state is one table per lock, each taken alone: the
//! publishers (`crate::publishers`, its own locks documented there), the
//! sets (`crate::sets`), and the pinned set (a watch, written only by the
//! coverage task).

pub mod evict;
mod follow;
mod pin;
pub use pin::generation_topic;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::identity::{Identity, SetId};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::store::FeedStore;
use hypernar_swarm::hub::HubHandle;
use hypernar_swarm::metrics::Metrics;
pub use hypernar_swarm::swarm::{GaveUp, Limits, PeerInfo, Swarm, SwarmConfig};
pub use hypernar_swarm::SwarmError;
use tokio::sync::watch;
/// What services stop on: cancelled by [`Node::shutdown`].
pub use tokio_util::sync::CancellationToken as Shutdown;

use crate::channels::ChannelRef;
use crate::publishers::Publishers;

/// What a node serves and whom it talks to.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Peers to dial and keep dialling (`host:port`).
    pub peers: Vec<String>,
    /// Publishers whose index and key feeds to replicate.
    pub trust: Vec<Identity>,
    /// Feeds to replicate in full by key, whoever wrote them: audience key
    /// feeds (their tokens), or data feeds for a blind mirror.
    pub feeds: Vec<VerifyingKey>,
    /// Replicate every block of every trusted feed.
    pub mirror: bool,
    /// Caps on accepted connections.
    pub limits: Limits,
    /// Safe-path sets to follow (`--set`), and to follow and pin (`--pin`:
    /// the closure of every path in them is fetched ahead and kept).
    pub sets: Vec<SetId>,
    pub pins: Vec<SetId>,
    /// Channels to follow (`--set P/NAME`) and to follow and pin (`--pin
    /// P/NAME`): the newest generation a publisher committed of each
    /// (its publisher is trusted too).
    pub channels: Vec<ChannelRef>,
    pub pinned_channels: Vec<ChannelRef>,
    /// Serve only paths that followed sets cover (`--require-set`).
    pub require_set: bool,
    /// What of the fetched blocks to announce and serve (`--share`).
    pub share: hypernar_swarm::share::ShareMode,
    /// Paths whose names match one of these are never announced or served
    /// to peers (`--share-exclude`).
    pub share_exclude: Vec<glob::Pattern>,
    /// Keep the feeds under this many bytes (`--max-size`).
    pub max_size: Option<u64>,
    /// Groups this node is a member of (`--group`).
    pub groups: Vec<crate::groups::Membership>,
    /// Nix keys a group member's path must be signed by to be served
    /// (`--trusted-public-key`).
    pub vouch_keys: Vec<hypernar_feed::format::nixkey::NixPublicKey>,
}

impl NodeConfig {
    /// A node on `data_dir` that dials no one, trusts no publisher and
    /// follows no set, with the default limits, `--share all` and no disk
    /// bound: the base the callers add their settings to.
    pub fn new(data_dir: PathBuf) -> Self {
        NodeConfig {
            data_dir,
            peers: Vec::new(),
            trust: Vec::new(),
            feeds: Vec::new(),
            mirror: false,
            limits: Limits::default(),
            sets: Vec::new(),
            pins: Vec::new(),
            channels: Vec::new(),
            pinned_channels: Vec::new(),
            require_set: false,
            share: Default::default(),
            share_exclude: Vec::new(),
            max_size: None,
            groups: Vec::new(),
            vouch_keys: Vec::new(),
        }
    }
}

/// What the node knows and keeps.
struct Catalog {
    publishers: Publishers,
    sets: crate::sets::Sets,
    channels: crate::channels::Channels,
    /// `hypernar follow` runs inside this node, by channel.
    following: crate::following::Following,
    /// The paths pinned now (the closure of pinned sets' paths): the pins
    /// front-end (`crate::pins`) keeps their blocks.
    pins: watch::Sender<Arc<HashSet<StorePath>>>,
    /// Data feeds are replicated in full, not on demand.
    mirror: bool,
    /// `--max-size`: the disk is bounded, and uses of paths are saved.
    max_size: Option<u64>,
    /// How the node's own services (set coverage, eviction) look a path up
    /// that the catalog does not hold: set by the sources floor.
    resolver: std::sync::OnceLock<Resolver>,
    /// How the node's own services read a generation's table: set by the
    /// sources floor too.
    tables: std::sync::OnceLock<TableReader>,
    /// The identity whose feeds hold what this node keeps of what it
    /// pulls through (`serve`'s keeper), for `hypernar status`.
    kept: std::sync::OnceLock<Identity>,
    /// When the node started, and how many peers it was told to dial
    /// ([`Node::reaching_peers`]).
    started: tokio::time::Instant,
    told_peers: usize,
    /// The groups and the members met (`crate::groups`).
    groups: crate::groups::Groups,
    /// What a member's path must be signed by (`NodeConfig::vouch_keys`).
    vouch_keys: Arc<Vec<hypernar_feed::format::nixkey::NixPublicKey>>,
    /// This node's identity in its groups' cards.
    card_identity: Option<Identity>,
    /// `--share-exclude`.
    share_exclude: Vec<glob::Pattern>,
}

/// A card that came: its group, the group's meeting key, the sender's
/// Noise key, the bytes.
type CardIn = (
    hypernar_feed::format::group::GroupId,
    VerifyingKey,
    [u8; 32],
    Vec<u8>,
);

/// How long after start a miss waits for the `--peer`s to be reached when
/// none is yet: a fresh node asked at once would say "not here", and Nix
/// keeps that for an hour.
pub const STARTUP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the paths of a generation's table (docs/protocol.md,
/// "Generations") of a publisher's generations feed: every page, and the
/// record each entry points at, verified, the records then in the catalog.
/// At most `limit` paths. An error says which block failed.
pub type TableReader = Arc<
    dyn Fn(
            Identity,
            hypernar_feed::format::identity::FeedKey,
            hypernar_feed::format::run::RunRef,
            usize,
        ) -> futures::future::BoxFuture<'static, Result<Vec<StorePath>, String>>
        + Send
        + Sync,
>;

/// Looks up the path of a hash part in the trusted publishers' runs, as
/// the sources floor does (`Sources::look_up_now`), without waiting for
/// indexes to settle; what it finds is then in the catalog. The node's own
/// services need it but sit below that floor, which gives it to them.
///
/// Given a publisher, only that publisher's runs are looked in (and the
/// catalog's answer for the hash, which may be another's, is not taken).
pub type Resolver = Arc<
    dyn Fn(String, Option<Identity>) -> futures::future::BoxFuture<'static, Option<StorePath>>
        + Send
        + Sync,
>;

/// A running node. Cloning shares it.
#[derive(Clone)]
pub struct Node {
    swarm: Swarm,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the data directory (the swarm seeds every feed in it), follows
    /// every trusted publisher, token feed and set, and dials the
    /// configured peers. Call [`Node::listen_on`] to accept connections too.
    pub async fn start(config: NodeConfig) -> Result<Self, SwarmError> {
        // Cards from members, handed on by the meeting feeds' greetings
        // (a full queue drops one: it comes again at the next connection).
        let (cards_tx, cards_rx) = tokio::sync::mpsc::channel(256);
        let greetings = config
            .groups
            .iter()
            .map(|m| {
                let id = m.secret.id();
                let meeting = m.secret.meeting_key();
                let tx = cards_tx.clone();
                let card = m.card.clone();
                let greeting = hypernar_swarm::swarm::Greeting {
                    name: hypernar_feed::format::group::CARD_EXTENSION.to_owned(),
                    // Signed for this node's Noise key: the remote checks
                    // it against the connection's sender.
                    message: Arc::new(move |noise: &[u8; 32]| match &card {
                        Some((c, key)) => c.signed(&meeting, noise, key),
                        None => Vec::new(),
                    }),
                    on_receive: Arc::new(move |remote: &[u8; 32], bytes: &[u8]| {
                        let _ = tx.try_send((id, meeting, *remote, bytes.to_vec()));
                    }),
                };
                (meeting.to_bytes(), greeting)
            })
            .collect();
        drop(cards_tx);
        let swarm = Swarm::start(SwarmConfig {
            data_dir: config.data_dir.clone(),
            peers: config.peers.clone(),
            mirror: config.mirror,
            limits: config.limits,
            share: config.share,
            share_filtered: !config.share_exclude.is_empty(),
            greetings,
        })
        .await?;
        let metrics = swarm.metrics().clone();
        let node = Node {
            swarm,
            catalog: Arc::new(Catalog {
                publishers: Publishers::default(),
                sets: crate::sets::Sets::default(),
                channels: crate::channels::Channels::default(),
                following: crate::following::Following::new(metrics),
                pins: watch::channel(Arc::default()).0,
                mirror: config.mirror,
                max_size: config.max_size,
                resolver: std::sync::OnceLock::new(),
                tables: std::sync::OnceLock::new(),
                kept: std::sync::OnceLock::new(),
                started: tokio::time::Instant::now(),
                told_peers: config.peers.len(),
                groups: crate::groups::Groups::default(),
                vouch_keys: Arc::new(config.vouch_keys.clone()),
                card_identity: config
                    .groups
                    .iter()
                    .find_map(|m| m.card.as_ref().map(|(c, _)| c.node)),
                share_exclude: config.share_exclude.clone(),
            }),
        };
        // A followed channel's publisher is trusted too (once).
        let mut trust = config.trust.clone();
        for c in config.channels.iter().chain(&config.pinned_channels) {
            if !trust.contains(&c.publisher) {
                trust.push(c.publisher);
            }
        }
        for id in &trust {
            node.trust(*id).await?;
        }
        for (c, pinned) in config
            .pinned_channels
            .iter()
            .map(|c| (c, true))
            .chain(config.channels.iter().map(|c| (c, false)))
        {
            node.catalog.channels.add(c.clone(), pinned);
        }
        // Members after the trusted publishers: a member that is trusted
        // too is followed as trusted.
        for m in &config.groups {
            node.join_group(m).await?;
        }
        if !config.groups.is_empty() {
            node.spawn(node.clone().meet_members(cards_rx));
        }
        for key in &config.feeds {
            node.swarm.add_root(key.to_bytes());
            let hub = node.swarm.add_feed(key, true).await?;
            node.spawn(node.clone().follow_if_keys(hub));
        }
        for (id, pinned) in config
            .pins
            .iter()
            .map(|id| (id, true))
            .chain(config.sets.iter().map(|id| (id, false)))
        {
            node.follow_set(*id, pinned).await?;
        }
        let by_sets = config.share == hypernar_swarm::share::ShareMode::Sets;
        if !config.pins.is_empty()
            || !config.sets.is_empty()
            || !node.catalog.channels.is_empty()
            || config.require_set
            || by_sets
        {
            if config.require_set {
                // Nothing is served until the sets say what may be.
                node.catalog.publishers.set_gate(Some(HashSet::new()));
            }
            node.spawn(node.clone().keep_sets(config.require_set, by_sets));
        }
        if let Some(max) = config.max_size {
            node.spawn(node.clone().bound_disk(max));
        }
        if !config.share_exclude.is_empty() && config.share == hypernar_swarm::share::ShareMode::All
        {
            node.spawn(node.clone().share_all_but_excluded());
        }
        Ok(node)
    }

    /// The swarm below (feeds, hubs, connections, discovery's dialling).
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// What the node knows of its trusted publishers.
    pub fn publishers(&self) -> &Publishers {
        &self.catalog.publishers
    }

    /// The safe-path sets the node follows.
    pub fn sets(&self) -> &crate::sets::Sets {
        &self.catalog.sets
    }

    /// Whether the node is still reaching the peers it was told of: it
    /// started less than [`STARTUP_GRACE`] ago, was given `--peer`s, and a
    /// trusted publisher's index has not been heard of yet (no peer told
    /// its length: a connection still in its handshake tells nothing). A
    /// miss then waits.
    pub fn reaching_peers(&self) -> bool {
        self.catalog.told_peers > 0
            && self.catalog.started.elapsed() < STARTUP_GRACE
            && self.catalog.publishers.unheard_of()
    }

    /// Names the identity this node keeps what it pulls through as (once).
    pub fn set_kept_identity(&self, id: Identity) {
        let _ = self.catalog.kept.set(id);
    }

    /// The identity [`Node::set_kept_identity`] named.
    pub fn kept_identity(&self) -> Option<Identity> {
        self.catalog.kept.get().copied()
    }

    /// The channels the node follows.
    pub fn channels(&self) -> &crate::channels::Channels {
        &self.catalog.channels
    }

    /// The channel followers running inside this node (`hypernar follow`
    /// through its control socket).
    pub fn following(&self) -> &crate::following::Following {
        &self.catalog.following
    }

    /// `--max-size`, if the disk is bounded.
    pub fn max_size(&self) -> Option<u64> {
        self.catalog.max_size
    }

    /// Gives the node its [`Resolver`] (the first one given stays).
    pub fn set_resolver(&self, resolver: Resolver) {
        let _ = self.catalog.resolver.set(resolver);
    }

    /// The path of `hash`, from the catalog or else by the [`Resolver`]
    /// (none before the sources floor gave one).
    pub async fn resolve(&self, hash: &str) -> Option<StorePath> {
        if let Some(p) = self.catalog.publishers.path_by_hash(hash) {
            return Some(p);
        }
        let r = self.catalog.resolver.get()?.clone();
        r(hash.to_owned(), None).await
    }

    /// Sets how the node's services read a generation's table (by the
    /// sources floor).
    pub fn set_table_reader(&self, reader: TableReader) {
        let _ = self.catalog.tables.set(reader);
    }

    /// The paths of a generation's table, by the [`TableReader`].
    pub async fn read_table(
        &self,
        id: Identity,
        feed: hypernar_feed::format::identity::FeedKey,
        table: hypernar_feed::format::run::RunRef,
        limit: usize,
    ) -> Result<Vec<StorePath>, String> {
        let Some(r) = self.catalog.tables.get().cloned() else {
            return Err("no sources to read it through".into());
        };
        r(id, feed, table, limit).await
    }

    /// The path of `hash` in publisher `id`'s runs, by the [`Resolver`].
    pub async fn resolve_in(&self, id: &Identity, hash: &str) -> Option<StorePath> {
        let r = self.catalog.resolver.get()?.clone();
        r(hash.to_owned(), Some(*id)).await
    }

    /// Whether `--share-exclude` keeps `path` from peers.
    pub fn share_excludes(&self, path: &StorePath) -> bool {
        self.catalog
            .share_exclude
            .iter()
            .any(|p| p.matches(path.name()))
    }

    /// `--share-exclude` patterns, for `status`.
    pub fn share_exclude_patterns(&self) -> Vec<String> {
        self.catalog
            .share_exclude
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    /// The groups this node is a member of and the members it met.
    pub fn groups(&self) -> &crate::groups::Groups {
        &self.catalog.groups
    }

    /// Becomes a member of a group: writes its meeting feed (the same one
    /// block at every member) and looks for members under its topic first.
    async fn join_group(&self, m: &crate::groups::Membership) -> Result<(), SwarmError> {
        use hypernar_feed::io::FeedOpener;
        self.catalog.groups.add(m);
        let key = m.secret.meeting_signing_key();
        let mut feed = self
            .swarm
            .writable(&key)
            .await
            .map_err(|e| SwarmError::Group(e.to_string()))?;
        hypernar_feed::io::ensure_header(&mut feed, m.secret.meeting_header())
            .await
            .map_err(|e| SwarmError::Group(e.to_string()))?;
        self.swarm.add_lead_root(key.verifying_key().to_bytes());
        Ok(())
    }

    /// Follows each member whose card comes (`crate::groups`).
    async fn meet_members(self, mut cards: tokio::sync::mpsc::Receiver<CardIn>) {
        use crate::groups::Met;
        use hypernar_feed::format::group::GroupCard;
        while let Some((group, meeting, remote, bytes)) = cards.recv().await {
            if bytes.is_empty() {
                continue; // a member that offers nothing
            }
            let card = match GroupCard::open(&bytes, &meeting, &remote) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%group, %e, "a group card not read");
                    continue;
                }
            };
            let met = self.catalog.groups.meet(
                group,
                &card,
                self.catalog.card_identity,
                crate::publishers::now_ms(),
            );
            match met {
                Met::New => {
                    tracing::info!(%group, member = %card.node, "met a group member");
                    if let Err(e) = self.follow_member(card).await {
                        tracing::warn!(%group, member = %card.node, %e, "following a group member");
                        self.catalog.groups.forget(group, &card.node);
                    }
                }
                Met::Full => {
                    tracing::debug!(%group, member = %card.node, "group has its most members; card not taken")
                }
                Met::Known | Met::Itself => {}
            }
        }
    }

    /// Follows a member: its index as a publisher's whose paths are taken
    /// only when a trusted Nix key signed them, and its key feed for the
    /// group (whose header must name that member).
    async fn follow_member(
        &self,
        card: hypernar_feed::format::group::GroupCard,
    ) -> Result<(), SwarmError> {
        let id = card.node;
        if !self.catalog.publishers.is_trusted(&id) {
            self.follow_publisher(id, Some(self.catalog.vouch_keys.clone()))
                .await?;
        }
        self.follow_key_feed(id, &card.keys).await
    }

    /// Follows the key releases of `keys`, a key feed of publisher `id`
    /// that its index does not declare (an audience's: this node's own for
    /// a group, say), if its header names that publisher.
    pub async fn follow_key_feed(
        &self,
        id: Identity,
        keys: &VerifyingKey,
    ) -> Result<(), SwarmError> {
        let hub = self.swarm.add_feed(keys, true).await?;
        self.spawn(self.clone().follow_keys_of(id, hub));
        Ok(())
    }

    /// Replicates a publisher: its index eagerly, and the feeds it declares
    /// (keys eagerly, data on demand or all with `mirror`).
    pub async fn trust(&self, id: Identity) -> Result<(), SwarmError> {
        self.follow_publisher(id, None).await
    }

    /// Starts following the index of `id`: trusted, or (`vouch`) as a group
    /// member whose paths only those Nix keys can vouch for (met through
    /// the group's topic, so it gets no topic of its own).
    async fn follow_publisher(
        &self,
        id: Identity,
        vouch: Option<Arc<Vec<hypernar_feed::format::nixkey::NixPublicKey>>>,
    ) -> Result<(), SwarmError> {
        // Its header and block 1 first: block 1 says whether the rest is
        // replicated whole or looked up in runs (`node/follow.rs`).
        let index = self.swarm.add_feed(&id.0, false).await?;
        let head = hypernar_swarm::hub::EagerRange {
            from: 0,
            to: Some(2),
        };
        if self.catalog.mirror {
            self.swarm
                .set_eager_range(&index, Some(hypernar_swarm::hub::EagerRange::ALL))
                .await;
        } else {
            self.swarm.set_eager_range(&index, Some(head)).await;
        }
        match vouch {
            None => {
                self.swarm.add_root(id.0.to_bytes());
                self.catalog.publishers.add(id);
            }
            Some(keys) => self.catalog.publishers.add_vouched(id, keys),
        }
        self.spawn(self.clone().follow_index(id, index));
        Ok(())
    }

    /// Follows a safe-path set: its feed replicated eagerly and live, its
    /// topic announced; pinned, the closure of its paths is kept.
    pub async fn follow_set(&self, id: SetId, pinned: bool) -> Result<(), SwarmError> {
        let hub = self.swarm.add_feed(&id.0, true).await?;
        self.swarm.add_root(id.to_bytes());
        // One follower per set, however often it is named.
        if self.catalog.sets.add(id, pinned) {
            self.spawn(self.clone().follow_set_feed(id, hub));
        }
        Ok(())
    }

    // What every floor above uses of the swarm, said once here.

    /// Runs `task` until [`Node::shutdown`] (the swarm's task set).
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.swarm.spawn(task)
    }

    /// Ends the node: the uses of paths saved (with `--max-size`), then the
    /// swarm shut down ([`Swarm::shutdown`]).
    pub async fn shutdown(&self) {
        if self.catalog.max_size.is_some() && !self.is_shut_down() {
            self.save_recent().await;
        }
        self.swarm.shutdown().await
    }

    pub fn is_shut_down(&self) -> bool {
        self.swarm.is_shut_down()
    }

    /// Cancelled by [`Node::shutdown`]: what services stop on.
    pub fn shutdown_token(&self) -> Shutdown {
        self.swarm.shutdown_token()
    }

    /// Binds `addr` and accepts peers on it; returns the bound address.
    pub async fn listen_on(&self, addr: &str) -> Result<SocketAddr, SwarmError> {
        let (listener, local) = Swarm::bind(addr).await?;
        self.spawn(self.swarm.clone().accept(listener, self.shutdown_token()));
        Ok(local)
    }

    /// Starts replicating a feed (opening or creating its local replica).
    pub async fn add_feed(&self, key: &VerifyingKey, eager: bool) -> Result<HubHandle, SwarmError> {
        self.swarm.add_feed(key, eager).await
    }

    /// The hub of a feed, if the node has it.
    pub fn hub(&self, key: &[u8; 32]) -> Option<HubHandle> {
        self.swarm.hub(key)
    }

    /// Announces `key`'s topic on the DHT (see [`Swarm::add_root`]).
    pub fn add_root(&self, key: [u8; 32]) {
        self.swarm.add_root(key)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.swarm.metrics()
    }

    /// The peers connected now, with what they moved.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.swarm.peers()
    }

    /// Where the feeds are stored (`DATA/feeds`).
    pub fn feeds_dir(&self) -> &std::path::Path {
        self.swarm.feeds_dir()
    }

    pub fn store(&self) -> &FeedStore {
        self.swarm.store()
    }

    /// What this node shares of what it fetched (`--share`).
    pub fn share(&self) -> &hypernar_swarm::share::Share {
        self.swarm.share()
    }
}
