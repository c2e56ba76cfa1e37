//! A group with real Nix, on one LAN of network namespaces: A, B and C
//! are members of a group, D on the same bridge is not; nginx (in this
//! namespace, on the bridge) is the upstream, serving a cache that real
//! Nix built and signed with a test key playing `cache.nixos.org-1`, xz
//! as cache.nixos.org. No node is told of another: they meet by mDNS.
//!
//! - Nix substitutes a closure through A's `serve`, which pulls it from the
//!   upstream and keeps it; the upstream is stopped.
//! - Nix substitutes the same closure through B with `nix copy`: every NAR
//!   from A (B's metrics count peer bytes and no upstream byte), the same
//!   bytes as built.
//! - A path the upstream serves unsigned passes through A and is never
//!   offered to B.
//! - C publishes a path it built itself (`publish --from local
//!   --sign-key`), its key released to the group only; B serves it because
//!   it trusts C's Nix key; D, which knows C's identity too, gets no key.
//! - D knows A's identity: it reads A's index and no key, and Nix gets
//!   nothing of A's from it.
//!
//! - A drops the blocks of what it kept once its Nix store holds the
//!   paths; B still gets every byte from A, made again from A's store.
//!
//! A hostile member's wrong NAR is `tests/group.rs`; a path changed in or
//! collected from the store is `nocopy.rs`.

use std::time::{Duration, Instant};

use super::*;

const GROUP: &str = r#"
  dep = mk "hn-group-dep" "mkdir -p $out; seq 1 300000 > $out/numbers";
  app = mk "hn-group-app" "mkdir -p $out/bin; echo ${dep} > $out/bin/app; chmod +x $out/bin/app";
  unsigned = mk "hn-group-unsigned" "echo served unsigned > $out";
  onc = mk "hn-group-built-on-c" "echo built on c > $out";
in [ app unsigned onc ]
"#;

const LOG: &str = "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info";

fn copy(from: &str, to: &Path, keys: &str, paths: &[&str], xdg: &Path) -> std::process::Output {
    let mut args = vec![
        "nix",
        "copy",
        "--from",
        from,
        "--to",
        s(to),
        "--option",
        "trusted-public-keys",
        keys,
    ];
    args.extend(paths);
    nix_run(&args, xdg)
}

fn same_nars(paths: &[&str], root: &Path, label: &str) {
    let closure: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
    assert_same_nars(&closure, root, label);
}

#[test]
fn members_on_a_lan_share_what_one_pulled_through_and_what_one_built() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let Some(lan) = is_root()
        .then(|| Lan::with_hosts(11, &["a", "b", "c", "d"]))
        .flatten()
    else {
        return skip_or_fail("root and iproute2 network namespaces (ip netns)");
    };
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-nix-group-")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let expr = t.join("group.nix");
    std::fs::write(&expr, with_mk(GROUP)).unwrap();
    let roots: Vec<String> = nix(&["nix-build", s(&expr), "--no-out-link"])
        .lines()
        .map(str::to_owned)
        .collect();
    let [app, unsigned, onc] = [&roots[0], &roots[1], &roots[2]];
    let closure: Vec<String> = nix(&["nix-store", "-qR", app])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(closure.len(), 2, "{closure:?}");
    let closure: Vec<&str> = closure.iter().map(String::as_str).collect();

    // The upstream: app's closure signed by the key playing
    // cache.nixos.org-1, and one path with no signature.
    let (up_sk, up_pk) = fixed_key(t, "hn-group-upstream-1", 31);
    nix(&["nix", "store", "sign", "--key-file", s(&up_sk), "-r", app]);
    let cache = t.join("cache");
    let to = format!("file://{}?compression=xz", cache.display());
    nix(&["nix", "copy", "--to", &to, app, unsigned]);
    let up = nginx_at(&lan.ip("bridge"), &cache, "", "");
    let group = ok(&["group", "new"]).trim().to_owned();
    let net = format!("198.18.{}.0/24", lan.net);
    let http_args = ["--http", "0.0.0.0:7470", "--http-allow", &net];
    let api = |side: &str| format!("http://{}:7470", lan.ip(side));

    // A substitutes the closure through its own serve and keeps it; once
    // its Nix store holds the paths, it drops their blocks.
    let a_data = t.join("a");
    let store_a = t.join("store-a");
    let mut args = vec![
        "--group",
        &group,
        "--upstream",
        &up.base,
        "--trusted-public-key",
        &up_pk,
        "--nix-store",
        s(&store_a),
        "--store-check-every",
        "1",
    ];
    args.extend(http_args);
    let a = NsServe::start_with(&lan.ns("a"), &a_data, &args, LOG);
    wait_for_port(&format!("{}:7470", lan.ip("a")), &a);
    let out = copy(&api("a"), &store_a, &up_pk, &[app], &t.join("xdg-a"));
    assert!(
        out.status.success(),
        "nix copy through A: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
    );
    same_nars(&closure, &store_a, "through A");
    // The unsigned path passes through A too (Nix is told not to check).
    let a_api = api("a");
    let mut args = vec!["nix", "copy", "--no-check-sigs", "--from", &a_api];
    let store_u = t.join("store-unsigned");
    args.extend(["--to", s(&store_u), unsigned]);
    let out = nix_run(&args, &t.join("xdg-u"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_log_count(a.log_path(), "kept a pulled-through path", 2, 30);
    wait_for_log_count(
        a.log_path(),
        "dropped the blocks of kept paths the Nix store holds",
        1,
        30,
    );
    let a_id = {
        let text = std::fs::read_to_string(a_data.join("node.key")).unwrap();
        hypernar_feed::format::identity::PublisherSecret::from_key_file(&text)
            .unwrap()
            .identity()
            .to_string()
    };
    drop(up);

    // C shares a path it built, signed with its own Nix key.
    let (c_sk, c_pk) = fixed_key(t, "hn-group-c-builds-1", 32);
    let c_data = t.join("c");
    std::fs::create_dir_all(&c_data).unwrap();
    ok(&["keygen", "--out", s(&c_data.join("node.key"))]);
    let out = ok(&[
        "publish",
        "--key",
        s(&c_data.join("node.key")),
        "--data",
        s(&c_data),
        "--from",
        "local",
        "--sign-key",
        s(&c_sk),
        "--no-release",
        "--closure",
        onc,
    ]);
    assert!(out.contains("published 1 path"), "{out}");
    // Its key to the group only (docs/sharing.md): the group's audience,
    // whose key feed C's card names.
    let gid = ok(&["group", "id", &group]).trim().to_owned();
    ok(&[
        "release",
        "--key",
        s(&c_data.join("node.key")),
        "--data",
        s(&c_data),
        "--audience",
        &format!("group-{gid}"),
    ]);
    let dead_upstream = format!("http://{}:1", lan.ip("bridge"));
    let c = NsServe::start_with(
        &lan.ns("c"),
        &c_data,
        &["--group", &group, "--upstream", &dead_upstream],
        LOG,
    );

    // B, a member told of no one, substitutes A's closure and C's build.
    let b_data = t.join("b");
    let mut args = vec![
        "--group",
        &group,
        "--upstream",
        &dead_upstream,
        "--trusted-public-key",
        &up_pk,
        "--trusted-public-key",
        &c_pk,
    ];
    args.extend(http_args);
    let b = NsServe::start_with(&lan.ns("b"), &b_data, &args, LOG);
    wait_for_port(&format!("{}:7470", lan.ip("b")), &b);
    for p in [app, onc] {
        let hash = StorePath::parse(p).unwrap().hash_part().to_owned();
        let r = wait_for_status(&api("b"), &format!("/{hash}.narinfo"), 200, 60);
        assert_eq!(r.status, 200, "{p}: {}\n--- c:\n{}", b.log(), c.log());
    }
    let keys = format!("{up_pk} {c_pk}");
    let store_b = t.join("store-b");
    let out = copy(&api("b"), &store_b, &keys, &[app, onc], &t.join("xdg-b"));
    assert!(
        out.status.success(),
        "nix copy through B: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    same_nars(&closure, &store_b, "through B");
    same_nars(&[onc], &store_b, "C's build through B");
    let from_peers = metric(&api("b"), "hypernar_received_bytes_total{source=\"peer\"}");
    let from_up = metric(
        &api("b"),
        "hypernar_received_bytes_total{source=\"upstream\"}",
    );
    assert!(
        from_peers > 0 && from_up == 0,
        "peers {from_peers}, upstream {from_up}"
    );
    // A had dropped them: it made them again from its store.
    assert!(
        a.log()
            .contains("making dropped blocks again from the Nix store"),
        "{}",
        a.log()
    );
    // Told of no one, they met by mDNS (of two, the one with the smaller
    // id dials and logs it).
    assert!(b.log().contains("met a group member"), "{}", b.log());
    let logs = format!("{}{}{}", a.log(), b.log(), c.log());
    assert!(logs.contains("found on the local network"), "{logs}");
    // What came unsigned was never offered.
    let hash = StorePath::parse(unsigned).unwrap().hash_part().to_owned();
    assert_eq!(
        http(&api("b"), "GET", &format!("/{hash}.narinfo"), &[]).status,
        404
    );

    // D, not a member, knows A's identity: A's index, no key.
    let d_data = t.join("d");
    let c_id = {
        let text = std::fs::read_to_string(c_data.join("node.key")).unwrap();
        hypernar_feed::format::identity::PublisherSecret::from_key_file(&text)
            .unwrap()
            .identity()
            .to_string()
    };
    let mut args = vec!["--trust", &a_id, "--trust", &c_id];
    args.extend(http_args);
    let d = NsServe::start_with(&lan.ns("d"), &d_data, &args, LOG);
    wait_for_port(&format!("{}:7470", lan.ip("d")), &d);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = ok(&["status", "--data", s(&d_data)]);
        if status.contains(&format!("{a_id}  2 paths, 0 keys released"))
            && status.contains(&format!("{c_id}  1 paths, 0 keys released"))
        {
            break;
        }
        assert!(Instant::now() < until, "{status}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = copy(
        &api("d"),
        &t.join("store-d"),
        &up_pk,
        &[app],
        &t.join("xdg-d"),
    );
    assert!(!out.status.success(), "Nix got A's path from a non-member");
}
