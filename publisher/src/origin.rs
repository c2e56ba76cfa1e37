//! Reading an upstream Nix binary cache: `file:///dir` or `http(s)://host/…`.
//!
//! Everything read here is untrusted: sizes are bounded before allocation,
//! the decompressed NAR is cut off one byte past its declared NarSize, and
//! the caller checks NarHash before anything is stored.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hypernar_feed::format::narinfo::{NarInfo, NarInfoError, MAX_NARINFO_LEN};
use hypernar_feed::format::storepath::{is_hash_part, STORE_DIR};

/// Errors reading a binary cache.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}: not found in the cache")]
    NotFound(String),
    #[error("not a binary cache: {0} does not exist")]
    NotACache(String),
    #[error("{url}: response is over the {limit}-byte limit")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {source}")]
    NarInfo {
        url: String,
        #[source]
        source: NarInfoError,
    },
    #[error("cache serves store dir {0:?}; hypernar publishes only {STORE_DIR}")]
    StoreDir(String),
    #[error("unsupported cache URL {0:?} (use file:///dir, http:// or https://)")]
    Url(String),
    #[error("--all needs a file:// cache: an HTTP cache or the local store is not listed")]
    NotListable,
    #[error("the local Nix store: {0}")]
    Local(String),
}

/// A binary cache to publish from. Its methods block: call them from a
/// blocking thread (`spawn_blocking`) of a tokio runtime, as the publisher
/// does; HTTP requests run on that runtime.
#[derive(Debug)]
pub enum Origin {
    File(PathBuf),
    Http {
        base: String,
        client: reqwest::Client,
        /// Requests and bytes per second towards it ([`Origin::with_limits`]).
        limits: crate::limit::Limits,
    },
    /// The local Nix store (`--from local`, `crate::local`), each narinfo
    /// signed by `sign` too if given.
    Local {
        sign: Option<hypernar_feed::format::nixkey::NixSecretKey>,
    },
}

impl Origin {
    /// Parses `file:///dir`, a plain directory path, or an `http(s)://` URL.
    pub fn new(url: &str) -> Result<Self, OriginError> {
        if url == "local" || url == "/nix/store" {
            return Ok(Origin::Local { sign: None });
        }
        if let Some(path) = url.strip_prefix("file://") {
            let path = path.split('?').next().unwrap_or(path);
            return Ok(Origin::File(PathBuf::from(path)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            let client = reqwest::Client::builder()
                .user_agent(concat!("hypernar/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
                .redirect(same_origin_redirects())
                .build()
                .map_err(|source| OriginError::Http {
                    url: url.to_owned(),
                    source,
                })?;
            return Ok(Origin::Http {
                base: url.trim_end_matches('/').to_owned(),
                client,
                limits: crate::limit::Limits::default(),
            });
        }
        if url.starts_with('/') {
            return Ok(Origin::File(PathBuf::from(url)));
        }
        Err(OriginError::Url(url.to_owned()))
    }

    /// The same source, asked at most as `limits` allow (an HTTP source;
    /// a file is read as fast as it can be).
    pub fn with_limits(self, limits: crate::limit::Limits) -> Self {
        match self {
            Origin::Http { base, client, .. } => Origin::Http {
                base,
                client,
                limits,
            },
            file => file,
        }
    }

    /// The local store with every narinfo signed by `key` too (an error
    /// for another source: only a local path can be signed here).
    pub fn signed_by(
        self,
        key: hypernar_feed::format::nixkey::NixSecretKey,
    ) -> Result<Self, OriginError> {
        match self {
            Origin::Local { .. } => Ok(Origin::Local { sign: Some(key) }),
            other => Err(OriginError::Local(format!(
                "--sign-key signs paths of the local store only, not of {}",
                other.describe()
            ))),
        }
    }

    /// Where the source is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::File(p) => format!("file://{}", p.display()),
            Origin::Http { base, .. } => base.clone(),
            Origin::Local { .. } => "the local Nix store".to_owned(),
        }
    }

    fn open(&self, rel: &str) -> Result<Box<dyn Read + Send>, OriginError> {
        match self {
            Origin::Local { .. } => match rel.strip_prefix("local/") {
                Some(base) => Ok(Box::new(BufReader::with_capacity(
                    1 << 20,
                    crate::local::dump(base)?,
                ))),
                None => Err(OriginError::NotFound(format!("local:{rel}"))),
            },
            Origin::File(dir) => {
                let path = dir.join(rel);
                match File::open(&path) {
                    Ok(f) => Ok(Box::new(BufReader::with_capacity(1 << 20, f))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Err(OriginError::NotFound(path.display().to_string()))
                    }
                    Err(source) => Err(OriginError::File { path, source }),
                }
            }
            Origin::Http {
                base,
                client,
                limits,
            } => {
                let url = format!("{base}/{rel}");
                let handle = tokio::runtime::Handle::current();
                let mut wait = RETRY_FIRST;
                let mut tries = 0;
                loop {
                    tries += 1;
                    limits.request();
                    let sent = handle.block_on(client.get(&url).send());
                    // Busy, failing or slow: asked again later, up to
                    // RETRY_TRIES times; its Retry-After is obeyed (capped).
                    // A source that refuses connections is asked fewer
                    // times: it is more likely gone than busy.
                    let (again, most) = match &sent {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let busy = status == 429 || (500..600).contains(&status);
                            (
                                busy.then(|| (format!("answered {status}"), retry_after(resp))),
                                RETRY_TRIES,
                            )
                        }
                        // A connection not made (refused, or timed out
                        // connecting) first: it is both.
                        Err(e) if e.is_connect() => {
                            (Some((format!("{e}"), None)), RETRY_CONNECT_TRIES)
                        }
                        Err(e) if e.is_timeout() => (Some((format!("{e}"), None)), RETRY_TRIES),
                        Err(_) => (None, 1),
                    };
                    if let (Some((why, after)), true) = (&again, tries < most) {
                        // Never sooner than the backoff (a Retry-After of
                        // 0 would make the tries back to back).
                        let pause = after.map_or(wait, |a| a.max(wait)).min(RETRY_MAX);
                        tracing::info!(%url, "the source {why}; asking again in {pause:?}");
                        std::thread::sleep(pause);
                        wait = (wait * 2).min(RETRY_MAX);
                        continue;
                    }
                    let resp = sent.map_err(|source| OriginError::Http {
                        url: url.clone(),
                        source: source.without_url(),
                    })?;
                    return match resp.status().as_u16() {
                        // The body as a blocking reader (this runs on a
                        // blocking thread); a transfer error names the URL.
                        200 => {
                            use futures::TryStreamExt;
                            let body = resp
                                .bytes_stream()
                                .map_err(move |e| io::Error::other(format!("{url}: {e}")));
                            let reader = tokio_util::io::StreamReader::new(body);
                            Ok(limits.reader(Box::new(
                                tokio_util::io::SyncIoBridge::new_with_handle(reader, handle),
                            )))
                        }
                        404 | 410 => Err(OriginError::NotFound(url)),
                        status => Err(OriginError::Status { url, status }),
                    };
                }
            }
        }
    }

    fn read_small(&self, rel: &str, limit: usize) -> Result<Vec<u8>, OriginError> {
        let mut buf = Vec::new();
        let url = format!("{}/{rel}", self.describe());
        self.open(rel)?
            .take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|source| OriginError::File {
                path: PathBuf::from(&url),
                source,
            })?;
        if buf.len() > limit {
            return Err(OriginError::TooLarge { url, limit });
        }
        Ok(buf)
    }

    /// Checks the source is a binary cache (it has `nix-cache-info`, as
    /// Nix itself requires) for `/nix/store`.
    pub fn check_cache_info(&self) -> Result<(), OriginError> {
        if let Origin::Local { .. } = self {
            let ok = std::process::Command::new("nix-store")
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            return if ok {
                Ok(())
            } else {
                Err(OriginError::Local(
                    "nix-store does not run here (is Nix installed and on PATH?)".into(),
                ))
            };
        }
        let text = match self.read_small("nix-cache-info", 64 << 10) {
            Ok(t) => t,
            Err(OriginError::NotFound(url)) => return Err(OriginError::NotACache(url)),
            Err(e) => return Err(e),
        };
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some(dir) = line.strip_prefix("StoreDir:") {
                let dir = dir.trim();
                if dir != STORE_DIR {
                    return Err(OriginError::StoreDir(dir.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// Fetches and parses `<hash>.narinfo`.
    pub fn narinfo(&self, hash_part: &str) -> Result<NarInfo, OriginError> {
        if let Origin::Local { sign } = self {
            let path = crate::local::find(hash_part)?
                .ok_or_else(|| OriginError::NotFound(format!("{STORE_DIR}/{hash_part}-…")))?;
            return crate::local::narinfo(&path, sign.as_ref());
        }
        let rel = format!("{hash_part}.narinfo");
        let bytes = self.read_small(&rel, MAX_NARINFO_LEN)?;
        NarInfo::parse(&bytes).map_err(|source| OriginError::NarInfo {
            url: format!("{}/{rel}", self.describe()),
            source,
        })
    }

    /// Opens the NAR file a narinfo points at, still compressed.
    pub fn nar_file(&self, info: &NarInfo) -> Result<Box<dyn Read + Send>, OriginError> {
        self.open(&info.url)
    }

    /// Hash parts of every narinfo in a `file://` cache.
    pub fn list(&self) -> Result<Vec<String>, OriginError> {
        let Origin::File(dir) = self else {
            return Err(OriginError::NotListable);
        };
        let io = |source| OriginError::File {
            path: dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".narinfo")) {
                if is_hash_part(hash) {
                    out.push(hash.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory of a file cache.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Origin::File(d) => Some(d),
            Origin::Http { .. } | Origin::Local { .. } => None,
        }
    }
}

/// Tries of one request to an HTTP source that answers 429 or 5xx, or
/// times out or cannot be reached, before its error is the answer.
pub const RETRY_TRIES: u32 = 8;
/// Tries of a request whose connection is refused or cannot be made.
pub const RETRY_CONNECT_TRIES: u32 = 3;
/// The first wait before asking again; it doubles each time.
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait (a Retry-After above it is cut to it).
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A response's `Retry-After`, in seconds (a date is not read).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Redirects within the cache's own scheme, host and port, at most 5 (as
/// the fetcher's upstreams): a cache may move its files, not send the
/// publisher's requests elsewhere.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if same {
            attempt.follow()
        } else {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
                "a redirect to another origin ({to}) is not followed"
            ))
        }
    })
}
