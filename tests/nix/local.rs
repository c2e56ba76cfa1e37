//! `publish --from local`: paths real Nix built here, unsigned, published
//! straight from the local store (path info and `nix-store --dump`), signed
//! with `--sign-key` by a CI key, and substituted by Nix elsewhere through
//! the swarm because it trusts that key. Without the key Nix refuses them,
//! as it would from any cache.

use super::*;

const LOCAL: &str = r#"
  dep = mk "hn-local-dep" "mkdir -p $out; seq 1 20000 > $out/numbers";
  app = mk "hn-local-app" "mkdir -p $out/bin; echo ${dep} > $out/bin/app; chmod +x $out/bin/app";
in app
"#;

#[test]
fn a_locally_built_path_published_from_the_store_and_signed_is_substituted_elsewhere() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-nix-local-")
        .tempdir()
        .unwrap();
    let expr = tmp.path().join("local.nix");
    std::fs::write(&expr, with_mk(LOCAL)).unwrap();
    let app = nix(&["nix-build", s(&expr), "--no-out-link"])
        .trim()
        .to_owned();
    let closure: Vec<String> = nix(&["nix-store", "-qR", &app])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(closure.len(), 2, "{closure:?}");
    let (sk, pk) = (tmp.path().join("ci-sk"), tmp.path().join("ci-pk"));
    nix(&[
        "nix-store",
        "--generate-binary-cache-key",
        "hypernar-ci-1",
        s(&sk),
        s(&pk),
    ]);
    let pk = std::fs::read_to_string(&pk).unwrap().trim().to_owned();

    let key = tmp.path().join("publisher.key");
    let id = ok(&["keygen", "--out", s(&key)])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let data = tmp.path().join("publisher-data");
    // A link into the store names its target, as `./result` does.
    let result = tmp.path().join("result");
    std::os::unix::fs::symlink(&app, &result).unwrap();
    let out = ok(&[
        "publish",
        "--key",
        s(&key),
        "--data",
        s(&data),
        "--from",
        "local",
        "--sign-key",
        s(&sk),
        "--closure",
        s(&result),
    ]);
    assert!(out.contains("published 2 paths"), "{out}");

    let seed = serve(&data, &["--http", "none"], &[]);
    let user = serve(
        &tmp.path().join("user-data"),
        &["--trust", &id, "--peer", &seed.addr, "--upstream", "none"],
        &[],
    );
    let api = user.http.clone().unwrap();
    let hash = StorePath::parse(&app).unwrap().hash_part().to_owned();
    wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    let b = Built {
        tmp,
        closure,
        roots: vec![app.clone()],
    };
    copy_and_realise(&b, &api, &pk, &b.tmp.path().join("xdg"), "local");

    // Unsigned (no --sign-key), the same paths are published, and Nix
    // refuses them: nothing here vouches for a locally built path.
    let data2 = b.tmp.path().join("unsigned-data");
    let out = ok(&[
        "publish",
        "--key",
        s(&key),
        "--data",
        s(&data2),
        "--from",
        "local",
        "--closure",
        &app,
    ]);
    assert!(out.contains("published 2 paths"), "{out}");
    drop(user);
    drop(seed);
    let seed = serve(&data2, &["--http", "none"], &[]);
    let user = serve(
        &b.tmp.path().join("user2-data"),
        &["--trust", &id, "--peer", &seed.addr, "--upstream", "none"],
        &[],
    );
    let api = user.http.clone().unwrap();
    wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    let store = b.tmp.path().join("store-unsigned");
    let out = nix_run(&copy_args(&b, &api, &store, &pk), &b.tmp.path().join("xdg"));
    assert!(!out.status.success(), "Nix took an unsigned path");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("signature") || err.contains("lacks a valid"),
        "{err}"
    );
}
