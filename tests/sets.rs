//! Safe-path sets: a maintainer (not the publisher) vouches for paths in a
//! feed of its own; a node that pins the set fetches the closure of every
//! path in it ahead, live as the set changes, and with `--require-set`
//! serves Nix only what the set covers.

use std::time::{Duration, Instant};

use crate::util::*;

fn set(args: &[&str]) -> String {
    let mut all = vec!["set"];
    all.extend_from_slice(args);
    ok(&all)
}

/// Waits until `log` has `needle` `n` times.
fn wait_for_count(serve: &Serve, needle: &str, n: usize, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
        if log.matches(needle).count() >= n {
            return;
        }
        assert!(
            Instant::now() < until,
            "{needle:?} not {n} times in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_pinned_set_is_fetched_ahead_live_and_require_set_serves_only_what_it_covers() {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let hash = |name: &str| w.path(name).info.store_path.hash_part().to_owned();

    // The set's maintainer has a key and a data directory of its own.
    let lab = Lab::new(w.tmp.path());
    let common = ["--key", s(&lab.key), "--data", s(&lab.data)];
    let err = fails(
        &[
            &["set", "add"][..],
            &common,
            &["lab", &w.store_path("hello-2.12")],
        ]
        .concat(),
    );
    assert!(err.contains("--publisher"), "{err}");
    let err = fails(&[&["set", "list"][..], &common, &["lab"]].concat());
    assert!(err.contains("no set named \"lab\""), "{err}");
    let out = set(&[
        &["add"][..],
        &common,
        &["lab", "--publisher", &id, &w.store_path("hello-2.12")],
    ]
    .concat());
    let set_id = out.lines().last().unwrap().to_owned();
    assert!(set_id.starts_with("hypernar-set1:"), "{out}");
    assert!(out.contains("added 1 entries to set lab"), "{out}");
    let out = set(&[
        &["add"][..],
        &common,
        &["lab", "--publisher", &id, &w.store_path("hello-2.12")],
    ]
    .concat());
    assert!(
        out.contains("added 0 entries to set lab (1 were already in it)"),
        "{out}"
    );
    assert_eq!(out.lines().last().unwrap(), set_id, "one name, one id");

    let Follower {
        node: user,
        seed,
        lab_seed: _lab_seed,
    } = lab.follower(&w, &id, &["--pin", &set_id, "--require-set"]);
    let api = user.http.clone().unwrap();
    // The set covers hello and its closure (libdemo), fetched ahead.
    for name in ["hello-2.12", "libdemo-1.0"] {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 30);
    }
    wait_for_count(&user, "pinned path stored", 2, 30);
    // The publisher lists the other paths too; the set does not cover
    // them, so they are not served.
    for name in ["demo-dataset", "empty-file"] {
        let r = http(&api, "GET", &format!("/{}.narinfo", hash(name)), &[]);
        assert_eq!(r.status, 404, "{name}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("safe-path set"),
            "{name}"
        );
    }

    // Added while everything runs (through the maintainer's serve), a path
    // is covered and pinned at once.
    let out = set(&[
        &["add"][..],
        &common,
        &["lab", "--publisher", &id, &w.store_path("empty-file")],
    ]
    .concat());
    assert!(out.contains("added 1 entries"), "{out}");
    wait_for_status(&api, &format!("/{}.narinfo", hash("empty-file")), 200, 30);
    wait_for_count(&user, "pinned path stored", 3, 30);
    // `hypernar status` asks the running node: publisher, set, pins.
    let status = ok(&["status", "--data", s(&w.tmp.path().join("user"))]);
    assert!(status.contains("running"), "{status}");
    assert!(
        status.contains(&format!("{id}  4 paths, 4 keys released")),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "{set_id}  pinned, 2 paths listed, 3 covered with their closures"
        )),
        "{status}"
    );
    assert!(status.contains("pinned paths: 3"), "{status}");
    assert!(status.contains(&w.store_path("libdemo-1.0")), "{status}");
    // The status page shows the same, as a browser renders it.
    if has_chromium() {
        let dom = rendered_dom(&format!("{api}/"), &w.tmp.path().join("chromium"));
        assert!(dom.contains("<table id=\"sets\">"), "{dom}");
        assert!(
            dom.contains(&format!("<td><code>{set_id}</code></td><td>pinned</td>")),
            "{dom}"
        );
        assert!(dom.contains("3 paths pinned"), "{dom}");
        assert!(dom.contains("--share all"), "{dom}");
    } else {
        skip_or_fail("chromium (Debian package chromium), for the status page");
    }
    let listed = set(&[&["list"][..], &common, &["lab"]].concat());
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(&w.store_path("empty-file")) && listed.contains(&id),
        "{listed}"
    );

    // The publisher's seed goes away: pinned paths are all here.
    drop(seed);
    for name in ["hello-2.12", "libdemo-1.0", "empty-file"] {
        let r = wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 10);
        let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
            .unwrap()
            .url;
        let nar = http(&api, "GET", &format!("/{url}"), &[]);
        assert_eq!(nar.status, 200, "{name}");
        assert!(nar.body == w.path(name).nar, "{name}: NAR differs");
    }

    // Withdrawn, hello is no longer served; nor is libdemo, which only
    // hello's closure brought in.
    let out = set(&[
        &["remove"][..],
        &common,
        &["lab", &w.store_path("hello-2.12")],
    ]
    .concat());
    assert!(out.contains("removed 1 entries"), "{out}");
    for name in ["hello-2.12", "libdemo-1.0"] {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 404, 30);
    }
    let r = http(
        &api,
        "GET",
        &format!("/{}.narinfo", hash("empty-file")),
        &[],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn without_require_set_every_trusted_path_is_served_and_a_set_id_is_checked() {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    // A set id is not a publisher id, and a typo is caught.
    let err = fails(&["serve", "--data", s(&w.data), "--pin", &id]);
    assert!(err.contains("hypernar-set1:"), "{err}");
    let lab = Lab::new(w.tmp.path());
    let set_id = lab.add(&id, &w.store_path("libdemo-1.0"));
    let f = lab.follower(&w, &id, &["--set", &set_id]);
    let user = &f.node;
    let api = user.http.clone().unwrap();
    let hash = |name: &str| w.path(name).info.store_path.hash_part().to_owned();
    for name in ["hello-2.12", "libdemo-1.0", "demo-dataset"] {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 30);
    }
    // Followed, not pinned: nothing is fetched ahead.
    std::thread::sleep(Duration::from_secs(1));
    let log = std::fs::read_to_string(&user.log).unwrap();
    assert!(!log.contains("pinned path stored"), "{log}");
}

#[test]
fn a_pinned_path_is_fetched_ahead_before_its_key_is_released() {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all", "--no-release"]);
    let id = identity(&w);
    let lab = Lab::new(w.tmp.path());
    let set_id = lab.add(&id, &w.store_path("hello-2.12"));
    let f = lab.follower(&w, &id, &["--pin", &set_id]);
    // hello and its closure (libdemo): their blocks come, with no key.
    wait_for_count(&f.node, "pinned path stored", 2, 30);
    let api = f.node.http.clone().unwrap();
    let hash = w.path("hello-2.12").info.store_path.hash_part().to_owned();
    let r = http(&api, "GET", &format!("/{hash}.narinfo"), &[]);
    assert_eq!(r.status, 404, "no key: not served yet");
    assert!(
        String::from_utf8_lossy(&r.body).contains("no key has been released"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn one_set_vouches_for_paths_of_two_publishers_each_as_its_own_publisher_signed_it() {
    // Two small paths per publisher.
    let world = |names: [&str; 2], seed: u64| {
        World::new(&names.map(|n| {
            raw(
                n,
                noise(3000, seed + u64::from(n.as_bytes()[1] - b'0')),
                hypernar_feed::format::narinfo::Compression::Zstd,
                &[],
            )
        }))
    };
    let (w1, w2) = (world(["a1", "a2"], 0), world(["b1", "b2"], 2));
    w1.publish_ok(&["--all"]);
    w2.publish_ok(&["--all"]);
    let (id1, id2) = (identity(&w1), identity(&w2));
    let lab = Lab::new(w1.tmp.path());
    lab.add(&id1, &w1.store_path("a1"));
    lab.add(&id2, &w2.store_path("b1"));
    // Vouching for b2 as publisher 1 signed it: publisher 1 lists no b2.
    let set_id = lab.add(&id1, &w2.store_path("b2"));
    let seed1 = serve(&w1.data, &["--http", "none"], &[]);
    let seed2 = serve(&w2.data, &["--http", "none"], &[]);
    let lab_seed = serve(&lab.data, &["--http", "none"], &[]);
    let user = serve(
        &w1.tmp.path().join("user"),
        &[
            "--trust",
            &id1,
            "--trust",
            &id2,
            "--set",
            &set_id,
            "--require-set",
            "--peer",
            &seed1.addr,
            "--peer",
            &seed2.addr,
            "--peer",
            &lab_seed.addr,
        ],
        &[],
    );
    let api = user.http.clone().unwrap();
    let narinfo =
        |w: &World, name: &str| format!("/{}.narinfo", w.path(name).info.store_path.hash_part());
    wait_for_status(&api, &narinfo(&w1, "a1"), 200, 30);
    wait_for_status(&api, &narinfo(&w2, "b1"), 200, 30);
    for (w, name) in [(&w1, "a2"), (&w2, "b2")] {
        let r = http(&api, "GET", &narinfo(w, name), &[]);
        assert_eq!(r.status, 404, "{name} is not covered");
    }
}

#[test]
fn a_set_over_an_index_in_runs_is_covered_and_pinned_path_by_path() {
    use hypernar_feed::format::narinfo::Compression;
    // app -> lib -> libc, published first and cut into runs of four with
    // twelve more paths: the set's paths and their closure are in runs,
    // never in the tail a fresh node replicates.
    let file = |text: &str| {
        hypernar_publisher::sample::nar_of(&tree_file(text.as_bytes().to_vec(), false)).unwrap()
    };
    let mut paths = vec![
        raw("libc", file("libc"), Compression::None, &[]),
        raw("lib", file("lib"), Compression::None, &["libc"]),
        raw("app", file("app"), Compression::None, &["lib"]),
    ];
    paths.extend(crate::runs::paths(12));
    let w = World::new(&paths);
    let names: Vec<String> = ["libc", "lib", "app"]
        .into_iter()
        .map(String::from)
        .chain((0..12).map(|i| format!("p{i}")))
        .map(|n| w.store_path(&n))
        .collect();
    crate::runs::publish_with_tail(&w, "4", &names, &[]);
    let m = crate::runs::manifest(&crate::runs::records(
        &w,
        hypernar_feed::format::identity::RUNS_FEED,
    ));
    let id = identity(&w);
    let lab = Lab::new(w.tmp.path());
    let set_id = lab.add(&id, &w.store_path("app"));
    let f = lab.follower(&w, &id, &["--pin", &set_id, "--require-set"]);
    let api = f.node.http.clone().unwrap();
    let hash = |name: &str| w.path(name).info.store_path.hash_part().to_owned();
    // The walk looked each up in the runs: all three are pinned and served.
    wait_for_count(&f.node, "pinned path stored", 3, 30);
    for name in ["app", "lib", "libc"] {
        wait_for_status(&api, &format!("/{}.narinfo", hash(name)), 200, 30);
    }
    // Listed but not covered, in a run or in the tail: not served.
    for name in ["p0", "p11"] {
        let r = http(&api, "GET", &format!("/{}.narinfo", hash(name)), &[]);
        assert_eq!(r.status, 404, "{name}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("safe-path set"),
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // The status shows what the set covers.
    let user = w.tmp.path().join("user");
    let status = ok(&["status", "--data", s(&user)]);
    assert!(
        status.contains("1 paths listed, 3 covered with their closures"),
        "{status}"
    );
    drop(f);
    // The node never read the index whole.
    let (have, length) = crate::runs::stored_blocks(&user, "index");
    assert!(m.indexed_to > 6, "the closure is in runs: {m:?}");
    assert!(
        have < length,
        "the user holds {have} of {length} index blocks"
    );
}
