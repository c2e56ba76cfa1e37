//! Upstream binary caches (`serve --upstream`, cache.nixos.org unless told
//! otherwise), the last resort behind the swarm:
//!
//! - **fallback**: a path a trusted publisher lists, whose blocks did not
//!   arrive in time, continues from the upstream's NAR at the byte the swarm
//!   stopped at. The upstream's narinfo must name the NarHash and NarSize of
//!   the signed index; the whole NAR is hashed, and the response ends short
//!   (a failed transfer to Nix) unless it matches.
//! - **pull-through**: a path no trusted publisher lists is proxied, narinfo
//!   and NAR, without storing it. The narinfo passes through verbatim
//!   except for where the NAR is (`URL`, `Compression: none`, no
//!   `FileHash`/`FileSize`): Nix checks its signatures as it would upstream.
//!
//! NARs are served decompressed, so a resumed transfer (`Range`) works the
//! same whichever source is behind it. Everything read here is untrusted:
//! narinfos are bounded, a NAR is cut off one byte past its NarSize, and no
//! byte past the NarHash check's point is sent before the check.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use hypernar_feed::format::narinfo::{NarHash, NarHasher, NarInfo, MAX_NARINFO_LEN};
use tokio::sync::Semaphore;
use tracing::debug;

use super::fallback::Sink;
use super::ByteRange;
use hypernar_swarm::metrics::{Metrics, UPSTREAM};

/// Upstream unless `serve --upstream` says otherwise.
pub const DEFAULT_UPSTREAM: &str = "https://cache.nixos.org";
/// Time to connect to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for one upstream to answer a narinfo, body included.
pub const NARINFO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a NAR body from upstream may stall.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pull-through narinfos remembered for the NAR request that follows.
const REMEMBERED: usize = 4096;
/// And at most this many bytes of them (a narinfo may be 1 MiB: 4 096 such
/// were 4 GiB).
const REMEMBERED_BYTES: usize = 16 << 20;
/// Pulled-through NARs streamed at once, over all clients: each holds a
/// blocking thread (decompression and hashing), and the runtime's 512 also
/// decrypt every swarm response.
pub const MAX_STREAMS: usize = 64;
/// Of those, at most this many for one client address: Nix's own default
/// (`max-substitution-jobs`), so a local nix-daemon is never held back.
pub const MAX_STREAMS_PER_CLIENT: usize = 16;
/// Listed paths continuing from upstream have places of their own, so
/// pull-through cannot starve them.
pub const MAX_FALLBACK_STREAMS: usize = 32;
/// How long a request waits for a place before it is answered 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(30);
/// How long a remembered narinfo is used.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Plain NAR bytes read from a decompressor at a time.
const CHUNK: usize = 256 << 10;

/// Why an upstream could not serve.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {source}")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: the NAR is longer than its NarSize {size}")]
    TooLong { url: String, size: u64 },
    #[error("{url}: the NAR is {got} bytes, its NarSize says {size}")]
    Short { url: String, got: u64, size: u64 },
    #[error("{url}: the NAR's SHA-256 is {got}, expected {expected}")]
    NarHash {
        url: String,
        expected: NarHash,
        got: NarHash,
    },
    #[error("no upstream has this path with the NarHash of the signed index")]
    NoneHas,
    #[error("upstream URL {0:?} is not http:// or https://")]
    Url(String),
}

/// A narinfo one upstream gave.
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    /// Index into the upstream list.
    pub upstream: usize,
    pub info: NarInfo,
    /// The narinfo as the upstream wrote it.
    pub text: String,
}

/// Remembered pull-through narinfos, bounded by count and by bytes.
#[derive(Debug, Default)]
struct Remembered {
    map: HashMap<String, (Instant, UpstreamInfo)>,
    bytes: usize,
}

/// What a remembered narinfo is counted as: its text twice (the text and
/// the parsed fields) and a little for the map.
fn weight(hash: &str, u: &UpstreamInfo) -> usize {
    hash.len() + 2 * u.text.len() + 256
}

impl Remembered {
    fn insert(&mut self, hash: &str, u: UpstreamInfo, now: Instant) {
        let w = weight(hash, &u);
        if w > REMEMBERED_BYTES {
            return;
        }
        if let Some((_, old)) = self.map.remove(hash) {
            self.bytes -= weight(hash, &old);
        }
        if self.map.len() >= REMEMBERED || self.bytes + w > REMEMBERED_BYTES {
            self.map
                .retain(|_, (at, _)| now.duration_since(*at) < REMEMBER_FOR);
            self.bytes = self.map.iter().map(|(h, (_, u))| weight(h, u)).sum();
        }
        // Still over: the oldest go first.
        while self.map.len() >= REMEMBERED || self.bytes + w > REMEMBERED_BYTES {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(h, _)| h.clone())
            else {
                break;
            };
            if let Some((_, old)) = self.map.remove(&oldest) {
                self.bytes -= weight(&oldest, &old);
            }
        }
        self.bytes += w;
        self.map.insert(hash.to_owned(), (now, u));
    }
}

/// One of the [`MAX_STREAMS`] upstream NAR streams, held while it runs.
#[derive(Debug)]
pub struct StreamSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

/// One of a client's [`MAX_STREAMS_PER_CLIENT`].
#[derive(Debug)]
struct ClientSlot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ip: IpAddr,
    clients: PerClient,
}

type PerClient = Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>;

/// Forgets `ip`'s semaphore once nothing holds or waits for it.
fn forget_idle(clients: &PerClient, ip: IpAddr) {
    let mut m = clients.lock().expect("per-client lock");
    if m.get(&ip).is_some_and(|s| Arc::strong_count(s) == 1) {
        m.remove(&ip);
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        forget_idle(&self.clients, self.ip);
    }
}

/// What a node does with a NAR it pulled through whole and verified: keep
/// it in feeds of its own (`serve`'s re-publisher, which decides what it
/// takes: narinfos signed by a key it trusts, not kept yet, while there is
/// room). Asked before the NAR is streamed; the NAR's plain bytes are
/// written to the file it names as they go to Nix.
pub trait Keep: Send + Sync {
    /// Where to write the NAR of `u`, if it is to be kept.
    fn begin(&self, u: &UpstreamInfo) -> Option<std::path::PathBuf>;
    /// The whole NAR of `u`, its size and NarHash checked, is at `file`.
    fn done(&self, u: &UpstreamInfo, file: std::path::PathBuf);
    /// It was not (the stream failed, or its client went away): `file`
    /// is removed.
    fn abandon(&self, u: &UpstreamInfo, file: std::path::PathBuf);
}

/// A NAR being kept: its file, abandoned unless it is finished.
struct Keeping {
    keep: Arc<dyn Keep>,
    u: UpstreamInfo,
    path: std::path::PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Keeping {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(bytes) {
                // A full disk is no reason to fail Nix's download.
                tracing::warn!(path = %self.u.info.store_path, file = %self.path.display(), %e, "not keeping a pulled-through path");
                self.file = None;
            }
        }
    }

    fn finish(mut self) {
        use std::io::Write;
        let ok = match self.file.take() {
            Some(mut f) => f.flush().is_ok() && f.get_ref().sync_data().is_ok(),
            None => false,
        };
        let path = std::mem::take(&mut self.path);
        if ok {
            self.keep.done(&self.u, path);
        } else {
            self.keep.abandon(&self.u, path);
        }
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file = None;
            self.keep.abandon(&self.u, std::mem::take(&mut self.path));
        }
    }
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("bases", &self.bases)
            .field("proxy", &self.proxy)
            .field("keeps", &self.keep.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The configured upstreams, in the order they are asked.
pub struct Upstreams {
    /// Keeps what is pulled through, if set (`serve`).
    keep: std::sync::OnceLock<Arc<dyn Keep>>,
    bases: Vec<String>,
    client: reqwest::Client,
    proxy: bool,
    remembered: Mutex<Remembered>,
    /// Bounds upstream NAR streams ([`MAX_STREAMS`], [`MAX_STREAMS_PER_CLIENT`]).
    streams: Arc<Semaphore>,
    per_client: PerClient,
    fallback: Arc<Semaphore>,
}

impl Upstreams {
    /// `bases` in order; `proxy` turns pull-through on.
    pub fn new(bases: Vec<String>, proxy: bool) -> Result<Self, UpstreamError> {
        for b in &bases {
            if !(b.starts_with("http://") || b.starts_with("https://")) {
                return Err(UpstreamError::Url(b.clone()));
            }
        }
        let client = http_client(CONNECT_TIMEOUT, READ_TIMEOUT, Redirects::SameOrigin).map_err(
            |source| UpstreamError::Http {
                url: String::new(),
                source,
            },
        )?;
        Ok(Upstreams {
            keep: std::sync::OnceLock::new(),
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            client,
            proxy,
            remembered: Mutex::new(Remembered::default()),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            per_client: Arc::default(),
            fallback: Arc::new(Semaphore::new(MAX_FALLBACK_STREAMS)),
        })
    }

    /// Keeps every NAR pulled through whole that `keep` takes (once).
    pub fn set_keep(&self, keep: Arc<dyn Keep>) {
        let _ = self.keep.set(keep);
    }

    /// No upstream at all.
    pub fn none() -> Self {
        Self::new(Vec::new(), false).expect("no URLs to check")
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    /// Whether paths no trusted publisher lists are proxied.
    pub fn proxies(&self) -> bool {
        self.proxy && !self.bases.is_empty()
    }

    /// The base URLs, in order.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The HTTP client the upstreams are asked with (timeouts, redirects
    /// to the same origin only).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn narinfo_from(&self, i: usize, hash: &str) -> Result<UpstreamInfo, UpstreamError> {
        let url = format!("{}/{hash}.narinfo", self.bases[i]);
        let http = |source: reqwest::Error| UpstreamError::Http {
            url: url.clone(),
            source: source.without_url(),
        };
        let get = async {
            let mut resp = self.client.get(&url).send().await.map_err(http)?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(UpstreamError::Status {
                    url: url.clone(),
                    status,
                });
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(http)? {
                if body.len() + chunk.len() > MAX_NARINFO_LEN {
                    return Err(UpstreamError::TooLong {
                        url: url.clone(),
                        size: MAX_NARINFO_LEN as u64,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            let info = NarInfo::parse(&body).map_err(|e| UpstreamError::Read {
                url: url.clone(),
                source: std::io::Error::other(e),
            })?;
            let text = String::from_utf8(body).expect("NarInfo::parse checked UTF-8");
            Ok(UpstreamInfo {
                upstream: i,
                info,
                text,
            })
        };
        match tokio::time::timeout(NARINFO_TIMEOUT, get).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Read {
                url: url.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no narinfo within {NARINFO_TIMEOUT:?}"),
                ),
            }),
        }
    }

    /// The narinfo of `hash` from the first upstream that has one `accept`
    /// takes. Unreachable or failing upstreams count as not having it.
    pub async fn narinfo(
        &self,
        hash: &str,
        accept: impl Fn(&NarInfo) -> bool,
    ) -> Option<UpstreamInfo> {
        for i in 0..self.bases.len() {
            match self.narinfo_from(i, hash).await {
                Ok(u) if u.info.store_path.hash_part() == hash && accept(&u.info) => {
                    return Some(u)
                }
                Ok(_) => debug!(upstream = %self.bases[i], hash, "upstream narinfo not usable"),
                Err(e) => debug!("upstream narinfo: {e}"),
            }
        }
        None
    }

    /// Remembers a pull-through narinfo for the NAR request that follows.
    pub fn remember(&self, hash: &str, u: UpstreamInfo) {
        self.remembered
            .lock()
            .expect("remembered lock")
            .insert(hash, u, Instant::now());
    }

    /// A narinfo remembered by [`Upstreams::remember`], if recent.
    pub fn recall(&self, hash: &str) -> Option<UpstreamInfo> {
        let m = self.remembered.lock().expect("remembered lock");
        let (at, u) = m.map.get(hash)?;
        (at.elapsed() < REMEMBER_FOR).then(|| u.clone())
    }

    /// A place to stream an upstream NAR: for a pull-through by the
    /// client at `Some(ip)`, one of its [`MAX_STREAMS_PER_CLIENT`] and of
    /// the [`MAX_STREAMS`], waited for at most [`SLOT_WAIT`] (`None` then);
    /// for a listed path continuing from upstream (`None`), one of the
    /// [`MAX_FALLBACK_STREAMS`].
    pub async fn stream_slot(&self, client: Option<IpAddr>) -> Option<StreamSlot> {
        let Some(ip) = client else {
            let permit = self.fallback.clone().acquire_owned().await.ok()?;
            return Some(StreamSlot {
                _permit: permit,
                _client: None,
            });
        };
        let mine = self
            .per_client
            .lock()
            .expect("per-client lock")
            .entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_STREAMS_PER_CLIENT)))
            .clone();
        let got = tokio::time::timeout(SLOT_WAIT, async {
            let own = mine.acquire_owned().await.ok()?;
            let all = self.streams.clone().acquire_owned().await.ok()?;
            Some((own, all))
        })
        .await
        .ok()
        .flatten();
        let Some((own, all)) = got else {
            forget_idle(&self.per_client, ip);
            return None;
        };
        Some(StreamSlot {
            _permit: all,
            _client: Some(ClientSlot {
                permit: Some(own),
                ip,
                clients: self.per_client.clone(),
            }),
        })
    }

    /// Streams `range` of the plain NAR that `u` describes into `tx`,
    /// reading the NAR from its start (a compressed NAR cannot be entered
    /// elsewhere). A range that reaches the NAR's end is held to the whole
    /// NAR's size and SHA-256 before its last chunk is sent, so a NAR that
    /// does not verify is never delivered complete; a range that ends
    /// before it stops downloading there (a prefix can never complete a
    /// NAR for Nix, which checks the hash of what it imports). Stops as
    /// soon as the client is gone. Returns when done, or with what went
    /// wrong.
    /// `slot` is held until the blocking reader is done, not only while
    /// this future lives.
    ///
    /// A path pulled through (`pull_through`), asked whole, is offered to
    /// the [`Keep`], if any, as it streams.
    pub async fn stream_nar(
        &self,
        u: &UpstreamInfo,
        range: ByteRange,
        tx: &Sink,
        metrics: &Metrics,
        slot: StreamSlot,
        pull_through: bool,
    ) -> Result<(), UpstreamError> {
        let keeping = match self.keep.get() {
            Some(k) if pull_through && range.start == 0 && range.end == u.info.nar_size => {
                k.begin(u).and_then(|path| {
                    match std::fs::File::create(&path) {
                        Ok(f) => Some(Keeping {
                            keep: k.clone(),
                            u: u.clone(),
                            path,
                            file: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
                        }),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), %e, "not keeping a pulled-through path");
                            k.abandon(u, path);
                            None
                        }
                    }
                })
            }
            _ => None,
        };
        let r = self
            .stream_nar_inner(u, range, tx, metrics, slot, keeping)
            .await;
        if matches!(
            r,
            Err(UpstreamError::NarHash { .. }
                | UpstreamError::TooLong { .. }
                | UpstreamError::Short { .. })
        ) {
            metrics.verification_failures.get_or_create(&UPSTREAM).inc();
        }
        r
    }

    async fn stream_nar_inner(
        &self,
        u: &UpstreamInfo,
        range: ByteRange,
        tx: &Sink,
        metrics: &Metrics,
        slot: StreamSlot,
        mut keeping: Option<Keeping>,
    ) -> Result<(), UpstreamError> {
        let url = format!("{}/{}", self.bases[u.upstream], u.info.url);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|source| UpstreamError::Http {
                url: url.clone(),
                source: source.without_url(),
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(UpstreamError::Status { url, status });
        }
        let body_url = url.clone();
        let received = metrics.received.get_or_create(&UPSTREAM).clone();
        let body = resp
            .bytes_stream()
            .map_ok(move |b| {
                received.inc_by(b.len() as u64);
                b
            })
            .map_err(move |e| std::io::Error::other(format!("{body_url}: {e}")));
        let reader = tokio_util::io::StreamReader::new(body);
        let handle = tokio::runtime::Handle::current();
        let (compression, size, expected) = (u.info.compression, u.info.nar_size, u.info.nar_hash);
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let read_err = |source| UpstreamError::Read {
                url: url.clone(),
                source,
            };
            let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
            let mut nar = compression
                .decoder(Box::new(bridge))
                .map_err(read_err)?
                .take(size.saturating_add(1));
            let mut hasher = NarHasher::new();
            let mut buf = vec![0u8; CHUNK];
            let mut pos = 0u64;
            let mut pending: Option<Bytes> = None;
            loop {
                if tx.is_closed() {
                    return Ok(()); // the client went away: stop downloading
                }
                let n = match nar.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                };
                hasher.update(&buf[..n]);
                if let Some(k) = &mut keeping {
                    k.write(&buf[..n]);
                }
                let (lo, hi) = (pos, pos + n as u64);
                pos = hi;
                if pos > size {
                    return Err(UpstreamError::TooLong { url, size });
                }
                let (a, b) = (lo.max(range.start), hi.min(range.end));
                if a < b {
                    let chunk = Bytes::copy_from_slice(&buf[(a - lo) as usize..(b - lo) as usize]);
                    if let Some(p) = pending.replace(chunk) {
                        if tx.blocking_send(p).is_err() {
                            return Ok(()); // the client went away
                        }
                    }
                }
                if range.end < size && pos >= range.end {
                    // All that was asked, short of the end: send it and stop.
                    if let Some(p) = pending.take() {
                        let _ = tx.blocking_send(p);
                    }
                    return Ok(());
                }
            }
            if pos != size {
                return Err(UpstreamError::Short {
                    url,
                    got: pos,
                    size,
                });
            }
            let got = hasher.finish();
            if got != expected {
                return Err(UpstreamError::NarHash { url, expected, got });
            }
            // Whole and verified: kept (whether or not Nix reads the end).
            if let Some(k) = keeping.take() {
                k.finish();
            }
            if let Some(p) = pending {
                let _ = tx.blocking_send(p);
            }
            Ok(())
        })
        .await
        .expect("upstream NAR reader panicked")
    }
}

/// Which redirects an HTTP client follows (reqwest's default follows ten,
/// to any URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redirects {
    /// None. A web seed is a static copy at a URL a publisher may have
    /// chosen: a redirect from it could point every follower at any URL
    /// (an internal admin page, a cloud metadata address).
    None,
    /// Only to the same scheme, host and port, at most [`MAX_REDIRECTS`]:
    /// an upstream the operator named may move its files, not send the
    /// node elsewhere.
    SameOrigin,
}

/// Most redirects followed for one request ([`Redirects::SameOrigin`]).
pub(crate) const MAX_REDIRECTS: usize = 5;

/// Whether `a` and `b` have the same scheme, host and port.
pub(crate) fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// An HTTP client for upstreams and web seeds: our user agent, the given
/// connect and stall timeouts, and which redirects it follows.
pub(crate) fn http_client(
    connect: Duration,
    read: Duration,
    redirects: Redirects,
) -> reqwest::Result<reqwest::Client> {
    let policy = match redirects {
        Redirects::None => reqwest::redirect::Policy::none(),
        Redirects::SameOrigin => reqwest::redirect::Policy::custom(|attempt| {
            let hops = attempt.previous().len();
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            if hops > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if same {
                attempt.follow()
            } else {
                let to = attempt.url().origin().ascii_serialization();
                attempt.error(format!(
                    "a redirect to another origin ({to}) is not followed"
                ))
            }
        }),
    };
    reqwest::Client::builder()
        .user_agent(concat!("hypernar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .read_timeout(read)
        .redirect(policy)
        .build()
}

/// The narinfo text Nix gets for a pulled-through path: the upstream's,
/// verbatim, but for where the NAR is and how it is compressed.
pub fn proxied_narinfo(text: &str, url: &str) -> String {
    let mut out = String::with_capacity(text.len() + url.len());
    let mut placed = false;
    for line in text.lines() {
        let key = line.split_once(':').map(|(k, _)| k.trim());
        if matches!(key, Some("URL" | "Compression" | "FileHash" | "FileSize")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if !placed && key == Some("StorePath") {
            out.push_str(&format!("URL: {url}\nCompression: none\n"));
            placed = true;
        }
    }
    if !placed {
        out.push_str(&format!("URL: {url}\nCompression: none\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "StorePath: /nix/store/0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-hello-2.12\n\
URL: nar/1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar.xz\n\
Compression: xz\n\
FileHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n\
FileSize: 50000\n\
NarHash: sha256:1rxipg5fwldkhma92zpzlhllcq6i3qaxbbc8gf05c65f9yg020xm\n\
NarSize: 226560\n\
References: 0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-hello-2.12\n\
Deriver: 5ddyzazcij3gaz63rd10r44vjbhdp3qc-hello-2.12.drv\n\
System: x86_64-linux\n\
Sig: cache.nixos.org-1:abc==\n\
Sig: other-1:def==\n";

    #[test]
    fn a_proxied_narinfo_keeps_everything_but_the_nar_location() {
        let out = proxied_narinfo(UPSTREAM, "nar/x.nar");
        let kept: Vec<&str> = UPSTREAM
            .lines()
            .filter(|l| {
                !["URL:", "Compression:", "FileHash:", "FileSize:"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .collect();
        let got: Vec<&str> = out
            .lines()
            .filter(|l| *l != "URL: nar/x.nar" && *l != "Compression: none")
            .collect();
        assert_eq!(got, kept);
        assert_eq!(out.lines().nth(1), Some("URL: nar/x.nar"));
        assert_eq!(out.lines().nth(2), Some("Compression: none"));
        let parsed = NarInfo::parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.url, "nar/x.nar");
        assert_eq!(parsed.file_hash, None);
        assert_eq!(parsed.sigs.len(), 2);
    }

    #[test]
    fn upstream_urls_must_be_http() {
        assert!(Upstreams::new(vec!["ftp://x".into()], true).is_err());
        assert!(Upstreams::new(vec!["file:///x".into()], true).is_err());
        let u = Upstreams::new(vec!["https://cache.example.org/".into()], true).unwrap();
        assert_eq!(u.bases(), ["https://cache.example.org"]);
        assert!(u.proxies());
        assert!(!Upstreams::none().proxies());
    }

    fn info(text_len: usize) -> UpstreamInfo {
        UpstreamInfo {
            upstream: 0,
            info: NarInfo::parse(UPSTREAM.as_bytes()).unwrap(),
            text: "x".repeat(text_len),
        }
    }

    #[test]
    fn remembered_narinfos_are_bounded_by_bytes_the_oldest_going_first() {
        let mut r = Remembered::default();
        let t0 = Instant::now();
        // 1 MiB narinfos (the largest a narinfo may be).
        for i in 0..64u64 {
            r.insert(
                &format!("h{i}"),
                info(1 << 20),
                t0 + Duration::from_millis(i),
            );
            assert!(r.bytes <= REMEMBERED_BYTES, "{} bytes", r.bytes);
            assert_eq!(
                r.bytes,
                r.map.iter().map(|(h, (_, u))| weight(h, u)).sum::<usize>()
            );
        }
        assert!(r.map.len() < 16);
        assert!(r.map.contains_key("h63") && !r.map.contains_key("h0"));
        // Many small ones are bounded by count.
        for i in 0..(REMEMBERED as u64 + 10) {
            r.insert(
                &format!("s{i}"),
                info(100),
                t0 + Duration::from_secs(1) + Duration::from_millis(i),
            );
        }
        assert_eq!(r.map.len(), REMEMBERED);
        // One over the whole budget is not kept at all.
        r.insert("huge", info(REMEMBERED_BYTES), t0);
        assert!(!r.map.contains_key("huge"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_holds_at_most_its_share_of_upstream_streams() {
        let u = Upstreams::none();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..MAX_STREAMS_PER_CLIENT {
            held.push(u.stream_slot(Some(a)).await.expect("within its share"));
        }
        // Over its share it waits, then is told no.
        let t = tokio::time::Instant::now();
        assert!(u.stream_slot(Some(a)).await.is_none(), "over its share");
        assert_eq!(t.elapsed(), SLOT_WAIT);
        let other = u.stream_slot(Some(b)).await;
        assert!(other.is_some(), "another client is not held up");
        held.pop();
        assert!(
            u.stream_slot(Some(a)).await.is_some(),
            "a slot comes back when dropped"
        );
        drop(held);
        drop(other);
        assert!(u.per_client.lock().unwrap().is_empty());
        assert_eq!(u.streams.available_permits(), MAX_STREAMS);
    }
}
