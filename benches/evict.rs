//! How far a bounded disk (`serve --max-size`) goes past its bound while
//! paths arrive as fast as loopback carries them.
//!
//!   cargo bench --bench evict      (HYPERNAR_BENCH_PATHS=8 paths of
//!                                   HYPERNAR_BENCH_MIB=64 MiB, bound
//!                                   HYPERNAR_BENCH_BOUND_MIB=128)
//!
//! A seed and a bounded node on loopback; the node's NARs are read one
//! after another over its HTTP API while a thread samples the size of its
//! feeds every 20 ms. Reports the peak and the final size as ratios to the
//! bound, and what the peak held beyond the bound and the path being sent
//! (which is never evicted under its reader), in seconds of the transfer
//! rate measured in the same run (the node measures its disk as soon as the
//! bytes received could cross the bound, looking every 250 ms).

#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_dir, env_num, http_get as get, keygen};
use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{write_cache, Contents, NixSigningKey, SamplePath};

/// Incompressible bytes (xorshift), so stored size is NAR size.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `hypernar serve` with `args`; its peer address and (unless `--http
/// none`) its HTTP base, read from its first lines on stdout.
fn serve(bin: &str, args: &[&str]) -> (Child, String, Option<String>) {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", "none"])
        .args(common::no_dht())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let word = |line: &str, prefix: &str| {
        line.split_whitespace()
            .find(|w| w.starts_with(prefix))
            .map(|w| w.trim_end_matches(',').to_owned())
    };
    let addr = word(&line, "127.0.0.1:").expect("serve printed no address");
    let http = (!args.contains(&"none")).then(|| {
        line.clear();
        out.read_line(&mut line).unwrap();
        word(&line, "http://").expect("serve printed no HTTP address")
    });
    std::thread::spawn(move || for _ in out.lines() {});
    (child, addr, http)
}

fn main() {
    let (paths, mib, bound_mib) = (
        env_num("HYPERNAR_BENCH_PATHS", 8),
        env_num("HYPERNAR_BENCH_MIB", 64),
        env_num("HYPERNAR_BENCH_BOUND_MIB", 128) as u64,
    );
    let bin = common::hypernar_bin();
    let tmp = bench_dir("evict");
    let root = tmp.path();
    let sample: Vec<SamplePath> = (0..paths)
        .map(|i| SamplePath {
            name: format!("blob-{i}"),
            contents: Contents::RawNar(noise(mib << 20, i as u64 + 1)),
            references: vec![],
            compression: Compression::Zstd,
        })
        .collect();
    let key = NixSigningKey::from_seed("bench-1", [3; 32]);
    let written = write_cache(&root.join("cache"), &sample, &key).unwrap();
    drop(sample);
    let pubkey = root.join("pub.key");
    let id = keygen(bin, &pubkey);
    let seed_data = root.join("seed");
    common::publish(bin, &pubkey, &seed_data, &root.join("cache"), &[]);

    let (mut seed, seed_addr, _) = serve(
        bin,
        &["--data", seed_data.to_str().unwrap(), "--http", "none"],
    );
    let user_data = root.join("user");
    let bound = format!("{bound_mib}M");
    let (mut user, _, http) = serve(
        bin,
        &[
            "--data",
            user_data.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--trust",
            &id,
            "--peer",
            &seed_addr,
            "--max-size",
            &bound,
        ],
    );
    let api = http.expect("the user node's HTTP address");
    let hash = |i: usize| written[i].info.store_path.hash_part().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    while get(&api, &format!("/{}.narinfo", hash(paths - 1))).0 != 200 {
        assert!(Instant::now() < until, "the index never replicated");
        std::thread::sleep(Duration::from_millis(100));
    }

    let feeds = user_data.join("feeds");
    let (peak, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (peak, stop, feeds) = (peak.clone(), stop.clone(), feeds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = hypernar_fetcher::node::evict::disk_usage(&feeds);
                peak.fetch_max(now, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t = Instant::now();
    for (i, w) in written.iter().enumerate() {
        let (status, body) = get(&api, &format!("/{}.narinfo", hash(i)));
        assert_eq!(status, 200);
        let info = hypernar_feed::format::narinfo::NarInfo::parse(&body).unwrap();
        let (status, nar) = get(&api, &format!("/{}", info.url));
        assert!(status == 200 && nar == w.nar, "path {i} came back wrong");
    }
    let took = t.elapsed();
    // Let a last measure and eviction happen.
    std::thread::sleep(Duration::from_secs(12));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let after = hypernar_fetcher::node::evict::disk_usage(&feeds);
    let _ = user.kill();
    let _ = seed.kill();
    let _ = user.wait();
    let _ = seed.wait();

    let max = bound_mib << 20;
    let peak = peak.load(Ordering::Relaxed);
    let total = (paths * mib) as f64;
    let rate = total / took.as_secs_f64();
    let over = peak.saturating_sub(max) as f64 / 1048576.0;
    println!("{paths} paths of {mib} MiB read through a {bound_mib} MiB bound in {took:.1?} ({rate:.0} MiB/s)");
    println!(
        "peak {:.1} MiB = {:.2} × bound; after 12 s {:.1} MiB = {:.2} × bound",
        peak as f64 / 1048576.0,
        peak as f64 / max as f64,
        after as f64 / 1048576.0,
        after as f64 / max as f64
    );
    let beyond = (over - mib as f64).max(0.0);
    println!(
        "beyond the bound and the path being sent: {beyond:.1} MiB = {:.2} s of this run's transfer rate",
        beyond / rate
    );
}
