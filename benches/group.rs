//! Ten machines in one group on one LAN substitute the same closure one
//! after another (issue 24, item 7): how many bytes the upstream serves
//! (target: the closure once, not ten times) and how long the last
//! machine takes against the first.
//!
//! Network namespaces on one bridge, every link shaped with `tc tbf`
//! (default 1 Gbit/s each way): host 0 runs nginx as the upstream (a cache
//! of single-file NARs of real /usr bytes, zstd, signed by a test key
//! playing cache.nixos.org-1), hosts 1..=N each run `serve --group` with
//! that upstream, meeting by mDNS. Fetcher i asks its own serve (on its
//! loopback, as Nix would) for every narinfo and NAR of the closure,
//! checking each NAR's SHA-256; the next starts once fetcher 1 has kept
//! the closure. Needs root (`ip netns`, `tc`) and nginx.
//!
//!   cargo bench --bench group
//!   HYPERNAR_GROUP_FETCHERS=10 HYPERNAR_GROUP_MIB=200 HYPERNAR_GROUP_PATHS=8 \
//!   HYPERNAR_GROUP_RATE_MBIT=1000 cargo bench --bench group

#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_model, env_num, link_bytes, sh, sh_quiet, usr_bytes, Kill};
use hypernar_feed::format::narinfo::{Compression, NarInfo};
use hypernar_publisher::sample::{self, Contents, Entry, NixSigningKey, SamplePath};
use sha2::{Digest, Sha256};

const PREFIX: &str = "hngr";

fn ns(i: usize) -> String {
    format!("{PREFIX}{i}")
}

fn ip(i: usize) -> String {
    format!("198.18.2.{}", 10 + i)
}

fn cleanup(hosts: usize) {
    for i in 0..hosts + 2 {
        sh_quiet(&format!("ip netns del {}", ns(i)));
    }
    sh_quiet(&format!("ip netns del {PREFIX}br"));
}

/// Bytes host `i` sent on its link.
fn tx_bytes(i: usize) -> u64 {
    link_bytes(&ns(i), "tx")
}

/// The machine's busy and total jiffies (/proc/stat, all CPUs).
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// `curl` inside host `i`'s namespace: the body, or why not.
fn get(i: usize, url: &str) -> Result<Vec<u8>, String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns(i),
            "curl",
            "-sf",
            "--max-time",
            "600",
            url,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("curl {url}: exit {:?}", out.status.code()))
    }
}

fn main() {
    let fetchers = env_num("HYPERNAR_GROUP_FETCHERS", 10);
    let mib = env_num("HYPERNAR_GROUP_MIB", 200);
    let n_paths = env_num("HYPERNAR_GROUP_PATHS", 8).max(1);
    let mbit = env_num("HYPERNAR_GROUP_RATE_MBIT", 1000);
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !is_root || Command::new("nginx").arg("-v").output().is_err() {
        println!("SKIPPED: the group benchmark needs root (ip netns, tc) and nginx");
        return;
    }
    let bin = common::hypernar_bin();
    let tmp = common::bench_dir("group");
    // HYPERNAR_GROUP_KEEP=1: keep the data and logs (the path is printed).
    let kept = std::env::var_os("HYPERNAR_GROUP_KEEP").map(|_| {
        let p = tmp.path().to_owned();
        println!("keeping {}", p.display());
        p
    });
    let root = tmp.path();

    // The closure: single-file NARs of real bytes, zstd, signed.
    let bytes = usr_bytes(&["/usr/lib", "/usr/bin", "/usr/share"], mib << 20);
    let per = bytes.len().div_ceil(n_paths);
    let paths: Vec<SamplePath> = bytes
        .chunks(per)
        .enumerate()
        .map(|(i, c)| SamplePath {
            name: format!("group-bench-{i}"),
            contents: Contents::Tree(Entry::File {
                contents: c.to_vec(),
                executable: false,
            }),
            references: vec![],
            compression: Compression::Zstd,
        })
        .collect();
    let nix_key = NixSigningKey::from_seed("cache-test-1", [7; 32]);
    let cache = root.join("cache");
    let written = sample::write_cache(&cache, &paths, &nix_key).unwrap();
    let closure_file: u64 = written.iter().map(|w| w.info.file_size.unwrap_or(0)).sum();
    let closure_nar: u64 = written.iter().map(|w| w.nar.len() as u64).sum();

    // The network: host 0 the upstream, 1..=fetchers the members.
    cleanup(fetchers);
    sh(&format!("ip netns add {PREFIX}br && ip -n {PREFIX}br link add br0 type bridge && ip -n {PREFIX}br link set br0 up"));
    for i in 0..=fetchers {
        let n = ns(i);
        sh(&format!(
            "ip netns add {n} && ip link add eth0 netns {n} type veth peer name vg{i} netns {PREFIX}br && \
             ip -n {n} addr add {}/24 dev eth0 && ip -n {n} link set eth0 up && ip -n {n} link set lo up && \
             ip -n {PREFIX}br link set vg{i} master br0 up && \
             ip netns exec {n} tc qdisc add dev eth0 root tbf rate {mbit}mbit burst 1mb latency 100ms && \
             ip netns exec {PREFIX}br tc qdisc add dev vg{i} root tbf rate {mbit}mbit burst 1mb latency 100ms",
            ip(i)
        ));
    }
    let mut procs = Kill(Vec::new());
    let ngx = root.join("nginx");
    let conf = common::nginx_conf(
        &ngx,
        &format!("{}:8080", ip(0)),
        &cache,
        &format!("access_log {}/access.log;", ngx.display()),
        "",
    );
    procs.0.push(
        Command::new("ip")
            .args(["netns", "exec", &ns(0), "nginx", "-c"])
            .arg(&conf)
            .args(["-p"])
            .arg(&ngx)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let upstream = format!("http://{}:8080", ip(0));
    let until = Instant::now() + Duration::from_secs(10);
    while get(1, &format!("{upstream}/nix-cache-info")).is_err() {
        assert!(Instant::now() < until, "nginx did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let group = String::from_utf8(
        Command::new(bin)
            .args(["group", "new"])
            .stderr(Stdio::null())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let key = nix_key.public_text();
    let run = Run {
        bin,
        root,
        fetchers,
        upstream: &upstream,
        key: &key,
        written: &written,
    };
    // The baseline, in the same run: the same machines without a group,
    // each pulling the closure through from the upstream.
    println!("without a group (--no-keep):");
    let alone = run.measure(None);
    println!("in one group:");
    let (busy0, total0) = cpu_jiffies();
    let grouped = run.measure(Some(&group));
    let (busy1, total1) = cpu_jiffies();
    drop(procs);
    cleanup(fetchers);
    if kept.is_some() {
        std::mem::forget(tmp);
    }
    let Measured {
        upstream_sent,
        walls,
        keep_lag,
    } = grouped;

    let first = walls[0].as_secs_f64();
    let last = walls.last().unwrap().as_secs_f64();
    let rest: Vec<f64> = walls[1..].iter().map(Duration::as_secs_f64).collect();
    println!();
    println!(
        "group of {fetchers} on one bridge, {mbit} Mbit/s links each way; closure of {} paths, {:.1} MiB NAR, {:.1} MiB as the upstream serves it (zstd)",
        written.len(),
        closure_nar as f64 / 1048576.0,
        closure_file as f64 / 1048576.0
    );
    println!(
        "CPU: {}; the machine was {:.0} % busy over the fetches ({} cores)",
        cpu_model(),
        100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "fetcher 1 kept the closure {:.1} s after it had it",
        keep_lag.as_secs_f64()
    );
    println!();
    let mut sorted = rest.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(first);
    let alone_mean =
        alone.walls.iter().map(Duration::as_secs_f64).sum::<f64>() / alone.walls.len() as f64;
    println!(
        "without a group: upstream sent {:.2} × the closure; each fetcher {alone_mean:.1} s on average",
        alone.upstream_sent as f64 / closure_file as f64
    );
    println!();
    println!("| fetchers | upstream sent / closure: group (target 1.0) | the same, no group | first fetcher (s) | later fetchers (s): median, last | last / first | last / a fetcher with no group |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {fetchers} | {:.2} | {:.2} | {first:.1} | {median:.1}, {last:.1} | {:.2} | {:.2} |",
        upstream_sent as f64 / closure_file as f64,
        alone.upstream_sent as f64 / closure_file as f64,
        last / first,
        last / alone_mean
    );
}

/// One configuration's serves and fetches.
struct Run<'a> {
    bin: &'a str,
    root: &'a std::path::Path,
    fetchers: usize,
    upstream: &'a str,
    key: &'a str,
    written: &'a [sample::WrittenPath],
}

struct Measured {
    upstream_sent: u64,
    walls: Vec<Duration>,
    keep_lag: Duration,
}

impl Run<'_> {
    /// Starts a serve per fetcher (in `group`, or keeping nothing), lets
    /// each fetch the closure in turn (the next once the first has kept
    /// it), stops them.
    fn measure(&self, group: Option<&str>) -> Measured {
        let (bin, root) = (self.bin, self.root);
        let tag = if group.is_some() { "g" } else { "n" };
        let mut procs = Kill(Vec::new());
        for i in 1..=self.fetchers {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns(i), bin, "serve"])
                .args(common::no_dht())
                .arg("--data")
                .arg(root.join(format!("{tag}{i}")))
                .args(["--listen", &format!("{}:7469", ip(i))])
                .args(["--http", "127.0.0.1:7470", "--upstream", self.upstream])
                .args(["--trusted-public-key", self.key]);
            match group {
                Some(g) => cmd.args(["--group", g]),
                None => cmd.arg("--no-keep"),
            };
            let mut serve = cmd
                .env(
                    "RUST_LOG",
                    "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info",
                )
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(root.join(format!("{tag}{i}.log"))).unwrap())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
            let _ = lines.next();
            let _ = lines.next();
            procs.0.push(serve);
        }
        // Members meet by mDNS.
        std::thread::sleep(Duration::from_secs(3));
        let up0 = tx_bytes(0);
        let mut walls = Vec::new();
        let mut keep_lag = Duration::ZERO;
        for i in 1..=self.fetchers {
            let t = Instant::now();
            for w in self.written {
                let hash = w.info.store_path.hash_part();
                let api = "http://127.0.0.1:7470";
                let narinfo = get(i, &format!("{api}/{hash}.narinfo")).unwrap_or_else(|e| {
                    panic!(
                        "fetcher {i}: {e}; see {}",
                        root.join(format!("{tag}{i}.log")).display()
                    )
                });
                let url = NarInfo::parse(&narinfo).unwrap().url;
                let nar = get(i, &format!("{api}/{url}")).unwrap();
                assert!(
                    Sha256::digest(&nar).as_slice() == Sha256::digest(&w.nar).as_slice(),
                    "fetcher {i}: {} differs",
                    w.info.store_path
                );
            }
            walls.push(t.elapsed());
            println!(
                "  fetcher {i}: {:.1} s, upstream has sent {:.1} MiB so far",
                t.elapsed().as_secs_f64(),
                (tx_bytes(0) - up0) as f64 / 1048576.0
            );
            if i == 1 && group.is_some() {
                // The next machine comes once the first has kept the closure.
                let t = Instant::now();
                let want = format!("{} kept", self.written.len());
                let until = Instant::now() + Duration::from_secs(600);
                loop {
                    let out = Command::new(bin)
                        .args(["status", "--data"])
                        .arg(root.join(format!("{tag}1")))
                        .output()
                        .unwrap();
                    if String::from_utf8_lossy(&out.stdout).contains(&want) {
                        break;
                    }
                    assert!(Instant::now() < until, "fetcher 1 never kept the closure");
                    std::thread::sleep(Duration::from_millis(100));
                }
                keep_lag = t.elapsed();
            }
        }
        Measured {
            upstream_sent: tx_bytes(0) - up0,
            walls,
            keep_lag,
        }
    }
}
