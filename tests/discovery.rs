//! Zero-configuration peers.
//!
//! On a LAN (mDNS): two nodes in separate network namespaces joined by a
//! bridge (test hosts in 198.18.0.0/15), neither told of the other, the
//! second fetching a path the first seeds. Needs root and iproute2
//! (`ip netns`).
//!
//! On the Mainline DHT: a local testnet of real DHT nodes (the `mainline`
//! crate's `Testnet`, on loopback), two nodes meeting through it, and the
//! peer remembered across a restart when the DHT is gone.

use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn a_node_with_no_peer_finds_its_neighbour_on_the_lan_and_fetches_from_it() {
    let Some(lan) = is_root().then(|| Lan::new(7)).flatten() else {
        return skip_or_fail("root and iproute2 network namespaces (ip netns)");
    };
    let (w, id, name, hash) = demo_published();
    let seed = NsServe::start(&lan.ns("a"), &w.data, &["--http", "none"]);
    let listen = format!("{}:7470", lan.ip("b"));
    let api = format!("http://{listen}");
    let api = api.as_str();
    let net = format!("198.18.{}.0/24", lan.net);
    let user_args = |mdns: bool| {
        let mut a = vec![
            "--trust",
            id.as_str(),
            "--http",
            listen.as_str(),
            "--http-allow",
            net.as_str(),
        ];
        if !mdns {
            a.push("--no-mdns");
        }
        a
    };

    // Told of no peer and without mDNS, it never hears of the path.
    let user = w.tmp.path().join("user-data");
    let alone = NsServe::start(&lan.ns("b"), &user, &user_args(false));
    wait_for_port(&listen, &alone);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        http(api, "GET", &format!("/{hash}.narinfo"), &[]).status,
        404,
        "{}",
        alone.log()
    );
    drop(alone);

    // With mDNS (the default), it finds the seed and fetches the path.
    let t = Instant::now();
    let user = w.tmp.path().join("user-data-2");
    let node = NsServe::start(&lan.ns("b"), &user, &user_args(true));
    wait_for_port(&listen, &node);
    let r = wait_for_status(api, &format!("/{hash}.narinfo"), 200, 30);
    assert_eq!(r.status, 200, "{}\n--- seed:\n{}", node.log(), seed.log());
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let nar = http(api, "GET", &format!("/{url}"), &[]);
    assert_eq!(nar.status, 200);
    assert!(nar.body == w.path(name).nar, "the NAR differs");
    let log = format!("{}{}", node.log(), seed.log());
    assert!(log.contains("found on the local network"), "{log}");
    eprintln!("found and fetched over the LAN in {:.1?}", t.elapsed());

    // What they announce, seen from this namespace (on the bridge):
    // presence and port only, under a random name.
    let mdns = mdns_sd::ServiceDaemon::new().unwrap();
    let found = mdns.browse(hypernar_fetcher::mdns::SERVICE).unwrap();
    // Generous: the flood test may be filling another bridge meanwhile
    // (seen once to miss an announcement within 10 s under load).
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 && Instant::now() < until {
        if let Ok(mdns_sd::ServiceEvent::ServiceResolved(r)) =
            found.recv_timeout(Duration::from_millis(200))
        {
            let ips: Vec<String> = r.addresses.iter().map(|a| a.to_string()).collect();
            if let Some(ip) = ips
                .iter()
                .find(|a| a.starts_with(&format!("198.18.{}.", lan.net)))
            {
                assert_eq!(r.port, 7469);
                assert!(r.txt_properties.iter().next().is_none(), "TXT: {r:?}");
                let name = r.fullname.trim_end_matches(hypernar_fetcher::mdns::SERVICE);
                assert!(
                    name.len() == 17 && name[..16].bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}",
                    r.fullname
                );
                seen.insert(ip.clone(), r.host.clone());
            }
        }
    }
    let _ = mdns.shutdown();
    assert_eq!(
        seen.len(),
        2,
        "both nodes announce themselves: {seen:?}\n--- seed:\n{}\n--- user:\n{}",
        seed.log(),
        node.log()
    );
}

/// The demo paths, published; their publisher's identity, and the path
/// the LAN tests fetch with its hash part.
fn demo_published() -> (World, String, &'static str, String) {
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let name = "hello-2.12";
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    (w, id, name, hash)
}

#[test]
fn a_host_flooding_the_lan_with_announcements_gets_a_few_dials_and_neighbours_still_meet() {
    use hypernar_fetcher::mdns::{MAX_PER_IP, SERVICE};
    let Some(lan) = is_root().then(|| Lan::new(8)).flatten() else {
        return skip_or_fail("root and iproute2 network namespaces (ip netns)");
    };
    let (w, id, name, hash) = demo_published();

    // The hostile host (this namespace, on the bridge only): 300 hypernar
    // services under well-formed names at ports where nothing listens,
    // and 50 under names that are not hypernar's.
    let flood = mdns_sd::ServiceDaemon::new().unwrap();
    flood.disable_interface(mdns_sd::IfKind::All).unwrap();
    flood
        .enable_interface(mdns_sd::IfKind::Name(lan.bridge()))
        .unwrap();
    let no_properties: &[(&str, &str)] = &[];
    for i in 0..350u16 {
        let instance = if i < 300 {
            // Larger than any id a node draws but all-f, so it dials them.
            format!("ffffffff{i:08x}")
        } else {
            format!("not-ours-{i}")
        };
        let info = mdns_sd::ServiceInfo::new(
            SERVICE,
            &instance,
            "flood.local.",
            lan.ip("bridge").as_str(),
            20_000 + i,
            no_properties,
        )
        .unwrap();
        // The daemon's command queue is bounded: wait when it is full.
        let mut tries = 0;
        loop {
            match flood.register(info.clone()) {
                Ok(_) => break,
                Err(mdns_sd::Error::Again) => {}
                Err(e) => panic!("registering a service: {e}"),
            }
            tries += 1;
            assert!(tries < 1000, "the mDNS daemon never took the service");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // The user's node hears the flood first, then a real neighbour.
    let listen = format!("{}:7470", lan.ip("b"));
    let net = format!("198.18.{}.0/24", lan.net);
    let user = w.tmp.path().join("user-data");
    let node = NsServe::start(
        &lan.ns("b"),
        &user,
        &["--trust", &id, "--http", &listen, "--http-allow", &net],
    );
    wait_for_port(&listen, &node);
    let until = Instant::now() + Duration::from_secs(20);
    while !node.log().contains("peers announced by one address") {
        assert!(
            Instant::now() < until,
            "the flood was never heard: {}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    let seed = NsServe::start(&lan.ns("a"), &w.data, &["--http", "none"]);
    let api = format!("http://{listen}");
    let r = wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    assert_eq!(r.status, 200, "{}\n--- seed:\n{}", node.log(), seed.log());
    let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
        .unwrap()
        .url;
    let nar = http(&api, "GET", &format!("/{url}"), &[]);
    assert!(nar.status == 200 && nar.body == w.path(name).nar);
    eprintln!("met the neighbour through the flood in {:.1?}", t.elapsed());
    let _ = flood.shutdown();

    // Of the flooding host, a few were dialled, and it was said once.
    let log = node.log();
    let flood_ip = lan.ip("bridge");
    let dialled = log
        .lines()
        .filter(|l| l.contains("found on the local network") && l.contains(&flood_ip))
        .count();
    let warned = log.matches("peers announced by one address").count();
    eprintln!("of 300 announced, {dialled} dialled; warned {warned} time(s)");
    assert!(dialled >= 1, "{log}");
    assert!(
        dialled <= 2 * MAX_PER_IP,
        "{dialled} dials of the flood: {log}"
    );
    assert_eq!(warned, 1, "{log}");
    assert!(!log.contains("not-ours"), "{log}");
}

#[test]
fn nodes_that_know_nothing_of_each_other_meet_on_the_dht_and_remember_it() {
    let testnet = mainline::Testnet::new(5).expect("a local DHT testnet");
    let boot = testnet.bootstrap.join(",");
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    let (first, second) = ("hello-2.12", "demo-dataset");
    w.publish_ok(&[&w.store_path(first)]);
    let id = identity(&w);
    let hash = |name: &str| w.path(name).info.store_path.hash_part().to_owned();
    // The seed trusts no one: it announces its own index, found on disk.
    let seed = serve(&w.data, &["--http", "none", "--dht-bootstrap", &boot], &[]);

    // Told of no peer and off the DHT, a node never hears of the path.
    let alone = serve(&w.tmp.path().join("alone"), &["--trust", &id], &[]);
    let api = alone.http.clone().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let r = http(&api, "GET", &format!("/{}.narinfo", hash(first)), &[]);
    assert_eq!(r.status, 404);
    drop(alone);

    // On the DHT, it finds the seed under the index's topic and fetches.
    let user_data = w.tmp.path().join("user");
    let user_args = |boot: &str| {
        // The testnet is on loopback: found peers are 127.0.0.1.
        let mut a = vec![
            "--trust".to_owned(),
            id.clone(),
            "--dht-allow-local".to_owned(),
        ];
        a.extend(["--dht-bootstrap".to_owned(), boot.to_owned()]);
        a
    };
    let args = user_args(&boot);
    let user = serve(
        &user_data,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let api = user.http.clone().unwrap();
    let t = Instant::now();
    let fetched = |api: &str, name: &str, log: &dyn Fn() -> String| {
        let r = wait_for_status(api, &format!("/{}.narinfo", hash(name)), 200, 30);
        assert_eq!(r.status, 200, "{}", log());
        let url = hypernar_feed::format::narinfo::NarInfo::parse(&r.body)
            .unwrap()
            .url;
        let nar = http(api, "GET", &format!("/{url}"), &[]);
        assert_eq!(nar.status, 200, "{}", log());
        assert!(nar.body == w.path(name).nar, "the NAR of {name} differs");
    };
    let logs = || {
        format!(
            "--- user:\n{}\n--- seed:\n{}",
            std::fs::read_to_string(&user.log).unwrap_or_default(),
            std::fs::read_to_string(&seed.log).unwrap_or_default()
        )
    };
    fetched(&api, first, &logs);
    eprintln!("met on the DHT and fetched in {:.1?}", t.elapsed());
    assert!(logs().contains("found on the DHT"), "{}", logs());
    // It keeps the seed's address for next time.
    let state = user_data.join("dht-peers");
    let until = Instant::now() + Duration::from_secs(20);
    let line = format!("peer {}", seed.addr);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.lines().any(|l| l == line)) {
        assert!(Instant::now() < until, "{line:?} never saved: {}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(user);

    // The DHT goes away; a new path is published into the running seed.
    drop(testnet);
    w.publish_ok(&[&w.store_path(second)]);
    // Restarted with a bootstrap node that is not there, the user node
    // dials the peer it saved and gets the new path from it.
    let args = user_args(&closed_addr());
    let user = serve(
        &user_data,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let api = user.http.clone().unwrap();
    let logs = || {
        format!(
            "--- user:\n{}\n--- seed:\n{}",
            std::fs::read_to_string(&user.log).unwrap_or_default(),
            std::fs::read_to_string(&seed.log).unwrap_or_default()
        )
    };
    fetched(&api, second, &logs);
    assert!(
        logs().contains("dialling the peers learned from the DHT last time"),
        "{}",
        logs()
    );
}

/// An address the DHT names that accepts TCP but is no hypernar node (any
/// web server, sshd, a 127.0.0.1 service): dialled a few times, then left
/// alone however often lookups name it again, and never saved for the next
/// start. Before, a TCP connect alone counted as success: such an address
/// was dialled about four times a second for ever.
#[test]
fn an_address_on_the_dht_that_is_no_hypernar_node_is_dialled_a_few_times_and_not_saved() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let testnet = mainline::Testnet::new(5).expect("a local DHT testnet");
    let boot = testnet.bootstrap.join(",");
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    // Accepts and closes at once, like a server speaking another protocol.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    // Announced under the publisher's topic, as a hostile DHT user would.
    let index = w
        .secret()
        .feed_signing_key(hypernar_feed::format::identity::INDEX_FEED)
        .verifying_key()
        .to_bytes();
    let announcer = mainline::Dht::builder()
        .bootstrap(&testnet.bootstrap)
        .build()
        .unwrap();
    announcer
        .announce_peer(hypernar_fetcher::dht::topic(&index), Some(port))
        .unwrap();

    let data = w.tmp.path().join("user");
    let user = serve(
        &data,
        &[
            "--trust",
            &id,
            "--dht-allow-local",
            "--dht-bootstrap",
            &boot,
        ],
        &[],
    );
    // Lookups at 1, 2, 4, 8 and 16 s after start each name it again.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        assert!(
            accepts.load(Ordering::SeqCst) <= 5,
            "dialled {} times",
            accepts.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let n = accepts.load(Ordering::SeqCst);
    let log = std::fs::read_to_string(&user.log).unwrap();
    assert!(n >= 1, "never dialled: the test shows nothing\n{log}");
    let saved = std::fs::read_to_string(data.join("dht-peers")).unwrap_or_default();
    assert!(!saved.contains(&format!(":{port}")), "saved: {saved}");
    drop(user);
    let saved = std::fs::read_to_string(data.join("dht-peers")).unwrap_or_default();
    assert!(
        !saved.contains(&format!(":{port}")),
        "saved at shutdown: {saved}"
    );

    // Without --dht-allow-local, an address in a local range is not dialled
    // at all (said once).
    let before = accepts.load(Ordering::SeqCst);
    let other = w.tmp.path().join("other");
    let strict = serve(&other, &["--trust", &id, "--dht-bootstrap", &boot], &[]);
    wait_for_log(&strict, "local address range", 20);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(accepts.load(Ordering::SeqCst), before);
}
