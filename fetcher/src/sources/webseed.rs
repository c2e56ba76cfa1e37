//! Web seeds (`serve --web-seed URL`): static HTTP copies of publishers'
//! feeds (layout in `hypernar_feed::webseed`), read with range requests
//! when peers are absent or slow. Every block is handed to the feed's hub as
//! the `Proof` a peer would have sent, so it is verified against the signed
//! tree exactly the same way, stored, and re-served to peers.
//!
//! A server that answers a range request with the whole file (200) does
//! not do ranges: it is not asked for blocks again (a data file is the
//! whole feed). A web seed whose bytes fail verification, or that sends
//! what no honest copy would (a tree claiming impossible sizes, another
//! range than asked, more bytes than asked), is dropped for
//! [`BAD_SEED_PAUSE`].
//!
//! Locks: a web seed's `bad_until` (its pause) and `pages` (tree pages
//! cached), the set's `given` (each publisher's recorded list as given)
//! and `learned` (the seeds made of it). Each is taken alone and briefly,
//! never across an await, and none while another is held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hypercore_schema::{DataBlock, DataUpgrade, Node as TreeNode, Proof};
use hypernar_feed::format::segment::MAX_SEGMENT_SIZE;
use hypernar_feed::webseed::{
    block_nodes, feed_path, node_from_bytes, offset_nodes, upgrade_nodes, Head, MAX_HEAD_LEN,
    NODE_SIZE,
};
use tracing::{debug, warn};

use crate::node::Node;
use hypernar_swarm::hub::{HubHandle, SwarmError};
use hypernar_swarm::metrics::Metrics;
pub use hypernar_swarm::metrics::WEB_SEED;

/// Time to connect to a web seed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a web-seed response may stall.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A web seed that sent bytes that did not verify is not asked again for
/// this long.
pub const BAD_SEED_PAUSE: Duration = Duration::from_secs(600);
/// Tree nodes fetched per request (320 B): sized for a lookup, whose
/// proofs need a node or two per level of the tree spread over the tree
/// file, while a sequential read's leaves and low uncles share a page.
/// (docs/benchmarks.md, "Index at scale": at 1 024 nodes a cold hit in a
/// 10^6-path index read 1 MB from a web seed, at 32 nodes 106 KB.)
const PAGE_NODES: u64 = 8;
/// Pages kept per web seed (at most 5 MiB).
const PAGES_KEPT: usize = 16_384;
/// Page requests one proof's nodes are fetched with at once.
const PAGE_REQUESTS: usize = 8;
/// Blocks fetched per data request.
pub const BLOCKS_PER_REQUEST: u64 = 16;
/// Largest block a web seed's tree may claim (a segment and its envelope).
const MAX_BLOCK: u64 = MAX_SEGMENT_SIZE as u64 + 64;

/// Why a web seed could not give blocks.
#[derive(Debug, thiserror::Error)]
pub enum WebSeedError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the server ignores Range (answered the whole file): not used for blocks")]
    NoRanges { url: String },
    #[error("{url}: {why}")]
    Bad { url: String, why: String },
    #[error("{0}: paused after sending bytes that did not verify")]
    Paused(String),
    #[error("the block is past the web seed's copy ({0} blocks)")]
    Short(u64),
    #[error(transparent)]
    Hub(#[from] SwarmError),
}

/// One web seed.
#[derive(Debug)]
pub struct WebSeed {
    /// The URL without credentials: what requests go to, logs and pages show.
    base: String,
    /// User and password given by hand in the URL, sent as Basic auth.
    auth: Option<(String, Option<String>)>,
    client: reqwest::Client,
    ranges: AtomicBool,
    bad_until: Mutex<Option<Instant>>,
    /// Tree pages by (feed path, page number).
    pages: Mutex<HashMap<(String, u64), Bytes>>,
}

/// Who named a web seed, which decides what its URL may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOrigin {
    /// The operator (`serve --web-seed`): credentials in the URL are sent.
    ByHand,
    /// A trusted publisher's index: a URL with credentials is refused (a
    /// publisher must not make followers send a password anywhere).
    Learned,
}

impl WebSeed {
    /// A web seed at `base`. One a publisher recorded follows no redirect
    /// (a 3xx is an answer that gives no blocks: see
    /// [`Redirects::None`](super::upstream::Redirects)); one given by hand
    /// follows them within its own origin, as an upstream does.
    pub fn new(base: &str, origin: SeedOrigin) -> Result<Self, WebSeedError> {
        let bad = |why: &str| WebSeedError::Bad {
            url: base.to_owned(),
            why: why.into(),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(bad("a web seed URL is http:// or https://"));
        }
        let url = reqwest::Url::parse(base).map_err(|_| bad("not a valid URL"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("a web seed URL has no host"));
        }
        let mut url = url;
        let credentials = !url.username().is_empty() || url.password().is_some();
        if credentials && origin == SeedOrigin::Learned {
            return Err(WebSeedError::Bad {
                // Not the URL itself: it holds a password.
                url: url.origin().ascii_serialization(),
                why: "a web seed recorded by a publisher may not carry credentials \
                      (user:password@); give it with --web-seed if it needs them"
                    .into(),
            });
        }
        let redirects = match origin {
            SeedOrigin::ByHand => super::upstream::Redirects::SameOrigin,
            SeedOrigin::Learned => super::upstream::Redirects::None,
        };
        let client = super::upstream::http_client(CONNECT_TIMEOUT, READ_TIMEOUT, redirects)
            .map_err(|source| WebSeedError::Http {
                url: base.to_owned(),
                source,
            })?;
        // Credentials travel as Basic auth, never in the URL the node logs
        // and shows.
        let (base, auth) = if credentials {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let auth = (decode(url.username()), url.password().map(decode));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            (url.as_str().trim_end_matches('/').to_owned(), Some(auth))
        } else {
            (base.trim_end_matches('/').to_owned(), None)
        };
        Ok(WebSeed {
            base,
            auth,
            client,
            ranges: AtomicBool::new(true),
            bad_until: Mutex::new(None),
            pages: Mutex::new(HashMap::new()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether it is worth asking now.
    pub fn usable(&self) -> bool {
        self.ranges.load(Ordering::Relaxed)
            && self
                .bad_until
                .lock()
                .expect("bad_until lock")
                .is_none_or(|t| Instant::now() >= t)
    }

    fn pause(&self) {
        *self.bad_until.lock().expect("bad_until lock") = Some(Instant::now() + BAD_SEED_PAUSE);
    }

    async fn get(
        &self,
        url: &str,
        range: Option<(u64, u64)>,
        limit: u64,
        metrics: &Metrics,
    ) -> Result<Bytes, WebSeedError> {
        let http = |source: reqwest::Error| WebSeedError::Http {
            url: url.to_owned(),
            source: source.without_url(),
        };
        let mut req = self.client.get(url);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, password.as_deref());
        }
        if let Some((start, len)) = range {
            req = req.header(
                reqwest::header::RANGE,
                format!("bytes={start}-{}", start + len - 1),
            );
        }
        let mut resp = req.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        match (status, range) {
            (206, Some((start, len))) => {
                let want = format!("bytes {start}-{}/", start + len - 1);
                let ok = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&want));
                if !ok {
                    return Err(WebSeedError::Bad {
                        url: url.to_owned(),
                        why: format!("answered another range than {want}…"),
                    });
                }
            }
            (200, Some(_)) => {
                if self.ranges.swap(false, Ordering::Relaxed) {
                    warn!(web_seed = %self.base, "the web seed ignores Range requests (it answered 200 with the whole file); not asking it for blocks again");
                }
                return Err(WebSeedError::NoRanges {
                    url: url.to_owned(),
                });
            }
            (200, None) => {}
            (300..=399, _) => {
                return Err(WebSeedError::Bad {
                    url: url.to_owned(),
                    why: format!(
                        "answered {status}: a recorded web seed's redirects are not followed \
                         (nor one to another origin)"
                    ),
                });
            }
            (status, _) => {
                return Err(WebSeedError::Status {
                    url: url.to_owned(),
                    status,
                })
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(WebSeedError::Bad {
                    url: url.to_owned(),
                    why: format!("sent more than the {limit} bytes asked for"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        metrics
            .received
            .get_or_create(&WEB_SEED)
            .inc_by(body.len() as u64);
        if range.is_some_and(|(_, len)| body.len() as u64 != len) {
            return Err(WebSeedError::Bad {
                url: url.to_owned(),
                why: format!("sent {} bytes for a range of {limit}", body.len()),
            });
        }
        Ok(Bytes::from(body))
    }

    /// The feed's signed state on this web seed.
    pub async fn head(&self, key: &[u8; 32], metrics: &Metrics) -> Result<Head, WebSeedError> {
        let url = format!("{}/{}/head", self.base, feed_path(key));
        let body = self.get(&url, None, MAX_HEAD_LEN as u64, metrics).await?;
        Head::parse(&body).map_err(|e| WebSeedError::Bad {
            url,
            why: e.to_string(),
        })
    }

    /// Tree nodes `indices` of the feed (below `2·length`), in order: the
    /// pages that hold them and are not cached yet fetched at once.
    async fn nodes(
        &self,
        key: &[u8; 32],
        indices: &[u64],
        length: u64,
        metrics: &Metrics,
    ) -> Result<Vec<TreeNode>, WebSeedError> {
        let path = feed_path(key);
        let tree_nodes = 2 * length - 1;
        if indices.iter().any(|&i| i >= tree_nodes) {
            return Err(WebSeedError::Short(length));
        }
        // A page is usable if it reaches the node (one cached while the
        // tree was shorter may not).
        let reaches = |b: &Bytes, i: u64| (b.len() as u64) > (i % PAGE_NODES) * NODE_SIZE;
        let mut have: HashMap<u64, Bytes> = HashMap::new();
        let mut fetch: Vec<u64> = Vec::new();
        {
            let pages = self.pages.lock().expect("pages lock");
            for &i in indices {
                let page = i / PAGE_NODES;
                match pages.get(&(path.clone(), page)) {
                    Some(b) if reaches(b, i) => {
                        have.insert(page, b.clone());
                    }
                    _ => fetch.push(page),
                }
            }
        }
        fetch.sort_unstable();
        fetch.dedup();
        let url = format!("{}/{path}/tree", self.base);
        let fetched: Vec<(u64, Bytes)> = futures::stream::iter(fetch)
            .map(|page| {
                let url = &url;
                async move {
                    let first = page * PAGE_NODES;
                    let count = PAGE_NODES.min(tree_nodes - first);
                    let range = (first * NODE_SIZE, count * NODE_SIZE);
                    let b = self
                        .get(url, Some(range), count * NODE_SIZE, metrics)
                        .await?;
                    Ok::<_, WebSeedError>((page, b))
                }
            })
            .buffer_unordered(PAGE_REQUESTS)
            .try_collect()
            .await?;
        if !fetched.is_empty() {
            let mut pages = self.pages.lock().expect("pages lock");
            if pages.len() + fetched.len() > PAGES_KEPT {
                pages.clear();
            }
            for (page, b) in &fetched {
                pages.insert((path.clone(), *page), b.clone());
            }
        }
        have.extend(fetched);
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let bytes = &have[&(i / PAGE_NODES)];
            let at = ((i % PAGE_NODES) * NODE_SIZE) as usize;
            let raw: &[u8; 40] = bytes[at..at + 40].try_into().expect("40 bytes");
            out.push(node_from_bytes(i, raw));
        }
        Ok(out)
    }

    /// Gets blocks `start..end` of the feed behind `hub` from this web seed
    /// and hands each to the hub as a proof; returns how many it stored.
    /// Upgrades the hub first when its verified length is short of `end`.
    pub async fn fetch(
        &self,
        hub: &HubHandle,
        key: &[u8; 32],
        start: u64,
        end: u64,
        metrics: &Metrics,
    ) -> Result<u64, WebSeedError> {
        if !self.usable() {
            return Err(WebSeedError::Paused(self.base.clone()));
        }
        let r = self.fetch_inner(hub, key, start, end, metrics).await;
        match &r {
            Err(WebSeedError::Hub(SwarmError::Rejected { source: reason, .. })) => {
                warn!(web_seed = %self.base, "bytes from the web seed did not verify ({reason}); not asking it for {BAD_SEED_PAUSE:?}");
                metrics.verification_failures.get_or_create(&WEB_SEED).inc();
                self.pause();
            }
            // A broken or hostile copy, not a passing network failure.
            Err(e @ WebSeedError::Bad { .. }) => {
                warn!(web_seed = %self.base, "{e}; not asking it for {BAD_SEED_PAUSE:?}");
                self.pause();
            }
            _ => {}
        }
        r
    }

    async fn fetch_inner(
        &self,
        hub: &HubHandle,
        key: &[u8; 32],
        start: u64,
        end: u64,
        metrics: &Metrics,
    ) -> Result<u64, WebSeedError> {
        let (mut length, mut fork) = hub.tree().await?;
        if end > length {
            let head = self.head(key, metrics).await?;
            if head.length > length {
                let indices = upgrade_nodes(length, head.length);
                let nodes = self.nodes(key, &indices, head.length, metrics).await?;
                let proof = Proof {
                    fork: head.fork,
                    block: None,
                    hash: None,
                    seek: None,
                    upgrade: Some(DataUpgrade {
                        start: length,
                        length: head.length - length,
                        nodes,
                        additional_nodes: Vec::new(),
                        signature: head.signature.to_vec(),
                    }),
                };
                hub.apply_proof(proof).await?;
                debug!(web_seed = %self.base, from = length, to = head.length, "feed upgraded from the web seed");
                (length, fork) = hub.tree().await?;
            }
        }
        let end = end.min(length);
        if start >= end {
            return Err(WebSeedError::Short(length));
        }
        let url = format!("{}/{}/data", self.base, feed_path(key));
        // One round of tree requests for every node the blocks' proofs
        // need: the roots that give block `start`'s offset, the leaves'
        // sizes, and each block's uncles as the hub lacks them now (a
        // block stored before the next one only lessens what that one
        // lacks: its uncles then are a prefix of these).
        let offset = offset_nodes(start);
        let leaves: Vec<u64> = (start..end).map(|b| 2 * b).collect();
        let mut all: Vec<u64> = offset.iter().chain(&leaves).copied().collect();
        for b in start..end {
            all.extend(block_nodes(b, hub.missing_nodes(b).await?));
        }
        let got: HashMap<u64, TreeNode> = self
            .nodes(key, &all, length, metrics)
            .await?
            .into_iter()
            .map(|n| (n.index, n))
            .collect();
        let roots: Vec<u64> = offset.iter().map(|i| got[i].length).collect();
        let sizes: Vec<u64> = leaves.iter().map(|i| got[i].length).collect();
        let (offset, total) = match data_range(&roots, &sizes) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(0),
            Err(why) => return Err(WebSeedError::Bad { url, why }),
        };
        let data = self
            .get(&url, Some((offset, total)), total, metrics)
            .await?;
        let mut at = 0usize;
        let mut stored = 0;
        for (b, size) in (start..end).zip(sizes) {
            let value = data.slice(at..at + size as usize).to_vec();
            at += size as usize;
            let want = block_nodes(b, hub.missing_nodes(b).await?);
            let nodes = match want.iter().map(|i| got.get(i).cloned()).collect() {
                Some(nodes) => nodes,
                None => self.nodes(key, &want, length, metrics).await?,
            };
            let proof = Proof {
                fork,
                block: Some(DataBlock {
                    index: b,
                    value,
                    nodes,
                }),
                hash: None,
                seek: None,
                upgrade: None,
            };
            if hub.apply_proof(proof).await? {
                stored += 1;
            }
        }
        Ok(stored)
    }
}

/// How often feeds replicated in full are checked against the web seeds.
pub const WEB_SEED_POLL: Duration = Duration::from_secs(30);

/// Keeps every feed `node` replicates in full (trusted indexes, key
/// feeds, mirrored feeds) up to date from its web seeds as well as from peers:
/// at once, when a feed is added, and every [`WEB_SEED_POLL`]. With no
/// peer at all, a node still learns its publishers' paths and keys this
/// way.
/// Runs until the node's feeds are gone (the caller stops it).
pub async fn follow(n: Node, seeds: Arc<WebSeeds>) {
    {
        let mut changed = seeds.subscribe();
        loop {
            changed.mark_unchanged();
            for (key, hub) in n.swarm().eager_feeds() {
                if seeds.is_empty() {
                    break;
                }
                loop {
                    let (have, until) = {
                        let st = hub.state();
                        let st = st.borrow();
                        (st.ready, st.eager.and_then(|e| e.to))
                    };
                    let step = have.saturating_add(BLOCKS_PER_REQUEST);
                    let to = until.map_or(step, |u| u.min(step));
                    if have >= to {
                        break;
                    }
                    match seeds.fetch(&hub, &key, have, to, n.metrics()).await {
                        Ok(got) if got > 0 => continue,
                        Ok(_) => break,
                        Err(e) => {
                            debug!(feed = hub.name(), "web seed: {e}");
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(WEB_SEED_POLL) => {}
                _ = n.swarm().eager_feed_added() => {}
                _ = changed.changed() => {}
            }
        }
    }
}

/// Where blocks lie in a web seed's data file, from its tree: `roots` are
/// the lengths of the roots left of the first block ([`offset_nodes`]),
/// `sizes` the blocks' own lengths. `None` when there is nothing to fetch.
/// The tree's lengths are not verified until the blocks are, so a hostile
/// copy may claim anything: every sum is checked.
fn data_range(roots: &[u64], sizes: &[u64]) -> Result<Option<(u64, u64)>, String> {
    let over = || "its tree claims a feed over 2^64 bytes".to_owned();
    if sizes.iter().any(|&s| s > MAX_BLOCK) {
        return Err(format!("its tree claims a block over {MAX_BLOCK} bytes"));
    }
    let offset = roots
        .iter()
        .try_fold(0u64, |sum, &n| sum.checked_add(n))
        .ok_or_else(over)?;
    let total = sizes
        .iter()
        .try_fold(0u64, |sum, &n| sum.checked_add(n))
        .ok_or_else(over)?;
    if total == 0 {
        return Ok(None);
    }
    offset.checked_add(total).ok_or_else(over)?;
    Ok(Some((offset, total)))
}

/// Most web seeds learned from publishers' indexes, over all publishers.
pub const MAX_LEARNED: usize = 64;

/// The web seeds a node asks: those given by hand (`serve --web-seed`)
/// first, then those its trusted publishers recorded in their indexes
/// (`publish --web-seed-url`), each URL once.
#[derive(Debug)]
pub struct WebSeeds {
    configured: Vec<Arc<WebSeed>>,
    /// Whether publishers' recorded web seeds are used.
    learn: bool,
    /// By publisher, its latest list.
    learned: Mutex<HashMap<[u8; 32], Vec<Arc<WebSeed>>>>,
    /// By publisher, the URLs it last gave (as recorded).
    given: Mutex<HashMap<[u8; 32], Vec<String>>>,
    /// Bumped when the set changes.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for WebSeeds {
    /// None by hand; learned from publishers.
    fn default() -> Self {
        WebSeeds {
            configured: Vec::new(),
            learn: true,
            learned: Mutex::new(HashMap::new()),
            given: Mutex::new(HashMap::new()),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl WebSeeds {
    /// `urls` given by hand; `learn`: also use those publishers record.
    pub fn new(urls: &[String], learn: bool) -> Result<Self, WebSeedError> {
        let mut configured: Vec<Arc<WebSeed>> = Vec::new();
        for u in urls {
            let seed = WebSeed::new(u, SeedOrigin::ByHand)?;
            if configured.iter().all(|c| c.base != seed.base) {
                configured.push(Arc::new(seed));
            }
        }
        Ok(WebSeeds {
            configured,
            learn,
            ..WebSeeds::default()
        })
    }

    /// Takes in `publisher`'s recorded list (replacing its earlier one).
    /// URLs that do not parse are skipped; an index record was checked
    /// when decoded, so that is only a scheme this build cannot use.
    pub fn learn(&self, publisher: &[u8; 32], urls: &[String]) {
        if !self.learn {
            return;
        }
        {
            // The same list again (the catalog changed for another reason):
            // nothing to do, and nothing to log again.
            let mut given = self.given.lock().expect("given lock");
            if given.get(publisher).is_some_and(|g| g.as_slice() == urls) {
                return;
            }
            given.insert(*publisher, urls.to_vec());
        }
        let known = self.all();
        let mut learned = self.learned.lock().expect("learned lock");
        let others: usize = learned
            .iter()
            .filter(|(p, _)| *p != publisher)
            .map(|(_, v)| v.len())
            .sum();
        let mut list: Vec<Arc<WebSeed>> = Vec::new();
        for u in urls {
            if others + list.len() >= MAX_LEARNED {
                warn!(
                    "publishers recorded more than {MAX_LEARNED} web seeds; the rest are not used"
                );
                break;
            }
            let base = u.trim_end_matches('/');
            if let Some(seed) = known.iter().find(|s| s.base == base) {
                list.push(seed.clone());
                continue;
            }
            match WebSeed::new(u, SeedOrigin::Learned) {
                Ok(seed) => list.push(Arc::new(seed)),
                Err(e) => warn!("a publisher's web seed is not used: {e}"),
            }
        }
        let old = learned.insert(*publisher, list.clone());
        drop(learned);
        let same = old.is_some_and(|o| {
            o.len() == list.len() && o.iter().zip(&list).all(|(a, b)| a.base == b.base)
        });
        if !same && !list.is_empty() {
            for seed in &list {
                tracing::info!(web_seed = %seed.base, "using a web seed recorded by a trusted publisher");
            }
        }
        if !same {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Every web seed, in the order they are asked, each URL once.
    pub fn all(&self) -> Vec<Arc<WebSeed>> {
        let mut out = self.configured.clone();
        let learned = self.learned.lock().expect("learned lock");
        let mut publishers: Vec<_> = learned.iter().collect();
        publishers.sort_by_key(|(p, _)| **p);
        for (_, list) in publishers {
            for seed in list {
                if out.iter().all(|s| s.base != seed.base) {
                    out.push(seed.clone());
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
            && self
                .learned
                .lock()
                .expect("learned lock")
                .values()
                .all(|l| l.is_empty())
    }

    /// Changes to the set (publishers recording or withdrawing seeds).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Blocks `start..end` from the first web seed that gives them.
    pub async fn fetch(
        &self,
        hub: &HubHandle,
        key: &[u8; 32],
        start: u64,
        end: u64,
        metrics: &Metrics,
    ) -> Result<u64, WebSeedError> {
        let mut last = None;
        for seed in self.all().iter().filter(|s| s.usable()) {
            match seed.fetch(hub, key, start, end, metrics).await {
                Ok(n) => return Ok(n),
                Err(e) => {
                    debug!(web_seed = %seed.base(), "web seed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| WebSeedError::Paused("every web seed".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ranges_are_checked_whatever_the_tree_claims() {
        assert_eq!(data_range(&[], &[10, 20]), Ok(Some((0, 30))));
        assert_eq!(data_range(&[100, 4], &[10]), Ok(Some((104, 10))));
        assert_eq!(data_range(&[100], &[]), Ok(None));
        assert_eq!(data_range(&[100], &[0, 0]), Ok(None));
        assert_eq!(data_range(&[], &[MAX_BLOCK]), Ok(Some((0, MAX_BLOCK))));
        assert!(data_range(&[], &[MAX_BLOCK + 1]).is_err());
        assert!(data_range(&[], &[u64::MAX]).is_err());
        // Roots whose sum overflows.
        assert!(data_range(&[u64::MAX, 1], &[1]).is_err());
        assert!(data_range(&[u64::MAX - 1, 1 << 30], &[1]).is_err());
        // An offset at the very end: offset + total overflows by one.
        assert!(data_range(&[u64::MAX - 9], &[10]).is_err());
        assert_eq!(
            data_range(&[u64::MAX - 10], &[10]),
            Ok(Some((u64::MAX - 10, 10)))
        );
    }
}
