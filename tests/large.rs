//! Feeds past hypercore's first 32 768-block bitfield page, through the real
//! binary: before the bitfield patch (vendor/hypercore/HYPERNAR-PATCH.md)
//! every later open of such a feed panicked, so a publisher's node died at
//! start and `cat-nar` exited 101, and a follower could not restart.

use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{Contents, SamplePath};

use crate::util::*;

/// What the JavaScript reference (hypercore 10) reads from a copy of a feed
/// directory hypernar wrote: its length and the runs of blocks it holds.
fn js_holds(feed_dir: &std::path::Path) -> (u64, Vec<(u64, u64)>) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(feed_dir, copy.path());
    let key = feed_dir.file_name().unwrap().to_str().unwrap();
    let out = std::process::Command::new("node")
        .arg(crate::interop::js_dir().join("holds.mjs"))
        .args([s(copy.path()), key])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "holds.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    (v["length"].as_u64().unwrap(), runs)
}

/// Blocks of 4 KiB segments: one past the first bitfield page.
const SEGMENTS: usize = 32_769;

fn big_world() -> World {
    // Bytes the publisher takes as the NAR as they are; varied enough that
    // no two segments are alike.
    let len = SEGMENTS * 4096 - 100;
    let nar: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = SamplePath {
        name: "big-1.0".into(),
        contents: Contents::RawNar(nar),
        references: vec![],
        compression: Compression::None,
    };
    let base = std::path::Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    World::new_in(&base, &[path])
}

#[test]
fn a_feed_past_one_bitfield_page_reopens_for_the_publisher_and_a_follower() {
    let w = big_world();
    w.publish_ok(&["--all", "--segment-size", "4096"]);
    let store_path = w.store_path("big-1.0");
    let id = identity(&w);

    // The publisher's own data feed, reopened by later commands; its
    // two-page bitfield is the format the JavaScript reference reads.
    w.assert_reads_back("big-1.0");
    let data_dir = w.feed_dir(hypernar_feed::format::identity::DATA_FEED_0);
    let blocks = w.path("big-1.0").nar.len().div_ceil(4096) as u64 + 1;
    assert!(blocks > 32_768);
    let js_ready = crate::interop::js_ready();
    if js_ready {
        assert_eq!(js_holds(&data_dir), (blocks, vec![(0, blocks)]));
    } else {
        skip_or_fail("node and the npm packages in tests/js (npm ci --prefix tests/js)");
    }
    let seed = serve(&w.data, &["--trust", &id], &[]);

    // A follower replicates every block, then opens its replica again with
    // the seed gone: every block is still there and verifies.
    let follower = w.tmp.path().join("follower");
    let out = fetch(&follower, &id, &[&seed.addr], &store_path);
    assert_fetched(&out, &w, "big-1.0");
    drop(seed);
    let out = fetch(&follower, &id, &[&closed_addr()], &store_path);
    assert_fetched(&out, &w, "big-1.0");
    if js_ready {
        let replica = follower.join("feeds").join(data_dir.file_name().unwrap());
        let (len, runs) = js_holds(&replica);
        assert_eq!(len, blocks);
        // Every segment; the feed's block 0 is a header no reader needs.
        assert_eq!(runs.last(), Some(&(1, blocks)), "{runs:?}");
    }

    // And the publisher's node starts again on its own directory and
    // serves the path over HTTP.
    let seed = serve(&w.data, &["--trust", &id], &[]);
    let base = seed.http.clone().unwrap();
    let hash = w.path("big-1.0").info.store_path.hash_part().to_owned();
    let info = wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 20);
    let text = String::from_utf8(info.body).unwrap();
    let url = text.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    let nar = http(&base, "GET", &format!("/{url}"), &[]);
    assert_eq!(nar.status, 200);
    assert_eq!(sha256(&nar.body), sha256(&w.path("big-1.0").nar));
}
