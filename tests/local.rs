//! Other users of the same machine (an unsandboxed build user on a Hydra
//! host, a shared workstation): they can read nothing in a data directory,
//! whatever umask hypernar was started with, cannot drive a serve through
//! its control socket, and read the FUSE view only when told they may. The unprivileged user is
//! uid/gid 65534 through `setpriv` (util-linux), so these tests need root.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hypernar_publisher::sample::demo_paths;

use crate::util::*;

fn root_or_skip() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        skip_or_fail("root (to act as another local user with setpriv)");
    }
    root
}

/// Every entry under `dir`, `dir` included (links are not followed).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// What uid 65534 manages to open (read a file, list a directory) of
/// `paths`.
fn opened_by_another_user(paths: &[PathBuf]) -> Vec<String> {
    let out = as_other_user("sh")
        .args([
            "-c",
            r#"for p in "$@"; do
                 if [ -d "$p" ]; then ls "$p" >/dev/null 2>&1 && echo "$p";
                 else head -c1 "$p" >/dev/null 2>&1 && echo "$p"; fi
               done; exit 0"#,
            "sh",
        ])
        .args(paths)
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn another_local_user_can_open_nothing_in_a_publishers_or_a_members_data_directory() {
    if !root_or_skip() {
        return;
    }
    let w = World::new(&demo_paths());
    // Only the data directories' own modes stand between the other user and
    // the files: the test's directory is open to all, as /var/lib is.
    set_mode(w.tmp.path(), 0o755);
    w.publish_ok(&["--all", "--no-release"]);
    let out = ok(&[
        "release",
        "--key",
        s(&w.key),
        "--data",
        s(&w.data),
        "--audience",
        "lab",
    ]);
    let token = out.lines().last().unwrap().to_owned();
    let id = identity(&w);
    let seed = serve(&w.data, &["--http", "none"], &[]);
    // A member of the audience: its data holds the released keys.
    let member = w.tmp.path().join("member");
    let sub = serve(
        &member,
        &["--trust", &id, "--feed", &token, "--peer", &seed.addr],
        &[],
    );
    let base = sub.http.clone().unwrap();
    let hash = w
        .path("demo-dataset")
        .info
        .store_path
        .hash_part()
        .to_owned();
    wait_for_status(&base, &format!("/{hash}.narinfo"), 200, 20);
    drop(sub);
    drop(seed);

    for dir in [&w.data, &member] {
        let entries = walk(dir);
        assert!(entries.len() > 10, "{entries:?}");
        for p in &entries {
            let m = std::fs::symlink_metadata(p).unwrap();
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(m.permissions().mode() & 0o777, want, "{}", p.display());
        }
        let opened = opened_by_another_user(&entries);
        assert!(opened.is_empty(), "another user opened {opened:?}");
    }
}

#[test]
fn a_loose_data_directory_is_tightened_at_start_and_another_users_is_refused() {
    if !root_or_skip() {
        return;
    }
    let w = World::new(&demo_paths());
    set_mode(w.tmp.path(), 0o755);
    w.publish_ok(&["--all"]);
    // As an older hypernar (or a umask of 022) left it.
    for p in walk(&w.data) {
        let dir = std::fs::symlink_metadata(&p).unwrap().is_dir();
        set_mode(&p, if dir { 0o755 } else { 0o644 });
    }
    let oplog = w
        .feed_dir(hypernar_feed::format::identity::INDEX_FEED)
        .join("oplog");
    assert_eq!(
        opened_by_another_user(std::slice::from_ref(&oplog)),
        vec![s(&oplog).to_owned()]
    );

    let out = hypernar(&["status", "--data", s(&w.data)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by its owner only"), "{err}");
    let entries = walk(&w.data);
    assert!(opened_by_another_user(&entries).is_empty());
    // Said only when something changed.
    let out = hypernar(&["status", "--data", s(&w.data)]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("owner only"));

    // A directory another user owns is refused, and left as it is.
    std::os::unix::fs::chown(&w.data, Some(65534), Some(65534)).unwrap();
    let err = fails(&["status", "--data", s(&w.data)]);
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(std::fs::metadata(&w.data).unwrap().uid(), 65534);
    w.assert_reads_back_fails_while_foreign();
}

impl World {
    fn assert_reads_back_fails_while_foreign(&self) {
        let out = self.cat_nar(&self.store_path("demo-dataset"));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid"));
    }
}

/// The control socket (through which `publish` reaches a running serve)
/// is 0600 from the start, and even when an operator loosens it and its
/// directory, a process of another user is closed without an answer.
#[test]
fn the_control_socket_answers_only_its_owner() {
    if !root_or_skip() {
        return;
    }
    let w = World::new(&demo_paths());
    set_mode(w.tmp.path(), 0o755);
    w.publish_ok(&["--all"]);
    let srv = serve(
        &w.data,
        &["--http", "none"],
        &[(
            "RUST_LOG",
            "hypernar=info,hypernar_fetcher=info,hypernar_swarm=info",
        )],
    );
    let sock = w.data.join("control.sock");
    let until = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < until, "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::symlink_metadata(&sock)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    set_mode(&w.data, 0o755);
    set_mode(&sock, 0o666);
    let out = as_other_user("/usr/bin/python3")
        .args([
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX)\n\
             s.connect(sys.argv[1])\n\
             s.settimeout(10)\n\
             try:\n  s.sendall(b'\\x00\\x00\\x00\\x02\\x01\\x00')\n\
             except OSError: pass\n\
             try: print(len(s.recv(100)))\n\
             except OSError: print(0)\n",
            s(&sock),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    wait_for_log(&srv, "a process of another user connected", 10);
}

/// The view shows every path this node can decrypt: by default only its
/// owner reads it; `--mount-allow-root` adds root (what a nix-daemon needs)
/// and no one else; `--mount-allow-other` lets every local user read it.
/// As root, a mount point that is a link or that another user owns is
/// refused. Run as root: uid 65534 (through `setpriv`) plays the other user.
#[test]
fn who_may_read_the_mount_and_where_root_mounts() {
    use crate::fuse::{fuse_available, is_mounted, world, Mounted};
    if !fuse_available() {
        return skip_or_fail("FUSE (/dev/fuse and fusermount3, Debian package fuse3)");
    }
    if hypernar_feed::private::euid() != 0 {
        return skip_or_fail("root (to act as another local user with setpriv)");
    }
    use std::os::unix::fs::PermissionsExt;
    let w = world();
    let id = identity(&w);
    std::fs::set_permissions(w.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let other_reads = |at: &Path| {
        as_other_user("cat")
            .arg(at.join("nix-cache-info"))
            .output()
            .expect("setpriv")
            .status
            .success()
    };
    for (flag, others) in [
        (None, false),
        (Some("--mount-allow-root"), false),
        (Some("--mount-allow-other"), true),
    ] {
        let at = w.tmp.path().join(format!("mnt{}", flag.unwrap_or("")));
        std::fs::create_dir_all(&at).unwrap();
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut extra = vec!["--trust", id.as_str()];
        extra.extend(flag);
        let m = Mounted::start(
            &w.data.with_extension(flag.unwrap_or("x")),
            &at,
            &extra,
            &[],
        );
        assert!(
            std::fs::read(at.join("nix-cache-info")).is_ok(),
            "the owner reads"
        );
        assert_eq!(other_reads(&at), others, "{flag:?}: another user reads?");
        drop(m);
    }

    let target = w.tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let link = w.tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let theirs = w.tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    for (at, says) in [(&link, "symbolic link"), (&theirs, "belongs to uid 65534")] {
        let mut child = std::process::Command::new(bin())
            .args(["serve", "--data", s(&w.data), "--listen", "127.0.0.1:0"])
            .args(["--http", "none", "--no-dht", "--mount", s(at)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::process::Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(at)
                    .status();
                panic!("serve mounted on {} instead of refusing", at.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains(says), "{err}");
        assert!(!is_mounted(at));
    }
}
