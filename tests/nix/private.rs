//! A private audience end to end: a member whose only peers are a key
//! server and a blind mirror gets the closure through Nix, every data block
//! from the mirror; the mirror holds them all but no key, and answers 404
//! for each path.

use super::*;

/// `hypernar feeds` of a data directory: (token, role, have, length).
fn feeds_of(data: &Path) -> Vec<(String, String, u64, u64)> {
    ok(&["feeds", "--data", s(data)])
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (have, len) = w[3].split_once('/').unwrap();
            (
                w[0].to_owned(),
                w[1].to_owned(),
                have.parse().unwrap(),
                len.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_private_audience_end_to_end_member_gets_it_through_nix_a_blind_mirror_serves_it() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd")]);
    let (data, id) = publish_closure(&b, &["--no-release"]);
    let key = b.tmp.path().join("publisher.key");
    let out = ok(&[
        "release",
        "--key",
        s(&key),
        "--data",
        s(&data),
        "--audience",
        "lab",
    ]);
    let token = out.lines().last().unwrap().to_owned();
    assert!(token.starts_with("hypernar-feed1:"), "{out}");
    let hashes: Vec<String> = b
        .closure
        .iter()
        .map(|p| StorePath::parse(p).unwrap().hash_part().to_owned())
        .collect();

    // A non-member trusts the publisher and mirrors every data block, but
    // has no key: it holds the closure's blocks and cannot read them.
    let seed = serve(&data, &["--http", "none"], &[]);
    let seed_addr = seed.addr.clone();
    let blind_data = b.tmp.path().join("blind");
    let blind_args = [
        "--trust",
        id.as_str(),
        "--mirror",
        "--peer",
        seed_addr.as_str(),
    ];
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let blind = serve(&blind_data, &blind_args, &[]);
        std::thread::sleep(std::time::Duration::from_secs(2));
        drop(blind);
        let feeds = feeds_of(&blind_data);
        let data_feeds: Vec<_> = feeds.iter().filter(|f| f.1 == "data").collect();
        if !data_feeds.is_empty() && data_feeds.iter().all(|f| f.2 == f.3 && f.3 > 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the mirror never completed: {feeds:?}"
        );
    }
    drop(seed);
    let blind = serve(&blind_data, &blind_args, &[]);
    let blind_api = blind.http.clone().unwrap();
    // Its index lists every path, with no key released to it...
    let row = format!(
        "<td class=\"n\">{}</td><td class=\"n\">0</td>",
        hashes.len()
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = wait_for_status(&blind_api, "/", 200, 10);
        let page = String::from_utf8_lossy(&page.body).into_owned();
        if page.contains(&row) {
            break;
        }
        assert!(std::time::Instant::now() < until, "{page}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // ...so its substituter has none of them.
    for h in &hashes {
        let r = http(&blind_api, "GET", &format!("/{h}.narinfo"), &[]);
        assert_eq!(r.status, 404, "a non-member answered for {h}");
    }

    // A key server: the publisher's index and key feeds, no data feed.
    let data_dirs: Vec<String> = feeds_of(&data)
        .into_iter()
        .filter(|f| f.1 == "data")
        .map(|f| {
            let key = hypernar_feed::format::identity::parse_feed_key_text(&f.0).unwrap();
            hex::encode(key.as_bytes())
        })
        .collect();
    assert!(!data_dirs.is_empty());
    let keys_only = b.tmp.path().join("keys-only");
    copy_dir(&data, &keys_only);
    for d in &data_dirs {
        std::fs::remove_dir_all(keys_only.join("feeds").join(d)).unwrap();
    }
    let keyserver = serve(&keys_only, &["--http", "none"], &[]);

    // A member (the audience's token) whose peers are the key server and
    // the blind mirror: every data block comes from the mirror, and Nix
    // gets the closure with its signatures checked.
    let member_data = b.tmp.path().join("member");
    let member = serve(
        &member_data,
        &[
            "--trust",
            &id,
            "--feed",
            &token,
            "--peer",
            &keyserver.addr,
            "--peer",
            &blind.addr,
        ],
        &[],
    );
    let base = member.http.clone().unwrap();
    for h in &hashes {
        wait_for_status(&base, &format!("/{h}.narinfo"), 200, 30);
    }
    let pk = std::fs::read_to_string(b.tmp.path().join("nix-pk")).unwrap();
    let xdg = b.tmp.path().join("xdg");
    copy_and_realise(&b, &base, &pk, &xdg, "audience");
    let page = String::from_utf8_lossy(&http(&blind_api, "GET", "/", &[]).body).into_owned();
    assert!(page.contains(r#"id="uploaded"><b>"#), "{page}");
    assert!(
        !page.contains(r#"id="uploaded"><b>0 B</b>"#),
        "the blind mirror uploaded nothing: {page}"
    );
}
