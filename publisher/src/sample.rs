//! A small Nix binary cache written by hypernar itself, for `hypernar demo`
//! and for tests that must run without Nix.
//!
//! Paths are real directory trees packed as NARs (by the `nix-nar` crate),
//! compressed with xz or zstd, described by narinfos signed with a Nix-style
//! ed25519 key. Only the hash parts of the store paths are synthetic (made
//! from the content, as no derivation exists).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use hypernar_feed::format::narinfo::{Compression, NarHash, NarInfo};
use hypernar_feed::format::nixbase32;
use hypernar_feed::format::storepath::StorePath;
use sha2::{Digest, Sha256};

/// A file tree entry.
#[derive(Debug, Clone)]
pub enum Entry {
    File { contents: Vec<u8>, executable: bool },
    Symlink(String),
    Dir(Vec<(String, Entry)>),
}

/// What a sample path holds.
#[derive(Debug, Clone)]
pub enum Contents {
    /// A file tree, packed as a NAR.
    Tree(Entry),
    /// Bytes used as the NAR as they are (the publisher does not parse NARs),
    /// for tests that need exact sizes.
    RawNar(Vec<u8>),
}

/// A path to put in the sample cache.
#[derive(Debug, Clone)]
pub struct SamplePath {
    pub name: String,
    pub contents: Contents,
    /// Names of other sample paths this one references.
    pub references: Vec<String>,
    pub compression: Compression,
}

/// A path as written, with its NAR for comparison.
#[derive(Debug, Clone)]
pub struct WrittenPath {
    pub info: NarInfo,
    pub nar: Vec<u8>,
}

/// A Nix binary-cache signing key (`name:base64(secret||public)`).
#[derive(Debug)]
pub struct NixSigningKey {
    pub name: String,
    pub key: SigningKey,
}

impl NixSigningKey {
    /// A key with a fixed seed, so demo signatures are reproducible.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Self {
        NixSigningKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// `name:base64(public)`, the form Nix's `trusted-public-keys` takes.
    pub fn public_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "{}:{}",
            self.name,
            b64.encode(self.key.verifying_key().as_bytes())
        )
    }

    /// `name:base64(seed||public)`, the form of Nix's secret key files
    /// (`nix-store --generate-binary-cache-key`, `nix store sign --key-file`).
    pub fn secret_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut both = self.key.to_bytes().to_vec();
        both.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}", self.name, b64.encode(both))
    }

    /// A `Sig:` value over Nix's fingerprint.
    pub fn sign(&self, fingerprint: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let sig = self.key.sign(fingerprint.as_bytes());
        format!("{}:{}", self.name, b64.encode(sig.to_bytes()))
    }
}

fn write_tree(at: &Path, node: &Entry) -> io::Result<()> {
    match node {
        Entry::File {
            contents,
            executable,
        } => {
            fs::write(at, contents)?;
            let mode = if *executable { 0o555 } else { 0o444 };
            fs::set_permissions(at, fs::Permissions::from_mode(mode))
        }
        Entry::Symlink(target) => symlink(target, at),
        Entry::Dir(entries) => {
            fs::create_dir(at)?;
            for (name, child) in entries {
                write_tree(&at.join(name), child)?;
            }
            Ok(())
        }
    }
}

/// Packs a tree as a NAR.
pub fn nar_of(node: &Entry) -> io::Result<Vec<u8>> {
    let tmp = tempfile::Builder::new().prefix("hypernar-nar-").tempdir()?;
    let root = tmp.path().join("root");
    write_tree(&root, node)?;
    let mut enc = nix_nar::Encoder::new(&root).map_err(io::Error::other)?;
    let mut nar = Vec::new();
    enc.read_to_end(&mut nar)?;
    make_writable(&root)?;
    Ok(nar)
}

fn make_writable(p: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(p)?;
    if meta.is_dir() {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
        for e in fs::read_dir(p)? {
            make_writable(&e?.path())?;
        }
    } else if meta.is_file() {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

fn compress(c: Compression, data: &[u8]) -> io::Result<(Vec<u8>, &'static str)> {
    Ok(match c {
        Compression::None => (data.to_vec(), ""),
        Compression::Zstd => (zstd::encode_all(data, 3)?, ".zst"),
        Compression::Xz => {
            let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
            enc.write_all(data)?;
            (enc.finish()?, ".xz")
        }
        Compression::Bzip2 => {
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            enc.write_all(data)?;
            (enc.finish()?, ".bz2")
        }
    })
}

/// Writes `paths` as a binary cache in `dir` (which must exist), in order;
/// references must name paths earlier in the list.
pub fn write_cache(
    dir: &Path,
    paths: &[SamplePath],
    key: &NixSigningKey,
) -> io::Result<Vec<WrittenPath>> {
    fs::create_dir_all(dir.join("nar"))?;
    fs::write(
        dir.join("nix-cache-info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 50\n",
    )?;
    let mut written: Vec<WrittenPath> = Vec::new();
    for p in paths {
        let nar = match &p.contents {
            Contents::Tree(node) => nar_of(node)?,
            Contents::RawNar(bytes) => bytes.clone(),
        };
        let nar_hash = NarHash(Sha256::digest(&nar).into());
        let mut h = Sha256::new();
        h.update(p.name.as_bytes());
        h.update(nar_hash.0);
        let digest = h.finalize();
        let hash_part = nixbase32::encode(&digest[..20]);
        let store_path = StorePath::from_base_name(&format!("{hash_part}-{}", p.name))
            .map_err(io::Error::other)?;
        let mut references = Vec::new();
        for r in &p.references {
            let found = written
                .iter()
                .find(|w| w.info.store_path.name() == r)
                .ok_or_else(|| io::Error::other(format!("reference {r} not written yet")))?;
            references.push(found.info.store_path.clone());
        }
        references.sort();
        let (file, ext) = compress(p.compression, &nar)?;
        let file_hash = NarHash(Sha256::digest(&file).into());
        let url = format!("nar/{}.nar{ext}", nixbase32::encode(&file_hash.0));
        fs::write(dir.join(&url), &file)?;
        let mut info = NarInfo {
            store_path,
            url,
            compression: p.compression,
            file_hash: Some(file_hash),
            file_size: Some(file.len() as u64),
            nar_hash,
            nar_size: nar.len() as u64,
            references,
            deriver: None,
            sigs: Vec::new(),
            ca: None,
        };
        info.sigs.push(key.sign(&info.fingerprint()));
        fs::write(
            dir.join(format!("{}.narinfo", info.store_path.hash_part())),
            info.render(),
        )?;
        written.push(WrittenPath { info, nar });
    }
    Ok(written)
}

fn file(contents: impl Into<Vec<u8>>) -> Entry {
    Entry::File {
        contents: contents.into(),
        executable: false,
    }
}

/// Deterministic filler: text with a few varying bytes, compressible like
/// real binaries are, so the demo shows a realistic ratio.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{:08x} hypernar sample line {} of the demo data\n",
            x as u32,
            out.len()
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// The built-in demo cache: a library, a program with an executable, a
/// symlink, an empty file and nested directories, and a data path whose
/// file spans several segments.
pub fn demo_paths() -> Vec<SamplePath> {
    use Entry::*;
    vec![
        SamplePath {
            name: "libdemo-1.0".into(),
            contents: Contents::Tree(Dir(vec![(
                "lib".into(),
                Dir(vec![
                    ("libdemo.so.1".into(), file(filler(96 << 10, 1))),
                    ("libdemo.so".into(), Symlink("libdemo.so.1".into())),
                ]),
            )])),
            references: vec![],
            compression: Compression::Xz,
        },
        SamplePath {
            name: "hello-2.12".into(),
            contents: Contents::Tree(Dir(vec![
                (
                    "bin".into(),
                    Dir(vec![(
                        "hello".into(),
                        File {
                            contents: b"#!/bin/sh\necho 'Hello from hypernar'\n".to_vec(),
                            executable: true,
                        },
                    )]),
                ),
                (
                    "share".into(),
                    Dir(vec![(
                        "doc".into(),
                        Dir(vec![
                            ("README".into(), file("hello, shared over hypernar\n")),
                            ("EMPTY".into(), file(Vec::new())),
                        ]),
                    )]),
                ),
            ])),
            references: vec!["libdemo-1.0".into()],
            compression: Compression::Zstd,
        },
        SamplePath {
            name: "demo-dataset".into(),
            contents: Contents::Tree(Dir(vec![
                ("big.dat".into(), file(filler(1_300_000, 7))),
                ("small.dat".into(), file(filler(1000, 3))),
            ])),
            references: vec!["hello-2.12".into(), "libdemo-1.0".into()],
            compression: Compression::Xz,
        },
        SamplePath {
            name: "empty-file".into(),
            contents: Contents::Tree(file(Vec::new())),
            references: vec![],
            compression: Compression::None,
        },
    ]
}
