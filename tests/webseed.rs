//! Web seeds: `publish --web-seed DIR` served by Debian's nginx, read by
//! `serve --web-seed URL` when peers do not deliver; blocks verified like a
//! peer's, stored and re-served; a server that ignores `Range` and a copy
//! with a flipped byte are noticed and never reach Nix.

use hypernar_feed::format::narinfo::Compression;

use crate::util::*;

/// A 6 MiB path published with a web seed; nginx on the web seed (with
/// `nginx_extra` in its server block) and on the original cache; a seed
/// peer that answers 64 KiB of blocks per feed (the index and keys), then
/// no more.
struct Setup {
    w: World,
    _seed: Serve,
    seed_addr: String,
    web: Nginx,
    cache: Nginx,
    id: String,
}

fn setup(nginx_extra: &str) -> Setup {
    let w = World::new(&[raw("big", noise(6 << 20, 11), Compression::Zstd, &[])]);
    let dir = w.tmp.path().join("web-seed");
    std::fs::create_dir_all(&dir).unwrap();
    // The copy's server is up before the publish, so its URL goes in the index.
    let web = nginx(&dir, nginx_extra);
    let out = w.publish_ok(&["--all", "--web-seed", s(&dir), "--web-seed-url", &web.base]);
    assert!(out.contains("web seed recorded in the index"), "{out}");
    let id = identity(&w);
    let seed = serve(
        &w.data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "65536")],
    );
    let cache = nginx(&w.cache, "");
    Setup {
        seed_addr: seed.addr.clone(),
        _seed: seed,
        w,
        web,
        cache,
        id,
    }
}

/// A substituter that trusts the publisher, knows the silent seed peer,
/// names the web seed by hand, and falls back to the original cache after
/// 3 s.
fn serve_with_fallbacks(st: &Setup) -> Serve {
    serve(
        &st.w.tmp.path().join("user"),
        &[
            "--trust",
            &st.id,
            "--peer",
            &st.seed_addr,
            "--web-seed",
            &st.web.base,
            "--upstream",
            &st.cache.base,
            "--no-proxy",
            "--peer-deadline",
            "3",
        ],
        &[],
    )
}

#[test]
fn blocks_come_from_the_web_seed_when_peers_are_silent_and_are_reserved() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    let user = st.w.tmp.path().join("user");
    // No --web-seed: the publisher recorded it in its index.
    let sub = serve(
        &user,
        &[
            "--trust",
            &st.id,
            "--peer",
            &st.seed_addr,
            "--upstream",
            "none",
        ],
        &[],
    );
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &st.w, "big");
    assert_eq!(nar.status, 200);
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        log.contains("using a web seed recorded by a trusted publisher"),
        "{log}"
    );
    assert!(nar.body == st.w.path("big").nar, "the NAR differs");
    let from_web = metric(&base, "hypernar_received_bytes_total{source=\"web_seed\"}");
    eprintln!("{from_web} bytes from the web seed");
    assert!(
        from_web > 4 << 20,
        "only {from_web} bytes from the web seed"
    );

    // The blocks were stored: a node that only knows this one gets them.
    let other = st.w.tmp.path().join("other");
    let out = fetch(&other, &st.id, &[&sub.addr], &st.w.store_path("big"));
    assert_fetched(&out, &st.w, "big");
    drop(st.cache);
}

#[test]
fn a_web_seed_that_ignores_ranges_is_not_asked_again() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    // max_ranges 0: nginx answers every range request with the whole file.
    let st = setup("max_ranges 0;");
    let sub = serve_with_fallbacks(&st);
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &st.w, "big");
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        nar.body == st.w.path("big").nar,
        "the NAR differs ({} bytes): {log}",
        nar.body.len()
    );
    assert!(log.contains("ignores Range"), "{log}");
    assert_eq!(log.matches("ignores Range").count(), 1, "said once: {log}");
    assert!(log.contains("comes from upstream"), "{log}");
}

#[test]
fn a_web_seed_with_a_flipped_byte_is_dropped_and_nix_never_sees_it() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    // Flip one byte in the middle of every data file of the copy.
    for feed in std::fs::read_dir(st.w.tmp.path().join("web-seed/v1")).unwrap() {
        let data = feed.unwrap().path().join("data");
        let mut bytes = std::fs::read(&data).unwrap();
        if bytes.len() > 1 << 20 {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x10;
            std::fs::write(&data, bytes).unwrap();
        }
    }
    let sub = serve_with_fallbacks(&st);
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &st.w, "big");
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        nar.body == st.w.path("big").nar,
        "the NAR differs ({} bytes): {log}",
        nar.body.len()
    );
    assert!(
        metric(
            &base,
            "hypernar_verification_failures_total{source=\"web_seed\"}"
        ) >= 1
    );
    assert!(log.contains("did not verify"), "{log}");
}

#[test]
fn a_web_seed_whose_tree_claims_absurd_sizes_is_refused_without_harm() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    // Every parent node of the big data feed's tree (odd index) claims
    // u64::MAX - 1 bytes, every leaf (even index) 1 GiB, over any block's
    // size. (Which check trips depends on the block asked; each is
    // unit-tested in `webseed::tests`.)
    for feed in std::fs::read_dir(st.w.tmp.path().join("web-seed/v1")).unwrap() {
        let dir = feed.unwrap().path();
        if std::fs::metadata(dir.join("data")).unwrap().len() < 1 << 20 {
            continue;
        }
        let mut tree = std::fs::read(dir.join("tree")).unwrap();
        for (i, node) in tree.chunks_mut(40).enumerate() {
            let claim: u64 = if i % 2 == 1 { u64::MAX - 1 } else { 1 << 30 };
            node[..8].copy_from_slice(&claim.to_le_bytes());
        }
        std::fs::write(dir.join("tree"), tree).unwrap();
    }
    let sub = serve_with_fallbacks(&st);
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &st.w, "big");
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        nar.body == st.w.path("big").nar,
        "the NAR differs ({} bytes): {log}",
        nar.body.len()
    );
    assert!(log.contains("comes from upstream"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("its tree claims a"), "{log}");
    // Still serving.
    assert_eq!(http(&base, "GET", "/nix-cache-info", &[]).status, 200);
}

#[test]
fn a_node_with_no_peer_at_all_learns_its_publisher_and_fetches_from_the_web_seed() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    let user = st.w.tmp.path().join("user");
    // No --peer: the index, the keys and the blocks all come from the web seed.
    let sub = serve(
        &user,
        &[
            "--trust",
            &st.id,
            "--web-seed",
            &st.web.base,
            "--upstream",
            "none",
        ],
        &[],
    );
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &st.w, "big");
    assert!(nar.body == st.w.path("big").nar, "the NAR differs");
    assert_eq!(
        metric(&base, "hypernar_received_bytes_total{source=\"peer\"}"),
        0
    );
}

#[test]
fn hypernar_fetch_uses_the_web_seed_when_the_seed_peer_goes_silent() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    // The seed peer gives the index and keys, then nothing: the blocks can
    // only come from the web seed its publisher recorded.
    let out = fetch(
        &st.w.tmp.path().join("fetcher"),
        &st.id,
        &[&st.seed_addr],
        &st.w.store_path("big"),
    );
    assert_fetched(&out, &st.w, "big");
    // And from one named by hand, with no peer at all.
    let out = hypernar(&[
        "fetch",
        "--data",
        s(&st.w.tmp.path().join("fetcher2")),
        "--trust",
        &st.id,
        "--web-seed",
        &st.web.base,
        "--timeout",
        "20",
        &st.w.store_path("big"),
    ]);
    assert_fetched(&out, &st.w, "big");
}

#[test]
fn a_pinned_set_is_fetched_from_the_web_seed_when_the_seed_peer_goes_silent() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    let st = setup("");
    let lab = Lab::new(st.w.tmp.path());
    let set_id = lab.add(&st.id, &st.w.store_path("big"));
    let lab_seed = serve(&lab.data, &["--http", "none"], &[]);
    let user = serve(
        &st.w.tmp.path().join("user"),
        &[
            "--trust",
            &st.id,
            "--peer",
            &st.seed_addr,
            "--peer",
            &lab_seed.addr,
            "--pin",
            &set_id,
            "--upstream",
            "none",
        ],
        &[(
            "RUST_LOG",
            "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info",
        )],
    );
    wait_for_log(&user, "pinned path stored", 60);
    let base = user.http.clone().unwrap();
    let from_web = metric(&base, "hypernar_received_bytes_total{source=\"web_seed\"}");
    assert!(
        from_web > 4 << 20,
        "only {from_web} bytes from the web seed"
    );
    // Pinned means here: with the seed and the web seed gone, a node that
    // knows only this one gets the path.
    drop(st.web);
    let out = fetch(
        &st.w.tmp.path().join("other"),
        &st.id,
        &[&user.addr],
        &st.w.store_path("big"),
    );
    assert_fetched(&out, &st.w, "big");
}

/// A tiny HTTP server on 127.0.0.1 for the hostile-seed test: answers every
/// request with `answer(path)` and counts connections and request heads.
struct Responder {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn responder(answer: impl Fn(&str) -> String + Send + 'static) -> Responder {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, h) = (connections.clone(), heads.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            h.lock().unwrap().push(head);
            let _ = conn.write_all(answer(&path).as_bytes());
        }
    });
    Responder {
        port,
        connections,
        heads,
    }
}

/// A publisher records two hostile web seeds: one that redirects every
/// request to an internal admin URL, one whose URL carries credentials for
/// it. Followers follow no redirect, send no password, and still get the
/// path (from the upstream).
#[test]
fn a_recorded_web_seed_cannot_send_followers_elsewhere_or_make_them_send_credentials() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return;
    }
    use std::sync::atomic::Ordering;
    let admin =
        responder(|_| "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into());
    let to = admin.port;
    let redirector = responder(move |path| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{to}/admin{path}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    });
    let w = World::new(&[raw("big", noise(2 << 20, 12), Compression::Zstd, &[])]);
    let dir = w.tmp.path().join("web-seed");
    std::fs::create_dir_all(&dir).unwrap();
    let redirecting = format!("http://127.0.0.1:{}", redirector.port);
    let with_password = format!("http://admin:s3cret-pw@127.0.0.1:{to}");
    w.publish_ok(&[
        "--all",
        "--web-seed",
        s(&dir),
        "--web-seed-url",
        &redirecting,
        "--web-seed-url",
        &with_password,
    ]);
    let id = identity(&w);
    let seed = serve(
        &w.data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "65536")],
    );
    let cache = nginx(&w.cache, "");
    let sub = serve(
        &w.tmp.path().join("user"),
        &[
            "--trust",
            &id,
            "--peer",
            &seed.addr,
            "--upstream",
            &cache.base,
            "--no-proxy",
            "--peer-deadline",
            "3",
        ],
        &[],
    );
    let base = sub.http.clone().unwrap();
    let nar = nar_of(&base, &w, "big");
    assert_eq!(nar.status, 200);
    assert!(nar.body == w.path("big").nar, "the NAR differs");
    assert!(
        redirector.connections.load(Ordering::SeqCst) >= 1,
        "the redirecting web seed was never asked: the test shows nothing"
    );
    assert_eq!(
        admin.connections.load(Ordering::SeqCst),
        0,
        "the follower reached the admin URL: {:?}",
        admin.heads.lock().unwrap()
    );
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(log.contains("may not carry credentials"), "{log}");
    assert!(log.contains("redirects are not followed"), "{log}");
    assert!(!log.contains("s3cret-pw"), "{log}");
}
