//! Interop with the JavaScript hypercore reference (npm `hypercore` 10.31.12,
//! and 11.35.1 with `compat: true`), over TCP against a real hypernar node:
//! JS replicates a publisher's feeds from hypernar and reads the same data
//! blocks; then hypernar fetches a path from the JS peer alone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hypernar_feed::format::identity::{DATA_FEED_0, INDEX_FEED, PUBLIC_KEYS_FEED, RUNS_FEED};
use hypernar_feed::FeedStore;
use hypernar_publisher::sample::demo_paths;

use crate::util::*;

pub(crate) fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

pub(crate) fn js_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    node && js_dir().join("node_modules/hypercore10").is_dir()
        && js_dir().join("node_modules/hypercore11").is_dir()
}

struct Js(std::process::Child);
impl Drop for Js {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interop(version: &str) {
    if !js_ready() {
        return skip_or_fail("node and the npm packages in tests/js (npm ci --prefix tests/js)");
    }
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all"]);
    let id = identity(&w);
    let secret = w.secret();
    let key = |name: &str| hex::encode(secret.feed_signing_key(name).verifying_key().as_bytes());
    let keys = [
        key(INDEX_FEED),
        key(DATA_FEED_0),
        key(PUBLIC_KEYS_FEED),
        key(RUNS_FEED),
    ]
    .join(",");
    let a = serve(&w.data, &[], &[]);

    let js_store = w.tmp.path().join(format!("js{version}"));
    let mut child = Command::new("node")
        .current_dir(js_dir())
        .args([
            "interop.mjs",
            version,
            &a.addr,
            s(&js_store),
            &keys,
            &key(DATA_FEED_0),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let js = Js(child);
    let report = lines.next().expect("JS report").unwrap();
    let listening = lines.next().expect("JS listening line").unwrap();
    let port = listening
        .strip_prefix("listening ")
        .expect("listening line")
        .to_owned();
    drop(a); // only the JS peer has the feeds now

    // JS read the same blocks the publisher wrote.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let want: Vec<String> = rt.block_on(async {
        let store = FeedStore::open(&w.data).unwrap();
        let mut feed = store
            .open_existing(&secret.feed_signing_key(DATA_FEED_0).verifying_key())
            .await
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        for i in 0..feed.len() {
            out.push(sha256(&feed.get(i).await.unwrap()));
        }
        out
    });
    let hashes: Vec<String> = report
        .split("\"hashes\":[")
        .nth(1)
        .expect("hashes in report")
        .trim_end_matches("]}")
        .split(',')
        .map(|h| h.trim_matches('"').to_owned())
        .collect();
    assert_eq!(
        hashes, want,
        "JS hypercore {version} read different data blocks"
    );

    // hypernar fetches from the JS peer alone.
    let path = w.store_path("demo-dataset");
    let out = fetch(
        &w.tmp.path().join("c"),
        &id,
        &[&format!("127.0.0.1:{port}")],
        &path,
    );
    assert_fetched(&out, &w, "demo-dataset");
    drop(js);
}

#[test]
fn js_hypercore_10_replicates_from_and_seeds_to_hypernar() {
    interop("10");
}

#[test]
fn js_hypercore_11_compat_replicates_from_and_seeds_to_hypernar() {
    interop("11");
}
