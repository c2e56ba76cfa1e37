//! Publishing from the local Nix store (`publish --from local`): a path's
//! narinfo is made from the store's own path info (`nix path-info --json`,
//! or `nix-store --query` for a `.drv`, which `path-info` would resolve to
//! its outputs), its NAR is `nix-store --dump`, and with `--sign-key` the
//! narinfo gets one more `Sig:` by that Nix key over its fingerprint. The
//! publisher then checks the NAR against the NarHash as from any cache.
//!
//! What `nix` prints is parsed as untrusted input: bounded (1 MiB), and
//! the narinfo made of it goes through the same parser as a cache's.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hypernar_feed::format::narinfo::{NarHash, NarInfo};
use hypernar_feed::format::nixkey::NixSecretKey;
use hypernar_feed::format::storepath::{StorePath, STORE_DIR};

use crate::origin::OriginError;

/// Longest path info read from `nix`.
const MAX_INFO: u64 = 1 << 20;

/// Runs a command and returns its stdout, bounded.
fn run(cmd: &mut Command, what: &str) -> Result<String, OriginError> {
    let err = |e: std::io::Error| OriginError::Local(format!("{what}: {e}"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err)?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .take(MAX_INFO)
        .read_to_string(&mut out)
        .map_err(err)?;
    let res = child.wait_with_output().map_err(err)?;
    if !res.status.success() {
        let stderr = String::from_utf8_lossy(&res.stderr);
        return Err(OriginError::Local(format!(
            "{what}: {}",
            stderr.lines().last().unwrap_or("failed")
        )));
    }
    Ok(out)
}

/// The store path whose hash part is `hash`, if the local store has one.
pub fn find(hash: &str) -> Result<Option<StorePath>, OriginError> {
    let dir = Path::new(STORE_DIR);
    let entries = std::fs::read_dir(dir).map_err(|source| OriginError::File {
        path: dir.to_owned(),
        source,
    })?;
    let prefix = format!("{hash}-");
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && !name.ends_with(".lock") && !name.ends_with(".chroot") {
            if let Ok(p) = StorePath::from_base_name(name) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

/// The narinfo of `path` as the local store knows it, signed by `sign` too
/// if given. Its URL names the path itself (`local/<base name>`).
pub fn narinfo(path: &StorePath, sign: Option<&NixSecretKey>) -> Result<NarInfo, OriginError> {
    let full = path.to_string();
    let (nar_hash, nar_size, refs, deriver, mut sigs, ca) = if full.ends_with(".drv") {
        let q = |flag: &str| {
            run(
                Command::new("nix-store").args(["--query", flag, &full]),
                "nix-store --query",
            )
        };
        let hash = q("--hash")?.trim().to_owned();
        let size: u64 = q("--size")?
            .trim()
            .parse()
            .map_err(|_| OriginError::Local("nix-store --query --size: not a number".into()))?;
        let refs: Vec<String> = q("--references")?.lines().map(str::to_owned).collect();
        (hash, size, refs, None, Vec::new(), None)
    } else {
        let text = run(
            Command::new("nix")
                .args(["--extra-experimental-features", "nix-command"])
                .args(["path-info", "--json", &full]),
            "nix path-info",
        )?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| OriginError::Local(format!("nix path-info --json: {e}")))?;
        // An array of objects with "path" (Nix 2.8–2.18), or an object
        // keyed by path (later).
        let info = match &v {
            serde_json::Value::Array(a) => a.iter().find(|o| o["path"] == full.as_str()),
            serde_json::Value::Object(o) => o.get(&full),
            _ => None,
        }
        .ok_or_else(|| OriginError::Local(format!("nix path-info says nothing of {full}")))?;
        let s = |k: &str| info[k].as_str().map(str::to_owned);
        let strings = |k: &str| -> Vec<String> {
            info[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        (
            s("narHash").ok_or_else(|| OriginError::Local("no narHash".into()))?,
            info["narSize"]
                .as_u64()
                .ok_or_else(|| OriginError::Local("no narSize".into()))?,
            strings("references"),
            s("deriver"),
            strings("signatures"),
            s("ca"),
        )
    };
    let hash = NarHash::parse(&nar_hash).map_err(|e| OriginError::Local(e.to_string()))?;
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let mut text = format!(
        "StorePath: {full}\nURL: local/{}\nCompression: none\nNarHash: {}\nNarSize: {nar_size}\nReferences: {}\n",
        path.base_name(),
        hash.to_nix(),
        refs.iter().map(|r| base(r)).collect::<Vec<_>>().join(" ")
    );
    if let Some(d) = deriver.filter(|d| !d.is_empty()) {
        text.push_str(&format!("Deriver: {}\n", base(&d)));
    }
    if let Some(ca) = ca.filter(|c| !c.is_empty()) {
        text.push_str(&format!("CA: {ca}\n"));
    }
    // Parsed once to have the fingerprint to sign.
    let unsigned = NarInfo::parse(text.as_bytes()).map_err(|source| OriginError::NarInfo {
        url: format!("local:{full}"),
        source,
    })?;
    if let Some(k) = sign {
        let sig = k.sign(&unsigned.fingerprint());
        if !sigs.contains(&sig) {
            sigs.push(sig);
        }
    }
    for s in &sigs {
        text.push_str(&format!("Sig: {s}\n"));
    }
    NarInfo::parse(text.as_bytes()).map_err(|source| OriginError::NarInfo {
        url: format!("local:{full}"),
        source,
    })
}

/// `nix-store --dump` of a store path as it streams; the process is
/// killed if the reader is dropped before its end.
#[derive(Debug)]
pub struct Dump {
    child: Child,
    out: std::process::ChildStdout,
}

impl Read for Dump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let status = self.child.wait()?;
            if !status.success() {
                return Err(std::io::Error::other(format!("nix-store --dump {status}")));
            }
        }
        Ok(n)
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The NAR of the store path `base` (a base name) names.
pub fn dump(base: &str) -> Result<Dump, OriginError> {
    let path = StorePath::from_base_name(base)
        .map_err(|e| OriginError::Local(format!("{base:?}: {e}")))?;
    dump_at(Path::new(&path.to_string()))
}

/// The NAR of the file or directory at `path` as `nix-store --dump` makes
/// it (of the file system as it is, valid in a store or not: for a chroot
/// store, `ROOT/nix/store/…`).
pub fn dump_at(path: &Path) -> Result<Dump, OriginError> {
    let mut child = Command::new("nix-store")
        .arg("--dump")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| OriginError::Local(format!("nix-store --dump: {e}")))?;
    let out = child.stdout.take().expect("piped");
    Ok(Dump { child, out })
}
