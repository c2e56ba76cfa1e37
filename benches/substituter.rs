//! The substituter against nginx serving the same closure as static
//! `file://` caches, side by side in one run, in the shape of
//! Mic92/cache-shootout: every narinfo sequentially over one keep-alive
//! connection; every NAR with 1 and with 16 workers, bodies discarded; and
//! the wall time of `nix copy --from` each server into a fresh store.
//!
//!   cargo bench --bench substituter
//!   HYPERNAR_BENCH_MIB=1024 HYPERNAR_BENCH_PATHS=300 HYPERNAR_BENCH_XZ=0 \
//!     HYPERNAR_BENCH_WEB_MBIT=200 cargo bench --bench substituter
//!
//! The closure is made of this machine's files under /usr (one path per
//! file, in a fixed order, until the budget), each a single-file NAR
//! signed by a throwaway Nix key. Servers: hypernar with every block local
//! (the publisher's own data directory); nginx on the caches uncompressed,
//! zstd and xz (-6, as Nix writes it); and, as root, in network
//! namespaces: hypernar whose blocks are on one peer in another namespace,
//! and hypernar with no peer at all reading a web seed from nginx in
//! another namespace over a link shaped with `tc tbf`, against downloading
//! the same web-seed files from the same nginx directly over that link.
//! Rows that move blocks start a fresh `serve` (an empty data directory)
//! for each measurement. Needs Debian's nginx, Nix for the `nix copy`
//! column, and root with iproute2 for the namespace rows.

#![allow(clippy::print_stdout)]

mod common;
#[path = "substituter/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_num;
use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{self, Contents, Entry, NixSigningKey, SamplePath, WrittenPath};
use servers::*;

/// Files of at least 4 KiB under `dirs`, until `budget` bytes or `max`
/// files, shaped like a closure (see below).
fn usr_files(dirs: &[&str], budget: u64, max: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.len() >= 4096 && m.len() <= 256 << 20 {
                files.push((p, m.len()));
            }
        }
    }
    // A closure's shape: a few large paths carry most bytes (about 70 %
    // here), many small ones the rest. The largest files first, then
    // every k-th of the others, for a spread of sizes and directories.
    files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen = Vec::new();
    let mut used = 0u64;
    let mut rest = Vec::new();
    for (p, len) in files {
        if used + len <= budget * 7 / 10 && chosen.len() < max / 10 {
            used += len;
            chosen.push((p, len));
        } else {
            rest.push((p, len));
        }
    }
    rest.sort();
    let room = max.saturating_sub(chosen.len()).max(1);
    let step = (rest.len() / room).max(1);
    chosen.extend(rest.into_iter().step_by(step));
    let mut out = Vec::new();
    let mut used = 0u64;
    for (p, len) in chosen {
        if used + len > budget || out.len() >= max {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        used += len;
        let name: String = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+-._?=".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        out.push((format!("f{}-{name}", out.len()), bytes));
    }
    out
}

struct Row {
    name: String,
    narinfo: Duration,
    nar1: Duration,
    nar16: Duration,
    nix_copy: Option<Duration>,
}

async fn narinfos(client: &reqwest::Client, base: &str, paths: &[WrittenPath]) -> Vec<String> {
    let mut urls = Vec::new();
    for p in paths {
        let text = client
            .get(format!("{base}/{}.narinfo", p.info.store_path.hash_part()))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("URL: "))
            .unwrap()
            .to_owned();
        urls.push(url);
    }
    urls
}

/// GETs `base/url` for every one of `urls` with `workers` connections;
/// returns the bytes received.
async fn nars(client: &reqwest::Client, base: &str, urls: Arc<Vec<String>>, workers: usize) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(url) = urls.get(i) else { break };
                let mut resp = client
                    .get(format!("{base}/{url}"))
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap();
                while let Some(chunk) = resp.chunk().await.unwrap() {
                    bytes += chunk.len() as u64;
                }
            }
            bytes
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

fn nix_copy(base: &str, paths: &[WrittenPath], key: &str, work: &Path) -> Option<Duration> {
    if Command::new("nix").arg("--version").output().is_err() {
        return None;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let store = work.join(format!("store-{n}"));
    let mut cmd = Command::new("nix");
    cmd.args(["copy", "--from", base, "--to"])
        .arg(&store)
        .args([
            "--option",
            "trusted-public-keys",
            key,
            "--option",
            "narinfo-cache-negative-ttl",
            "0",
            "--option",
            "narinfo-cache-positive-ttl",
            "0",
        ])
        .env(
            "NIX_CONFIG",
            "experimental-features = nix-command\nsubstituters =\nsandbox = false",
        )
        .env("XDG_CACHE_HOME", work.join("xdg"))
        .stdout(Stdio::null());
    for p in paths {
        cmd.arg(p.info.store_path.as_str());
    }
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "nix copy --from {base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&store);
    Some(took)
}

/// A server under test: one for the whole row, or a fresh substituter
/// for each measurement that moves blocks.
enum Server<'a> {
    Fixed { base: String, pid: Option<u32> },
    Fresh(Box<dyn Fn() -> Sub + 'a>),
}

struct Measured {
    row: Row,
    peak_rss: Option<u64>,
    /// Bytes over the web seed's link during the 16-worker run.
    web_bytes: u64,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    name: &str,
    server: &Server,
    written: &[WrittenPath],
    nix_key: &str,
    work: &Path,
) -> Measured {
    let fresh = || match server {
        Server::Fixed { base, pid } => (base.clone(), *pid, None),
        Server::Fresh(start) => {
            let sub = start();
            (sub.base.clone(), Some(sub.pid), Some(sub))
        }
    };
    let (base, _, sub) = fresh();
    // The median of 5 rounds: one round is ~50 ms, noisy here.
    let (narinfo, urls) = rt.block_on(async {
        let mut times = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            urls = narinfos(client, &base, written).await;
            times.push(t.elapsed());
        }
        times.sort();
        (times[2], Arc::new(urls))
    });
    let nar1 = rt.block_on(async {
        let t = Instant::now();
        nars(client, &base, urls.clone(), 1).await;
        t.elapsed()
    });
    drop(sub);
    let (base, pid, sub) = fresh();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = pid.map(|pid| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    });
    let rx0 = Namespaces::web_rx();
    let nar16 = rt.block_on(async {
        let t = Instant::now();
        nars(client, &base, urls.clone(), 16).await;
        t.elapsed()
    });
    let web_bytes = Namespaces::web_rx() - rx0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_rss = sampler.map(|s| s.join().unwrap());
    drop(sub);
    let (base, _, sub) = fresh();
    let nix_copy = nix_copy(&base, written, nix_key, work);
    drop(sub);
    println!(
        "  measured {name}: narinfos {:.3} s, NARs 1 worker {:.2} s, 16 workers {:.2} s, nix copy {}, peak RSS {}, {} MiB over the web-seed link",
        narinfo.as_secs_f64(),
        nar1.as_secs_f64(),
        nar16.as_secs_f64(),
        nix_copy.map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        peak_rss.map_or("—".into(), |b| format!("{} MiB", b >> 20)),
        web_bytes >> 20
    );
    Measured {
        row: Row {
            name: name.to_owned(),
            narinfo,
            nar1,
            nar16,
            nix_copy,
        },
        peak_rss,
        web_bytes,
    }
}

/// Writes `paths` (no references between them) as a cache in `dir`, with
/// one thread per core (dealt round-robin, as the largest paths come
/// first): xz -6 over a GiB takes minutes on one.
fn write_cache_parallel(dir: &Path, paths: &[SamplePath], key: &NixSigningKey) -> Vec<WrittenPath> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut parts: Vec<Vec<SamplePath>> = vec![Vec::new(); threads];
    for (i, p) in paths.iter().enumerate() {
        parts[i % threads].push(p.clone());
    }
    let written: Vec<Vec<WrittenPath>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| scope.spawn(move || sample::write_cache(dir, part, key).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Back in the order of `paths`.
    let mut iters: Vec<_> = written.into_iter().map(|w| w.into_iter()).collect();
    (0..paths.len())
        .map(|i| iters[i % threads].next().unwrap())
        .collect()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn main() {
    let mib = env_num("HYPERNAR_BENCH_MIB", 1024) as u64;
    let max_paths = env_num("HYPERNAR_BENCH_PATHS", 300);
    let with_xz = env_num("HYPERNAR_BENCH_XZ", 1) == 1;
    let web_mbit = env_num("HYPERNAR_BENCH_WEB_MBIT", 200);
    let bin = common::hypernar_bin();
    let tmp = common::bench_dir("subst");
    let root = tmp.path();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let netns = is_root && Command::new("ip").arg("-V").output().is_ok();

    let files = usr_files(
        &["/usr/lib", "/usr/bin", "/usr/share"],
        mib << 20,
        max_paths,
    );
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    println!(
        "closure: {} paths, {:.1} MiB of files from /usr",
        files.len(),
        total as f64 / 1048576.0
    );
    let key = NixSigningKey::from_seed("bench-cache-1", [9; 32]);
    let mut caches: Vec<(&str, Compression)> =
        vec![("none", Compression::None), ("zstd", Compression::Zstd)];
    if with_xz {
        caches.push(("xz", Compression::Xz));
    }
    let mut written = Vec::new();
    for (label, c) in &caches {
        let paths: Vec<SamplePath> = files
            .iter()
            .map(|(name, bytes)| SamplePath {
                name: name.clone(),
                contents: Contents::Tree(Entry::File {
                    contents: bytes.clone(),
                    executable: false,
                }),
                references: vec![],
                compression: *c,
            })
            .collect();
        let t = Instant::now();
        written = write_cache_parallel(&root.join(format!("cache-{label}")), &paths, &key);
        println!(
            "  wrote the {label} cache in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let probe = written.clone();

    // Publish the uncompressed cache, with a web seed; serve it with every
    // block local.
    let pkey = root.join("pub.key");
    let id = common::keygen(bin, &pkey);
    let data = root.join("data");
    let web = root.join("web");
    let (_, took) = common::publish(
        bin,
        &pkey,
        &data,
        &root.join("cache-none"),
        &["--web-seed".as_ref(), web.as_os_str()],
    );
    println!("  published in {:.1} s", took.as_secs_f64());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let nix_key = key.public_text();
    let mut results = Vec::new();
    {
        // The publisher's own data directory (kept: it has `staging/`).
        let local = start_sub(&rt, &client, data.clone(), &["--trust", &id], &probe);
        let server = Server::Fixed {
            base: local.base.clone(),
            pid: Some(local.pid),
        };
        results.push(measure(
            &rt,
            &client,
            "hypernar (blocks local)",
            &server,
            &written,
            &nix_key,
            root,
        ));
    }
    for (label, _) in &caches {
        let port = free_port();
        let _nginx = nginx(
            &root.join(format!("cache-{label}")),
            &root.join(format!("nginx-{label}")),
            "127.0.0.1",
            port,
            None,
        );
        let server = Server::Fixed {
            base: format!("http://127.0.0.1:{port}"),
            pid: None,
        };
        results.push(measure(
            &rt,
            &client,
            &format!("nginx, {label}"),
            &server,
            &written,
            &nix_key,
            root,
        ));
    }

    let mut direct: Option<(Duration, u64)> = None;
    if netns {
        let _ns = Namespaces::new(web_mbit);
        let seed = Kill(
            Command::new("ip")
                .args(["netns", "exec", NS_PEER, bin, "serve"])
                .args(common::no_dht())
                .arg("--data")
                .arg(&data)
                .args(["--listen", &format!("{PEER_IP}:7469"), "--http", "none"])
                .args(["--upstream", "none", "--trust", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect((PEER_IP, 7469)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let n = std::sync::atomic::AtomicUsize::new(0);
        let fresh_dir = || {
            root.join(format!(
                "sub-{}",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ))
        };
        let peer = format!("{PEER_IP}:7469");
        let server = Server::Fresh(Box::new(|| {
            start_sub(
                &rt,
                &client,
                fresh_dir(),
                &["--trust", &id, "--peer", &peer],
                &probe,
            )
        }));
        results.push(measure(
            &rt,
            &client,
            "hypernar (blocks on a peer in another netns)",
            &server,
            &written,
            &nix_key,
            root,
        ));
        drop(seed);

        let _web_nginx = nginx(
            &web,
            &root.join("nginx-web"),
            WEB_IP,
            WEB_PORT,
            Some(NS_WEB),
        );
        let web_url = format!("http://{WEB_IP}:{WEB_PORT}");
        // The baseline: every file of the web seed, one connection.
        let files = Arc::new(files_under(&web));
        direct = Some(rt.block_on(async {
            let t = Instant::now();
            let bytes = nars(&client, &web_url, files.clone(), 1).await;
            (t.elapsed(), bytes)
        }));
        if let Some((d, bytes)) = direct {
            println!(
                "  the web seed's files directly, 1 connection: {:.2} s, {} MiB",
                d.as_secs_f64(),
                bytes >> 20
            );
        }
        let server = Server::Fresh(Box::new(|| {
            start_sub(
                &rt,
                &client,
                fresh_dir(),
                &["--trust", &id, "--web-seed", &web_url],
                &probe,
            )
        }));
        results.push(measure(
            &rt,
            &client,
            &format!("hypernar (no peer; web seed over {web_mbit} Mbit/s)"),
            &server,
            &written,
            &nix_key,
            root,
        ));
    } else {
        println!("SKIPPED: the rows in network namespaces need root and iproute2 (ip netns, tc)");
    }

    let n = written.len() as f64;
    println!();
    println!("| server | {} narinfos, 1 connection (median of 5) | NARs, 1 worker | NARs, 16 workers | nix copy --from |", written.len());
    println!("|---|---|---|---|---|");
    for m in &results {
        let r = &m.row;
        println!(
            "| {} | {:.3} s ({:.0} µs each) | {:.2} s ({:.0} MB/s of NAR) | {:.2} s ({:.0} MB/s of NAR) | {} |",
            r.name,
            r.narinfo.as_secs_f64(),
            r.narinfo.as_secs_f64() / n * 1e6,
            r.nar1.as_secs_f64(),
            total as f64 / r.nar1.as_secs_f64() / 1e6,
            r.nar16.as_secs_f64(),
            total as f64 / r.nar16.as_secs_f64() / 1e6,
            r.nix_copy
                .map_or("—".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
    }
    let find = |label: &str| {
        results
            .iter()
            .map(|m| &m.row)
            .find(|r| r.name.contains(label))
    };
    let h = &results[0].row;
    println!();
    if let Some(none) = find("nginx, none") {
        println!(
            "narinfo round trips: hypernar / nginx static = {:.2} (target <= 1.5)",
            h.narinfo.as_secs_f64() / none.narinfo.as_secs_f64()
        );
        if let (Some(a), Some(b)) = (h.nix_copy, none.nix_copy) {
            println!(
                "nix copy: hypernar / nginx uncompressed = {:.2}",
                a.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    for label in ["nginx, zstd", "nginx, xz"] {
        if let Some(z) = find(label) {
            if let (Some(a), Some(b)) = (h.nix_copy, z.nix_copy) {
                println!(
                    "nix copy: hypernar / {label} = {:.2}{}",
                    a.as_secs_f64() / b.as_secs_f64(),
                    if label.ends_with("zstd") {
                        " (target <= 1.3)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    if let (Some(p), Some(z)) = (find("on a peer"), find("nginx, zstd")) {
        if let (Some(a), Some(b)) = (p.nix_copy, z.nix_copy) {
            println!(
                "nix copy: hypernar (blocks on a peer) / nginx+zstd = {:.2}",
                a.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    if let (Some((d, bytes)), Some(m)) = (
        direct,
        results.iter().find(|m| m.row.name.contains("web seed")),
    ) {
        println!(
            "web seed over {web_mbit} Mbit/s: the same files from the same nginx directly, 1 connection: {:.2} s ({} MiB)",
            d.as_secs_f64(),
            bytes >> 20
        );
        println!(
            "web seed: hypernar NARs, 16 workers / direct download = {:.2} (target <= 1.1); {} MiB over the link",
            m.row.nar16.as_secs_f64() / d.as_secs_f64(),
            m.web_bytes >> 20
        );
        println!(
            "web seed: hypernar NARs, 1 worker / direct download = {:.2}",
            m.row.nar1.as_secs_f64() / d.as_secs_f64()
        );
    }
    for m in &results {
        if let Some(peak) = m.peak_rss {
            println!(
                "{}: serve RSS during the 16-worker run: peak {} MiB (target <= 128)",
                m.row.name,
                peak >> 20
            );
        }
    }
}
