//! What a node knows of the channels it follows (`serve --set P/CHANNEL`,
//! `--pin P/CHANNEL`): each publisher's generations feed, the newest
//! `Generations` record read from it (docs/protocol.md, "Generations"),
//! and what the newest generation of each followed channel covers — the
//! paths of its table, which is a closure already.
//!
//! A followed channel works as a followed set does: with `--require-set`
//! only what it covers is served, and a pinned one's paths are fetched
//! ahead and kept (`node/pin.rs` walks both). When a newer generation is
//! committed, the paths only the older one had are no longer pinned:
//! their blocks stay, evictable like any others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hypernar_feed::format::generation::{is_channel_name, Generation, Generations};
use hypernar_feed::format::identity::{FeedKey, Identity};
use hypernar_feed::format::storepath::StorePath;
use tokio::sync::watch;

/// A channel as a publisher's follower commits it: `hypernar1:…/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub publisher: Identity,
    pub name: String,
}

impl std::fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.publisher, self.name)
    }
}

impl std::str::FromStr for ChannelRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((id, name)) = text.rsplit_once('/') else {
            return Err(format!(
                "{text:?}: a channel is PUBLISHER/NAME (hypernar1:…/nixos-unstable)"
            ));
        };
        let publisher: Identity = id.parse().map_err(|e| format!("{id:?}: {e}"))?;
        if !is_channel_name(name) {
            return Err(format!(
                "{name:?} is not a channel name (letters, digits, '.', '_', '-'; at most 64)"
            ));
        }
        Ok(ChannelRef {
            publisher,
            name: name.to_owned(),
        })
    }
}

/// What `serve --set` and `--pin` name: a safe-path set, or a publisher's
/// channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followable {
    Set(hypernar_feed::format::identity::SetId),
    Channel(ChannelRef),
}

impl std::fmt::Display for Followable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Followable::Set(s) => write!(f, "set {s}"),
            Followable::Channel(c) => write!(f, "channel {c}"),
        }
    }
}

impl std::str::FromStr for Followable {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.contains('/') {
            return text.parse().map(Followable::Channel);
        }
        text.parse().map(Followable::Set).map_err(|e| {
            format!("{text:?}: {e} (give a set, hypernar-set1:…, or a channel, hypernar1:…/NAME)")
        })
    }
}

/// One followed channel, for the status page and `hypernar status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: ChannelRef,
    /// `None`: followed only because a set vouches for it.
    pub pinned: Option<bool>,
    /// Its newest generation, once read.
    pub generation: Option<Generation>,
    /// Paths of it the node knows (as of the last walk).
    pub covered: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Channels followed by name (`--set`, `--pin`): pinned or not.
    followed: HashMap<ChannelRef, bool>,
    /// Channels followed because a followed set vouches for them.
    by_sets: HashSet<ChannelRef>,
    /// Each publisher's generations feed, as its index declares it.
    feeds: HashMap<Identity, FeedKey>,
    /// The last `Generations` record read of each, and its block.
    newest: HashMap<Identity, (u64, Arc<Generations>)>,
    /// What each channel's generation covered when last walked: the
    /// generation (its release and table, `release@first_block`) and its
    /// paths.
    covered: HashMap<ChannelRef, (String, Arc<HashSet<StorePath>>)>,
}

/// The channels a node follows.
#[derive(Debug)]
pub struct Channels {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl Channels {
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Follows `channel` (pinned wins if given both ways); true if it was
    /// not followed yet.
    pub(crate) fn add(&self, channel: ChannelRef, pinned: bool) -> bool {
        let mut inner = self.inner.lock().expect("channels lock");
        let before = inner.followed.get(&channel).copied();
        let now = before.unwrap_or(false) | pinned;
        inner.followed.insert(channel, now);
        drop(inner);
        if before != Some(now) {
            self.bump();
        }
        before.is_none()
    }

    /// The channels the followed sets vouch for now (replacing those of
    /// the last call).
    pub(crate) fn set_by_sets(&self, channels: HashSet<ChannelRef>) {
        let mut inner = self.inner.lock().expect("channels lock");
        if inner.by_sets == channels {
            return;
        }
        inner.by_sets = channels;
        drop(inner);
        self.bump();
    }

    /// Whether any channel is followed by name.
    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .expect("channels lock")
            .followed
            .is_empty()
    }

    /// A publisher's index declared its generations feed.
    pub(crate) fn set_feed(&self, publisher: Identity, feed: FeedKey) {
        let mut inner = self.inner.lock().expect("channels lock");
        if inner.feeds.insert(publisher, feed) != Some(feed) {
            drop(inner);
            self.bump();
        }
    }

    /// The generations feeds to read: those of publishers a followed
    /// channel is of, with the block their last record was read at.
    pub fn feeds_to_read(&self) -> Vec<(Identity, FeedKey, Option<u64>)> {
        let inner = self.inner.lock().expect("channels lock");
        let mut out: Vec<_> = inner
            .feeds
            .iter()
            .filter(|(id, _)| {
                inner
                    .followed
                    .keys()
                    .chain(&inner.by_sets)
                    .any(|c| c.publisher == **id)
            })
            .map(|(id, feed)| (*id, *feed, inner.newest.get(id).map(|(at, _)| *at)))
            .collect();
        out.sort_by_key(|(id, _, _)| id.to_bytes());
        out
    }

    /// A publisher's generations feed ends, at block `at`, with `record`
    /// (checked against `at` by the caller). An older block than the one
    /// known is not taken: a feed does not shrink.
    pub fn set_newest(&self, publisher: Identity, at: u64, record: Generations) {
        let mut inner = self.inner.lock().expect("channels lock");
        if inner
            .newest
            .get(&publisher)
            .is_some_and(|(old, _)| *old >= at)
        {
            return;
        }
        inner.newest.insert(publisher, (at, Arc::new(record)));
        drop(inner);
        self.bump();
    }

    /// Every followed channel: whether it is pinned (`None`: followed only
    /// because a set vouches for it), and its newest generation if it is
    /// known.
    pub fn followed(&self) -> Vec<(ChannelRef, Option<bool>, Option<Generation>)> {
        let inner = self.inner.lock().expect("channels lock");
        let by_name = inner.followed.iter().map(|(c, p)| (c, Some(*p)));
        let by_sets = inner
            .by_sets
            .iter()
            .filter(|c| !inner.followed.contains_key(*c))
            .map(|c| (c, None));
        let mut out: Vec<_> = by_name
            .chain(by_sets)
            .map(|(c, pinned)| {
                let g = inner
                    .newest
                    .get(&c.publisher)
                    .and_then(|(_, r)| r.get(&c.name).cloned());
                (c.clone(), pinned, g)
            })
            .collect();
        out.sort_by_key(|(c, _, _)| c.to_string());
        out
    }

    /// What `channel` covered at its last walk, if it was walked at
    /// `release`.
    pub fn covered_at(
        &self,
        channel: &ChannelRef,
        release: &str,
    ) -> Option<Arc<HashSet<StorePath>>> {
        let inner = self.inner.lock().expect("channels lock");
        match inner.covered.get(channel) {
            Some((r, c)) if r == release => Some(c.clone()),
            _ => None,
        }
    }

    /// What `channel` covered at its last walk, at whatever release.
    pub fn covered_any(&self, channel: &ChannelRef) -> Option<Arc<HashSet<StorePath>>> {
        let inner = self.inner.lock().expect("channels lock");
        inner.covered.get(channel).map(|(_, c)| c.clone())
    }

    /// Forgets what channels not in `keep` covered (no longer followed).
    pub(crate) fn forget_covered_but<'a>(&self, keep: impl Iterator<Item = &'a ChannelRef>) {
        let keep: HashSet<&ChannelRef> = keep.collect();
        let mut inner = self.inner.lock().expect("channels lock");
        inner.covered.retain(|c, _| keep.contains(c));
    }

    /// Records what `channel` covers at `release`.
    pub(crate) fn set_covered(
        &self,
        channel: &ChannelRef,
        release: String,
        covered: Arc<HashSet<StorePath>>,
    ) {
        let mut inner = self.inner.lock().expect("channels lock");
        inner.covered.insert(channel.clone(), (release, covered));
    }

    /// Waits for the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every followed channel.
    pub fn summary(&self) -> Vec<ChannelSummary> {
        let covered: HashMap<ChannelRef, usize> = {
            let inner = self.inner.lock().expect("channels lock");
            inner
                .covered
                .iter()
                .map(|(c, (_, p))| (c.clone(), p.len()))
                .collect()
        };
        self.followed()
            .into_iter()
            .map(|(channel, pinned, generation)| ChannelSummary {
                covered: covered.get(&channel).copied().unwrap_or(0),
                channel,
                pinned,
                generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernar_feed::format::run::RunRef;

    fn id(n: u8) -> Identity {
        Identity(ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key())
    }

    fn generation(channel: &str, release: &str) -> Generation {
        Generation {
            channel: channel.into(),
            release: release.into(),
            url: String::new(),
            revision_count: None,
            modified: None,
            git_revision: None,
            committed_at: 0,
            roots: 1,
            closure: 0,
            missing: 0,
            table: RunRef {
                first_block: 1,
                bits: 0,
                entries: 0,
                from: 0,
                to: 0,
            },
        }
    }

    #[test]
    fn channels_are_named_publisher_slash_name() {
        let text = format!("{}/nixos-unstable", id(1));
        let c: ChannelRef = text.parse().unwrap();
        assert_eq!(c.publisher, id(1));
        assert_eq!(c.name, "nixos-unstable");
        assert_eq!(c.to_string(), text);
        for bad in [
            "nixos-unstable".to_owned(),
            format!("{}/", id(1)),
            format!("{}/.x", id(1)),
            format!("{}/a b", id(1)),
            "hypernar1:nope/x".to_owned(),
        ] {
            assert!(bad.parse::<ChannelRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_newest_record_of_a_followed_publisher_names_each_channels_generation() {
        let ch = Channels::default();
        let c = ChannelRef {
            publisher: id(1),
            name: "c".into(),
        };
        assert!(ch.add(c.clone(), false));
        assert!(!ch.add(c.clone(), true));
        // Feeds of publishers no channel is of are not read.
        ch.set_feed(id(1), FeedKey::from(id(1).0));
        ch.set_feed(id(2), FeedKey::from(id(2).0));
        assert_eq!(
            ch.feeds_to_read(),
            vec![(id(1), FeedKey::from(id(1).0), None)]
        );
        assert_eq!(ch.followed(), vec![(c.clone(), Some(true), None)]);
        // One a set vouches for is followed too, and so is its feed read.
        let d = ChannelRef {
            publisher: id(2),
            name: "d".into(),
        };
        ch.set_by_sets([d.clone()].into_iter().collect());
        assert_eq!(ch.followed().len(), 2);
        assert!(ch.followed().contains(&(d.clone(), None, None)));
        assert_eq!(ch.feeds_to_read().len(), 2);
        ch.set_by_sets(HashSet::new());
        let mut rx = ch.subscribe();
        rx.mark_unchanged();
        let r1 = Generations::default().with(generation("c", "r.1.aaaaaaa"));
        ch.set_newest(id(1), 5, r1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(ch.followed()[0].2.as_ref().unwrap().release, "r.1.aaaaaaa");
        // An older block is not taken.
        let r0 = Generations::default().with(generation("c", "r.0.aaaaaaa"));
        ch.set_newest(id(1), 4, r0);
        assert_eq!(ch.followed()[0].2.as_ref().unwrap().release, "r.1.aaaaaaa");
        assert_eq!(ch.feeds_to_read()[0].2, Some(5));
        // Coverage is kept per release.
        ch.set_covered(&c, "r.1.aaaaaaa".into(), Arc::default());
        assert!(ch.covered_at(&c, "r.1.aaaaaaa").is_some());
        assert!(ch.covered_at(&c, "r.2.bbbbbbb").is_none());
    }
}
