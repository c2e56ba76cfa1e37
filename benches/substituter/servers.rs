//! The servers the substituter benchmark starts: nginx (here or in a
//! network namespace), `hypernar serve` on a data directory of its own,
//! and the two namespaces with their veth links.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hypernar_publisher::sample::WrittenPath;

pub(crate) struct Kill(pub(crate) Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx on `ip:port` serving `root`, in network namespace `netns` if
/// given.
pub(crate) fn nginx(root: &Path, work: &Path, ip: &str, port: u16, netns: Option<&str>) -> Kill {
    std::fs::create_dir_all(work).unwrap();
    let d = work.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1;\n\
         error_log {d}/error.log; pid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on;\n\
           client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
           uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
           keepalive_requests 100000; default_type application/octet-stream;\n\
           server {{ listen {ip}:{port}; root {}; }} }}\n",
        root.display()
    );
    std::fs::write(work.join("nginx.conf"), conf).unwrap();
    let mut cmd = match netns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, "nginx"]);
            c
        }
        None => Command::new("nginx"),
    };
    let child = Kill(
        cmd.args(["-c", &format!("{d}/nginx.conf"), "-p", &d.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect((ip, port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nginx did not start on {ip}:{port}");
}

pub(crate) fn free_port() -> u16 {
    // The bench runs alone; a port picked this way is good enough here.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

pub(crate) fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "failed: {cmd}");
}

pub(crate) fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) const NS_PEER: &str = "hnsb-peer";
pub(crate) const NS_WEB: &str = "hnsb-web";
pub(crate) const PEER_IP: &str = "198.18.2.2";
pub(crate) const WEB_IP: &str = "198.18.3.2";
pub(crate) const WEB_PORT: u16 = 8080;

/// Two namespaces, each on a veth pair to this one: the peer's
/// (unshaped) and the web seed's (shaped to `mbit` both ways with `tc
/// tbf`, as the swarm benchmark shapes its links). Removed on drop.
pub(crate) struct Namespaces;

impl Namespaces {
    pub(crate) fn new(mbit: usize) -> Self {
        Self::cleanup();
        sh(&format!(
            "ip netns add {NS_PEER} && ip link add hnsb-p0 type veth peer name eth0 netns {NS_PEER} && \
             ip addr add 198.18.2.1/24 dev hnsb-p0 && ip link set hnsb-p0 up && \
             ip -n {NS_PEER} addr add {PEER_IP}/24 dev eth0 && ip -n {NS_PEER} link set eth0 up && \
             ip -n {NS_PEER} link set lo up"
        ));
        sh(&format!(
            "ip netns add {NS_WEB} && ip link add hnsb-w0 type veth peer name eth0 netns {NS_WEB} && \
             ip addr add 198.18.3.1/24 dev hnsb-w0 && ip link set hnsb-w0 up && \
             ip -n {NS_WEB} addr add {WEB_IP}/24 dev eth0 && ip -n {NS_WEB} link set eth0 up && \
             ip -n {NS_WEB} link set lo up && \
             tc qdisc add dev hnsb-w0 root tbf rate {mbit}mbit burst 256kb latency 100ms && \
             ip netns exec {NS_WEB} tc qdisc add dev eth0 root tbf rate {mbit}mbit burst 256kb latency 100ms"
        ));
        Namespaces
    }

    /// Deleting a namespace deletes its end of the veth pair, and so both.
    fn cleanup() {
        sh_quiet(&format!("ip netns del {NS_PEER}"));
        sh_quiet(&format!("ip netns del {NS_WEB}"));
    }

    /// Bytes received here from the web seed's namespace so far.
    pub(crate) fn web_rx() -> u64 {
        std::fs::read_to_string("/sys/class/net/hnsb-w0/statistics/rx_bytes")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        Self::cleanup();
    }
}

/// A `hypernar serve`; its data directory is removed on drop if `scratch`.
pub(crate) struct Sub {
    pub(crate) base: String,
    pub(crate) pid: u32,
    kill: Option<Kill>,
    data: PathBuf,
    scratch: bool,
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        drop(self.kill.take());
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// Starts `serve` on `data` (a loopback HTTP API, no upstream) with
/// `extra`, and waits until it answers the narinfo of every path of
/// `probe` (its index and keys have replicated).
pub(crate) fn start_sub(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    data: PathBuf,
    extra: &[&str],
    probe: &[WrittenPath],
) -> Sub {
    let bin = env!("CARGO_BIN_EXE_hypernar");
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--upstream", "none", "--data"])
        .arg(&data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let base = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l.split_whitespace().find(|w| w.starts_with("http://")) {
            break u.to_owned();
        }
    };
    let pid = child.id();
    let sub = Sub {
        base,
        pid,
        kill: Some(Kill(child)),
        scratch: !data.join("staging").exists(),
        data,
        _stdout: lines,
    };
    rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(120);
        for p in probe {
            let url = format!("{}/{}.narinfo", sub.base, p.info.store_path.hash_part());
            while !client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                assert!(Instant::now() < until, "{url} did not answer within 120 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    sub
}
