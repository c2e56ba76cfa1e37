//! The index at scale: what a lookup and a publish cost with runs, by the
//! real format and policy code (`feed/src/format/run.rs`,
//! `publisher/src/runs.rs`), for N paths.
//!
//!   cargo bench --bench index                 N = 10 k and 1 M
//!   HYPERNAR_BENCH_INDEX_10M=1 cargo bench --bench index   and 10 M
//!   HYPERNAR_BENCH_RUN_TAIL=4096              the publisher's --run-tail
//!
//! A **model run, not a network run**: it grows a publisher's runs exactly
//! as `publish` does (cut every `tail` paths, merge with `runs::plan`),
//! encodes every page with the real encoder, and then counts, for 2 000
//! lookups of random hits and misses, the round trips and the bytes a cold
//! node fetches: the manifest, one page of each live run, the path record,
//! its listing's record and its key release, each with a Merkle proof
//! estimated as 40 bytes per tree level (a node's index, hash and size;
//! the real proofs are measured by the end-to-end benchmark when it
//! exists). Beside it, the same figures for a copy-on-write B-tree of the
//! same page size, the alternative the issue asks to measure: its depth is
//! the round trips, and each batch of `tail` random inserts rewrites the
//! leaves they land on.

#![allow(clippy::print_stdout)]

mod common;

use common::{run_peak, Proc};

use hypernar_feed::format::narinfo::NarHash;
use hypernar_feed::format::record::{wrap_path_key, KeyRelease, ListingRecord, PathRecord, Record};
use hypernar_feed::format::run::{self, RunEntry, RunRef, TARGET_PAGE_ENTRIES};
use hypernar_feed::format::segment::PathKey;
use hypernar_feed::format::storepath::StorePath;
use hypernar_publisher::runs;

/// Bytes per Merkle tree level in a block's proof (estimate).
const PROOF_LEVEL: u64 = 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: uniform enough for store-path hashes.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn hash(&mut self) -> run::PathHash {
        let mut h = [0u8; 20];
        for c in h.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        h
    }
}

fn levels(blocks: u64) -> u64 {
    64 - blocks.max(2).leading_zeros() as u64
}

struct Grown {
    runs: Vec<RunRef>,
    /// Encoded size of every page of every live run, by block.
    page_bytes: std::collections::HashMap<u64, u64>,
    runs_feed_blocks: u64,
    entries_written: u64,
    run_bytes_written: u64,
    hashes: Vec<run::PathHash>,
}

/// Grows a publisher of `n` paths (two index blocks and one key release
/// each) with runs cut every `tail` entries.
fn grow(n: u64, tail: u64, rng: &mut Rng) -> Grown {
    let mut runs_live: Vec<(RunRef, Vec<RunEntry>)> = Vec::new();
    let mut page_bytes = std::collections::HashMap::new();
    let mut feed_len = 1u64; // header
    let (mut written, mut bytes) = (0u64, 0u64);
    let mut hashes = Vec::with_capacity(n as usize);
    let mut indexed_to = 4u64; // header and three declarations
    let mut next_seq = 4u64;
    let mut batch = Vec::new();
    for key_seq in 1..=n {
        let h = rng.hash();
        hashes.push(h);
        batch.push(RunEntry {
            hash: h,
            index_seq: next_seq,
            key_seq,
        });
        next_seq += 2;
        if batch.len() as u64 >= tail {
            let refs: Vec<RunRef> = runs_live.iter().map(|(r, _)| *r).collect();
            let merge = runs::plan(&refs, (indexed_to, next_seq), tail);
            let mut entries = std::mem::take(&mut batch);
            let from = if merge == 0 {
                indexed_to
            } else {
                runs_live[runs_live.len() - merge].0.from
            };
            for (_, e) in runs_live.drain(runs_live.len() - merge..) {
                entries.extend(e);
            }
            let kept = entries.clone();
            let (r, pages) = runs::encode_run(entries, feed_len, from, next_seq);
            for (i, p) in pages.iter().enumerate() {
                page_bytes.insert(feed_len + i as u64, p.len() as u64);
                bytes += p.len() as u64;
            }
            written += r.entries;
            feed_len += r.pages() + 1; // and the manifest
            runs_live.push((r, kept));
            indexed_to = next_seq;
        }
    }
    Grown {
        runs: runs_live.into_iter().map(|(r, _)| r).collect(),
        page_bytes,
        runs_feed_blocks: feed_len,
        entries_written: written,
        run_bytes_written: bytes,
        hashes,
    }
}

/// Encoded sizes of a typical path's record (three references, one
/// signature, a deriver), its listing's record and its key release.
fn record_sizes() -> (u64, u64, u64) {
    let path =
        StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hello-2.12.1").unwrap();
    let refs = [
        "/nix/store/7vy33zhzyzyqssgblsj9zn6xikj3y7w8-glibc-2.39-52",
        "/nix/store/8vy33zhzyzyqssgblsj9zn6xikj3y7w8-libidn2-2.3.7",
        "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hello-2.12.1",
    ];
    let key = PathKey([3; 32]);
    let record = PathRecord {
        references: refs.iter().map(|r| StorePath::parse(r).unwrap()).collect(),
        wrapped_key: wrap_path_key(&[9; 32], &path, &key),
        store_path: path.clone(),
        nar_hash: NarHash([1; 32]),
        nar_size: 250_000,
        deriver: Some("pz8zva3vwjqfwnhyn9i7q438d91ndz4y-hello-2.12.1.drv".into()),
        ca: None,
        sigs: vec!["cache.nixos.org-1:sY2nTHx1TU3m6iB4xYxpm6nOh1lAOEXq4JmgPGkEHf0YxeVWXiGIoWmdD5CIhAvu0k3LfkdY3/PmCybSrgb8Ag==".into()],
        data_feed: 0,
        first_block: 123_456_789,
        block_count: 1,
        segment_size: 256 << 10,
        key_check: key.check(),
    };
    let listing = ListingRecord {
        index_seq: 2_000_000,
        store_path: path.clone(),
        first_block: 123_456_790,
        block_count: 1,
        size: 900,
    };
    let release = KeyRelease {
        index_seq: 2_000_000,
        store_path: path,
        key: [7; 32],
    };
    (
        Record::Path(Box::new(record)).encode().len() as u64,
        Record::Listing(listing).encode().len() as u64,
        Record::Key(release).encode().len() as u64,
    )
}

struct Lookup {
    rounds: u64,
    bytes: u64,
}

/// A cold lookup of `hash`: the manifest, a page per live run, then (a
/// hit) the record, its listing's and its key.
fn lookup(g: &Grown, n: u64, hash: &run::PathHash, hit: bool, sizes: (u64, u64, u64)) -> Lookup {
    let runs_proof = levels(g.runs_feed_blocks) * PROOF_LEVEL;
    let manifest = 64 + 24 * g.runs.len() as u64 + 3 * 40;
    let mut bytes = manifest + runs_proof;
    for r in &g.runs {
        bytes += g.page_bytes[&r.page_block(hash)] + runs_proof;
    }
    let mut rounds = 2;
    if hit {
        let index_proof = levels(4 + 2 * n) * PROOF_LEVEL;
        let key_proof = levels(1 + n) * PROOF_LEVEL;
        let (record, listing, key) = sizes;
        bytes += record + listing + 2 * index_proof + key + key_proof;
        rounds += 1;
    }
    Lookup { rounds, bytes }
}

fn report(n: u64, tail: u64, rng: &mut Rng) {
    let sizes = record_sizes();
    let started = std::time::Instant::now();
    let g = grow(n, tail, rng);
    let grown_in = started.elapsed();
    let (mut hit, mut miss) = ((0u64, 0u64, 0u64), (0u64, 0u64, 0u64));
    for _ in 0..1000 {
        let h = g.hashes[(rng.next() % n) as usize];
        let l = lookup(&g, n, &h, true, sizes);
        hit = (hit.0 + l.rounds, hit.1 + l.bytes, hit.2.max(l.bytes));
        let absent = rng.hash();
        let l = lookup(&g, n, &absent, false, sizes);
        miss = (miss.0 + l.rounds, miss.1 + l.bytes, miss.2.max(l.bytes));
    }
    let pages: u64 = g.page_bytes.len() as u64;
    let avg_page = g.run_bytes_written as f64 / pages.max(1) as f64;
    println!(
        "N = {n:>10}: live runs {:>2}, runs feed {:>9} blocks; cold hit {} round trips, {:.1} KB mean, {:.1} KB max; cold miss {} round trips, {:.1} KB mean; warm miss 0 round trips (pages stored)",
        g.runs.len(),
        g.runs_feed_blocks,
        hit.0 / 1000,
        hit.1 as f64 / 1000.0 / 1000.0,
        hit.2 as f64 / 1000.0,
        miss.0 / 1000,
        miss.1 as f64 / 1000.0 / 1000.0,
    );
    println!(
        "               publisher: each path written into a run {:.1} times, {:.0} B of pages per path, mean page {:.0} B; model built in {:.1}s",
        g.entries_written as f64 / n as f64,
        g.run_bytes_written as f64 / n as f64,
        avg_page,
        grown_in.as_secs_f64(),
    );
    // The alternative: a copy-on-write B-tree with pages of the same size.
    let fanout = TARGET_PAGE_ENTRIES as f64;
    let leaves = (n as f64 / fanout).max(1.0);
    let depth = (n as f64).log(fanout).ceil().max(1.0) as u64;
    // A batch of `tail` random inserts lands on min(tail, leaves) leaves
    // (expected distinct), each rewritten with its path to the root.
    let touched = leaves * (1.0 - (-(tail as f64) / leaves).exp());
    let rewritten_per_path = touched * fanout / tail as f64;
    println!(
        "               copy-on-write B-tree, {fanout} per page: {} round trips per lookup, cold; each path rewritten {:.0} times per batch of {tail}",
        depth + 1,
        rewritten_per_path,
    );
}

fn main() {
    let tail = common::env_num("HYPERNAR_BENCH_RUN_TAIL", runs::DEFAULT_RUN_TAIL as usize) as u64;
    println!(
        "index at scale, runs model (tail {tail}, merge fan {}): CPU {}",
        runs::MERGE_FAN,
        common::cpu_model()
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sizes = vec![10_000u64, 1_000_000];
    if std::env::var_os("HYPERNAR_BENCH_INDEX_10M").is_some() {
        sizes.push(10_000_000);
    }
    for n in sizes {
        report(n, tail, &mut rng);
    }
    let (record, listing, key) = record_sizes();
    println!("(a path record is {record} B encoded, its listing's {listing} B, its key release {key} B; proofs at {PROOF_LEVEL} B per tree level)");
    if std::env::var_os("HYPERNAR_BENCH_INDEX_MODEL_ONLY").is_some() {
        return;
    }
    println!();
    println!("end to end (`hypernar synth`, then real serve processes on loopback; bytes are what the seed wrote to its sockets, Noise frames and proofs included):");
    let mut base: Option<EndToEnd> = None;
    for n in sizes_e2e() {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let e = end_to_end(n, &mut rng);
        let ratio = |f: fn(&EndToEnd) -> f64| match &base {
            Some(b) => format!(" ({:.2}x of 10 k)", f(&e) / f(b).max(1e-9)),
            None => String::new(),
        };
        println!(
            "N = {n:>10}: synth {:.0} paths/s; first narinfo {:.2} s{} after the fresh node starts; cold hit {:.1} KB, {:.1} ms{}; cold miss {:.1} KB, {:.1} ms{}; warm miss {:.0} B",
            e.synth_rate,
            e.first_narinfo,
            ratio(|e| e.first_narinfo),
            e.hit_bytes / 1e3,
            e.hit_ms,
            ratio(|e| e.hit_bytes),
            e.miss_bytes / 1e3,
            e.miss_ms,
            ratio(|e| e.miss_bytes),
            e.warm_miss_bytes,
        );
        println!(
            "               serve RSS {:.1} MiB (peak {:.1}){} after 100 lookups and 10 s of following; publish of 200 paths into it: {:.2}x the rate into an empty publisher, peak RSS {:.1} MiB{}; load average before: {}",
            e.serve_rss,
            e.serve_hwm,
            ratio(|e| e.serve_hwm),
            e.publish_rate,
            e.publish_rss,
            ratio(|e| e.publish_rss),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        if let Some(w) = &e.web {
            println!(
                "               from a web seed alone (nginx on loopback, headers included): cold hit {:.1} KB in {:.1} requests, {:.1} ms; cold miss {:.1} KB in {:.1} requests, {:.1} ms",
                w.hit_bytes / 1e3,
                w.hit_requests,
                w.hit_ms,
                w.miss_bytes / 1e3,
                w.miss_requests,
                w.miss_ms,
            );
        }
        if base.is_none() {
            base = Some(e);
        }
    }
}

/// Writes the web-seed copy of the publisher in `data` (a publish of what
/// it holds with `--web-seed`), serves it with nginx on loopback, and looks
/// paths up from a fresh node that has no other source. `None` without
/// nginx.
fn web_seed_lookups(
    bin: &str,
    key: &std::path::Path,
    id: &str,
    data: &std::path::Path,
    cache: &std::path::Path,
    n: u64,
    rng: &mut Rng,
) -> Option<WebLookups> {
    use hypernar_feed::format::nixbase32;
    use hypernar_publisher::synth;
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("               (no nginx: the web-seed lookups are not measured)");
        return None;
    }
    let root = data.with_file_name("web-seed");
    run_peak(
        std::process::Command::new(bin)
            .args(["publish", "--all", "--key"])
            .arg(key)
            .arg("--data")
            .arg(data)
            .arg("--from")
            .arg(format!("file://{}", cache.display()))
            .arg("--web-seed")
            .arg(&root),
    );
    let work = data.with_file_name("nginx");
    let port = free_port();
    let log = work.join("access.log");
    let conf = common::nginx_conf(
        &work,
        &format!("127.0.0.1:{port}"),
        &root,
        &format!(
            "log_format sent '$bytes_sent'; access_log {} sent; sendfile on; keepalive_requests 100000;",
            log.display()
        ),
        "",
    );
    let _nginx = Proc(
        std::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&work)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let _user = Proc(
        std::process::Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(data.with_file_name("web-user"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--http", &format!("127.0.0.1:{api_port}")])
            .args([
                "--trust",
                id,
                "--web-seed",
                &format!("http://127.0.0.1:{port}"),
            ])
            .args(["--no-mdns", "--upstream", "none"])
            .args(common::no_dht())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Ready once a first path is found (the manifest and tail read).
    let first = format!("/{}.narinfo", synth::store_path(n / 3).hash_part());
    let started = std::time::Instant::now();
    while !(std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        && get(&api, &first) == 200)
    {
        assert!(
            started.elapsed().as_secs() < 180,
            "no narinfo from the web seed's node in 180 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Every request the node has made is in the log when nginx answered it.
    let sent = || -> (u64, u64) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let bytes = text
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .sum();
        (bytes, text.lines().count() as u64)
    };
    let measure = |path: &str, want: u16| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let before = sent();
        let t = std::time::Instant::now();
        assert_eq!(get(&api, path), want, "{path}");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = sent();
        ((after.0 - before.0) as f64, (after.1 - before.1) as f64, ms)
    };
    let lookups = 20;
    let (mut hit, mut miss) = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
    for _ in 0..lookups {
        let i = rng.next() % n;
        let (b, r, ms) = measure(
            &format!("/{}.narinfo", synth::store_path(i).hash_part()),
            200,
        );
        hit = (hit.0 + b, hit.1 + r, hit.2 + ms);
        let absent = format!("/{}.narinfo", nixbase32::encode(&rng.hash()));
        let (b, r, ms) = measure(&absent, 404);
        miss = (miss.0 + b, miss.1 + r, miss.2 + ms);
    }
    let l = lookups as f64;
    Some(WebLookups {
        hit_bytes: hit.0 / l,
        hit_requests: hit.1 / l,
        hit_ms: hit.2 / l,
        miss_bytes: miss.0 / l,
        miss_requests: miss.1 / l,
        miss_ms: miss.2 / l,
    })
}

/// N of the end-to-end runs: 10 k and 1 M, and 10 M when asked.
fn sizes_e2e() -> Vec<u64> {
    let mut sizes = vec![10_000u64, 1_000_000];
    if std::env::var_os("HYPERNAR_BENCH_INDEX_10M").is_some() {
        sizes.push(10_000_000);
    }
    sizes
}

// ---- End to end: real processes over loopback ------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes a process has written through syscalls (`wchar`: for a seed that
/// appends nothing, what it sent on its sockets).
fn wchar(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn get(api: &str, path: &str) -> u16 {
    common::http_get(api, path).0
}

/// The figures of one end-to-end run at `n` paths.
struct EndToEnd {
    synth_rate: f64,
    first_narinfo: f64,
    hit_bytes: f64,
    hit_ms: f64,
    miss_bytes: f64,
    miss_ms: f64,
    warm_miss_bytes: f64,
    serve_rss: f64,
    serve_hwm: f64,
    publish_rate: f64,
    publish_rss: f64,
    /// The same lookups from a web seed alone, if nginx is here.
    web: Option<WebLookups>,
}

/// Cold lookups of a fresh node whose only source is a web seed (nginx on
/// loopback): per lookup, what nginx sent (headers included) and how many
/// requests it answered, hit and miss, and the time.
struct WebLookups {
    hit_bytes: f64,
    hit_requests: f64,
    hit_ms: f64,
    miss_bytes: f64,
    miss_requests: f64,
    miss_ms: f64,
}

fn end_to_end(n: u64, rng: &mut Rng) -> EndToEnd {
    use hypernar_feed::format::nixbase32;
    use hypernar_publisher::sample::{write_cache, Contents, NixSigningKey, SamplePath};
    use hypernar_publisher::synth;
    let bin = common::hypernar_bin();
    let dir = common::bench_dir("index");
    let key = dir.path().join("pub.key");
    let id = common::keygen(bin, &key);
    let data = dir.path().join("pub");
    let (took, _) = run_peak(
        std::process::Command::new(bin)
            .args(["synth", "--key"])
            .arg(&key)
            .arg("--data")
            .arg(&data)
            .args(["--paths", &n.to_string()]),
    );
    let synth_rate = n as f64 / took.as_secs_f64();

    // `publish` of 200 small real paths into it, and into an empty one.
    let cache = dir.path().join("cache");
    let paths: Vec<SamplePath> = (0..200)
        .map(|i| SamplePath {
            name: format!("real-{i}"),
            contents: Contents::RawNar(synth::nar(10_000_000_000 + i)),
            references: vec![],
            compression: hypernar_feed::format::narinfo::Compression::Zstd,
        })
        .collect();
    write_cache(
        &cache,
        &paths,
        &NixSigningKey::from_seed("bench-1", [3; 32]),
    )
    .unwrap();
    let publish_into = |into: &std::path::Path| {
        let (took, peak) = run_peak(
            std::process::Command::new(bin)
                .args(["publish", "--all", "--key"])
                .arg(&key)
                .arg("--data")
                .arg(into)
                .arg("--from")
                .arg(format!("file://{}", cache.display())),
        );
        (200.0 / took.as_secs_f64(), peak)
    };
    let (empty_rate, _) = publish_into(&dir.path().join("empty"));
    let (full_rate, publish_rss) = publish_into(&data);

    // A seed of it and a fresh node that trusts it, over loopback.
    let (seed_port, user_port, api_port) = (free_port(), free_port(), free_port());
    let seed = Proc(
        std::process::Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{seed_port}")])
            .args(["--http", "none", "--no-mdns", "--upstream", "none"])
            .args(common::no_dht())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", seed_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the seed never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let api = format!("http://127.0.0.1:{api_port}");
    let started = std::time::Instant::now();
    let user = Proc(
        std::process::Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(dir.path().join("user"))
            .args(["--listen", &format!("127.0.0.1:{user_port}")])
            .args(["--http", &format!("127.0.0.1:{api_port}")])
            .args(["--trust", &id, "--peer", &format!("127.0.0.1:{seed_port}")])
            .args(["--no-mdns", "--upstream", "none"])
            .args(common::no_dht())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first = format!("/{}.narinfo", synth::store_path(n / 2).hash_part());
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok() && get(&api, &first) == 200
        {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "no narinfo from the fresh node in 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let first_narinfo = started.elapsed().as_secs_f64();

    // Cold lookups, each of a path (or a hash) nobody asked for before:
    // bytes the seed sent for it, and the time.
    let lookups = 50;
    let measure = |path: &str, want: u16| {
        let before = wchar(seed.0.id());
        let t = std::time::Instant::now();
        assert_eq!(get(&api, path), want, "{path}");
        (
            (wchar(seed.0.id()) - before) as f64,
            t.elapsed().as_secs_f64() * 1e3,
        )
    };
    let (mut hit, mut miss, mut warm) = ((0.0, 0.0), (0.0, 0.0), 0.0);
    for _ in 0..lookups {
        let i = rng.next() % n;
        let (b, ms) = measure(
            &format!("/{}.narinfo", synth::store_path(i).hash_part()),
            200,
        );
        hit = (hit.0 + b, hit.1 + ms);
        let absent = format!("/{}.narinfo", nixbase32::encode(&rng.hash()));
        let (b, ms) = measure(&absent, 404);
        miss = (miss.0 + b, miss.1 + ms);
        warm += measure(&absent, 404).0;
    }
    std::thread::sleep(std::time::Duration::from_secs(10));
    let pid = user.0.id();
    let l = lookups as f64;
    let serve_rss = common::proc_status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let serve_hwm = common::proc_status_kib(pid, "VmHWM:") as f64 / 1024.0;
    drop((user, seed));
    let web = web_seed_lookups(bin, &key, &id, &data, &cache, n, rng);
    EndToEnd {
        web,
        synth_rate,
        first_narinfo,
        hit_bytes: hit.0 / l,
        hit_ms: hit.1 / l,
        miss_bytes: miss.0 / l,
        miss_ms: miss.1 / l,
        warm_miss_bytes: warm / l,
        serve_rss,
        serve_hwm,
        publish_rate: full_rate / empty_rate,
        publish_rss,
    }
}
