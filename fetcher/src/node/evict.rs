//! A bounded disk (`serve --max-size`): when the feeds take more than the
//! bound, the blocks of the least recently used paths are dropped (hypercore
//! `clear`, which punches holes in the data file) until they take at most
//! nine tenths of it.
//!
//! Never dropped: blocks of pinned paths, blocks of feeds this node writes
//! (a publisher's own, which exist nowhere else), index, key and set feeds
//! (only data-feed ranges of listed paths are ever chosen), and paths asked
//! for within the last [`PROTECT`] or being sent as a NAR (readers mark
//! their path used at each segment). Dropped blocks stay
//! verifiable: the signed tree is kept, and they are fetched again when
//! asked for. When paths were last used is kept in `DATA/recent` across
//! restarts ([`crate::recent`]); paths never asked for count as the oldest.
//!
//! The disk is measured every [`EVERY`], and as soon as the bytes received
//! since the last measure could have taken it past the bound (looked at
//! every [`LOOK`]), so a fast fetch overshoots by a fraction of a second of
//! download before eviction starts (`benches/evict.rs`: at 75 MiB/s the
//! peak was the bound plus the path being sent).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use hypernar_feed::format::storepath::StorePath;
use tracing::{info, warn};

use super::Node;

/// How often the disk use is measured.
pub const EVERY: Duration = Duration::from_secs(10);
/// A path asked for this recently is not evicted. A NAR being sent is
/// never evicted (it holds a [`crate::publishers::Reading`]), and readers
/// mark their path used at every segment, so this only covers the gap
/// between two segment reads of the mount. It was 60 s: a burst of use then
/// ran far past the bound, every path recent and nothing evictable
/// (`benches/evict.rs`: 4 × the bound).
pub const PROTECT: Duration = Duration::from_secs(1);

/// The paths to evict, oldest use first: never-used (`None`) before used,
/// then by name for a stable order.
pub fn eviction_order(mut paths: Vec<(StorePath, Option<u64>)>) -> Vec<StorePath> {
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

/// How often what the node received is looked at (cheap): the disk is
/// measured when that could have taken it past the bound, and at least
/// every [`EVERY`].
pub const LOOK: Duration = Duration::from_millis(250);

/// Whether to measure the disk now: every `every`, and sooner when the
/// bytes received since the last measure (`grown`) could have taken it past
/// `max`. Nothing received is no reason to measure again before `every`
/// (a node over the bound with nothing to evict stays there quietly).
pub fn measure_due(measured: u64, grown: u64, max: u64, since: Duration, every: Duration) -> bool {
    since >= every || (grown > 0 && measured.saturating_add(grown) > max)
}

impl Node {
    /// Bytes of blocks received from peers and web seeds so far (what can
    /// grow the feeds; NARs from the upstream cache are not stored).
    fn received_blocks(&self) -> u64 {
        use hypernar_swarm::metrics::{Metrics, PEER};
        let m = self.metrics();
        Metrics::total(&m.received, &PEER).saturating_add(Metrics::total(
            &m.received,
            &hypernar_swarm::metrics::WEB_SEED,
        ))
    }

    /// `DATA/recent`, where the uses of paths are kept (see
    /// [`crate::recent`]).
    fn recent_file(&self) -> std::path::PathBuf {
        self.feeds_dir().with_file_name("recent")
    }

    /// Writes the uses of paths to [`Node::recent_file`] if they changed.
    pub(super) async fn save_recent(&self) {
        let Some(entries) = self.publishers().recent() else {
            return;
        };
        let file = self.recent_file();
        let saved = tokio::task::spawn_blocking({
            let file = file.clone();
            move || crate::recent::store(&file, &entries)
        })
        .await;
        if let Ok(Err(e)) = saved {
            warn!(path = %file.display(), %e, "could not save when paths were last used; after a restart, eviction will not know it");
        }
    }

    /// Keeps the feeds directory under `max` bytes, for as long as the node
    /// runs.
    pub(super) async fn bound_disk(self, max: u64) {
        let fast = crate::fault::evict_fast();
        let (look, every, protect) = if fast {
            (
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::ZERO,
            )
        } else {
            (LOOK, EVERY, PROTECT)
        };
        let file = self.recent_file();
        match tokio::task::spawn_blocking({
            let file = file.clone();
            move || crate::recent::load(&file)
        })
        .await
        {
            Ok(Ok(entries)) => self.publishers().remember_used(entries),
            Ok(Err(e)) => {
                warn!(path = %file.display(), %e, "could not read when paths were last used; paths count as unused until asked for")
            }
            Err(_) => {}
        }
        let mut told_full = false;
        // The last measure: bytes used, when, and what had been received.
        let (mut measured, mut at, mut received) = (0u64, Instant::now(), self.received_blocks());
        let mut saved_at = Instant::now();
        loop {
            tokio::time::sleep(look).await;
            let grown = self.received_blocks().saturating_sub(received);
            if !measure_due(measured, grown, max, at.elapsed(), every) {
                continue;
            }
            received = self.received_blocks();
            at = Instant::now();
            // Written at most once per period, however often it measures.
            if saved_at.elapsed() >= every {
                self.save_recent().await;
                saved_at = Instant::now();
            }
            let used = self.measure().await;
            measured = used;
            if used <= max {
                told_full = false;
                continue;
            }
            let target = max / 10 * 9;
            let (freed, paths) = self.evict(used - target, protect).await;
            if paths > 0 {
                measured = self.measure().await;
                info!(
                    paths,
                    freed_mib = freed >> 20,
                    used_mib = used >> 20,
                    now_mib = measured >> 20,
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

    /// What the feeds take on disk now.
    async fn measure(&self) -> u64 {
        let dir = self.feeds_dir().to_owned();
        tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .unwrap_or(0)
    }

    /// Drops the blocks of unpinned, unprotected paths, least recently used
    /// first, until about `excess` bytes are freed; returns the bytes
    /// (estimated: blocks × segment size) and paths dropped.
    async fn evict(&self, excess: u64, protect: Duration) -> (u64, usize) {
        let p = self.publishers();
        let pinned: HashSet<StorePath> = self.pinned().into_iter().collect();
        let even_read = crate::fault::evict_reading();
        let now = crate::publishers::now_ms();
        let protect = u64::try_from(protect.as_millis()).unwrap_or(u64::MAX);
        // The paths the catalog holds, and those used before whose records
        // it holds no longer (an index in runs keeps only its tail and what
        // was looked up lately): each is looked up again when its turn
        // comes.
        let mut all: HashSet<StorePath> = p.all_paths().into_iter().collect();
        all.extend(p.used_paths());
        let candidates: Vec<(StorePath, Option<u64>)> = all
            .into_iter()
            .filter(|path| !pinned.contains(path) && (even_read || !p.is_being_read(path)))
            .map(|path| {
                let used = p.last_used(&path);
                (path, used)
            })
            // A use in the future (the clock went back) counts as recent.
            .filter(|(_, used)| used.is_none_or(|t| now.saturating_sub(t) >= protect))
            .collect();
        let (mut freed, mut paths) = (0u64, 0usize);
        for path in eviction_order(candidates) {
            if freed >= excess {
                break;
            }
            if p.find(&path).is_none() {
                self.resolve(path.hash_part()).await;
            }
            let (Some((feed, ranges)), Some((_, rec, _))) = (p.ranges(&path), p.find(&path)) else {
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
            // A read may have started while this pass looked paths up.
            if !even_read && p.is_being_read(&path) {
                continue;
            }
            let mut dropped = 0;
            let mut whole = true;
            for (start, end) in ranges {
                match hub.clear(start, end).await {
                    Ok(n) => dropped += n,
                    Err(e) => {
                        whole = false;
                        warn!(%path, %e, "evicting a path's blocks failed; it is kept");
                    }
                }
            }
            if dropped > 0 {
                freed += held_bytes(dropped, &rec);
                paths += 1;
            }
            // Nothing of it is held now: not a candidate again (nor looked
            // up again) until it is used.
            if whole {
                p.forget_use(&path);
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

/// Disk use per trusted publisher (its feeds' files) and per followed set
/// (the blocks held of the paths it covers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Publisher identity, bytes on disk.
    pub publishers: Vec<(String, u64)>,
    /// Set id, paths it covers, bytes of their blocks held here.
    pub sets: Vec<(String, usize, u64)>,
}

/// Measures [`Usage`] now: a walk over each publisher's feed directories
/// (off the async threads) and a count of held blocks per covered path.
pub async fn usage(node: &Node) -> Usage {
    let feeds_dir = node.feeds_dir().to_owned();
    let each = node.publishers().feeds_of_each();
    let publishers = tokio::task::spawn_blocking(move || {
        each.into_iter()
            .map(|(id, feeds)| {
                let bytes = feeds
                    .iter()
                    .map(|k| disk_usage(&feeds_dir.join(hex::encode(k))))
                    .sum();
                (id.to_string(), bytes)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let p = node.publishers();
    let mut sets = Vec::new();
    for s in node.sets().summary() {
        // What the coverage walk (`node/pin.rs`) found it covers.
        let covered = node.sets().covered_of(&s.id);
        let mut bytes = 0u64;
        for path in covered.iter() {
            let (Some((feed, ranges)), Some((_, rec, _))) = (p.ranges(path), p.find(path)) else {
                continue;
            };
            let Some(hub) = node.hub(&feed) else { continue };
            let mut held = 0u64;
            for (start, end) in ranges {
                held += hub.held(start, end).await.unwrap_or(0);
            }
            bytes = bytes.saturating_add(held_bytes(held, &rec));
        }
        sets.push((s.id.to_string(), covered.len(), bytes));
    }
    Usage { publishers, sets }
}

/// How long a measured disk usage is shown before it is measured again
/// (a walk over every feed's files; the page reloads every 5 s).
pub const DISK_USAGE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The disk usage the status page shows, measured at most once per
/// [`DISK_USAGE_TTL`], off the async threads.
#[derive(Debug, Default)]
pub struct DiskUsage(tokio::sync::Mutex<Option<(std::time::Instant, u64, Usage)>>);

impl DiskUsage {
    /// The feeds' total, and per publisher and set.
    pub async fn get(&self, node: &Node) -> (u64, Usage) {
        let mut cached = self.0.lock().await;
        if let Some((at, bytes, usage)) = &*cached {
            if at.elapsed() < DISK_USAGE_TTL {
                return (*bytes, usage.clone());
            }
        }
        let dir = node.feeds_dir().to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || disk_usage(&dir))
            .await
            .unwrap_or(0);
        let per = usage(node).await;
        *cached = Some((std::time::Instant::now(), bytes, per.clone()));
        (bytes, per)
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, so sparse
/// replicas count what they hold).
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
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
        let t0 = 1_795_000_000_000;
        let order = eviction_order(vec![
            (p("new"), Some(t0 + 5000)),
            (p("old"), Some(t0)),
            (p("zz-never"), None),
            (p("aa-never"), None),
        ]);
        let names: Vec<&str> = order.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["aa-never", "zz-never", "old", "new"]);
    }

    #[test]
    fn the_disk_is_measured_on_time_and_sooner_when_what_came_in_could_cross_the_bound() {
        let (s, every) = (Duration::from_secs(1), EVERY);
        // Quiet and under: wait for the period.
        assert!(!measure_due(100, 0, 1000, s, every));
        assert!(measure_due(100, 0, 1000, every, every));
        // Received enough to cross: now, not in ten seconds.
        assert!(!measure_due(600, 400, 1000, s, every));
        assert!(measure_due(600, 401, 1000, s, every));
        // Over with nothing evictable and nothing coming in: stay quiet.
        assert!(!measure_due(5000, 0, 1000, s, every));
        assert!(measure_due(5000, 1, 1000, s, every));
        assert!(measure_due(u64::MAX, u64::MAX, 1000, s, every));
    }
}
