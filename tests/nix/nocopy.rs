//! No second copy, with real Nix and a real Nix store (a chroot store, as
//! `nix --store DIR` makes it): a node keeps what Nix pulls through it;
//! once the store holds those paths the node drops their blocks, serves
//! them to a peer by making them again from the store (a segment inside a
//! large file read straight from it, the rest from `nix-store --dump`),
//! and offers nothing made from a path that changed in the store or left
//! it.

use std::time::Duration;

use super::*;

const PATHS: &str = r#"
in [
  (mk "hn-nocopy-big" "mkdir -p $out; seq 1 400000 > $out/numbers; seq 400000 -1 1 > $out/reversed")
  (mk "hn-nocopy-small" "mkdir -p $out; seq 1 100000 > $out/n")
  (mk "hn-nocopy-file" "seq 1 250000 > $out")
]
"#;

const LOG: &str = "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info";

/// Bytes the data files of every feed under `data` take on disk.
fn data_bytes(data: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(data.join("feeds"))
        .unwrap()
        .flatten()
        .filter_map(|d| std::fs::metadata(d.path().join("data")).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn nar_size(path: &str) -> u64 {
    nix(&["nix-store", "--query", "--size", path])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn kept_blocks_are_dropped_once_in_the_store_made_again_for_a_peer_and_never_from_a_changed_path() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-nix-nocopy-")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let expr = t.join("paths.nix");
    std::fs::write(&expr, with_mk(PATHS)).unwrap();
    let roots: Vec<String> = nix(&["nix-build", s(&expr), "--no-out-link"])
        .lines()
        .map(str::to_owned)
        .collect();
    let [big, small, single] = [&roots[0], &roots[1], &roots[2]];
    let (sk, pk) = fixed_key(t, "hn-nocopy-upstream-1", 41);
    nix(&[
        "nix",
        "store",
        "sign",
        "--key-file",
        s(&sk),
        big,
        small,
        single,
    ]);
    let cache = t.join("cache");
    let to = format!("file://{}?compression=zstd", cache.display());
    nix(&["nix", "copy", "--to", &to, big, small, single]);
    let up = nginx(&cache, "");

    // A: Nix pulls both paths through it into its store; A keeps them.
    let store_a = t.join("store-a");
    let a_data = t.join("a");
    let up_base = up.base.clone();
    let a_args = [
        "--upstream",
        &up_base,
        "--trusted-public-key",
        &pk,
        "--nix-store",
        s(&store_a),
        "--store-check-every",
        "1",
    ];
    let a = serve(&a_data, &a_args, &[("RUST_LOG", LOG)]);
    // One download attempt: the copies meant to fail fail at once.
    let copy = |from: &str, to: &Path, paths: &[&str]| {
        let mut args = vec![
            "nix",
            "copy",
            "--from",
            from,
            "--to",
            s(to),
            "--option",
            "trusted-public-keys",
            &pk,
            "--option",
            "download-attempts",
            "1",
        ];
        args.extend(paths);
        nix_run(&args, &t.join("xdg"))
    };
    let out = copy(a.http.as_deref().unwrap(), &store_a, &[big, small, single]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_log_count(&a.log, "kept a pulled-through path", 3, 30);
    drop(up);

    // Once the store holds them, their blocks are dropped.
    let dropped = "dropped the blocks of kept paths the Nix store holds";
    wait_for_log_count(&a.log, dropped, 1, 30);
    let nar = nar_size(big) + nar_size(small) + nar_size(single);
    std::thread::sleep(Duration::from_secs(2));
    let held = data_bytes(&a_data);
    assert!(
        held * 20 <= nar,
        "A's feeds hold {held} bytes of data for {nar} bytes of NAR"
    );

    // B, which trusts A's identity, gets all three from A, made again (the
    // path that is one file read from that file).
    let a_id = {
        let text = std::fs::read_to_string(a_data.join("node.key")).unwrap();
        hypernar_feed::format::identity::PublisherSecret::from_key_file(&text)
            .unwrap()
            .identity()
            .to_string()
    };
    let b = serve(
        &t.join("b"),
        &["--trust", &a_id, "--peer", &a.addr, "--no-keep"],
        &[],
    );
    let store_b = t.join("store-b");
    let out = copy(b.http.as_deref().unwrap(), &store_b, &[big, small, single]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&a.log).unwrap()
    );
    assert_same_nars(
        &[big.clone(), small.clone(), single.clone()],
        &store_b,
        "made again by A",
    );
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        log.contains("making dropped blocks again from the Nix store"),
        "{log}"
    );
    drop(b);
    // What was made again for B is dropped again.
    wait_for_log_count(&a.log, dropped, 2, 30);

    // Restarted, A offers its dropped paths again (its index read anew,
    // the store asked again) and makes them for a new peer.
    drop(a);
    // What was dropped stayed dropped through the stop (hypercore writes
    // a clear to its bitfield only at its next flush).
    let feeds: serde_json::Value =
        serde_json::from_str(&ok(&["feeds", "--json", "--data", s(&a_data)])).unwrap();
    let (held, length) = feeds
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["role"] == "data")
        .fold((0, 0), |(h, l), f| {
            (
                h + f["held"].as_u64().unwrap(),
                l + f["length"].as_u64().unwrap(),
            )
        });
    assert!(
        held * 2 < length,
        "{held} of {length} data blocks held after a stop: {feeds}"
    );
    let a = serve(&a_data, &a_args, &[("RUST_LOG", LOG)]);
    let b2 = serve(
        &t.join("b2"),
        &["--trust", &a_id, "--peer", &a.addr, "--no-keep"],
        &[],
    );
    let store_b2 = t.join("store-b2");
    let out = copy(b2.http.as_deref().unwrap(), &store_b2, &[small]);
    assert!(
        out.status.success(),
        "after a restart: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&a.log).unwrap()
    );
    assert_same_nars(
        std::slice::from_ref(small),
        &store_b2,
        "made again after a restart",
    );
    drop(b2);
    // What B2 had made again is dropped again.
    wait_for_log_count(&a.log, dropped, 1, 30);

    // A file of big changes in A's store (its database still says valid),
    // and small is collected from it.
    let file = format!("{}{big}/reversed", store_a.display());
    let mut bytes = std::fs::read(&file).unwrap();
    let perm = |p: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    perm(&format!("{}{big}", store_a.display()), 0o755);
    perm(&file, 0o644);
    bytes[1000] = b'x';
    std::fs::write(&file, &bytes).unwrap();
    nix(&["nix-store", "--store", s(&store_a), "--delete", small]);
    wait_for_log(
        &a,
        "is no longer in the Nix store: it is no longer offered",
        30,
    );

    // C gets neither: nothing made from the changed file is served, and
    // nothing of what left the store is offered.
    let c = serve(
        &t.join("c"),
        &["--trust", &a_id, "--peer", &a.addr, "--no-keep"],
        &[],
    );
    let store_c = t.join("store-c");
    let out = copy(c.http.as_deref().unwrap(), &store_c, &[big]);
    assert!(!out.status.success(), "C copied the changed path");
    let valid = nix_run(
        &[
            "nix-store",
            "--store",
            s(&store_c),
            "--query",
            "--hash",
            big,
        ],
        &t.join("xdg"),
    );
    assert!(
        !valid.status.success(),
        "the changed path is valid in C's store"
    );
    wait_for_log(&a, "could not be made again as this feed signed it", 30);
    let out = copy(c.http.as_deref().unwrap(), &store_c, &[small]);
    assert!(!out.status.success(), "C copied a path gone from A's store");
}
