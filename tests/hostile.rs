//! The hostile peer, played by the test: a Hypercore peer built on
//! hypercore-protocol that sends what an attacker would, next to an honest
//! seed of the same feed.

use std::net::TcpStream as StdTcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hypercore_protocol::schema::{Bitfield, Data, NoData, Range, Request, Synchronize};
use hypercore_protocol::{Channel, Event, Message};
use hypercore_schema::{DataBlock, RequestBlock, RequestUpgrade};
use hypernar_feed::format::identity::DATA_FEED_0;
use hypernar_feed::format::narinfo::Compression;
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

/// A published path `noise` of `len` bytes that do not compress, a serve
/// seeding it, the publisher's identity and its data feed's key.
fn seeded_noise(len: usize, seed: u64) -> (World, String, Serve, [u8; 32]) {
    let w = World::new(&[raw("noise", noise(len, seed), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(&w.data, &[], &[]);
    let key = w
        .secret()
        .feed_signing_key(DATA_FEED_0)
        .verifying_key()
        .to_bytes();
    (w, id, a, key)
}

fn demo_paths_small() -> Vec<hypernar_publisher::sample::SamplePath> {
    vec![raw("tiny", noise(1000, 9), Compression::Zstd, &[])]
}

fn request(id: u64, block: Option<RequestBlock>, upgrade: Option<RequestUpgrade>) -> Request {
    Request {
        id,
        fork: 0,
        block,
        hash: None,
        seek: None,
        upgrade,
        manifest: false,
        priority: 0,
    }
}

/// Everything an attacker can put in numbers and ids, sent on one channel:
/// it claims every block, announces at absurd offsets, asks for blocks and
/// upgrades past any feed, and answers requests (its own and, by guessing
/// sequential ids, the honest seed's) with NoData and empty or wrong Data.
async fn play_hostile(mut channel: Channel, answered: Arc<AtomicU64>) {
    let opening = vec![
        Message::Synchronize(Synchronize {
            fork: 0,
            length: 0,
            remote_length: 0,
            can_upgrade: true,
            uploading: true,
            downloading: true,
        }),
        Message::Range(Range {
            drop: false,
            start: 0,
            length: 1 << 20,
        }),
        Message::Range(Range {
            drop: false,
            start: u64::MAX - 1,
            length: 5,
        }),
        Message::Bitfield(Bitfield {
            start: u64::MAX - 40,
            bitfield: vec![u32::MAX; 4],
        }),
        Message::Bitfield(Bitfield {
            start: 1 << 40,
            bitfield: vec![u32::MAX; 1000],
        }),
        Message::Request(request(
            1,
            Some(RequestBlock {
                index: u64::MAX,
                nodes: u64::MAX,
            }),
            None,
        )),
        Message::Request(request(
            2,
            None,
            Some(RequestUpgrade {
                start: u64::MAX - 1,
                length: 5,
            }),
        )),
        Message::Request(request(
            3,
            Some(RequestBlock {
                index: 1 << 40,
                nodes: 0,
            }),
            None,
        )),
    ];
    for m in opening {
        if channel.send(m).await.is_err() {
            return;
        }
    }
    while let Some(msg) = channel.next().await {
        let Message::Request(req) = msg else { continue };
        let id = req.id;
        let index = req.block.as_ref().map_or(0, |b| b.index);
        answered.fetch_add(1, Ordering::Relaxed);
        let forged = [
            // Ids of requests sent to the honest seed, guessed.
            Message::NoData(NoData {
                request: id.wrapping_sub(1),
            }),
            Message::NoData(NoData { request: id + 1 }),
            // No block at all, then the wrong block.
            Message::Data(Data {
                request: id,
                fork: 0,
                hash: None,
                block: None,
                seek: None,
                upgrade: None,
            }),
            Message::Data(Data {
                request: id,
                fork: 0,
                hash: None,
                block: Some(DataBlock {
                    index: index ^ 1,
                    value: vec![0; 1000],
                    nodes: vec![],
                }),
                seek: None,
                upgrade: None,
            }),
        ];
        for m in forged {
            if channel.send(m).await.is_err() {
                return;
            }
        }
    }
}

/// Accepts connections on `listener` and plays the hostile peer on the
/// channel of feed `key`; `closed` is set when a connection it served ends.
async fn hostile_listener(
    listener: TcpListener,
    key: [u8; 32],
    answered: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (answered, closed) = (answered.clone(), closed.clone());
        tokio::spawn(async move {
            let (mut protocol, load) = hypernar_fetcher::wire::protocol(
                stream,
                false,
                &hypernar_fetcher::wire::noise_keypair().unwrap(),
            )
            .unwrap();
            loop {
                // The socket's end shows in the connection's Load (see wire.rs).
                let ev = tokio::select! {
                    ev = protocol.next() => ev,
                    _ = load.wait_ended() => None,
                };
                let Some(ev) = ev else { break };
                match ev {
                    Ok(Event::Handshake(_)) => {
                        let _ = protocol.open(key).await;
                    }
                    Ok(Event::Channel(ch)) if ch.key() == &key => {
                        tokio::spawn(play_hostile(ch, answered.clone()));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            closed.store(true, Ordering::Relaxed);
        });
    }
}

fn fetch_logged(
    data: &std::path::Path,
    id: &str,
    peers: &[&str],
    path: &str,
) -> (std::process::Output, Duration) {
    let mut cmd = Command::new(bin());
    cmd.args(["fetch", "--data", s(data), "--trust", id, "--timeout", "30"]);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    cmd.arg(path)
        .env("RUST_LOG", "hypernar_fetcher=info,hypernar_swarm=info")
        .stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd.output().unwrap();
    (out, t.elapsed())
}

#[test]
fn a_hostile_peer_is_dropped_and_the_honest_fetch_completes() {
    // 32 MiB: 128 blocks, so the fetcher asks the hostile peer for some.
    let (w, id, a, key) = seeded_noise(32 << 20, 7);
    let path = w.store_path("noise");

    // Without the attacker, for comparison.
    let (out, alone) = fetch_logged(&w.tmp.path().join("alone"), &id, &[&a.addr], &path);
    assert_fetched(&out, &w, "noise");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let h_addr = listener.local_addr().unwrap().to_string();
    let answered = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    rt.spawn(hostile_listener(
        listener,
        key,
        answered.clone(),
        closed.clone(),
    ));

    let (out, with) = fetch_logged(&w.tmp.path().join("b"), &id, &[&a.addr, &h_addr], &path);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "fetch alone {alone:?}, beside the hostile peer {with:?}; it asked the hostile peer {} times",
        answered.load(Ordering::Relaxed)
    );
    assert_fetched(&out, &w, "noise");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "the fetcher never asked the hostile peer: the test proves nothing"
    );
    assert!(
        log.contains("disconnecting a peer that sent bad data"),
        "the hostile peer was not dropped:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !closed.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        closed.load(Ordering::Relaxed),
        "the hostile connection is still open"
    );
    // About the time it takes alone: the attacker costs one bad answer and
    // at most one request timeout, not a stall.
    assert!(
        with < alone * 4 + Duration::from_secs(10),
        "beside the attacker the fetch took {with:?}, alone {alone:?}"
    );
    // The seed was not disturbed either.
    assert!(
        a.child.id() > 0
            && !std::fs::read_to_string(&a.log)
                .unwrap()
                .contains("panicked")
    );
}

/// Dials `addr`, opens feed `key` and sends `per_sec` tiny messages a
/// second for at most `secs`; returns how many it sent before the node
/// closed the connection, and whether it did.
async fn flood(addr: String, key: [u8; 32], per_sec: u64, secs: u64) -> (u64, bool) {
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut protocol, _) = hypernar_fetcher::wire::protocol(
        stream,
        true,
        &hypernar_fetcher::wire::noise_keypair().unwrap(),
    )
    .unwrap();
    protocol.open(key).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut flooder = None;
    loop {
        let ev = tokio::time::timeout(Duration::from_millis(50), protocol.next()).await;
        match ev {
            Ok(Some(Ok(Event::Channel(ch)))) if flooder.is_none() => {
                let sent = sent.clone();
                flooder = Some(tokio::spawn(async move {
                    let mut i = 0u64;
                    while start.elapsed() < Duration::from_secs(secs) {
                        for _ in 0..per_sec / 100 {
                            let m = Message::Range(Range {
                                drop: false,
                                start: i % 4096,
                                length: 1,
                            });
                            if ch.send(m).await.is_err() {
                                return;
                            }
                            i += 1;
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }));
            }
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(_))) => return (sent.load(Ordering::Relaxed), true),
            Err(_) => {}
        }
        if start.elapsed() > Duration::from_secs(secs + 5) {
            return (sent.load(Ordering::Relaxed), false);
        }
    }
}

#[test]
fn a_flooding_peer_is_dropped_and_memory_stays_bounded() {
    let (w, id, a, key) = seeded_noise(4 << 20, 3);
    // The honest fetch alone, for comparison.
    let path = w.store_path("noise");
    let (out, alone) = fetch_logged(&w.tmp.path().join("alone"), &id, &[&a.addr], &path);
    assert_fetched(&out, &w, "noise");
    let before = rss(a.child.id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 100 000 messages a second for up to 10 s, and the same fetch meanwhile.
    let flooding = rt.spawn(flood(a.addr.clone(), key, 100_000, 10));
    std::thread::sleep(Duration::from_millis(300));
    let (out, during) = fetch_logged(&w.tmp.path().join("b"), &id, &[&a.addr], &path);
    let (sent, dropped) = rt.block_on(flooding).unwrap();
    let after = rss(a.child.id());
    eprintln!(
        "flood: {sent} messages sent before the node closed the connection; RSS {} -> {} MiB; \
         the honest fetch took {during:?} during the flood, {alone:?} alone",
        before >> 20,
        after >> 20
    );
    assert_fetched(&out, &w, "noise");
    // The node reads a connection no faster than it can handle it, so on a
    // loaded machine the flooder may never get past the node's allowance
    // (a burst, then FLOOD_RATE a second): then it is not flooding as far
    // as the node can see, and is rightly kept.
    use hypernar_fetcher::pump::{FLOOD_BURST, FLOOD_RATE};
    let allowance = FLOOD_BURST + FLOOD_RATE * 10.0;
    if !dropped && (sent as f64) < allowance {
        eprintln!(
            "the flooder got only {sent} messages through in 10 s here (allowance {allowance}): \
             this machine is too loaded to play a flood; not counted"
        );
    } else {
        assert!(
            dropped,
            "the node kept a peer that sent {sent} messages in 10 s"
        );
        wait_for_log(&a, "messages a second; closing its connection", 10);
    }
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "the node grew by {} MiB under a message flood",
        after.saturating_sub(before) >> 20
    );
    assert!(
        during < alone * 4 + Duration::from_secs(10),
        "during the flood the fetch took {during:?}, alone {alone:?}"
    );
}

#[test]
fn idle_and_garbage_connections_are_capped_and_cost_bounded_memory() {
    let w = World::new(&[raw("noise", noise(2 << 20, 5), Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let a = serve(
        &w.data,
        &[
            "--max-connections",
            "1000",
            "--max-connections-per-ip",
            "1000",
        ],
        &[],
    );
    let before = rss(a.child.id());
    // 400 connections that never speak, and 50 that send noise as fast as
    // the node reads it, for 3 s.
    let idle: Vec<StdTcpStream> = (0..400)
        .filter_map(|_| StdTcpStream::connect(&a.addr).ok())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let noisy: Vec<_> = (0..50u64)
        .map(|k| {
            let (addr, stop) = (a.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let junk = noise(64 << 10, k + 11);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = StdTcpStream::connect(&addr) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    while c.write_all(&junk).is_ok() && !stop.load(Ordering::Relaxed) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut peak = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(a.child.id()));
    }
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = noisy.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!(
        "{} idle connections, 50 noisy ones ({writes} writes of 64 KiB): RSS {} -> peak {} MiB",
        idle.len(),
        before >> 20,
        peak >> 20
    );
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "idle and garbage connections grew the node by {} MiB",
        peak.saturating_sub(before) >> 20
    );
    // A connection that never completes the handshake is closed.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 1];
    let t = Instant::now();
    let n = std::io::Read::read(&mut first, &mut buf);
    assert!(
        matches!(n, Ok(0)) || n.is_err() && t.elapsed() < Duration::from_secs(19),
        "an idle connection was not closed: {n:?} after {:?}",
        t.elapsed()
    );
    let out = fetch(
        &w.tmp.path().join("b"),
        &id,
        &[&a.addr],
        &w.store_path("noise"),
    );
    assert_fetched(&out, &w, "noise");
}

#[test]
fn connections_over_the_per_ip_cap_are_closed_on_arrival() {
    let w = World::new(&demo_paths_small());
    let a = serve(&w.data, &["--max-connections-per-ip", "3"], &[]);
    let conns: Vec<StdTcpStream> = (0..5)
        .map(|_| StdTcpStream::connect(&a.addr).unwrap())
        .collect();
    let closed: Vec<bool> = conns
        .iter()
        .map(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 64];
            // The node speaks first only as the dialler: an open connection
            // stays silent, a refused one reads as closed.
            matches!(std::io::Read::read(&mut c, &mut buf), Ok(0))
        })
        .collect();
    assert_eq!(closed, [false, false, false, true, true]);
    drop(conns);
}

/// Forwards a TCP connection both ways until `mute` is set, then stops
/// reading what the node sends (so the node's writes stall), while still
/// forwarding what the attacker sends.
async fn muting_proxy(node: String, mute: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(&node).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
        });
        let mut buf = vec![0u8; 16 << 10];
        loop {
            if mute.load(Ordering::Relaxed) {
                // Never read the node again; hold the socket open.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            match tokio::time::timeout(Duration::from_millis(20), sr.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_) => {}
            }
        }
    });
    addr
}

#[test]
fn a_peer_that_stops_reading_and_keeps_sending_cannot_fill_our_memory() {
    // 16 MiB: 64 blocks, more than the 8 MiB a connection may leave unwritten.
    let (w, id, a, key) = seeded_noise(16 << 20, 17);
    let before = rss(a.child.id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mute = Arc::new(AtomicBool::new(false));
    let proxy = rt.block_on(muting_proxy(a.addr.clone(), mute.clone()));
    let sent = Arc::new(AtomicU64::new(0));
    let (mute2, sent2) = (mute.clone(), sent.clone());
    let attacker = rt.spawn(async move {
        let stream = TcpStream::connect(&proxy).await.unwrap();
        let (mut protocol, _) = hypernar_fetcher::wire::protocol(
            stream,
            true,
            &hypernar_fetcher::wire::noise_keypair().unwrap(),
        )
        .unwrap();
        protocol.open(key).await.unwrap();
        let started = Instant::now();
        let mut task = None;
        while started.elapsed() < Duration::from_secs(12) {
            let ev = tokio::time::timeout(Duration::from_millis(20), protocol.next()).await;
            if let Ok(Some(Ok(Event::Channel(ch)))) = ev {
                let (mute, sent) = (mute2.clone(), sent2.clone());
                task = Some(tokio::spawn(async move {
                    // Ask for every block (16 MiB of answers), stop reading,
                    // then send 10 000 bitfields of 4 KiB a second for 8 s.
                    for id in 1..=64u64 {
                        let block = Some(RequestBlock {
                            index: id,
                            nodes: 0,
                        });
                        let _ = ch.send(Message::Request(request(id, block, None))).await;
                    }
                    mute.store(true, Ordering::Relaxed);
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < Duration::from_secs(8) {
                        for _ in 0..100 {
                            let m = Message::Bitfield(Bitfield {
                                start: (n % 1024) * 32_000,
                                bitfield: vec![0x5555_5555; 1000],
                            });
                            if ch.send(m).await.is_err() {
                                return;
                            }
                            n += 1;
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }));
            }
        }
        drop(task);
    });
    let mut peak = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(a.child.id()));
    }
    rt.block_on(attacker).unwrap();
    eprintln!(
        "a peer that stopped reading sent {} bitfields of 4 KiB; the node's RSS went {} -> peak {} MiB",
        sent.load(Ordering::Relaxed),
        before >> 20,
        peak >> 20
    );
    assert!(
        peak.saturating_sub(before) < 96 << 20,
        "the node grew by {} MiB for a peer that sends and does not read",
        peak.saturating_sub(before) >> 20
    );
    // It still serves everyone else.
    let out = fetch(
        &w.tmp.path().join("b"),
        &id,
        &[&a.addr],
        &w.store_path("noise"),
    );
    assert_fetched(&out, &w, "noise");
}
