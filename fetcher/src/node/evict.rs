//! A bounded disk (`serve --max-size`): when the feeds take more than the
//! bound, the blocks of the least recently used paths are dropped (hypercore
//! `clear`, which punches holes in the data file) until they take at most
//! nine tenths of it.
//!
//! Never dropped: blocks of pinned paths, blocks of feeds this node writes
//! (a publisher's own, which exist nowhere else), index, key and set feeds
//! (only data-feed ranges of listed paths are ever chosen), and paths asked
//! for within the last [`PROTECT`] (a NAR being sent). Dropped blocks stay
//! verifiable: the signed tree is kept, and they are fetched again when
//! asked for. Paths not used since the node started count as the oldest.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::storepath::StorePath;
use tracing::{info, warn};

use super::Node;

/// How often the disk use is measured.
pub const EVERY: Duration = Duration::from_secs(10);
/// A path asked for this recently is not evicted.
pub const PROTECT: Duration = Duration::from_secs(60);

/// The paths to evict, oldest use first: never-used (`None`) before used,
/// then by name for a stable order.
pub fn eviction_order(mut paths: Vec<(StorePath, Option<Instant>)>) -> Vec<StorePath> {
    paths.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then_with(|| a.0.base_name().cmp(b.0.base_name()))
    });
    paths.into_iter().map(|(p, _)| p).collect()
}

/// About how many bytes `held` blocks of a path take: a segment each, but
/// no more than the NAR and one listing block (small paths have small
/// blocks; compressed segments are smaller still).
pub fn held_bytes(held: u64, rec: &hypernar_feed::format::record::PathRecord) -> u64 {
    let segment = u64::from(rec.segment_size);
    held.saturating_mul(segment)
        .min(rec.nar_size.saturating_add(segment))
}

impl Node {
    /// Keeps the feeds directory under `max` bytes, for as long as the node
    /// runs.
    pub(super) async fn bound_disk(self, max: u64) {
        let fast = crate::fault::evict_fast();
        let (every, protect) = if fast {
            (Duration::from_millis(500), Duration::ZERO)
        } else {
            (EVERY, PROTECT)
        };
        let mut told_full = false;
        loop {
            tokio::time::sleep(every).await;
            let dir = self.feeds_dir().to_owned();
            let used = tokio::task::spawn_blocking(move || crate::http::status::disk_usage(&dir))
                .await
                .unwrap_or(0);
            if used <= max {
                told_full = false;
                continue;
            }
            let target = max / 10 * 9;
            let (freed, paths) = self.evict(used - target, protect).await;
            if paths > 0 {
                info!(
                    paths,
                    freed_mib = freed >> 20,
                    used_mib = used >> 20,
                    max_mib = max >> 20,
                    "evicted the least recently used paths to stay under --max-size"
                );
            } else if !told_full {
                warn!(
                    used_mib = used >> 20,
                    max_mib = max >> 20,
                    "over --max-size, and nothing is left to evict: pinned paths, this node's own feeds and index, key and set feeds are kept"
                );
                told_full = true;
            }
        }
    }

    /// Drops the blocks of unpinned, unprotected paths, least recently used
    /// first, until about `excess` bytes are freed; returns the bytes
    /// (estimated: blocks × segment size) and paths dropped.
    async fn evict(&self, excess: u64, protect: Duration) -> (u64, usize) {
        let p = self.publishers();
        let pinned: HashSet<StorePath> = self.pinned().into_iter().collect();
        let now = Instant::now();
        let candidates: Vec<(StorePath, Option<Instant>)> = p
            .all_paths()
            .into_iter()
            .filter(|path| !pinned.contains(path))
            .map(|path| {
                let used = p.last_used(&path);
                (path, used)
            })
            .filter(|(_, used)| used.is_none_or(|t| now.duration_since(t) >= protect))
            .collect();
        let (mut freed, mut paths) = (0u64, 0usize);
        for path in eviction_order(candidates) {
            if freed >= excess {
                break;
            }
            let Some((feed, ranges)) = p.ranges(&path) else {
                continue;
            };
            let Some((_, rec, _)) = p.find(&path) else {
                continue;
            };
            let Some(hub) = VerifyingKey::from_bytes(&feed)
                .ok()
                .and_then(|k| self.hub(&k.to_bytes()))
            else {
                continue;
            };
            if hub.writable() {
                continue;
            }
            let mut dropped = 0;
            for (start, end) in ranges {
                match hub.clear(start, end).await {
                    Ok(n) => dropped += n,
                    Err(e) => warn!(%path, %e, "evicting a path's blocks failed; it is kept"),
                }
            }
            if dropped > 0 {
                freed += held_bytes(dropped, &rec);
                paths += 1;
            }
        }
        (freed, paths)
    }
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024,
/// optionally followed by `iB` or `B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 20G, 500M or 1048576"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_operators_write_them() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("3k"), Ok(3 << 10));
        assert_eq!(parse_size(" 2 T "), Ok(2 << 40));
        for bad in ["", "G", "12X", "-1G", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_never_used_before_them() {
        let p = |n: &str| StorePath::from_base_name(&format!("{:0>32}-{n}", 1)).unwrap();
        let t0 = Instant::now();
        let order = eviction_order(vec![
            (p("new"), Some(t0 + Duration::from_secs(5))),
            (p("old"), Some(t0)),
            (p("zz-never"), None),
            (p("aa-never"), None),
        ]);
        let names: Vec<&str> = order.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["aa-never", "zz-never", "old", "new"]);
    }
}
