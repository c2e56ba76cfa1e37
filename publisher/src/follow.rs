//! Following a channel (`hypernar follow`): each new release a channel URL
//! redirects to is published, its closure walked through the upstream's
//! narinfo `References`, every narinfo's `Sig:` checked against the
//! trusted keys before anything of it is fetched (`PublishOptions::
//! trusted_keys`), the paths the most others reference first, through the
//! journaled publisher (a run killed at any instant is finished by the
//! next, and nothing is published twice).
//!
//! What a follower has committed is a **generation** per channel, in its
//! `generations` feed (`generations.rs`): peers read it, and so does the
//! follower, to know which release it committed last. A release is
//! committed once its closure is published but for
//! paths the upstream does not have (404: reported, they do not block it);
//! a narinfo no trusted key signed, or any other failure, keeps it from
//! committing, and the next run tries again. A release older than the last
//! committed is refused.
//!
//! What a channel or its redirect can do is bounded by the keys: it can
//! name any store paths, and the follower publishes only what the trusted
//! keys signed (docs/threat-model.md).

use std::time::Duration;

use hypernar_feed::format::generation::{is_channel_name, Generation};
use hypernar_feed::format::storepath::StorePath;

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
        if !is_channel_name(&name) {
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

/// The release a committed generation was.
pub fn release_of(g: &Generation) -> Release {
    Release {
        name: g.release.clone(),
        url: g.url.clone(),
        revision_count: g.revision_count,
        modified: g.modified,
    }
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

/// What to do with `next` given the channel's last committed generation:
/// `Ok(true)` to ingest it, `Ok(false)` if it is the release committed.
pub fn should_ingest(
    channel: &str,
    last: Option<&Generation>,
    next: &Release,
) -> Result<bool, FollowError> {
    let Some(last) = last else {
        return Ok(true);
    };
    match channel::order(&release_of(last), next) {
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
            channel: "c".into(),
            release: name.into(),
            url: format!("http://x/{name}/"),
            revision_count: channel::revision_count(name),
            modified: None,
            git_revision: None,
            committed_at: 0,
            roots: 1,
            closure: 0,
            missing: 0,
            table: hypernar_feed::format::run::RunRef {
                first_block: 1,
                bits: 0,
                entries: 0,
                from: 0,
                to: 0,
            },
        };
        let release = |name: &str| release_of(&generation(name));
        assert!(should_ingest("c", None, &release("nixos-t.100.aaaaaaa")).unwrap());
        let last = generation("nixos-t.100.aaaaaaa");
        assert!(!should_ingest("c", Some(&last), &release("nixos-t.100.aaaaaaa")).unwrap());
        assert!(should_ingest("c", Some(&last), &release("nixos-t.101.bbbbbbb")).unwrap());
        let err = should_ingest("c", Some(&last), &release("nixos-t.99.ccccccc")).unwrap_err();
        assert!(
            err.to_string().contains("older than nixos-t.100.aaaaaaa"),
            "{err}"
        );
    }
}
