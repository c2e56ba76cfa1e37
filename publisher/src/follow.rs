//! Following a channel (`hypernar follow`): each new release a channel URL
//! redirects to is published, its closure walked through the upstream's
//! narinfo `References`, every narinfo's `Sig:` checked against the
//! trusted keys before anything of it is fetched (`PublishOptions::
//! trusted_keys`), the paths the most others reference first, through the
//! journaled publisher (a run killed at any instant is finished by the
//! next, and nothing is published twice).
//!
//! What a follower has committed is kept per channel in
//! `DATA/channels/<name>.json` ([`ChannelState`]), replaced whole (written
//! beside, synced, renamed): the release last committed, and the one being
//! ingested. A release is committed once its closure is published but for
//! paths the upstream does not have (404: reported, they do not block it);
//! a narinfo no trusted key signed, or any other failure, keeps it from
//! committing, and the next run tries again. A release older than the last
//! committed is refused.
//!
//! What a channel or its redirect can do is bounded by the keys: it can
//! name any store paths, and the follower publishes only what the trusted
//! keys signed (docs/threat-model.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hypernar_feed::format::storepath::StorePath;
use serde::{Deserialize, Serialize};

use crate::channel::{self, Order, Release};

/// Longest `store-paths.xz` read (compressed).
const MAX_STORE_PATHS_XZ: u64 = 256 << 20;
/// Longest `git-revision` read.
const MAX_GIT_REVISION: u64 = 1024;

/// Why following a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {why}")]
    Bad { url: String, why: String },
    #[error("{url}: {source}")]
    StorePaths {
        url: String,
        #[source]
        source: channel::StorePathsError,
    },
    #[error(
        "channel {channel}: {next} is older than {last}, the release last committed: refused \
         (a channel does not go back; a stale mirror or a hostile redirect might)"
    )]
    Older {
        channel: String,
        last: String,
        next: String,
    },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a channel name (letters, digits, '.', '_', '-'; at most 64)")]
    Name(String),
}

/// A channel as the operator names it: `NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub url: String,
}

impl std::str::FromStr for Channel {
    type Err = FollowError;

    /// `NAME=URL`, or a bare URL named after its last path segment.
    fn from_str(text: &str) -> Result<Self, FollowError> {
        let (name, url) = match text.split_once('=') {
            Some((n, u)) if !n.contains('/') => (n.to_owned(), u.to_owned()),
            _ => {
                let name = text.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                (name.to_owned(), text.to_owned())
            }
        };
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !name.starts_with('.');
        if !ok {
            return Err(FollowError::Name(name));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(FollowError::Bad {
                url,
                why: "a channel URL is http:// or https://".into(),
            });
        }
        Ok(Channel { name, url })
    }
}

/// What a follower keeps of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The release last committed.
    pub committed: Option<Generation>,
}

/// A release committed: what it named and what of it was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub release: String,
    pub url: String,
    pub revision_count: Option<u64>,
    pub modified: Option<u64>,
    pub git_revision: Option<String>,
    /// When it was committed (seconds since the epoch).
    pub committed_at: u64,
    /// Paths `store-paths.xz` listed.
    pub roots: u64,
    /// Paths of the closure published (now or before).
    pub closure: u64,
    /// Paths of the closure the upstream does not have.
    pub missing: u64,
}

impl Generation {
    /// The release it was.
    pub fn release(&self) -> Release {
        Release {
            name: self.release.clone(),
            url: self.url.clone(),
            revision_count: self.revision_count,
            modified: self.modified,
        }
    }
}

/// Where `name`'s state is kept in `data_dir`.
pub fn state_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("channels").join(format!("{name}.json"))
}

/// Reads a channel's state: none yet is the empty state. A file that does
/// not parse is an error (it is never replaced by a guess: the operator
/// sees it).
pub fn load_state(data_dir: &Path, name: &str) -> Result<ChannelState, FollowError> {
    let path = state_path(data_dir, name);
    let err = |source| FollowError::State {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() > 1 << 20 => Err(err(std::io::Error::other("over 1 MiB"))),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ChannelState::default()),
        Err(e) => Err(err(e)),
    }
}

/// Replaces a channel's state whole.
pub fn store_state(data_dir: &Path, name: &str, state: &ChannelState) -> Result<(), FollowError> {
    use std::io::Write;
    let path = state_path(data_dir, name);
    let err = |source| FollowError::State {
        path: path.clone(),
        source,
    };
    let dir = path.parent().expect("a state file has a directory");
    hypernar_feed::private::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = hypernar_feed::private::create_temp(&tmp).map_err(err)?;
    let text = serde_json::to_vec_pretty(state).expect("a state serializes");
    f.write_all(&text).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The HTTP side of following: the channel's redirect and the release's
/// files.
#[derive(Debug, Clone)]
pub struct ChannelClient {
    /// Follows no redirect: the channel's is what names the release.
    channel: reqwest::Client,
    /// Follows up to 5 (a release's files may be moved).
    files: reqwest::Client,
}

impl ChannelClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let build = |redirect| {
            reqwest::Client::builder()
                .user_agent(concat!("hypernar/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
                .redirect(redirect)
                .build()
        };
        Ok(ChannelClient {
            channel: build(reqwest::redirect::Policy::none())?,
            files: build(reqwest::redirect::Policy::limited(5))?,
        })
    }

    /// The release `channel` points at now: the target of its redirect
    /// (a channel URL that answers 200 is a release directory itself).
    pub async fn resolve(&self, channel: &Channel) -> Result<Release, FollowError> {
        let url = &channel.url;
        let http = |source: reqwest::Error| FollowError::Http {
            url: url.clone(),
            source: source.without_url(),
        };
        let resp = self.channel.get(url).send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let base = reqwest::Url::parse(url).map_err(|_| FollowError::Bad {
            url: url.clone(),
            why: "not a valid URL".into(),
        })?;
        let target = match status {
            301 | 302 | 303 | 307 | 308 => {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FollowError::Bad {
                        url: url.clone(),
                        why: format!("answered {status} with no Location"),
                    })?;
                base.join(location).map_err(|_| FollowError::Bad {
                    url: url.clone(),
                    why: format!("redirects to {location:?}, not a URL"),
                })?
            }
            200 => base,
            status => {
                return Err(FollowError::Status {
                    url: url.clone(),
                    status,
                })
            }
        };
        if !matches!(target.scheme(), "http" | "https") {
            return Err(FollowError::Bad {
                url: url.clone(),
                why: format!("redirects to {target}, not http(s)"),
            });
        }
        let mut dir = target.to_string();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        let name = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(FollowError::Bad {
                url: url.clone(),
                why: format!("redirects to {dir}, which names no release"),
            });
        }
        Ok(Release {
            revision_count: channel::revision_count(&name),
            name,
            url: dir,
            modified: None,
        })
    }

    /// A file of `release`, at most `limit` bytes, and its Last-Modified
    /// (seconds since the epoch); `None` if the server does not have it.
    async fn file(
        &self,
        release: &Release,
        file: &str,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>, FollowError> {
        let url = format!("{}{file}", release.url);
        let http = |source: reqwest::Error| FollowError::Http {
            url: url.clone(),
            source: source.without_url(),
        };
        let mut resp = self.files.get(&url).send().await.map_err(http)?;
        match resp.status().as_u16() {
            200 => {}
            404 | 410 => return Ok(None),
            status => {
                return Err(FollowError::Status {
                    url: url.clone(),
                    status,
                })
            }
        }
        let modified = resp
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(httpdate);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FollowError::Bad {
                    url,
                    why: format!("over the {limit}-byte limit"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, modified)))
    }

    /// What `release` lists (`store-paths.xz`), its `git-revision` if it
    /// has one, and when its list was last modified.
    pub async fn roots(
        &self,
        release: &mut Release,
    ) -> Result<(Vec<StorePath>, Option<String>), FollowError> {
        let url = format!("{}store-paths.xz", release.url);
        let Some((xz, modified)) = self
            .file(release, "store-paths.xz", MAX_STORE_PATHS_XZ)
            .await?
        else {
            return Err(FollowError::Status { url, status: 404 });
        };
        release.modified = modified;
        let roots = tokio::task::spawn_blocking(move || channel::store_paths(&xz))
            .await
            .expect("store-paths task")
            .map_err(|source| FollowError::StorePaths {
                url: url.clone(),
                source,
            })?;
        let git = self
            .file(release, "git-revision", MAX_GIT_REVISION)
            .await?
            .map(|(b, _)| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok((roots, git))
    }
}

/// What to do with `next` given the channel's state: `Ok(true)` to ingest
/// it, `Ok(false)` if it is the release already committed.
pub fn should_ingest(
    channel: &str,
    state: &ChannelState,
    next: &Release,
) -> Result<bool, FollowError> {
    let Some(last) = &state.committed else {
        return Ok(true);
    };
    match channel::order(&last.release(), next) {
        Order::Same => Ok(false),
        Order::Newer | Order::Unordered => Ok(true),
        Order::Older => Err(FollowError::Older {
            channel: channel.to_owned(),
            last: last.release.clone(),
            next: next.name.clone(),
        }),
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, as servers send
/// Last-Modified) as seconds since the epoch.
fn httpdate(text: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_named_by_hand_or_by_their_url() {
        let c: Channel = "unstable=https://channels.nixos.org/nixos-unstable"
            .parse()
            .unwrap();
        assert_eq!(c.name, "unstable");
        let c: Channel = "https://channels.nixos.org/nixos-24.05/".parse().unwrap();
        assert_eq!(c.name, "nixos-24.05");
        assert_eq!(c.url, "https://channels.nixos.org/nixos-24.05/");
        for bad in [
            "",
            "x=ftp://a/b",
            "../x=http://a",
            "a b=http://a",
            ".x=http://a",
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_dates_are_read_as_servers_write_them() {
        assert_eq!(httpdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(httpdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(
            httpdate("Fri, 04 Dec 2026 01:00:00 GMT"),
            Some(1_796_346_000)
        );
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(httpdate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_release_is_ingested_unless_committed_and_refused_if_older() {
        let generation = |name: &str| Generation {
            release: name.into(),
            url: format!("http://x/{name}/"),
            revision_count: channel::revision_count(name),
            modified: None,
            git_revision: None,
            committed_at: 0,
            roots: 1,
            closure: 1,
            missing: 0,
        };
        let release = |name: &str| generation(name).release();
        let empty = ChannelState::default();
        assert!(should_ingest("c", &empty, &release("nixos-t.100.aaaaaaa")).unwrap());
        let state = ChannelState {
            committed: Some(generation("nixos-t.100.aaaaaaa")),
        };
        assert!(!should_ingest("c", &state, &release("nixos-t.100.aaaaaaa")).unwrap());
        assert!(should_ingest("c", &state, &release("nixos-t.101.bbbbbbb")).unwrap());
        let err = should_ingest("c", &state, &release("nixos-t.99.ccccccc")).unwrap_err();
        assert!(
            err.to_string().contains("older than nixos-t.100.aaaaaaa"),
            "{err}"
        );
    }

    #[test]
    fn a_channel_state_is_replaced_whole_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_state(dir.path(), "c").unwrap(),
            ChannelState::default()
        );
        let state = ChannelState {
            committed: Some(Generation {
                release: "r.1.abcdef0".into(),
                url: "http://x/r.1.abcdef0/".into(),
                revision_count: Some(1),
                modified: Some(5),
                git_revision: Some("abc".into()),
                committed_at: 9,
                roots: 2,
                closure: 3,
                missing: 1,
            }),
        };
        store_state(dir.path(), "c", &state).unwrap();
        assert_eq!(load_state(dir.path(), "c").unwrap(), state);
        std::fs::write(state_path(dir.path(), "c"), b"{").unwrap();
        assert!(load_state(dir.path(), "c").is_err());
    }
}
