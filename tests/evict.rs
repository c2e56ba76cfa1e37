//! A bounded disk (`serve --max-size`): the least recently used paths'
//! blocks are dropped, pinned paths and a publisher's own feeds never are.
//! `HYPERNAR_FAULT_EVICT_FAST=1` makes the node check every half second
//! instead of every 10 s (and protect no recent use), so the test is quick.

use std::path::Path;
use std::time::{Duration, Instant};

use hypernar_feed::format::narinfo::Compression;

use crate::util::*;

const FAST: &[(&str, &str)] = &[("HYPERNAR_FAULT_EVICT_FAST", "1")];

fn du(dir: &Path) -> u64 {
    hypernar_fetcher::node::evict::disk_usage(dir)
}

fn nar_of(api: &str, w: &World, name: &str) -> Option<Vec<u8>> {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let r = http(api, "GET", &format!("/{hash}.narinfo"), &[]);
    if r.status != 200 {
        return None;
    }
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let nar = http(api, "GET", &format!("/{url}"), &[]);
    (nar.status == 200).then_some(nar.body)
}

/// A publisher of incompressible 2 MiB paths named `names` (noise seeds
/// from `seed`), published; and its identity.
fn published_2mib(names: &[&str], seed: u64) -> (World, String) {
    published_2mib_with(names, seed, &[])
}

/// [`published_2mib`], published with `extra` flags.
fn published_2mib_with(names: &[&str], seed: u64, extra: &[&str]) -> (World, String) {
    let w = World::new(
        &names
            .iter()
            .zip(seed..)
            .map(|(n, i)| raw(n, noise(2 << 20, i), Compression::Zstd, &[]))
            .collect::<Vec<_>>(),
    );
    w.publish_ok(&[&["--all"][..], extra].concat());
    let id = identity(&w);
    (w, id)
}

#[test]
fn a_bounded_node_drops_the_least_recently_used_and_keeps_pinned_paths_and_its_own_feeds() {
    if !faults_built_in() {
        return;
    }
    let names = ["p0", "p1", "p2", "p3", "p4"];
    let (w, id) = published_2mib(&names, 1);
    let lab = Lab::new(w.tmp.path());
    let set_id = lab.add(&id, &w.store_path("p0"));

    // The publisher's own seed, bounded far below what it holds.
    let seed = serve(&w.data, &["--http", "none", "--max-size", "1M"], FAST);
    let lab_seed = serve(&lab.data, &["--http", "none"], &[]);
    let user_data = w.tmp.path().join("user");
    let user = serve(
        &user_data,
        &[
            "--trust",
            &id,
            "--pin",
            &set_id,
            "--max-size",
            "5M",
            "--peer-deadline",
            "2",
            "--peer",
            &seed.addr,
            "--peer",
            &lab_seed.addr,
        ],
        FAST,
    );
    let api = user.http.clone().unwrap();
    wait_for_log(&user, "pinned path stored", 30);
    // Five 2 MiB paths through a 5 MiB bound, oldest use first.
    for name in &names[1..] {
        wait_for_status(
            &api,
            &format!("/{}.narinfo", w.path(name).info.store_path.hash_part()),
            200,
            30,
        );
        let nar = nar_of(&api, &w, name).unwrap();
        assert!(nar == w.path(name).nar, "{name}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let feeds = user_data.join("feeds");
    let until = Instant::now() + Duration::from_secs(20);
    while du(&feeds) > 5 << 20 {
        assert!(Instant::now() < until, "still {} bytes", du(&feeds));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_log(&user, "evicted the least recently used paths", 5);
    eprintln!("user feeds: {} KiB under a 5 MiB bound", du(&feeds) >> 10);
    let page = String::from_utf8_lossy(&http(&api, "GET", "/", &[]).body).into_owned();
    assert!(page.contains("of at most 5.00 MiB (--max-size)"), "{page}");

    // The publisher's seed kept every block of its own feeds, and says why.
    assert!(du(&w.data.join("feeds")) > 10 << 20);
    wait_for_log(&seed, "nothing is left to evict", 10);

    // With the seed gone: the pinned path and the latest one are still
    // here; the oldest is not.
    drop(seed);
    assert!(
        nar_of(&api, &w, "p0").is_some_and(|n| n == w.path("p0").nar),
        "pinned p0"
    );
    assert!(
        nar_of(&api, &w, "p4").is_some_and(|n| n == w.path("p4").nar),
        "latest p4"
    );
    assert!(
        nar_of(&api, &w, "p1").is_none_or(|n| n != w.path("p1").nar),
        "oldest p1 was kept"
    );
}

#[test]
fn a_restarted_bounded_node_still_knows_which_paths_were_used_last() {
    restarted_bounded_node(&[]);
}

/// The same of an index in runs (a run cut after each path): the
/// restarted node's catalog holds none of the paths it used before, and it
/// still evicts them, in the order it used them.
#[test]
fn a_restarted_bounded_node_evicts_paths_of_an_index_in_runs_it_no_longer_holds_records_of() {
    restarted_bounded_node(&["--run-tail", "1"]);
}

/// Two of three 2 MiB paths used through a node bounded at 5 MiB, which
/// restarts and then uses the third: the one of the two used less recently
/// goes. `publish` are the publisher's extra flags.
fn restarted_bounded_node(publish: &[&str]) {
    if !faults_built_in() {
        return;
    }
    let (w, id) = published_2mib_with(&["q1", "q2", "q3"], 11, publish);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let user_data = w.tmp.path().join("user");
    let args = [
        "--trust",
        &id,
        "--max-size",
        "5M",
        "--peer-deadline",
        "2",
        "--peer",
        &seed.addr,
    ];
    // Of q1 and q2, the one a node without memory would evict first (by
    // name, both unused since its start) is the one used last here.
    let base = |n: &str| w.path(n).info.store_path.base_name().to_owned();
    let (older, newer) = if base("q1") < base("q2") {
        ("q2", "q1")
    } else {
        ("q1", "q2")
    };
    let user = serve(&user_data, &args, FAST);
    let api = user.http.clone().unwrap();
    for name in [older, newer, older, newer] {
        wait_for_status(
            &api,
            &format!("/{}.narinfo", w.path(name).info.store_path.hash_part()),
            200,
            30,
        );
        assert!(
            nar_of(&api, &w, name).unwrap() == w.path(name).nar,
            "{name}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let recent = user_data.join("recent");
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&recent)
        .unwrap_or_default()
        .lines()
        .next()
        .is_some_and(|l| l.ends_with(&base(newer)))
    {
        assert!(
            Instant::now() < until,
            "{} never says {newer} was used last",
            recent.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(user.terminate().success());

    // Restarted, a third path takes it past the bound: the older goes.
    let user = serve(&user_data, &args, FAST);
    let api = user.http.clone().unwrap();
    wait_for_status(
        &api,
        &format!("/{}.narinfo", w.path("q3").info.store_path.hash_part()),
        200,
        30,
    );
    assert!(nar_of(&api, &w, "q3").unwrap() == w.path("q3").nar);
    wait_for_log(&user, "evicted the least recently used paths", 20);
    drop(seed);
    assert!(
        nar_of(&api, &w, newer).is_some_and(|n| n == w.path(newer).nar),
        "{newer}, used last before the restart, was evicted"
    );
    assert!(
        nar_of(&api, &w, older).is_none_or(|n| n != w.path(older).nar),
        "{older} was kept"
    );
}

/// A 24 MiB path behind a 3 MiB bound, its NAR read slowly (256 KiB every
/// 10 ms) from a node started with `env` besides the fast checks: the
/// whole NAR, byte for byte, and the node's log by then.
fn read_slowly_through_a_small_bound(env: &[(&str, &str)]) -> (World, Serve, String) {
    use std::io::{Read, Write};
    let w = World::new(&[raw("big", noise(24 << 20, 21), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let user = serve(
        &w.tmp.path().join("user"),
        &["--trust", &id, "--max-size", "3M", "--peer", &seed.addr],
        &[FAST, env].concat(),
    );
    let api = user.http.clone().unwrap();
    let hash = w.path("big").info.store_path.hash_part().to_owned();
    let r = wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let host = api.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "GET /{url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0; 256 << 10];
    loop {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = std::fs::read_to_string(&user.log).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = &all[split + 4..];
    assert!(
        body == w.path("big").nar.as_slice(),
        "{} of {} bytes, or different: {log}",
        body.len(),
        w.path("big").nar.len()
    );
    drop(seed);
    (w, user, log)
}

#[test]
fn a_path_being_sent_is_kept_past_the_bound_and_dropped_once_sent() {
    if !faults_built_in() {
        return;
    }
    let (_w, user, log) = read_slowly_through_a_small_bound(&[]);
    // Over the bound while it was read, yet nothing taken from under it.
    assert!(log.contains("nothing is left to evict"), "{log}");
    assert!(!log.contains("evicted the least recently used"), "{log}");
    // Once sent, it is the least recently used path like any other.
    wait_for_log(&user, "evicted the least recently used paths", 10);
}

#[test]
fn a_block_evicted_between_a_readers_want_and_its_read_is_fetched_again() {
    if !faults_built_in() {
        return;
    }
    // As a mount read can be between two segments: evicted under it.
    let (_w, _user, log) =
        read_slowly_through_a_small_bound(&[("HYPERNAR_FAULT_EVICT_READING", "1")]);
    assert!(
        log.contains("evicted the least recently used paths"),
        "{log}"
    );
}
