//! The command line on sample caches written by hypernar itself (no Nix).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use hypernar_feed::format::identity::{Identity, DATA_FEED_0};
use hypernar_feed::format::narinfo::Compression;
use hypernar_publisher::sample::{demo_paths, filler};

use crate::util::*;

#[test]
fn demo_runs_and_verifies_everything() {
    let out = ok(&["demo"]);
    assert!(out.contains("demo ok"), "{out}");
    assert_eq!(out.matches("NarHash verified").count(), 4, "{out}");
    assert!(out.contains("key not released: unreadable"), "{out}");
    // The network: every path over HTTP, from both peers.
    assert_eq!(out.matches("and its NAR").count(), 5, "{out}");
    // Which peer each block comes from is the scheduler's (random) pick.
    assert!(out.contains("of blocks came from the"), "{out}");
    assert!(
        out.contains("trusted-public-keys = hypernar-demo-1:"),
        "{out}"
    );
    if Command::new("nix").arg("--version").output().is_ok() {
        assert!(out.contains("Nix copied all 5 paths"), "{out}");
    }
}

#[test]
fn keygen_writes_a_private_key_and_prints_the_identity_last() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k");
    let out = ok(&["keygen", "--out", s(&key)]);
    let last = out.lines().last().unwrap();
    let id: Identity = last.parse().expect("last line is the identity");
    let secret = hypernar_feed::format::identity::PublisherSecret::from_key_file(
        &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap();
    assert_eq!(secret.identity(), id);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    let err = fails(&["keygen", "--out", s(&key)]);
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before, "key file was changed");
}

/// NAR sizes around the segment boundary, through the whole pipeline.
#[test]
fn boundary_sizes_round_trip_through_publish_and_cat_nar() {
    let seg = 4096usize;
    let sizes = [0, 1, seg - 1, seg, seg + 1, seg * 9 + 5];
    let codecs = [
        Compression::None,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bzip2,
    ];
    let paths: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            raw(
                &format!("size-{n}"),
                filler(n, i as u64),
                codecs[i % 4],
                &[],
            )
        })
        .collect();
    let w = World::new(&paths);
    let out = w.publish_ok(&["--all", "--segment-size", "4096"]);
    assert!(
        out.contains(&format!("published {} paths", sizes.len())),
        "{out}"
    );
    for n in sizes {
        w.assert_reads_back(&format!("size-{n}"));
    }
    w.check_consistent();
}

#[test]
fn closure_follows_references_and_publish_is_idempotent() {
    let w = World::new(&demo_paths());
    // Without --closure only the named path.
    w.publish_ok(&[&w.store_path("hello-2.12")]);
    assert_eq!(w.check_consistent().len(), 1);
    let out = fails(&[
        "cat-nar",
        "--data",
        s(&w.data),
        &w.store_path("libdemo-1.0"),
    ]);
    assert!(out.contains("is not published"), "{out}");
    // With it, the dataset brings hello (already there) and libdemo.
    let out = w.publish_ok(&["--closure", &w.store_path("demo-dataset")]);
    assert!(
        out.contains("published 2 paths (1 already published, 0 failed)"),
        "{out}"
    );
    let before = w.check_consistent();
    assert_eq!(before.len(), 3);
    let data_file = w.feed_dir(DATA_FEED_0).join("data");
    let size_before = std::fs::metadata(&data_file).unwrap().len();
    let out = w.publish_ok(&["--closure", &w.store_path("demo-dataset")]);
    assert!(
        out.contains("published 0 paths (3 already published"),
        "{out}"
    );
    assert_eq!(w.check_consistent(), before);
    assert_eq!(std::fs::metadata(&data_file).unwrap().len(), size_before);
    for name in ["hello-2.12", "libdemo-1.0", "demo-dataset"] {
        w.assert_reads_back(name);
    }
    // Store path arguments in all three accepted forms.
    let p = &w.path("empty-file").info.store_path;
    w.publish_ok(&[p.hash_part()]);
    w.publish_ok(&[p.base_name()]);
    assert_eq!(w.check_consistent().len(), 4);
}

#[test]
fn held_back_keys_are_unreadable_until_released() {
    let w = World::new(&demo_paths());
    w.publish_ok(&["--all", "--no-release"]);
    let hello = w.store_path("hello-2.12");
    let err = failed(&w.cat_nar(&hello));
    assert!(err.contains("no key has been released"), "{err}");
    // The publisher itself can read with its key file.
    let out = ok(&["cat-nar", "--data", s(&w.data), "--key", s(&w.key), &hello]);
    assert_eq!(sha256(out.as_bytes()), sha256(&w.path("hello-2.12").nar));

    // An audience release goes to an unlisted feed and prints its token.
    let out = ok(&[
        "release",
        "--key",
        s(&w.key),
        "--data",
        s(&w.data),
        "--audience",
        "lab",
        &hello,
    ]);
    assert!(
        out.contains("released 1 keys to keys/audience/lab"),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap().starts_with("hypernar-feed1:"),
        "{out}"
    );
    w.assert_reads_back("hello-2.12");
    let err = failed(&w.cat_nar(&w.store_path("libdemo-1.0")));
    assert!(err.contains("no key has been released"), "{err}");

    let out = ok(&["release", "--key", s(&w.key), "--data", s(&w.data)]);
    assert!(out.contains("released 4 keys to keys/public"), "{out}");
    let out = ok(&["release", "--key", s(&w.key), "--data", s(&w.data)]);
    assert!(
        out.contains("released 0 keys to keys/public (4 were already released)"),
        "{out}"
    );
    for p in demo_paths() {
        w.assert_reads_back(&p.name);
    }
    let err = fails(&[
        "release",
        "--key",
        s(&w.key),
        "--data",
        s(&w.data),
        "--audience",
        "Bad Name",
    ]);
    assert!(err.contains("audience name"), "{err}");
}

#[test]
fn cat_nar_fails_clearly_on_unknown_paths_and_tampered_blocks() {
    let big = filler(3 << 20, 5);
    let w = World::new(&[raw("big", big, Compression::Zstd, &[])]);
    w.publish_ok(&["--all"]);
    w.assert_reads_back("big");

    let err = failed(&w.cat_nar("/nix/store/00000000000000000000000000000000-nothing"));
    assert!(err.contains("is not published by any publisher"), "{err}");
    let err = failed(&w.cat_nar("not-a-path"));
    assert!(err.contains("is not a store path"), "{err}");

    // Flip one bit in the middle of the data feed's block storage.
    let data_file = w.feed_dir(DATA_FEED_0).join("data");
    let mut bytes = std::fs::read(&data_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&data_file, &bytes).unwrap();
    let out = w.cat_nar(&w.store_path("big"));
    let err = failed(&out);
    assert!(err.contains("failed authentication"), "{err}");
    assert!(
        err.contains(&w.store_path("big")),
        "error names the path: {err}"
    );
    assert!(
        out.stdout.len() < 3 << 20,
        "no bytes past the tampered block were written"
    );
}

#[test]
fn help_teaches_each_command() {
    // Every command, so a clap definition that only fails when built (two
    // flattened `Args` once made `mount --help` panic) is caught here.
    for cmd in [
        "publish", "release", "cat-nar", "keygen", "demo", "serve", "mount", "fetch", "feeds",
        "set", "status", "follow", "channels", "group",
    ] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.len() > 300, "{cmd} --help is thin: {out}");
    }
    // The long text of each command (what it does, examples) is there, not
    // only its one line (a doc comment on the subcommand once hid it).
    for (cmd, says) in [
        ("serve", "Examples:"),
        ("publish", "Examples:"),
        ("group", "grants reading, never trust"),
        ("follow", "redirects to a release directory"),
    ] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains(says), "{cmd} --help lacks {says:?}: {out}");
    }
    for sub in ["add", "remove", "list"] {
        let out = ok(&["set", sub, "--help"]);
        assert!(
            out.contains("--key") && out.contains("NAME"),
            "set {sub}: {out}"
        );
    }
    let out = ok(&["--help"]);
    assert!(out.contains("hypernar demo"), "{out}");
}

#[test]
fn web_seed_urls_are_checked_before_publishing_and_recorded_when_they_change() {
    let w = World::new(&demo_paths());
    let err = failed(&w.publish(&["--all", "--web-seed-url", "ftp://seed.example/"]));
    assert!(err.contains("--web-seed-url"), "{err}");
    assert!(err.contains("http:// or https://"), "{err}");
    let err = failed(&w.publish(&[
        "--all",
        "--web-seed-url",
        "none",
        "--web-seed-url",
        "https://seed.example/",
    ]));
    assert!(err.contains("give it alone"), "{err}");
    // Nothing was published by the refused runs.
    let out = w.publish_ok(&["--all", "--web-seed-url", "https://seed.example/hn/"]);
    assert!(out.contains("(0 already published"), "{out}");
    assert!(
        out.contains("web seed recorded in the index: https://seed.example/hn\n"),
        "{out}"
    );
    let out = w.publish_ok(&["--all", "--web-seed-url", "https://seed.example/hn"]);
    assert!(
        !out.contains("web seed"),
        "the same list is not recorded twice: {out}"
    );
    let out = w.publish_ok(&["--all", "--web-seed-url", "none"]);
    assert!(out.contains("web seed withdrawn from the index"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("publisher "),
        "{out}"
    );
}
