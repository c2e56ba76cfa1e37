//! `hypernar set`: safe-path sets.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::error::StoreError;
use hypernar_feed::format::identity::Identity;
use hypernar_feed::format::storepath::StorePath;
use hypernar_feed::io::FeedOpener;
use hypernar_feed::FeedStore;
use hypernar_publisher::control::{Job, SetAction, SetJob};
use hypernar_publisher::sets::{self, SetOp};

use super::common::{error_chain, read_key, DataDir};
use super::control;
use super::publish::Line;

/// Keep a signed list of store paths a community vouches for.
///
/// A safe-path set is a feed of its own, signed by its maintainer's key (a
/// `hypernar keygen` key file; the maintainer need not publish anything).
/// It lists (publisher, store path) pairs — and (publisher, channel)
/// pairs: every path of a channel's newest release as that publisher's
/// `hypernar follow` commits it; one set may vouch for paths of several
/// publishers. Its id, `hypernar-set1:…`, is printed last by `add`
/// and `remove`: hand it to the set's users.
///
/// Users run `hypernar serve --pin SET_ID` to fetch and keep the closure of
/// every path in the set as it grows, and `--require-set` to serve Nix
/// only paths of trusted sets. A set cannot make Nix accept anything: Nix
/// still checks the publisher's signatures.
///
/// Examples:
///   hypernar set add --key lab.key --data /srv/hypernar lab \
///       --publisher hypernar1:… /nix/store/…-firefox-128.0
///   hypernar set add --key lab.key --data /srv/hypernar lab \
///       --publisher hypernar1:… --channel nixos-unstable
///   hypernar set remove --key lab.key --data /srv/hypernar lab /nix/store/…-firefox-128.0
///   hypernar set list --key lab.key --data /srv/hypernar lab
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Vouch for store paths as a publisher signed them (creates the set)
    Add(Edit),
    /// Withdraw store paths from the set
    Remove(Edit),
    /// Print the set's paths and publishers
    List(Common),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The set maintainer's key file (`hypernar keygen`)
    #[arg(long, env = "HYPERNAR_KEY", value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    data: DataDir,
    /// The set's name: 1-64 characters of a-z, 0-9, '-', '_', '.'
    name: String,
}

#[derive(Debug, clap::Args)]
struct Edit {
    #[command(flatten)]
    common: Common,
    /// Publisher whose records of the paths are vouched for (hypernar1:…);
    /// needed by `add`; `remove` without it withdraws the paths for every
    /// publisher
    #[arg(long, value_name = "ID")]
    publisher: Option<Identity>,
    /// A channel of the publisher (as its `hypernar follow --channel NAME=…`
    /// names it): the set vouches for every path of the channel's newest
    /// release as the publisher commits it (repeatable)
    #[arg(long = "channel", value_name = "NAME")]
    channels: Vec<String>,
    /// Store paths (/nix/store/<hash>-<name> or <hash>-<name>)
    #[arg(value_name = "STORE_PATH", required_unless_present = "channels")]
    paths: Vec<String>,
}

impl Args {
    fn to_job(&self) -> anyhow::Result<SetJob> {
        let (action, common, publisher, paths, channels) = match &self.action {
            Action::Add(e) => (
                SetAction::Add,
                &e.common,
                e.publisher,
                e.paths.clone(),
                e.channels.clone(),
            ),
            Action::Remove(e) => (
                SetAction::Remove,
                &e.common,
                e.publisher,
                e.paths.clone(),
                e.channels.clone(),
            ),
            Action::List(c) => (SetAction::List, c, None, vec![], vec![]),
        };
        Ok(SetJob {
            key_file: std::path::absolute(&common.key)?,
            data_dir: std::path::absolute(common.data.path()?)?,
            action,
            name: common.name.clone(),
            publisher: publisher.map(|p| p.to_string()),
            paths,
            channels,
        })
    }
}

fn parse_path(arg: &str) -> anyhow::Result<StorePath> {
    let arg = arg.trim_end_matches('/');
    let parsed = if arg.starts_with('/') {
        StorePath::parse(arg)
    } else {
        StorePath::from_base_name(arg)
    };
    parsed.with_context(|| format!("{arg:?} is not a store path (/nix/store/<hash>-<name>)"))
}

/// Runs a set job through `opener`: the lines to print and the exit code.
pub async fn execute<O: FeedOpener>(opener: &O, job: &SetJob) -> (Vec<Line>, u8) {
    match run_job(opener, job).await {
        Ok(lines) => (lines, 0),
        Err(e) => (vec![Line::Err(format!("error: {}", error_chain(&e)))], 1),
    }
}

async fn run_job<O: FeedOpener>(opener: &O, job: &SetJob) -> anyhow::Result<Vec<Line>> {
    let secret = read_key(&job.key_file)?;
    let paths = job
        .paths
        .iter()
        .map(|p| parse_path(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let publisher = job
        .publisher
        .as_deref()
        .map(|p| {
            p.parse::<Identity>()
                .with_context(|| format!("--publisher {p:?} is not a publisher identity"))
        })
        .transpose()?;
    let name = &job.name;
    let mut out = Vec::new();
    match job.action {
        SetAction::List => {
            let (id, state) = sets::list(opener, &secret, name).await?;
            let named = |publisher: &[u8; 32]| {
                Identity::from_bytes(publisher)
                    .map(|i| i.to_string())
                    .unwrap_or_else(|_| "(not a valid identity)".to_owned())
            };
            for (publisher, path) in state.entries() {
                out.push(Line::Out(format!("{path}  {}", named(&publisher))));
            }
            for (publisher, channel) in state.channels() {
                out.push(Line::Out(format!(
                    "channel {channel}  {}",
                    named(&publisher)
                )));
            }
            out.push(Line::Err(format!(
                "set {name} ({id}) vouches for {} paths and {} channels",
                state.len(),
                state.channels().len()
            )));
        }
        SetAction::Add => {
            let publisher = publisher.context(
                "`set add` needs --publisher hypernar1:…: whose signed records of these paths the set vouches for",
            )?;
            let channels = job.channels.clone();
            let op = SetOp::Add {
                publisher,
                paths,
                channels,
            };
            let s = sets::edit(opener, &secret, name, op).await?;
            out.push(Line::Out(format!(
                "added {} entries to set {name} ({} were already in it); it vouches for {} paths",
                s.changed, s.unchanged, s.len
            )));
            out.push(Line::Out(s.id.to_string()));
        }
        SetAction::Remove => {
            let channels = job.channels.clone();
            let op = SetOp::Remove {
                publisher,
                paths,
                channels,
            };
            let s = sets::edit(opener, &secret, name, op).await?;
            out.push(Line::Out(format!(
                "removed {} entries from set {name}; it vouches for {} paths",
                s.changed, s.len
            )));
            out.push(Line::Out(s.id.to_string()));
        }
    }
    Ok(out)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = args.to_job()?;
    let dir = &job.data_dir;
    match FeedStore::open(dir) {
        Ok(store) => {
            let (lines, code) = execute(&store, &job).await;
            for line in lines {
                match line {
                    Line::Out(l) => println!("{l}"),
                    Line::Err(l) => eprintln!("{l}"),
                }
            }
            Ok(ExitCode::from(code))
        }
        // A running `hypernar serve` holds the directory: edit through it,
        // so the entries reach its peers at once.
        Err(StoreError::Locked(_)) if control::socket(dir).exists() => {
            control::client::via_serve(Job::Set(job)).await
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}
