//! `--share`: what a node announces and serves of the blocks it fetched,
//! seen by a peer played by the test (hypercore-protocol, like any peer):
//! the Range and Bitfield messages it gets, and the answer to a request.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hypercore_protocol::schema::{Request, Synchronize};
use hypercore_protocol::{Event, Message};
use hypercore_schema::RequestBlock;
use hypernar_feed::format::identity::DATA_FEED_0;
use hypernar_feed::format::narinfo::Compression;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::{Catalog, FeedStore};
use tokio::net::TcpStream;

use crate::util::*;

/// What a peer sees of `addr`'s copy of feed `key`: the blocks it
/// announces, and for each of `ask`, whether it answers with the block.
struct Seen {
    announced: Vec<u64>,
    given: Vec<(u64, bool)>,
}

async fn observe(addr: &str, key: [u8; 32], ask: &[u64], at_least: Duration) -> Seen {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut protocol, _) = hypernar_fetcher::wire::protocol(
        stream,
        true,
        &hypernar_fetcher::wire::noise_keypair().unwrap(),
    )
    .unwrap();
    protocol.open(key).await.unwrap();
    let mut seen = Seen {
        announced: vec![],
        given: vec![],
    };
    // Announcements come first (a node sends what it has as the channel
    // opens), answers after: once every request is answered, all is seen.
    let until = Instant::now() + Duration::from_secs(20);
    let mut channel = None;
    while Instant::now() < until && (seen.given.len() < ask.len() || started.elapsed() < at_least) {
        let left = until.saturating_duration_since(Instant::now());
        let event = match &mut channel {
            None => match tokio::time::timeout(left, protocol.next()).await {
                Ok(Some(Ok(Event::Channel(ch)))) => {
                    ch.send(Message::Synchronize(Synchronize {
                        fork: 0,
                        length: 0,
                        remote_length: 0,
                        can_upgrade: true,
                        uploading: false,
                        downloading: true,
                    }))
                    .await
                    .unwrap();
                    for (i, &index) in ask.iter().enumerate() {
                        let req = Request {
                            id: i as u64 + 1,
                            fork: 0,
                            block: Some(RequestBlock { index, nodes: 0 }),
                            hash: None,
                            seek: None,
                            upgrade: None,
                            manifest: false,
                            priority: 0,
                        };
                        ch.send(Message::Request(req)).await.unwrap();
                    }
                    channel = Some(ch);
                    continue;
                }
                Ok(Some(Ok(_))) => continue,
                _ => break,
            },
            Some(ch) => {
                // Keep the protocol driven while reading the channel.
                tokio::select! {
                    m = ch.next() => m,
                    _ = protocol.next() => continue,
                    _ = tokio::time::sleep(left) => break,
                }
            }
        };
        match event {
            Some(Message::Range(r)) => seen
                .announced
                .extend(r.start..r.start + r.length.min(1 << 20)),
            Some(Message::Bitfield(b)) => {
                for (w, word) in b.bitfield.iter().enumerate() {
                    for bit in 0..32 {
                        if word & (1 << bit) != 0 {
                            seen.announced.push(b.start + (w * 32 + bit) as u64);
                        }
                    }
                }
            }
            Some(Message::Data(d)) => {
                let index = ask[(d.request - 1) as usize];
                seen.given.push((index, d.block.is_some()));
            }
            Some(Message::NoData(n)) => {
                let index = ask[(n.request - 1) as usize];
                seen.given.push((index, false));
            }
            Some(_) => {}
            None => break,
        }
    }
    seen.announced.sort_unstable();
    seen.announced.dedup();
    seen.given.sort_unstable();
    seen
}

/// Two paths of several blocks each in one data feed: their block ranges.
/// A path's name and its blocks in the data feed.
type Blocks = (String, std::ops::Range<u64>);

fn published() -> (World, String, [u8; 32], Vec<Blocks>) {
    let w = World::new(&[
        raw("alpha", noise(600_000, 1), Compression::Zstd, &[]),
        raw("beta", noise(600_000, 2), Compression::Zstd, &[]),
    ]);
    w.publish_ok(&["--all", "--segment-size", "65536"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let catalog = rt
        .block_on(Catalog::load(FeedStore::open(&w.data).unwrap()))
        .unwrap();
    let ranges = ["alpha", "beta"]
        .iter()
        .map(|n| {
            let sp = StorePath::parse(&w.store_path(n)).unwrap();
            let (_, rec) = catalog.find(&sp).unwrap();
            (
                n.to_string(),
                rec.first_block..rec.first_block + rec.block_count,
            )
        })
        .collect();
    let key = w
        .secret()
        .feed_signing_key(DATA_FEED_0)
        .verifying_key()
        .to_bytes();
    let id = identity(&w);
    (w, id, key, ranges)
}

fn fetch_both(api: &str, w: &World) {
    for name in ["alpha", "beta"] {
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        let r = wait_for_status(api, &format!("/{hash}.narinfo"), 200, 30);
        let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
            .unwrap()
            .url;
        let nar = http(api, "GET", &format!("/{url}"), &[]);
        assert_eq!(nar.status, 200, "{name}");
        assert!(nar.body == w.path(name).nar, "{name}: NAR differs");
    }
}

#[test]
fn a_share_none_node_fetches_while_its_announcements_carry_nothing() {
    let (w, id, key, ranges) = published();
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let args = |share: &'static str| {
        vec![
            "--trust",
            id.as_str(),
            "--peer",
            seed.addr.as_str(),
            "--share",
            share,
        ]
    };
    let quiet = serve(&w.tmp.path().join("quiet"), &args("none"), &[]);
    let open = serve(&w.tmp.path().join("open"), &args("all"), &[]);
    fetch_both(quiet.http.as_deref().unwrap(), &w);
    fetch_both(open.http.as_deref().unwrap(), &w);
    let page = http(quiet.http.as_deref().unwrap(), "GET", "/", &[]);
    assert!(String::from_utf8_lossy(&page.body).contains("--share none"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let ask: Vec<u64> = ranges.iter().map(|(_, r)| r.start).collect();
    // The default: every fetched block is announced and served.
    let seen = rt.block_on(observe(&open.addr, key, &ask, Duration::ZERO));
    for (name, r) in &ranges {
        assert!(
            r.clone().all(|b| seen.announced.contains(&b)),
            "{name}: {:?}",
            seen.announced
        );
    }
    assert!(seen.given.iter().all(|(_, gave)| *gave), "{:?}", seen.given);
    // --share none: the same blocks, not a word about them, not one given.
    let seen = rt.block_on(observe(&quiet.addr, key, &ask, Duration::ZERO));
    assert!(seen.announced.is_empty(), "announced {:?}", seen.announced);
    let mut none_given: Vec<(u64, bool)> = ask.iter().map(|&b| (b, false)).collect();
    none_given.sort_unstable();
    assert_eq!(seen.given, none_given);
}

/// Every block of `shared` was announced and the first given; none of
/// `kept` was announced, and its first was refused.
fn assert_shares_only(seen: &Seen, shared: &std::ops::Range<u64>, kept: &std::ops::Range<u64>) {
    assert!(
        shared.clone().all(|b| seen.announced.contains(&b)),
        "{:?}",
        seen.announced
    );
    assert!(
        !kept.clone().any(|b| seen.announced.contains(&b)),
        "{:?}",
        seen.announced
    );
    let mut want = vec![(shared.start, true), (kept.start, false)];
    want.sort_unstable();
    assert_eq!(seen.given, want);
}

/// A `--share sets` node following a set that vouches for `first`, with
/// the publisher's seed and the set's seed as its peers.
struct SetsNode {
    lab: Lab,
    f: Follower,
}

fn sets_node(w: &World, id: &str, first: &str) -> SetsNode {
    let lab = Lab::new(w.tmp.path());
    let set_id = lab.add(id, &w.store_path(first));
    let f = lab.follower(w, id, &["--set", &set_id, "--share", "sets"]);
    SetsNode { lab, f }
}

#[test]
fn share_sets_announces_and_serves_only_what_followed_sets_cover() {
    let (w, id, key, ranges) = published();
    let sn = sets_node(&w, &id, "alpha");
    let node = &sn.f.node;
    // It fetches both (it follows the set, it does not require it)...
    let api = node.http.clone().unwrap();
    fetch_both(&api, &w);
    // (once the set's entry is here: the status page counts it)
    let until = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&http(&api, "GET", "/", &[]).body)
        .contains("<td>followed</td><td class=\"n\">1</td>")
    {
        assert!(Instant::now() < until, "the set never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ask: Vec<u64> = ranges.iter().map(|(_, r)| r.start).collect();
    let seen = rt.block_on(observe(&node.addr, key, &ask, Duration::ZERO));
    // ...and shares only alpha, which the set covers.
    let (alpha, beta) = (&ranges[0].1, &ranges[1].1);
    assert_shares_only(&seen, alpha, beta);
}

#[test]
fn share_sets_tells_connected_peers_when_a_set_covers_more() {
    let (w, id, key, ranges) = published();
    // The set starts out vouching for beta only.
    let sn = sets_node(&w, &id, "beta");
    let (lab, node) = (&sn.lab, &sn.f.node);
    fetch_both(node.http.as_deref().unwrap(), &w);
    // A peer connects and stays; alpha is added to the set meanwhile.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = node.addr.clone();
    let watching = rt.spawn(async move { observe(&addr, key, &[], Duration::from_secs(6)).await });
    std::thread::sleep(Duration::from_secs(1));
    lab.add(&id, &w.store_path("alpha"));
    let seen = rt.block_on(watching).unwrap();
    let (alpha, beta) = (&ranges[0].1, &ranges[1].1);
    assert!(
        beta.clone().all(|b| seen.announced.contains(&b)),
        "{:?}",
        seen.announced
    );
    assert!(
        alpha.clone().all(|b| seen.announced.contains(&b)),
        "alpha was never announced to the connected peer: {:?}",
        seen.announced
    );
}

/// `--share-exclude GLOB`: of two fetched paths, the one whose name
/// matches is neither announced nor served to a peer; the other is, as
/// with `--share all`. `status` says so.
#[test]
fn share_exclude_keeps_paths_whose_names_match_from_peers() {
    let (w, id, key, ranges) = published();
    let seed = serve(&w.data, &["--http", "none"], &[]);
    let data = w.tmp.path().join("n");
    let node = serve(
        &data,
        &[
            "--trust",
            &id,
            "--peer",
            &seed.addr,
            "--share-exclude",
            "be*",
        ],
        &[],
    );
    fetch_both(node.http.as_deref().unwrap(), &w);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ask: Vec<u64> = ranges.iter().map(|(_, r)| r.start).collect();
    let (alpha, beta) = (&ranges[0].1, &ranges[1].1);
    // What may be shared is recomputed as records arrive: look until alpha
    // is announced.
    let until = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = rt.block_on(observe(&node.addr, key, &ask, Duration::ZERO));
        if alpha.clone().all(|b| seen.announced.contains(&b)) || Instant::now() > until {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_shares_only(&seen, alpha, beta);
    let status = ok(&["status", "--data", s(&data)]);
    assert!(
        status.contains("sharing: all except names matching be*"),
        "{status}"
    );
}
