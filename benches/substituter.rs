//! The substituter against nginx serving the same closure as static
//! `file://` caches, side by side in one run, in the shape of
//! Mic92/cache-shootout: every narinfo sequentially over one keep-alive
//! connection; every NAR with 1 and with 16 workers, bodies discarded; and
//! the wall time of `nix copy --from` each server into a fresh store.
//!
//!   cargo bench --bench substituter
//!   HYPERNAR_BENCH_MIB=1024 HYPERNAR_BENCH_PATHS=300 HYPERNAR_BENCH_XZ=1 cargo bench --bench substituter
//!
//! The closure is made of this machine's files under /usr (one path per
//! file, in a fixed order, until the budget), each a single-file NAR
//! signed by a throwaway Nix key. hypernar serves it with every block
//! local (the publisher's own data directory). Needs Debian's nginx, and
//! Nix for the `nix copy` column.

#![allow(clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_num;
use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{self, Contents, NixSigningKey, Node, SamplePath, WrittenPath};

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

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx on 127.0.0.1:`port` serving `root`.
fn nginx(root: &Path, work: &Path, port: u16) -> Kill {
    std::fs::create_dir_all(work).unwrap();
    let d = work.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1;\n\
         error_log {d}/error.log; pid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on;\n\
           client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
           uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
           keepalive_requests 100000; default_type application/octet-stream;\n\
           server {{ listen 127.0.0.1:{port}; root {}; }} }}\n",
        root.display()
    );
    std::fs::write(work.join("nginx.conf"), conf).unwrap();
    let child = Kill(
        Command::new("nginx")
            .args(["-c", &format!("{d}/nginx.conf"), "-p", &d.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nginx did not start on {port}");
}

fn free_port() -> u16 {
    // The bench runs alone; a port picked this way is good enough here.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
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
        urls.push(format!("{base}/{url}"));
    }
    urls
}

async fn nars(client: &reqwest::Client, urls: Arc<Vec<String>>, workers: usize) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(url) = urls.get(i) else { break };
                let mut resp = client
                    .get(url)
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
    let store = work.join(format!("store-{}", base.rsplit(':').next().unwrap()));
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

fn main() {
    let mib = env_num("HYPERNAR_BENCH_MIB", 1024) as u64;
    let max_paths = env_num("HYPERNAR_BENCH_PATHS", 300);
    let with_xz = env_num("HYPERNAR_BENCH_XZ", 1) == 1;
    let bin = env!("CARGO_BIN_EXE_hypernar");
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-bench-subst-")
        .tempdir()
        .unwrap();
    let root = tmp.path();

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
                contents: Contents::Tree(Node::File {
                    contents: bytes.clone(),
                    executable: false,
                }),
                references: vec![],
                compression: *c,
            })
            .collect();
        let t = Instant::now();
        written = sample::write_cache(&root.join(format!("cache-{label}")), &paths, &key).unwrap();
        println!(
            "  wrote the {label} cache in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    // Publish the uncompressed cache; serve it with every block local.
    let pkey = root.join("pub.key");
    let id = common::keygen(bin, &pkey);
    let data = root.join("data");
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["publish", "--all", "--key"])
        .arg(&pkey)
        .arg("--data")
        .arg(&data)
        .arg("--from")
        .arg(format!("file://{}", root.join("cache-none").display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("  published in {:.1} s", t.elapsed().as_secs_f64());
    let mut serve = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--upstream", "none", "--trust", &id, "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(serve.stdout.take().unwrap()));
    let hypernar_base = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l.split_whitespace().find(|w| w.starts_with("http://")) {
            break u.to_owned();
        }
    };
    let serve_pid = serve.id();
    let _serve = Kill(serve);

    let mut servers: Vec<(String, String, Option<Kill>)> =
        vec![("hypernar (blocks local)".into(), hypernar_base, None)];
    for (label, _) in &caches {
        let port = free_port();
        let k = nginx(
            &root.join(format!("cache-{label}")),
            &root.join(format!("nginx-{label}")),
            port,
        );
        servers.push((
            format!("nginx, {label}"),
            format!("http://127.0.0.1:{port}"),
            Some(k),
        ));
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    // hypernar answers narinfos as soon as its index is read.
    rt.block_on(async {
        let p = &written[written.len() - 1];
        for _ in 0..200 {
            let r = client
                .get(format!(
                    "{}/{}.narinfo",
                    servers[0].1,
                    p.info.store_path.hash_part()
                ))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut rows = Vec::new();
    let mut peak_rss = 0;
    for (name, base, _) in &servers {
        // The median of 5 rounds: one round is ~50 ms, noisy here.
        let (narinfo, urls) = rt.block_on(async {
            let mut times = Vec::new();
            let mut urls = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                urls = narinfos(&client, base, &written).await;
                times.push(t.elapsed());
            }
            times.sort();
            (times[2], Arc::new(urls))
        });
        let nar1 = rt.block_on(async {
            let t = Instant::now();
            nars(&client, urls.clone(), 1).await;
            t.elapsed()
        });
        let watching = name.starts_with("hypernar");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = watching.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss(serve_pid));
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        });
        let nar16 = rt.block_on(async {
            let t = Instant::now();
            nars(&client, urls.clone(), 16).await;
            t.elapsed()
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = sampler {
            peak_rss = s.join().unwrap();
        }
        let nix_copy = nix_copy(base, &written, &key.public_text(), root);
        rows.push(Row {
            name: name.clone(),
            narinfo,
            nar1,
            nar16,
            nix_copy,
        });
    }

    let n = written.len() as f64;
    println!();
    println!("| server | {} narinfos, 1 connection (median of 5) | NARs, 1 worker | NARs, 16 workers | nix copy --from |", written.len());
    println!("|---|---|---|---|---|");
    for r in &rows {
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
    let find = |label: &str| rows.iter().find(|r| r.name.ends_with(label));
    let h = &rows[0];
    println!();
    if let Some(none) = find(", none") {
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
    if let Some(z) = find(", zstd") {
        if let (Some(a), Some(b)) = (h.nix_copy, z.nix_copy) {
            println!(
                "nix copy: hypernar / nginx+zstd = {:.2} (target <= 1.3)",
                a.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    println!(
        "hypernar serve RSS during the 16-worker run: peak {} MiB (target <= 128)",
        peak_rss >> 20
    );
}
