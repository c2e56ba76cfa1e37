//! Writing safe-path sets (`hypernar set add|remove|list`).
//!
//! A set is a feed of its own, `sets/<name>` derived from its maintainer's
//! key like a publisher's feeds: block 0 a header (role `Set`, the
//! maintainer's identity, the name), then one [`SetEntry`] per change. Its
//! public key is the set's id (`hypernar-set1:…`). The maintainer need not
//! be a publisher, and one set may vouch for paths of several publishers.
//!
//! Works through any [`FeedOpener`]: the data directory itself, or the
//! `hypernar serve` that holds it (through its control socket), so entries
//! reach peers at once.

use ed25519_dalek::SigningKey;
use hypernar_feed::format::generation::is_channel_name;
use hypernar_feed::format::identity::{Identity, PublisherSecret, SetId, SETS_PREFIX};
use hypernar_feed::format::record::{FeedHeader, FeedRole, Record, SetChannelEntry, SetEntry};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::{ensure_header, FeedIo, FeedIoError, FeedOpener};
use hypernar_feed::set::{SetError, SetState};

use crate::error::PublishError;

/// Most entries one `set add` or `set remove` appends.
pub const MAX_ENTRIES_PER_EDIT: usize = 100_000;

/// What to do to a set.
#[derive(Debug, Clone)]
pub enum SetOp {
    /// Vouch for `paths` as `publisher` signed them, and for the newest
    /// generation of each of `channels` as `publisher` commits it.
    Add {
        publisher: Identity,
        paths: Vec<StorePath>,
        channels: Vec<String>,
    },
    /// Withdraw `paths` and `channels`: as `publisher` signed them, or for
    /// every publisher with `None`.
    Remove {
        publisher: Option<Identity>,
        paths: Vec<StorePath>,
        channels: Vec<String>,
    },
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSummary {
    pub id: SetId,
    /// Entries appended.
    pub changed: usize,
    /// Paths asked for that needed no change.
    pub unchanged: usize,
    /// (publisher, path) pairs in the set now.
    pub len: usize,
}

/// Errors of set commands.
#[derive(Debug, thiserror::Error)]
pub enum SetCmdError {
    #[error("set name {0:?} must be 1-64 characters of a-z, 0-9, '-', '_', '.'")]
    Name(String),
    #[error("there is no set named {0:?} in this data directory (`hypernar set add` makes one)")]
    NoSuchSet(String),
    #[error("more than {MAX_ENTRIES_PER_EDIT} paths in one command; split it")]
    TooMany,
    #[error("{0:?} is not a channel name (letters, digits, '.', '_', '-'; at most 64)")]
    Channel(String),
    #[error("block {index} of the set's feed is not a set entry")]
    NotAnEntry { index: u64 },
    #[error(transparent)]
    Full(#[from] SetError),
    #[error(transparent)]
    Feed(#[from] FeedIoError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// `sets/<name>`, after checking the name.
pub fn set_feed_name(name: &str) -> Result<String, SetCmdError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c));
    if !ok {
        return Err(SetCmdError::Name(name.to_owned()));
    }
    Ok(format!("{SETS_PREFIX}{name}"))
}

fn signing_key(secret: &PublisherSecret, name: &str) -> Result<SigningKey, SetCmdError> {
    Ok(secret.feed_signing_key(&set_feed_name(name)?))
}

/// The id of the set `name` of `secret`'s maintainer.
pub fn set_id(secret: &PublisherSecret, name: &str) -> Result<SetId, SetCmdError> {
    Ok(SetId(signing_key(secret, name)?.verifying_key()))
}

/// Replays a set feed's entries (block 0 is its header).
pub async fn read<F: FeedIo>(feed: &mut F) -> Result<SetState, SetCmdError> {
    let mut state = SetState::default();
    for index in 1..feed.length() {
        match feed.read_record(index).await? {
            Record::SetEntry(e) => {
                state.apply(&e)?;
            }
            Record::SetChannel(e) => {
                state.apply_channel(&e)?;
            }
            Record::Unknown(_) => {}
            _ => return Err(SetCmdError::NotAnEntry { index }),
        }
    }
    Ok(state)
}

/// Applies `op` to the set `name` (created on the first add), appending
/// every change in one batch.
pub async fn edit<O: FeedOpener>(
    opener: &O,
    secret: &PublisherSecret,
    name: &str,
    op: SetOp,
) -> Result<SetSummary, SetCmdError> {
    let key = signing_key(secret, name)?;
    let id = SetId(key.verifying_key());
    let asked = match &op {
        SetOp::Add {
            paths, channels, ..
        }
        | SetOp::Remove {
            paths, channels, ..
        } => paths.len() + channels.len(),
    };
    let names = match &op {
        SetOp::Add { channels, .. } | SetOp::Remove { channels, .. } => channels.clone(),
    };
    if let Some(bad) = names.iter().find(|c| !is_channel_name(c)) {
        return Err(SetCmdError::Channel(bad.clone()));
    }
    if asked > MAX_ENTRIES_PER_EDIT {
        return Err(SetCmdError::TooMany);
    }
    if matches!(op, SetOp::Remove { .. }) && !opener.exists(&id.0) {
        return Err(SetCmdError::NoSuchSet(name.to_owned()));
    }
    let mut feed = opener.writable(&key).await?;
    let header = FeedHeader::new(
        FeedRole::Set,
        secret.identity().to_bytes(),
        &set_feed_name(name)?,
    );
    ensure_header(&mut feed, header).await?;
    let mut state = read(&mut feed).await?;
    let channel_entries: Vec<SetChannelEntry> = match &op {
        SetOp::Add { publisher, .. } => names
            .iter()
            .map(|channel| SetChannelEntry {
                publisher: publisher.to_bytes(),
                channel: channel.clone(),
                vouched: true,
            })
            .collect(),
        SetOp::Remove { publisher, .. } => names
            .iter()
            .flat_map(|channel| {
                let pubs: Vec<[u8; 32]> = match publisher {
                    Some(p) => vec![p.to_bytes()],
                    None => state
                        .channels()
                        .into_iter()
                        .filter(|(_, c)| c == channel)
                        .map(|(p, _)| p)
                        .collect(),
                };
                pubs.into_iter().map(move |publisher| SetChannelEntry {
                    publisher,
                    channel: channel.clone(),
                    vouched: false,
                })
            })
            .collect(),
    };
    let entries: Vec<SetEntry> = match op {
        SetOp::Add {
            publisher, paths, ..
        } => paths
            .into_iter()
            .map(|store_path| SetEntry {
                publisher: publisher.to_bytes(),
                store_path,
                vouched: true,
            })
            .collect(),
        SetOp::Remove {
            publisher, paths, ..
        } => paths
            .into_iter()
            .flat_map(|store_path| {
                let pubs: Vec<[u8; 32]> = match publisher {
                    Some(p) => vec![p.to_bytes()],
                    None => state.publishers_of(&store_path).copied().collect(),
                };
                pubs.into_iter().map(move |publisher| SetEntry {
                    publisher,
                    store_path: store_path.clone(),
                    vouched: false,
                })
            })
            .collect(),
    };
    let mut blocks = Vec::new();
    for e in &entries {
        if state.apply(e)? {
            blocks.push(Record::SetEntry(e.clone()).encode());
        }
    }
    for e in &channel_entries {
        if state.apply_channel(e)? {
            blocks.push(Record::SetChannel(e.clone()).encode());
        }
    }
    let changed = blocks.len();
    if !blocks.is_empty() {
        feed.write(blocks).await?;
    }
    Ok(SetSummary {
        id,
        changed,
        unchanged: asked.saturating_sub(changed),
        len: state.len(),
    })
}

/// The set `name` as it stands.
pub async fn list<O: FeedOpener>(
    opener: &O,
    secret: &PublisherSecret,
    name: &str,
) -> Result<(SetId, SetState), SetCmdError> {
    let key = signing_key(secret, name)?;
    let id = SetId(key.verifying_key());
    if !opener.exists(&id.0) {
        return Err(SetCmdError::NoSuchSet(name.to_owned()));
    }
    let mut feed = opener.writable(&key).await?;
    Ok((id, read(&mut feed).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernar_feed::FeedStore;

    fn path(n: u32) -> StorePath {
        StorePath::from_base_name(&format!("{:0>32}-p{n}", n % 10)).unwrap()
    }

    #[tokio::test]
    async fn add_remove_and_list_replay_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = FeedStore::open(dir.path()).unwrap();
        let secret = PublisherSecret::from_bytes([4; 32]);
        let (a, b) = (
            PublisherSecret::from_bytes([5; 32]).identity(),
            PublisherSecret::from_bytes([6; 32]).identity(),
        );
        assert!(matches!(
            list(&store, &secret, "lab").await,
            Err(SetCmdError::NoSuchSet(_))
        ));
        assert!(matches!(
            edit(
                &store,
                &secret,
                "lab",
                SetOp::Remove {
                    publisher: None,
                    paths: vec![path(1)],
                    channels: vec![],
                }
            )
            .await,
            Err(SetCmdError::NoSuchSet(_))
        ));
        let add = |publisher, paths| SetOp::Add {
            publisher,
            paths,
            channels: vec![],
        };
        let s = edit(&store, &secret, "lab", add(a, vec![path(1), path(2)]))
            .await
            .unwrap();
        assert_eq!((s.changed, s.unchanged, s.len), (2, 0, 2));
        assert_eq!(s.id, set_id(&secret, "lab").unwrap());
        let s = edit(&store, &secret, "lab", add(a, vec![path(2), path(3)]))
            .await
            .unwrap();
        assert_eq!((s.changed, s.unchanged, s.len), (1, 1, 3));
        let s = edit(&store, &secret, "lab", add(b, vec![path(2)]))
            .await
            .unwrap();
        assert_eq!(s.len, 4);
        // Removing a path without a publisher withdraws it for all.
        let s = edit(
            &store,
            &secret,
            "lab",
            SetOp::Remove {
                publisher: None,
                paths: vec![path(2)],
                channels: vec![],
            },
        )
        .await
        .unwrap();
        assert_eq!((s.changed, s.len), (2, 2));
        let (id, state) = list(&store, &secret, "lab").await.unwrap();
        assert_eq!(id, s.id);
        assert_eq!(
            state.entries(),
            vec![(a.to_bytes(), path(1)), (a.to_bytes(), path(3))]
        );
        // Another name is another set, with another id.
        assert_ne!(set_id(&secret, "other").unwrap(), id);
        assert!(matches!(
            set_feed_name("Bad Name"),
            Err(SetCmdError::Name(_))
        ));
    }
}
