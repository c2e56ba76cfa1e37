//! What a node tells and gives its peers of the blocks it fetched
//! (`serve --share all|sets|none`).
//!
//! A node's `Range` announcements say which blocks it holds, and a data
//! feed's blocks map to store paths through the publisher's index: anyone
//! who can open the feed learns which paths — which packages, which
//! vulnerable versions — the machine has. The operator chooses:
//!
//! - `all` (default): every fetcher is a seeder; everything held is
//!   announced and served.
//! - `sets`: of the trusted publishers' data feeds, only blocks of paths
//!   that followed safe-path sets cover (and their closures) are announced
//!   and served; index, key and set feeds as usual.
//! - `none`: nothing fetched is announced or served; requests for blocks
//!   are answered `NoData`, and the node does not announce itself on the
//!   DHT.
//!
//! Feeds the node writes (a publisher's own) are always shared.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

/// Blocks `start..end` of a feed.
pub type BlockRange = (u64, u64);

/// The operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareMode {
    #[default]
    All,
    Sets,
    None,
}

impl std::str::FromStr for ShareMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(ShareMode::All),
            "sets" => Ok(ShareMode::Sets),
            "none" => Ok(ShareMode::None),
            _ => Err(format!("{s:?}: expected all, sets or none")),
        }
    }
}

impl std::fmt::Display for ShareMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShareMode::All => "all",
            ShareMode::Sets => "sets",
            ShareMode::None => "none",
        })
    }
}

/// The node's sharing policy, consulted by every hub.
#[derive(Debug, Default)]
pub struct Share {
    mode: ShareMode,
    /// `--share-exclude`: in `all` too, data-feed blocks are shared only
    /// within `restricted` (the ranges of known paths whose names no
    /// pattern matches); until the node says what, none.
    filtered: bool,
    /// With `sets`: feeds shared as usual (indexes, key and set feeds),
    /// and the block ranges of data feeds that may be shared (sorted, not
    /// overlapping). Nothing else is shared.
    restricted: RwLock<Restricted>,
}

#[derive(Debug, Default)]
struct Restricted {
    open: HashSet<[u8; 32]>,
    ranges: HashMap<[u8; 32], Vec<BlockRange>>,
}

impl Share {
    pub fn new(mode: ShareMode) -> Self {
        Self::filtered(mode, false)
    }

    /// A policy whose `all` shares only what [`Share::restrict`] allows
    /// (`--share-exclude`); `sets` and `none` as ever.
    pub fn filtered(mode: ShareMode, filtered: bool) -> Self {
        Share {
            mode,
            filtered,
            restricted: RwLock::default(),
        }
    }

    pub fn mode(&self) -> ShareMode {
        self.mode
    }

    /// Whether every block held is shared (`all` with no exclusion).
    pub fn unrestricted(&self) -> bool {
        self.mode == ShareMode::All && !self.filtered
    }

    /// Whether what is shared is a list the node keeps (`sets`, or `all`
    /// with exclusions).
    pub fn is_restricted(&self) -> bool {
        self.mode == ShareMode::Sets || (self.mode == ShareMode::All && self.filtered)
    }

    /// Whether block `index` of the replica `feed` may be announced and
    /// served.
    pub fn allows(&self, feed: &[u8; 32], index: u64) -> bool {
        match self.mode {
            ShareMode::All if !self.filtered => true,
            ShareMode::None => false,
            ShareMode::All | ShareMode::Sets => {
                let r = self.restricted.read().expect("share lock");
                if r.open.contains(feed) {
                    return true;
                }
                r.ranges.get(feed).is_some_and(|ranges| {
                    let i = ranges.partition_point(|&(_, end)| end <= index);
                    ranges.get(i).is_some_and(|&(start, _)| start <= index)
                })
            }
        }
    }

    /// With `sets`: replaces the feeds shared as usual (`open`) and what of
    /// each data feed may be shared (`ranges` in any order; overlaps are
    /// merged). Returns the feeds of which more may be shared than before
    /// (their hubs announce what they hold again).
    pub fn restrict(
        &self,
        open: HashSet<[u8; 32]>,
        feeds: HashMap<[u8; 32], Vec<BlockRange>>,
    ) -> Vec<[u8; 32]> {
        let merged: HashMap<[u8; 32], Vec<BlockRange>> = feeds
            .into_iter()
            .map(|(k, mut ranges)| {
                ranges.retain(|&(s, e)| s < e);
                ranges.sort_unstable();
                let mut out: Vec<BlockRange> = Vec::with_capacity(ranges.len());
                for (s, e) in ranges {
                    match out.last_mut() {
                        Some(last) if s <= last.1 => last.1 = last.1.max(e),
                        _ => out.push((s, e)),
                    }
                }
                (k, out)
            })
            .collect();
        let mut r = self.restricted.write().expect("share lock");
        let widened: Vec<[u8; 32]> = merged
            .iter()
            .filter(|(k, ranges)| r.ranges.get(*k) != Some(*ranges) && !ranges.is_empty())
            .map(|(k, _)| *k)
            .chain(open.iter().filter(|k| !r.open.contains(*k)).copied())
            .collect();
        *r = Restricted {
            open,
            ranges: merged,
        };
        widened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_shares_everything_and_none_nothing() {
        let (all, none) = (Share::new(ShareMode::All), Share::new(ShareMode::None));
        for i in [0, 1, u64::MAX] {
            assert!(all.allows(&[1; 32], i));
            assert!(!none.allows(&[1; 32], i));
        }
    }

    #[test]
    fn sets_shares_only_the_ranges_of_restricted_feeds() {
        let s = Share::new(ShareMode::Sets);
        assert!(!s.allows(&[3; 32], 0), "nothing before the sets say what");
        let widened = s.restrict(
            [[3; 32]].into_iter().collect(),
            [
                (
                    [1; 32],
                    vec![
                        (10, 20),
                        (0, 2),
                        (15, 25),
                        (30, 30),
                        (u64::MAX - 1, u64::MAX),
                    ],
                ),
                ([2; 32], vec![]),
            ]
            .into_iter()
            .collect(),
        );
        let ok: Vec<u64> = (0..40).filter(|&i| s.allows(&[1; 32], i)).collect();
        assert_eq!(ok, [0, 1].into_iter().chain(10..25).collect::<Vec<_>>());
        assert!(s.allows(&[1; 32], u64::MAX - 1));
        assert!(!s.allows(&[1; 32], u64::MAX));
        // A data feed with no covered path shares nothing, nor does a feed
        // the node knows nothing of; an open feed (an index) shares all.
        assert!(!s.allows(&[2; 32], 0));
        assert!(!s.allows(&[4; 32], 0));
        assert!(s.allows(&[3; 32], 0));
        // What was opened up is said, so hubs announce it; the same again
        // opens nothing.
        let mut widened = widened;
        widened.sort_unstable();
        assert_eq!(widened, vec![[1; 32], [3; 32]]);
        let again = s.restrict(
            [[3; 32]].into_iter().collect(),
            [([1; 32], vec![(0, 2), (10, 25), (u64::MAX - 1, u64::MAX)])]
                .into_iter()
                .collect(),
        );
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn all_with_exclusions_shares_only_what_it_is_told() {
        let s = Share::filtered(ShareMode::All, true);
        assert!(!s.unrestricted() && s.is_restricted());
        assert!(!s.allows(&[1; 32], 0), "nothing before the node says what");
        s.restrict(
            [[3; 32]].into_iter().collect(),
            [([1; 32], vec![(4, 8)])].into_iter().collect(),
        );
        let ok: Vec<u64> = (0..10).filter(|&i| s.allows(&[1; 32], i)).collect();
        assert_eq!(ok, vec![4, 5, 6, 7]);
        assert!(s.allows(&[3; 32], 99));
        let plain = Share::new(ShareMode::All);
        assert!(plain.unrestricted() && !plain.is_restricted());
    }

    #[test]
    fn modes_read_as_the_flag_says() {
        for m in [ShareMode::All, ShareMode::Sets, ShareMode::None] {
            assert_eq!(m.to_string().parse::<ShareMode>(), Ok(m));
        }
        assert!("some".parse::<ShareMode>().is_err());
    }
}
