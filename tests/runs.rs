//! The index's runs (docs/protocol.md, "Runs"): what `publish` cuts and
//! merges, read back from the feeds on disk as a fetcher would read them.

use std::collections::HashMap;

use hypernar_feed::format::identity::{INDEX_FEED, PUBLIC_KEYS_FEED, RUNS_FEED};
use hypernar_feed::format::narinfo::Compression;
use hypernar_feed::format::record::Record;
use hypernar_feed::format::run::{self, Manifest, RunEntry, NO_KEY};
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::FeedStore;

use crate::util::*;

pub(crate) fn paths(n: usize) -> Vec<hypernar_publisher::sample::SamplePath> {
    (0..n)
        .map(|i| {
            let nar = hypernar_publisher::sample::nar_of(&tree_file(
                format!("path {i}\n").into_bytes(),
                false,
            ))
            .unwrap();
            raw(&format!("p{i}"), nar, Compression::None, &[])
        })
        .collect()
}

/// `hypernar publish` of `names` with `--run-tail tail` and `extra`.
pub(crate) fn publish_with_tail(w: &World, tail: &str, names: &[String], extra: &[&str]) {
    let mut args = vec!["--run-tail", tail];
    args.extend_from_slice(extra);
    args.extend(names.iter().map(String::as_str));
    w.publish_ok(&args);
}

/// `hypernar release` of `w`'s publisher with `extra`.
fn release(w: &World, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["release", "--key", s(&w.key), "--data", s(&w.data)];
    args.extend_from_slice(extra);
    hypernar(&args)
}

/// Every block of one of the world's feeds, decoded.
pub(crate) fn records(w: &World, name: &str) -> Vec<Record> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = FeedStore::open(&w.data).unwrap();
        let key = w.secret().feed_signing_key(name).verifying_key();
        let mut feed = store.open_existing(&key).await.unwrap().unwrap();
        let mut out = Vec::new();
        for i in 0..feed.len() {
            out.push(Record::decode(&feed.get(i).await.unwrap()).unwrap());
        }
        out
    })
}

/// The manifest the runs feed ends with.
pub(crate) fn manifest(runs: &[Record]) -> Manifest {
    match runs.last() {
        Some(Record::Manifest(m)) => (**m).clone(),
        other => panic!("the runs feed ends with {other:?}, not a manifest"),
    }
}

/// Looks `hash` up as a fetcher does: one page per live run, the newest
/// entry of them.
fn lookup(runs: &[Record], m: &Manifest, hash: &run::PathHash) -> Option<RunEntry> {
    let mut found: Option<RunEntry> = None;
    for r in &m.runs {
        let block = r.page_block(hash);
        let Record::RunPage(page) = &runs[block as usize] else {
            panic!("block {block} is no run page");
        };
        r.check_page(block, page).unwrap();
        if let Some(e) = page.find(hash) {
            found = Some(found.map_or(*e, |f| run::newest(f, *e)));
        }
    }
    found
}

#[test]
fn publish_cuts_and_merges_runs_that_find_every_path_with_its_key_and_prove_misses() {
    let w = World::new(&paths(15));
    let names: Vec<String> = (0..15).map(|i| w.store_path(&format!("p{i}"))).collect();
    // Four runs of three: the fourth merges them into one.
    for batch in names[..12].chunks(3) {
        publish_with_tail(&w, "3", batch, &[]);
    }
    let runs = records(&w, RUNS_FEED);
    let m = manifest(&runs);
    let index = records(&w, INDEX_FEED);
    assert_eq!(m.indexed_to, index.len() as u64);
    assert_eq!(m.runs.len(), 1, "four runs of one level merge: {m:?}");
    assert_eq!(m.runs[0].entries, 12);
    m.check(runs.len() as u64 - 1).unwrap();
    // Three more, keys held back: a run of their records without keys.
    publish_with_tail(&w, "3", &names[12..], &["--no-release"]);
    let m = manifest(&records(&w, RUNS_FEED));
    assert_eq!(m.runs.len(), 2, "{m:?}");
    // Releasing them cuts a run of re-entries that carry the keys.
    let out = release(&w, &["--run-tail", "3"]);
    assert!(out.status.success(), "{}", failed(&out));
    let runs = records(&w, RUNS_FEED);
    let m = manifest(&runs);
    assert_eq!(m.runs.len(), 3, "{m:?}");
    let index = records(&w, INDEX_FEED);
    let keys = records(&w, PUBLIC_KEYS_FEED);
    assert_eq!(m.keys_indexed_to, keys.len() as u64);
    let mut seen = HashMap::new();
    for name in &names {
        let path = StorePath::parse(name).unwrap();
        let e = lookup(&runs, &m, &run::path_hash(&path)).expect(name);
        let Record::Path(rec) = &index[e.index_seq as usize] else {
            panic!("{name}: index block {} is no path record", e.index_seq);
        };
        assert_eq!(rec.store_path, path);
        assert_ne!(e.key_seq, NO_KEY, "{name} has its key");
        let Record::Key(k) = &keys[e.key_seq as usize] else {
            panic!("{name}: key block {} is no key release", e.key_seq);
        };
        assert_eq!(k.store_path, path);
        assert!(seen.insert(e.index_seq, name).is_none());
    }
    // A hash no path has is on its page, absent: the page proves the miss.
    let absent = run::hash_of("00000000000000000000000000000000").unwrap();
    assert_eq!(lookup(&runs, &m, &absent), None);
    // Everything still reads back.
    w.check_consistent();
    w.assert_reads_back("p14");
}

/// The key releases of the public key feed, by path.
fn releases(w: &World) -> Vec<StorePath> {
    records(w, PUBLIC_KEYS_FEED)
        .into_iter()
        .filter_map(|r| match r {
            Record::Key(k) => Some(k.store_path),
            _ => None,
        })
        .collect()
}

#[test]
fn a_publisher_finds_what_its_runs_hold_and_never_publishes_or_releases_twice() {
    let w = World::new(&paths(10));
    let names: Vec<String> = (0..10).map(|i| w.store_path(&format!("p{i}"))).collect();
    // Runs of three, cut as publishing goes: nine paths in runs, keys held.
    publish_with_tail(&w, "3", &names[..9], &["--no-release"]);
    let m = manifest(&records(&w, RUNS_FEED));
    assert_eq!(m.indexed_to, records(&w, INDEX_FEED).len() as u64, "{m:?}");
    assert!(releases(&w).is_empty());
    // Published again (the publisher holds no map of them now): each is
    // found in a run, and nothing is appended.
    let before = records(&w, INDEX_FEED).len();
    let out = w.publish_ok(&[&names[4], &names[8], &names[9], "--no-release"]);
    assert_eq!(records(&w, INDEX_FEED).len(), before + 2, "{out}");
    // One key released by name, from a run; then again: nothing new.
    let release_ok = |paths: &[&str]| {
        let mut args = vec!["--run-tail", "3"];
        args.extend_from_slice(paths);
        let out = release(&w, &args);
        assert!(out.status.success(), "release {paths:?}: {}", failed(&out));
    };
    release_ok(&[&names[4]]);
    release_ok(&[&names[4]]);
    let p4 = StorePath::parse(&names[4]).unwrap();
    assert_eq!(releases(&w), vec![p4.clone()]);
    // Everything: the nine others, each once.
    release_ok(&[]);
    let mut all = releases(&w);
    assert_eq!(all.len(), 10, "{all:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "a key released twice");
    release_ok(&[]);
    assert_eq!(releases(&w).len(), 10, "released again");
    // A path never published is refused by name.
    let out = release(&w, &["00000000000000000000000000000000"]);
    assert!(!out.status.success());
    assert!(
        failed(&out).contains("00000000000000000000000000000000"),
        "{}",
        failed(&out)
    );
    // What the runs say agrees with the feeds.
    let runs = records(&w, RUNS_FEED);
    let m = manifest(&runs);
    let keys = records(&w, PUBLIC_KEYS_FEED);
    for name in &names {
        let path = StorePath::parse(name).unwrap();
        let Some(e) = lookup(&runs, &m, &run::path_hash(&path)) else {
            continue; // still in the tail
        };
        if e.key_seq != NO_KEY {
            assert!(matches!(&keys[e.key_seq as usize], Record::Key(k) if k.store_path == path));
        }
    }
    w.check_consistent();
    w.assert_reads_back("p9");
}

/// The `have/length` of one of the feeds `hypernar feeds --json` lists, by
/// name.
pub(crate) fn stored_blocks(data: &std::path::Path, name: &str) -> (u64, u64) {
    let out = ok(&["feeds", "--json", "--data", s(data)]);
    let feeds: serde_json::Value = serde_json::from_str(&out).unwrap();
    let feed = feeds
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feed {name} in {out}"));
    (
        feed["held"].as_u64().unwrap(),
        feed["length"].as_u64().unwrap(),
    )
}

#[test]
fn a_fresh_node_answers_from_runs_and_replicates_only_the_index_tail() {
    let w = World::new(&paths(39));
    let names: Vec<String> = (0..39).map(|i| w.store_path(&format!("p{i}"))).collect();
    // Runs of 8, cut as publishing goes: the last 7 paths stay in the tail.
    for batch in names[..36].chunks(9) {
        publish_with_tail(&w, "8", batch, &[]);
    }
    publish_with_tail(&w, "8", &names[36..], &[]);
    let m = manifest(&records(&w, RUNS_FEED));
    assert!(!m.runs.is_empty());
    let index_len = records(&w, INDEX_FEED).len() as u64;
    assert!(m.indexed_to < index_len, "a tail is left: {m:?}");

    let id = identity(&w);
    let seed = serve(&w.data, &[], &[]);
    let user = w.tmp.path().join("user");
    let sub = serve(
        &user,
        &["--trust", &id, "--peer", &seed.addr, "--upstream", "none"],
        &[],
    );
    let api = sub.http.clone().unwrap();
    let hash = |name: &str| StorePath::parse(name).unwrap().hash_part().to_owned();
    // A path in a run, one in the tail, and the NAR of one in a run.
    wait_for_status(&api, &format!("/{}.narinfo", hash(&names[3])), 200, 20);
    wait_for_status(&api, &format!("/{}.narinfo", hash(&names[38])), 200, 20);
    let r = http(&api, "GET", &format!("/{}.narinfo", hash(&names[17])), &[]);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    let info = hypernar_feed::format::narinfo::NarInfo::parse(&r.body).unwrap();
    let nar = http(&api, "GET", &format!("/{}", info.url), &[]);
    assert_eq!(nar.status, 200);
    assert!(nar.body == w.path("p17").nar, "the NAR differs");
    // A miss is a miss, at once.
    let r = http(
        &api,
        "GET",
        "/00000000000000000000000000000000.narinfo",
        &[],
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    // Of the index, the user holds its head and its tail, not the part in
    // runs it did not look up.
    sub.terminate();
    let (have, length) = stored_blocks(&user, "index");
    assert_eq!(length, index_len);
    let looked_up = 2 * 2; // two paths' records and their listings' records
    let tail = index_len - m.indexed_to;
    assert!(
        have <= 1 + 3 + tail + looked_up + 16,
        "the user replicated {have} of {length} index blocks (tail {tail})"
    );
    assert!(have < length, "the whole index was replicated");
    // `cat-nar` reads that sparse copy by lookup too: the path it fetched
    // reads back; one in a run whose record it never fetched is an error
    // that says so, not "not published".
    let out = hypernar(&["cat-nar", "--data", s(&user), &names[17]]);
    assert!(out.status.success(), "cat-nar p17: {}", failed(&out));
    assert!(out.stdout == w.path("p17").nar, "cat-nar p17 differs");
    let out = hypernar(&["cat-nar", "--data", s(&user), &names[20]]);
    let err = failed(&out);
    assert!(
        err.contains("not in this data directory"),
        "cat-nar p20: {err}"
    );
    // Restarted, it answers for paths it looked up and for others (their
    // records name a data feed declared in the part of the index in runs).
    let sub = serve(
        &user,
        &["--trust", &id, "--peer", &seed.addr, "--upstream", "none"],
        &[],
    );
    let api = sub.http.clone().unwrap();
    for name in [&names[3], &names[25], &names[37]] {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 20);
    }
}

/// Rewrites `w`'s index as an index made before runs existed: no runs
/// declaration, `data/0` and `keys/public` first (each listing's record
/// renumbered after its path's), and no runs feed.
fn make_it_old(w: &World) {
    let records = records(w, INDEX_FEED);
    let secret = w.secret();
    let old: Vec<Vec<u8>> = records
        .into_iter()
        .filter(|r| !matches!(r, Record::Feed(d) if d.role == hypernar_feed::format::record::FeedRole::Runs))
        .map(|r| match r {
            Record::Listing(mut l) => {
                l.index_seq -= 1;
                Record::Listing(l).encode()
            }
            r => r.encode(),
        })
        .collect();
    std::fs::remove_dir_all(w.feed_dir(INDEX_FEED)).unwrap();
    std::fs::remove_dir_all(w.feed_dir(RUNS_FEED)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = FeedStore::open(&w.data).unwrap();
        let mut feed = store
            .open_writable(&secret.feed_signing_key(INDEX_FEED))
            .await
            .unwrap();
        feed.append_batch(&old).await.unwrap();
    });
}

#[test]
fn an_index_made_before_runs_is_read_whole_and_publishing_into_it_cuts_its_first_run() {
    let w = World::new(&paths(6));
    let names: Vec<String> = (0..6).map(|i| w.store_path(&format!("p{i}"))).collect();
    let first: Vec<&str> = names[..4].iter().map(String::as_str).collect();
    w.publish_ok(&first);
    make_it_old(&w);
    let id = identity(&w);
    let hash = |name: &str| StorePath::parse(name).unwrap().hash_part().to_owned();
    {
        let seed = serve(&w.data, &[], &[]);
        let user = w.tmp.path().join("user");
        let sub = serve(&user, &["--trust", &id, "--peer", &seed.addr], &[]);
        let api = sub.http.clone().unwrap();
        for name in &names[..4] {
            wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 20);
        }
        sub.terminate();
        let (have, length) = stored_blocks(&user, "index");
        assert_eq!(have, length, "an old index is replicated whole");
    }
    // Publishing into it again declares its runs feed and cuts a run of
    // everything it held (and of the first new path: runs are cut as
    // publishing goes).
    let old_len = records(&w, INDEX_FEED).len() as u64;
    publish_with_tail(&w, "2", &names[4..], &[]);
    let index = records(&w, INDEX_FEED);
    assert!(matches!(&index[1], Record::Feed(d) if d.name == "data/0"));
    let m = manifest(&records(&w, RUNS_FEED));
    assert!(
        m.indexed_to > old_len && m.indexed_to <= index.len() as u64,
        "{m:?} of {} blocks, {old_len} old",
        index.len()
    );
    // A fresh node still reads it whole (its block 1 is no runs feed) and
    // serves every path, old and new.
    let seed = serve(&w.data, &[], &[]);
    let user = w.tmp.path().join("user2");
    let sub = serve(&user, &["--trust", &id, "--peer", &seed.addr], &[]);
    let api = sub.http.clone().unwrap();
    for name in &names {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 20);
    }
    drop((sub, seed));
    w.assert_reads_back("p1");
    w.assert_reads_back("p5");
}

#[test]
fn a_fresh_node_asked_for_a_path_in_the_tail_it_has_not_read_yet_answers_200_not_404() {
    use hypernar_publisher::synth;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("pub.key");
    let id = ok(&["keygen", "--out", s(&key)]);
    let id = id.split_whitespace().last().unwrap().to_owned();
    let data = tmp.path().join("pub");
    // One run of 8 192 paths and a tail of 5 808 (11 616 index blocks):
    // more than a fresh node reads in the moment between its first answer
    // and the next question, and within what a miss waits for even on a
    // loaded machine.
    let n = 14_000u64;
    let paths = n.to_string();
    ok(&[
        "synth",
        "--key",
        s(&key),
        "--data",
        s(&data),
        "--paths",
        &paths,
        "--run-tail",
        "8192",
    ]);
    let seed = serve(&data, &[], &[]);
    let user = tmp.path().join("user");
    let sub = serve(
        &user,
        &["--trust", &id, "--peer", &seed.addr, "--upstream", "none"],
        &[],
    );
    let api = sub.http.clone().unwrap();
    let narinfo = |i: u64| format!("/{}.narinfo", synth::store_path(i).hash_part());
    // A path in the run, once the node reached the seed and read the
    // manifest; then the newest path, asked once: the node must not say
    // "no" (Nix would keep that for an hour) while it is reading the tail.
    wait_for_status(&api, &narinfo(0), 200, 30);
    let r = http(&api, "GET", &narinfo(n - 1), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A miss is still answered, once the tail is read.
    let r = http(
        &api,
        "GET",
        "/00000000000000000000000000000000.narinfo",
        &[],
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_full_data_feed_is_followed_by_the_next_and_every_reader_reads_across_them() {
    let w = World::new(&paths(7));
    let names: Vec<String> = (0..7).map(|i| w.store_path(&format!("p{i}"))).collect();
    let arg = |range: std::ops::Range<usize>| -> Vec<&str> {
        let mut a = vec!["--data-feed-blocks", "5"];
        a.extend(names[range].iter().map(String::as_str));
        a
    };
    // Each path is one segment and its listing: a feed of 5 blocks (the
    // header included) holds two.
    w.publish_ok(&arg(0..5));
    let held = |name: &str| stored_blocks(&w.data, name);
    assert_eq!(held("data/0"), (5, 5));
    assert_eq!(held("data/1"), (5, 5));
    assert_eq!(held("data/2"), (3, 3));
    w.check_consistent();
    // Opened again, the publisher appends to the newest feed, and rolls on;
    // its web-seed copy has every data feed.
    let seed_root = w.tmp.path().join("web-seed");
    let mut again = arg(5..7);
    again.extend(["--web-seed", s(&seed_root)]);
    w.publish_ok(&again);
    assert_eq!(held("data/0"), (5, 5));
    assert_eq!(held("data/2"), (5, 5));
    assert_eq!(held("data/3"), (3, 3));
    assert_eq!(w.check_consistent().len(), 7);
    for n in 0..4 {
        let key = w
            .secret()
            .feed_signing_key(&format!("data/{n}"))
            .verifying_key();
        let head = seed_root
            .join(hypernar_feed::webseed::feed_path(key.as_bytes()))
            .join("head");
        assert!(head.exists(), "no web-seed copy of data/{n}");
    }
    for i in 0..7 {
        w.assert_reads_back(&format!("p{i}"));
    }
    // A fresh node finds and reads paths of the first and the last feed.
    let id = identity(&w);
    let seed = serve(&w.data, &[], &[]);
    let user = w.tmp.path().join("user");
    let sub = serve(&user, &["--trust", &id, "--peer", &seed.addr], &[]);
    let api = sub.http.clone().unwrap();
    for name in ["p0", "p3", "p6"] {
        let nar = nar_of(&api, &w, name);
        assert_eq!(nar.status, 200, "{name}");
        assert!(nar.body == w.path(name).nar, "{name}: the NAR differs");
    }
}
