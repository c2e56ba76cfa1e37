//! The FUSE view's listings at scale: a mount of 100 000 paths (from an
//! in-memory source: listings never read a segment, so the source's bytes
//! do not matter here) against the same names as empty files in a real
//! directory, listed the same way, in the same run.
//!
//!   cargo bench --bench mount            # HYPERNAR_BENCH_PATHS (100000)
//!
//! Needs /dev/fuse and root (or fusermount3).

#![allow(clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_num;
use hypernar_feed::format::listing::Listing;
use hypernar_fuse_store::{PathInfo, Source, SourceError};

/// `n` made-up paths: 32-character hash parts, narinfos of a realistic
/// size (one reference, one signature).
struct Synthetic(Vec<PathInfo>);

impl Source for Synthetic {
    fn generation(&self) -> u64 {
        1
    }
    fn paths(&self) -> Vec<PathInfo> {
        self.0.clone()
    }
    fn segment(&self, _path: &PathInfo, _index: u64) -> Result<Vec<u8>, SourceError> {
        Err("the listing benchmark reads no segment".into())
    }
    fn prefetch(&self, _path: &PathInfo, _from: u64, _to: u64) {}
    fn listing(&self, _path: &PathInfo) -> Result<Arc<Listing>, SourceError> {
        Err("the listing benchmark reads no NAR listing".into())
    }
}

fn hash(i: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 32) as usize] as char
        })
        .collect()
}

/// Lists `dir` and stats `sample` of its entries; returns (entries, list
/// time, stat time).
fn list(dir: &std::path::Path, sample: &[String]) -> (usize, Duration, Duration) {
    let t = Instant::now();
    let n = std::fs::read_dir(dir).unwrap().count();
    let listed = t.elapsed();
    let t = Instant::now();
    for name in sample {
        std::fs::metadata(dir.join(name)).unwrap();
    }
    (n, listed, t.elapsed())
}

fn main() {
    let n = env_num("HYPERNAR_BENCH_PATHS", 100_000);
    if !std::path::Path::new("/dev/fuse").exists() {
        println!("SKIPPED: the mount benchmark needs /dev/fuse");
        return;
    }
    let paths: Vec<PathInfo> = (0..n)
        .map(|i| {
            let h = hash(i);
            let nar_name = format!("{h}-{}.nar", hash(i + n));
            let narinfo = format!(
                "StorePath: /nix/store/{h}-path-{i}\nURL: nar/{nar_name}\nCompression: none\n\
                 NarHash: sha256:{}\nNarSize: {}\nReferences: {}-glibc-2.40\n\
                 Sig: cache.nixos.org-1:{}==\n",
                hash(i + 2 * n),
                4096 + i,
                hash(i + 3 * n),
                "A".repeat(86)
            );
            PathInfo {
                name: format!("{h}-path-{i}"),
                hash: h,
                nar_name,
                narinfo,
                nar_size: 4096 + i as u64,
                segment_size: 256 << 10,
            }
        })
        .collect();
    let sample: Vec<String> = paths
        .iter()
        .step_by((n / 10_000).max(1))
        .map(|p| format!("{}.narinfo", p.hash))
        .collect();
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-bench-mount-")
        .tempdir()
        .unwrap();

    // Baseline: the same names as empty files in a directory here.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    for p in &paths {
        std::fs::File::create(plain.join(format!("{}.narinfo", p.hash))).unwrap();
    }
    let (bn, blist, bstat) = list(&plain, &sample);
    let (_, blist2, bstat2) = list(&plain, &sample);

    let at = tmp.path().join("mnt");
    std::fs::create_dir(&at).unwrap();
    let rss0 = rss();
    let t = Instant::now();
    let m = hypernar_fuse_store::mount(
        Arc::new(Synthetic(paths)),
        &at,
        &hypernar_fuse_store::Options::default(),
    )
    .expect("mount");
    let (mn, mlist, mstat) = list(&at, &sample);
    let first = t.elapsed();
    let (_, mlist2, mstat2) = list(&at, &sample);
    let rss1 = rss();
    drop(m);

    println!("{n} paths; stat of {} narinfos", sample.len());
    println!("| | entries | first listing | second listing | stats, first | stats, second |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| directory of empty files (baseline) | {bn} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
        blist.as_secs_f64(),
        blist2.as_secs_f64(),
        bstat.as_secs_f64(),
        bstat2.as_secs_f64()
    );
    println!(
        "| the FUSE view | {mn} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
        mlist.as_secs_f64(),
        mlist2.as_secs_f64(),
        mstat.as_secs_f64(),
        mstat2.as_secs_f64()
    );
    println!(
        "mount to first listing done: {:.3} s; listing, view / directory = {:.2} (first), {:.2} (second)",
        first.as_secs_f64(),
        mlist.as_secs_f64() / blist.as_secs_f64(),
        mlist2.as_secs_f64() / blist2.as_secs_f64()
    );
    println!(
        "memory of this process for the view's table: {} MiB",
        rss1.saturating_sub(rss0) >> 20
    );
}

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
