//! Hostile and broken input, concurrent use, and kill -9 at any instant.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hypernar_feed::format::narinfo::Compression;
use hypernar_feed::FeedStore;
use hypernar_publisher::sample::filler;

use crate::util::*;

fn replace_line(file: &std::path::Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let new: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key}:")) {
                format!("{key}: {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(file, new.join("\n") + "\n").unwrap();
}

#[test]
fn bad_input_names_the_path_and_keeps_published_paths_intact() {
    let names = [
        "good",
        "hash-mismatch",
        "truncated-xz",
        "bad-narinfo",
        "too-long",
        "too-short",
        "no-nar",
        "corrupt-zstd",
    ];
    let paths: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let c = if *n == "corrupt-zstd" {
                Compression::Zstd
            } else {
                Compression::Xz
            };
            raw(n, filler(200_000 + i * 1000, i as u64), c, &[])
        })
        .collect();
    let w = World::new(&paths);
    w.publish_ok(&[&w.store_path("good")]);
    let good_state = w.check_consistent();

    let other_hash = w.path("good").info.nar_hash.to_string();
    replace_line(&w.narinfo_file("hash-mismatch"), "NarHash", &other_hash);
    let nar = w.nar_file("truncated-xz");
    let len = std::fs::metadata(&nar).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&nar)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::write(
        w.narinfo_file("bad-narinfo"),
        "StorePath: nonsense\nthis is not a narinfo\n",
    )
    .unwrap();
    let size = w.path("too-long").info.nar_size;
    replace_line(
        &w.narinfo_file("too-long"),
        "NarSize",
        &(size - 10).to_string(),
    );
    let size = w.path("too-short").info.nar_size;
    replace_line(
        &w.narinfo_file("too-short"),
        "NarSize",
        &(size + 10).to_string(),
    );
    std::fs::remove_file(w.nar_file("no-nar")).unwrap();
    let nar = w.nar_file("corrupt-zstd");
    let mut bytes = std::fs::read(&nar).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    bytes[n / 2 + 1] ^= 0xff;
    std::fs::write(&nar, bytes).unwrap();

    let expect = [
        ("hash-mismatch", "NAR hash mismatch"),
        ("truncated-xz", "corrupt or truncated"),
        ("bad-narinfo", "narinfo"),
        ("too-long", "NarSize"),
        ("too-short", "NarSize"),
        ("no-nar", "not found"),
        ("corrupt-zstd", "corrupt or truncated"),
    ];
    for (name, reason) in expect {
        let store_path = w.store_path(name);
        let out = failed(&w.publish(&[&store_path]));
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        assert!(
            out.contains(&hash),
            "{name}: error does not name the path: {out}"
        );
        assert!(
            out.contains(reason),
            "{name}: expected {reason:?} in: {out}"
        );
        assert_eq!(
            w.check_consistent(),
            good_state,
            "{name} left something behind"
        );
        w.assert_reads_back("good");
    }
    // All of them at once: the bad ones fail, nothing else changes.
    let out = failed(&w.publish(&["--all"]));
    assert!(
        out.contains("published 0 paths (1 already published, 7 failed)"),
        "{out}"
    );
    assert_eq!(w.check_consistent(), good_state);
    let staging: Vec<_> = std::fs::read_dir(w.data.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "spools left behind: {staging:?}");

    // Unknown path, unreachable cache, unsupported URL.
    let out = failed(&w.publish(&["/nix/store/00000000000000000000000000000000-ghost"]));
    assert!(
        out.contains("00000000000000000000000000000000") && out.contains("not found"),
        "{out}"
    );
    let url = format!("http://{}", closed_addr());
    let out = failed(&w.publish_from(&url, &["--all"]));
    assert!(out.contains("--all needs a file:// cache"), "{out}");
    let out = failed(&w.publish_from(&url, &[&w.store_path("good")]));
    assert!(
        out.contains("cannot read the binary cache") && out.contains(&url),
        "{out}"
    );
    let out = failed(&w.publish_from("ftp://x", &["--all"]));
    assert!(out.contains("unsupported cache URL"), "{out}");
    let out = failed(&w.publish_from(&w.cache_url(), &[]));
    assert!(out.contains("--all"), "{out}");
    assert_eq!(w.check_consistent(), good_state);
}

#[test]
fn a_data_directory_is_used_by_one_process_at_a_time() {
    let w = World::new(&[raw("a", filler(1000, 1), Compression::None, &[])]);
    w.publish_ok(&["--all"]);
    let held = FeedStore::open(&w.data).unwrap();
    let out = failed(&w.publish(&["--all"]));
    assert!(out.contains("in use by another hypernar process"), "{out}");
    let out = failed(&w.cat_nar(&w.store_path("a")));
    assert!(out.contains("in use by another hypernar process"), "{out}");
    drop(held);
    w.assert_reads_back("a");
}

fn crash_world() -> World {
    // The big path is half noise so its stored form spans several 8 MiB
    // append batches.
    let mut big = filler(40 << 20, 99);
    let mut x = 7u64;
    for b in big.iter_mut().step_by(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut paths = vec![raw("big", big, Compression::Zstd, &[])];
    for i in 0..6 {
        paths.push(raw(
            &format!("small-{i}"),
            filler(300_000 + i * 7000, i as u64),
            Compression::Xz,
            &[],
        ));
    }
    World::new(&paths)
}

fn assert_finished(w: &World) {
    w.publish_ok(&["--all"]);
    let names = w.check_consistent();
    assert_eq!(names.len(), w.written.len());
    for p in &w.written {
        w.assert_reads_back(p.info.store_path.name());
    }
    let staging: Vec<_> = std::fs::read_dir(w.data.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "staging not cleaned: {staging:?}");
}

/// Abort at each step of a commit; the next run must finish the job.
#[test]
fn a_crash_at_each_commit_step_is_finished_by_the_next_run() {
    if !faults_built_in() {
        return;
    }
    let w = crash_world();
    let from = w.cache_url();
    for point in ["data-batch", "data", "index", "release"] {
        let _ = std::fs::remove_dir_all(&w.data);
        let out = Command::new(bin())
            .args(w.publish_args(&from))
            .arg("--all")
            .env("HYPERNAR_FAULT_ABORT_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.code().is_none(),
            "{point}: the run did not abort"
        );
        assert!(
            w.data.join("staging/commit.journal").exists(),
            "{point}: no journal left by the crash"
        );
        assert_finished(&w);
    }
}

/// Kill -9 the publisher at random instants, many times over; a final run
/// must finish the job with every path intact, none twice, and no data
/// block without its record.
#[test]
fn kill_9_at_random_instants_then_rerun_finishes_the_job() {
    let w = crash_world();
    let from = w.cache_url();
    let mut args = w.publish_args(&from);
    args.push("--all");
    // A new seed each run; HYPERNAR_TEST_SEED=<seed> replays one.
    let seed = std::env::var("HYPERNAR_TEST_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("HYPERNAR_TEST_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill -9 test seed {seed} (replay: HYPERNAR_TEST_SEED={seed})");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Time one undisturbed run, so kill points spread over a whole run
    // whatever this machine's speed.
    let scratch = w.tmp.path().join("scratch");
    let t0 = Instant::now();
    ok(&[
        "publish",
        "--key",
        s(&w.key),
        "--data",
        s(&scratch),
        "--from",
        &from,
        "--all",
    ]);
    let full = t0.elapsed().as_millis().max(50) as u64;

    // Every attempt has work to do: a data directory whose publish ran to
    // completion is checked and started afresh.
    let (mut kills, mut mid_commit, mut completed) = (0, 0, 0);
    for _ in 0..18 {
        let mut child = Command::new(bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(next() % full));
        if child.try_wait().unwrap().is_some() {
            completed += 1;
            assert_finished(&w);
            std::fs::remove_dir_all(&w.data).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        mid_commit += w.data.join("staging/commit.journal").exists() as u32;
    }
    assert_finished(&w);
    eprintln!(
        "killed {kills} runs, {mid_commit} in the middle of a commit; {completed} ran to the end \
         (a full run takes {full} ms)"
    );
    assert!(
        kills >= 6,
        "too few runs were killed mid-way to test anything"
    );
}

#[test]
fn spools_left_by_a_killed_prepare_are_removed() {
    let w = World::new(&[raw("a", filler(1000, 1), Compression::None, &[])]);
    w.publish_ok(&["--all"]);
    let stale = w
        .data
        .join("staging/0000000000000000000000000000000a.spool");
    std::fs::write(&stale, b"left by a run killed while preparing").unwrap();
    w.publish_ok(&["--all"]);
    assert!(!stale.exists(), "stale spool was kept");
    w.check_consistent();
}

/// Abort between making the next data feed and declaring it: the next run
/// appends to the last declared feed, rolls again, and loses nothing.
#[test]
fn a_crash_while_opening_the_next_data_feed_is_finished_by_the_next_run() {
    if !faults_built_in() {
        return;
    }
    let w = crash_world();
    let from = w.cache_url();
    let out = Command::new(bin())
        .args(w.publish_args(&from))
        .args(["--all", "--jobs", "1", "--data-feed-blocks", "8"])
        .env("HYPERNAR_FAULT_ABORT_AT", "data-rolled")
        .output()
        .unwrap();
    assert!(out.status.code().is_none(), "the run did not abort");
    w.publish_ok(&["--all", "--data-feed-blocks", "8"]);
    let names = w.check_consistent();
    assert_eq!(names.len(), w.written.len());
    for p in &w.written {
        w.assert_reads_back(p.info.store_path.name());
    }
}
