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

fn paths(n: usize) -> Vec<hypernar_publisher::sample::SamplePath> {
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

/// Every block of one of the world's feeds, decoded.
fn records(w: &World, name: &str) -> Vec<Record> {
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
fn manifest(runs: &[Record]) -> Manifest {
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
        let mut args = vec!["--run-tail", "3"];
        args.extend(batch.iter().map(String::as_str));
        w.publish_ok(&args);
    }
    let runs = records(&w, RUNS_FEED);
    let m = manifest(&runs);
    let index = records(&w, INDEX_FEED);
    assert_eq!(m.indexed_to, index.len() as u64);
    assert_eq!(m.runs.len(), 1, "four runs of one level merge: {m:?}");
    assert_eq!(m.runs[0].entries, 12);
    m.check(runs.len() as u64 - 1).unwrap();
    // Three more, keys held back: a run of their records without keys.
    let mut args = vec!["--run-tail", "3", "--no-release"];
    args.extend(names[12..].iter().map(String::as_str));
    w.publish_ok(&args);
    let m = manifest(&records(&w, RUNS_FEED));
    assert_eq!(m.runs.len(), 2, "{m:?}");
    // Releasing them cuts a run of re-entries that carry the keys.
    let out = hypernar(&[
        "release",
        "--key",
        s(&w.key),
        "--data",
        s(&w.data),
        "--run-tail",
        "3",
    ]);
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
