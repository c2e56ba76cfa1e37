//! Publish and cat-nar throughput on a ~1 GiB binary cache made from this
//! machine's /usr, each compared with the single-core cost of the
//! primitives that path runs, measured over the same bytes in the same run.
//!
//!   cargo bench --bench throughput
//!
//! HYPERNAR_BENCH_MIB (default 1024) sets the cache size,
//! HYPERNAR_BENCH_SEGMENT (bytes, default 256 KiB) the segment size.
//!
//! Ratios, not absolute times, are the result: these machines are noisy.

#![allow(clippy::print_stdout)]

mod common;

use common::{children_cpu, collect, node_size, time};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use blake2::{Blake2b512, Digest as _};
use hypernar_feed::format::narinfo::{Compression, NarHasher};
use hypernar_feed::format::segment::{Layout, Opener, PathKey, Sealer, DEFAULT_SEGMENT_SIZE};
use hypernar_publisher::sample::{write_cache, Contents, Entry, NixSigningKey, SamplePath};

fn main() {
    let mib = common::env_num("HYPERNAR_BENCH_MIB", 1024) as u64;
    let bin = common::hypernar_bin();
    let tmp = common::bench_dir("throughput");
    let root = tmp.path();

    // 1. A binary cache of real files: /usr cut into paths of ~64 MiB.
    let mut budget = mib << 20;
    let mut paths = Vec::new();
    let mut i = 0;
    for top in [
        "/usr/lib",
        "/usr/bin",
        "/usr/share",
        "/usr/libexec",
        "/usr/local",
    ] {
        let mut files = Vec::new();
        collect(Path::new(top), &mut budget, &mut files);
        // Group top-level entries into ~64 MiB paths.
        let mut group = Vec::new();
        let mut group_bytes = 0u64;
        for (name, node) in files {
            group_bytes += node_size(&node);
            group.push((name, node));
            if group_bytes > 64 << 20 {
                paths.push(sample(&mut i, std::mem::take(&mut group)));
                group_bytes = 0;
            }
        }
        if !group.is_empty() {
            paths.push(sample(&mut i, group));
        }
    }
    let cache = root.join("cache");
    let key = NixSigningKey::from_seed("bench-1", [3; 32]);
    let (written, t_cache) = time(|| write_cache(&cache, &paths, &key).unwrap());
    let nar_bytes: u64 = written.iter().map(|w| w.nar.len() as u64).sum();
    println!(
        "cache: {} paths, {:.1} MiB of NARs from /usr (zstd-3 files), made in {:.1?}",
        written.len(),
        nar_bytes as f64 / 1048576.0,
        t_cache
    );

    // 2. Primitives, one core, over the same NAR bytes.
    let seg_size: u32 = std::env::var("HYPERNAR_BENCH_SEGMENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEGMENT_SIZE);
    let seg = seg_size as usize;
    println!("segment size {} KiB", seg / 1024);
    let mut t = Primitives::default();
    let mut stored = 0u64;
    for w in &written {
        let nar = &w.nar;
        let layout = Layout::new(w.info.store_path.clone(), nar.len() as u64, seg_size).unwrap();
        let key = PathKey::generate();
        let mut sealer = Sealer::new(layout.clone(), &key, 3).unwrap();
        let mut opener = Opener::new(layout.clone(), &key).unwrap();
        // The source decompression publish does (zstd files here).
        let file = zstd::encode_all(&nar[..], 3).unwrap();
        t.src_decompress += time(|| zstd::decode_all(&file[..]).unwrap()).1;
        t.sha256 += time(|| NarHasher::digest(nar)).1;
        let mut blocks = Vec::new();
        let (_, d) = time(|| {
            for (j, chunk) in nar.chunks(seg).enumerate() {
                blocks.push(sealer.seal(j as u64, chunk).unwrap());
            }
        });
        t.seal += d;
        stored += blocks.iter().map(|b| b.len() as u64).sum::<u64>();
        t.blake2b += time(|| {
            for b in &blocks {
                Blake2b512::digest(b);
            }
        })
        .1;
        let mut out = Vec::with_capacity(seg);
        t.open += time(|| {
            for (j, b) in blocks.iter_mut().enumerate() {
                out.clear();
                opener.open_into(j as u64, b, &mut out).unwrap();
            }
        })
        .1;
        t.zstd_compress += time(|| {
            for chunk in nar.chunks(seg) {
                zstd::bulk::compress(chunk, 3).unwrap();
            }
        })
        .1;
    }
    let rate = |d: Duration| nar_bytes as f64 / d.as_secs_f64() / 1e6;
    println!("primitives, one core, MB/s of NAR: zstd-3 compress {:.0}, seal (zstd+AEAD) {:.0}, open (AEAD+unzstd) {:.0}, SHA-256 {:.0}, BLAKE2b {:.0} (of stored bytes), source unzstd {:.0}",
        rate(t.zstd_compress), rate(t.seal), rate(t.open), rate(t.sha256), stored as f64 / t.blake2b.as_secs_f64() / 1e6, rate(t.src_decompress));
    let publish_limit = t.src_decompress + t.sha256 + t.seal + t.blake2b;
    let cat_limit = t.open + t.sha256;

    // 3. hypernar publish, a real process.
    let pubkey = root.join("pub.key");
    assert!(Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&pubkey)
        .output()
        .unwrap()
        .status
        .success());
    let data = root.join("data");
    let cpu0 = children_cpu();
    let seg_arg = seg_size.to_string();
    let (out, t_publish) = common::publish(
        bin,
        &pubkey,
        &data,
        &cache,
        &["--segment-size".as_ref(), seg_arg.as_ref()],
    );
    let cpu_publish = children_cpu() - cpu0;
    println!(
        "publish: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );

    // 4. cat-nar of every path, to /dev/null.
    let cpu0 = children_cpu();
    let (_, t_cat) = time(|| {
        for w in &written {
            let st = Command::new(bin)
                .args(["cat-nar", "--data"])
                .arg(&data)
                .arg(w.info.store_path.as_str())
                .stdout(std::fs::File::create("/dev/null").unwrap())
                .status()
                .unwrap();
            assert!(st.success());
        }
    });
    let cpu_cat = children_cpu() - cpu0;

    println!();
    println!(
        "| step | MB/s (NAR) | CPU s/GiB | single-core primitive limit MB/s | ratio to limit |"
    );
    println!("|---|---|---|---|---|");
    let gib = nar_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "| publish | {:.0} | {:.2} | {:.0} | {:.2} |",
        rate(t_publish),
        cpu_publish / gib,
        rate(publish_limit),
        publish_limit.as_secs_f64() / t_publish.as_secs_f64()
    );
    println!(
        "| cat-nar | {:.0} | {:.2} | {:.0} | {:.2} |",
        rate(t_cat),
        cpu_cat / gib,
        rate(cat_limit),
        cat_limit.as_secs_f64() / t_cat.as_secs_f64()
    );
    println!(
        "stored/NAR = {:.3}; machine: {} cores",
        stored as f64 / nar_bytes as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

#[derive(Default)]
struct Primitives {
    src_decompress: Duration,
    sha256: Duration,
    seal: Duration,
    zstd_compress: Duration,
    blake2b: Duration,
    open: Duration,
}

fn sample(i: &mut usize, entries: Vec<(String, Entry)>) -> SamplePath {
    *i += 1;
    SamplePath {
        name: format!("usr-part-{i}"),
        contents: Contents::Tree(Entry::Dir(entries)),
        references: vec![],
        compression: Compression::Zstd,
    }
}
