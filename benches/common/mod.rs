//! Shared pieces of the benchmarks.

#![allow(dead_code)]

use std::path::Path;

use hypernar_publisher::sample::Entry;
use std::time::{Duration, Instant};

/// The `hypernar` binary a benchmark runs: this build's, or the one named
/// by `HYPERNAR_BENCH_BIN` (an older build, for a before-and-after pair on
/// one machine in one session: docs/benchmarks.md compares that way).
pub fn hypernar_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var("HYPERNAR_BENCH_BIN") {
        Ok(bin) if !bin.is_empty() => {
            println!("binary under test: {bin} (HYPERNAR_BENCH_BIN)");
            bin
        }
        _ => env!("CARGO_BIN_EXE_hypernar").to_owned(),
    })
}

/// Whether `hypernar <sub> --help` of the binary under test lists `flag`:
/// an older build run through `HYPERNAR_BENCH_BIN` may predate a flag
/// (`serve --no-dht` came with the DHT), and the bench then leaves it out.
pub fn bin_accepts(sub: &str, flag: &str) -> bool {
    let out = std::process::Command::new(hypernar_bin())
        .args([sub, "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',')
        .any(|w| w == flag)
}

/// `["--no-dht"]` for a `serve` that has the flag, else nothing: benches
/// run on loopback or in namespaces, where the DHT has no one to meet.
pub fn no_dht() -> &'static [&'static str] {
    static FLAGS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FLAGS.get_or_init(|| {
        if bin_accepts("serve", "--no-dht") {
            &["--no-dht"]
        } else {
            &[]
        }
    })
}

/// Writes `work/nginx.conf` (making `work`) and returns it: one nginx
/// process in the foreground, its pid, logs and temporary files under
/// `work`, serving `root` on `listen`; `http_extra` and `server_extra` go
/// into the `http` and `server` blocks. Run with `nginx -c CONF -p WORK`.
pub fn nginx_conf(
    work: &Path,
    listen: &str,
    root: &Path,
    http_extra: &str,
    server_extra: &str,
) -> std::path::PathBuf {
    std::fs::create_dir_all(work).unwrap();
    let d = work.display();
    let conf = work.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1;\n\
             error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ {http_extra}\n\
               client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
               uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; default_type application/octet-stream;\n\
               server {{ listen {listen}; root {};\n\
                 {server_extra} }} }}\n",
            root.display()
        ),
    )
    .unwrap();
    conf
}

/// A fresh directory under the system's temporary directory, named
/// `hypernar-bench-<what>-…`, removed when dropped.
pub fn bench_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hypernar-bench-{what}-"))
        .tempdir()
        .unwrap()
}

/// `GET path` on `base` (`http://host:port`) over a fresh connection:
/// the status and the body (the benches' servers answer `Connection:
/// close` with a plain body).
pub fn http_get(base: &str, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(host).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let status = String::from_utf8_lossy(&all[9..12]).parse().unwrap_or(0);
    (status, all[split + 4..].to_vec())
}

/// Concatenated contents of files under `dirs`, up to `budget` bytes:
/// real binaries, libraries and data, compressible as real NARs are.
pub fn usr_bytes(dirs: &[&str], budget: usize) -> Vec<u8> {
    fn walk(dir: &Path, out: &mut Vec<u8>, budget: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if out.len() >= budget {
                return;
            }
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    out.extend_from_slice(&bytes);
                }
            } else if meta.is_dir() {
                walk(&e.path(), out, budget);
            }
        }
    }
    let mut out = Vec::with_capacity(budget);
    for d in dirs {
        walk(Path::new(d), &mut out, budget);
    }
    out.truncate(budget);
    out
}

pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

/// A field of /proc/PID/status in KiB (VmRSS: now, VmHWM: the peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) of finished, waited-for child processes.
pub fn children_cpu() -> f64 {
    #[allow(unsafe_code)]
    // SAFETY: rusage is plain old data (all-zero is valid), and getrusage
    // only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6
}

/// A number from the environment, or `default`.
/// `hypernar keygen --out KEY`; returns the publisher identity it prints.
pub fn keygen(bin: &str, key: &std::path::Path) -> String {
    let out = std::process::Command::new(bin)
        .args(["keygen", "--out"])
        .arg(key)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a one-path binary cache of `nar` under `root/cache`, makes a
/// publisher key and publishes the cache into `root/<data>` with the release
/// binary (segment size from `HYPERNAR_BENCH_SEGMENT`, default 256 KiB). Returns the path's written form, the identity, the data
/// directory and the bytes of its data feed's blocks.
/// `hypernar publish --all` of the binary cache in directory `cache` into
/// data directory `data`, signed with `key`, with `extra` flags; panics
/// with publish's stderr if it fails. Returns its output and the time it
/// took.
pub fn publish(
    bin: &str,
    key: &Path,
    data: &Path,
    cache: &Path,
    extra: &[&std::ffi::OsStr],
) -> (std::process::Output, Duration) {
    let (out, took) = time(|| {
        std::process::Command::new(bin)
            .args(["publish", "--all", "--key"])
            .arg(key)
            .arg("--data")
            .arg(data)
            .arg("--from")
            .arg(format!("file://{}", cache.display()))
            .args(extra)
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, took)
}

pub fn publish_one(
    bin: &str,
    root: &Path,
    data: &str,
    name: &str,
    nar: Vec<u8>,
) -> (
    hypernar_publisher::sample::WrittenPath,
    String,
    std::path::PathBuf,
    u64,
) {
    use hypernar_feed::format::narinfo::Compression;
    use hypernar_publisher::sample::{write_cache, Contents, NixSigningKey, SamplePath};

    let cache = root.join("cache");
    let key = NixSigningKey::from_seed("bench-1", [3; 32]);
    let path = SamplePath {
        name: name.into(),
        contents: Contents::RawNar(nar),
        references: vec![],
        compression: Compression::Zstd,
    };
    let written = write_cache(&cache, &[path], &key).unwrap().remove(0);
    let pubkey = root.join("pub.key");
    let id = keygen(bin, &pubkey);
    let dir = root.join(data);
    let segment = env_num("HYPERNAR_BENCH_SEGMENT", 256 << 10).to_string();
    publish(
        bin,
        &pubkey,
        &dir,
        &cache,
        &["--segment-size".as_ref(), segment.as_ref()],
    );
    let stored = std::fs::read_dir(dir.join("feeds"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::metadata(e.path().join("data")).map_or(0, |m| m.len()))
        .max()
        .unwrap_or(0);
    (written, id, dir, stored)
}

/// Files under `dir` as a sample tree, until `budget` bytes are taken
/// (empty files and directories left out).
pub fn collect(dir: &Path, budget: &mut u64, out: &mut Vec<(String, Entry)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if *budget == 0 {
            return;
        }
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        if meta.is_file() && meta.len() > 0 {
            if let Ok(bytes) = std::fs::read(e.path()) {
                *budget = budget.saturating_sub(bytes.len() as u64);
                let executable =
                    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
                out.push((
                    name,
                    Entry::File {
                        contents: bytes,
                        executable,
                    },
                ));
            }
        } else if meta.is_dir() {
            let mut sub = Vec::new();
            collect(&e.path(), budget, &mut sub);
            if !sub.is_empty() {
                out.push((name, Entry::Dir(sub)));
            }
        }
    }
}

/// Bytes of file contents in a sample tree.
pub fn node_size(n: &Entry) -> u64 {
    match n {
        Entry::File { contents, .. } => contents.len() as u64,
        Entry::Symlink(_) => 0,
        Entry::Dir(e) => e.iter().map(|(_, n)| node_size(n)).sum(),
    }
}

/// The CPU model, from /proc/cpuinfo ("unknown" elsewhere).
#[allow(dead_code)]
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `cmd` to its end: how long it took and its peak RSS in MiB
/// (`VmHWM`, sampled every 10 ms; its last sample before the exit).
pub fn run_peak(cmd: &mut std::process::Command) -> (std::time::Duration, f64) {
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        peak = peak.max(proc_status_kib(child.id(), "VmHWM:"));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (started.elapsed(), peak as f64 / 1024.0)
}

/// A child process, killed when dropped.
pub struct Proc(pub std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `sh -c`; panics if it fails.
pub fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap();
    assert!(st.success(), "failed: {cmd}");
}

/// Runs `cmd` with `sh -c`, its errors unheard (cleaning up what may not
/// be there).
pub fn sh_quiet(cmd: &str) {
    let _ = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Bytes network namespace `ns` sent on its `eth0` (`dir` "tx"), or
/// received ("rx").
pub fn link_bytes(ns: &str, dir: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "tx":{"bytes":N,...
    text.split(&format!("\"{dir}\":{{\"bytes\":"))
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Child processes, killed and reaped when dropped.
pub struct Kill(pub Vec<std::process::Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
