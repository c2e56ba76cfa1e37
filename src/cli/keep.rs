//! Keeping what a node pulls through (`serve`, unless `--no-keep`): a path
//! the upstream serves whose narinfo a trusted key signed is written, as
//! its NAR streams to Nix, to `DATA/node/incoming/`, then published into
//! the node's own feeds (its key `DATA/node.key`, made on first start)
//! through the journaled publisher — which checks the signature and the
//! NAR hash again before anything is committed — and served from there
//! (the node trusts its own identity) to itself and to every peer that
//! trusts that identity.
//!
//! Only what a trusted key signed is ever kept: an unsigned or locally
//! built path never passes `begin`. A NAR that fails its hash, a stream cut
//! short, a full disk: nothing is kept, and Nix's download is not touched.
//! At most [`MAX_QUEUED`] NARs and [`MAX_INCOMING`] bytes wait at once;
//! past that, a path is not kept (the next pull-through of it may be).
//! What is kept is the node's own feed and not evicted: under `--max-size`
//! nothing more is kept once the feeds take nine tenths of it (until
//! blocks dropped once the Nix store holds them, `remake.rs`, give room
//! back).

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hypernar_feed::format::identity::{Identity, PublisherSecret};
use hypernar_feed::format::nixkey::{self, NixPublicKey};
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_fetcher::node::{Node, Swarm};
use hypernar_fetcher::sources::upstream::{proxied_narinfo, Keep, UpstreamInfo};
use hypernar_publisher::{NoProgress, Origin, PublishOptions, Publisher, SealSettings};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// NARs waiting to be published at once.
pub const MAX_QUEUED: usize = 64;
/// Bytes of NARs waiting at once.
pub const MAX_INCOMING: u64 = 8 << 30;
/// With no room under `--max-size`, how often it is measured again.
pub const REMEASURE: std::time::Duration = std::time::Duration::from_secs(10);

/// The node's key file in its data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.key")
}

/// The node's key: read, or made (mode 0600, never overwritten) on first
/// start.
pub fn node_key(data_dir: &Path) -> anyhow::Result<PublisherSecret> {
    let path = key_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => PublisherSecret::from_key_file(&text)
            .with_context(|| format!("{} is not a hypernar key file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = PublisherSecret::generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating the node key {}", path.display()))?;
            f.write_all(secret.to_key_file().as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing the node key {}", path.display()))?;
            info!(identity = %secret.identity(), "made this node's key");
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading the node key {}", path.display())),
    }
}

/// A NAR ready to publish.
struct Ready {
    u: UpstreamInfo,
    file: PathBuf,
}

/// The [`Keep`] of a serve.
pub struct Keeper {
    node: Node,
    identity: Identity,
    trusted: Vec<NixPublicKey>,
    incoming: PathBuf,
    /// Hash parts being written or waiting, and their NAR bytes.
    busy: Mutex<(HashSet<String>, u64)>,
    /// Under `--max-size`, whether the feeds take less than nine tenths of
    /// it (measured after each path kept): what is kept is not evicted,
    /// so past that nothing more is kept.
    room: std::sync::atomic::AtomicBool,
    /// When `room` was last measured: with no room, measured again at
    /// most every [`REMEASURE`] (blocks dropped once in the Nix store give
    /// room back; `remake.rs`).
    measured: Mutex<std::time::Instant>,
    ready: mpsc::Sender<Ready>,
    /// The audiences (one per group) a kept path's key is released to;
    /// none: to the public key feed.
    audiences: Vec<(String, ed25519_dalek::VerifyingKey)>,
}

impl Keeper {
    /// Starts keeping what `node` pulls through into the feeds of
    /// `secret`, under `data_dir/node`; returns the keeper to give the
    /// upstreams.
    pub fn start(
        node: &Node,
        data_dir: &Path,
        secret: PublisherSecret,
        trusted: Vec<NixPublicKey>,
        audiences: Vec<(String, ed25519_dalek::VerifyingKey)>,
    ) -> anyhow::Result<Arc<Keeper>> {
        let dir = data_dir.join("node");
        let incoming = dir.join("incoming");
        hypernar_feed::private::create_dir_all(&incoming)
            .with_context(|| format!("creating {}", incoming.display()))?;
        // Left by a node stopped mid-way: published again when next pulled.
        if let Ok(entries) = std::fs::read_dir(&incoming) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        std::fs::write(
            incoming.join("nix-cache-info"),
            "StoreDir: /nix/store\nWantMassQuery: 0\nPriority: 50\n",
        )
        .with_context(|| format!("writing into {}", incoming.display()))?;
        node.set_kept_identity(secret.identity());
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let keeper = Arc::new(Keeper {
            node: node.clone(),
            identity: secret.identity(),
            trusted,
            incoming: incoming.clone(),
            busy: Mutex::new((HashSet::new(), 0)),
            room: std::sync::atomic::AtomicBool::new(true),
            measured: Mutex::new(std::time::Instant::now()),
            ready: tx,
            audiences,
        });
        keeper.measure_room();
        let task = publish_kept(
            keeper.clone(),
            node.swarm().clone(),
            dir,
            incoming,
            secret,
            rx,
        );
        node.spawn(task);
        Ok(keeper)
    }

    /// Whether there is room under `--max-size` for more (see `room`).
    fn measure_room(&self) {
        *self.measured.lock().expect("measured lock") = std::time::Instant::now();
        if let Some(max) = self.node.max_size() {
            let used = hypernar_fetcher::node::evict::disk_usage(self.node.feeds_dir());
            let room = used < max / 10 * 9;
            let before = self.room.swap(room, std::sync::atomic::Ordering::Relaxed);
            if before && !room {
                warn!(
                    used_mib = used >> 20,
                    max_mib = max >> 20,
                    "keeping no more pulled-through paths: the feeds take nine tenths of --max-size (what is kept is not evicted; blocks the Nix store holds are dropped)"
                );
            } else if !before && room {
                info!(
                    used_mib = used >> 20,
                    max_mib = max >> 20,
                    "keeping pulled-through paths again: the feeds take less than nine tenths of --max-size"
                );
            }
        }
    }

    fn release(&self, u: &UpstreamInfo) {
        let mut busy = self.busy.lock().expect("busy lock");
        if busy.0.remove(u.info.store_path.hash_part()) {
            busy.1 = busy.1.saturating_sub(u.info.nar_size);
        }
    }
}

impl Keep for Keeper {
    fn begin(&self, u: &UpstreamInfo) -> Option<PathBuf> {
        if !self.room.load(std::sync::atomic::Ordering::Relaxed)
            && self.measured.lock().expect("measured lock").elapsed() > REMEASURE
        {
            self.measure_room();
        }
        if !self.room.load(std::sync::atomic::Ordering::Relaxed)
            || nixkey::signed_by(&u.info, &self.trusted).is_none()
            // Kept, it would be in the node's own feeds, always shared.
            || self.node.share_excludes(&u.info.store_path)
        {
            return None;
        }
        let hash = u.info.store_path.hash_part();
        // Kept already (the node's own index lists it).
        let publishers = self.node.publishers();
        if let Some(p) = publishers.path_by_hash(hash) {
            if publishers
                .references_listed(&self.identity.to_bytes(), &p)
                .is_some()
            {
                return None;
            }
        }
        let mut busy = self.busy.lock().expect("busy lock");
        if busy.0.len() >= MAX_QUEUED
            || busy.1.saturating_add(u.info.nar_size) > MAX_INCOMING
            || !busy.0.insert(hash.to_owned())
        {
            return None;
        }
        busy.1 += u.info.nar_size;
        Some(self.incoming.join(format!("{hash}.nar")))
    }

    fn done(&self, u: &UpstreamInfo, file: PathBuf) {
        if let Err(e) = self.ready.try_send(Ready { u: u.clone(), file }) {
            let Ready { u, file } = e.into_inner();
            let _ = std::fs::remove_file(&file);
            self.release(&u);
        }
    }

    fn abandon(&self, u: &UpstreamInfo, file: PathBuf) {
        let _ = std::fs::remove_file(file);
        self.release(u);
    }
}

/// Publishes each kept NAR, one at a time, into the node's feeds.
async fn publish_kept(
    keeper: Arc<Keeper>,
    swarm: Swarm,
    dir: PathBuf,
    incoming: PathBuf,
    secret: PublisherSecret,
    mut rx: mpsc::Receiver<Ready>,
) {
    let mut publisher: Option<Publisher<Swarm>> = None;
    let source = match Origin::new(&format!("file://{}", incoming.display())) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            warn!(%e, "cannot keep pulled-through paths");
            return;
        }
    };
    let opts = PublishOptions {
        closure: false,
        all: false,
        // In groups, keys go to the groups' audiences only (below).
        release: keeper.audiences.is_empty(),
        jobs: 1,
        seal: SealSettings {
            segment_size: DEFAULT_SEGMENT_SIZE,
            // Pinned: blocks dropped once in the Nix store are sealed
            // again at the same level (remake.rs).
            zstd_level: super::remake::KEPT_ZSTD_LEVEL,
        },
        run_tail: hypernar_publisher::runs::DEFAULT_RUN_TAIL,
        data_feed_blocks: hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS,
        trusted_keys: keeper.trusted.clone(),
        most_referenced_first: false,
    };
    // Paths kept before this node joined a group are the group's too:
    // released to each group's audience at start (what was released to
    // everyone before stays so).
    if !keeper.audiences.is_empty() && swarm.store().has(&keeper.identity.0) {
        match Publisher::open_with(swarm.clone(), &dir, secret.clone()).await {
            Ok(mut p) => {
                for (audience, _) in &keeper.audiences {
                    if let Err(e) = p.release(None, Some(audience)).await {
                        warn!("releasing kept paths to a group: {e:#}");
                    }
                }
                publisher = Some(p);
            }
            Err(e) => warn!("opening this node's feeds to release kept paths to its groups: {e:#}"),
        }
    }
    while let Some(Ready { u, file }) = rx.recv().await {
        let hash = u.info.store_path.hash_part().to_owned();
        let narinfo = incoming.join(format!("{hash}.narinfo"));
        let text = proxied_narinfo(&u.text, &format!("{hash}.nar"));
        let published = async {
            std::fs::write(&narinfo, text)?;
            if publisher.is_none() {
                publisher = Some(Publisher::open_with(swarm.clone(), &dir, secret.clone()).await?);
            }
            let p = publisher.as_mut().expect("opened above");
            let summary = p
                .publish(
                    source.clone(),
                    vec![hash.clone()],
                    &opts,
                    Arc::new(NoProgress),
                )
                .await?;
            if summary.published == 1 {
                for (audience, _) in &keeper.audiences {
                    p.release(Some(vec![hash.clone()]), Some(audience)).await?;
                }
            }
            anyhow::Ok(summary)
        };
        match published.await {
            Ok(s) if s.published == 1 => {
                info!(path = %u.info.store_path, nar_bytes = u.info.nar_size, "kept a pulled-through path");
                // Served from here on from the node's own feeds.
                let node = &keeper.node;
                if !node.publishers().is_trusted(&keeper.identity) {
                    if let Err(e) = node.trust(keeper.identity).await {
                        warn!(%e, "following this node's own index");
                    }
                    for (_, keys) in &keeper.audiences {
                        if let Err(e) = node.follow_key_feed(keeper.identity, keys).await {
                            warn!(%e, "following this node's own key feed for a group");
                        }
                    }
                }
            }
            Ok(s) if s.already == 1 => {}
            Ok(s) => {
                warn!(path = %u.info.store_path, failed = ?s.failed, "a pulled-through path was not kept")
            }
            Err(e) => {
                warn!(path = %u.info.store_path, "a pulled-through path was not kept: {e:#}");
                // A local error: open the publisher afresh next time.
                publisher = None;
            }
        }
        let _ = std::fs::remove_file(&narinfo);
        let _ = std::fs::remove_file(&file);
        keeper.release(&u);
        let k = keeper.clone();
        let _ = tokio::task::spawn_blocking(move || k.measure_room()).await;
    }
}
