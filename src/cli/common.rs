//! What several commands share: the data directory flag, reading a
//! publisher key, store-path arguments, and errors on one line.

use std::path::PathBuf;

use anyhow::{bail, Context};
use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::storepath::{is_hash_part, StorePath};

/// The data directory: `--data`, else `$HYPERNAR_DATA`, else
/// `$XDG_STATE_HOME/hypernar` (default `~/.local/state/hypernar`).
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// Directory holding the feeds [default: $XDG_STATE_HOME/hypernar]
    #[arg(long = "data", env = "HYPERNAR_DATA", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DataDir {
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let state = match std::env::var_os("XDG_STATE_HOME") {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --data")?)
                .join(".local/state"),
        };
        Ok(state.join("hypernar"))
    }
}

/// Reads a publisher key file.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<PublisherSecret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading publisher key {}", path.display()))?;
    PublisherSecret::from_key_file(&text)
        .with_context(|| format!("{} is not a hypernar publisher key", path.display()))
}

/// Accepts `/nix/store/<hash>-<name>`, `<hash>-<name>`, `<hash>` or a
/// link into the store (`./result`) and returns the hash part.
pub fn hash_part_of(arg: &str) -> anyhow::Result<String> {
    let arg = arg.trim_end_matches('/');
    if is_hash_part(arg) {
        return Ok(arg.to_owned());
    }
    let parsed = if arg.starts_with('/') {
        StorePath::parse(arg)
    } else {
        StorePath::from_base_name(arg)
    };
    match parsed {
        Ok(p) => Ok(p.hash_part().to_owned()),
        // A link into the store (`./result`, a profile) names its target.
        Err(e) => match std::fs::canonicalize(arg)
            .ok()
            .and_then(|t| StorePath::parse(&t.to_string_lossy()).ok())
        {
            Some(p) => Ok(p.hash_part().to_owned()),
            None => bail!("{arg:?} is not a store path: {e}"),
        },
    }
}

/// An error and its causes on one line, leaving out causes whose text the
/// message already includes (library errors often embed their source).
pub fn error_chain(e: &anyhow::Error) -> String {
    // A full disk and its kin first, in plain words: the operator's fix.
    let mut msg = e
        .chain()
        .find_map(hypernar_feed::error::local_condition)
        .map(|c| format!("{c}: "))
        .unwrap_or_default();
    msg.push_str(&e.to_string());
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}
