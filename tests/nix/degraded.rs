//! Nix through the degraded peers: the publisher's web seed, then the
//! upstream cache, path by path, and a clean failure when neither has it;
//! upstream paths that are unsigned or wrongly signed pass through untouched
//! and Nix refuses them exactly as it does without hypernar.

use super::*;

/// Runs `args` like [`nix_run`], killing it after `secs` (then it hung).
fn nix_run_within(args: &[&str], xdg: &Path, secs: u64) -> (std::process::Output, bool) {
    let mut child = nix_command(args, xdg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut hung = false;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            hung = true;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child.wait_with_output().unwrap(), hung)
}

#[test]
fn nix_gets_its_paths_from_the_web_seed_then_upstream_as_each_goes_and_fails_cleanly_at_the_end() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd")]);
    let web_dir = b.tmp.path().join("web-seed");
    let (data, id) = publish_closure(&b, &["--web-seed", s(&web_dir)]);
    // The only peer sends 4 MiB of blocks, then goes silent with its
    // connections open (a peer that died mid-NAR).
    let seed = serve(
        &data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "4194304")],
    );
    let mut web = Some(nginx(&web_dir, ""));
    let mut up = Some(nginx(&b.tmp.path().join("cache-zstd"), ""));
    let web_url = web.as_ref().unwrap().base.clone();
    let up_url = up.as_ref().unwrap().base.clone();
    let pk = std::fs::read_to_string(b.tmp.path().join("nix-pk")).unwrap();
    // A fresh substituter each time, so no block is already local.
    let substituter = |name: &str| -> Serve {
        let sub = serve(
            &b.tmp.path().join(name),
            &[
                "--trust",
                &id,
                "--peer",
                &seed.addr,
                "--web-seed",
                &web_url,
                "--upstream",
                &up_url,
                "--no-proxy",
                "--peer-deadline",
                "3",
            ],
            &[],
        );
        let base = sub.http.clone().unwrap();
        for path in &b.closure {
            let hash = StorePath::parse(path).unwrap().hash_part().to_owned();
            wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 30);
        }
        sub
    };
    let copy = |base: &str, to: &Path| -> (std::process::Output, bool) {
        let xdg = to.with_extension("xdg");
        nix_run_within(&copy_args(&b, base, to, &pk), &xdg, 300)
    };
    let metric = |base: &str, name: &str| -> u64 {
        let text = String::from_utf8(http(base, "GET", "/metrics", &[]).body).unwrap();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };

    // 1. The peer is silent mid-NAR: the web seed carries the rest.
    let sub = substituter("user-1");
    let base = sub.http.clone().unwrap();
    let store = b.tmp.path().join("store-web-seed");
    let (out, hung) = copy(&base, &store);
    assert!(
        !hung && out.status.success(),
        "nix copy with the peer silent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_nars(&b.closure, &store, "peer silent, web seed behind");
    let from_web = metric(&base, "hypernar_received_bytes_total{source=\"web_seed\"}");
    eprintln!("1. {from_web} bytes from the web seed");
    // The big path stores ~45 MB (40 MiB of random bytes, then numbers).
    assert!(
        from_web > 20 << 20,
        "only {from_web} bytes from the web seed"
    );
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        !log.contains("comes from upstream"),
        "upstream was needed: {log}"
    );
    drop(sub);

    // 2. The web seed is gone too: upstream carries it.
    web.take();
    let sub = substituter("user-2");
    let base = sub.http.clone().unwrap();
    let store = b.tmp.path().join("store-upstream");
    let (out, hung) = copy(&base, &store);
    assert!(
        !hung && out.status.success(),
        "nix copy with the peer silent and no web seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_nars(
        &b.closure,
        &store,
        "peer silent, web seed gone, upstream behind",
    );
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        log.contains("comes from upstream"),
        "no fallback taken: {log}"
    );
    drop(sub);

    // 3. Everything gone: Nix fails, cleanly and without hanging.
    up.take();
    let sub = substituter("user-3");
    let base = sub.http.clone().unwrap();
    let store = b.tmp.path().join("store-nothing");
    let t = std::time::Instant::now();
    let (out, hung) = copy(&base, &store);
    eprintln!(
        "3. nix copy with no source left: exit {:?} after {:?}",
        out.status.code(),
        t.elapsed()
    );
    assert!(!hung, "nix copy hung with every source gone");
    assert!(!out.status.success(), "nix copy succeeded with no source?");
}

#[test]
fn unsigned_or_wrongly_signed_upstream_paths_pass_through_and_nix_refuses_them_as_without_hypernar()
{
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd")]);
    let pk = std::fs::read_to_string(b.tmp.path().join("nix-pk")).unwrap();
    let xdg = b.tmp.path().join("xdg");
    // Each narinfo's `Sig:` lines, rewritten.
    type Edit = fn(&str) -> String;
    let cases: [(&str, Edit); 4] = [
        ("as signed", |sig| sig.to_owned()),
        ("unsigned", |_| String::new()),
        // One character of the signature changed: it no longer verifies.
        ("a bad signature", |sig| {
            let (name, b64) = sig.split_once(':').unwrap();
            let mut b64 = b64.as_bytes().to_vec();
            let i = b64.len() / 2;
            b64[i] = if b64[i] == b'A' { b'B' } else { b'A' };
            format!("{name}:{}", String::from_utf8(b64).unwrap())
        }),
        // Signed, but by a key this Nix does not trust.
        ("signed by another key", |sig| {
            let (_, b64) = sig.split_once(':').unwrap();
            format!("someone-else-1:{b64}")
        }),
    ];
    for (n, (label, edit)) in cases.into_iter().enumerate() {
        let cache = b.tmp.path().join(format!("upstream-{n}"));
        copy_dir(&b.tmp.path().join("cache-zstd"), &cache);
        for entry in std::fs::read_dir(&cache).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "narinfo") {
                let text = std::fs::read_to_string(&p).unwrap();
                let edited: String = text
                    .lines()
                    .filter_map(|l| match l.strip_prefix("Sig: ") {
                        Some(sig) => {
                            let sig = edit(sig);
                            (!sig.is_empty()).then(|| format!("Sig: {sig}\n"))
                        }
                        None => Some(format!("{l}\n")),
                    })
                    .collect();
                std::fs::write(&p, edited).unwrap();
            }
        }
        let upstream = nginx(&cache, "");
        // No trusted publisher: every path is pulled through.
        let sub = serve(
            &b.tmp.path().join(format!("user-{n}")),
            &["--upstream", &upstream.base],
            &[],
        );
        let base = sub.http.clone().unwrap();
        let direct_store = b.tmp.path().join(format!("store-direct-{n}"));
        let direct = nix_run(&copy_args(&b, &upstream.base, &direct_store, &pk), &xdg);
        let through_store = b.tmp.path().join(format!("store-through-{n}"));
        let through = nix_run(&copy_args(&b, &base, &through_store, &pk), &xdg);
        let direct_err = String::from_utf8_lossy(&direct.stderr);
        let through_err = String::from_utf8_lossy(&through.stderr);
        if n == 0 {
            assert!(direct.status.success(), "{label}, direct: {direct_err}");
            assert!(
                through.status.success(),
                "{label}, through hypernar: {through_err}"
            );
            assert_same_nars(&b.closure, &through_store, "pulled through");
            // They came through hypernar, not around it.
            let metrics = String::from_utf8(http(&base, "GET", "/metrics", &[]).body).unwrap();
            let proxied: u64 = metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix("hypernar_narinfo_requests_total{answer=\"proxied\"} ")
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(proxied >= 4, "{metrics}");
        } else {
            for (how, ok, err) in [
                ("directly", direct.status.success(), &direct_err),
                ("through hypernar", through.status.success(), &through_err),
            ] {
                assert!(
                    !ok && err.contains("lacks a valid signature"),
                    "{label}, {how}: Nix accepted it or failed otherwise: {err}"
                );
            }
        }
    }
}
