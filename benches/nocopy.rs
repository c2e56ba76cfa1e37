//! No second copy (issue 24, item 4): after Nix has imported a closure
//! that a node pulled through, how much of it the node's data directory
//! still holds (target: at most 5 % of the closure's NAR size), and
//! whether a group member still fetches every path from it.
//!
//! Real Nix builds a closure of HYPERNAR_NOCOPY_PATHS paths of random
//! bytes (HYPERNAR_NOCOPY_MIB in all, default 1024), signs it and copies it
//! into a zstd file cache that nginx serves on loopback as the upstream.
//! Node A (`serve --group`, `--nix-store` a chroot store) is Nix's
//! substituter for `nix copy` of the closure into that store; A keeps it
//! and, at its next store check, drops the blocks. The upstream is
//! stopped; node B, a member of the same group, is the substituter for a
//! second `nix copy` into another store: every NAR from A, made again from
//! A's store and checked against A's feed. Needs nix-bin and nginx.
//!
//!   cargo bench --bench nocopy
//!   HYPERNAR_NOCOPY_MIB=1024 HYPERNAR_NOCOPY_PATHS=8 cargo bench --bench nocopy
//!   HYPERNAR_NOCOPY_KEEP=1 ...   (leaves its directory, with the nodes' logs)
//!   HYPERNAR_NOCOPY_KEEP_BLOCKS=1 ...   (the baseline: A keeps a second copy)

#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_model, env_num, hypernar_bin, Kill};

const NIX_CONFIG: &str = "sandbox = false\nsubstituters =\nexperimental-features = nix-command\n";

fn nix(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Bytes the files under `dir` take on disk (allocated blocks: the holes
/// dropped blocks leave do not count).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        total += m.blocks() * 512;
        if m.is_dir() {
            total += disk_bytes(&e.path());
        }
    }
    total
}

/// Starts `hypernar serve`; returns it and its HTTP address.
fn serve(data: &Path, args: &[&str], procs: &mut Kill) -> String {
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    let mut child = Command::new(hypernar_bin())
        .args(["serve", "--data"])
        .arg(data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--no-dht",
            "--no-mdns",
        ])
        .args(args)
        .env("RUST_LOG", "hypernar=info,hypernar_fetcher=info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = String::new();
    out.read_line(&mut addr).unwrap();
    let mut http = String::new();
    out.read_line(&mut http).unwrap();
    procs.0.push(child);
    std::mem::forget(out);
    let pick = |line: &str, prefix: &str| {
        line.split_whitespace()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {line:?}"))
            .trim_end_matches(',')
            .to_owned()
    };
    format!("{} {}", pick(&addr, "127.0.0.1:"), pick(&http, "http://"))
}

fn wait_for_log(log: &Path, needle: &str, n: usize, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= n {
            return;
        }
        assert!(Instant::now() < until, "waited for {needle:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn nix_copy(from: &str, to: &Path, key: &str, paths: &[String], xdg: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("nix")
        .args(["copy", "--from", from, "--to"])
        .arg(to)
        .args(["--option", "trusted-public-keys", key])
        .args(["--option", "narinfo-cache-negative-ttl", "0"])
        .args(paths)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("XDG_CACHE_HOME", xdg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix copy --from {from}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn metric(api: &str, name: &str) -> f64 {
    let (_, body) = common::http_get(api, "/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    if Command::new("nix-build").arg("--version").output().is_err()
        || Command::new("nginx").arg("-v").output().is_err()
    {
        println!("SKIPPED: the no-second-copy benchmark needs nix-bin and nginx");
        return;
    }
    let mib = env_num("HYPERNAR_NOCOPY_MIB", 1024);
    let paths = env_num("HYPERNAR_NOCOPY_PATHS", 8).max(1);
    // The baseline: A keeps its blocks (a second copy) and serves B from
    // them.
    let keep_blocks = std::env::var_os("HYPERNAR_NOCOPY_KEEP_BLOCKS").is_some();
    if keep_blocks {
        println!("baseline: A runs with --keep-blocks (HYPERNAR_NOCOPY_KEEP_BLOCKS)");
    }
    let tmp = common::bench_dir("nocopy");
    // HYPERNAR_NOCOPY_KEEP=1 leaves the directory (logs, stores) behind.
    let t = &if std::env::var_os("HYPERNAR_NOCOPY_KEEP").is_some() {
        tmp.keep()
    } else {
        tmp.path().to_owned()
    };
    println!("cpu: {}", cpu_model());
    println!("closure: {paths} paths of random bytes, {mib} MiB in all, and a root");

    // The closure: `paths` blobs and a root that refers to each.
    let each = (mib << 20) / paths;
    let mut expr = String::from(
        "let mk = name: script: derivation { inherit name script; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"eval \\\"$script\\\"\" ]; PATH = \"/usr/bin:/bin\"; };\n",
    );
    for i in 0..paths {
        expr.push_str(&format!(
            "  b{i} = mk \"hn-nocopy-bench-{i}\" \"mkdir -p $out; head -c {each} /dev/urandom > $out/blob\";\n"
        ));
    }
    let refs: Vec<String> = (0..paths).map(|i| format!("${{b{i}}}")).collect();
    expr.push_str(&format!(
        "in mk \"hn-nocopy-bench-root\" \"echo {} > $out\"\n",
        refs.join(" ")
    ));
    let file = t.join("closure.nix");
    std::fs::write(&file, expr).unwrap();
    let started = Instant::now();
    let root = nix(&["nix-build", file.to_str().unwrap(), "--no-out-link"])
        .trim()
        .to_owned();
    let closure: Vec<String> = nix(&["nix-store", "-qR", &root])
        .lines()
        .map(str::to_owned)
        .collect();
    let nar: u64 = closure
        .iter()
        .map(|p| {
            nix(&["nix-store", "--query", "--size", p])
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let (sk, pk) = (t.join("sk"), t.join("pk"));
    nix(&[
        "nix-store",
        "--generate-binary-cache-key",
        "cache-bench-1",
        sk.to_str().unwrap(),
        pk.to_str().unwrap(),
    ]);
    let pk = std::fs::read_to_string(&pk).unwrap().trim().to_owned();
    let mut sign = vec!["nix", "store", "sign", "--key-file", sk.to_str().unwrap()];
    sign.extend(closure.iter().map(String::as_str));
    nix(&sign);
    let cache = t.join("cache");
    let to = format!("file://{}?compression=zstd", cache.display());
    let mut copy = vec!["nix", "copy", "--to", &to];
    copy.extend(closure.iter().map(String::as_str));
    nix(&copy);
    println!(
        "built, signed and cached in {:.0} s: {} paths, NAR {:.1} MiB",
        started.elapsed().as_secs_f64(),
        closure.len(),
        nar as f64 / 1048576.0
    );

    let mut procs = Kill(Vec::new());
    let ngx = t.join("nginx");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = common::nginx_conf(
        &ngx,
        &format!("127.0.0.1:{port}"),
        &cache,
        &format!("access_log {}/access.log;", ngx.display()),
        "",
    );
    let mut nginx = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&ngx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let upstream = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nginx did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let group = hypernar_out(&["group", "new"]);

    // A pulls the closure through for Nix, keeps it, then drops it.
    let a_data = t.join("a");
    let store_a = t.join("store-a");
    let mut a_args = vec![
        "--group",
        &group,
        "--upstream",
        &upstream,
        "--trusted-public-key",
        &pk,
        "--nix-store",
        store_a.to_str().unwrap(),
        "--store-check-every",
        "5",
    ];
    if keep_blocks {
        a_args.push("--keep-blocks");
    }
    let a = serve(&a_data, &a_args, &mut procs);
    let (a_addr, a_api) = a.split_once(' ').unwrap();
    let took = nix_copy(a_api, &store_a, &pk, &closure, &t.join("xdg-a"));
    let a_log = a_data.with_extension("log");
    wait_for_log(&a_log, "kept a pulled-through path", closure.len(), 600);
    let dropped = "dropped the blocks of kept paths the Nix store holds";
    let drops = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(dropped)
            .count()
    };
    let before = drops(&a_log);
    let kept = disk_bytes(&a_data);
    println!(
        "A: nix copy through A {:.1} s; A's data directory once kept: {:.1} MiB ({:.1} % of the NAR)",
        took.as_secs_f64(),
        kept as f64 / 1048576.0,
        100.0 * kept as f64 / nar as f64
    );
    // Checks drop what they find; done once no check dropped anything for
    // a while (a path read within two intervals is not dropped under its
    // reader).
    let settle = |before: usize| {
        wait_for_log(&a_log, dropped, before + 1, 120);
        let mut seen = (drops(&a_log), Instant::now());
        while seen.1.elapsed() < Duration::from_secs(16) {
            std::thread::sleep(Duration::from_millis(500));
            let n = drops(&a_log);
            if n != seen.0 {
                seen = (n, Instant::now());
            }
        }
    };
    if !keep_blocks {
        settle(before);
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
    std::thread::sleep(Duration::from_secs(1));
    let after = disk_bytes(&a_data);
    let ratio = after as f64 / nar as f64;
    println!(
        "A: data directory after the store check: {:.2} MiB = {:.2} % of the closure's NAR ({}; target <= 5 %)",
        after as f64 / 1048576.0,
        100.0 * ratio,
        if ratio <= 0.05 { "met" } else { "NOT met" }
    );

    // B, a member of the group, substitutes the closure with the upstream
    // gone: every byte from A, made again from A's store.
    let b_data = t.join("b");
    let b = serve(
        &b_data,
        &[
            "--group",
            &group,
            "--peer",
            a_addr,
            "--upstream",
            "none",
            "--trusted-public-key",
            &pk,
            "--no-keep",
        ],
        &mut procs,
    );
    let (_, b_api) = b.split_once(' ').unwrap();
    let store_b = t.join("store-b");
    let until = Instant::now() + Duration::from_secs(60);
    let root_hash = root.trim_start_matches("/nix/store/")[..32].to_owned();
    while common::http_get(b_api, &format!("/{root_hash}.narinfo")).0 != 200 {
        assert!(Instant::now() < until, "B never learnt of A's kept paths");
        std::thread::sleep(Duration::from_millis(300));
    }
    let before_b = drops(&a_log);
    let took = nix_copy(b_api, &store_b, &pk, &closure, &t.join("xdg-b"));
    let peer = metric(b_api, "hypernar_received_bytes_total{source=\"peer\"}");
    let up = metric(b_api, "hypernar_received_bytes_total{source=\"upstream\"}");
    let same = closure.iter().all(|p| {
        let a = Command::new("nix-store")
            .arg("--dump")
            .arg(p)
            .output()
            .unwrap()
            .stdout;
        let b = Command::new("nix-store")
            .arg("--dump")
            .arg(format!("{}{p}", store_b.display()))
            .output()
            .unwrap()
            .stdout;
        a == b
    });
    let remade = std::fs::read_to_string(&a_log)
        .unwrap_or_default()
        .matches("making dropped blocks again from the Nix store")
        .count();
    println!(
        "B: nix copy through B (group member) {:.1} s, {:.1} MiB from peers, {up} bytes from upstreams; NARs identical: {same}; A opened {remade} dumps of its store",
        took.as_secs_f64(),
        peer / 1048576.0
    );
    if !keep_blocks {
        settle(before_b);
    }
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "A: data directory after serving B and the next check: {:.2} MiB = {:.2} % of the NAR",
        disk_bytes(&a_data) as f64 / 1048576.0,
        100.0 * disk_bytes(&a_data) as f64 / nar as f64
    );
    drop(procs);
    // The closure is the bench's own: out of the host store again.
    let mut del = vec!["nix-store", "--delete"];
    del.extend(closure.iter().map(String::as_str));
    let _ = Command::new(del[0]).args(&del[1..]).output();
}

/// `hypernar ARGS`' stdout, trimmed.
fn hypernar_out(args: &[&str]) -> String {
    let out = Command::new(hypernar_bin())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
