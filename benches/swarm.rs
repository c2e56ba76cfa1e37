//! A swarm in network namespaces: one seed and N fetchers (default 8), each
//! host on its own veth behind one bridge, every link shaped with `tc tbf`
//! (default 100 Mbit/s each way), all fetchers starting together on one path
//! of real /usr bytes (default ~500 MiB of NAR). Needs root (`ip netns`).
//!
//!   cargo bench --bench swarm
//!   HYPERNAR_SWARM_PEERS=8 HYPERNAR_SWARM_MIB=500 HYPERNAR_SWARM_RATE_MBIT=100 cargo bench --bench swarm
//!
//! Reports the last fetcher's completion time against the ideal
//! T_min = max(F/u_seed, F/d_min, N·F/(u_seed + Σu_peers)) (swarm
//! efficiency = T_min / T_actual) and the seed's egress in multiples of F,
//! where F is the bytes of the path's encrypted blocks. Test hosts use
//! 198.18.0.0/15 inside namespaces this benchmark creates and removes.

#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{children_cpu, env_num, link_bytes, publish_one, sh, sh_quiet, usr_bytes, Kill};

const PREFIX: &str = "hnsw";

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ns(i: usize) -> String {
    format!("{PREFIX}{i}")
}

fn ip(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}

fn cleanup(hosts: usize) {
    for i in 0..hosts + 4 {
        sh_quiet(&format!("ip netns del {}", ns(i)));
    }
    sh_quiet(&format!("ip netns del {PREFIX}br"));
}

fn tx_bytes(i: usize) -> u64 {
    link_bytes(&ns(i), "tx")
}

enum Kept {
    Temp(tempfile::TempDir),
    Path(std::path::PathBuf),
}

impl Kept {
    fn path(&self) -> &std::path::Path {
        match self {
            Kept::Temp(t) => t.path(),
            Kept::Path(p) => p,
        }
    }
}

fn main() {
    let peers = env_num("HYPERNAR_SWARM_PEERS", 8);
    let mib = env_num("HYPERNAR_SWARM_MIB", 500);
    let mbit = env_num("HYPERNAR_SWARM_RATE_MBIT", 100);
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root || Command::new("ip").arg("-V").output().is_err() {
        println!("SKIPPED: the swarm benchmark needs root and iproute2 (ip netns, tc)");
        return;
    }
    let bin = common::hypernar_bin();
    let tmp = tempfile::Builder::new()
        .prefix("hypernar-swarm-")
        .tempdir()
        .unwrap();
    // HYPERNAR_SWARM_KEEP=1: keep the data and logs (the path is printed).
    let tmp = if std::env::var_os("HYPERNAR_SWARM_KEEP").is_some() {
        let kept = tmp.keep();
        println!("keeping {}", kept.display());
        Kept::Path(kept)
    } else {
        Kept::Temp(tmp)
    };
    let root = tmp.path();

    // The path and its publisher.
    let nar = usr_bytes(&["/usr/lib", "/usr/bin", "/usr/share"], mib << 20);
    let (written, id, seed_dir, f_bytes) = publish_one(bin, root, "seed", "swarm-path", nar);
    let store_path = written.info.store_path.to_string();

    // The network: hosts 0 (seed) ..= peers, one bridge, shaped links.
    cleanup(peers);
    sh(&format!("ip netns add {PREFIX}br && ip -n {PREFIX}br link add br0 type bridge && ip -n {PREFIX}br link set br0 up"));
    for i in 0..=peers {
        let n = ns(i);
        sh(&format!(
            "ip netns add {n} && ip link add eth0 netns {n} type veth peer name vb{i} netns {PREFIX}br && \
             ip -n {n} addr add {}/24 dev eth0 && ip -n {n} link set eth0 up && ip -n {n} link set lo up && \
             ip -n {PREFIX}br link set vb{i} master br0 up && \
             ip netns exec {n} tc qdisc add dev eth0 root tbf rate {mbit}mbit burst 256kb latency 100ms && \
             ip netns exec {PREFIX}br tc qdisc add dev vb{i} root tbf rate {mbit}mbit burst 256kb latency 100ms",
            ip(i)
        ));
    }

    let cpu0 = children_cpu();
    let mut procs = Kill(Vec::new());
    let mut seed = Command::new("ip")
        .args(["netns", "exec", &ns(0), bin, "serve"])
        .args(common::no_dht())
        .arg("--data")
        .arg(&seed_dir)
        .args(["--listen", &format!("{}:7469", ip(0))])
        .stdout(Stdio::piped())
        .env(
            "RUST_LOG",
            std::env::var("HYPERNAR_SWARM_LOG")
                .unwrap_or("hypernar_fetcher=info,hypernar_swarm=info".into()),
        )
        .stderr(std::fs::File::create(root.join("seed.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(seed.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let seed_pid = seed.id();
    procs.0.push(seed);
    // `ip netns exec` execs the serve: this is its pid.
    let seed_idle_rss = common::proc_status_kib(seed_pid, "VmRSS:");
    let tx0 = tx_bytes(0);

    // HYPERNAR_SWARM_PERF=FILE: a system-wide `perf record` of the run.
    let perf = std::env::var_os("HYPERNAR_SWARM_PERF").map(|out| {
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "499", "-a", "-g", "-o"])
            .arg(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let started = Instant::now();
    let mut logs = Vec::new();
    for i in 1..=peers {
        let log = root.join(format!("fetch{i}.log"));
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns(i),
            bin,
            "fetch",
            "--trust",
            &id,
            "--linger",
            "600",
        ])
        .arg("--data")
        .arg(root.join(format!("f{i}")))
        .args(["--listen", &format!("{}:7469", ip(i))]);
        for j in 0..=peers {
            if j != i {
                cmd.args(["--peer", &format!("{}:7469", ip(j))]);
            }
        }
        cmd.arg(&store_path)
            .env(
                "RUST_LOG",
                std::env::var("HYPERNAR_SWARM_LOG").unwrap_or("hypernar=info,hypernar_fetcher=info,hypernar_swarm=info,hypernar_fetcher::sources=debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        procs.0.push(cmd.spawn().unwrap());
        logs.push(log);
    }
    let u = mbit as f64 * 1e6 / 8.0; // bytes per second
    let f = f_bytes as f64;
    let t_min = (f / u)
        .max(f / u)
        .max(peers as f64 * f / (u * (peers + 1) as f64));
    let mut done = vec![None; peers];
    let limit = Duration::from_secs_f64(t_min * 6.0 + 60.0);
    // HYPERNAR_SWARM_TIMELINE=1: the seed's and the fetchers' upload rates
    // and each fetcher's download rate, each second, to see where a run
    // loses time.
    let timeline = std::env::var_os("HYPERNAR_SWARM_TIMELINE").is_some();
    let fetchers_tx = || (1..=peers).map(tx_bytes).sum::<u64>();
    let fetchers_rx = || {
        (1..=peers)
            .map(|i| link_bytes(&ns(i), "rx"))
            .collect::<Vec<_>>()
    };
    let (mut last_tick, mut last_seed, mut last_peers) = (Instant::now(), tx0, fetchers_tx());
    let mut last_rx = fetchers_rx();
    while done.iter().any(Option::is_none) && started.elapsed() < limit {
        if timeline && last_tick.elapsed() >= Duration::from_secs(1) {
            let (seed_now, peers_now, rx_now) = (tx_bytes(0), fetchers_tx(), fetchers_rx());
            let dt = last_tick.elapsed().as_secs_f64();
            let mbit = |b: u64| b as f64 * 8.0 / dt / 1e6;
            // Each fetcher's download rate: a straggler shows as the low one.
            let down: Vec<String> = rx_now
                .iter()
                .zip(&last_rx)
                .map(|(now, was)| format!("{:3.0}", mbit(now - was)))
                .collect();
            println!(
                "t={:5.1}s seed up {:5.1} Mbit/s, fetchers up {:6.1} Mbit/s in all, down [{}], {} done",
                started.elapsed().as_secs_f64(),
                mbit(seed_now - last_seed),
                mbit(peers_now - last_peers),
                down.join(" "),
                done.iter().flatten().count()
            );
            (last_tick, last_seed, last_peers) = (Instant::now(), seed_now, peers_now);
            last_rx = rx_now;
        }
        for (i, log) in logs.iter().enumerate() {
            if done[i].is_none() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if let Some(l) = text.lines().find(|l| l.contains("fetch complete")) {
                    let secs = l
                        .split("secs=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|s| s.parse::<f64>().ok());
                    done[i] = Some(secs.unwrap_or(started.elapsed().as_secs_f64()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let egress = tx_bytes(0) - tx0;
    let wall = started.elapsed().as_secs_f64();
    let seed_peak_rss = common::proc_status_kib(seed_pid, "VmHWM:");
    if let Some(mut perf) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
    drop(procs);
    let cpu = children_cpu() - cpu0;
    cleanup(peers);

    let finished: Vec<f64> = done.iter().flatten().copied().collect();
    println!(
        "swarm: 1 seed + {peers} fetchers, {mbit} Mbit/s links each way, F = {:.1} MiB of encrypted blocks ({:.1} MiB NAR)",
        f / 1048576.0,
        written.nar.len() as f64 / 1048576.0
    );
    println!(
        "completion times (s): {:?}",
        finished
            .iter()
            .map(|t| (t * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    if finished.len() < peers {
        println!(
            "{} of {peers} fetchers did not finish within {limit:?}",
            peers - finished.len()
        );
        std::process::exit(1);
    }
    let t_actual = finished.iter().copied().fold(0.0, f64::max);
    println!(
        "seed RSS: {:.1} MiB idle before the fetchers start, {:.1} MiB at its peak while seeding (targets: 64 and 128 MiB)",
        seed_idle_rss as f64 / 1024.0,
        seed_peak_rss as f64 / 1024.0
    );
    println!(
        "CPU of all {} nodes: {cpu:.1} s over {wall:.1} s of wall time ({:.2} of the machine's {} cores)",
        peers + 1,
        cpu / wall / cores() as f64,
        cores()
    );
    println!();
    println!("| T_min (s) | T_actual (s) | swarm efficiency T_min/T_actual | seed egress / F |");
    println!("|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.2} | {:.2} |",
        t_min,
        t_actual,
        t_min / t_actual,
        egress as f64 / f
    );
}
