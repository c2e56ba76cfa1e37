//! The FUSE view (`serve --mount`, `hypernar mount`) on a real FUSE mount:
//! the layout Nix's file:// store needs, NAR bytes at any offset against
//! the original NAR, concurrent readers, EIO (not a hang) when the blocks
//! cannot be had, a clean unmount on SIGTERM (also one sent while
//! starting) and a stale mount cleared,
//! no plaintext left on disk, and the lazy store view (`store/…`) against
//! `nix-store --restore` of the same NARs, fetching only what it reads.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hypernar_feed::format::narinfo::{Compression, NarInfo};
use hypernar_publisher::sample::demo_paths;

use crate::util::*;

pub(crate) fn fuse_available() -> bool {
    Path::new("/dev/fuse").exists()
        && (std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n")
            || std::process::Command::new("fusermount3")
                .arg("-V")
                .output()
                .is_ok())
}

pub(crate) fn is_mounted(at: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(at.to_str().unwrap()))
}

/// A `serve --mount` whose drop stops it with SIGTERM (a clean unmount),
/// and lazily unmounts what is left if that failed.
pub(crate) struct Mounted {
    serve: Option<Serve>,
    at: PathBuf,
}

impl Mounted {
    pub(crate) fn start(data: &Path, at: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let mut args = vec!["--mount", s(at)];
        if !extra.contains(&"--http") {
            args.extend(["--http", "none"]);
        }
        args.extend_from_slice(extra);
        let mut env = env.to_vec();
        env.push((
            "RUST_LOG",
            "hypernar_fetcher=info,hypernar_swarm=info,hypernar_fuse_store=info",
        ));
        let serve = serve(data, &args, &env);
        let until = Instant::now() + Duration::from_secs(20);
        while !at.join("nix-cache-info").exists() {
            assert!(
                Instant::now() < until,
                "not mounted within 20 s: {}",
                std::fs::read_to_string(&serve.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mounted {
            serve: Some(serve),
            at: at.to_owned(),
        }
    }

    /// SIGTERM, then the exit status and the time it took.
    fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut serve = self.serve.take().unwrap();
        let t = Instant::now();
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(serve.child.id() as i32, libc::SIGTERM);
        }
        let status = serve.child.wait().unwrap();
        (status, t.elapsed())
    }

    /// Waits until every path of `w` is listed (the index and keys have
    /// replicated).
    pub(crate) fn wait_for(&self, w: &World) {
        let until = Instant::now() + Duration::from_secs(20);
        for p in &w.written {
            let name = format!("{}.narinfo", p.info.store_path.hash_part());
            while !self.at.join(&name).exists() {
                assert!(
                    Instant::now() < until,
                    "{name} never appeared: {}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// What serve logged so far (lossily: a read of a log being written
    /// must not come back empty for one odd byte).
    fn log(&self) -> String {
        self.serve
            .as_ref()
            .and_then(|s| std::fs::read(&s.log).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.serve.is_some() {
            self.stop();
        }
        if is_mounted(&self.at) {
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.at)
                .status();
        }
    }
}

/// The demo paths, a 3 MiB path of noise and one with a marker planted,
/// published with 4 KiB segments (reads cross many segment boundaries).
pub(crate) fn world() -> World {
    let mut paths = demo_paths();
    paths.push(raw("noise", noise(3 << 20, 9), Compression::Zstd, &[]));
    paths.push(raw("marked", MARKER.repeat(20_000), Compression::Zstd, &[]));
    let w = World::new(&paths);
    w.publish_ok(&["--all", "--segment-size", "4096"]);
    w
}

/// Planted in the sample data; must never be found on disk in plain.
const MARKER: &[u8] = b"hypernar-plaintext-marker-7f3a9c ";

fn nar_path(at: &Path, w: &World, name: &str) -> PathBuf {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let text = std::fs::read(at.join(format!("{hash}.narinfo"))).unwrap();
    let info = NarInfo::parse(&text).unwrap();
    assert_eq!(info.compression, Compression::None);
    at.join(&info.url)
}

#[test]
fn the_mount_is_a_binary_cache_whose_nars_equal_the_originals_at_any_offset() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let w = world();
    let id = identity(&w);
    let at = w.tmp.path().join("mnt");
    let m = Mounted::start(&w.data, &at, &["--trust", &id], &[]);
    m.wait_for(&w);

    // The layout Nix's file:// store needs, read-only.
    let cache_info = std::fs::read_to_string(at.join("nix-cache-info")).unwrap();
    assert!(cache_info.contains("StoreDir: /nix/store"), "{cache_info}");
    for dir in ["nar", "log", "realisations"] {
        assert!(at.join(dir).is_dir(), "{dir}/ is missing");
    }
    let err = std::fs::write(at.join("new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // Every path is listed, with the right size, without reading a NAR.
    let names: Vec<String> = std::fs::read_dir(&at)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for p in &w.written {
        let name = format!("{}.narinfo", p.info.store_path.hash_part());
        assert!(names.contains(&name), "{name} not listed: {names:?}");
    }
    assert_eq!(
        std::fs::read_dir(at.join("nar")).unwrap().count(),
        w.written.len()
    );
    for p in &w.written {
        let name = p.info.store_path.name();
        let nar = nar_path(&at, &w, name);
        assert_eq!(
            std::fs::metadata(&nar).unwrap().len(),
            p.nar.len() as u64,
            "{name}"
        );
        // The narinfo keeps the publisher's signatures.
        let hash = p.info.store_path.hash_part().to_owned();
        let served =
            NarInfo::parse(&std::fs::read(at.join(format!("{hash}.narinfo"))).unwrap()).unwrap();
        assert_eq!(served.sigs, p.info.sigs);
        assert_eq!(served.nar_hash, p.info.nar_hash);
        // Whole.
        assert!(std::fs::read(&nar).unwrap() == p.nar, "{name}: NAR differs");
    }

    // Reads at offsets around segment boundaries, and at random, on a
    // fresh open each (no help from sequential read-ahead).
    let original = &w.path("noise").nar;
    let nar = nar_path(&at, &w, "noise");
    let len = original.len() as u64;
    let mut offsets: Vec<(u64, usize)> = Vec::new();
    for seg in [0u64, 1, 2, 100, 767] {
        for delta in [-1i64, 0, 1] {
            let o = (seg * 4096).saturating_add_signed(delta);
            for n in [1usize, 4095, 4096, 4097, 12_289] {
                offsets.push((o, n));
            }
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        offsets.push((x % len, (x >> 32) as usize % 70_000 + 1));
    }
    offsets.push((len - 1, 10));
    offsets.push((len, 10));
    offsets.push((len + 4096, 10));
    for (o, n) in offsets {
        let mut f = std::fs::File::open(&nar).unwrap();
        f.seek(SeekFrom::Start(o)).unwrap();
        let mut buf = Vec::new();
        f.take(n as u64).read_to_end(&mut buf).unwrap();
        let lo = (o as usize).min(original.len());
        let hi = (lo + n).min(original.len());
        assert!(buf == original[lo..hi], "bytes {o}+{n} differ");
    }

    // Many readers at once, of the same and of different files.
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (w, at) = (&w, &at);
            scope.spawn(move || {
                let name = if t % 2 == 0 { "noise" } else { "marked" };
                let original = &w.path(name).nar;
                let nar = nar_path(at, w, name);
                let mut f = std::fs::File::open(&nar).unwrap();
                let mut x = t + 1;
                for _ in 0..100 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let o = (x >> 20) % original.len() as u64;
                    let n = ((x >> 8) % 20_000 + 1) as usize;
                    let mut buf = vec![0; n];
                    let got = std::os::unix::fs::FileExt::read_at(&f, &mut buf, o).unwrap();
                    let hi = (o as usize + n).min(original.len());
                    assert!(buf[..got] == original[o as usize..hi], "{name}: {o}+{n}");
                    let _ = f.seek(SeekFrom::Start(0));
                }
            });
        }
    });
    drop(m);
}

#[test]
fn sigterm_unmounts_cleanly_and_a_stale_mount_is_cleared_at_the_next_start() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let w = world();
    let id = identity(&w);
    let at = w.tmp.path().join("mnt");
    let mut m = Mounted::start(&w.data, &at, &["--trust", &id], &[]);
    assert!(is_mounted(&at));
    let (status, took) = m.stop();
    assert!(status.success(), "serve exited with {status}");
    assert!(!is_mounted(&at), "still mounted after SIGTERM");
    eprintln!("unmounted and exited {took:?} after SIGTERM");

    // A crash (SIGKILL) leaves the mount behind, dead.
    let mut crashed = Mounted::start(&w.data, &at, &["--trust", &id], &[]);
    let mut serve = crashed.serve.take().unwrap();
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    std::mem::forget(crashed); // no clean-up: the mount stays, stale
    assert!(is_mounted(&at));
    let err = std::fs::read_dir(&at).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let next = Mounted::start(&w.data, &at, &["--trust", &id], &[]);
    next.wait_for(&w);
    let until = Instant::now() + Duration::from_secs(10);
    while !next.log().contains("stale mount") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(next.log().contains("stale mount"), "{}", next.log());
    assert!(std::fs::read(nar_path(&at, &w, "noise")).unwrap() == w.path("noise").nar);

    // A busy or missing mount point is a clear error.
    let mount_fails = |on: &Path| {
        let out = hypernar(&[
            "serve",
            "--data",
            s(&w.tmp.path().join("other")),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "none",
            "--mount",
            s(on),
        ]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = mount_fails(&w.tmp.path().join("no-such-dir/mnt2"));
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    // `at` is mounted by `next`.
    let err = mount_fails(&at);
    assert!(err.contains("already a mount point"), "{err}");
    // The mount that was there is untouched.
    assert!(std::fs::read(nar_path(&at, &w, "noise")).unwrap() == w.path("noise").nar);
}

/// A SIGTERM while `serve` is still starting (its first line is printed
/// before the view is mounted) is held until the node is up, then ends it
/// cleanly: exit 0 and no mount left behind. Before the handler was
/// installed first thing, such a signal killed the process by the default
/// action and left a stale mount.
#[test]
fn sigterm_while_starting_exits_cleanly_and_leaves_no_mount() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let w = world();
    let id = identity(&w);
    let at = w.tmp.path().join("mnt");
    std::fs::create_dir_all(&at).unwrap();
    for round in 0..5 {
        let node = serve(
            &w.data,
            &["--mount", s(&at), "--http", "none", "--trust", &id],
            &[],
        );
        let log = node.log.clone();
        let status = node.terminate();
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            status.success(),
            "round {round}: serve exited with {status}: {log}"
        );
        if is_mounted(&at) {
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&at)
                .status();
            panic!("round {round}: still mounted after SIGTERM: {log}");
        }
    }
}

#[test]
fn a_read_whose_blocks_cannot_be_had_fails_with_eio_within_the_deadline() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    if !faults_built_in() {
        return;
    }
    let w = world();
    let id = identity(&w);
    // The only peer answers 64 KiB of blocks per feed (the index and the
    // keys), then nothing.
    let seed = serve(
        &w.data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "65536")],
    );
    let user = w.tmp.path().join("user");
    let at = w.tmp.path().join("mnt");
    let m = Mounted::start(
        &user,
        &at,
        &["--trust", &id, "--peer", &seed.addr, "--peer-deadline", "3"],
        &[],
    );
    m.wait_for(&w);
    let nar = nar_path(&at, &w, "noise");
    let t = Instant::now();
    let r = std::fs::read(&nar);
    let took = t.elapsed();
    let err = r.expect_err("the read succeeded without the blocks");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(took < Duration::from_secs(15), "EIO only after {took:?}");
    eprintln!("EIO after {took:?}");
    assert!(m.log().contains("read failed"), "{}", m.log());
}

/// Every file under `dir` (not following links) modified since `since`,
/// skipping `except`.
fn files(dir: &Path, except: &Path, since: std::time::SystemTime, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.starts_with(except) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&p, except, since, out),
            Ok(t)
                if t.is_file()
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m >= since) =>
            {
                out.push(p)
            }
            _ => {}
        }
    }
}

#[test]
fn nothing_decrypted_reaches_the_disk() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let w = world();
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let user = w.tmp.path().join("user");
    let at = w.tmp.path().join("mnt");
    let m = Mounted::start(&user, &at, &["--trust", &id, "--peer", &seed.addr], &[]);
    m.wait_for(&w);
    let nar = std::fs::read(nar_path(&at, &w, "marked")).unwrap();
    assert!(nar == w.path("marked").nar);
    drop(m);
    // The marker was read in plain through the mount; it must not be in
    // any file of the node's data directory, nor in any file written to
    // /tmp since the test began (but the sample cache, which holds it
    // zstd-compressed, and the publisher's own data directory).
    let mut all = Vec::new();
    files(&user, &at, since, &mut all);
    files(Path::new("/tmp"), &at, since, &mut all);
    let needle = &MARKER[..MARKER.len() - 1];
    let mut scanned = 0;
    for f in all {
        // Sample caches (this test's and those of tests running beside
        // it) hold the marker as written: the first copy of it stays
        // literal in their zstd files.
        let sample_cache = f.components().any(|c| c.as_os_str() == "cache")
            && f.to_string_lossy().starts_with("/tmp/hypernar-test-");
        if sample_cache || f.starts_with(&w.data) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        scanned += 1;
        assert!(
            !bytes.windows(needle.len()).any(|win| win == needle),
            "plaintext in {}",
            f.display()
        );
    }
    assert!(scanned > 5, "only {scanned} files scanned");
}

#[test]
fn hypernar_mount_is_serve_with_a_mount_and_no_http_api() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let w = world();
    let id = identity(&w);
    let at = w.tmp.path().join("mnt");
    std::fs::create_dir_all(&at).unwrap();
    let mut child = std::process::Command::new(bin())
        .args([
            "mount",
            s(&at),
            "--data",
            s(&w.data),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--upstream", "none", "--trust", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let until = Instant::now() + Duration::from_secs(20);
    while !at
        .join(format!(
            "{}.narinfo",
            w.path("noise").info.store_path.hash_part()
        ))
        .exists()
    {
        assert!(Instant::now() < until, "not mounted within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read(nar_path(&at, &w, "noise")).unwrap() == w.path("noise").nar);
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    for l in lines.by_ref() {
        out.push_str(&l.unwrap());
        out.push('\n');
    }
    assert!(out.contains("mounted at"), "{out}");
    assert!(
        !out.contains("binary cache for Nix at http"),
        "an HTTP API was started: {out}"
    );
    assert!(!is_mounted(&at), "still mounted after SIGTERM");
}

/// Paths whose trees hold what a store view must get right: nested and
/// empty directories, an executable, names with spaces and non-ASCII,
/// relative, absolute and dangling symlinks, an empty file, a 1 MiB file
/// before a small one; a path that is one executable file; one published
/// as a build before listings would (listed by a scan of its NAR); and
/// one whose NAR is not a NAR at all. 64 KiB segments.
fn tree_world() -> (World, String) {
    use hypernar_publisher::sample::{Contents, Entry::*, SamplePath};
    let f = |c: &[u8], x| tree_file(c.to_vec(), x);
    let tricky = |extra: &str| {
        Dir(vec![
            (
                "a".into(),
                Dir(vec![(
                    "b".into(),
                    Dir(vec![("c".into(), f(b"deep\n", false))]),
                )]),
            ),
            ("big".into(), f(&noise(1 << 20, 3), false)),
            (
                "bin".into(),
                Dir(vec![
                    ("run me".into(), f(b"#!/bin/sh\necho run\n", true)),
                    ("ünïcødé ✓".into(), f("ü\n".as_bytes(), false)),
                ]),
            ),
            ("dangling".into(), Symlink("does/not/exist".into())),
            ("empty".into(), f(b"", false)),
            ("empty dir".into(), Dir(vec![])),
            (
                "link-abs".into(),
                Symlink("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x/bin".into()),
            ),
            ("link-rel".into(), Symlink("bin/run me".into())),
            (
                "small".into(),
                f(b"a small file after a large one\n", false),
            ),
            (extra.into(), f(extra.as_bytes(), false)),
        ])
    };
    let tree = |name: &str, node| SamplePath {
        name: name.into(),
        contents: Contents::Tree(node),
        references: vec![],
        compression: Compression::Zstd,
    };
    let w = World::new(&[
        tree("tricky", tricky("new")),
        tree("tricky-old", tricky("old")),
        tree("single-file", f(b"#!/bin/sh\necho single\n", true)),
        raw("opaque", noise(100_000, 4), Compression::Zstd, &[]),
    ]);
    let seg = ["--segment-size", "65536"];
    let old = w.store_path("tricky-old");
    let url = w.cache_url();
    let mut args = w.publish_args(&url);
    args.extend(seg);
    args.push(&old);
    let out = std::process::Command::new(bin())
        .args(&args)
        .env("HYPERNAR_FAULT_NO_LISTINGS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.publish(&["--all", seg[0], seg[1]]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("published without a listing"), "{log}");
    let id = identity(&w);
    (w, id)
}

/// Asserts the trees at `a` (restored by Nix) and `b` (the mount) hold the
/// same names, kinds, executable bits, symlink targets and contents.
fn same_tree(a: &Path, b: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let (ma, mb) = (
        std::fs::symlink_metadata(a).unwrap(),
        std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
    );
    let ft = |m: &std::fs::Metadata| (m.is_dir(), m.is_file(), m.file_type().is_symlink());
    assert_eq!(ft(&ma), ft(&mb), "{}", b.display());
    if ma.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(a).unwrap(),
            std::fs::read_link(b).unwrap()
        );
    } else if ma.is_file() {
        let x = |m: &std::fs::Metadata| m.permissions().mode() & 0o111 != 0;
        assert_eq!(x(&ma), x(&mb), "executable bit of {}", b.display());
        assert_eq!(ma.len(), mb.len(), "{}", b.display());
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs",
            b.display()
        );
    } else {
        let names = |d: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        assert_eq!(na, nb, "{}", b.display());
        for n in na {
            same_tree(&a.join(&n), &b.join(&n));
        }
    }
}

fn nix_restore(nar: &[u8], to: &Path) {
    use std::io::Write;
    let mut child = std::process::Command::new("nix-store")
        .arg("--restore")
        .arg(to)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nix-store (Debian package nix-bin)");
    child.stdin.take().unwrap().write_all(nar).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_store_view_equals_nix_store_restore_of_each_nar() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    if std::process::Command::new("nix-store")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip_or_fail("nix-store (Debian package nix-bin)");
    }
    let (w, id) = tree_world();
    let at = w.tmp.path().join("mnt");
    let m = Mounted::start(&w.data, &at, &["--trust", &id], &[]);
    m.wait_for(&w);
    let store = at.join("store");
    let mut listed: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want: Vec<String> = w
        .written
        .iter()
        .map(|p| p.info.store_path.base_name().to_owned())
        .collect();
    want.sort();
    assert_eq!(listed, want);
    for name in ["tricky", "tricky-old", "single-file"] {
        let restored = w.tmp.path().join(format!("restored-{name}"));
        nix_restore(&w.path(name).nar, &restored);
        let base = w.path(name).info.store_path.base_name().to_owned();
        same_tree(&restored, &store.join(&base));
    }
    let log = m.log();
    assert!(
        log.contains("no listing was published for this path: scanning its NAR"),
        "{log}"
    );
    // Reads at any offset of a file spanning segments.
    let big = store
        .join(w.path("tricky").info.store_path.base_name())
        .join("big");
    let mut fh = std::fs::File::open(&big).unwrap();
    let want = noise(1 << 20, 3);
    for off in [0u64, 65_535, 65_536, 300_001, (1 << 20) - 5] {
        let mut buf = vec![0; 9000];
        fh.seek(SeekFrom::Start(off)).unwrap();
        let n = fh.read(&mut buf).unwrap();
        let end = (off as usize + 9000).min(want.len());
        assert!(n > 0 && buf[..n] == want[off as usize..off as usize + n]);
        assert!(off as usize + n <= end);
    }
    // A NAR that is not a NAR: listed, but its tree cannot be shown.
    let opaque = store.join(w.path("opaque").info.store_path.base_name());
    let err = std::fs::symlink_metadata(&opaque).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Names that are not there.
    assert!(!store.join("0000000000000000000000000000000-x").exists());
    let tricky = store.join(w.path("tricky").info.store_path.base_name());
    assert!(!tricky.join("nope").exists());
    assert!(!tricky.join("small/under-a-file").exists());
    let err = std::fs::write(tricky.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

/// `hypernar_received_bytes_total{source="peer"}` of a node.
fn received_from_peers(http_base: &str) -> u64 {
    let m = http(http_base, "GET", "/metrics", &[]);
    String::from_utf8_lossy(&m.body)
        .lines()
        .find_map(|l| l.strip_prefix("hypernar_received_bytes_total{source=\"peer\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn cat_of_one_small_file_of_a_large_path_fetches_at_most_two_segments() {
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let (w, id) = tree_world();
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let user = w.tmp.path().join("user-data");
    let at = w.tmp.path().join("mnt");
    let m = Mounted::start(
        &user,
        &at,
        &[
            "--trust",
            &id,
            "--peer",
            &seed.addr,
            "--http",
            "127.0.0.1:0",
        ],
        &[],
    );
    m.wait_for(&w);
    let api = m.serve.as_ref().unwrap().http.clone().unwrap();
    let path = at
        .join("store")
        .join(w.path("tricky").info.store_path.base_name());
    let before = received_from_peers(&api);
    let small = std::fs::read(path.join("small")).unwrap();
    assert_eq!(small, b"a small file after a large one\n");
    let listing_and_small = received_from_peers(&api) - before;
    // The listing (one block here) and the segments the file touches: at
    // most two, each at most 64 KiB + 18 bytes sealed.
    assert!(
        listing_and_small <= 3 * (65_536 + 18),
        "cat of a 31-byte file received {listing_and_small} bytes"
    );
    assert!(
        listing_and_small > 0,
        "nothing was fetched: is the metric right?"
    );
    // The control: the 1 MiB file before it fetches at least its 16
    // segments (noise does not compress).
    let before = received_from_peers(&api);
    assert!(std::fs::read(path.join("big")).unwrap() == noise(1 << 20, 3));
    let big = received_from_peers(&api) - before;
    assert!(big >= 15 * 65_536, "the 1 MiB file received {big} bytes");
}

/// The view of a publisher whose index is in runs lists the index's tail
/// and what was looked up (a node does not hold the rest), and finds any
/// other path when its name is asked for, as Nix's file:// store asks.
#[test]
fn a_mount_of_an_index_in_runs_finds_a_path_not_listed_when_its_name_is_asked() {
    use crate::runs::{manifest, paths, publish_with_tail, records};
    use hypernar_feed::format::identity::{INDEX_FEED, RUNS_FEED};
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let w = World::new(&paths(20));
    let names: Vec<String> = (0..20).map(|i| w.store_path(&format!("p{i}"))).collect();
    for batch in names[..18].chunks(9) {
        publish_with_tail(&w, "8", batch, &[]);
    }
    publish_with_tail(&w, "8", &names[18..], &[]);
    let m = manifest(&records(&w, RUNS_FEED));
    assert!(m.indexed_to > 0 && m.indexed_to < records(&w, INDEX_FEED).len() as u64);
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let at = w.tmp.path().join("mnt");
    let mnt = Mounted::start(
        &w.tmp.path().join("user"),
        &at,
        &["--trust", &id, "--peer", &seed.addr],
        &[],
    );
    let narinfo = |name: &str| format!("{}.narinfo", w.path(name).info.store_path.hash_part());
    // The tail is listed once replicated.
    let until = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(&at)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_str() == Some(&narinfo("p19")))
    {
        assert!(
            Instant::now() < until,
            "the tail is not listed: {}",
            mnt.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = |name: &str| {
        std::fs::read_dir(&at)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_str() == Some(&narinfo(name)))
    };
    assert!(
        !listed("p3"),
        "a path in a run is listed before it was looked up"
    );
    // Asked by name: its narinfo and its NAR, and it is listed from then on.
    assert!(std::fs::read(nar_path(&at, &w, "p3")).unwrap() == w.path("p3").nar);
    assert!(listed("p3"));
    // Under store/ too.
    let base = w.path("p12").info.store_path.base_name().to_owned();
    assert!(at.join("store").join(&base).exists(), "{}", mnt.log());
    // A name no publisher has is not there (and nothing breaks).
    assert!(!at.join("00000000000000000000000000000000.narinfo").exists());
    assert!(!at.join("not-a-hash.narinfo").exists());
    assert!(std::fs::read(nar_path(&at, &w, "p19")).unwrap() == w.path("p19").nar);
}
