//! Test hosts in network namespaces on one bridge (198.18.0.0/15, the
//! benchmarking range), and `hypernar serve` run inside one. Needs root
//! and iproute2 (`ip netns`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, s};

pub fn ip(args: &str) -> bool {
    Command::new("ip")
        .args(args.split_whitespace())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this runs as root (network namespaces need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Namespaces on one bridge; removed when dropped.
pub struct Lan {
    tag: String,
    pub net: u8,
    sides: Vec<String>,
}

impl Lan {
    /// Namespaces `hn<tag>a` (198.18.NET.1) and `hn<tag>b` (198.18.NET.2)
    /// on bridge `hnbr<tag>`, which holds 198.18.NET.254 in this namespace.
    /// Each test names its own NET, so tests run side by side.
    pub fn new(net: u8) -> Option<Self> {
        Self::with_hosts(net, &["a", "b"])
    }

    /// As [`Lan::new`], with one namespace per name in `sides` (one
    /// lowercase letter each), side `i` at 198.18.NET.(i+1).
    pub fn with_hosts(net: u8, sides: &[&str]) -> Option<Self> {
        let tag = format!("{}n{net}", std::process::id() % 100_000);
        let lan = Lan {
            tag: tag.clone(),
            net,
            sides: sides.iter().map(|s| (*s).to_owned()).collect(),
        };
        let br = format!("hnbr{tag}");
        let mut ok = ip(&format!("link add {br} type bridge"))
            && ip(&format!("addr add {}/24 dev {br}", lan.ip("bridge")))
            && ip(&format!("link set {br} up"));
        for side in sides {
            let (ns, v) = (format!("hn{tag}{side}"), format!("hv{tag}{side}"));
            ok = ok
                && ip(&format!("netns add {ns}"))
                && ip(&format!("link add {v} type veth peer name {v}p"))
                && ip(&format!("link set {v}p netns {ns}"))
                && ip(&format!("link set {v} master {br} up"))
                && ip(&format!("-n {ns} addr add {}/24 dev {v}p", lan.ip(side)))
                && ip(&format!("-n {ns} link set {v}p up"))
                && ip(&format!("-n {ns} link set lo up"));
        }
        ok.then_some(lan)
    }

    pub fn ns(&self, side: &str) -> String {
        format!("hn{}{side}", self.tag)
    }

    /// The address of a side, or of the bridge (this namespace).
    pub fn ip(&self, side: &str) -> String {
        let host = match self.sides.iter().position(|s| s == side) {
            Some(i) => i + 1,
            None => 254,
        };
        format!("198.18.{}.{host}", self.net)
    }

    pub fn bridge(&self) -> String {
        format!("hnbr{}", self.tag)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for side in &self.sides {
            ip(&format!("netns del {}", self.ns(side)));
        }
        ip(&format!("link del {}", self.bridge()));
    }
}

/// `hypernar serve` in namespace `ns`, killed when dropped.
pub struct NsServe(Child, std::path::PathBuf);

impl NsServe {
    /// Listens on 0.0.0.0:7469, no upstream and no DHT unless `extra`
    /// names them.
    pub fn start(ns: &str, data: &Path, extra: &[&str]) -> Self {
        Self::start_with(ns, data, extra, "hypernar_fetcher=info,hypernar_swarm=info")
    }

    /// [`NsServe::start`] with `RUST_LOG=log`.
    pub fn start_with(ns: &str, data: &Path, extra: &[&str], log_filter: &str) -> Self {
        let log = data.with_extension("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin(), "serve", "--data", s(data)])
            .args(["--listen", "0.0.0.0:7469"]);
        if !extra.contains(&"--upstream") {
            cmd.args(["--upstream", "none"]);
        }
        if !extra.contains(&"--dht-bootstrap") {
            cmd.arg("--no-dht");
        }
        let child = cmd
            .args(extra)
            .env("RUST_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        NsServe(child, log)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// Where its log is written.
    pub fn log_path(&self) -> &Path {
        &self.1
    }
}

impl Drop for NsServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `addr` accepts connections (the node started).
pub fn wait_for_port(addr: &str, serve: &NsServe) {
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
