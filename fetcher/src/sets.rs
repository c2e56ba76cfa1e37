//! What a node knows of the safe-path sets it follows (`serve --set`,
//! `--pin`), as their feeds replicate, and what follows from them:
//!
//! - the paths the sets *cover*: every (publisher, path) pair a set vouches
//!   for whose publisher is trusted and lists the path, and the closure of
//!   those paths through their references (a path is of no use without its
//!   closure); with `--require-set` only covered paths are served;
//! - the paths *pinned*: those covered by a `--pin`ned set, fetched ahead
//!   and kept (never evicted).
//!
//! The walk is [`cover`], over two lookups it is given; the node runs it
//! (`node/pin.rs`) with lookups that ask the catalog and, for a publisher
//! whose index is in runs, its runs (a set of 10^5 paths is checked path by
//! path, never by loading the publisher), whenever a set or a publisher's
//! index changes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use hypernar_feed::format::identity::SetId;
use hypernar_feed::format::record::SetEntry;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::set::{SetError, SetState};
use tokio::sync::watch;

/// A (publisher identity, store path) pair a set vouches for.
pub type Vouched = ([u8; 32], StorePath);

#[derive(Debug)]
struct Followed {
    state: SetState,
    pinned: bool,
}

/// The most paths one set covers: the walk stops there (a set, or an
/// index, that names more is not followed further).
pub const COVER_LIMIT: usize = 1 << 20;

/// Lookups a walk makes at once.
const CONCURRENCY: usize = 32;

/// The sets a node follows.
#[derive(Debug)]
pub struct Sets {
    by_id: Mutex<HashMap<[u8; 32], Followed>>,
    /// What each set covered when the node last walked it.
    covered: Mutex<HashMap<[u8; 32], Arc<HashSet<StorePath>>>>,
    changed: watch::Sender<u64>,
}

impl Default for Sets {
    fn default() -> Self {
        Sets {
            by_id: Mutex::new(HashMap::new()),
            covered: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

/// One followed set, for the status page and `hypernar status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSummary {
    pub id: SetId,
    pub pinned: bool,
    /// (publisher, path) pairs it vouches for.
    pub entries: usize,
}

impl Sets {
    /// Follows `id` (pinned or not; pinned wins if given both ways);
    /// true if it was not followed yet (its feed needs a follower).
    pub(crate) fn add(&self, id: SetId, pinned: bool) -> bool {
        let mut by_id = self.by_id.lock().expect("sets lock");
        let new = !by_id.contains_key(&id.to_bytes());
        let f = by_id.entry(id.to_bytes()).or_insert_with(|| Followed {
            state: SetState::default(),
            pinned,
        });
        f.pinned |= pinned;
        drop(by_id);
        self.changed.send_modify(|n| *n += 1);
        new
    }

    /// Applies the set's next entry.
    pub(crate) fn apply(&self, id: &SetId, entry: &SetEntry) -> Result<(), SetError> {
        let mut by_id = self.by_id.lock().expect("sets lock");
        let Some(f) = by_id.get_mut(&id.to_bytes()) else {
            return Ok(());
        };
        let changed = f.state.apply(entry)?;
        drop(by_id);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Applies the set's next channel entry.
    pub(crate) fn apply_channel(
        &self,
        id: &SetId,
        entry: &hypernar_feed::format::record::SetChannelEntry,
    ) -> Result<(), SetError> {
        let mut by_id = self.by_id.lock().expect("sets lock");
        let Some(f) = by_id.get_mut(&id.to_bytes()) else {
            return Ok(());
        };
        let changed = f.state.apply_channel(entry)?;
        drop(by_id);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// The (publisher, channel) pairs one followed set vouches for.
    pub fn channels_of(&self, id: &SetId) -> Vec<([u8; 32], String)> {
        let by_id = self.by_id.lock().expect("sets lock");
        by_id
            .get(&id.to_bytes())
            .map(|f| f.state.channels())
            .unwrap_or_default()
    }

    /// Waits for the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether any set is followed.
    pub fn is_empty(&self) -> bool {
        self.by_id.lock().expect("sets lock").is_empty()
    }

    /// The (publisher, path) pairs of every followed set, and of the pinned
    /// ones.
    pub fn vouched(&self) -> (Vec<Vouched>, Vec<Vouched>) {
        let by_id = self.by_id.lock().expect("sets lock");
        let (mut all, mut pinned) = (Vec::new(), Vec::new());
        for f in by_id.values() {
            let entries = f.state.entries();
            if f.pinned {
                pinned.extend(entries.iter().cloned());
            }
            all.extend(entries);
        }
        (all, pinned)
    }

    /// The pairs one followed set vouches for.
    pub fn entries_of(&self, id: &SetId) -> Vec<Vouched> {
        let by_id = self.by_id.lock().expect("sets lock");
        by_id
            .get(&id.to_bytes())
            .map(|f| f.state.entries())
            .unwrap_or_default()
    }

    /// Every followed set, pinned or not.
    pub(crate) fn ids(&self) -> Vec<(SetId, bool)> {
        let by_id = self.by_id.lock().expect("sets lock");
        by_id
            .iter()
            .filter_map(|(k, f)| {
                Some((
                    SetId(ed25519_dalek::VerifyingKey::from_bytes(k).ok()?),
                    f.pinned,
                ))
            })
            .collect()
    }

    /// Records what `id` covers now.
    pub(crate) fn set_covered(&self, id: &SetId, covered: Arc<HashSet<StorePath>>) {
        let mut all = self.covered.lock().expect("covered lock");
        all.insert(id.to_bytes(), covered);
    }

    /// What `id` covered when the node last walked it (empty before).
    pub fn covered_of(&self, id: &SetId) -> Arc<HashSet<StorePath>> {
        let all = self.covered.lock().expect("covered lock");
        all.get(&id.to_bytes()).cloned().unwrap_or_default()
    }

    /// Every followed set.
    pub fn summary(&self) -> Vec<SetSummary> {
        let by_id = self.by_id.lock().expect("sets lock");
        let mut out: Vec<SetSummary> = by_id
            .iter()
            .filter_map(|(k, f)| {
                Some(SetSummary {
                    id: SetId(ed25519_dalek::VerifyingKey::from_bytes(k).ok()?),
                    pinned: f.pinned,
                    entries: f.state.len(),
                })
            })
            .collect();
        out.sort_by_key(|s| s.id.to_string());
        out
    }
}

/// The paths covered by `vouched`: each pair whose publisher lists the
/// path (`lists(publisher, path)` gives its references), and the closure
/// of those through references listed by any publisher (`any(path)`).
/// Asks about each path once, [`CONCURRENCY`] at a time; at most `limit`
/// paths (the closure stops growing there).
pub async fn cover<L, A, FL, FA>(
    vouched: &[Vouched],
    lists: L,
    any: A,
    limit: usize,
) -> HashSet<StorePath>
where
    L: Fn(&[u8; 32], &StorePath) -> FL,
    FL: Future<Output = Option<Vec<StorePath>>>,
    A: Fn(&StorePath) -> FA,
    FA: Future<Output = Option<Vec<StorePath>>>,
{
    let mut covered = HashSet::new();
    // Every path asked about, listed or not: each is asked once.
    let mut asked: HashSet<StorePath> = HashSet::new();
    let mut queue = VecDeque::new();
    let mut answers = futures::stream::iter(vouched.iter().cloned())
        .map(|(publisher, path)| {
            let f = lists(&publisher, &path);
            async move { (path, f.await) }
        })
        .buffered(CONCURRENCY);
    while let Some((path, refs)) = answers.next().await {
        if covered.len() >= limit {
            break;
        }
        if let Some(refs) = refs {
            if covered.insert(path.clone()) {
                asked.insert(path.clone());
                queue.extend(refs);
            }
        }
    }
    drop(answers);
    // The closure, a wave at a time: the references not asked about yet.
    while !queue.is_empty() && covered.len() < limit {
        let wave: Vec<StorePath> = queue
            .drain(..)
            .filter(|p| asked.insert(p.clone()))
            .collect();
        let mut answers = futures::stream::iter(wave)
            .map(|path| {
                let f = any(&path);
                async move { (path, f.await) }
            })
            .buffered(CONCURRENCY);
        while let Some((path, refs)) = answers.next().await {
            if covered.len() >= limit {
                break;
            }
            if let Some(refs) = refs {
                covered.insert(path);
                queue.extend(refs.into_iter().filter(|r| !asked.contains(r)));
            }
        }
    }
    covered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: &str) -> StorePath {
        StorePath::from_base_name(&format!("{:0>32}-{n}", n.len())).unwrap()
    }

    #[tokio::test]
    async fn a_set_covers_its_vouched_paths_and_their_closure_only_as_listed() {
        // Publisher 1 lists app -> lib -> libc (libc listed by 2 only);
        // self-references and cycles are fine; ghost is listed by no one.
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let index: HashMap<([u8; 32], StorePath), Vec<StorePath>> = [
            ((a, p("app")), vec![p("app"), p("lib"), p("ghost")]),
            ((a, p("lib")), vec![p("libc")]),
            ((b, p("libc")), vec![p("lib")]),
            ((b, p("other")), vec![]),
        ]
        .into_iter()
        .collect();
        // Each question is counted: a path is asked about once.
        let asked: Mutex<Vec<StorePath>> = Mutex::new(Vec::new());
        let lists = |pubk: &[u8; 32], path: &StorePath| {
            asked.lock().unwrap().push(path.clone());
            std::future::ready(index.get(&(*pubk, path.clone())).cloned())
        };
        let any = |path: &StorePath| {
            asked.lock().unwrap().push(path.clone());
            std::future::ready(
                index
                    .iter()
                    .find(|((_, q), _)| q == path)
                    .map(|(_, r)| r.clone()),
            )
        };
        let got = cover(&[(a, p("app")), (a, p("app"))], lists, any, 100).await;
        let want: HashSet<StorePath> = [p("app"), p("lib"), p("libc")].into_iter().collect();
        assert_eq!(got, want);
        let mut each = asked.lock().unwrap().clone();
        // The vouched pair twice (both asked: pairs are not deduplicated
        // before they are asked), then lib, ghost, libc once each.
        let mut once = vec![p("app"), p("app"), p("ghost"), p("lib"), p("libc")];
        each.sort();
        once.sort();
        assert_eq!(each, once);
        // A pair whose publisher does not list the path covers nothing.
        assert!(cover(&[(b, p("app"))], lists, any, 100).await.is_empty());
        assert!(cover(&[(a, p("other"))], lists, any, 100).await.is_empty());
        // The limit holds.
        assert_eq!(cover(&[(a, p("app"))], lists, any, 2).await.len(), 2);
    }

    #[test]
    fn followed_sets_say_what_they_vouch_for_and_which_are_pinned() {
        let sets = Sets::default();
        let key = |n: u8| SetId(ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key());
        let (s1, s2) = (key(1), key(2));
        assert!(sets.add(s1, false));
        assert!(sets.add(s2, true));
        let mut rx = sets.subscribe();
        rx.mark_unchanged();
        let e = |n: &str| SetEntry {
            publisher: [9; 32],
            store_path: p(n),
            vouched: true,
        };
        sets.apply(&s1, &e("x")).unwrap();
        assert!(rx.has_changed().unwrap());
        sets.apply(&s2, &e("y")).unwrap();
        let (all, pinned) = sets.vouched();
        assert_eq!(all.len(), 2);
        assert_eq!(pinned, vec![([9; 32], p("y"))]);
        let summary = sets.summary();
        assert_eq!(summary.len(), 2);
        assert_eq!(summary.iter().filter(|s| s.pinned).count(), 1);
        // Pinning a followed set later pins it (and needs no new follower).
        assert!(!sets.add(s1, true));
        assert_eq!(sets.vouched().1.len(), 2);
    }
}
