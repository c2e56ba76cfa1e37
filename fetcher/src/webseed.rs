//! Web seeds (`serve --web-seed URL`): static HTTP copies of publishers'
//! feeds (layout in `hypernar_feed::webseed`), read with range requests
//! when peers are absent or slow. Every block is handed to the feed's hub as
//! the `Proof` a peer would have sent, so it is verified against the signed
//! tree exactly the same way, stored, and re-served to peers.
//!
//! A server that answers a range request with the whole file (200) does
//! not do ranges: it is not asked for blocks again (a data file is the
//! whole feed). A web seed whose bytes fail verification is dropped for
//! [`BAD_SEED_PAUSE`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hypercore_schema::{DataBlock, DataUpgrade, Node as TreeNode, Proof};
use hypernar_feed::format::segment::MAX_SEGMENT_SIZE;
use hypernar_feed::webseed::{
    block_nodes, feed_path, node_from_bytes, offset_nodes, upgrade_nodes, Head, MAX_HEAD_LEN,
    NODE_SIZE,
};
use tracing::{debug, warn};

use crate::hub::{FetchError, HubHandle};
use crate::metrics::{Metrics, SourceLabel};
use crate::node::Node;

/// Time to connect to a web seed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a web-seed response may stall.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A web seed that sent bytes that did not verify is not asked again for
/// this long.
pub const BAD_SEED_PAUSE: Duration = Duration::from_secs(600);
/// Tree nodes fetched per request (40 KiB), and pages kept per web seed.
const PAGE_NODES: u64 = 1024;
const PAGES_KEPT: usize = 256;
/// Blocks fetched per data request.
pub const BLOCKS_PER_REQUEST: u64 = 16;
/// Largest block a web seed's tree may claim (a segment and its envelope).
const MAX_BLOCK: u64 = MAX_SEGMENT_SIZE as u64 + 64;

pub const WEB_SEED: SourceLabel = SourceLabel { source: "web_seed" };

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
    Hub(#[from] FetchError),
}

/// One web seed.
#[derive(Debug)]
pub struct WebSeed {
    base: String,
    client: reqwest::Client,
    ranges: AtomicBool,
    bad_until: Mutex<Option<Instant>>,
    /// Tree pages by (feed path, page number).
    pages: Mutex<HashMap<(String, u64), Bytes>>,
}

impl WebSeed {
    pub fn new(base: &str) -> Result<Self, WebSeedError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(WebSeedError::Bad {
                url: base.to_owned(),
                why: "a web seed URL is http:// or https://".into(),
            });
        }
        let client =
            crate::upstream::http_client(CONNECT_TIMEOUT, READ_TIMEOUT).map_err(|source| {
                WebSeedError::Http {
                    url: base.to_owned(),
                    source,
                }
            })?;
        Ok(WebSeed {
            base: base.trim_end_matches('/').to_owned(),
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

    /// Tree nodes `indices` of the feed (below `2·length`).
    async fn nodes(
        &self,
        key: &[u8; 32],
        indices: &[u64],
        length: u64,
        metrics: &Metrics,
    ) -> Result<Vec<TreeNode>, WebSeedError> {
        let path = feed_path(key);
        let tree_nodes = 2 * length - 1;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= tree_nodes {
                return Err(WebSeedError::Short(length));
            }
            let page = i / PAGE_NODES;
            let cached = self
                .pages
                .lock()
                .expect("pages lock")
                .get(&(path.clone(), page))
                .cloned();
            let bytes = match cached {
                Some(b) if (b.len() as u64) > (i % PAGE_NODES) * NODE_SIZE => b,
                _ => {
                    let first = page * PAGE_NODES;
                    let count = PAGE_NODES.min(tree_nodes - first);
                    let url = format!("{}/{path}/tree", self.base);
                    let b = self
                        .get(
                            &url,
                            Some((first * NODE_SIZE, count * NODE_SIZE)),
                            count * NODE_SIZE,
                            metrics,
                        )
                        .await?;
                    let mut pages = self.pages.lock().expect("pages lock");
                    if pages.len() >= PAGES_KEPT {
                        pages.clear();
                    }
                    pages.insert((path.clone(), page), b.clone());
                    b
                }
            };
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
        if let Err(WebSeedError::Hub(FetchError::Rejected { reason, .. })) = &r {
            warn!(web_seed = %self.base, "bytes from the web seed did not verify ({reason}); not asking it for {BAD_SEED_PAUSE:?}");
            metrics.verification_failures.get_or_create(&WEB_SEED).inc();
            self.pause();
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
        let (mut length, _) = hub.tree().await?;
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
                length = hub.tree().await?.0;
            }
        }
        let end = end.min(length);
        if start >= end {
            return Err(WebSeedError::Short(length));
        }
        let (_, fork) = hub.tree().await?;
        let offset: u64 = self
            .nodes(key, &offset_nodes(start), length, metrics)
            .await?
            .iter()
            .map(|n| n.length)
            .sum();
        let leaves: Vec<u64> = (start..end).map(|b| 2 * b).collect();
        let sizes: Vec<u64> = self
            .nodes(key, &leaves, length, metrics)
            .await?
            .iter()
            .map(|n| n.length)
            .collect();
        let url = format!("{}/{}/data", self.base, feed_path(key));
        if sizes.iter().any(|&s| s > MAX_BLOCK) {
            return Err(WebSeedError::Bad {
                url,
                why: format!("its tree claims a block over {MAX_BLOCK} bytes"),
            });
        }
        let total: u64 = sizes.iter().sum();
        if total == 0 {
            return Ok(0);
        }
        let data = self
            .get(&url, Some((offset, total)), total, metrics)
            .await?;
        let mut at = 0usize;
        let mut stored = 0;
        for (b, size) in (start..end).zip(sizes) {
            let value = data.slice(at..at + size as usize).to_vec();
            at += size as usize;
            let missing = hub.missing_nodes(b).await?;
            let nodes = self
                .nodes(key, &block_nodes(b, missing), length, metrics)
                .await?;
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
/// feeds, mirrored feeds) up to date from `seeds` as well as from peers:
/// at once, when a feed is added, and every [`WEB_SEED_POLL`]. With no
/// peer at all, a node still learns its publishers' paths and keys this
/// way.
pub fn follow(node: &Node, seeds: Arc<WebSeeds>) {
    if seeds.is_empty() {
        return;
    }
    let n = node.clone();
    node.spawn(async move {
        loop {
            for (key, hub) in n.eager_feeds() {
                loop {
                    let have = hub.state().borrow().contiguous;
                    let to = have + BLOCKS_PER_REQUEST;
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
                _ = n.eager_feed_added() => {}
            }
        }
    });
}

/// The configured web seeds, asked in order.
#[derive(Debug, Default)]
pub struct WebSeeds(pub Vec<Arc<WebSeed>>);

impl WebSeeds {
    pub fn new(urls: &[String]) -> Result<Self, WebSeedError> {
        Ok(WebSeeds(
            urls.iter()
                .map(|u| WebSeed::new(u).map(Arc::new))
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        for seed in self.0.iter().filter(|s| s.usable()) {
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
