//! Generations: the releases of a channel a follower has committed
//! (docs/protocol.md, "Generations").
//!
//! A follower (`hypernar follow`) that has published a release's closure
//! appends, to its `generations` feed, the closure's **table** — a run of
//! (store-path hash → index record, key release) over exactly the closure's
//! paths, cut into pages like the index's runs (`run.rs`) — and then a
//! [`Generations`] record: the newest generation of every channel it
//! follows, each pointing at its table. The last block of the feed is
//! always such a record (a commit killed between its pages and its record
//! leaves pages at the end, and the publisher appends the last record again
//! when it next opens), so a peer reads one block to learn what each
//! channel's newest release is, and one page of the table to learn whether
//! a path is in it. Nothing of a release is current before its record is
//! appended: peers never see a half-ingested release.
//!
//! Everything here is bounded and checked when decoded (strings, counts)
//! and against the block it was read at ([`Generations::check`]).

use serde::{Deserialize, Serialize};

use super::run::{bits_for, RunError, RunRef, MAX_BUCKET_BITS, MAX_FEED_BLOCKS};

/// Most channels one follower's record lists.
pub const MAX_CHANNELS: usize = 64;
/// Longest channel name (as `hypernar follow --channel NAME=URL` allows).
pub const MAX_CHANNEL_NAME: usize = 64;
/// Longest release name, URL or git revision a record carries.
pub const MAX_TEXT: usize = 1024;
/// Latest time a record may carry (the last second of year 9999: dates
/// past it are neither written nor shown).
pub const MAX_TIME: u64 = 253_402_300_799;
/// Bits a table may have beyond what its entries need: the cutter adds
/// one while a page would overflow, which four more cover many times over;
/// more would only make a reader fetch empty pages.
pub const SPARE_BITS: u8 = 4;

/// One committed release of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// The channel's name at the follower (`nixos-unstable`).
    pub channel: String,
    /// The release directory's name (`nixos-24.05.5725.7e1ca67996af`).
    pub release: String,
    /// The release directory's URL.
    pub url: String,
    /// The revision count the release's name carries, if any.
    pub revision_count: Option<u64>,
    /// The Last-Modified of its `store-paths.xz` (seconds since the epoch).
    pub modified: Option<u64>,
    /// Its `git-revision`.
    pub git_revision: Option<String>,
    /// When the follower committed it (seconds since the epoch).
    pub committed_at: u64,
    /// Paths its `store-paths.xz` listed.
    pub roots: u64,
    /// Paths of its closure published (the table's entries).
    pub closure: u64,
    /// Paths of its closure the upstream did not have.
    pub missing: u64,
    /// The closure's table in the generations feed; `from` is 0 and `to`
    /// the index's length at the commit (every entry points below it).
    pub table: RunRef,
}

/// The last block of a generations feed: the newest generation of every
/// channel the follower has committed, sorted by channel name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    pub channels: Vec<Generation>,
}

/// Why a generations record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    #[error("a generations record lists {0} channels, over the {MAX_CHANNELS} limit")]
    TooManyChannels(usize),
    #[error("a generations record names channel {0:?}, which is no channel name")]
    BadChannel(String),
    #[error("a generations record lists its channels out of order, or one twice")]
    Unsorted,
    #[error(
        "channel {channel}: a text field is over {MAX_TEXT} bytes or holds a control character"
    )]
    BadText { channel: String },
    #[error("channel {channel}: {source}")]
    Table {
        channel: String,
        #[source]
        source: RunError,
    },
    #[error("channel {channel}: a time is past the year 9999")]
    BadTime { channel: String },
    #[error("channel {channel}: its table holds {entries} entries, not the {closure} paths of its closure")]
    Count {
        channel: String,
        entries: u64,
        closure: u64,
    },
}

/// A record's time (seconds since the epoch) as an HTTP date; a time past
/// [`MAX_TIME`] (never in a checked record) as a number.
pub fn http_date(secs: u64) -> String {
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs)) {
        Some(t) if secs <= MAX_TIME => httpdate::fmt_http_date(t),
        _ => format!("{secs} s after 1970"),
    }
}

/// Whether `name` is a channel name: letters, digits, `.`, `_`, `-`, not
/// starting with `.`, 1..=64 bytes.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn plain(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

impl Generation {
    /// What a generation can say about itself: its name and texts, and
    /// its table's shape (at most [`MAX_BUCKET_BITS`] bits, as many
    /// entries as its closure, marks within [`MAX_FEED_BLOCKS`]).
    pub fn check_fields(&self) -> Result<(), GenerationError> {
        if !is_channel_name(&self.channel) {
            return Err(GenerationError::BadChannel(self.channel.clone()));
        }
        let texts = [&self.release, &self.url]
            .into_iter()
            .chain(self.git_revision.as_ref());
        if texts.into_iter().any(|s| !plain(s)) {
            return Err(GenerationError::BadText {
                channel: self.channel.clone(),
            });
        }
        if self.committed_at > MAX_TIME || self.modified.is_some_and(|m| m > MAX_TIME) {
            return Err(GenerationError::BadTime {
                channel: self.channel.clone(),
            });
        }
        let t = &self.table;
        let table = |source| GenerationError::Table {
            channel: self.channel.clone(),
            source,
        };
        if t.bits > MAX_BUCKET_BITS || t.bits > bits_for(t.entries).saturating_add(SPARE_BITS) {
            return Err(table(RunError::TooManyBits(t.bits)));
        }
        if t.from != 0 || t.to > MAX_FEED_BLOCKS {
            return Err(table(RunError::NotTiled(t.to)));
        }
        if t.entries > t.to {
            return Err(table(RunError::TooManyEntries {
                entries: t.entries,
                blocks: t.to,
            }));
        }
        if t.entries != self.closure {
            return Err(GenerationError::Count {
                channel: self.channel.clone(),
                entries: t.entries,
                closure: self.closure,
            });
        }
        Ok(())
    }
}

impl Generations {
    /// What a record can say about itself (checked when it is decoded).
    pub fn check_fields(&self) -> Result<(), GenerationError> {
        if self.channels.len() > MAX_CHANNELS {
            return Err(GenerationError::TooManyChannels(self.channels.len()));
        }
        for g in &self.channels {
            g.check_fields()?;
        }
        if self
            .channels
            .windows(2)
            .any(|w| w[0].channel >= w[1].channel)
        {
            return Err(GenerationError::Unsorted);
        }
        Ok(())
    }

    /// Checks a record read as block `at` of the generations feed: every
    /// table's pages lie before it.
    pub fn check(&self, at: u64) -> Result<(), GenerationError> {
        self.check_fields()?;
        for g in &self.channels {
            let end = g.table.end_block().ok_or(GenerationError::Table {
                channel: g.channel.clone(),
                source: RunError::Overflow,
            })?;
            if end > at || g.table.first_block == 0 {
                return Err(GenerationError::Table {
                    channel: g.channel.clone(),
                    source: RunError::PastManifest { end, manifest: at },
                });
            }
        }
        Ok(())
    }

    /// The newest generation of `channel`.
    pub fn get(&self, channel: &str) -> Option<&Generation> {
        self.channels
            .binary_search_by(|g| g.channel.as_str().cmp(channel))
            .ok()
            .map(|i| &self.channels[i])
    }

    /// The record with `generation` replacing its channel's (or added).
    pub fn with(&self, generation: Generation) -> Generations {
        let mut channels = self.channels.clone();
        match channels.binary_search_by(|g| g.channel.cmp(&generation.channel)) {
            Ok(i) => channels[i] = generation,
            Err(i) => channels.insert(i, generation),
        }
        Generations { channels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(channel: &str, first_block: u64, bits: u8, entries: u64) -> Generation {
        Generation {
            channel: channel.into(),
            release: "nixos-test.1.aaaaaaa".into(),
            url: "http://localhost/releases/nixos-test.1.aaaaaaa".into(),
            revision_count: Some(1),
            modified: None,
            git_revision: Some("a".repeat(40)),
            committed_at: 1,
            roots: 1,
            closure: entries,
            missing: 0,
            table: RunRef {
                first_block,
                bits,
                entries,
                from: 0,
                to: 100,
            },
        }
    }

    #[test]
    fn a_record_is_checked_against_where_it_was_read() {
        let g = Generations::default()
            .with(generation("b", 1, 2, 10))
            .with(generation("a", 5, 0, 3));
        assert_eq!(g.channels[0].channel, "a");
        assert_eq!(g.get("b").unwrap().table.first_block, 1);
        assert!(g.get("c").is_none());
        // Pages 1..5 and 5..6: the record may be block 6, not 5.
        assert_eq!(g.check(6), Ok(()));
        assert!(matches!(
            g.check(5),
            Err(GenerationError::Table {
                source: RunError::PastManifest { .. },
                ..
            })
        ));
        // Replacing a channel's generation keeps one per channel.
        let g2 = g.with(generation("a", 6, 0, 4));
        assert_eq!(g2.channels.len(), 2);
        assert_eq!(g2.get("a").unwrap().closure, 4);
    }

    #[test]
    fn every_field_a_peer_could_break_is_refused() {
        let ok = generation("nixos-unstable", 1, 0, 3);
        assert_eq!(ok.check_fields(), Ok(()));
        let broken: Vec<(&str, Generation)> = vec![
            (
                "name",
                Generation {
                    channel: ".hidden".into(),
                    ..ok.clone()
                },
            ),
            (
                "name",
                Generation {
                    channel: "a/b".into(),
                    ..ok.clone()
                },
            ),
            (
                "name",
                Generation {
                    channel: "x".repeat(65),
                    ..ok.clone()
                },
            ),
            (
                "text",
                Generation {
                    release: "a\nSig: x".into(),
                    ..ok.clone()
                },
            ),
            (
                "text",
                Generation {
                    url: "u".repeat(MAX_TEXT + 1),
                    ..ok.clone()
                },
            ),
            (
                "text",
                Generation {
                    git_revision: Some("\u{1b}[2J".into()),
                    ..ok.clone()
                },
            ),
            (
                "count",
                Generation {
                    closure: 4,
                    ..ok.clone()
                },
            ),
            (
                "bits",
                Generation {
                    table: RunRef {
                        bits: 25,
                        ..ok.table
                    },
                    ..ok.clone()
                },
            ),
            (
                "from",
                Generation {
                    table: RunRef {
                        from: 1,
                        ..ok.table
                    },
                    ..ok.clone()
                },
            ),
            (
                "to",
                Generation {
                    table: RunRef {
                        to: MAX_FEED_BLOCKS + 1,
                        ..ok.table
                    },
                    ..ok.clone()
                },
            ),
            (
                "entries",
                Generation {
                    closure: 101,
                    table: RunRef {
                        entries: 101,
                        ..ok.table
                    },
                    ..ok.clone()
                },
            ),
            (
                "empty pages",
                Generation {
                    table: RunRef {
                        bits: 5,
                        ..ok.table
                    },
                    ..ok.clone()
                },
            ),
            (
                "time",
                Generation {
                    committed_at: MAX_TIME + 1,
                    ..ok.clone()
                },
            ),
            (
                "time",
                Generation {
                    modified: Some(u64::MAX),
                    ..ok.clone()
                },
            ),
        ];
        for (what, g) in broken {
            assert!(g.check_fields().is_err(), "{what}: {g:?}");
        }
        // Out of order, twice, too many, a table at block 0 or overflowing.
        let twice = Generations {
            channels: vec![ok.clone(), ok.clone()],
        };
        assert_eq!(twice.check_fields(), Err(GenerationError::Unsorted));
        let many = Generations {
            channels: (0..65)
                .map(|i| generation(&format!("c{i:03}"), 1, 0, 1))
                .collect(),
        };
        assert_eq!(
            many.check_fields(),
            Err(GenerationError::TooManyChannels(65))
        );
        let at0 = Generations {
            channels: vec![generation("a", 0, 0, 1)],
        };
        assert!(at0.check(10).is_err());
        let huge = Generations {
            channels: vec![generation("a", u64::MAX, 1, 1)],
        };
        assert!(huge.check(u64::MAX).is_err());
        // A few spare bits are fine; dates print whatever they are.
        assert_eq!(generation("a", 1, 4, 3).check_fields(), Ok(()));
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(http_date(u64::MAX).contains("after 1970"));
    }
}
