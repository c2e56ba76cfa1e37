//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use hypernar_feed::format::identity::{PublisherSecret, DATA_FEED_0, INDEX_FEED, PUBLIC_KEYS_FEED};
use hypernar_feed::format::narinfo::Compression;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::{Catalog, FeedStore};
use hypernar_publisher::sample::{self, Contents, Entry, NixSigningKey, SamplePath, WrittenPath};
use sha2::{Digest, Sha256};

mod http;
pub use http::*;
mod lan;
pub use lan::*;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hypernar")
}

/// Runs `hypernar` with `args`; returns its output.
pub fn hypernar(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("HYPERNAR_DATA")
        .env_remove("HYPERNAR_KEY")
        .output()
        .expect("run hypernar")
}

/// Runs `hypernar` and asserts it succeeded; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = hypernar(args);
    assert!(
        out.status.success(),
        "hypernar {args:?} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Combined stdout and stderr of a run that must have failed.
pub fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "command unexpectedly succeeded");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `hypernar`, asserts it failed; returns stdout + stderr.
pub fn fails(args: &[&str]) -> String {
    failed(&hypernar(args))
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Copies the tree under `from` into `to`: directories and regular files;
/// anything else (a serve's control socket) is left out.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (kind, dst) = (e.file_type().unwrap(), to.join(e.file_name()));
        if kind.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if kind.is_file() {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A test world: a publisher key, a data dir and a sample cache.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub key: PathBuf,
    pub data: PathBuf,
    pub cache: PathBuf,
    pub written: Vec<WrittenPath>,
}

impl World {
    pub fn new(paths: &[SamplePath]) -> Self {
        Self::new_in(&std::env::temp_dir(), paths)
    }

    /// A world under `base` (`/dev/shm` for tests that write hundreds of
    /// thousands of fsynced blocks, which memory-backed files make cheap).
    pub fn new_in(base: &Path, paths: &[SamplePath]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("hypernar-test-")
            .tempdir_in(base)
            .unwrap();
        let key = tmp.path().join("pub.key");
        ok(&["keygen", "--out", s(&key)]);
        let cache = tmp.path().join("cache");
        let nix_key = NixSigningKey::from_seed("test-cache-1", [1; 32]);
        let written = sample::write_cache(&cache, paths, &nix_key).unwrap();
        World {
            key,
            data: tmp.path().join("data"),
            cache,
            written,
            tmp,
        }
    }

    pub fn cache_url(&self) -> String {
        format!("file://{}", self.cache.display())
    }

    pub fn path(&self, name: &str) -> &WrittenPath {
        self.written
            .iter()
            .find(|w| w.info.store_path.name() == name)
            .unwrap_or_else(|| panic!("no sample path {name}"))
    }

    pub fn store_path(&self, name: &str) -> String {
        self.path(name).info.store_path.to_string()
    }

    pub fn narinfo_file(&self, name: &str) -> PathBuf {
        let hash = self.path(name).info.store_path.hash_part().to_owned();
        self.cache.join(format!("{hash}.narinfo"))
    }

    pub fn nar_file(&self, name: &str) -> PathBuf {
        self.cache.join(&self.path(name).info.url)
    }

    /// `hypernar publish --from <this cache>` with extra args.
    pub fn publish(&self, extra: &[&str]) -> Output {
        self.publish_from(&self.cache_url(), extra)
    }

    /// `hypernar publish --from <from>` into this world's data directory.
    pub fn publish_from(&self, from: &str, extra: &[&str]) -> Output {
        let mut args = self.publish_args(from);
        args.extend_from_slice(extra);
        hypernar(&args)
    }

    /// The arguments of `hypernar publish --from <from>` into this world.
    pub fn publish_args<'a>(&'a self, from: &'a str) -> Vec<&'a str> {
        vec![
            "publish",
            "--key",
            s(&self.key),
            "--data",
            s(&self.data),
            "--from",
            from,
        ]
    }

    pub fn publish_ok(&self, extra: &[&str]) -> String {
        let out = self.publish(extra);
        assert!(
            out.status.success(),
            "publish {extra:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cat_nar(&self, store_path: &str) -> Output {
        hypernar(&["cat-nar", "--data", s(&self.data), store_path])
    }

    /// Asserts `cat-nar` gives back exactly the original NAR.
    pub fn assert_reads_back(&self, name: &str) {
        let out = self.cat_nar(&self.store_path(name));
        assert!(
            out.status.success(),
            "cat-nar {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            sha256(&out.stdout),
            sha256(&self.path(name).nar),
            "{name} read back differs"
        );
    }

    pub fn secret(&self) -> PublisherSecret {
        PublisherSecret::from_key_file(&std::fs::read_to_string(&self.key).unwrap()).unwrap()
    }

    /// Directory of one of this publisher's feeds.
    pub fn feed_dir(&self, name: &str) -> PathBuf {
        let key = self.secret().feed_signing_key(name).verifying_key();
        self.data.join("feeds").join(hex::encode(key.as_bytes()))
    }

    /// Checks the invariants a killed or failed run must keep: every data
    /// block of every declared data feed belongs to exactly one path
    /// record, no path is recorded twice, every record's blocks are present
    /// (each path's listing right after its segments, in the same feed).
    /// Returns the paths recorded.
    pub fn check_consistent(&self) -> Vec<String> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = FeedStore::open(&self.data).unwrap();
            let secret = self.secret();
            let index_key = secret.feed_signing_key(INDEX_FEED).verifying_key();
            let keys_key = secret.feed_signing_key(PUBLIC_KEYS_FEED).verifying_key();
            let index_len = store
                .open_existing(&index_key)
                .await
                .unwrap()
                .unwrap()
                .len();
            assert!(store.open_existing(&keys_key).await.unwrap().is_some());
            let catalog = Catalog::load(store.clone()).await.unwrap();
            let publisher = catalog.publishers().next().expect("one publisher");
            // Header, the feed declarations, then one record per path and
            // one per listing.
            assert_eq!(
                index_len,
                1 + publisher.feeds.len() as u64
                    + publisher.paths.len() as u64
                    + publisher.listings.len() as u64,
                "duplicate or stray index records"
            );
            let feed_of = |path: &StorePath| publisher.paths[path].1.data_feed;
            let mut ranges: Vec<(u32, u64, u64)> = publisher
                .paths
                .values()
                .map(|(_, r)| (r.data_feed, r.first_block, r.block_count))
                .chain(
                    publisher
                        .listings
                        .iter()
                        .map(|(p, l)| (feed_of(p), l.first_block, l.block_count)),
                )
                .collect();
            for (path, l) in &publisher.listings {
                let r = &publisher.paths[path].1;
                assert_eq!(l.first_block, r.first_block + r.block_count, "{path}");
            }
            ranges.sort();
            let data_feeds: Vec<_> = publisher
                .feeds
                .values()
                .filter(|d| d.role == hypernar_feed::format::record::FeedRole::Data)
                .collect();
            assert!(data_feeds.iter().any(|d| d.name == DATA_FEED_0));
            for decl in data_feeds {
                let key = secret.feed_signing_key(&decl.name).verifying_key();
                assert_eq!(key.to_bytes(), decl.public_key, "{}", decl.name);
                let data_len = store.open_existing(&key).await.unwrap().unwrap().len();
                let mut next = 1; // block 0 is the header
                for &(_, first, count) in ranges.iter().filter(|r| r.0 == decl.id) {
                    assert_eq!(
                        first, next,
                        "{}: data blocks without a record, or overlapping records",
                        decl.name
                    );
                    next = first + count;
                }
                assert_eq!(
                    next, data_len,
                    "{}: data blocks past the last record",
                    decl.name
                );
            }
            let mut names: Vec<String> = publisher.paths.keys().map(|p| p.to_string()).collect();
            names.sort();
            names
        })
    }
}

pub fn tree_file(contents: Vec<u8>, executable: bool) -> Entry {
    Entry::File {
        contents,
        executable,
    }
}

pub fn raw(name: &str, nar: Vec<u8>, compression: Compression, refs: &[&str]) -> SamplePath {
    SamplePath {
        name: name.into(),
        contents: Contents::RawNar(nar),
        references: refs.iter().map(|r| r.to_string()).collect(),
        compression,
    }
}

/// Loudly reports a test that cannot run here; fails under CI instead, so a
/// missing install step is never hidden.
pub fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing on a CI machine: .ci/run must install it");
    }
    eprintln!("\n*** SKIPPED: {what} is not available on this machine ***\n");
}

/// A `hypernar serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    /// `http://127.0.0.1:PORT` of its binary-cache API, unless started
    /// with `--http none`.
    pub http: Option<String>,
    pub log: std::path::PathBuf,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Serve {
    /// Stops it as an operator would (SIGTERM) and waits for its exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("waiting for serve")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let log = data.with_extension("log");
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--data", s(data)]);
    if !extra.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !extra.contains(&"--http") {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    // No test reaches cache.nixos.org; those that test upstreams name one.
    if !extra.contains(&"--upstream") {
        cmd.args(["--upstream", "none"]);
    }
    // Nor the Mainline DHT: the DHT tests name a local testnet.
    if !extra.contains(&"--dht-bootstrap") {
        cmd.arg("--no-dht");
    }
    cmd.args(extra)
        .env("RUST_LOG", "hypernar_fetcher=info,hypernar_swarm=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches(',')
        .to_owned();
    let http = (!extra.windows(2).any(|w| w == ["--http", "none"])).then(|| {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no HTTP address in {line:?}"))
            .to_owned()
    });
    Serve {
        child,
        addr,
        http,
        log,
        _stdout: stdout,
    }
}

pub fn identity(w: &World) -> String {
    w.secret().identity().to_string()
}

pub fn fetch(data: &Path, id: &str, peers: &[&str], path: &str) -> std::process::Output {
    let mut args = vec!["fetch", "--data", s(data), "--trust", id, "--timeout", "20"];
    for p in peers {
        args.extend(["--peer", p]);
    }
    args.push(path);
    hypernar(&args)
}

pub fn assert_fetched(out: &std::process::Output, w: &World, name: &str) {
    assert!(
        out.status.success(),
        "fetch {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256(&out.stdout),
        sha256(&w.path(name).nar),
        "{name} fetched differs"
    );
}

/// Waits until `serve`'s log has `needle`, or panics after `secs` seconds.
pub fn wait_for_log(serve: &Serve, needle: &str, secs: u64) {
    wait_for_log_count(&serve.log, needle, 1, secs)
}

/// Waits until the log file `log` has `needle` `n` times, or panics after
/// `secs` seconds.
pub fn wait_for_log_count(log: &Path, needle: &str, n: usize, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} not {n} times in {} after {secs}s:\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An address nothing listens on: port 1 (tcpmux) is not served on these
/// machines. Picking a free port by binding and releasing it would race
/// with anything else that binds meanwhile.
pub fn closed_addr() -> String {
    let addr = "127.0.0.1:1";
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "something listens on {addr}; the tests need it closed"
    );
    addr.to_owned()
}

/// Whether the `hypernar` binary under test has the fault switches
/// (`--features fault-injection`, as the test command builds it); reports
/// loudly, or fails under CI, when it does not.
pub fn faults_built_in() -> bool {
    if cfg!(feature = "fault-injection") {
        return true;
    }
    skip_or_fail("a hypernar binary built with --features fault-injection");
    false
}

/// `len` bytes that do not compress (xorshift from `seed`).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A process's resident memory now, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Debian's nginx serving `root` as static files on 127.0.0.1 (keep-alive
/// and ranges, as a CDN behaves), killed when dropped. `extra` goes into
/// its `server` block (`max_ranges 0;` makes it ignore `Range`).
pub struct Nginx {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// What nginx has logged of the requests it answered (combined format).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nginx_available() -> bool {
    Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn nginx(root: &Path, extra: &str) -> Nginx {
    nginx_with(root, "", extra)
}

/// [`nginx`] with `http_extra` in its `http` block (a `limit_req_zone`).
pub fn nginx_with(root: &Path, http_extra: &str, extra: &str) -> Nginx {
    nginx_at("127.0.0.1", root, http_extra, extra)
}

/// [`nginx_with`], listening on `ip` (a bridge address namespaces reach).
pub fn nginx_at(ip: &str, root: &Path, http_extra: &str, extra: &str) -> Nginx {
    let dir = tempfile::Builder::new()
        .prefix("hypernar-nginx-")
        .tempdir()
        .unwrap();
    // nginx cannot bind port 0 and say which it got: try ports until one
    // binds (no bind-and-release race, a busy port just fails).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..50 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (std::process::id() as u64 * 7919 + n * 104_729) % 40_000;
        if std::net::TcpStream::connect((ip, port as u16)).is_ok() {
            continue; // taken
        }
        let d = dir.path().display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1;\n\
             error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log {d}/access.log;\n\
               client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
               uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
               default_type application/octet-stream; {http_extra}\n\
               server {{ listen {ip}:{port}; root {root}; {extra} }} }}\n",
            root = root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("nginx")
            .args(["-c", s(&conf_path), "-p", s(dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx)");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // did not bind: next port
            }
            if std::net::TcpStream::connect((ip, port as u16)).is_ok() {
                // Ours, not another server that took the port meanwhile:
                // nginx exits at once when it cannot bind.
                std::thread::sleep(std::time::Duration::from_millis(100));
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                return Nginx {
                    child,
                    base: format!("http://{ip}:{port}"),
                    _dir: dir,
                };
            }
            if std::time::Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    panic!(
        "nginx did not start; see {}",
        dir.path().join("error.log").display()
    );
}

/// A safe-path set's maintainer: a fresh key file and a data directory of
/// its own, under `dir`. Its set is called `lab`.
pub struct Lab {
    pub key: PathBuf,
    pub data: PathBuf,
}

impl Lab {
    pub fn new(dir: &Path) -> Self {
        let key = dir.join("lab.key");
        ok(&["keygen", "--out", s(&key)]);
        Lab {
            key,
            data: dir.join("lab-data"),
        }
    }

    /// `hypernar set add … lab --publisher P PATH`: vouches for `path` as
    /// `publisher` signed it; returns the set's id (printed last).
    pub fn add(&self, publisher: &str, path: &str) -> String {
        let out = ok(&[
            "set",
            "add",
            "--key",
            s(&self.key),
            "--data",
            s(&self.data),
            "lab",
            "--publisher",
            publisher,
            path,
        ]);
        out.lines().last().expect("a set id").to_owned()
    }

    /// Seeds `w`'s feeds and this set's, and starts a node in `w`'s
    /// `user` directory trusting `id`, with both seeds as its peers and
    /// `extra` flags (`--set`, `--pin`, `--share` …).
    pub fn follower(&self, w: &World, id: &str, extra: &[&str]) -> Follower {
        let seed = serve(&w.data, &["--http", "none"], &[]);
        let lab_seed = serve(&self.data, &["--http", "none"], &[]);
        let peers = [
            "--trust",
            id,
            "--peer",
            &seed.addr,
            "--peer",
            &lab_seed.addr,
        ];
        let node = serve(
            &w.tmp.path().join("user"),
            &[&peers[..], extra].concat(),
            &[],
        );
        Follower {
            node,
            seed,
            lab_seed,
        }
    }
}

/// What [`Lab::follower`] starts.
pub struct Follower {
    pub node: Serve,
    /// The publisher's seed.
    pub seed: Serve,
    /// The set maintainer's seed.
    pub lab_seed: Serve,
}

/// Whether Debian's headless `chromium` is here.
pub fn has_chromium() -> bool {
    Command::new("chromium").arg("--version").output().is_ok()
}

/// Runs headless `chromium` with `args` (the flags that work here:
/// env/machines), its profile in `profile`.
pub fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium")
}

/// The DOM of `url` after load, as headless chromium renders it.
pub fn rendered_dom(url: &str, profile: &Path) -> String {
    String::from_utf8_lossy(&chromium(&["--dump-dom", url], profile).stdout).into_owned()
}

/// A sample of the API at `base`'s `/metrics` (`name` with its labels, as
/// the line starts); 0 when it is not there yet.
pub fn metric(base: &str, name: &str) -> u64 {
    let text = String::from_utf8(http(base, "GET", "/metrics", &[]).body).unwrap();
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `program` run as another local user (uid and gid 65534, no groups)
/// through util-linux's `setpriv`; the caller must be root.
pub fn as_other_user(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ]);
    cmd
}
