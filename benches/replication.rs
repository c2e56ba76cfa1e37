//! One peer to one peer over loopback: `hypernar fetch` of one large path
//! from a `hypernar serve`, against raw TCP on loopback in the same run.
//!
//!   cargo bench --bench replication        (HYPERNAR_BENCH_MIB=1024 by default)
//!
//! Reports NAR MB/s, wire MB/s (stored, encrypted bytes), the wire rate as a
//! ratio to raw TCP, and the receiver's CPU seconds per GiB of NAR.

#![allow(clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use common::{children_cpu, env_num, publish_one, time, usr_bytes};

fn raw_tcp(bytes: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => break n,
                k => n += k,
            }
        }
    });
    let chunk = vec![7u8; 1 << 20];
    let (_, d) = time(|| {
        let mut s = TcpStream::connect(addr).unwrap();
        for _ in 0..bytes / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
        drop(s);
        reader.join().unwrap()
    });
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let mib = env_num("HYPERNAR_BENCH_MIB", 1024);
    let bin = common::hypernar_bin();
    let tmp = common::bench_dir("replication");
    let root = tmp.path();

    let nar = usr_bytes(&["/usr/lib", "/usr/bin", "/usr/share"], mib << 20);
    let (w, id, a, stored) = publish_one(bin, root, "a", "usr-big", nar);
    let w = &w;
    let nar_bytes = w.nar.len() as f64;
    println!("path: {:.1} MiB NAR from /usr", nar_bytes / 1048576.0);

    let mut serve = Command::new(bin)
        .arg("serve")
        .args(common::no_dht())
        .args(["--http", "none", "--listen", "127.0.0.1:0", "--data"])
        .arg(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut serve_out = BufReader::new(serve.stdout.take().unwrap());
    serve_out.read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap()
        .trim_end_matches(',')
        .to_owned();

    let raw = raw_tcp(stored as usize);
    let cpu0 = children_cpu();
    let (st, d) = time(|| {
        Command::new(bin)
            .args(["fetch", "--trust", &id, "--peer", &addr, "--data"])
            .arg(root.join("b"))
            .arg(w.info.store_path.as_str())
            .stdout(Stdio::null())
            .status()
            .unwrap()
    });
    assert!(st.success());
    let cpu = children_cpu() - cpu0;
    let _ = serve.kill();
    let _ = serve.wait();
    let raw_after = raw_tcp(stored as usize);
    let raw = (raw + raw_after) / 2.0;

    let secs = d.as_secs_f64();
    let wire = stored as f64 / secs / 1e6;
    println!();
    println!("| NAR MB/s | wire MB/s (encrypted blocks) | raw TCP MB/s | wire / raw TCP | receiver CPU s/GiB NAR |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
        nar_bytes / secs / 1e6,
        wire,
        raw,
        wire / raw,
        cpu / (nar_bytes / (1u64 << 30) as f64)
    );
    println!("stored/NAR = {:.3}", stored as f64 / nar_bytes);
}
