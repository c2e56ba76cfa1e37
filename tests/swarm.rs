//! Replication between real `hypernar` processes on loopback.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use hypernar_feed::format::identity::{DATA_FEED_0, PUBLIC_KEYS_FEED};
use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{demo_paths, filler};

use crate::util::*;

#[test]
fn a_path_spreads_publisher_to_b_to_c_after_the_publisher_leaves() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let b_data = w.tmp.path().join("b");
    let c_data = w.tmp.path().join("c");
    let path = w.store_path("demo-dataset");

    let out = fetch(&b_data, &id, &[&a.addr], &path);
    assert_fetched(&out, &w, "demo-dataset");
    drop(a); // the publisher goes offline

    let b = serve(&b_data, &["--trust", &id], &[]);
    let out = fetch(&c_data, &id, &[&b.addr], &path);
    assert_fetched(&out, &w, "demo-dataset");

    // B never fetched hello's blocks: C cannot get them from B alone.
    let out = hypernar(&[
        "fetch",
        "--data",
        s(&c_data),
        "--trust",
        &id,
        "--peer",
        &b.addr,
        "--timeout",
        "3",
        &w.store_path("hello-2.12"),
    ]);
    let err = failed(&out);
    assert!(err.contains("did not arrive"), "{err}");
}

#[test]
fn a_corrupting_peer_is_banned_and_the_fetch_completes_from_an_honest_one() {
    if !faults_built_in() {
        return;
    }
    let (w, id, path, honest, bad) =
        honest_and_faulty(6 << 20, ("HYPERNAR_FAULT_CORRUPT_UPLOADS", "1"));
    let f_data = w.tmp.path().join("f");
    let mut cmd = Command::new(bin());
    cmd.args([
        "fetch",
        "--data",
        s(&f_data),
        "--trust",
        &id,
        "--timeout",
        "20",
    ])
    .args(["--peer", &bad.addr, "--peer", &honest.addr, &path])
    .env(
        "RUST_LOG",
        std::env::var("TEST_FETCH_LOG")
            .unwrap_or("hypernar_fetcher=warn,hypernar_swarm=warn".into()),
    );
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "honest peer log:\n{}",
            std::fs::read_to_string(&honest.log).unwrap_or_default()
        );
    }
    assert_fetched(&out, &w, "big");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("disconnecting a peer that sent bad data"),
        "corruption not detected: {log}"
    );
    assert!(
        log.contains(&bad.addr),
        "the bad peer was not the one banned: {log}"
    );
    let _ = std::fs::read_to_string(&honest.log);
}

#[test]
fn kill_9_mid_transfer_then_resume_gives_identical_data() {
    let w = World::new(&[raw("big", filler(24 << 20, 2), Compression::Zstd, &[])]);
    w.publish_ok(&["--all", "--segment-size", "65536"]);
    let id = identity(&w);
    let path = w.store_path("big");
    let a = serve(&w.data, &[], &[]);
    let b_data = w.tmp.path().join("b");
    // Every run logs the blocks it requests and the blocks it has verified
    // and stored; a block stored by an earlier run is never asked for again.
    let run = |log: &std::path::Path| {
        Command::new(bin())
            .args(["fetch", "--data", s(&b_data), "--trust", &id])
            .args(["--peer", &a.addr, "--timeout", "20", &path])
            .env("RUST_LOG", "hypernar_swarm::hub=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };
    let logs = w.tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut stored = BTreeSet::new();
    // Killed three times, each after it has stored 60 more blocks (of the
    // path's 384), so every run is cut mid-transfer.
    for round in 0..3 {
        let log = logs.join(format!("killed-{round}.log"));
        let mut child = run(&log);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("block stored").count() >= 60 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap();
        let requested = blocks_logged(&text, "block requested");
        let again: Vec<_> = requested.intersection(&stored).collect();
        assert!(again.is_empty(), "fetched again after kill -9: {again:?}");
        stored.extend(blocks_logged(&text, "block stored"));
    }
    assert!(!stored.is_empty(), "no block was stored before the kills");
    let log = logs.join("resumed.log");
    let out = run(&log).wait_with_output().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "resumed fetch: {text}");
    assert_eq!(sha256(&out.stdout), sha256(&w.path("big").nar));
    let requested = blocks_logged(&text, "block requested");
    assert!(!requested.is_empty(), "the kills left nothing to resume");
    let again: Vec<_> = requested.intersection(&stored).collect();
    assert!(again.is_empty(), "fetched again after kill -9: {again:?}");
    drop(a);
    // With every peer gone, fetch still completes from the blocks stored.
    assert_fetched(&fetch(&b_data, &id, &[&closed_addr()], &path), &w, "big");
    // Everything is local now: cat-nar reads it without any peer.
    w.assert_reads_back("big");
    let out = hypernar(&["cat-nar", "--data", s(&b_data), &path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&out.stdout), sha256(&w.path("big").nar));
}

#[test]
fn a_peer_that_asks_for_blocks_and_reads_none_cannot_fill_our_memory() {
    use futures::StreamExt;
    use hypercore_protocol::schema::Request;
    use hypercore_protocol::{Event, Message};
    use hypercore_schema::RequestBlock;

    // 8 MiB that does not compress: 32 blocks of 256 KiB.
    let w = World::new(&[raw(
        "noise",
        noise(8 << 20, 0x9e37_79b9_7f4a_7c15),
        Compression::Zstd,
        &[],
    )]);
    w.publish_ok(&["--all"]);
    let a = serve(&w.data, &[], &[]);
    let key = w
        .secret()
        .feed_signing_key(DATA_FEED_0)
        .verifying_key()
        .to_bytes();
    let before = rss(a.child.id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 4000 requests (1 GiB of answers) on one channel, then no more reading.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = a.addr.clone();
    let stop2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = rt.spawn(async move {
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut protocol, _) = hypernar_fetcher::wire::protocol(
            stream,
            true,
            &hypernar_fetcher::wire::noise_keypair().unwrap(),
        )
        .unwrap();
        protocol.open(key).await.unwrap();
        let mut tx = Some(tx);
        loop {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                // Hold the connection open and never read it again.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let ev = tokio::time::timeout(Duration::from_millis(20), protocol.next()).await;
            if let Ok(Some(Ok(Event::Channel(channel)))) = ev {
                if let Some(tx) = tx.take() {
                    tokio::spawn(async move {
                        for id in 1..=4000u64 {
                            let req = Request {
                                id,
                                fork: 0,
                                block: Some(RequestBlock {
                                    index: 1 + id % 32,
                                    nodes: 0,
                                }),
                                hash: None,
                                seek: None,
                                upgrade: None,
                                manifest: false,
                                priority: 0,
                            };
                            channel.send(Message::Request(req)).await.unwrap();
                        }
                        let _ = tx.send(channel);
                    });
                }
            }
        }
    });
    let _channel = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("requests sent");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // The node has read the requests; give it time to answer what it will.
    std::thread::sleep(Duration::from_secs(3));
    let after = rss(a.child.id());
    let grown = after.saturating_sub(before);
    assert!(
        grown < 160 << 20,
        "the node grew by {} MiB for a peer that reads nothing",
        grown >> 20
    );
    // It still serves everyone else.
    let id = identity(&w);
    let out = fetch(
        &w.tmp.path().join("b"),
        &id,
        &[&a.addr],
        &w.store_path("noise"),
    );
    assert_fetched(&out, &w, "noise");
    holder.abort();
}

/// (feed, block) pairs of the hub's debug lines with `message` in a log.
fn blocks_logged(log: &str, message: &str) -> BTreeSet<(String, u64)> {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .map(|v| v.trim_matches('"').to_owned())
    };
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            let feed = field(l, "feed=")?;
            let index = field(l, "index=")?.parse().ok()?;
            Some((feed, index))
        })
        .collect()
}

#[test]
fn garbage_and_oversized_frames_close_only_their_connection() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    // Garbage.
    let mut g = TcpStream::connect(&a.addr).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n not a noise handshake at all")
        .unwrap();
    // A frame header announcing 16 MiB.
    let mut big = TcpStream::connect(&a.addr).unwrap();
    big.write_all(&[0xff, 0xff, 0xff, 0, 1, 2]).unwrap();
    for mut c in [g, big] {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        // The server closes the connection (EOF) or resets it.
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
    // The node still serves others.
    let out = fetch(
        &w.tmp.path().join("b"),
        &id,
        &[&a.addr],
        &w.store_path("hello-2.12"),
    );
    assert_fetched(&out, &w, "hello-2.12");
}

#[test]
fn a_node_that_does_not_trust_the_publisher_gets_nothing() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let a = serve(&w.data, &[], &[]);
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    let other_id = ok(&["keygen", "--out", s(&key)])
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let b_data = w.tmp.path().join("b");
    let out = hypernar(&[
        "fetch",
        "--data",
        s(&b_data),
        "--trust",
        &other_id,
        "--peer",
        &a.addr,
        "--timeout",
        "3",
        &w.store_path("hello-2.12"),
    ]);
    let err = failed(&out);
    assert!(
        err.contains("is not in the index of any trusted publisher"),
        "{err}"
    );
    // Nothing of the publisher's reached B's store.
    let feeds: Vec<_> = std::fs::read_dir(b_data.join("feeds"))
        .unwrap()
        .flatten()
        .collect();
    let publisher_index = hex::encode(w.secret().identity().to_bytes());
    assert!(feeds
        .iter()
        .all(|f| f.file_name().to_string_lossy() != publisher_index));
}

/// A published path of `size` bytes held by two serving mirrors: an honest
/// one, and a copy running with the fault switch `fault` set.
fn honest_and_faulty(size: usize, fault: (&str, &str)) -> (World, String, String, Serve, Serve) {
    let w = World::new(&[raw(
        "big",
        filler(size, size as u64),
        Compression::Zstd,
        &[],
    )]);
    w.publish_ok(&["--all", "--segment-size", "65536"]);
    let id = identity(&w);
    let path = w.store_path("big");
    let seed = serve(&w.data, &[], &[]);
    let m_data = w.tmp.path().join("mirror");
    assert_fetched(&fetch(&m_data, &id, &[&seed.addr], &path), &w, "big");
    drop(seed);
    let faulty_data = w.tmp.path().join("faulty");
    copy_dir(&m_data, &faulty_data);
    let honest = serve(&m_data, &["--trust", &id], &[]);
    let faulty = serve(&faulty_data, &["--trust", &id], &[fault]);
    (w, id, path, honest, faulty)
}

/// A `--mirror` node peered with `a`, once it holds all of data/0.
fn mirror_of(w: &World, id: &str, a: &Serve) -> Serve {
    let b = serve(
        &w.tmp.path().join("b"),
        &["--trust", id, "--mirror", "--peer", &a.addr],
        &[],
    );
    wait_for_log(
        &b,
        &format!("feed complete feed=\"{}\"", feed_hex(w, DATA_FEED_0)),
        30,
    );
    b
}

fn feed_hex(w: &World, name: &str) -> String {
    hex::encode(w.secret().feed_signing_key(name).verifying_key().as_bytes())
}

#[test]
fn a_mirror_replicates_everything_and_serves_it_when_the_publisher_is_gone() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let b = mirror_of(&w, &id, &a);
    drop(a);
    for p in demo_paths() {
        let out = fetch(
            &w.tmp.path().join("c"),
            &id,
            &[&b.addr],
            &w.store_path(&p.name),
        );
        assert_fetched(&out, &w, &p.name);
    }
}

#[test]
fn a_blind_mirror_serves_blocks_it_cannot_read() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let token = hypernar_feed::format::identity::feed_key_text(
        &w.secret().feed_signing_key(DATA_FEED_0).verifying_key(),
    );
    let m_data = w.tmp.path().join("blind");
    let m = serve(&m_data, &["--feed", &token, "--peer", &a.addr], &[]);
    let k = serve(
        &w.tmp.path().join("k"),
        &["--trust", &id, "--peer", &a.addr],
        &[],
    );
    wait_for_log(
        &m,
        &format!("feed complete feed=\"{}\"", feed_hex(&w, DATA_FEED_0)),
        30,
    );
    wait_for_log(
        &k,
        &format!("feed complete feed=\"{}\"", feed_hex(&w, PUBLIC_KEYS_FEED)),
        30,
    );
    drop(a);
    // The reader gets index and keys from K, the data only from M.
    let path = w.store_path("demo-dataset");
    let out = fetch(&w.tmp.path().join("c"), &id, &[&k.addr, &m.addr], &path);
    assert_fetched(&out, &w, "demo-dataset");
    drop(m);
    // M holds only ciphertext: without the index and keys it can read nothing.
    let err = failed(&hypernar(&["cat-nar", "--data", s(&m_data), &path]));
    assert!(err.contains("is not published by any publisher"), "{err}");
    let feeds = ok(&["feeds", "--data", s(&m_data)]);
    assert_eq!(
        feeds.lines().count(),
        1,
        "the blind mirror holds one feed: {feeds}"
    );
    assert!(feeds.contains("data/0"), "{feeds}");
}

#[test]
fn publishing_while_serving_reaches_connected_peers_without_restart() {
    let w = World::new(&demo_paths());
    w.publish_ok(&[&w.store_path("libdemo-1.0")]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let b = mirror_of(&w, &id, &a);

    // The directory is held by the running serve: publish goes through it.
    let out = w.publish_ok(&["--all"]);
    assert!(
        out.contains("published 3 paths (1 already published, 0 failed)"),
        "{out}"
    );
    // B has it within seconds, without a restart: C gets the new path from B alone.
    let started = std::time::Instant::now();
    let out = hypernar(&[
        "fetch",
        "--data",
        s(&w.tmp.path().join("c")),
        "--trust",
        &id,
        "--peer",
        &b.addr,
        "--timeout",
        "10",
        &w.store_path("demo-dataset"),
    ]);
    assert_fetched(&out, &w, "demo-dataset");
    eprintln!(
        "new path fetched through B {:?} after publishing",
        started.elapsed()
    );

    // Publishing errors come back through the socket too.
    let out = failed(&w.publish(&["/nix/store/00000000000000000000000000000000-ghost"]));
    assert!(out.contains("not found"), "{out}");
    drop(a);
}

#[test]
fn requests_to_a_silent_peer_time_out_and_go_to_another() {
    if !faults_built_in() {
        return;
    }
    let (w, id, path, honest, silent) =
        honest_and_faulty(4 << 20, ("HYPERNAR_FAULT_SILENT_UPLOADS", "1"));
    let started = std::time::Instant::now();
    let out = Command::new(bin())
        .args([
            "fetch",
            "--data",
            s(&w.tmp.path().join("f")),
            "--trust",
            &id,
        ])
        .args([
            "--timeout",
            "20",
            "--peer",
            &silent.addr,
            "--peer",
            &honest.addr,
            &path,
        ])
        .env("RUST_LOG", "hypernar_swarm::hub=debug")
        .output()
        .unwrap();
    assert_fetched(&out, &w, "big");
    // Some requests went to the silent peer first and had to time out.
    let log = String::from_utf8_lossy(&out.stderr);
    let timed_out = log
        .lines()
        .filter(|l| l.contains("request timed out"))
        .count();
    assert!(
        timed_out > 0,
        "no request timed out: the silent peer was never asked"
    );
    eprintln!(
        "fetched around a silent peer in {:?}, {timed_out} requests timed out",
        started.elapsed()
    );
}

fn connections(base: &str) -> u64 {
    metric(base, "hypernar_peer_connections")
}

/// Two nodes that each dial the other (`--peer` on both sides, as with
/// `--peer` and mDNS together) keep one connection, the same one on both
/// sides; a node that names one peer by two addresses keeps one too. Two
/// connections made the seed send blocks twice.
#[test]
fn nodes_keep_one_connection_per_remote_node() {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    // B's port, chosen before B runs so A can name it (A dials until B is up).
    let pb = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let b_addr = format!("127.0.0.1:{pb}");
    let a = serve(&w.data, &["--trust", &id, "--peer", &b_addr], &[]);
    let a_port = a.addr.rsplit(':').next().unwrap().to_owned();
    let b = serve(
        &w.tmp.path().join("b"),
        &["--trust", &id, "--listen", &b_addr, "--peer", &a.addr],
        &[],
    );
    // C names A twice: by IP and by name.
    let localhost = format!("localhost:{a_port}");
    let c = serve(
        &w.tmp.path().join("c"),
        &["--trust", &id, "--peer", &a.addr, "--peer", &localhost],
        &[],
    );
    let (ah, bh, ch) = (
        a.http.clone().unwrap(),
        b.http.clone().unwrap(),
        c.http.clone().unwrap(),
    );
    // Both of A's dials to B and B's to A have been made by then (A's
    // backoff: 0.25, 0.5, 1, 2 s while B starts).
    let hash = w
        .path("demo-dataset")
        .info
        .store_path
        .hash_part()
        .to_owned();
    wait_for_status(&bh, &format!("/{hash}.narinfo"), 200, 20);
    wait_for_status(&ch, &format!("/{hash}.narinfo"), 200, 20);
    std::thread::sleep(Duration::from_secs(4));
    for _ in 0..10 {
        assert_eq!(
            connections(&bh),
            1,
            "B: {}",
            std::fs::read_to_string(&b.log).unwrap()
        );
        assert_eq!(
            connections(&ch),
            1,
            "C: {}",
            std::fs::read_to_string(&c.log).unwrap()
        );
        assert_eq!(
            connections(&ah),
            2,
            "A (to B and C): {}",
            std::fs::read_to_string(&a.log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // And the one kept carries the paths.
    for (base, name) in [(&bh, "demo-dataset"), (&ch, "hello-2.12")] {
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        let r = wait_for_status(base, &format!("/{hash}.narinfo"), 200, 20);
        let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
            .unwrap()
            .url;
        let nar = http(base, "GET", &format!("/{url}"), &[]);
        assert!(nar.body == w.path(name).nar, "{name} differs");
    }
}
