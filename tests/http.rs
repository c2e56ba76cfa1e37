//! The binary-cache HTTP API of `hypernar serve`, as a client sees it:
//! NAR bytes and ranges against the original NAR, what Nix relies on, and
//! clients that misbehave.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hypernar_publisher::sample::demo_paths;

use crate::util::*;

/// A publisher's node serving its own paths over HTTP, with 4 KiB segments
/// so a 1.2 MiB NAR crosses hundreds of segment boundaries.
fn small_segments() -> (World, Serve) {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all", "--segment-size", "4096"]);
    let id = identity(&w);
    let srv = serve(&w.data, &["--trust", &id, "--http-head-timeout", "2"], &[]);
    (w, srv)
}

fn nar_url(base: &str, w: &World, name: &str) -> String {
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let r = wait_for_status(base, &format!("/{hash}.narinfo"), 200, 20);
    let text = String::from_utf8(r.body).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_owned();
    format!("/{url}")
}

#[test]
fn nar_bytes_and_ranges_equal_the_original_across_segment_boundaries() {
    let (w, srv) = small_segments();
    let base = srv.http.clone().unwrap();
    let nar = &w.path("demo-dataset").nar;
    let len = nar.len() as u64;
    let url = nar_url(&base, &w, "demo-dataset");

    let whole = http(&base, "GET", &url, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-encoding"), None);
    assert_eq!(
        whole.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(
        whole.body == *nar,
        "the whole NAR differs from the original"
    );

    let head = http(&base, "HEAD", &url, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(head.body.is_empty());

    let seg = 4096u64;
    let mut starts = vec![0, 1, len - 1, len / 2];
    for k in [1, 2, 3, 100, len / seg - 1, len / seg] {
        starts.extend([k * seg - 1, k * seg, k * seg + 1]);
    }
    for &start in &starts {
        for span in [1u64, 2, seg - 1, seg, seg + 1, 3 * seg + 7, len] {
            let end = (start + span).min(len); // exclusive
            let r = http(
                &base,
                "GET",
                &url,
                &[("Range", &format!("bytes={start}-{}", end - 1))],
            );
            assert_eq!(r.status, 206, "bytes={start}-{}", end - 1);
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes {start}-{}/{len}", end - 1).as_str())
            );
            assert!(
                r.body == nar[start as usize..end as usize],
                "bytes={start}-{} differ from the original",
                end - 1
            );
        }
        // Open-ended, as Nix resumes.
        let r = http(&base, "GET", &url, &[("Range", &format!("bytes={start}-"))]);
        assert_eq!(r.status, 206);
        assert!(r.body == nar[start as usize..], "bytes={start}- differ");
    }
    let r = http(&base, "GET", &url, &[("Range", "bytes=-10")]);
    assert!(r.status == 206 && r.body == nar[nar.len() - 10..]);
    let r = http(&base, "GET", &url, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // Several ranges: the whole NAR, which RFC 9110 allows.
    let r = http(&base, "GET", &url, &[("Range", "bytes=0-1,5-9")]);
    assert!(r.status == 200 && r.body == *nar);
}

#[test]
fn what_nix_relies_on() {
    let (w, srv) = small_segments();
    let base = srv.http.clone().unwrap();
    let info = http(&base, "GET", "/nix-cache-info", &[]);
    assert_eq!(info.status, 200);
    let text = String::from_utf8(info.body).unwrap();
    for line in ["StoreDir: /nix/store", "WantMassQuery: 1", "Priority: 30"] {
        assert!(text.lines().any(|l| l == line), "{line} missing: {text}");
    }
    let name = "hello-2.12";
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let r = wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 20);
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("\nCompression: none\n"), "{text}");
    let upstream = std::fs::read_to_string(w.narinfo_file(name)).unwrap();
    let sigs = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("Sig: "))
            .map(str::to_owned)
            .collect()
    };
    assert!(!sigs(&upstream).is_empty());
    assert_eq!(sigs(&text), sigs(&upstream), "Sig lines verbatim");
    let head = http(&base, "HEAD", &format!("/{hash}.narinfo"), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(text.len().to_string().as_str())
    );

    // The path's listing, as Nix writes it.
    let ls = http(&base, "GET", &format!("/{hash}.ls"), &[]);
    assert_eq!(ls.status, 200);
    assert_eq!(ls.header("content-type"), Some("application/json"));
    assert!(ls.body.starts_with(br#"{"version":1,"root":{"type":"#));

    // Not here: 404 (Nix reads it as "try elsewhere").
    for p in [
        "/00000000000000000000000000000000.narinfo".to_owned(),
        "/00000000000000000000000000000000.ls".to_owned(),
        format!("/log/{hash}-x.drv"),
        "/realisations/sha256-x.doi".to_owned(),
        "/build-trace-v2/x".to_owned(),
        "/nar/00000000000000000000000000000000-1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar"
            .to_owned(),
    ] {
        assert_eq!(http(&base, "GET", &p, &[]).status, 404, "{p}");
    }
    // A NAR URL whose NarHash is not the path's (a stale URL): 404.
    let url = nar_url(&base, &w, name);
    let stale = format!(
        "{}1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar",
        &url[..url.len() - 56]
    );
    assert_eq!(http(&base, "GET", &stale, &[]).status, 404, "{stale}");
    // Bad requests: 4xx, never 5xx.
    for p in [
        "/../../etc/passwd",
        "/nar/..%2f..%2fetc%2fpasswd",
        "/ZZZZ.narinfo",
        "//nix-cache-info",
    ] {
        let r = http(&base, "GET", p, &[]);
        assert_eq!(r.status, 400, "{p}");
    }
    assert_eq!(http(&base, "POST", "/nix-cache-info", &[]).status, 405);
    assert_eq!(
        http(&base, "PUT", &format!("/{hash}.narinfo"), &[]).status,
        405
    );
    // A huge request head: refused (431), and the server goes on.
    let big = "x".repeat(64 << 10);
    let r = http(&base, "GET", "/nix-cache-info", &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert_eq!(http(&base, "GET", "/nix-cache-info", &[]).status, 200);
}

fn read_until_closed(conn: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut all = Vec::new();
    match conn.read_to_end(&mut all) {
        Ok(_) => Ok(all),
        Err(e) => Err(format!("still open after {within:?}: {e}")),
    }
}

#[test]
fn slow_and_idle_clients_are_closed_after_the_head_timeout() {
    let (_w, srv) = small_segments();
    let base = srv.http.clone().unwrap();
    let host = base.strip_prefix("http://").unwrap();
    // Slowloris: half a request head, then nothing.
    let mut slow = TcpStream::connect(host).unwrap();
    slow.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // Idle keep-alive after one request.
    let mut idle = TcpStream::connect(host).unwrap();
    idle.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let got = read_until_closed(&mut idle, Duration::from_secs(10)).unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let idle_closed = t.elapsed();
    read_until_closed(&mut slow, Duration::from_secs(10)).unwrap();
    let slow_closed = t.elapsed();
    eprintln!("idle closed after {idle_closed:?}, slow after {slow_closed:?} (timeout 2 s)");
    assert!(
        idle_closed >= Duration::from_millis(1500),
        "{idle_closed:?}"
    );
}

fn raise_fd_limit(to: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    #[allow(unsafe_code)]
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(to);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn ten_thousand_connections_are_capped_and_cost_bounded_memory() {
    raise_fd_limit(12_000);
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let srv = serve(
        &w.data,
        &[
            "--trust",
            &id,
            "--http-max-connections",
            "1000",
            "--http-head-timeout",
            "5",
        ],
        &[],
    );
    let base = srv.http.clone().unwrap();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    let url = nar_url(&base, &w, "demo-dataset");
    let before = rss(srv.child.id());
    let mut conns = Vec::new();
    let mut refused = 0;
    for i in 0..10_000 {
        match TcpStream::connect(&host) {
            Ok(mut c) => {
                // Every tenth starts a NAR and never reads it.
                if i % 10 == 0 {
                    let _ = c.write_all(
                        format!("GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
                    );
                } else {
                    let _ = c.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHo");
                }
                conns.push(c);
            }
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let peak = rss(srv.child.id());
    eprintln!(
        "10 000 connections ({refused} refused at connect): serve RSS {} -> {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(peak < 256 << 20, "RSS {} MiB", peak >> 20);
    // Once the slow ones time out, the API answers again.
    drop(conns);
    let r = wait_for_status(&base, "/nix-cache-info", 200, 20);
    assert_eq!(r.status, 200);
}

#[test]
fn the_api_listens_beyond_loopback_only_when_told_who_may_use_it() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let out = hypernar(&[
        "serve",
        "--data",
        s(&w.data),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--http-allow"), "{err}");
    assert!(out.stdout.is_empty(), "errors go to stderr");
    let out = hypernar(&["serve", "--data", s(&w.data), "--http", "nonsense"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http"));
    // With an allow list it starts.
    let srv = serve(
        &w.data,
        &["--http", "0.0.0.0:0", "--http-allow", "192.0.2.0/24"],
        &[],
    );
    let port = srv
        .http
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let r = http(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/nix-cache-info",
        &[],
    );
    assert_eq!(r.status, 200, "loopback is always allowed");
    // From this machine's own non-loopback address (not in the list): the
    // connection is closed without an answer.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let own = probe
        .connect("198.18.0.1:9")
        .and_then(|()| probe.local_addr())
        .map(|a| a.ip());
    match own {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
            let mut c = TcpStream::connect((ip, port.parse::<u16>().unwrap())).unwrap();
            let _ = c.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            let got = read_until_closed(&mut c, Duration::from_secs(5)).unwrap_or_default();
            assert!(
                got.is_empty(),
                "a client outside --http-allow got an answer from {ip}"
            );
        }
        _ => eprintln!("no non-loopback address here: the refusal is not checked"),
    }
}

#[test]
fn the_status_page_renders_in_a_browser_and_metrics_count() {
    if !has_chromium() {
        return skip_or_fail("chromium (Debian package chromium)");
    }
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let user = w.tmp.path().join("user");
    let srv = serve(&user, &["--trust", &id, "--peer", &seed.addr], &[]);
    let base = srv.http.clone().unwrap();
    let url = nar_url(&base, &w, "demo-dataset");
    let nar = http(&base, "GET", &url, &[]);
    assert!(nar.body == w.path("demo-dataset").nar);
    http(
        &base,
        "GET",
        "/00000000000000000000000000000000.narinfo",
        &[],
    );

    let metrics = String::from_utf8(http(&base, "GET", "/metrics", &[]).body).unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    let len = w.path("demo-dataset").nar.len() as u64;
    assert_eq!(value("hypernar_served_bytes_total"), len);
    assert!(value("hypernar_received_bytes_total{source=\"peer\"}") > 0);
    assert!(value("hypernar_narinfo_requests_total{answer=\"hit\"}") >= 1);
    // Misses: the unknown hash, and the polls before the index replicated.
    assert!(value("hypernar_narinfo_requests_total{answer=\"miss\"}") >= 1);
    assert!(
        value(&format!(
            "hypernar_peer_received_bytes_total{{peer=\"{}\"}}",
            seed.addr
        )) > 0
    );
    assert!(metrics.trim_end().ends_with("# EOF"));

    // The page as a browser renders it: the DOM after load, and a picture.
    let profile = w.tmp.path().join("chromium");
    let dom = chromium(&["--dump-dom", &format!("{base}/")], &profile);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h1>hypernar</h1>"), "{dom}");
    assert!(dom.contains(&seed.addr), "the peer is listed: {dom}");
    assert!(dom.contains(&id), "the publisher is listed: {dom}");
    assert!(dom.contains("sent to Nix"), "{dom}");
    let shot = w.tmp.path().join("status.png");
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1000",
            &format!("{base}/"),
        ],
        &profile,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // Kept for a person to look at.
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&keep, &png).unwrap();
    eprintln!("status page screenshot: {}", keep.display());
}

/// The `hypernar_requests_cancelled_total` counter of the API at `base`.
fn requests_cancelled(base: &str) -> u64 {
    let text = String::from_utf8(http(base, "GET", "/metrics", &[]).body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("hypernar_requests_cancelled_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no requests_cancelled counter in {text}"))
}

#[test]
fn a_client_that_disconnects_mid_nar_cancels_its_block_requests() {
    if !faults_built_in() {
        return;
    }
    let w = World::new(&[raw(
        "big",
        noise(8 << 20, 5),
        hypernar_feed::format::narinfo::Compression::Zstd,
        &[],
    )]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    // The seed answers 64 KiB of blocks per feed (the index and the keys),
    // then holds every request: they stay in flight.
    let seed = serve(
        &w.data,
        &["--http", "none"],
        &[("HYPERNAR_FAULT_SILENT_AFTER_BYTES", "65536")],
    );
    let user = w.tmp.path().join("user");
    let sub = serve(
        &user,
        &[
            "--trust",
            &id,
            "--peer",
            &seed.addr,
            "--peer-deadline",
            "60",
        ],
        &[],
    );
    let base = sub.http.clone().unwrap();
    let url = nar_url(&base, &w, "big");
    let mut conn = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(conn, "GET {url} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // While the client waits, its requests stay out.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(requests_cancelled(&base), 0, "cancelled while still wanted");
    drop(conn);
    let start = Instant::now();
    let mut cancelled = 0;
    while start.elapsed() < Duration::from_secs(5) && cancelled == 0 {
        std::thread::sleep(Duration::from_millis(100));
        cancelled = requests_cancelled(&base);
    }
    let log = std::fs::read_to_string(&sub.log).unwrap();
    assert!(
        cancelled > 0,
        "no request was cancelled within 5 s of the client leaving: {log}"
    );
    eprintln!(
        "{cancelled} requests cancelled {:?} after the client left",
        start.elapsed()
    );
}

/// A web page that rebinds a name of its own to 127.0.0.1 makes the browser
/// send `Host: attacker.example`; nothing it could read is answered, and no
/// answer carries CORS headers. Names the operator gives (`--http-host`)
/// are answered.
#[test]
fn a_rebinding_web_page_reads_nothing_and_operator_names_work() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let srv = serve(&w.data, &["--trust", &id, "--http-host", "cache.lan"], &[]);
    let base = srv.http.clone().unwrap();
    let hash = w
        .path("demo-dataset")
        .info
        .store_path
        .hash_part()
        .to_owned();
    let nar = nar_url(&base, &w, "demo-dataset");
    let paths = [
        "/nix-cache-info".to_owned(),
        format!("/{hash}.narinfo"),
        nar.clone(),
        format!("/{hash}.ls"),
        "/".to_owned(),
        "/metrics".to_owned(),
    ];
    let cors = |r: &HttpReply| {
        r.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
    };
    for path in &paths {
        for host in [
            "attacker.example",
            "attacker.example:7470",
            "127.0.0.1.nip.io",
        ] {
            for method in ["GET", "HEAD"] {
                let r = http(
                    &base,
                    method,
                    path,
                    &[("Host", host), ("Origin", "http://attacker.example")],
                );
                assert_eq!(r.status, 421, "{method} {path} as {host}");
                assert!(!cors(&r), "{path}: {:?}", r.headers);
                let body = String::from_utf8_lossy(&r.body);
                assert!(
                    !body.contains("StoreDir") && !body.contains(&hash),
                    "{path}: {body}"
                );
            }
        }
        // Absolute-form targets name the host too.
        let r = http(&base, "GET", &format!("http://attacker.example{path}"), &[]);
        assert_eq!(r.status, 421, "absolute-form {path}");
        for host in [
            "127.0.0.1",
            "localhost:7470",
            "[::1]:7470",
            "CACHE.lan:7470",
        ] {
            let r = http(&base, "GET", path, &[("Host", host)]);
            assert_eq!(r.status, 200, "{path} as {host}");
            assert!(!cors(&r), "{path}: {:?}", r.headers);
        }
    }
    let r = http(&base, "GET", &nar, &[("Host", "cache.lan")]);
    assert_eq!(sha256(&r.body), sha256(&w.path("demo-dataset").nar));
    // Said once in the log, with the flag that allows a name.
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert_eq!(log.matches("--http-host").count(), 1, "{log}");
}

/// A client that starts a NAR and then reads nothing is closed after
/// `--http-idle-timeout`, so stalled readers cannot hold every connection
/// slot (here both).
#[test]
fn a_client_that_stops_reading_is_closed_and_frees_its_slot() {
    use hypernar_feed::format::narinfo::Compression;
    let w = World::new(&[raw("big", noise(48 << 20, 5), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let srv = serve(
        &w.data,
        &[
            "--trust",
            &id,
            "--http-max-connections",
            "2",
            "--http-idle-timeout",
            "2",
        ],
        &[],
    );
    let base = srv.http.clone().unwrap();
    let url = nar_url(&base, &w, "big");
    let addr = base.trim_start_matches("http://").to_owned();
    // Whether a new client gets an answer (a refused one is closed at once).
    let answered = || {
        let mut probe = TcpStream::connect(&addr).unwrap();
        let _ = probe.write_all(
            b"GET /nix-cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        let got = read_until_closed(&mut probe, Duration::from_secs(5)).unwrap_or_default();
        got.starts_with(b"HTTP/1.1 200")
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            write!(c, "GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            c
        })
        .collect();
    // While they hold both slots, others are closed on arrival.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !answered(),
        "a slot was free already: the test shows nothing"
    );
    // Soon after the timeout, the slots are free again.
    let t = Instant::now();
    while !answered() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the stalled readers still hold the slots"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the stalled connections were cut: what they can still read ends
    // short of the NAR.
    for c in &mut stalled {
        let rest = read_until_closed(c, Duration::from_secs(10)).unwrap_or_default();
        assert!(rest.len() < 48 << 20, "the whole NAR came: {}", rest.len());
    }
}

/// A TCP relay to `to` that accepts at once but connects onward only after
/// `delay`: a peer that is slow to reach.
fn slow_relay(to: String, delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(a) = conn else { return };
            let to = to.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(b) = TcpStream::connect(&to) else {
                    return;
                };
                let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
                let (mut a, mut b) = (a, b);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a2, &mut b2);
                    let _ = b2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut b, &mut a);
                let _ = a.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A node asked for a path the moment it starts, its `--peer` not reached
/// yet, waits for the peer instead of answering "not here" (which Nix
/// would keep for an hour); a node with no peer to reach answers at once.
#[test]
fn a_fresh_node_waits_for_its_peers_before_it_says_not_here() {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let relay = slow_relay(seed.addr.clone(), Duration::from_secs(2));
    let user = serve(
        &w.tmp.path().join("user"),
        &["--trust", &id, "--peer", &relay],
        &[],
    );
    let api = user.http.clone().unwrap();
    let hash = w.path("hello-2.12").info.store_path.hash_part().to_owned();
    let t = Instant::now();
    let r = http(&api, "GET", &format!("/{hash}.narinfo"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // Alone (no --peer), a miss is answered at once.
    let alone = serve(&w.tmp.path().join("alone"), &["--trust", &id], &[]);
    let t = Instant::now();
    let r = http(
        &alone.http.clone().unwrap(),
        "GET",
        &format!("/{hash}.narinfo"),
        &[],
    );
    assert_eq!(r.status, 404);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
