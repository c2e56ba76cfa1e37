//! A safe-path set as it stands: the [`SetEntry`] records of its feed,
//! replayed in order (block 0 is the header; every later block an entry).
//!
//! A set says "we vouch for this store path, as that publisher signed it".
//! It cannot make anyone accept a path: a node still serves only paths a
//! publisher it trusts lists, with that publisher's Nix signatures, which
//! Nix checks. What a set decides is what a node fetches ahead (`--pin`)
//! and, with `--require-set`, which of its trusted publishers' paths it
//! serves at all.
//!
//! Bounded: at most [`MAX_SET_ENTRIES`] (publisher, path) pairs; an entry
//! beyond that is refused, and the set is what it was before it.

use std::collections::{BTreeSet, HashMap};

use crate::format::record::{SetChannelEntry, SetEntry};
use crate::format::storepath::StorePath;

/// Most (publisher, path) pairs one set holds.
pub const MAX_SET_ENTRIES: usize = 1 << 20;

/// Most (publisher, channel) pairs one set holds.
pub const MAX_SET_CHANNELS: usize = 1024;

/// Errors applying an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("the set already holds {MAX_SET_ENTRIES} paths, the most one set may")]
    Full,
    #[error("the set already holds {MAX_SET_CHANNELS} channels, the most one set may")]
    TooManyChannels,
}

/// The (publisher, store path) pairs a set vouches for now, and the
/// (publisher, channel) pairs: every path of the channel's newest
/// generation as that publisher commits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetState {
    by_path: HashMap<StorePath, BTreeSet<[u8; 32]>>,
    len: usize,
    channels: BTreeSet<([u8; 32], String)>,
}

impl SetState {
    /// Applies one channel entry; `Ok(true)` if it changed the set.
    pub fn apply_channel(&mut self, e: &SetChannelEntry) -> Result<bool, SetError> {
        let pair = (e.publisher, e.channel.clone());
        if !e.vouched {
            return Ok(self.channels.remove(&pair));
        }
        if self.channels.contains(&pair) {
            return Ok(false);
        }
        if self.channels.len() >= MAX_SET_CHANNELS {
            return Err(SetError::TooManyChannels);
        }
        Ok(self.channels.insert(pair))
    }

    /// Every (publisher, channel) pair, sorted.
    pub fn channels(&self) -> Vec<([u8; 32], String)> {
        self.channels.iter().cloned().collect()
    }

    /// Applies one entry; `Ok(true)` if it changed the set (adding what is
    /// there, or removing what is not, changes nothing).
    pub fn apply(&mut self, e: &SetEntry) -> Result<bool, SetError> {
        if e.vouched {
            if self.contains(&e.publisher, &e.store_path) {
                return Ok(false);
            }
            if self.len >= MAX_SET_ENTRIES {
                return Err(SetError::Full);
            }
            self.by_path
                .entry(e.store_path.clone())
                .or_default()
                .insert(e.publisher);
            self.len += 1;
            Ok(true)
        } else {
            let Some(pubs) = self.by_path.get_mut(&e.store_path) else {
                return Ok(false);
            };
            if !pubs.remove(&e.publisher) {
                return Ok(false);
            }
            if pubs.is_empty() {
                self.by_path.remove(&e.store_path);
            }
            self.len -= 1;
            Ok(true)
        }
    }

    /// Whether the set vouches for `path` as `publisher` signed it.
    pub fn contains(&self, publisher: &[u8; 32], path: &StorePath) -> bool {
        self.by_path
            .get(path)
            .is_some_and(|pubs| pubs.contains(publisher))
    }

    /// The publishers whose `path` the set vouches for.
    pub fn publishers_of(&self, path: &StorePath) -> impl Iterator<Item = &[u8; 32]> {
        self.by_path.get(path).into_iter().flatten()
    }

    /// Every (publisher, path) pair, sorted by path then publisher.
    pub fn entries(&self) -> Vec<([u8; 32], StorePath)> {
        let mut out: Vec<([u8; 32], StorePath)> = self
            .by_path
            .iter()
            .flat_map(|(path, pubs)| pubs.iter().map(move |p| (*p, path.clone())))
            .collect();
        out.sort_by(|a, b| (a.1.base_name(), a.0).cmp(&(b.1.base_name(), b.0)));
        out
    }

    /// Number of (publisher, path) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(n: u32) -> StorePath {
        StorePath::from_base_name(&format!("{:0>32}-p{n}", n % 10)).unwrap()
    }

    fn entry(publisher: u8, n: u32, vouched: bool) -> SetEntry {
        SetEntry {
            publisher: [publisher; 32],
            store_path: path(n),
            vouched,
        }
    }

    #[test]
    fn entries_replay_in_order_and_repeats_change_nothing() {
        let mut s = SetState::default();
        assert_eq!(s.apply(&entry(1, 1, true)), Ok(true));
        assert_eq!(s.apply(&entry(1, 1, true)), Ok(false));
        assert_eq!(s.apply(&entry(2, 1, true)), Ok(true));
        assert_eq!(s.len(), 2);
        assert!(s.contains(&[1; 32], &path(1)));
        assert!(!s.contains(&[3; 32], &path(1)));
        assert_eq!(s.publishers_of(&path(1)).count(), 2);
        assert_eq!(s.apply(&entry(1, 1, false)), Ok(true));
        assert_eq!(s.apply(&entry(1, 1, false)), Ok(false));
        assert_eq!(s.apply(&entry(1, 7, false)), Ok(false));
        assert!(!s.contains(&[1; 32], &path(1)));
        assert!(s.contains(&[2; 32], &path(1)));
        assert_eq!(s.apply(&entry(2, 1, false)), Ok(true));
        assert!(s.is_empty());
        assert_eq!(s, SetState::default());
    }

    #[test]
    fn a_full_set_refuses_more_and_stays_as_it_was() {
        let mut s = SetState {
            len: MAX_SET_ENTRIES - 1,
            ..SetState::default()
        };
        assert_eq!(s.apply(&entry(1, 1, true)), Ok(true));
        let before = s.clone();
        assert_eq!(s.apply(&entry(1, 2, true)), Err(SetError::Full));
        assert_eq!(s, before);
        // What it holds can still be removed, and then added again.
        assert_eq!(s.apply(&entry(1, 1, false)), Ok(true));
        assert_eq!(s.apply(&entry(1, 2, true)), Ok(true));
    }

    #[test]
    fn channels_are_vouched_for_and_withdrawn_and_bounded() {
        let mut s = SetState::default();
        let c = |p: u8, name: &str, vouched| SetChannelEntry {
            publisher: [p; 32],
            channel: name.into(),
            vouched,
        };
        assert_eq!(s.apply_channel(&c(1, "a", true)), Ok(true));
        assert_eq!(s.apply_channel(&c(1, "a", true)), Ok(false));
        assert_eq!(s.apply_channel(&c(2, "a", true)), Ok(true));
        assert_eq!(s.channels().len(), 2);
        assert!(s.is_empty(), "channels are not paths");
        assert_eq!(s.apply_channel(&c(1, "a", false)), Ok(true));
        assert_eq!(s.apply_channel(&c(1, "a", false)), Ok(false));
        assert_eq!(s.channels(), vec![([2; 32], "a".to_owned())]);
        for i in 1..MAX_SET_CHANNELS {
            s.apply_channel(&c(3, &format!("c{i}"), true)).unwrap();
        }
        let before = s.clone();
        assert_eq!(
            s.apply_channel(&c(4, "over", true)),
            Err(SetError::TooManyChannels)
        );
        assert_eq!(s, before);
    }

    #[test]
    fn entries_are_listed_sorted() {
        let mut s = SetState::default();
        for (p, n) in [(2, 3), (1, 3), (1, 1)] {
            s.apply(&entry(p, n, true)).unwrap();
        }
        let listed: Vec<(u8, StorePath)> =
            s.entries().into_iter().map(|(p, n)| (p[0], n)).collect();
        assert_eq!(listed, vec![(1, path(1)), (1, path(3)), (2, path(3))]);
    }
}
