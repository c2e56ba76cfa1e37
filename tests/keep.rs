//! A node keeps what it pulls through (`serve`, unless `--no-keep`): a
//! path an upstream (nginx) serves whose narinfo a trusted key signed is
//! published into the node's own feeds as its NAR streams to the client,
//! then served from there — to itself with the upstream gone, and to a
//! peer that trusts the node's identity. A path no trusted key signed is
//! passed through and never kept.

use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::narinfo::NarInfo;
use hypernar_publisher::sample::{demo_paths, NixSigningKey};

use crate::util::*;

#[test]
fn a_signed_pulled_through_path_is_kept_and_served_with_the_upstream_gone() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&demo_paths());
    let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
    // empty-file's narinfo is signed by another key: passed through, not kept.
    let other = NixSigningKey::from_seed("test-cache-1", [2; 32]);
    let f = w.narinfo_file("empty-file");
    let text = std::fs::read_to_string(&f).unwrap();
    let info = NarInfo::parse(text.as_bytes()).unwrap();
    let resigned: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Sig: ") {
                format!("Sig: {}\n", other.sign(&info.fingerprint()))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&f, resigned).unwrap();

    let up = nginx(&w.cache, "");
    let a_data = w.tmp.path().join("a");
    let log_env = [(
        "RUST_LOG",
        "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info",
    )];
    let a = serve(
        &a_data,
        &["--upstream", &up.base, "--trusted-public-key", &key],
        &log_env,
    );
    let api = a.http.clone().unwrap();
    let kept = ["hello-2.12", "libdemo-1.0"];
    for name in kept.iter().chain(&["empty-file"]) {
        assert!(fetch_nar(&api, &w, name) == w.path(name).nar, "{name}");
    }
    wait_for_log_count(&a.log, "kept a pulled-through path", 2, 30);
    // The node's key was made on first start, for its owner only.
    let key_file = a_data.join("node.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let secret =
        PublisherSecret::from_key_file(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let node_id = secret.identity().to_string();
    // `hypernar status` says what it shares, and as whom.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = ok(&["status", "--data", s(&a_data)]);
        if status.contains(&format!(
            "keeping pulled-through paths as node {node_id}: 2 kept, readable by every node that trusts it"
        )) {
            break;
        }
        assert!(std::time::Instant::now() < until, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The same for scripts: one JSON object.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--data", s(&a_data)])).unwrap();
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["kept"]["identity"], node_id.as_str(), "{json}");
    assert_eq!(json["kept"]["paths"], 2, "{json}");
    assert_eq!(json["kept"]["groups"], serde_json::json!([]), "{json}");
    assert_eq!(json["upstreams"][0], up.base.as_str(), "{json}");
    assert!(
        json["bytes"]["from_upstream"].as_u64().unwrap() > 0,
        "{json}"
    );

    // The upstream goes away: A serves what it kept from its own feeds,
    // and B, which trusts A's identity, fetches it from A.
    drop(up);
    for name in kept {
        assert!(
            fetch_nar(&api, &w, name) == w.path(name).nar,
            "{name} from A"
        );
    }
    let b = serve(
        &w.tmp.path().join("b"),
        &["--trust", &node_id, "--peer", &a.addr, "--upstream", "none"],
        &[],
    );
    let b_api = b.http.clone().unwrap();
    for name in kept {
        assert!(
            fetch_nar(&b_api, &w, name) == w.path(name).nar,
            "{name} from B"
        );
    }
    // What no trusted key signed was never kept: B has nothing of it.
    let hash = w.path("empty-file").info.store_path.hash_part().to_owned();
    assert_eq!(
        http(&b_api, "GET", &format!("/{hash}.narinfo"), &[]).status,
        404
    );
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(!log.contains("empty-file\" nar_bytes"), "{log}");
    assert_eq!(
        log.matches("kept a pulled-through path").count(),
        2,
        "{log}"
    );

    // Restarted, A keeps its key and serves its own index at once.
    drop(b);
    drop(a);
    // With no serve: what the feeds take, per owner, as JSON.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--data", s(&a_data)])).unwrap();
    assert_eq!(json["running"], false, "{json}");
    assert!(
        json["disk"].as_array().unwrap().iter().any(|d| d["owner"]
            .as_str()
            .unwrap()
            .starts_with(&node_id)
            && d["bytes"].as_u64().unwrap() > 0),
        "{json}"
    );
    let a = serve(
        &a_data,
        &[
            "--upstream",
            "http://127.0.0.1:1",
            "--trusted-public-key",
            &key,
        ],
        &[],
    );
    let again = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        PublisherSecret::from_key_file(&again)
            .unwrap()
            .identity()
            .to_string(),
        node_id
    );
    let api = a.http.clone().unwrap();
    assert!(fetch_nar(&api, &w, "hello-2.12") == w.path("hello-2.12").nar);
}

#[test]
fn no_keep_keeps_nothing_and_makes_no_node_key() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&demo_paths());
    let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
    let up = nginx(&w.cache, "");
    let data = w.tmp.path().join("a");
    let log_env = [("RUST_LOG", "hypernar=info,hypernar_fetcher=info")];
    let a = serve(
        &data,
        &[
            "--upstream",
            &up.base,
            "--trusted-public-key",
            &key,
            "--no-keep",
        ],
        &log_env,
    );
    let api = a.http.clone().unwrap();
    assert!(fetch_nar(&api, &w, "hello-2.12") == w.path("hello-2.12").nar);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(!data.join("node.key").exists());
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(!log.contains("kept a pulled-through path"), "{log}");
}

/// Under `--max-size`, a node keeps while its feeds take less than nine
/// tenths of it (what it keeps is not evicted): past that it says so and
/// keeps nothing more, and paths are still pulled through.
#[test]
fn a_node_over_nine_tenths_of_max_size_keeps_no_more() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&demo_paths());
    let key = NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text();
    let up = nginx(&w.cache, "");
    let log_env = [("RUST_LOG", "hypernar=info,hypernar_fetcher=info")];
    let a = serve(
        &w.tmp.path().join("a"),
        &[
            "--upstream",
            &up.base,
            "--trusted-public-key",
            &key,
            "--max-size",
            "100K",
        ],
        &log_env,
    );
    let api = a.http.clone().unwrap();
    assert!(fetch_nar(&api, &w, "demo-dataset") == w.path("demo-dataset").nar);
    wait_for_log_count(&a.log, "kept a pulled-through path", 1, 30);
    wait_for_log_count(&a.log, "keeping no more pulled-through paths", 1, 30);
    assert!(fetch_nar(&api, &w, "hello-2.12") == w.path("hello-2.12").nar);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert_eq!(
        log.matches("kept a pulled-through path").count(),
        1,
        "{log}"
    );
}
