//! `hypernar follow`: a channel URL that redirects (302, from nginx) to
//! release directories holding `store-paths.xz`, beside a binary cache of
//! xz NARs whose narinfos a test key signs (standing in for
//! `cache.nixos.org-1`). The releases share most of their closure.
//!
//! A stand-in, said so: the paths are built by the test's own NAR writer
//! and signed by the test's key (`publisher/src/sample.rs`), not built by
//! Nix; what a real channel serves has the same shape (checked against
//! channels.nixos.org's layout in docs/protocol.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{nar_of, NixSigningKey, SamplePath};

use crate::util::*;

/// The closure every release shares: app1 -> lib -> libc, app2 -> lib,
/// tool -> libc.
fn closure() -> Vec<SamplePath> {
    let file = |t: &str| nar_of(&tree_file(t.repeat(200).into_bytes(), false)).unwrap();
    vec![
        raw("libc", file("libc"), Compression::Xz, &[]),
        raw("lib", file("lib"), Compression::Xz, &["libc"]),
        raw("app1", file("app1"), Compression::Xz, &["lib"]),
        raw("app2", file("app2"), Compression::Xz, &["lib"]),
        raw("tool", file("tool"), Compression::Xz, &["libc"]),
    ]
}

/// The site nginx serves: `cache/` (the binary cache) and
/// `releases/<name>/store-paths.xz`.
struct Site {
    w: World,
    root: PathBuf,
}

impl Site {
    fn new() -> Self {
        let w = World::new(&closure());
        let root = w.tmp.path().join("site");
        std::fs::create_dir_all(root.join("releases")).unwrap();
        std::os::unix::fs::symlink(&w.cache, root.join("cache")).unwrap();
        Site { w, root }
    }

    /// A release directory `name` listing the store paths of `roots`
    /// (names, or full paths as given).
    fn release(&self, name: &str, roots: &[&str]) {
        let dir = self.root.join("releases").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = roots
            .iter()
            .map(|r| {
                if r.starts_with("/nix/store/") {
                    format!("{r}\n")
                } else {
                    format!("{}\n", self.w.store_path(r))
                }
            })
            .collect();
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(text.as_bytes()).unwrap();
        std::fs::write(dir.join("store-paths.xz"), e.finish().unwrap()).unwrap();
        std::fs::write(dir.join("git-revision"), "0123456789abcdef\n").unwrap();
    }

    /// nginx on the site, its `/channel` redirecting to release `to`.
    fn serve_channel(&self, to: &str) -> Nginx {
        self.serve_channel_with(to, "", "")
    }

    /// [`Site::serve_channel`] with more nginx configuration: `http`
    /// applies to the server, `cache` to the cache's location.
    fn serve_channel_with(&self, to: &str, http: &str, cache: &str) -> Nginx {
        nginx_with(
            &self.root,
            http,
            &format!(
                "location = /channel {{ return 302 /releases/{to}/; }} \
                 location /cache/ {{ {cache} }}"
            ),
        )
    }

    /// `hypernar follow --once` of the channel `test` at `ng`, trusting
    /// the cache's key.
    fn follow(&self, ng: &Nginx, extra: &[&str]) -> std::process::Output {
        let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
        let channel = format!("test={}/channel", ng.base);
        let upstream = format!("{}/cache", ng.base);
        let mut args = vec![
            "follow",
            "--once",
            "--key",
            s(&self.w.key),
            "--data",
            s(&self.w.data),
            "--channel",
            &channel,
            "--upstream",
            &upstream,
            "--trusted-public-key",
            &key,
        ];
        args.extend_from_slice(extra);
        hypernar(&args)
    }

    /// What `hypernar channels` says was committed.
    fn state(&self) -> String {
        let out = hypernar(&["channels", "--data", s(&self.w.data)]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    }

    /// Whether the generations feed's last block is a generations record.
    fn ends_with_record(&self) -> bool {
        use hypernar_feed::format::record::Record;
        use hypernar_feed::io::FeedIo;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = hypernar_feed::FeedStore::open(&self.w.data).unwrap();
            let key = self
                .w
                .secret()
                .feed_signing_key(hypernar_feed::format::identity::GENERATIONS_FEED)
                .verifying_key();
            let mut feed = store.open_existing(&key).await.unwrap().unwrap();
            let last = feed.length() - 1;
            matches!(feed.read_record(last).await, Ok(Record::Generations(_)))
        })
    }

    /// The committed generation of channel `test`, read from the
    /// generations feed: its release and the names of the paths its table
    /// lists, each entry checked to point at that path's record (and at
    /// its key release, when it has one).
    fn generation(&self) -> Option<(String, Vec<String>)> {
        use hypernar_feed::format::identity::{GENERATIONS_FEED, INDEX_FEED, PUBLIC_KEYS_FEED};
        use hypernar_feed::format::record::Record;
        use hypernar_feed::format::run;
        use hypernar_feed::io::FeedIo;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = hypernar_feed::FeedStore::open(&self.w.data).unwrap();
            let secret = self.w.secret();
            let open = |name: &str| {
                let key = secret.feed_signing_key(name).verifying_key();
                let store = store.clone();
                async move { store.open_existing(&key).await.unwrap() }
            };
            let mut feed = open(GENERATIONS_FEED).await?;
            let (_, last) = hypernar_feed::lookup::last_generations(&mut feed)
                .await
                .unwrap()?;
            let g = last.get("test")?.clone();
            let mut index = open(INDEX_FEED).await.unwrap();
            let mut keys = open(PUBLIC_KEYS_FEED).await.unwrap();
            let mut names = Vec::new();
            let t = g.table;
            for block in t.first_block..t.end_block().unwrap() {
                let Record::RunPage(page) = feed.read_record(block).await.unwrap() else {
                    panic!("block {block} of the table is no page");
                };
                t.check_page(block, &page).unwrap();
                for e in page.entries {
                    let Record::Path(p) = index.read_record(e.index_seq).await.unwrap() else {
                        panic!("an entry points at no path record");
                    };
                    assert_eq!(run::path_hash(&p.store_path), e.hash);
                    if e.key_seq != run::NO_KEY {
                        let Record::Key(k) = keys.read_record(e.key_seq).await.unwrap() else {
                            panic!("an entry points at no key release");
                        };
                        assert_eq!(k.store_path, p.store_path);
                    }
                    names.push(p.store_path.name().to_owned());
                }
            }
            assert_eq!(names.len() as u64, g.closure);
            names.sort();
            Some((g.release, names))
        })
    }

    /// Store paths the publisher's index holds.
    fn published(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .w
            .check_consistent()
            .into_iter()
            .map(|p| {
                hypernar_feed::format::storepath::StorePath::parse(&p)
                    .unwrap()
                    .name()
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_followed_channel_is_published_release_by_release_and_never_goes_back() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.100.aaaaaaa", &["app1"]);
    site.release("nixos-test.101.bbbbbbb", &["app1", "app2"]);
    site.release("nixos-test.99.ccccccc", &["tool"]);

    // Release 1: app1 and its closure.
    let ng = site.serve_channel("nixos-test.100.aaaaaaa");
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "committed nixos-test.100.aaaaaaa (1 roots, 3 closure paths: 3 published now, 0 before; 0 missing upstream)"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.published(), ["app1", "lib", "libc"]);
    // The generation committed lists exactly the closure.
    assert_eq!(
        site.generation(),
        Some((
            "nixos-test.100.aaaaaaa".into(),
            vec!["app1".into(), "lib".into(), "libc".into()]
        ))
    );
    assert!(
        site.state().contains("git 0123456789abcdef"),
        "{}",
        site.state()
    );
    // Looked at again: nothing to do.
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nixos-test.100.aaaaaaa is committed already"),
        "{}",
        stdout(&out)
    );
    drop(ng);

    // The channel moves: only app2 is new.
    let ng = site.serve_channel("nixos-test.101.bbbbbbb");
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "committed nixos-test.101.bbbbbbb (2 roots, 4 closure paths: 1 published now, 3 before"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.published(), ["app1", "app2", "lib", "libc"]);
    // Its generation lists the paths published before too.
    assert_eq!(
        site.generation().map(|(_, names)| names),
        Some(vec![
            "app1".into(),
            "app2".into(),
            "lib".into(),
            "libc".into()
        ])
    );
    drop(ng);

    // It goes back in time: refused, nothing published, the state kept.
    let ng = site.serve_channel("nixos-test.99.ccccccc");
    let before = site.state();
    let out = site.follow(&ng, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("older than nixos-test.101.bbbbbbb"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.published(), ["app1", "app2", "lib", "libc"]);
    assert_eq!(site.state(), before);
    site.w.assert_reads_back("app2");
    // The operator may take it all the same (after a bad commit).
    let out = site.follow(&ng, &["--allow-older"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        site.state().contains("nixos-test.99.ccccccc"),
        "{}",
        site.state()
    );
    assert_eq!(site.published(), ["app1", "app2", "lib", "libc", "tool"]);
}

/// Rewrites `name`'s narinfo in the cache with `edit`.
fn edit_narinfo(cache: &Path, w: &World, name: &str, edit: impl FnOnce(String) -> String) {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let f = cache.join(format!("{hash}.narinfo"));
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, edit(text)).unwrap();
}

#[test]
fn unsigned_narinfos_and_bad_nars_are_refused_and_missing_paths_do_not_block_a_release() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    let w = &site.w;
    // tool's narinfo signed by a key nobody trusts; app2's NAR corrupted.
    let other = NixSigningKey::from_seed("test-cache-1", [2; 32]);
    edit_narinfo(&w.cache, w, "tool", |t| {
        let info = hypernar_feed::format::narinfo::NarInfo::parse(t.as_bytes()).unwrap();
        let sig = other.sign(&info.fingerprint());
        t.lines()
            .map(|l| {
                if l.starts_with("Sig: ") {
                    format!("Sig: {sig}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    let app2 = w.path("app2").info.url.clone();
    let nar = w.cache.join(&app2);
    let mut bytes = std::fs::read(&nar).unwrap();
    // Another valid xz stream of other bytes: it decompresses, its hash is wrong.
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(&vec![b'x'; w.path("app2").nar.len()]).unwrap();
    bytes = {
        let _ = bytes;
        e.finish().unwrap()
    };
    std::fs::write(&nar, bytes).unwrap();
    let ghost = "/nix/store/00000000000000000000000000000000-ghost";
    site.release("nixos-test.200.ddddddd", &["app1", "tool", "app2", ghost]);
    let ng = site.serve_channel("nixos-test.200.ddddddd");
    let out = site.follow(&ng, &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused:")
            && err.contains("tool is not signed by a trusted key (test-cache-1)"),
        "{err}"
    );
    assert!(
        err.contains("missing upstream: 00000000000000000000000000000000"),
        "{err}"
    );
    assert!(err.contains("failed:") && err.contains("app2"), "{err}");
    assert!(err.contains("not committed"), "{err}");
    // Neither is published; the rest is.
    assert_eq!(site.published(), ["app1", "lib", "libc"]);
    assert_eq!(
        site.state(),
        "",
        "a release with refused paths was committed"
    );

    // Once what was wrong is gone, only the missing path is left: the
    // release commits, counting it.
    std::fs::remove_dir_all(site.root.join("releases/nixos-test.200.ddddddd")).unwrap();
    site.release("nixos-test.201.eeeeeee", &["app1", ghost]);
    drop(ng);
    let ng = site.serve_channel("nixos-test.201.eeeeeee");
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 missing upstream"),
        "{}",
        stdout(&out)
    );
    assert!(
        site.state().contains("nixos-test.201.eeeeeee"),
        "{}",
        site.state()
    );
}

#[test]
fn an_upstream_that_answers_429_when_asked_too_fast_is_waited_for_and_the_release_commits() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.300.fffffff", &["app1", "app2", "tool"]);
    // At most 4 requests a second, one more in a burst, and 429 for the
    // rest: the follower asks many narinfos at once.
    let ng = site.serve_channel_with(
        "nixos-test.300.fffffff",
        "limit_req_zone $binary_remote_addr zone=up:1m rate=4r/s;",
        "limit_req zone=up burst=1 nodelay; limit_req_status 429;",
    );
    let out = site.follow(&ng, &["-v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("answered 429; asking again"),
        "never throttled: {err}"
    );
    assert!(
        stdout(&out).contains("5 closure paths: 5 published now"),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.published(), ["app1", "app2", "lib", "libc", "tool"]);
}

#[test]
fn a_follow_killed_mid_release_is_finished_by_the_next_without_publishing_anything_twice() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    // Eight paths of 256 KiB of noise, each NAR sent at 512 KiB/s: a
    // release takes seconds, and is killed inside it.
    let paths: Vec<SamplePath> = (0..8)
        .map(|i| {
            let nar = nar_of(&tree_file(noise(256 << 10, 40 + i), false)).unwrap();
            raw(&format!("big{i}"), nar, Compression::Xz, &[])
        })
        .collect();
    let w = World::new(&paths);
    let root = w.tmp.path().join("site");
    std::fs::create_dir_all(root.join("releases")).unwrap();
    std::os::unix::fs::symlink(&w.cache, root.join("cache")).unwrap();
    let site = Site { w, root };
    let names: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    let roots: Vec<&str> = names.iter().map(String::as_str).collect();
    site.release("nixos-test.400.abcdef0", &roots);
    let ng = nginx_with(
        &site.root,
        "",
        "location = /channel { return 302 /releases/nixos-test.400.abcdef0/; } \
         location /cache/nar/ { limit_rate 512k; }",
    );
    let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
    let channel = format!("test={}/channel", ng.base);
    let upstream = format!("{}/cache", ng.base);
    let log = site.w.tmp.path().join("follow.log");
    let mut child = std::process::Command::new(bin())
        .args([
            "follow",
            "-v",
            "--once",
            "--jobs",
            "2",
            "--key",
            s(&site.w.key),
            "--data",
        ])
        .arg(&site.w.data)
        .args(["--channel", &channel, "--upstream", &upstream])
        .args(["--trusted-public-key", &key])
        .env("HYPERNAR_PROGRESS_SECS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Killed once two paths are in, before all are.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("publisher: published")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < until,
            "nothing published in 30 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Its log has the progress as plain lines (stderr is no terminal).
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(
            "channel test: publishing; channel at nixos-test.400.abcdef0, committed none; paths: 1 of 8 published"
        ),
        "{text}"
    );
    let before = site.published().len();
    assert!(before < 8, "the run ended before it was killed");
    assert_eq!(site.state(), "", "committed before its end");
    // The next run finishes it: every path once, and the release committed.
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "8 closure paths: {} published now, {before} before",
            8 - before
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.published().len(), 8);
    site.w.assert_reads_back("big7");
}

#[test]
fn a_follower_kept_under_the_upstreams_request_limit_is_never_throttled() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.500.1234567", &["app1", "app2", "tool"]);
    // The upstream answers 429 past 4 requests a second (one in a burst);
    // the follower asks at most 3 a second: never a 429.
    let ng = site.serve_channel_with(
        "nixos-test.500.1234567",
        "limit_req_zone $binary_remote_addr zone=up:1m rate=4r/s;",
        "limit_req zone=up burst=1 nodelay; limit_req_status 429;",
    );
    let out = site.follow(&ng, &["--max-upstream-requests", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("5 closure paths: 5 published now"),
        "{}",
        stdout(&out)
    );
    let log = ng.access_log();
    let cache: Vec<&str> = log.lines().filter(|l| l.contains("/cache/")).collect();
    assert!(cache.len() >= 10, "{log}");
    assert!(
        !cache.iter().any(|l| l.contains("\" 429 ")),
        "the follower went past its limit: {log}"
    );
    // A limit of nothing is refused, with what to give.
    let out = site.follow(&ng, &["--max-upstream-rate", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a rate of 0"), "{}", stderr(&out));
}

/// Aborted while committing a generation — after creating the feed,
/// after writing the table — the release is not committed, what was
/// committed before still reads back, and the next run commits it with
/// nothing published twice.
#[test]
fn a_follow_aborted_while_committing_a_generation_commits_it_next_time() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    for point in ["generations-created", "generation-pages"] {
        let site = Site::new();
        site.release("nixos-test.100.aaaaaaa", &["app1"]);
        site.release("nixos-test.101.bbbbbbb", &["app1", "tool"]);
        let ng = site.serve_channel("nixos-test.100.aaaaaaa");
        let aborted = |site: &Site, ng: &Nginx| {
            let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
            let out = std::process::Command::new(bin())
                .args(["follow", "--once", "--key", s(&site.w.key), "--data"])
                .arg(&site.w.data)
                .args(["--channel", &format!("test={}/channel", ng.base)])
                .args(["--upstream", &format!("{}/cache", ng.base)])
                .args(["--trusted-public-key", &key])
                .env("HYPERNAR_FAULT_ABORT_AT", point)
                .output()
                .unwrap();
            assert!(
                out.status.code().is_none(),
                "{point}: the run did not abort"
            );
        };
        aborted(&site, &ng);
        assert_eq!(site.state(), "", "{point}: committed before its record");
        assert_eq!(site.generation(), None, "{point}");
        let out = site.follow(&ng, &[]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("3 closure paths: 0 published now, 3 before"),
            "{point}: {}",
            stdout(&out)
        );
        assert_eq!(
            site.generation().map(|(r, n)| (r, n.len())),
            Some(("nixos-test.100.aaaaaaa".into(), 3)),
            "{point}"
        );
        drop(ng);
        if point == "generation-pages" {
            // Release 2's table written, its record not: release 1 is
            // still the one committed, for readers too.
            let ng = site.serve_channel("nixos-test.101.bbbbbbb");
            aborted(&site, &ng);
            assert!(
                site.state().contains("nixos-test.100.aaaaaaa"),
                "{}",
                site.state()
            );
            assert!(!site.ends_with_record());
            // Opened again (with nothing to do), the publisher appends the
            // last record again: peers read only the last block.
            let ng1 = site.serve_channel("nixos-test.100.aaaaaaa");
            let out = site.follow(&ng1, &[]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(site.ends_with_record());
            drop(ng1);
            let out = site.follow(&ng, &[]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                site.generation(),
                Some((
                    "nixos-test.101.bbbbbbb".into(),
                    ["app1", "lib", "libc", "tool"].map(String::from).to_vec()
                ))
            );
        }
        assert_eq!(
            site.published().len(),
            if point == "generation-pages" { 4 } else { 3 }
        );
    }
}

/// Waits until `serve`'s log has `needle` `n` times.
fn wait_for_count(serve: &Serve, needle: &str, n: usize, secs: u64) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
        if log.matches(needle).count() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{needle:?} not {n} times in:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Peers follow a channel's newest generation: a node that pins
/// `ID/test` holds each release's closure as soon as it is committed and
/// seeded, before anyone asks for it, and with `--require-set` serves
/// only the newest release; a path the next release drops is no longer
/// served nor pinned.
#[test]
fn a_node_pinned_to_a_channel_holds_each_new_release_and_serves_only_the_newest() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.1.aaaaaaa", &["app1"]);
    site.release("nixos-test.2.bbbbbbb", &["app1", "app2"]);
    site.release("nixos-test.3.ccccccc", &["app2", "tool"]);
    // Runs cut every two records: the pinned node reads the tables'
    // entries' records by where they point, not from a replicated index.
    let follow = |release: &str| {
        let ng = site.serve_channel(release);
        let out = site.follow(&ng, &["--run-tail", "2"]);
        assert!(out.status.success(), "{release}: {}", stderr(&out));
    };
    let channel = format!("{}/test", identity(&site.w));
    follow("nixos-test.1.aaaaaaa");
    // The pinned node knows no peer: each seed of the publisher dials it
    // (the publisher's data directory is locked while it follows).
    let pinned = serve(
        &site.w.tmp.path().join("pinned"),
        &["--pin", &channel, "--require-set"],
        &[],
    );
    let seed = || {
        serve(
            &site.w.data,
            &["--http", "none", "--peer", &pinned.addr],
            &[],
        )
    };
    let api = pinned.http.clone().unwrap();
    let narinfo =
        |name: &str| format!("/{}.narinfo", site.w.path(name).info.store_path.hash_part());
    let s1 = seed();
    wait_for_count(&pinned, "pinned path ready", 3, 30);
    wait_for_status(&api, &narinfo("app1"), 200, 10);
    drop(s1);

    follow("nixos-test.2.bbbbbbb");
    let s2 = seed();
    wait_for_count(&pinned, "pinned path ready", 4, 30);
    drop(s2);
    // The seed is gone: release 2's closure is all here, never asked for.
    for name in ["app1", "app2", "lib", "libc"] {
        let r = wait_for_status(&api, &narinfo(name), 200, 10);
        let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
            .unwrap()
            .url;
        let nar = http(&api, "GET", &format!("/{url}"), &[]);
        assert_eq!(nar.status, 200, "{name}");
        assert!(nar.body == site.w.path(name).nar, "{name}: NAR differs");
    }
    let status = ok(&["status", "--data", s(&site.w.tmp.path().join("pinned"))]);
    assert!(
        status.contains(&format!(
            "{channel}  pinned, release nixos-test.2.bbbbbbb (git 0123456789abcdef), 4 of its 4 paths known here"
        )),
        "{status}"
    );
    assert!(status.contains("pinned paths: 4"), "{status}");
    // The status page shows it, as a browser renders it.
    if has_chromium() {
        let dom = rendered_dom(&format!("{api}/"), &site.w.tmp.path().join("chromium"));
        assert!(dom.contains("<table id=\"channels\">"), "{dom}");
        assert!(
            dom.contains(&format!(
                "<td><code>{channel}</code></td><td>pinned, release nixos-test.2.bbbbbbb"
            )),
            "{dom}"
        );
    } else {
        skip_or_fail("chromium (Debian package chromium), for the status page");
    }

    // Release 3 drops app1: no longer served (nor pinned), tool is new.
    follow("nixos-test.3.ccccccc");
    let _s3 = seed();
    wait_for_count(&pinned, "pinned path ready", 5, 30);
    let r = wait_for_status(&api, &narinfo("app1"), 404, 10);
    assert!(
        String::from_utf8_lossy(&r.body).contains("channel release"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    wait_for_status(&api, &narinfo("tool"), 200, 10);
    let status = ok(&["status", "--data", s(&site.w.tmp.path().join("pinned"))]);
    assert!(status.contains("pinned paths: 4"), "{status}");
    assert!(!status.contains(&site.w.store_path("app1")), "{status}");
}

/// A safe-path set vouches for "channel test as this publisher commits it"
/// in one entry: a node following the set serves, with `--require-set`,
/// exactly the newest release's paths, and nothing of it once the entry is
/// withdrawn.
#[test]
fn a_set_vouching_for_a_channel_covers_its_newest_release_in_one_entry() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.1.aaaaaaa", &["app1", "tool"]);
    site.release("nixos-test.2.bbbbbbb", &["app1"]);
    for release in ["nixos-test.1.aaaaaaa", "nixos-test.2.bbbbbbb"] {
        let ng = site.serve_channel(release);
        let out = site.follow(&ng, &[]);
        assert!(out.status.success(), "{release}: {}", stderr(&out));
    }
    let id = identity(&site.w);
    // The set's maintainer: a key and a data directory of its own.
    let lab_key = site.w.tmp.path().join("lab.key");
    let lab = site.w.tmp.path().join("lab");
    ok(&["keygen", "--out", s(&lab_key)]);
    let edit = |verb: &str| {
        ok(&[
            "set",
            verb,
            "--key",
            s(&lab_key),
            "--data",
            s(&lab),
            "lab",
            "--publisher",
            &id,
            "--channel",
            "test",
        ])
    };
    let out = edit("add");
    assert!(out.contains("added 1 entries to set lab"), "{out}");
    let set_id = out.lines().last().unwrap().trim().to_owned();
    let listed = hypernar(&[
        "set",
        "list",
        "--key",
        s(&lab_key),
        "--data",
        s(&lab),
        "lab",
    ]);
    assert!(
        stdout(&listed).contains(&format!("channel test  {id}")),
        "{}",
        stdout(&listed)
    );

    let seed = serve(&site.w.data, &["--http", "none"], &[]);
    let lab_seed = serve(&lab, &["--http", "none"], &[]);
    let node = serve(
        &site.w.tmp.path().join("user"),
        &[
            "--trust",
            &id,
            "--set",
            &set_id,
            "--require-set",
            "--peer",
            &seed.addr,
            "--peer",
            &lab_seed.addr,
        ],
        &[],
    );
    let api = node.http.clone().unwrap();
    let narinfo =
        |name: &str| format!("/{}.narinfo", site.w.path(name).info.store_path.hash_part());
    for name in ["app1", "lib", "libc"] {
        wait_for_status(&api, &narinfo(name), 200, 30);
    }
    // Published by release 1, not in release 2: not covered.
    let r = http(&api, "GET", &narinfo("tool"), &[]);
    assert_eq!(r.status, 404);
    let status = ok(&["status", "--data", s(&site.w.tmp.path().join("user"))]);
    assert!(
        status.contains(&format!(
            "{id}/test  followed for a set, release nixos-test.2.bbbbbbb"
        )),
        "{status}"
    );

    // Withdrawn through the lab's running serve (its control socket), so
    // the node hears it live: nothing of the release is served.
    let out = edit("remove");
    assert!(out.contains("removed 1 entries"), "{out}");
    wait_for_status(&api, &narinfo("app1"), 404, 30);
    drop(lab_seed);
}

/// `hypernar follow` on a data directory a running serve holds goes
/// through that serve (its control socket): what it publishes reaches the
/// serve's peers at once, and the follower's figures are in `hypernar
/// status`, on the status page and in `/metrics`.
#[test]
fn a_follow_through_a_running_serve_shows_its_progress_in_status_and_metrics() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.1.aaaaaaa", &["app1"]);
    let seed = serve(&site.w.data, &[], &[]);
    let api = seed.http.clone().unwrap();
    let id = identity(&site.w);
    let user = serve(
        &site.w.tmp.path().join("user"),
        &["--trust", &id, "--peer", &seed.addr],
        &[],
    );
    let ng = site.serve_channel("nixos-test.1.aaaaaaa");
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("committed nixos-test.1.aaaaaaa (1 roots, 3 closure paths: 3 published now"),
        "{}",
        stdout(&out)
    );
    // Through the serve (the directory is its: nothing else could write
    // it), so its peer has the paths at once.
    let user_api = user.http.clone().unwrap();
    let narinfo =
        |name: &str| format!("/{}.narinfo", site.w.path(name).info.store_path.hash_part());
    wait_for_status(&user_api, &narinfo("app1"), 200, 30);

    let status = ok(&["status", "--data", s(&site.w.data)]);
    assert!(
        status.contains(
            "test  waiting for the next look; channel at nixos-test.1.aaaaaaa, committed nixos-test.1.aaaaaaa; paths: 3 of 3 published, 0 before, 0 failed"
        ),
        "{status}"
    );
    let metrics = String::from_utf8(http(&api, "GET", "/metrics", &[]).body).unwrap();
    for want in [
        "hypernar_follow_paths{channel=\"test\",state=\"published\"} 3",
        "hypernar_follow_paths{channel=\"test\",state=\"planned\"} 3",
        "hypernar_follow_lag_seconds{channel=\"test\"} 0",
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
    let nar_bytes: u64 = ["app1", "lib", "libc"]
        .iter()
        .map(|n| site.w.path(n).nar.len() as u64)
        .sum();
    assert!(
        metrics.contains(&format!(
            "hypernar_follow_bytes{{channel=\"test\",what=\"done\"}} {nar_bytes}"
        )),
        "{metrics}"
    );
    if has_chromium() {
        let dom = rendered_dom(&format!("{api}/"), &site.w.tmp.path().join("chromium"));
        assert!(dom.contains("<table id=\"following\">"), "{dom}");
        assert!(dom.contains("committed nixos-test.1.aaaaaaa"), "{dom}");
    } else {
        skip_or_fail("chromium (Debian package chromium), for the status page");
    }
    // Looked at again through the serve: nothing to do.
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nixos-test.1.aaaaaaa is committed already"),
        "{}",
        stdout(&out)
    );
    // Following on (no --once) through the serve until its client goes:
    // then the serve stops following, and says so.
    let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
    let mut client = std::process::Command::new(bin())
        .args([
            "follow",
            "--interval",
            "1",
            "--key",
            s(&site.w.key),
            "--data",
        ])
        .arg(&site.w.data)
        .args(["--channel", &format!("test={}/channel", ng.base)])
        .args(["--upstream", &format!("{}/cache", ng.base)])
        .args(["--trusted-public-key", &key])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("is committed already"), "{first}");
    client.kill().unwrap();
    client.wait().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = ok(&["status", "--data", s(&site.w.data)]);
        if status.contains("test  not following (its client went away)") {
            break;
        }
        assert!(std::time::Instant::now() < until, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(seed);
    assert_eq!(site.published(), ["app1", "lib", "libc"]);
}

/// The upstream is down for a while (503, with a Retry-After), then
/// throttles (429): the follower waits both out and the release commits.
#[test]
fn an_upstream_down_a_while_then_throttling_is_waited_out_and_the_release_commits() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let site = Site::new();
    site.release("nixos-test.310.f0f0f0f", &["app1", "app2", "tool"]);
    let down = site.root.join("down");
    std::fs::write(&down, b"").unwrap();
    let ng = site.serve_channel_with(
        "nixos-test.310.f0f0f0f",
        "limit_req_zone $binary_remote_addr zone=up:1m rate=4r/s;",
        &format!(
            "if (-f {}) {{ add_header Retry-After 1 always; return 503; }} \
             limit_req zone=up burst=1 nodelay; limit_req_status 429;",
            down.display()
        ),
    );
    // Back up after two seconds.
    let up = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        std::fs::remove_file(&down).unwrap();
    });
    let out = site.follow(&ng, &["-v"]);
    up.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("answered 503; asking again"),
        "never down: {err}"
    );
    assert!(
        err.contains("answered 429; asking again"),
        "never throttled: {err}"
    );
    assert!(
        stdout(&out).contains("5 closure paths: 5 published now"),
        "{}",
        stdout(&out)
    );
    assert_eq!(site.published(), ["app1", "app2", "lib", "libc", "tool"]);
    let log = ng.access_log();
    assert!(log.contains("\" 503 "), "{log}");
}

/// Peers that follow the same release meet under its own DHT topic: a
/// node pinned to the channel announces the generation's topic as soon as
/// it reads it, and a node that follows the channel and knows no peer
/// meets it on the DHT and gets the release from it (the publisher's seed
/// is gone and was never on the DHT).
#[test]
fn peers_on_the_same_generation_announce_its_topic_and_meet_on_the_dht() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let testnet = mainline::Testnet::new(5).expect("a local DHT testnet");
    let boot = testnet.bootstrap.join(",");
    let site = Site::new();
    site.release("nixos-test.1.aaaaaaa", &["app1"]);
    let channel = format!("{}/test", identity(&site.w));
    let on_dht = ["--dht-bootstrap", &boot, "--dht-allow-local"];
    let debug = [("RUST_LOG", "hypernar_swarm=debug,hypernar_fetcher=info")];
    // On the DHT, its first topics announced, before any release exists:
    // the generation's topic comes later, and is announced when it does
    // (not at the next round, 15 minutes on).
    let mut args = vec!["--pin", &channel, "--http", "none"];
    args.extend(on_dht);
    let pinned = serve(&site.w.tmp.path().join("pinned"), &args, &debug);
    wait_for_log(&pinned, "announced on the DHT", 30);
    let ng = site.serve_channel("nixos-test.1.aaaaaaa");
    let out = site.follow(&ng, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seed = serve(
        &site.w.data,
        &["--http", "none", "--peer", &pinned.addr],
        &[],
    );
    wait_for_count(&pinned, "pinned path ready", 3, 30);
    let feed = hypernar_feed::format::identity::FeedKey::from(
        site.w
            .secret()
            .feed_signing_key(hypernar_feed::format::identity::GENERATIONS_FEED)
            .verifying_key(),
    );
    let root = hypernar_fetcher::node::generation_topic(&feed, "test", "nixos-test.1.aaaaaaa");
    let topic = hypernar_fetcher::dht::topic(&root).to_string();
    wait_for_log(&pinned, &format!("announced on the DHT topic={topic}"), 30);
    drop(seed);

    let mut args = vec!["--set", &channel];
    args.extend(on_dht);
    let user = serve(&site.w.tmp.path().join("user"), &args, &[]);
    let api = user.http.clone().unwrap();
    let narinfo = format!(
        "/{}.narinfo",
        site.w.path("app1").info.store_path.hash_part()
    );
    let r = wait_for_status(&api, &narinfo, 200, 60);
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let nar = http(&api, "GET", &format!("/{url}"), &[]);
    assert_eq!(nar.status, 200);
    assert!(nar.body == site.w.path("app1").nar, "NAR differs");
    wait_for_log(&user, "found on the DHT", 10);
}
