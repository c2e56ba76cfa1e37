//! End to end with real Nix (Debian's nix-bin): build real store paths, sign
//! them, `nix copy` them into binary caches (xz and zstd, on file:// and on
//! http:// from a real HTTP server on 127.0.0.1), publish those caches, and
//! read every path back with `cat-nar`: it must equal `nix-store --dump`.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hypernar_feed::format::narinfo::NarInfo;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::{Catalog, FeedStore};
use sha2::{Digest, Sha256};

use crate::util::*;

mod degraded;
mod follow;
mod group;
mod local;
mod nocopy;
mod private;

const NIX_CONFIG: &str = "sandbox = false\nsubstituters =\nexperimental-features = nix-command\n";

/// `let` and the `mk` every test's derivations are made with: `mk NAME
/// SCRIPT` builds by running SCRIPT under /bin/sh, /usr/bin on its PATH.
const MK: &str = r#"
let
  mk = name: script: derivation {
    inherit name script;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "eval \"$script\"" ];
    PATH = "/usr/bin:/bin";
  };
"#;

/// A Nix expression: [`MK`], then `rest` (more bindings, then `in …`).
fn with_mk(rest: &str) -> String {
    format!("{MK}{rest}")
}

/// Derivations covering what a NAR can hold: nested directories, an
/// executable, symlinks (relative, absolute, dangling), empty files and an
/// empty directory, a name with spaces and non-ASCII, references between paths, and a file over 100 MiB.
const DERIVATIONS: &str = r#"
  lib = mk "hn-e2e-lib" ''
    mkdir -p $out/lib/deep/er/still $out/share/empty-dir
    seq 1 20000 > $out/lib/deep/er/still/numbers
    printf '#!/bin/sh\necho lib\n' > $out/lib/run.sh
    chmod 555 $out/lib/run.sh
    ln -s deep/er/still/numbers $out/lib/numbers
    ln -s /nonexistent/dangling $out/lib/dangling
    touch $out/lib/empty
    printf 'spaces and more\n' > "$out/share/name with spaces ✓ ü"
  '';
  app = mk "hn-e2e-app" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\nexec ${lib}/lib/run.sh\n' > $out/bin/app
    chmod 555 $out/bin/app
    ln -s ${lib}/lib $out/lib
  '';
  big = mk "hn-e2e-big" ''
    mkdir -p $out
    echo ${app} > $out/uses
    { head -c 41943040 /dev/urandom; seq 1 9000000; } > $out/big.bin
  '';
  single = mk "hn-e2e-single-file" "echo just a file > $out";
in [ big single ]
"#;

/// A Nix signing key of a fixed seed, written where Nix's key files go:
/// `DIR/NAME-sk` and its public text. The same key every run, so `nix
/// store sign` on the host's store adds no new signature to a path built
/// before (a fresh key each run left one more each time, and hypernar
/// verifies at most 16 signatures of one key name).
fn fixed_key(dir: &Path, name: &str, seed: u8) -> (std::path::PathBuf, String) {
    let key = hypernar_publisher::sample::NixSigningKey::from_seed(name, [seed; 32]);
    let sk = dir.join(format!("{name}-sk"));
    std::fs::write(&sk, key.secret_text()).unwrap();
    (sk, key.public_text())
}

fn nix_available() -> bool {
    Command::new("nix-build")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn nix(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// SHA-256 of a command's stdout, streamed.
fn stdout_sha256(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    hex::encode(h.finalize())
}

struct Built {
    tmp: tempfile::TempDir,
    closure: Vec<String>,
    roots: Vec<String>,
}

fn build_and_copy(caches: &[(&str, &str)]) -> Built {
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-nix-")
        .tempdir()
        .unwrap();
    let expr = tmp.path().join("e2e.nix");
    std::fs::write(&expr, with_mk(DERIVATIONS)).unwrap();
    let roots: Vec<String> = nix(&["nix-build", s(&expr), "--no-out-link"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(roots.len(), 2);
    let mut closure_args = vec!["nix-store", "-qR"];
    closure_args.extend(roots.iter().map(String::as_str));
    let closure: Vec<String> = nix(&closure_args).lines().map(str::to_owned).collect();
    assert_eq!(closure.len(), 4, "{closure:?}");

    let sk = tmp.path().join("nix-sk");
    let pk = tmp.path().join("nix-pk");
    nix(&[
        "nix-store",
        "--generate-binary-cache-key",
        "hypernar-e2e-1",
        s(&sk),
        s(&pk),
    ]);
    let mut sign = vec!["nix", "store", "sign", "--key-file", s(&sk), "-r"];
    sign.extend(roots.iter().map(String::as_str));
    nix(&sign);
    for (dir, query) in caches {
        let to = format!("file://{}{query}", tmp.path().join(dir).display());
        let mut copy = vec!["nix", "copy", "--to", &to];
        copy.extend(roots.iter().map(String::as_str));
        nix(&copy);
    }
    Built {
        tmp,
        closure,
        roots,
    }
}

/// Publishes `--closure` of the roots from `url` into a fresh data dir and
/// checks every path against `nix-store --dump` and the narinfo's signatures.
fn publish_and_check(b: &Built, url: &str, cache_dir: &Path, label: &str) {
    let key = b.tmp.path().join(format!("{label}.key"));
    let data = b.tmp.path().join(format!("{label}-data"));
    ok(&["keygen", "--out", s(&key)]);
    let mut args = vec![
        "publish",
        "--key",
        s(&key),
        "--data",
        s(&data),
        "--from",
        url,
        "--closure",
    ];
    args.extend(b.roots.iter().map(String::as_str));
    let out = ok(&args);
    assert!(
        out.contains("published 4 paths (0 already published, 0 failed)"),
        "{label}: {out}"
    );

    for path in &b.closure {
        let want = stdout_sha256(Command::new("nix-store").args(["--dump", path]));
        let got = stdout_sha256(Command::new(bin()).args(["cat-nar", "--data", s(&data), path]));
        assert_eq!(got, want, "{label}: {path} differs from nix-store --dump");
    }

    // The upstream signatures are kept verbatim.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let catalog = rt
        .block_on(Catalog::load(FeedStore::open(&data).unwrap()))
        .unwrap();
    for path in &b.closure {
        let sp = StorePath::parse(path).unwrap();
        let narinfo = std::fs::read(cache_dir.join(format!("{}.narinfo", sp.hash_part()))).unwrap();
        let upstream = NarInfo::parse(&narinfo).unwrap();
        let (_, rec) = catalog.find(&sp).unwrap();
        assert!(!upstream.sigs.is_empty());
        assert_eq!(rec.sigs, upstream.sigs, "{label}: {path} signatures");
        assert_eq!(rec.nar_hash, upstream.nar_hash);
        assert_eq!(rec.references, upstream.references);
    }
}

#[test]
fn nix_built_paths_round_trip_from_xz_and_zstd_file_caches() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    let b = build_and_copy(&[("cache-xz", ""), ("cache-zstd", "?compression=zstd")]);
    let big = b
        .closure
        .iter()
        .find(|p| p.ends_with("hn-e2e-big"))
        .unwrap();
    let size = std::fs::metadata(format!("{big}/big.bin")).unwrap().len();
    assert!(size >= 100 << 20, "big file is only {size} bytes");
    for dir in ["cache-xz", "cache-zstd"] {
        let cache = b.tmp.path().join(dir);
        publish_and_check(&b, &format!("file://{}", cache.display()), &cache, dir);
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nix_built_paths_round_trip_from_an_http_cache() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    let b = build_and_copy(&[("cache-xz", "")]);
    let cache = b.tmp.path().join("cache-xz");
    // Port 0: the server picks a free port and says which (picking one by
    // binding and releasing it here would race with other tests).
    let mut child = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            s(&cache),
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let _server = Server(child);
    // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
    let port: u16 = first
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    publish_and_check(&b, &format!("http://127.0.0.1:{port}"), &cache, "http");
}

/// A Nix command with a cache directory of its own (Nix remembers narinfo
/// answers per URL) and no narinfo caching.
fn nix_command(args: &[&str], xdg: &Path) -> Command {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .args([
            "--option",
            "narinfo-cache-negative-ttl",
            "0",
            "--option",
            "narinfo-cache-positive-ttl",
            "0",
        ])
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("XDG_CACHE_HOME", xdg);
    cmd
}

/// Runs [`nix_command`]; returns its output.
fn nix_run(args: &[&str], xdg: &Path) -> std::process::Output {
    nix_command(args, xdg)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// `nix copy --from BASE --to TO` of `b`'s roots, trusting `key`.
fn copy_args<'a>(b: &'a Built, base: &'a str, to: &'a Path, key: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "nix",
        "copy",
        "--from",
        base,
        "--to",
        s(to),
        "--option",
        "trusted-public-keys",
        key.trim(),
    ];
    args.extend(b.roots.iter().map(String::as_str));
    args
}

fn assert_same_nars(closure: &[String], root: &Path, label: &str) {
    for path in closure {
        let want = stdout_sha256(Command::new("nix-store").args(["--dump", path]));
        let copied = format!("{}{path}", root.display());
        let got = stdout_sha256(Command::new("nix-store").args(["--dump", &copied]));
        assert_eq!(got, want, "{label}: {path} differs from the original");
    }
}

/// `nix copy --from base` and `nix-store --realise` with `base` as the only
/// substituter, each into a fresh store, trusting `pk`; every path must
/// equal the original.
fn copy_and_realise(b: &Built, base: &str, pk: &str, xdg: &Path, label: &str) {
    let store = b.tmp.path().join(format!("store-copy-{label}"));
    let out = nix_run(&copy_args(b, base, &store, pk), xdg);
    assert!(
        out.status.success(),
        "{label}: nix copy --from {base} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_nars(&b.closure, &store, &format!("{label}: nix copy"));

    let store = b.tmp.path().join(format!("store-realise-{label}"));
    let mut args = vec![
        "nix-store",
        "--store",
        s(&store),
        "--realise",
        "--option",
        "substituters",
        base,
        "--option",
        "trusted-public-keys",
        pk.trim(),
    ];
    args.extend(b.roots.iter().map(String::as_str));
    let out = nix_run(&args, xdg);
    assert!(
        out.status.success(),
        "{label}: nix-store --realise failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_nars(&b.closure, &store, &format!("{label}: nix-store --realise"));
}

/// Publishes the closure of `b`'s roots from its zstd cache; returns the
/// data directory and the publisher's identity.
fn publish_closure(b: &Built, extra: &[&str]) -> (std::path::PathBuf, String) {
    let cache = b.tmp.path().join("cache-zstd");
    let key = b.tmp.path().join("publisher.key");
    let data = b.tmp.path().join("publisher-data");
    ok(&["keygen", "--out", s(&key)]);
    let from = format!("file://{}", cache.display());
    let mut args = vec![
        "publish",
        "--key",
        s(&key),
        "--data",
        s(&data),
        "--from",
        &from,
        "--closure",
    ];
    args.extend(b.roots.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let out = ok(&args);
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("hypernar1:"))
        .unwrap_or_else(|| panic!("no identity in {out}"))
        .to_owned();
    (data, id)
}

/// Publishes `b`'s closure, seeds it, and starts a substituter with no
/// block of its own whose only peer is the seed: (seed, substituter).
fn seed_and_substituter(b: &Built) -> (Serve, Serve) {
    let (data, id) = publish_closure(b, &[]);
    let seed = serve(&data, &["--http", "none"], &[]);
    let user = b.tmp.path().join("user-data");
    let sub = serve(&user, &["--trust", &id, "--peer", &seed.addr], &[]);
    (seed, sub)
}

#[test]
fn nix_substitutes_a_closure_from_serve_over_http() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd")]);
    let (_seed, sub) = seed_and_substituter(&b);
    let base = sub.http.clone().unwrap();
    // The index replicates; then every narinfo answers from memory.
    for path in &b.closure {
        let hash = StorePath::parse(path).unwrap().hash_part().to_owned();
        let r = wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 30);
        let served = NarInfo::parse(&r.body).unwrap();
        let upstream = NarInfo::parse(
            &std::fs::read(
                b.tmp
                    .path()
                    .join("cache-zstd")
                    .join(format!("{hash}.narinfo")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(served.sigs, upstream.sigs, "{path}: Sig lines verbatim");
        assert_eq!(served.nar_hash, upstream.nar_hash);
        assert_eq!(served.references, upstream.references);
    }
    let pk = std::fs::read_to_string(b.tmp.path().join("nix-pk")).unwrap();
    let xdg = b.tmp.path().join("xdg");

    // A Nix that does not trust the original signing key refuses the
    // paths, exactly as it would from the original cache.
    let other = b.tmp.path().join("other");
    let (osk, opk) = (other.with_extension("sk"), other.with_extension("pk"));
    nix(&[
        "nix-store",
        "--generate-binary-cache-key",
        "someone-else-1",
        s(&osk),
        s(&opk),
    ]);
    let untrusted = b.tmp.path().join("store-untrusted");
    let opk = std::fs::read_to_string(&opk).unwrap();
    let out = nix_run(&copy_args(&b, &base, &untrusted, &opk), &xdg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lacks a valid signature"),
        "nix copy with an untrusted key: {err}"
    );

    // nix copy --from hypernar and nix-store --realise with hypernar as
    // the only substituter, signatures checked against the original key.
    copy_and_realise(&b, &base, &pk, &xdg, "http");
}

#[test]
fn nix_substitutes_from_the_fuse_view_as_a_file_cache() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    if !crate::fuse::fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd")]);
    let (data, id) = publish_closure(&b, &[]);
    let seed = serve(&data, &["--http", "none"], &[]);
    // A user node with no block of its own: every read is fetched.
    let user = b.tmp.path().join("user-data");
    let at = b.tmp.path().join("mnt");
    let m = crate::fuse::Mounted::start(&user, &at, &["--trust", &id, "--peer", &seed.addr], &[]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for path in &b.closure {
        let hash = StorePath::parse(path).unwrap().hash_part().to_owned();
        while !at.join(format!("{hash}.narinfo")).exists() {
            assert!(std::time::Instant::now() < until, "{path} never listed");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let pk = std::fs::read_to_string(b.tmp.path().join("nix-pk")).unwrap();
    let xdg = b.tmp.path().join("xdg");
    let base = format!("file://{}", at.display());

    copy_and_realise(&b, &base, &pk, &xdg, "mount");
    drop(m);
}

#[test]
fn listings_are_the_ones_nix_writes_and_nix_store_ls_reads_the_substituter() {
    if !nix_available() {
        return skip_or_fail("Nix (Debian package nix-bin)");
    }
    // Nix writes <hash>.ls next to each narinfo: the reference.
    let b = build_and_copy(&[("cache-zstd", "?compression=zstd&write-nar-listing=true")]);
    let (_seed, sub) = seed_and_substituter(&b);
    let base = sub.http.clone().unwrap();
    for path in &b.closure {
        let hash = StorePath::parse(path).unwrap().hash_part().to_owned();
        let r = wait_for_status(&base, &format!("/{hash}.ls"), 200, 30);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let ours: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let file = b.tmp.path().join("cache-zstd").join(format!("{hash}.ls"));
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(ours, theirs, "{path}: listing differs from Nix's");
    }
    let r = http(&base, "GET", "/00000000000000000000000000000000.ls", &[]);
    assert_eq!(r.status, 404);

    // `nix store ls` against the substituter says what it says of the
    // local store.
    let xdg = b.tmp.path().join("xdg");
    for path in &b.closure {
        let ls = |store: &str| {
            let out = nix_run(&["nix", "store", "ls", "--store", store, "-lR", path], &xdg);
            assert!(
                out.status.success(),
                "nix store ls --store {store}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        assert_eq!(
            String::from_utf8(ls(&base)).unwrap(),
            String::from_utf8(ls("local")).unwrap(),
            "{path}"
        );
    }
}
