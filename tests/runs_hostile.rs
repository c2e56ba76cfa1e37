//! A publisher's runs that lie (docs/threat-model.md, "the index at
//! scale"): pages and manifests that verify against the publisher's signed
//! tree — the test signs them with the publisher's own key, as a hostile or
//! broken publisher would — but do not hold what they must. A fresh node
//! refuses each with an error that names it, its memory stays bounded, and
//! the narinfo and the NAR come from the next source (the upstream), never
//! from what the bad run said.

use hypernar_feed::format::identity::RUNS_FEED;
use hypernar_feed::format::record::Record;
use hypernar_feed::format::run::{self, Manifest, RunEntry, RunPage, RunRef};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::FeedStore;

use crate::runs::{manifest, paths, publish_with_tail, records};
use crate::util::*;

/// What a node logs once it has read a runs feed's manifest it can use.
const READ: &str = "index looked up in runs";

/// Twelve paths, published in runs of four (and a tail); nginx serving the
/// same paths as the upstream cache.
struct Setup {
    w: World,
    names: Vec<String>,
    /// The runs feed's blocks and the manifest it ends with.
    runs: Vec<Record>,
    m: Manifest,
}

fn setup() -> Setup {
    setup_with(false)
}

/// [`setup`], published with a web-seed copy in `web-seed` if `web_seed`.
fn setup_with(web_seed: bool) -> Setup {
    let w = World::new(&paths(12));
    let names: Vec<String> = (0..12).map(|i| w.store_path(&format!("p{i}"))).collect();
    let dir = w.tmp.path().join("web-seed");
    let extra: &[&str] = if web_seed {
        &["--web-seed", s(&dir)]
    } else {
        &[]
    };
    publish_with_tail(&w, "4", &names, extra);
    let runs = records(&w, RUNS_FEED);
    let m = manifest(&runs);
    assert!(m.indexed_to > 0, "no run was cut: {m:?}");
    Setup { w, names, runs, m }
}

impl Setup {
    /// Every entry of the live runs (the newest per hash).
    fn entries(&self) -> Vec<RunEntry> {
        let mut all = Vec::new();
        for r in &self.m.runs {
            for block in r.first_block..r.end_block().unwrap() {
                let Record::RunPage(p) = &self.runs[block as usize] else {
                    panic!("block {block} is no run page");
                };
                all.extend(p.entries.iter().copied());
            }
        }
        let (_, pages) = run::cut(all);
        pages.into_iter().flat_map(|p| p.entries).collect()
    }

    /// The name (`pN`) and entry of a path in a run whose hash's top bit is
    /// `top`.
    fn in_runs(&self, top: u32) -> (String, RunEntry) {
        let entries = self.entries();
        for (i, name) in self.names.iter().enumerate() {
            let h = run::path_hash(&StorePath::parse(name).unwrap());
            if run::bucket(&h, 1) != top {
                continue;
            }
            if let Some(e) = entries.iter().find(|e| e.hash == h) {
                return (format!("p{i}"), *e);
            }
        }
        panic!("no path in a run has top bit {top}: {entries:?}");
    }

    /// Appends `pages` and then the manifest `edit` makes of the current
    /// one (given the block of the first page appended), signed with the
    /// publisher's key: the runs feed now ends with a hostile manifest.
    fn append(&self, pages: Vec<RunPage>, edit: impl FnOnce(u64, &mut Manifest)) {
        let mut m = self.m.clone();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = FeedStore::open(&self.w.data).unwrap();
            let mut feed = store
                .open_writable(&self.w.secret().feed_signing_key(RUNS_FEED))
                .await
                .unwrap();
            let first = feed.len();
            edit(first, &mut m);
            let mut blocks: Vec<Vec<u8>> = pages
                .into_iter()
                .map(|p| Record::RunPage(p).encode())
                .collect();
            blocks.push(Record::Manifest(Box::new(m)).encode());
            feed.append_batch(&blocks).await.unwrap();
        });
    }

    /// One run of `pages` (`bits` bits, appended as the first pages) in
    /// place of all the live runs, covering the index up to `to`.
    fn one_run(&self, bits: u8, pages: Vec<RunPage>, to: u64) {
        let entries = pages.iter().map(|p| p.entries.len() as u64).sum();
        self.append(pages, |first, m| {
            m.runs = vec![RunRef {
                first_block: first,
                bits,
                entries,
                from: 0,
                to,
            }];
            m.indexed_to = to;
        });
    }

    /// A fresh node that trusts the publisher, with a seed peer of its
    /// feeds and nginx on the original cache as its upstream, asked for
    /// `name` once it has read the runs feed's manifest: the narinfo and
    /// the NAR are right, the log names `refusal`, and memory stayed
    /// bounded. Returns the node's log.
    fn asked_for(&self, name: &str, refusal: &str, from_upstream: bool) -> String {
        self.asked_after(READ, name, refusal, from_upstream)
    }

    /// [`Setup::asked_for`], asked once the log says `ready`.
    fn asked_after(&self, ready: &str, name: &str, refusal: &str, from_upstream: bool) -> String {
        let seed = serve(&self.w.data, &["--http", "none"], &[]);
        self.asked_with(&["--peer", &seed.addr], ready, name, refusal, from_upstream)
    }

    /// [`Setup::asked_after`], the node's sources being `sources` (and the
    /// upstream).
    ///
    /// The node is asked only once its log says `ready`: a node that has
    /// not reached any source yet answers a miss from the upstream at once
    /// (it has nothing to wait for), and the lookup whose refusal the test
    /// is about would then never be made.
    fn asked_with(
        &self,
        sources: &[&str],
        ready: &str,
        name: &str,
        refusal: &str,
        from_upstream: bool,
    ) -> String {
        let up = nginx(&self.w.cache, "");
        let user = self.w.tmp.path().join("user");
        let id = identity(&self.w);
        let mut args = vec!["--trust", &id, "--upstream", &up.base];
        args.extend_from_slice(sources);
        let sub = serve(&user, &args, &[]);
        let api = sub.http.clone().unwrap();
        wait_for_log(&sub, ready, 30);
        let hash = self.w.path(name).info.store_path.hash_part().to_owned();
        wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 60);
        let nar = nar_of(&api, &self.w, name);
        let log = std::fs::read_to_string(&sub.log).unwrap();
        assert_eq!(nar.status, 200, "{log}");
        assert!(nar.body == self.w.path(name).nar, "the NAR differs: {log}");
        wait_for_log(&sub, refusal, 10);
        let log = std::fs::read_to_string(&sub.log).unwrap();
        assert!(!log.contains("panicked"), "{log}");
        if from_upstream {
            let bytes = metric(&api, "hypernar_received_bytes_total{source=\"upstream\"}");
            assert!(bytes > 0, "the NAR did not come from the upstream: {log}");
        }
        let rss = rss(sub.child.id());
        assert!(rss < 128 << 20, "serve's RSS is {rss} bytes");
        // Still serving.
        assert_eq!(http(&api, "GET", "/nix-cache-info", &[]).status, 200);
        log
    }
}

#[test]
fn a_run_page_out_of_order_is_refused_and_the_path_comes_from_upstream() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup();
    let (name, _) = st.in_runs(0);
    let mut entries = st.entries();
    entries.reverse();
    let page = RunPage { bucket: 0, entries };
    st.one_run(0, vec![page], st.m.indexed_to);
    st.asked_for(&name, "not sorted by hash", true);
}

#[test]
fn a_run_page_holding_another_buckets_entries_is_refused_and_the_path_comes_from_upstream() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup();
    // Two buckets, every entry on the first page: the second bucket's
    // entries are out of place there, and a lookup of the first bucket
    // lands on it.
    let (name, _) = st.in_runs(0);
    st.in_runs(1);
    let pages = vec![
        RunPage {
            bucket: 0,
            entries: st.entries(),
        },
        RunPage {
            bucket: 1,
            entries: Vec::new(),
        },
    ];
    st.one_run(1, pages, st.m.indexed_to);
    st.asked_for(&name, "outside its bucket", true);
}

#[test]
fn a_run_entry_pointing_past_the_index_is_refused_and_the_path_comes_from_upstream() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup();
    // The run claims to cover the index up to block 2^39, and the entry
    // points at its last block, far past the index's end.
    let far = 1u64 << 39;
    let (name, target) = st.in_runs(0);
    let entries = st
        .entries()
        .into_iter()
        .map(|mut e| {
            if e.hash == target.hash {
                e.index_seq = far - 1;
            }
            e
        })
        .collect();
    st.one_run(0, vec![RunPage { bucket: 0, entries }], far);
    let log = st.asked_for(&name, &format!("index block {}", far - 1), true);
    assert!(log.contains("looking a path up in runs"), "{log}");
}

#[test]
fn a_run_entry_pointing_at_another_paths_record_is_refused_and_the_path_comes_from_upstream() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup();
    // The entry points at another path's record, which verifies: the
    // record must name the hash looked up.
    let (name, target) = st.in_runs(0);
    let (_, other) = st.in_runs(1);
    let entries = st
        .entries()
        .into_iter()
        .map(|mut e| {
            if e.hash == target.hash {
                e.index_seq = other.index_seq;
            }
            e
        })
        .collect();
    st.one_run(0, vec![RunPage { bucket: 0, entries }], st.m.indexed_to);
    st.asked_for(&name, "not the hash looked up", true);
}

#[test]
fn a_manifest_claiming_absurd_sizes_is_refused_and_the_path_is_still_served() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup();
    // A run of 2^200 pages: refused whole. The node keeps waiting for a
    // manifest it can use (a miss meanwhile goes to the upstream), then
    // reads the index whole; either way the path is served, right.
    let (name, _) = st.in_runs(0);
    st.append(Vec::new(), |_, m| m.runs[0].bits = 200);
    st.asked_after("bucket bits are 200", &name, "bucket bits are 200", false);
}

#[test]
fn a_web_seed_whose_run_pages_do_not_verify_is_refused_and_the_path_comes_from_upstream() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let st = setup_with(true);
    let (name, _) = st.in_runs(0);
    // One byte flipped in every run page of the copy's runs feed (its
    // blocks lie end to end in `data`); its manifest, the last block, is
    // left whole.
    let key = st.w.secret().feed_signing_key(RUNS_FEED).verifying_key();
    let dir = hypernar_feed::webseed::feed_path(key.as_bytes());
    let data = st.w.tmp.path().join("web-seed").join(dir).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mut at = 0;
    let mut flipped = 0;
    for r in &st.runs {
        let len = r.encode().len();
        if matches!(r, Record::RunPage(_)) {
            bytes[at + len / 2] ^= 0x10;
            flipped += 1;
        }
        at += len;
    }
    assert_eq!(
        at,
        bytes.len(),
        "the copy's runs feed is not its blocks end to end"
    );
    assert!(flipped > 0);
    std::fs::write(&data, bytes).unwrap();
    let web = nginx(&st.w.tmp.path().join("web-seed"), "");
    // No peer: every block comes from the web seed.
    st.asked_with(
        &["--web-seed", &web.base],
        READ,
        &name,
        "did not verify",
        true,
    );
}
