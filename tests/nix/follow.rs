//! `hypernar follow` of a channel whose releases real Nix built: three
//! releases sharing most of their closure, signed by a Nix key standing in
//! for `cache.nixos.org-1` and copied into an xz binary cache by `nix copy`
//! (as cache.nixos.org's NARs are), the channel a 302 from nginx. Then a
//! peer pinned to the channel fetches release 2's closure ahead, and real
//! Nix substitutes it through the swarm from that peer alone, with the
//! upstream and the publisher gone.

use std::io::Write;

use super::*;

/// Release 1 is app-a; release 2 adds app-b (both on lib, on base);
/// release 3 is app-b and app-c (on base alone).
const RELEASES: &str = r#"
  base = mk "hn-chan-base" "mkdir -p $out; seq 1 50000 > $out/data";
  lib = mk "hn-chan-lib" "mkdir -p $out; echo ${base} > $out/uses; seq 1 30000 > $out/lib";
  appA = mk "hn-chan-app-a" "mkdir -p $out/bin; echo ${lib} > $out/bin/a";
  appB = mk "hn-chan-app-b" "mkdir -p $out/bin; echo ${lib} > $out/bin/b";
  appC = mk "hn-chan-app-c" "mkdir -p $out/bin; echo ${base} > $out/bin/c";
in { r1 = [ appA ]; r2 = [ appA appB ]; r3 = [ appB appC ]; }
"#;

/// The store paths `nix-build -A attr` gives.
fn build(expr: &std::path::Path, attr: &str) -> Vec<String> {
    nix(&["nix-build", s(expr), "-A", attr, "--no-out-link"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `serve`'s log has `needle` `n` times.
fn wait_for_log_count(serve: &Serve, needle: &str, n: usize, secs: u64) {
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

fn write_release(site: &std::path::Path, name: &str, roots: &[String]) {
    let dir = site.join("releases").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    for r in roots {
        writeln!(e, "{r}").unwrap();
    }
    std::fs::write(dir.join("store-paths.xz"), e.finish().unwrap()).unwrap();
    std::fs::write(dir.join("git-revision"), "89abcdef01234567\n").unwrap();
}

#[test]
fn a_channel_built_by_nix_is_followed_and_nix_substitutes_a_release_through_the_swarm() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-nix-follow-")
        .tempdir()
        .unwrap();
    let expr = tmp.path().join("releases.nix");
    std::fs::write(&expr, with_mk(RELEASES)).unwrap();
    let releases: Vec<Vec<String>> = ["r1", "r2", "r3"].iter().map(|a| build(&expr, a)).collect();

    // Signed by the stand-in upstream key, copied as xz like cache.nixos.org.
    let (sk, pk) = fixed_key(tmp.path(), "hn-follow-upstream-1", 51);
    let site = tmp.path().join("site");
    let all: Vec<&str> = releases.iter().flatten().map(String::as_str).collect();
    let mut sign = vec!["nix", "store", "sign", "--key-file", s(&sk), "-r"];
    sign.extend(&all);
    nix(&sign);
    let to = format!("file://{}?compression=xz", site.join("cache").display());
    let mut copy = vec!["nix", "copy", "--to", &to];
    copy.extend(&all);
    nix(&copy);
    let names = [
        "nixos-test.1.1111111",
        "nixos-test.2.2222222",
        "nixos-test.3.3333333",
    ];
    for (name, roots) in names.iter().zip(&releases) {
        write_release(&site, name, roots);
    }

    let key = tmp.path().join("publisher.key");
    let id = ok(&["keygen", "--out", s(&key)])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let data = tmp.path().join("publisher-data");
    let follow = |release: &str| {
        let ng = nginx(
            &site,
            &format!("location = /channel {{ return 302 /releases/{release}/; }}"),
        );
        let channel = format!("test={}/channel", ng.base);
        let upstream = format!("{}/cache", ng.base);
        let out = hypernar(&[
            "follow",
            "--once",
            "--key",
            s(&key),
            "--data",
            s(&data),
            "--channel",
            &channel,
            "--upstream",
            &upstream,
            "--trusted-public-key",
            &pk,
        ]);
        assert!(
            out.status.success(),
            "follow {release}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Release 1: app-a, lib, base. Release 2 adds only app-b.
    let out = follow(names[0]);
    assert!(
        out.contains("3 closure paths: 3 published now, 0 before"),
        "{out}"
    );
    let out = follow(names[1]);
    assert!(
        out.contains("4 closure paths: 1 published now, 3 before"),
        "{out}"
    );

    // A peer pinned to the channel holds release 2's closure as soon as
    // the publisher's seed reaches it, before anyone asks for any of it.
    let channel = format!("{id}/test");
    let pinned = serve(
        &tmp.path().join("pinned-data"),
        &["--pin", &channel, "--http", "none"],
        &[],
    );
    let seed = serve(&data, &["--http", "none", "--peer", &pinned.addr], &[]);
    wait_for_log_count(&pinned, "pinned path ready", 4, 60);
    // The upstream and the publisher are gone: Nix gets release 2's
    // closure from a node whose only source is the pinned peer.
    drop(seed);
    let user = tmp.path().join("user-data");
    let sub = serve(
        &user,
        &["--trust", &id, "--peer", &pinned.addr, "--upstream", "none"],
        &[],
    );
    let api = sub.http.clone().unwrap();
    // Asked once it has reached its peer: a node with no source yet
    // answers a miss at once, and Nix would keep that answer.
    for root in &releases[1] {
        let hash = StorePath::parse(root).unwrap().hash_part().to_owned();
        wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    }
    let mut closure_args = vec!["nix-store", "-qR"];
    closure_args.extend(releases[1].iter().map(String::as_str));
    let closure: Vec<String> = nix(&closure_args).lines().map(str::to_owned).collect();
    assert_eq!(closure.len(), 4, "{closure:?}");
    let b = Built {
        tmp,
        closure,
        roots: releases[1].clone(),
    };
    copy_and_realise(&b, &api, &pk, &b.tmp.path().join("xdg"), "follow");
}
