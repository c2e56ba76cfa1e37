//! The FUSE view, in one run:
//!
//! 1. Listings at scale: a mount of 100 000 paths (from an in-memory
//!    source: listings never read a segment, so the source's bytes do not
//!    matter here) against the same names as empty files in a real
//!    directory, listed the same way.
//! 2. Reads: one path of ~1 GiB made of this machine's /usr, published
//!    with all blocks local; its NAR read sequentially through
//!    `hypernar mount` against `hypernar cat-nar` of the same path and
//!    against reading the NAR as a plain file; random 4 KiB reads per
//!    second against the same offsets of the plain file; and the bytes a
//!    node with no blocks fetches from a peer for `cat` of one small file
//!    of that path in the store view.
//!
//!   cargo bench --bench mount     # HYPERNAR_BENCH_PATHS (100000),
//!                                 # HYPERNAR_BENCH_READ_MIB (1024)
//!
//! Needs /dev/fuse and root (or fusermount3).

#![allow(clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_num;
use hypernar_feed::format::listing::Listing;
use hypernar_fuse_store::{Backing, BackingError, PathInfo};

/// `n` made-up paths: 32-character hash parts, narinfos of a realistic
/// size (one reference, one signature).
struct Synthetic(Vec<PathInfo>);

impl Backing for Synthetic {
    fn generation(&self) -> u64 {
        1
    }
    fn paths(&self) -> Vec<PathInfo> {
        self.0.clone()
    }
    fn narinfo(&self, path: &PathInfo) -> Result<String, BackingError> {
        Ok("x".repeat(path.narinfo_len as usize))
    }
    fn segment(&self, _path: &PathInfo, _index: u64) -> Result<Vec<u8>, BackingError> {
        Err("the listing benchmark reads no segment".into())
    }
    fn prefetch(&self, _path: &PathInfo, _from: u64, _to: u64) {}
    fn listing(&self, _path: &PathInfo) -> Result<Arc<Listing>, BackingError> {
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
    if !std::path::Path::new("/dev/fuse").exists() {
        println!("SKIPPED: the mount benchmark needs /dev/fuse");
        return;
    }
    listings();
    reads();
}

fn listings() {
    let n = env_num("HYPERNAR_BENCH_PATHS", 100_000);
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
                narinfo_len: narinfo.len() as u64,
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
    let tmp = common::bench_dir("mount");

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
    rss_of(std::process::id())
}

/// A `hypernar` process, stopped with SIGTERM when dropped; its stdout
/// lines go to `lines` as they come.
struct Proc {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Self {
        let mut child = std::process::Command::new(common::hypernar_bin())
            .args(args)
            .args(["--upstream", "none"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first word of its output that starts with `prefix`.
    fn word(&self, prefix: &str) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("no such output");
            if let Some(w) = l.split_whitespace().find(|w| w.starts_with(prefix)) {
                return w.trim_end_matches(',').to_owned();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn wait_for(file: &std::path::Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        assert!(Instant::now() < until, "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `file` from start to end in 1 MiB reads; returns MB/s.
fn sequential(file: &std::path::Path) -> f64 {
    use std::io::Read;
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n as f64 / 1e6 / t.elapsed().as_secs_f64()
}

/// 4 KiB reads at `offsets` of `file`; returns reads per second.
fn random_reads(file: &std::path::Path, offsets: &[u64]) -> f64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(file).unwrap();
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for &o in offsets {
        f.read_at(&mut buf, o).unwrap();
    }
    offsets.len() as f64 / t.elapsed().as_secs_f64()
}

/// `hypernar_received_bytes_total{source="peer"}` at `base`.
fn received(base: &str) -> u64 {
    let (_, body) = common::http_get(base, "/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("hypernar_received_bytes_total{source=\"peer\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn reads() {
    use hypernar_feed::format::narinfo::{Compression, NarInfo};
    use hypernar_publisher::sample::{write_cache, Contents, Entry, NixSigningKey, SamplePath};

    let mib = env_num("HYPERNAR_BENCH_READ_MIB", 1024) as u64;
    let bin = common::hypernar_bin();
    let tmp = common::bench_dir("read");
    let root = tmp.path();
    let mut budget = mib << 20;
    let mut entries = Vec::new();
    for top in ["/usr/lib", "/usr/bin", "/usr/share"] {
        let mut files = Vec::new();
        common::collect(std::path::Path::new(top), &mut budget, &mut files);
        let name = top.trim_start_matches("/usr/").to_owned();
        entries.push((name, Entry::Dir(files)));
    }
    let small = b"one small file at the end of a large path\n";
    entries.push((
        "zz-small".into(),
        Entry::File {
            contents: small.to_vec(),
            executable: false,
        },
    ));
    let path = SamplePath {
        name: "usr-large".into(),
        contents: Contents::Tree(Entry::Dir(entries)),
        references: vec![],
        compression: Compression::None,
    };
    let cache = root.join("cache");
    let written = write_cache(
        &cache,
        &[path],
        &NixSigningKey::from_seed("bench-1", [3; 32]),
    )
    .unwrap();
    let info = written[0].info.clone();
    drop(written);
    let plain = cache.join(&info.url);
    let nar_size = info.nar_size;
    let key = root.join("pub.key");
    let id = common::keygen(bin, &key);
    let data = root.join("data");
    let (_, t_publish) = common::publish(bin, &key, &data, &cache, &[]);
    println!(
        "\none path of {:.0} MiB (NAR) from /usr, published in {:.1} s",
        nar_size as f64 / 1048576.0,
        t_publish.as_secs_f64()
    );

    // Sequential: each read twice, the second counted (every source is
    // then in the page cache: the plain file, and the feeds' files).
    sequential(&plain);
    let plain_mbs = sequential(&plain);
    let store_path = info.store_path.to_string();
    let cat_nar = || {
        let t = Instant::now();
        let st = std::process::Command::new(bin)
            .args(["cat-nar", "--data"])
            .arg(&data)
            .arg(&store_path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        nar_size as f64 / 1e6 / t.elapsed().as_secs_f64()
    };
    cat_nar();
    let cat_mbs = cat_nar();
    let at = root.join("mnt");
    std::fs::create_dir(&at).unwrap();
    let hash = info.store_path.hash_part().to_owned();
    let mount = |at: &std::path::Path, data: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["mount", at.to_str().unwrap(), "--data"];
        args.push(data.to_str().unwrap());
        args.extend(["--listen", "127.0.0.1:0", "--trust", &id]);
        args.extend_from_slice(extra);
        let p = Proc::start(&args);
        wait_for(&at.join(format!("{hash}.narinfo")));
        p
    };
    let m = mount(&at, &data, &[]);
    let narinfo =
        NarInfo::parse(&std::fs::read(at.join(format!("{hash}.narinfo"))).unwrap()).unwrap();
    let nar = at.join(&narinfo.url);
    let mount_mbs = sequential(&nar);
    let mount_rss = rss_of(m.child.id());
    let mount_again = sequential(&nar);
    drop(m);

    // Random 4 KiB reads on a fresh mount (no kernel cache, no segment
    // cache), against the same offsets of the plain file.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let offsets: Vec<u64> = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (nar_size - 4096)) & !4095
        })
        .collect();
    let plain_rps = random_reads(&plain, &offsets);
    let m = mount(&at, &data, &[]);
    let mount_rps = random_reads(&nar, &offsets);
    drop(m);

    // A node with no blocks, one peer holding them: stat, then cat of one
    // small file in the store view.
    let mut args = vec!["serve"];
    args.extend_from_slice(common::no_dht());
    args.extend([
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "none",
    ]);
    let seed = Proc::start(&args);
    let peer = seed.word("127.0.0.1:");
    let user = root.join("user-data");
    let at2 = root.join("mnt2");
    std::fs::create_dir(&at2).unwrap();
    let m = mount(&at2, &user, &["--peer", &peer, "--http", "127.0.0.1:0"]);
    let api = m.word("http://");
    let dir = at2.join("store").join(info.store_path.base_name());
    let r0 = received(&api);
    std::fs::symlink_metadata(dir.join("zz-small")).unwrap();
    let r1 = received(&api);
    assert_eq!(std::fs::read(dir.join("zz-small")).unwrap(), small);
    let r2 = received(&api);
    drop(m);
    drop(seed);

    let seg = 256 << 10;
    println!("| read | result | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| sequential, through the mount (first read) | {mount_mbs:.0} MB/s | cat-nar {cat_mbs:.0} MB/s | **{:.2}** |",
        mount_mbs / cat_mbs
    );
    println!(
        "| sequential, through the mount (first read) | {mount_mbs:.0} MB/s | plain file {plain_mbs:.0} MB/s | {:.2} |",
        mount_mbs / plain_mbs
    );
    println!(
        "| sequential, through the mount (second read: kernel page cache) | {mount_again:.0} MB/s | plain file {plain_mbs:.0} MB/s | {:.2} |",
        mount_again / plain_mbs
    );
    println!(
        "| random 4 KiB reads, fresh mount | {mount_rps:.0} /s | plain file {plain_rps:.0} /s | {:.3} |",
        mount_rps / plain_rps
    );
    println!(
        "| `stat` of one file in the store view, from a peer | {} bytes ({:.2} segments) | the path: {:.0} segments | |",
        r1 - r0,
        (r1 - r0) as f64 / seg as f64,
        nar_size as f64 / seg as f64
    );
    println!(
        "| then `cat` of that {}-byte file | {} bytes ({:.2} segments) | target ≤ 2 segments | |",
        small.len(),
        r2 - r1,
        (r2 - r1) as f64 / seg as f64
    );
    println!(
        "mount process RSS after the sequential read: {} MiB",
        mount_rss >> 20
    );
}

fn rss_of(pid: u32) -> u64 {
    common::proc_status_kib(pid, "VmRSS:") * 1024
}
