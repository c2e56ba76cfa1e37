//! A disk that fills up, then grows: a real tmpfs, mounted by the test
//! (root only; skipped loudly elsewhere, failed under CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hypernar_feed::format::identity::DATA_FEED_0;
use hypernar_feed::format::narinfo::Compression;

use crate::util::*;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            dir: dir.to_owned(),
        })
    }

    fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Bytes stored under `dir`, counted by blocks in use (what `du` says).
fn du(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn small_disk(w: &World, mib: u64) -> Option<Tmpfs> {
    let t = Tmpfs::mount(&w.tmp.path().join("small"), mib);
    if t.is_none() {
        skip_or_fail("mounting a tmpfs (needs root)");
    }
    t
}

#[test]
fn a_mirror_on_a_full_disk_keeps_its_data_and_finishes_when_space_returns() {
    let w = World::new(&[raw("noise", noise(64 << 20, 21), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let Some(disk) = small_disk(&w, 24) else {
        return;
    };
    let b_data = disk.dir.join("b");
    let b = serve(
        &b_data,
        &["--trust", &id, "--mirror", "--peer", &a.addr],
        &[],
    );
    wait_for_log(&b, "the disk is full", 60);
    std::thread::sleep(Duration::from_secs(4));
    let log = std::fs::read_to_string(&b.log).unwrap();
    let lines = log
        .lines()
        .filter(|l| l.contains("cannot store blocks"))
        .count();
    eprintln!("{lines} log lines about the full disk in 4 s");
    assert!(lines <= 5, "the full disk was logged {lines} times:\n{log}");
    assert!(!log.contains("afresh"), "a replica was deleted:\n{log}");
    let data_feed = hex::encode(
        w.secret()
            .feed_signing_key(DATA_FEED_0)
            .verifying_key()
            .as_bytes(),
    );
    let feed_dir = b_data.join("feeds").join(&data_feed);
    let held = du(&feed_dir);
    eprintln!("held on the full disk: {} MiB", held >> 20);
    assert!(held > 12 << 20, "the mirror holds only {held} bytes");

    disk.resize(256);
    wait_for_log(&b, &format!("feed complete feed=\"{data_feed}\""), 120);
    let log = std::fs::read_to_string(&b.log).unwrap();
    assert!(log.contains("storing blocks again"), "{log}");
    assert!(!log.contains("afresh"), "a replica was deleted:\n{log}");
    drop(a);
    let out = fetch(
        &w.tmp.path().join("c"),
        &id,
        &[&b.addr],
        &w.store_path("noise"),
    );
    assert_fetched(&out, &w, "noise");
    drop(b);
}

#[test]
fn a_publisher_on_a_full_disk_fails_clearly_keeps_what_it_committed_and_finishes_later() {
    let names = ["p1", "p2", "p3", "p4", "p5"];
    let paths: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| raw(n, noise(8 << 20, 100 + i as u64), Compression::Zstd, &[]))
        .collect();
    let mut w = World::new(&paths);
    let Some(disk) = small_disk(&w, 20) else {
        return;
    };
    w.data = disk.dir.join("data");
    // One path at a time, so some commit before the disk is full.
    let out = w.publish(&["--all", "--jobs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("publish on a full disk: {stderr}");
    assert!(!out.status.success(), "publish on a full disk succeeded");
    assert!(
        stderr.contains("error: the disk is full"),
        "the error does not say the disk is full: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // What was committed reads back.
    let committed: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| w.cat_nar(&w.store_path(n)).status.success())
        .collect();
    eprintln!("committed before the disk filled: {committed:?}");
    assert!(!committed.is_empty(), "nothing was committed on 20 MiB");
    for n in &committed {
        w.assert_reads_back(n);
    }
    disk.resize(256);
    w.publish_ok(&["--all"]);
    for n in names {
        w.assert_reads_back(n);
    }
}
