//! What Nix asks of a binary cache that hypernar's feeds do not carry,
//! passed through from the upstreams: build logs (`log/<drv>`, for `nix
//! log`) and realisations (`realisations/<hash>!<output>.doi`, for
//! content-addressed derivations), as harmonia and cache.nixos.org serve
//! them.
//!
//! Asked of each upstream in order; the first that answers 200 is given to
//! Nix (as text for a log, JSON for a realisation). Nothing is checked (Nix checks a realisation's signatures itself; a
//! log is text for a human), nothing is stored. Bounded: a log up to
//! [`MAX_LOG`] bytes and a realisation up to [`MAX_REALISATION`], held in
//! memory whole, [`MAX_AT_ONCE`] at once; each upstream gets
//! [`TIMEOUT`] for the whole answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use hypernar_swarm::metrics::{Metrics, UPSTREAM};

use super::upstream::Upstreams;

/// Largest build log passed through.
pub const MAX_LOG: usize = 16 << 20;
/// Largest realisation passed through (Nix's are a few hundred bytes).
pub const MAX_REALISATION: usize = 64 << 10;
/// Passed-through answers held at once; more wait.
pub const MAX_AT_ONCE: usize = 4;
/// Time an upstream has to answer one whole.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What is passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `log/…`.
    Log,
    /// `realisations/…`.
    Realisation,
}

impl Kind {
    fn limit(self) -> usize {
        match self {
            Kind::Log => MAX_LOG,
            Kind::Realisation => MAX_REALISATION,
        }
    }
}

/// Why nothing was passed through.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// No upstream has it (or none answered).
    #[error("no upstream has it")]
    NotFound,
    /// An upstream's answer was over the limit.
    #[error("{url} answered more than {limit} bytes")]
    TooLong { url: String, limit: usize },
}

/// The passer-through of one node.
#[derive(Debug, Clone)]
pub struct Passthrough {
    upstreams: Arc<Upstreams>,
    at_once: Arc<Semaphore>,
}

impl Passthrough {
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Passthrough {
            upstreams,
            at_once: Arc::new(Semaphore::new(MAX_AT_ONCE)),
        }
    }

    /// `path` (the request path without its leading `/`, checked by the
    /// router) from the first upstream that has it.
    pub async fn get(&self, kind: Kind, path: &str, metrics: &Metrics) -> Result<Bytes, PassError> {
        let _slot = self
            .at_once
            .acquire()
            .await
            .map_err(|_| PassError::NotFound)?;
        let mut too_long = None;
        for base in self.upstreams.bases() {
            let url = format!("{base}/{path}");
            match tokio::time::timeout(TIMEOUT, self.fetch(&url, kind.limit(), metrics)).await {
                Ok(Ok(Some(p))) => return Ok(p),
                Ok(Err(e)) => too_long = Some(e),
                Ok(Ok(None)) | Err(_) => {}
            }
        }
        Err(too_long.unwrap_or(PassError::NotFound))
    }

    /// One upstream's answer: `None` if it has none (any status but 200,
    /// or it cannot be reached).
    async fn fetch(
        &self,
        url: &str,
        limit: usize,
        metrics: &Metrics,
    ) -> Result<Option<Bytes>, PassError> {
        let Ok(mut resp) = self.upstreams.client().get(url).send().await else {
            return Ok(None);
        };
        if resp.status() != reqwest::StatusCode::OK {
            return Ok(None);
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(PassError::TooLong {
                url: url.to_owned(),
                limit,
            });
        }
        let received = metrics.received.get_or_create(&UPSTREAM).clone();
        let mut body = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) => return Ok(None),
            };
            received.inc_by(chunk.len() as u64);
            if body.len() + chunk.len() > limit {
                return Err(PassError::TooLong {
                    url: url.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body.into()))
    }
}
