//! `hypernar follow` against `nix copy` of the same closure from the same
//! upstream, in one run, and an upstream rate limit held over a minute.
//!
//!   cargo bench --bench follow
//!   HYPERNAR_BENCH_MIB=128 HYPERNAR_BENCH_PATHS=300 HYPERNAR_BENCH_LIMIT_SECS=60 cargo bench --bench follow
//!
//! The closure: `HYPERNAR_BENCH_PATHS` single-file paths cut from this
//! machine's files under /usr (sizes spread from a few KiB to a few MiB, a
//! binary tree of references, the leaves the roots), written as an xz
//! binary cache (as cache.nixos.org's NARs are) signed by a throwaway key,
//! beside a release directory with `store-paths.xz`, served by Debian's
//! nginx on loopback with a 302 channel. Then:
//!
//! 1. `nix copy --from <nginx> --to file://…?compression=none` of the roots
//!    (Nix decompresses every NAR and writes it: the baseline);
//! 2. `hypernar follow --once` into an empty data directory (decompresses,
//!    hashes, compresses with zstd and encrypts every NAR), its peak RSS;
//! 3. the follow again into an empty data directory with
//!    `--max-upstream-rate` set so the download takes a minute: the rate
//!    achieved against the rate asked.
//!
//! Both 1 and 2 are bound by xz decompression on this machine's cores;
//! the ratio is what is compared. Needs nginx; Nix for the baseline.

#![allow(clippy::print_stdout)]

mod common;

use common::{run_peak, Proc};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{nar_of, write_cache, Contents, Entry, NixSigningKey, SamplePath};

/// nginx on 127.0.0.1:`port` serving `root`, `/channel` a 302 to
/// `release`.
fn nginx(root: &Path, work: &Path, port: u16, release: &str) -> Proc {
    let conf = common::nginx_conf(
        work,
        &format!("127.0.0.1:{port}"),
        root,
        "access_log off; sendfile on; keepalive_requests 100000;",
        &format!("location = /channel {{ return 302 /releases/{release}/; }}"),
    );
    let child = Proc(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx)"),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn main() {
    if Command::new("nginx").arg("-v").output().is_err() {
        println!("follow bench: nginx is missing (Debian package nginx); nothing measured");
        return;
    }
    let bin = common::hypernar_bin();
    let mib = common::env_num("HYPERNAR_BENCH_MIB", 128);
    let n = common::env_num("HYPERNAR_BENCH_PATHS", 300).max(2);
    let limit_secs = common::env_num("HYPERNAR_BENCH_LIMIT_SECS", 60) as f64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "follow bench: CPU {}, {} cores, load average before: {}",
        common::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let dir = common::bench_dir("follow");
    let root = dir.path();

    // The closure: sizes spread geometrically, path i referring to
    // path (i - 1) / 2; the leaves are the roots.
    let bytes = common::usr_bytes(&["/usr/lib", "/usr/share", "/usr/bin"], mib << 20);
    let total = bytes.len();
    let weights: Vec<f64> = (0..n).map(|i| 1.03f64.powi((i % 97) as i32)).collect();
    let sum: f64 = weights.iter().sum();
    let mut at = 0usize;
    let mut paths = Vec::with_capacity(n);
    for (i, w) in weights.iter().enumerate() {
        let len = ((total as f64 * w / sum) as usize)
            .max(1024)
            .min(total - at);
        let chunk = bytes[at..at + len].to_vec();
        at += len;
        let nar = nar_of(&Entry::File {
            contents: chunk,
            executable: false,
        })
        .unwrap();
        let refs = if i == 0 {
            vec![]
        } else {
            vec![format!("p{}", (i - 1) / 2)]
        };
        paths.push(SamplePath {
            name: format!("p{i}"),
            contents: Contents::RawNar(nar),
            references: refs,
            compression: Compression::Xz,
        });
    }
    let key = NixSigningKey::from_seed("bench-up-1", [7; 32]);
    let site = root.join("site");
    let t = Instant::now();
    let written = write_cache(&site.join("cache"), &paths, &key).unwrap();
    let xz_bytes: u64 = std::fs::read_dir(site.join("cache/nar"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let nar_bytes: u64 = written.iter().map(|w| w.info.nar_size).sum();
    let roots: Vec<String> = written[n / 2..]
        .iter()
        .map(|w| w.info.store_path.to_string())
        .collect();
    let release = "nixos-bench.1.abcdef0";
    let rel = site.join("releases").join(release);
    std::fs::create_dir_all(&rel).unwrap();
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    for r in &roots {
        writeln!(e, "{r}").unwrap();
    }
    std::fs::write(rel.join("store-paths.xz"), e.finish().unwrap()).unwrap();
    println!(
        "closure: {n} paths, {:.1} MiB of NAR, {:.1} MiB as xz, {} roots (written in {:.1} s)",
        nar_bytes as f64 / 1048576.0,
        xz_bytes as f64 / 1048576.0,
        roots.len(),
        t.elapsed().as_secs_f64()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _nginx = nginx(&site, &root.join("nginx"), port, release);
    let base = format!("http://127.0.0.1:{port}");

    // 1. nix copy, the baseline.
    let nix_copy = if Command::new("nix").arg("--version").output().is_ok() {
        let to = format!(
            "file://{}?compression=none",
            root.join("nix-copy").display()
        );
        let (took, _) = run_peak(
            Command::new("nix")
                .args(["copy", "--from", &format!("{base}/cache"), "--to", &to])
                .args(["--option", "trusted-public-keys", &key.public_text()])
                .args(["--option", "narinfo-cache-negative-ttl", "0"])
                .env(
                    "NIX_CONFIG",
                    "experimental-features = nix-command\nsubstituters =\n",
                )
                .env("XDG_CACHE_HOME", root.join("xdg"))
                .args(&roots),
        );
        println!(
            "nix copy --from nginx --to file://…?compression=none: {:.2} s",
            took.as_secs_f64()
        );
        Some(took)
    } else {
        println!("(no Nix: the nix copy baseline is not measured)");
        None
    };

    // 2. hypernar follow.
    let pubkey = root.join("pub.key");
    common::keygen(bin, &pubkey);
    let follow = |data: &Path, extra: &[&str]| {
        run_peak(
            Command::new(bin)
                .args(["follow", "--once", "--key"])
                .arg(&pubkey)
                .arg("--data")
                .arg(data)
                .args(["--channel", &format!("bench={base}/channel")])
                .args(["--upstream", &format!("{base}/cache")])
                .args(["--trusted-public-key", &key.public_text()])
                .args(extra),
        )
    };
    let (took, rss) = follow(&root.join("data"), &[]);
    println!(
        "hypernar follow --once: {:.2} s ({:.0} MB/s of NAR), peak RSS {rss:.1} MiB",
        took.as_secs_f64(),
        nar_bytes as f64 / took.as_secs_f64() / 1e6
    );
    if let Some(nc) = nix_copy {
        println!(
            "follow / nix copy = {:.2} (target <= 1.2)",
            took.as_secs_f64() / nc.as_secs_f64()
        );
    }

    // 3. The rate limit, over about `limit_secs`.
    let rate = (xz_bytes as f64 / limit_secs) as u64;
    let (took, _) = follow(
        &root.join("data-limited"),
        &["--max-upstream-rate", &rate.to_string()],
    );
    let achieved = xz_bytes as f64 / took.as_secs_f64();
    println!(
        "with --max-upstream-rate {rate} B/s: {:.1} s for {xz_bytes} B of NARs (and a few KB of narinfos): {:.0} B/s, {:.3} of the limit (target 0.9-1.1)",
        took.as_secs_f64(),
        achieved,
        achieved / rate as f64
    );
}
