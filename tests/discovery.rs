//! Zero-configuration peers on a LAN (mDNS): two nodes in separate
//! network namespaces joined by a bridge (test hosts in 198.18.0.0/15),
//! neither told of the other, the second fetching a path the first seeds.
//! Needs root and iproute2 (`ip netns`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

fn ip(args: &str) -> bool {
    Command::new("ip")
        .args(args.split_whitespace())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces on one bridge; removed when dropped.
struct Lan {
    tag: String,
}

impl Lan {
    /// Namespaces `hn<tag>a` (198.18.7.1) and `hn<tag>b` (198.18.7.2) on
    /// bridge `hnbr<tag>`, which holds 198.18.7.254 in this namespace.
    fn new() -> Option<Self> {
        let tag = format!("{}", std::process::id() % 100_000);
        let lan = Lan { tag: tag.clone() };
        let br = format!("hnbr{tag}");
        let mut ok = ip(&format!("link add {br} type bridge"))
            && ip(&format!("addr add 198.18.7.254/24 dev {br}"))
            && ip(&format!("link set {br} up"));
        for (side, addr) in [("a", "198.18.7.1"), ("b", "198.18.7.2")] {
            let (ns, v) = (format!("hn{tag}{side}"), format!("hv{tag}{side}"));
            ok = ok
                && ip(&format!("netns add {ns}"))
                && ip(&format!("link add {v} type veth peer name {v}p"))
                && ip(&format!("link set {v}p netns {ns}"))
                && ip(&format!("link set {v} master {br} up"))
                && ip(&format!("-n {ns} addr add {addr}/24 dev {v}p"))
                && ip(&format!("-n {ns} link set {v}p up"))
                && ip(&format!("-n {ns} link set lo up"));
        }
        ok.then_some(lan)
    }

    fn ns(&self, side: &str) -> String {
        format!("hn{}{side}", self.tag)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for side in ["a", "b"] {
            ip(&format!("netns del {}", self.ns(side)));
        }
        ip(&format!("link del hnbr{}", self.tag));
    }
}

/// `hypernar serve` in namespace `ns`, killed when dropped.
struct NsServe(Child, std::path::PathBuf);

impl NsServe {
    fn start(ns: &str, data: &Path, extra: &[&str]) -> Self {
        let log = data.with_extension("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin(), "serve", "--data", s(data)])
            .args(["--listen", "0.0.0.0:7469", "--upstream", "none"])
            .args(extra)
            .env("RUST_LOG", "hypernar_fetcher=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        NsServe(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for NsServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `addr` accepts connections (the node started).
fn wait_for_port(addr: &str, serve: &NsServe) {
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < until,
            "{addr} never listened: {}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_with_no_peer_finds_its_neighbour_on_the_lan_and_fetches_from_it() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let Some(lan) = root.then(Lan::new).flatten() else {
        return skip_or_fail("root and iproute2 network namespaces (ip netns)");
    };
    let w = World::new(&hypernar_publisher::sample::demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let name = "hello-2.12";
    let hash = w.path(name).info.store_path.hash_part().to_owned();
    let seed = NsServe::start(&lan.ns("a"), &w.data, &["--http", "none"]);
    let api = "http://198.18.7.2:7470";
    let user_args = |mdns: bool| {
        let mut a = vec![
            "--trust",
            id.as_str(),
            "--http",
            "198.18.7.2:7470",
            "--http-allow",
            "198.18.7.0/24",
        ];
        if !mdns {
            a.push("--no-mdns");
        }
        a
    };

    // Told of no peer and without mDNS, it never hears of the path.
    let user = w.tmp.path().join("user-data");
    let alone = NsServe::start(&lan.ns("b"), &user, &user_args(false));
    wait_for_port("198.18.7.2:7470", &alone);
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
    wait_for_port("198.18.7.2:7470", &node);
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
    let until = Instant::now() + Duration::from_secs(10);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 && Instant::now() < until {
        if let Ok(mdns_sd::ServiceEvent::ServiceResolved(r)) =
            found.recv_timeout(Duration::from_millis(200))
        {
            let ips: Vec<String> = r.addresses.iter().map(|a| a.to_string()).collect();
            if let Some(ip) = ips.iter().find(|a| a.starts_with("198.18.7.")) {
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
    assert_eq!(seen.len(), 2, "both nodes announce themselves: {seen:?}");
}
