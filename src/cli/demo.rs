//! `hypernar demo`: the whole publish → read-back pipeline on built-in data.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use hypernar_feed::error::CatalogError;
use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::narinfo::Compression;
use hypernar_feed::format::segment::DEFAULT_SEGMENT_SIZE;
use hypernar_feed::reader::{self, CatError};
use hypernar_feed::{Catalog, FeedStore};
use hypernar_publisher::sample::{self, Contents, NixSigningKey, Node, SamplePath};
use hypernar_publisher::{NoProgress, PublishOptions, Publisher, SealSettings, Source};

use super::publish::summary_line;
use indicatif::HumanBytes;

/// Run the publish → read-back pipeline on built-in sample data.
///
/// Makes a small Nix binary cache (a library, a program with an executable
/// and a symlink, an empty file, a multi-segment data path, a private path;
/// NARs and signed narinfos written by hypernar itself), publishes it into
/// feeds, reads every path back from the feeds alone and checks it byte for
/// byte. Needs no network, no Nix and no setup.
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
        contents: Contents::Tree(Node::File {
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
    let source = Arc::new(Source::new(&format!("file://{}", cache_dir.display()))?);
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
    let catalog = Catalog::load(FeedStore::open(&data_dir)?).await?;
    for w in &written {
        let path = &w.info.store_path;
        match reader::cat(&catalog, path, None, Vec::new()).await {
            Ok((nar, summary)) => {
                if nar != w.nar {
                    bail!("{path}: read back differs from the original NAR");
                }
                let (_, rec) = catalog.find(path)?;
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
    drop(catalog);

    // 5. Release the held-back key; now it reads.
    let mut publisher = Publisher::open(&data_dir, secret).await?;
    let r = publisher
        .release(Some(vec![private.hash_part().to_owned()]), None)
        .await?;
    drop(publisher);
    let catalog = Catalog::load(FeedStore::open(&data_dir)?).await?;
    let (nar, _) = reader::cat(&catalog, &private, None, Vec::new()).await?;
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
    println!("demo ok: every path read back byte-identical from signed, encrypted feeds");
    Ok(ExitCode::SUCCESS)
}
