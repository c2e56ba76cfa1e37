//! Upstream caches behind `serve --http`, served by Debian's nginx as a
//! CDN would: pull-through of paths no trusted publisher lists, fallback
//! for listed paths the swarm cannot deliver, and upstream bytes that do
//! not match the signed NarHash never reaching a client as a clean
//! transfer.

use std::time::Instant;

use hypernar_feed::format::narinfo::{Compression, NarInfo};
use hypernar_publisher::sample::demo_paths;

use crate::util::*;

fn narinfo_url(r: &HttpReply) -> String {
    let info = NarInfo::parse(&r.body).unwrap();
    format!("/{}", info.url)
}

#[test]
fn paths_no_publisher_lists_are_pulled_through_verbatim_and_checked() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    // The sample cache has xz, zstd and uncompressed NARs.
    let w = World::new(&demo_paths());
    let up = nginx(&w.cache, "");
    let data = w.tmp.path().join("user");
    let srv = serve(&data, &["--upstream", &up.base], &[]);
    let base = srv.http.clone().unwrap();
    for sp in &w.written {
        let name = sp.info.store_path.name();
        let hash = sp.info.store_path.hash_part();
        let r = http(&base, "GET", &format!("/{hash}.narinfo"), &[]);
        assert_eq!(r.status, 200, "{name}");
        let upstream = std::fs::read_to_string(w.narinfo_file(name)).unwrap();
        let served = String::from_utf8(r.body.clone()).unwrap();
        // Verbatim but for where the NAR is.
        let strip = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| {
                    !["URL:", "Compression:", "FileHash:", "FileSize:"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(strip(&served), strip(&upstream), "{name}");
        assert!(served.contains("\nCompression: none\n"));
        let url = narinfo_url(&r);
        let nar = http(&base, "GET", &url, &[]);
        assert_eq!(nar.status, 200);
        assert!(nar.body == sp.nar, "{name}: pulled-through NAR differs");
        // A resumed transfer.
        let from = sp.nar.len() / 3;
        let part = http(&base, "GET", &url, &[("Range", &format!("bytes={from}-"))]);
        assert_eq!(part.status, 206);
        assert!(part.body == sp.nar[from..], "{name}: range differs");
    }
    let r = http(
        &base,
        "GET",
        "/00000000000000000000000000000000.narinfo",
        &[],
    );
    assert_eq!(r.status, 404, "a path upstream does not have");

    // --no-proxy: not here, without asking upstream.
    let data = w.tmp.path().join("user2");
    let srv = serve(&data, &["--upstream", &up.base, "--no-proxy"], &[]);
    let hash = w.written[0].info.store_path.hash_part().to_owned();
    let r = http(
        srv.http.as_ref().unwrap(),
        "GET",
        &format!("/{hash}.narinfo"),
        &[],
    );
    assert_eq!(r.status, 404);

    // An unreachable upstream: a fast 404, never a 5xx (Nix would abort).
    let data = w.tmp.path().join("user3");
    let dead = format!("http://{}", closed_addr());
    let srv = serve(&data, &["--upstream", &dead], &[]);
    let t = Instant::now();
    let r = http(
        srv.http.as_ref().unwrap(),
        "GET",
        &format!("/{hash}.narinfo"),
        &[],
    );
    eprintln!(
        "narinfo with the upstream unreachable: {} in {:?}",
        r.status,
        t.elapsed()
    );
    assert_eq!(r.status, 404);
}

#[test]
fn corrupted_upstream_bytes_never_make_a_clean_transfer() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&[
        raw("plain", noise(3 << 20, 5), Compression::None, &[]),
        raw("packed", noise(3 << 20, 6), Compression::Zstd, &[]),
    ]);
    // One flipped byte in the middle of each NAR file upstream.
    for name in ["plain", "packed"] {
        let f = w.nar_file(name);
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&f, bytes).unwrap();
    }
    let up = nginx(&w.cache, "");
    let data = w.tmp.path().join("user");
    let srv = serve(&data, &["--upstream", &up.base], &[]);
    let base = srv.http.clone().unwrap();
    for name in ["plain", "packed"] {
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        let r = http(&base, "GET", &format!("/{hash}.narinfo"), &[]);
        assert_eq!(r.status, 200);
        let url = narinfo_url(&r);
        let nar = http(&base, "GET", &url, &[]);
        let len: usize = nar.header("content-length").unwrap().parse().unwrap();
        eprintln!("{name}: {} of {len} bytes before the cut", nar.body.len());
        assert!(
            nar.body.len() < len,
            "{name}: a corrupted NAR went out as a complete transfer"
        );
        assert!(nar.body.len() < w.path(name).nar.len());
    }
}

#[test]
fn a_listed_path_continues_from_upstream_when_its_only_peer_goes_silent() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    if !faults_built_in() {
        return skip_or_fail("a build with --features fault-injection");
    }
    let w = World::new(&[raw("big", noise(24 << 20, 7), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    // The only peer answers 2 MiB of blocks per feed, then nothing, and
    // keeps its connections open: a peer that died without closing.
    let seed = serve(
        &w.data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "2097152")],
    );
    let up = nginx(&w.cache, "");
    let data = w.tmp.path().join("user");
    let srv = serve(
        &data,
        &[
            "--trust",
            &id,
            "--peer",
            &seed.addr,
            "--upstream",
            &up.base,
            "--peer-deadline",
            "2",
            // So a 200 narinfo means the index has replicated (with
            // pull-through, upstream would answer it before that).
            "--no-proxy",
        ],
        &[],
    );
    let base = srv.http.clone().unwrap();
    let hash = w.path("big").info.store_path.hash_part().to_owned();
    let r = wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 20);
    let url = narinfo_url(&r);
    let t = Instant::now();
    let nar = http(&base, "GET", &url, &[]);
    eprintln!(
        "24 MiB NAR with the peer silent after 2 MiB: {:?}",
        t.elapsed()
    );
    assert_eq!(nar.status, 200);
    assert!(
        nar.body == w.path("big").nar,
        "the NAR differs from the original"
    );
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert!(
        log.contains("comes from upstream"),
        "no fallback in the log: {log}"
    );
}

fn upstream_bytes(base: &str) -> u64 {
    metric(base, "hypernar_received_bytes_total{source=\"upstream\"}")
}

/// A pulled-through NAR costs what was asked: `Range: bytes=0-0` reads a
/// chunk of the upstream, not the whole NAR, and a client that leaves
/// mid-transfer stops the upstream download. (Before: the whole NAR either
/// way, downloaded to the end after the client had gone, on a blocking
/// thread; ~512 such requests stalled every other response.)
#[test]
fn a_ranged_or_abandoned_pull_through_costs_only_what_was_asked() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    use std::io::{Read, Write};
    const LEN: usize = 24 << 20;
    let w = World::new(&[raw("big", noise(LEN, 21), Compression::None, &[])]);
    // 4 MB/s per connection: a whole download takes 6 s.
    let up = nginx(&w.cache, "limit_rate 4m;");
    let srv = serve(&w.tmp.path().join("user"), &["--upstream", &up.base], &[]);
    let base = srv.http.clone().unwrap();
    let hash = w.path("big").info.store_path.hash_part().to_owned();
    let r = http(&base, "GET", &format!("/{hash}.narinfo"), &[]);
    assert_eq!(r.status, 200);
    let url = narinfo_url(&r);

    let part = http(&base, "GET", &url, &[("Range", "bytes=0-0")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, w.path("big").nar[..1]);
    let part = http(&base, "GET", &url, &[("Range", "bytes=1000-1999")]);
    assert_eq!(part.body, w.path("big").nar[1000..2000]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after_ranges = upstream_bytes(&base);
    assert!(
        after_ranges < LEN as u64 / 4,
        "two small ranges read {after_ranges} bytes of a {LEN}-byte NAR"
    );

    // A client that reads a little of the whole NAR and leaves.
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut some = [0u8; 4096];
    c.read_exact(&mut some).unwrap();
    drop(c);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let left = upstream_bytes(&base);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let later = upstream_bytes(&base);
    assert!(
        later - left < 1 << 20,
        "the upstream download went on after the client left: {left} then {later} bytes"
    );
    assert!(
        later < LEN as u64,
        "{later} bytes: the whole NAR was downloaded"
    );
}

#[test]
fn logs_and_realisations_pass_through_from_the_first_upstream_that_has_them() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&demo_paths());
    // Two upstreams: the first has one log, the second the other, a
    // realisation (its id has a colon and a bang, as Nix's do) and a log
    // over the limit.
    let one = w.tmp.path().join("one");
    let two = w.tmp.path().join("two");
    for d in [&one, &two] {
        std::fs::create_dir_all(d.join("log")).unwrap();
        std::fs::create_dir_all(d.join("realisations")).unwrap();
    }
    let drv = "0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-hello-2.12.drv";
    let other = "1c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-world-1.0.drv";
    let big = "2c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-huge-1.0.drv";
    std::fs::write(one.join("log").join(drv), "building hello\n").unwrap();
    std::fs::write(two.join("log").join(drv), "the second's log\n").unwrap();
    std::fs::write(two.join("log").join(other), "building world\n").unwrap();
    std::fs::write(two.join("log").join(big), vec![b'x'; 17 << 20]).unwrap();
    let id = "sha256:1mh0dq8vx3j0fa7y8v6bq4f5gq9bgvx5i3m6s0p8rqqbi4lldqzc!out";
    let realisation = r#"{"id":"sha256:1mh0dq8vx3j0fa7y8v6bq4f5gq9bgvx5i3m6s0p8rqqbi4lldqzc!out","outPath":"0c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-hello-2.12","signatures":[],"dependentRealisations":{}}"#;
    std::fs::write(
        two.join("realisations").join(format!("{id}.doi")),
        realisation,
    )
    .unwrap();
    let (up1, up2) = (nginx(&one, ""), nginx(&two, ""));
    let srv = serve(
        &w.tmp.path().join("user"),
        &["--upstream", &up1.base, "--upstream", &up2.base],
        &[],
    );
    let base = srv.http.clone().unwrap();

    let r = http(&base, "GET", &format!("/log/{drv}"), &[]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"building hello\n"[..])
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = http(&base, "GET", &format!("/log/{other}"), &[]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"building world\n"[..])
    );
    let r = http(&base, "GET", &format!("/realisations/{id}.doi"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, realisation.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Nobody has it: not here. Over 16 MiB: refused, not held.
    let missing = "3c6kzph7l0dcbyxf0q1vn8ak8g2x2b9b-none-1.0.drv";
    assert_eq!(
        http(&base, "GET", &format!("/log/{missing}"), &[]).status,
        404
    );
    assert_eq!(http(&base, "GET", &format!("/log/{big}"), &[]).status, 502);
    // A colon is a realisation's only.
    assert_eq!(http(&base, "GET", "/log/a:b.drv", &[]).status, 400);
}
