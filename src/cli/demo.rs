//! `hypernar demo`: the whole publish → read-back pipeline on built-in data.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hypernar_feed::error::CatalogError;
use hypernar_feed::format::identity::{Identity, PublisherSecret};
use hypernar_feed::format::narinfo::{Compression, NarInfo};
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_feed::reader::{self, CatError};
use hypernar_feed::FeedStore;
use hypernar_fetcher::http::{self, Allow, HttpConfig, HttpLimits, DEFAULT_HTTP_PORT};
use hypernar_fetcher::node::{Node, NodeConfig};
use hypernar_fetcher::sources::upstream::Upstreams;
use hypernar_fetcher::sources::{Sources, Timing};
use hypernar_publisher::sample::{self, Contents, NixSigningKey, SamplePath, WrittenPath};
use hypernar_publisher::{NoProgress, Origin, PublishOptions, Publisher, SealSettings};

use super::publish::summary_line;
use indicatif::HumanBytes;

/// Run the whole network on built-in sample data, on loopback.
///
/// Makes a small Nix binary cache (a library, a program with an executable
/// and a symlink, an empty file, a multi-segment data path, a private path;
/// NARs and signed narinfos written by hypernar itself), publishes it into
/// feeds, reads every path back from the feeds alone and checks it byte for
/// byte. Then starts the publisher's seed, a peer and a substituter on
/// 127.0.0.1 and fetches every path through the substituter's HTTP API,
/// as Nix would (and with Nix itself when it is installed). Needs no
/// network, no Nix and no setup.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep everything in DIR (must not exist) instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[allow(clippy::print_stdout)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tmp;
    let root = match args.dir {
        Some(d) => {
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            d
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("hypernar-demo-")
                .tempdir()?;
            tmp.path().to_owned()
        }
    };
    let cache_dir = root.join("cache");
    let data_dir = root.join("data");

    // 1. A binary cache, as `nix copy --to file://` would make one.
    let nix_key = NixSigningKey::from_seed("hypernar-demo-1", [42; 32]);
    let mut paths = sample::demo_paths();
    paths.push(SamplePath {
        name: "private-notes".into(),
        contents: Contents::Tree(sample::Entry::File {
            contents: b"only for those who hold the key\n".to_vec(),
            executable: false,
        }),
        references: vec![],
        compression: Compression::Zstd,
    });
    let written = sample::write_cache(&cache_dir, &paths, &nix_key)?;
    let nar_total: u64 = written.iter().map(|w| w.nar.len() as u64).sum();
    println!(
        "1. made a binary cache of {} paths ({} of NARs, xz/zstd/none, narinfos signed by {})",
        written.len(),
        HumanBytes(nar_total),
        nix_key.name
    );
    println!("   in {}", cache_dir.display());

    // 2. A publisher.
    let secret = PublisherSecret::generate();
    println!(
        "2. created a publisher; its identity is\n   {}",
        secret.identity()
    );

    // 3. Publish: the dataset's closure with keys released, the private path held back.
    let source = Arc::new(Origin::new(&format!("file://{}", cache_dir.display()))?);
    let mut publisher = Publisher::open(&data_dir, secret.clone()).await?;
    let mut opts = PublishOptions {
        closure: true,
        all: false,
        release: true,
        jobs: 2,
        seal: SealSettings {
            segment_size: DEFAULT_SEGMENT_SIZE,
            zstd_level: 3,
        },
        run_tail: hypernar_publisher::runs::DEFAULT_RUN_TAIL,
        data_feed_blocks: hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS,
        trusted_keys: Vec::new(),
        most_referenced_first: false,
    };
    let hash_of = |name: &str| {
        written
            .iter()
            .find(|w| w.info.store_path.name() == name)
            .map(|w| w.info.store_path.clone())
            .expect("sample path")
    };
    let dataset = hash_of("demo-dataset");
    let private = hash_of("private-notes");
    let empty = hash_of("empty-file");
    let roots = vec![dataset.hash_part().to_owned(), empty.hash_part().to_owned()];
    let s = publisher
        .publish(source.clone(), roots.clone(), &opts, Arc::new(NoProgress))
        .await?;
    println!("3. {}", summary_line(&s, true));
    opts.release = false;
    opts.closure = false;
    let s = publisher
        .publish(
            source.clone(),
            vec![private.hash_part().to_owned()],
            &opts,
            Arc::new(NoProgress),
        )
        .await?;
    println!("   {}", summary_line(&s, false));
    opts.release = true;
    opts.closure = true;
    let again = publisher
        .publish(source.clone(), roots, &opts, Arc::new(NoProgress))
        .await?;
    println!(
        "   publishing again is a no-op: {} new, {} already published",
        again.published, again.already
    );
    drop(publisher);

    // 4. Read every path back from the feeds alone, as a peer would.
    println!(
        "4. reading every path back from the feeds in {}:",
        data_dir.display()
    );
    let store = FeedStore::open(&data_dir)?;
    for w in &written {
        let path = &w.info.store_path;
        match reader::cat(&store, path, None, Vec::new()).await {
            Ok((nar, summary, found)) => {
                if nar != w.nar {
                    bail!("{path}: read back differs from the original NAR");
                }
                let rec = &found.record;
                println!(
                    "   ok  {path}  {} NAR, {} block{}, {} stored, NarHash verified",
                    HumanBytes(summary.nar_bytes),
                    rec.block_count,
                    if rec.block_count == 1 { "" } else { "s" },
                    HumanBytes(summary.stored_bytes),
                );
            }
            Err(CatError::Catalog(CatalogError::NoKey(p))) if p == private => {
                println!("   --  {path}  published, key not released: unreadable, as intended");
            }
            Err(e) => return Err(e).context("demo read-back"),
        }
    }
    drop(store);

    // 5. Release the held-back key; now it reads.
    let secret_identity = secret.identity();
    let mut publisher = Publisher::open(&data_dir, secret).await?;
    let r = publisher
        .release(Some(vec![private.hash_part().to_owned()]), None)
        .await?;
    drop(publisher);
    let store = FeedStore::open(&data_dir)?;
    let (nar, _, _) = reader::cat(&store, &private, None, Vec::new()).await?;
    let original = &written
        .iter()
        .find(|w| w.info.store_path == private)
        .unwrap()
        .nar;
    if &nar != original {
        bail!("{private}: read back differs after release");
    }
    println!(
        "5. released {} key to {}: {} now reads back and verifies",
        r.released, r.feed_name, private
    );
    drop(store);

    // 6. The network, on loopback.
    network(&root, &data_dir, &secret_identity, &written, &nix_key).await?;
    println!("demo ok: every path read back byte-identical from signed, encrypted feeds, and through the swarm over HTTP");
    Ok(ExitCode::SUCCESS)
}

/// Starts the publisher's seed, a peer and a substituter on loopback,
/// fetches every path through the substituter's HTTP API (and with Nix,
/// when it is installed), and says where the bytes came from.
#[allow(clippy::print_stdout)]
async fn network(
    root: &Path,
    data_dir: &Path,
    id: &Identity,
    written: &[WrittenPath],
    nix_key: &NixSigningKey,
) -> anyhow::Result<()> {
    let node = |data: PathBuf, trust: Vec<Identity>, peers: Vec<String>| {
        Node::start(NodeConfig {
            peers,
            trust,
            ..NodeConfig::new(data)
        })
    };
    let seed = node(data_dir.to_owned(), vec![], vec![]).await?;
    let seed_addr = seed.listen_on("127.0.0.1:0").await?;
    // A peer that trusts the publisher and fetches the dataset first, so
    // the substituter has two peers to fetch from.
    let peer = node(root.join("peer"), vec![*id], vec![seed_addr.to_string()]).await?;
    let peer_addr = peer.listen_on("127.0.0.1:0").await?;
    let user = node(
        root.join("user"),
        vec![*id],
        vec![seed_addr.to_string(), peer_addr.to_string()],
    )
    .await?;
    let listener = http::bind("127.0.0.1:0".parse()?, &Allow::default()).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let user_sources = Sources::new(&user, Default::default(), Arc::new(Upstreams::none()));
    user.spawn(user_sources.clone().follow(user.shutdown_token()));
    user.spawn(http::run(
        user_sources.clone(),
        listener,
        HttpConfig {
            allow: Allow::default(),
            hosts: Default::default(),
            limits: HttpLimits::default(),
        },
        user.shutdown_token(),
    ));
    println!(
        "6. a network on loopback: the publisher's seed at {seed_addr}, a peer at {peer_addr},"
    );
    println!("   and a substituter for Nix at {base}, which knows both");
    let deadline = Duration::from_secs(20);
    let big = written
        .iter()
        .max_by_key(|w| w.nar.len())
        .expect("sample paths");
    let peer_sources = Sources::new(&peer, Default::default(), Arc::new(Upstreams::none()));
    peer.spawn(peer_sources.clone().follow(peer.shutdown_token()));
    let peer_sources = peer_sources.with_timing(Timing {
        deadline,
        ..Timing::default()
    });
    peer_sources
        .wait_path(&big.info.store_path, deadline)
        .await?;
    peer_sources
        .open_path(&big.info.store_path)
        .await?
        .write_nar(std::io::sink())
        .await?;
    println!(
        "   the peer fetched {} from the seed first",
        big.info.store_path.name()
    );

    let client = reqwest::Client::new();
    for w in written {
        let path = &w.info.store_path;
        user_sources.wait_path(path, deadline).await?;
        let narinfo = client
            .get(format!("{base}/{}.narinfo", path.hash_part()))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let info = NarInfo::parse(&narinfo)?;
        let nar = client
            .get(format!("{base}/{}", info.url))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        if nar != w.nar {
            bail!("{path}: the NAR served over HTTP differs from the original");
        }
        println!(
            "   ok  GET {}.narinfo and its NAR ({}), signed by {}",
            path.hash_part(),
            HumanBytes(nar.len() as u64),
            info.sigs
                .first()
                .and_then(|s| s.split(':').next())
                .unwrap_or("nobody")
        );
    }
    let label = |a: Option<std::net::SocketAddr>| match a {
        Some(a) if a == seed_addr => "the publisher's seed".to_owned(),
        Some(a) if a == peer_addr => "the peer".to_owned(),
        Some(a) => a.to_string(),
        None => "?".to_owned(),
    };
    for p in user.peers().iter().filter(|p| p.received > 0) {
        println!(
            "   {} of blocks came from {}",
            HumanBytes(p.received),
            label(p.addr)
        );
    }

    let nix = nix_copy(root, &base, written, nix_key);
    match &nix {
        Ok(n) => {
            println!("   Nix copied all {n} paths from {base}, checking the original signatures")
        }
        Err(why) => println!("   (Nix: {why})"),
    }
    println!("7. to use a node like this one, run `hypernar serve --trust {id} --peer …` and add to nix.conf:");
    println!("     substituters = http://127.0.0.1:{DEFAULT_HTTP_PORT} https://cache.nixos.org");
    println!("     trusted-public-keys = {}", nix_key.public_text());
    println!("   (the key that signed the original cache, not hypernar's)");
    for n in [user, peer, seed] {
        n.shutdown().await;
    }
    Ok(())
}

/// `nix copy --from BASE` of every sample path into a store under `root`,
/// with the demo's signing key trusted. Says why not when Nix is missing or
/// cannot run here.
fn nix_copy(
    root: &Path,
    base: &str,
    written: &[WrittenPath],
    nix_key: &NixSigningKey,
) -> Result<usize, String> {
    use std::process::Command;
    let Ok(v) = Command::new("nix").arg("--version").output() else {
        return Err("not installed; fetched with hypernar's own HTTP client".into());
    };
    if !v.status.success() {
        return Err("`nix --version` failed; fetched with hypernar's own HTTP client".into());
    }
    let store = root.join("nix-store");
    let mut cmd = Command::new("nix");
    cmd.args(["copy", "--from", base, "--to"])
        .arg(&store)
        .args([
            "--option",
            "trusted-public-keys",
            &nix_key.public_text(),
            "--option",
            "narinfo-cache-negative-ttl",
            "0",
            "--option",
            "narinfo-cache-positive-ttl",
            "0",
        ])
        .env(
            "NIX_CONFIG",
            "experimental-features = nix-command\nsubstituters =\nsandbox = false",
        )
        .env("XDG_CACHE_HOME", root.join("xdg"));
    for w in written {
        cmd.arg(w.info.store_path.as_str());
    }
    let out = cmd.output().map_err(|e| format!("running nix: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "installed, but `nix copy` failed here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(written.len())
}
