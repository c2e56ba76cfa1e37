//! Command-line definitions and dispatch. Each command lives in its own module.

mod cat_nar;
mod control;
mod demo;
mod feeds;
mod fetch;
mod keygen;
mod mount;
mod progress;
mod publish;
mod release;
mod serve;
mod set;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hypernar_feed::format::identity::PublisherSecret;
use hypernar_feed::format::storepath::{is_hash_part, StorePath};

/// hypernar: a peer-to-peer binary cache for Nix.
///
/// A publisher turns a Nix binary cache into signed, append-only Hypercore
/// feeds of encrypted NAR segments; peers replicate and re-serve them.
/// Start with `hypernar demo`, which runs the whole pipeline on built-in
/// sample data.
#[derive(Debug, Parser)]
#[command(name = "hypernar", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish, read back and verify a built-in sample cache (no network, no Nix).
    Demo(demo::Args),
    /// Create a publisher key file and print the publisher identity.
    Keygen(keygen::Args),
    /// Publish store paths from a Nix binary cache into this publisher's feeds.
    Publish(publish::Args),
    /// Release the keys of published paths to everyone or to an audience.
    Release(release::Args),
    /// Write the NAR of a published path to stdout, verified and decrypted.
    CatNar(cat_nar::Args),
    /// Seed this data directory's feeds and replicate trusted publishers.
    Serve(serve::Args),
    /// Mount a read-only view of the binary cache (FUSE), decrypted on read.
    Mount(mount::MountArgs),
    /// Fetch a path's NAR from peers, verified and decrypted, to stdout.
    Fetch(fetch::Args),
    /// List the feeds in a data directory with their tokens.
    Feeds(feeds::Args),
    /// Keep a signed set of store paths a community vouches for.
    Set(set::Args),
    /// Show a node's disk use per publisher and set, its peers and pins.
    Status(status::Args),
}

pub async fn run(command: Command, verbose: u8) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => demo::run(a).await,
        Command::Keygen(a) => keygen::run(a),
        Command::Publish(a) => publish::run(a, verbose).await,
        Command::Release(a) => release::run(a).await,
        Command::CatNar(a) => cat_nar::run(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Mount(a) => mount::run(a).await,
        Command::Fetch(a) => fetch::run(a).await,
        Command::Feeds(a) => feeds::run(a).await,
        Command::Set(a) => set::run(a).await,
        Command::Status(a) => status::run(a).await,
    }
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // hypercore logs every error it returns (`#[instrument(err)]`); we
    // report them ourselves, with context, so its own lines stay off. So
    // does mainline (an offline machine is one warning of ours, not its
    // ERROR lines).
    let default = format!("{default},hypercore=off,mainline=off");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

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

/// Accepts `/nix/store/<hash>-<name>`, `<hash>-<name>` or `<hash>` and
/// returns the hash part.
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
        Err(e) => bail!("{arg:?} is not a store path: {e}"),
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
