//! The binary-cache HTTP API Nix substitutes from (docs/protocol.md, "HTTP
//! API"): `nix-cache-info`, narinfos from the replicated index, NARs
//! streamed from verified blocks, a status page.
//!
//! - [`route`]: what a request asks for (pure, unit-tested).
//! - [`host`]: which `Host:` is answered (the DNS-rebinding guard).
//! - [`idle`]: a client that reads nothing for a while is closed.
//! - [`nar`]: a NAR or a range of it as a body, block by block.
//!
//! The accept loop is ours (hyper's connection builder, not a framework's
//! server) so its limits are explicit: at most [`HttpLimits::max_connections`]
//! connections (more are closed on arrival), request heads of at most
//! [`HttpLimits::max_head_bytes`] read within [`HttpLimits::head_timeout`]
//! (an idle keep-alive connection is closed after it too), and only clients
//! in the allow list.

pub mod answer;
pub mod host;
pub mod idle;
pub mod nar;
pub mod route;
pub mod status;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::node::Node;
use crate::sources::upstream::proxied_narinfo;
use crate::sources::{Sources, Timing};
use answer::{answer, Ask};
use route::{parse_range, ByteRange, RangeAsk, Route};

/// Port of the binary-cache API unless told otherwise (`serve --http`).
pub const DEFAULT_HTTP_PORT: u16 = 7470;

/// Priority in `nix-cache-info`: below cache.nixos.org's 40, so Nix asks
/// hypernar first.
pub const PRIORITY: u32 = 30;

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
    /// Largest request head (request line and headers): hyper answers 431
    /// above it.
    pub max_head_bytes: usize,
    /// Time to read a request head, and the longest a keep-alive
    /// connection may sit idle.
    pub head_timeout: Duration,
    /// Longest wait for one block of a NAR being sent, before the rest
    /// comes from upstream.
    pub block_deadline: Duration,
    /// How long a client may read nothing of a response being written
    /// before its connection is closed ([`idle::IdleWrite`]).
    pub write_idle: Duration,
    /// How long a block may take from peers before web seeds are asked too.
    pub web_seed_after: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            max_head_bytes: 16 << 10,
            head_timeout: Duration::from_secs(30),
            block_deadline: Duration::from_secs(8),
            web_seed_after: Duration::from_secs(1),
            write_idle: Duration::from_secs(60),
        }
    }
}

/// Who may use the API, beyond loopback (always allowed).
#[derive(Debug, Clone, Default)]
pub struct Allow(pub Vec<IpNet>);

impl Allow {
    /// Whether a client at `ip` may use the API.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_loopback() || self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "refusing to serve the binary-cache API on {0}, which is not a loopback address: \
         whoever reaches it can read every path this node can decrypt. \
         Say who may with --http-allow CIDR (e.g. --http-allow 192.168.1.0/24)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the API's listener on `addr`. An address other than loopback
/// needs a non-empty allow list.
pub async fn bind(addr: SocketAddr, allow: &Allow) -> Result<TcpListener, HttpError> {
    if !addr.ip().is_loopback() && allow.0.is_empty() {
        return Err(HttpError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// How the API serves.
#[derive(Debug)]
pub struct HttpConfig {
    pub allow: Allow,
    /// Names answered besides IP literals and `localhost` (`--http-host`).
    pub hosts: host::HostPolicy,
    pub limits: HttpLimits,
}

#[derive(Debug)]
struct Server {
    node: Node,
    /// Paths' bytes, with this API's timing; and the upstreams (fallback
    /// for listed paths, pull-through for the rest).
    sources: Sources,
    limits: HttpLimits,
    hosts: host::HostPolicy,
    /// Whether a refused Host was logged already (once per process).
    host_refusal_logged: std::sync::atomic::AtomicBool,
    disk: status::DiskUsage,
    /// `http://ADDR`, for the status page.
    base: String,
    /// Logs and realisations, from the upstreams.
    passthrough: crate::sources::passthrough::Passthrough,
}

/// Serves the API on `listener` until `shutdown` is cancelled, reading
/// paths through `sources`. Its connections end with it.
pub async fn run(
    sources: Sources,
    listener: TcpListener,
    config: HttpConfig,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let HttpConfig {
        allow,
        hosts,
        limits,
    } = config;
    let node = sources.node().clone();
    let sources = sources.with_timing(Timing {
        patience: limits.web_seed_after,
        deadline: limits.block_deadline,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let base = listener
        .local_addr()
        .map_or_else(|_| "http://127.0.0.1".to_owned(), |a| format!("http://{a}"));
    let passthrough = crate::sources::passthrough::Passthrough::new(sources.upstreams().clone());
    let server = Arc::new(Server {
        node,
        sources,
        limits,
        hosts,
        host_refusal_logged: Default::default(),
        disk: status::DiskUsage::default(),
        base,
        passthrough,
    });
    info!("binary-cache API ready");
    let mut connections = tokio::task::JoinSet::new();
    let mut refused_since_log = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        // Finished connections leave their results behind until collected.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allow.permits(peer.ip()) {
            debug!(%peer, "HTTP client not in --http-allow; closed");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused_since_log += 1;
            if refused_since_log == 1 || refused_since_log.is_multiple_of(1000) {
                warn!(
                    refused = refused_since_log,
                    "HTTP connections at their cap ({}); closing new ones",
                    server.limits.max_connections
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        connections.spawn(async move {
            let _permit = permit;
            let limits = server.limits.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let server = server.clone();
                req.extensions_mut().insert(ClientAddr(peer.ip()));
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .max_buf_size(limits.max_head_bytes.max(8192))
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(idle::IdleWrite::new(stream, limits.write_idle)),
                    service,
                );
            if let Err(e) = conn.await {
                debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}

/// The client's address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
struct ClientAddr(IpAddr);

/// Where a NAR comes from.
enum NarFrom {
    /// A trusted publisher lists it: blocks from peers (upstream behind).
    Swarm(Box<crate::publishers::Found>),
    /// Pulled through from an upstream.
    Upstream(Box<crate::sources::upstream::UpstreamInfo>),
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let mut res = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let head = req.method() == http::Method::HEAD;
        let host = req.headers().get(header::HOST).map(|h| h.as_bytes());
        let target = req.uri().authority().map(|a| a.as_str());
        let mut res = if let Err(why) = self.hosts.check(host, target) {
            self.refuse_host(&why)
        } else {
            self.route(&req, head).await
        };
        if head {
            // Keep the headers, with the Content-Length a GET would have,
            // and drop the body.
            use http_body::Body as _;
            if let Some(len) = res.body().size_hint().exact() {
                res.headers_mut()
                    .entry(header::CONTENT_LENGTH)
                    .or_insert(HeaderValue::from(len));
            }
            let (parts, _) = res.into_parts();
            res = Response::from_parts(
                parts,
                Full::new(Bytes::new())
                    .map_err(|never: Infallible| match never {})
                    .boxed(),
            );
        }
        res
    }

    /// 421 for a Host a web page could have rebound (`host.rs`); said in
    /// the log once, so an operator who named the API by a new name learns
    /// the flag.
    fn refuse_host(&self, why: &host::HostRefused) -> Response<Body> {
        use std::sync::atomic::Ordering;
        if !self.host_refusal_logged.swap(true, Ordering::Relaxed) {
            warn!("HTTP request refused: {why} (the guard against DNS rebinding by web pages); further refusals are logged at debug level");
        } else {
            debug!("HTTP request refused: {why}");
        }
        text(
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not served here (serve --http-host)",
        )
    }

    /// A log or a realisation from the first upstream that has it.
    async fn pass_through(
        &self,
        kind: crate::sources::passthrough::Kind,
        path: &str,
    ) -> Response<Body> {
        use crate::sources::passthrough::{Kind, PassError};
        match self.passthrough.get(kind, path, self.node.metrics()).await {
            Ok(p) => {
                // Text for a log, JSON for a realisation, whatever the
                // upstream called it: nothing else is sent on.
                let ct = match kind {
                    Kind::Log => "text/plain; charset=utf-8",
                    Kind::Realisation => "application/json",
                };
                full(StatusCode::OK, ct, p)
            }
            Err(PassError::NotFound) => text(StatusCode::NOT_FOUND, "not here"),
            Err(e @ PassError::TooLong { .. }) => {
                warn!("passing through {path}: {e}");
                text(StatusCode::BAD_GATEWAY, "the upstream's answer is too long")
            }
        }
    }

    async fn route(&self, req: &Request<Incoming>, head: bool) -> Response<Body> {
        match route::route(req.method(), req.uri().path()) {
            Route::CacheInfo => full(
                StatusCode::OK,
                "text/x-nix-cache-info",
                format!("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: {PRIORITY}\n"),
            ),
            Route::NarInfo(hash) => self.narinfo(&hash).await,
            Route::Nar { hash, nar_hash } => self.nar(req, &hash, &nar_hash, head).await,
            Route::Status => full(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::render(
                    &status::Snapshot::take(&self.sources, self.disk.get(&self.node).await),
                    &self.base,
                ),
            ),
            Route::Metrics => full(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                {
                    self.node.following().refresh();
                    self.node.metrics().encode()
                },
            ),
            Route::Listing(hash) => self.listing(&hash).await,
            Route::Passthrough(kind, path) => self.pass_through(kind, &path).await,
            Route::NotHere | Route::Unknown => text(StatusCode::NOT_FOUND, "not here"),
            Route::Bad(why) => text(StatusCode::BAD_REQUEST, why),
            Route::Method => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            }
        }
    }

    /// From memory: the replicated index and the released keys. A path
    /// listed with its key is always answered here, whatever the peers do.
    /// Anything else goes to the upstreams when pull-through is on, and is
    /// otherwise "not here" at once. Never a 5xx: Nix aborts a build on a
    /// narinfo error.
    async fn narinfo(&self, hash: &str) -> Response<Body> {
        let (answer, res) = self.narinfo_answer(hash).await;
        self.node
            .metrics()
            .narinfo
            .get_or_create(&hypernar_swarm::metrics::AnswerLabel { answer })
            .inc();
        res
    }

    async fn narinfo_answer(&self, hash: &str) -> (&'static str, Response<Body>) {
        let publishers = self.node.publishers();
        let why = match self.sources.path_by_hash(hash).await {
            Some(path) => match publishers.lookup(&path) {
                Ok(found) => {
                    let url = route::nar_url(hash, &found.record.nar_hash);
                    let mut info = found.record.narinfo(url);
                    if found.member {
                        // A member's word for what no signature covers.
                        info.deriver = None;
                        info.ca = None;
                    }
                    return (
                        "hit",
                        full(StatusCode::OK, "text/x-nix-narinfo", info.render()),
                    );
                }
                Err(why) => answer(Ask::NarInfo, &why.into()).1,
            },
            None => "no trusted publisher lists this path".to_owned(),
        };
        if self.sources.upstreams().proxies() {
            if let Some(u) = self.sources.upstreams().narinfo(hash, |_| true).await {
                let url = route::nar_url(hash, &u.info.nar_hash);
                let text = proxied_narinfo(&u.text, &url);
                self.sources.upstreams().remember(hash, u);
                return ("proxied", full(StatusCode::OK, "text/x-nix-narinfo", text));
            }
            return (
                "miss",
                text(
                    StatusCode::NOT_FOUND,
                    &format!("{why}, and no upstream has it"),
                ),
            );
        }
        ("miss", text(StatusCode::NOT_FOUND, &why))
    }

    /// `/<hash>.ls`: the path's NAR listing as Nix writes it
    /// (`write-nar-listing`), from the listing its publisher stored, or a
    /// scan of its NAR. Only for paths of trusted publishers.
    async fn listing(&self, hash: &str) -> Response<Body> {
        let publishers = self.node.publishers();
        let found = match self
            .sources
            .path_by_hash(hash)
            .await
            .map(|p| publishers.lookup(&p))
        {
            Some(Ok(found)) => found,
            Some(Err(why)) => return self.failed(Ask::Listing, &why.into()),
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    "no trusted publisher lists this path",
                )
            }
        };
        match crate::sources::listing::listing(&self.sources, &found).await {
            Ok(listing) => {
                // Written a chunk at a time from the shared listing: a
                // request holds one chunk, not the whole JSON.
                let chunks = hypernar_feed::format::listing::json::NixJson::new(listing)
                    .map(|c| Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(c))));
                let body = http_body_util::StreamBody::new(futures::stream::iter(chunks))
                    .map_err(|never: Infallible| match never {})
                    .boxed();
                let mut res = Response::new(body);
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            Err(e) => {
                warn!(path = %found.record.store_path, "listing: {e}");
                self.failed(Ask::Listing, &e)
            }
        }
    }

    /// The answer to `ask` failing with `e` ([`answer::answer`]).
    fn failed(&self, ask: Ask, e: &crate::sources::PathError) -> Response<Body> {
        let (status, body) = answer(ask, e);
        let mut r = text(status, &body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }

    async fn nar(
        &self,
        req: &Request<Incoming>,
        hash: &str,
        nar_hash: &hypernar_feed::format::narinfo::NarHash,
        head: bool,
    ) -> Response<Body> {
        let publishers = self.node.publishers();
        let listed = self
            .sources
            .path_by_hash(hash)
            .await
            .and_then(|p| publishers.lookup(&p).ok());
        let source = match listed {
            Some(found) if found.record.nar_hash == *nar_hash => NarFrom::Swarm(Box::new(found)),
            Some(_) => return text(StatusCode::NOT_FOUND, "this path's NAR has changed since"),
            None if self.sources.upstreams().proxies() => {
                let u = match self.sources.upstreams().recall(hash) {
                    Some(u) if u.info.nar_hash == *nar_hash => Some(u),
                    _ => {
                        self.sources
                            .upstreams()
                            .narinfo(hash, |i| i.nar_hash == *nar_hash)
                            .await
                    }
                };
                match u {
                    Some(u) => NarFrom::Upstream(Box::new(u)),
                    None => return text(StatusCode::NOT_FOUND, "no upstream has this NAR"),
                }
            }
            None => return text(StatusCode::NOT_FOUND, "no released path with this hash"),
        };
        let len = match &source {
            NarFrom::Swarm(f) => f.record.nar_size,
            NarFrom::Upstream(u) => u.info.nar_size,
        };
        let ask = parse_range(req.headers().get(header::RANGE).map(|v| v.as_bytes()), len);
        let (status, range) = match ask {
            RangeAsk::Whole => (StatusCode::OK, ByteRange { start: 0, end: len }),
            RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
            RangeAsk::Unsatisfiable => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
                );
                return r;
            }
        };
        let body: Body = if head || range.start == range.end {
            Full::new(Bytes::new())
                .map_err(|never: Infallible| match never {})
                .boxed()
        } else {
            let source = match source {
                NarFrom::Swarm(found) => {
                    let member = found.member;
                    match self.sources.open(*found).await {
                        Ok(reader) => Ok(reader),
                        // A group member's NAR that did not come or did
                        // not check: the upstream has it as signed.
                        Err(e) if member && self.sources.upstreams().proxies() => {
                            warn!("NAR from a group member: {e}; asking the upstream");
                            match self
                                .sources
                                .upstreams()
                                .narinfo(hash, |i| i.nar_hash == *nar_hash)
                                .await
                            {
                                Some(u) => Err(u),
                                None => return self.failed(Ask::Nar, &e),
                            }
                        }
                        Err(e) => {
                            warn!("NAR: {e}");
                            return self.failed(Ask::Nar, &e);
                        }
                    }
                }
                NarFrom::Upstream(u) => Err(*u),
            };
            let body = match source {
                Ok(reader) => nar::stream(reader, range, self.sources.upstreams().clone()),
                Err(u) => {
                    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
                    let Some(slot) = self.sources.upstreams().stream_slot(client).await else {
                        let mut r = text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "too many upstream downloads from this client at once",
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return r;
                    };
                    nar::stream_upstream(
                        self.node.metrics(),
                        self.sources.upstreams().clone(),
                        u,
                        range,
                        slot,
                    )
                }
            };
            body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed()
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-nix-nar"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(range.end - range.start),
        );
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {}-{}/{len}", range.start, range.end - 1))
                    .expect("ascii"),
            );
        }
        res
    }
}
