//! Groups (`serve --group SECRET`): members find each other and fetch what
//! each pulled through from the upstream (nginx); a non-member that knows
//! a member's identity reads its index but gets no key; a member's path
//! no trusted key signed is not served; a hostile member's NAR that does
//! not match its signed narinfo is caught before a byte reaches the
//! client. On loopback with `--peer` (mDNS is off on loopback); the DHT
//! meeting is in `discovery.rs`.

use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::narinfo::NarInfo;
use hypernar_publisher::sample::{demo_paths, NixSigningKey};

use crate::util::*;

const LOG: (&str, &str) = (
    "RUST_LOG",
    "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info",
);

fn test_key() -> String {
    NixSigningKey::from_seed("test-cache-1", [1; 32]).public_text()
}

/// A new group secret, from `hypernar group new`.
fn new_group() -> String {
    let out = ok(&["group", "new"]);
    let secret = out.trim().to_owned();
    assert!(secret.starts_with("hypernar-group1:"), "{out}");
    secret
}

fn node_id(data: &std::path::Path) -> String {
    let text = std::fs::read_to_string(data.join("node.key")).unwrap();
    PublisherSecret::from_key_file(&text)
        .unwrap()
        .identity()
        .to_string()
}

fn wait_for_status_text(data: &std::path::Path, needle: &str, secs: u64) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let status = ok(&["status", "--data", s(data)]);
        if status.contains(needle) {
            return status;
        }
        assert!(
            std::time::Instant::now() < until,
            "{needle:?} not in:\n{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn members_fetch_what_one_pulled_through_and_a_non_member_reads_nothing() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let w = World::new(&demo_paths());
    let key = test_key();
    let group = new_group();
    let gid = ok(&["group", "id", &group]).trim().to_owned();
    let up = nginx(&w.cache, "");

    // A pulls two paths through from the upstream and keeps them.
    let a_data = w.tmp.path().join("a");
    let a = serve(
        &a_data,
        &[
            "--upstream",
            &up.base,
            "--trusted-public-key",
            &key,
            "--group",
            &group,
        ],
        &[LOG],
    );
    let api = a.http.clone().unwrap();
    let kept = ["hello-2.12", "libdemo-1.0"];
    for name in kept {
        assert!(fetch_nar(&api, &w, name) == w.path(name).nar, "{name}");
    }
    wait_for_log(&a, "kept a pulled-through path", 30);
    let a_id = node_id(&a_data);
    wait_for_status_text(
        &a_data,
        &format!("as node {a_id}: 2 kept, readable by the members of group {gid}"),
        20,
    );
    drop(up);

    // B, a member told only where A is, fetches both from A (the upstream
    // is gone), byte for byte, every byte from a peer.
    let b_data = w.tmp.path().join("b");
    let b = serve(
        &b_data,
        &[
            "--group",
            &group,
            "--peer",
            &a.addr,
            "--trusted-public-key",
            &key,
        ],
        &[LOG],
    );
    let b_api = b.http.clone().unwrap();
    for name in kept {
        assert!(
            fetch_nar(&b_api, &w, name) == w.path(name).nar,
            "{name} from B"
        );
    }
    let from_peers = metric(&b_api, "hypernar_received_bytes_total{source=\"peer\"}");
    assert!(from_peers > 0, "B received nothing from peers");
    wait_for_log(&b, "met a group member", 5);
    let status = wait_for_status_text(&b_data, &format!("member {a_id}"), 10);
    assert!(
        status.contains(&format!(
            "groups: 1\n  {gid}  this node reads it and offers nothing"
        )),
        "{status}"
    );

    // D is not a member but knows A's identity: it reads A's index and
    // finds no key, so it serves Nix nothing of A's.
    let d_data = w.tmp.path().join("d");
    let d = serve(&d_data, &["--trust", &a_id, "--peer", &a.addr], &[LOG]);
    let d_api = d.http.clone().unwrap();
    wait_for_status_text(&d_data, &format!("{a_id}  2 paths, 0 keys released"), 20);
    for name in kept {
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        let r = http(&d_api, "GET", &format!("/{hash}.narinfo"), &[]);
        assert_ne!(r.status, 200, "{name} served by a non-member");
    }
    drop(d);

    // A member that trusts another Nix key serves nothing of A's: the
    // group grants reading, not trust.
    let other = NixSigningKey::from_seed("test-cache-1", [2; 32]).public_text();
    let c = serve(
        &w.tmp.path().join("c"),
        &[
            "--group",
            &group,
            "--peer",
            &a.addr,
            "--trusted-public-key",
            &other,
        ],
        &[LOG],
    );
    wait_for_log(&c, "met a group member", 20);
    let c_api = c.http.clone().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for name in kept {
        let hash = w.path(name).info.store_path.hash_part().to_owned();
        let r = http(&c_api, "GET", &format!("/{hash}.narinfo"), &[]);
        assert_eq!(
            r.status, 404,
            "{name} served though no trusted key signed it"
        );
    }
}

/// A hostile member publishes hello-2.12 under its valid, signed narinfo
/// but with a NAR of one changed byte (a publisher built with fault
/// injection skips its own NarHash check): a member reads the NAR whole
/// before serving any of it, refuses it, and never serves the path from
/// that member again.
#[test]
fn a_hostile_members_wrong_nar_is_caught_before_a_byte_is_served() {
    if !faults_built_in() {
        return;
    }
    let w = World::new(&demo_paths());
    let key = test_key();
    let group = new_group();
    // The hostile cache: hello-2.12's NAR with 'H' of "Hello from
    // hypernar" made 'J', uncompressed, under the same signed narinfo.
    let evil = w.tmp.path().join("evil-cache");
    copy_dir(&w.cache, &evil);
    let hello = w.path("hello-2.12");
    let mut nar = hello.nar.clone();
    let at = nar
        .windows(19)
        .position(|x| x == b"Hello from hypernar")
        .unwrap();
    nar[at] = b'J';
    std::fs::create_dir_all(evil.join("nar")).unwrap();
    std::fs::write(evil.join("nar/evil.nar"), &nar).unwrap();
    let info_file = evil.join(format!("{}.narinfo", hello.info.store_path.hash_part()));
    let text: String = std::fs::read_to_string(&info_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("FileHash:") && !l.starts_with("FileSize:"))
        .map(|l| match l {
            l if l.starts_with("URL:") => "URL: nar/evil.nar\n".to_owned(),
            l if l.starts_with("Compression:") => "Compression: none\n".to_owned(),
            l => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&info_file, text).unwrap();

    // The hostile member M publishes it into its node's own feeds.
    let m_data = w.tmp.path().join("m");
    std::fs::create_dir_all(&m_data).unwrap();
    let m_key = m_data.join("node.key");
    ok(&["keygen", "--out", s(&m_key)]);
    let out = std::process::Command::new(bin())
        .args([
            "publish",
            "--key",
            s(&m_key),
            "--data",
            s(&m_data),
            "--from",
            &format!("file://{}", evil.display()),
            "--all",
        ])
        .env("HYPERNAR_FAULT_PUBLISH_WRONG_NAR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", failed(&out));
    let m = serve(
        &m_data,
        &[
            "--group",
            &group,
            "--upstream",
            &closed_addr_url(),
            "--trusted-public-key",
            &key,
        ],
        &[LOG],
    );

    // B, a member, is asked for it: the narinfo is M's (validly signed),
    // the NAR never comes, and the path is dropped.
    let b = serve(
        &w.tmp.path().join("b"),
        &[
            "--group",
            &group,
            "--peer",
            &m.addr,
            "--trusted-public-key",
            &key,
        ],
        &[LOG],
    );
    let api = b.http.clone().unwrap();
    let hash = hello.info.store_path.hash_part().to_owned();
    let r = wait_for_status(&api, &format!("/{hash}.narinfo"), 200, 30);
    let url = NarInfo::parse(&r.body).unwrap().url;
    let got = http(&api, "GET", &format!("/{url}"), &[]);
    assert_ne!(got.status, 200, "a wrong NAR was served");
    assert!(
        !got.body.windows(19).any(|x| x == b"Jello from hypernar"),
        "a byte of the wrong NAR reached the client"
    );
    wait_for_log(&b, "does not match its signed narinfo", 5);
    let r = http(&api, "GET", &format!("/{hash}.narinfo"), &[]);
    assert_eq!(r.status, 404, "the refused path is still served");
    // M's other paths, honest, are still served.
    assert!(fetch_nar(&api, &w, "libdemo-1.0") == w.path("libdemo-1.0").nar);
}

/// An upstream URL nothing listens at: keeping is on (so the node has a
/// card to give) and nothing is ever pulled through.
fn closed_addr_url() -> String {
    format!("http://{}", closed_addr())
}

#[test]
fn group_secrets_are_made_and_read_and_a_bad_one_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.group");
    let out = ok(&["group", "new", "--out", s(&file)]);
    assert!(out.contains("wrote group secret"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let id = out
        .lines()
        .last()
        .unwrap()
        .strip_prefix("group ")
        .unwrap()
        .to_owned();
    assert_eq!(ok(&["group", "id", s(&file)]).trim(), id);
    // Never overwritten.
    let again = fails(&["group", "new", "--out", s(&file)]);
    assert!(again.contains("never overwrites"), "{again}");
    // A typo names no other group.
    let secret = new_group();
    let mut typo = secret.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'0' { b'1' } else { b'0' };
    let typo = String::from_utf8(typo).unwrap();
    let err = fails(&[
        "serve",
        "--data",
        s(&dir.path().join("d")),
        "--group",
        &typo,
    ]);
    assert!(err.contains("does not read"), "{err}");
    let err = fails(&[
        "serve",
        "--data",
        s(&dir.path().join("d")),
        "--group",
        "/nonexistent/g",
    ]);
    assert!(err.contains("neither a group secret"), "{err}");
}

/// Members told of no peer meet on the DHT under the group's topic (the
/// meeting feed's, derived from the secret): the second fetches what the
/// first pulled through, the upstream gone.
#[test]
fn members_that_know_nothing_of_each_other_meet_on_the_dht() {
    if !nginx_available() {
        return skip_or_fail("nginx (Debian package nginx)");
    }
    let testnet = mainline::Testnet::new(5).expect("a local DHT testnet");
    let boot = testnet.bootstrap.join(",");
    let w = World::new(&demo_paths());
    let key = test_key();
    let group = new_group();
    let up = nginx(&w.cache, "");
    let dht = ["--dht-bootstrap", &boot, "--dht-allow-local"];
    let mut args = vec![
        "--upstream",
        &up.base,
        "--trusted-public-key",
        &key,
        "--group",
        &group,
    ];
    args.extend(dht);
    let a = serve(&w.tmp.path().join("a"), &args, &[LOG]);
    let api = a.http.clone().unwrap();
    assert!(fetch_nar(&api, &w, "hello-2.12") == w.path("hello-2.12").nar);
    wait_for_log(&a, "kept a pulled-through path", 30);
    drop(up);

    let mut args = vec!["--group", &group, "--trusted-public-key", &key];
    args.extend(dht);
    let b = serve(&w.tmp.path().join("b"), &args, &[LOG]);
    let b_api = b.http.clone().unwrap();
    let t = std::time::Instant::now();
    assert!(fetch_nar(&b_api, &w, "hello-2.12") == w.path("hello-2.12").nar);
    eprintln!("members met on the DHT and fetched in {:.1?}", t.elapsed());
    let log = std::fs::read_to_string(&b.log).unwrap();
    assert!(log.contains("found on the DHT"), "{log}");
    assert!(log.contains("met a group member"), "{log}");
}
