//! Publisher errors.

use std::path::PathBuf;

use hypernar_feed::error::StoreError;
use hypernar_feed::format::storepath::StorePath;

use crate::origin::OriginError;

/// Errors that stop a publisher run. Problems with single paths do not stop
/// a run; they are collected in the summary.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Feed(#[from] hypernar_feed::io::FeedIoError),
    #[error("cannot read the binary cache {url}: {source}")]
    Cache {
        url: String,
        #[source]
        source: OriginError,
    },
    #[error("data directory is inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "the key of {0} does not unwrap with this publisher key: is it the key that published it?"
    )]
    Unwrap(StorePath),
    #[error("{0} has not been published")]
    NotPublished(String),
    #[error("audience name {0:?} must be 1-64 characters of a-z, 0-9, '-', '_', '.'")]
    Audience(String),
    #[error("--web-seed-url: {0}")]
    WebSeedUrl(String),
}
