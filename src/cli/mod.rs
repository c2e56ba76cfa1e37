//! Command-line definitions and dispatch. Each command lives in its own
//! module; what several share is in `common`; the control socket of a
//! running serve is `control` (its client and its server apart). No two
//! modules import each other (`tests` below reads the imports).

mod cat_nar;
mod channels;
mod common;
mod control;
mod demo;
mod feeds;
mod fetch;
mod follow;
mod group;
mod keep;
mod keygen;
mod mount;
mod progress;
mod publish;
mod release;
mod remake;
mod serve;
mod set;
mod status;
mod synth;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
pub use common::error_chain;

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

// Each command's one line is its `about` here; its `Args` doc comment (a
// summary and the long text with examples) is what `<command> --help`
// shows. A doc comment here would replace that long text.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(
        about = "Publish, read back and verify a built-in sample cache (no network, no Nix)."
    )]
    Demo(demo::Args),
    #[command(about = "Create a publisher key file and print the publisher identity.")]
    Keygen(keygen::Args),
    #[command(about = "Publish store paths from a Nix binary cache into this publisher's feeds.")]
    Publish(publish::Args),
    #[command(about = "Release the keys of published paths to everyone or to an audience.")]
    Release(release::Args),
    #[command(
        about = "Follow channels: publish each new release's closure, checked against the upstream's keys."
    )]
    Follow(follow::Args),
    #[command(about = "Show the channels followed here and the release last committed of each.")]
    Channels(channels::Args),
    #[command(about = "Write the NAR of a published path to stdout, verified and decrypted.")]
    CatNar(cat_nar::Args),
    #[command(about = "Seed this data directory's feeds and replicate trusted publishers.")]
    Serve(serve::Args),
    #[command(about = "Mount a read-only view of the binary cache (FUSE), decrypted on read.")]
    Mount(mount::MountArgs),
    #[command(about = "Fetch a path's NAR from peers, verified and decrypted, to stdout.")]
    Fetch(fetch::Args),
    #[command(about = "List the feeds in a data directory with their tokens.")]
    Feeds(feeds::Args),
    #[command(about = "Keep a signed set of store paths a community vouches for.")]
    Set(set::Args),
    #[command(about = "Make a group secret: machines sharing one share what they pulled through.")]
    Group(group::Args),
    #[command(about = "Show a node's disk use per publisher and set, its peers and pins.")]
    Status(status::Args),
    #[command(about = "Publish synthetic paths fast, for benchmarks and tests at scale.")]
    #[command(hide = true)]
    Synth(synth::Args),
}

pub async fn run(command: Command, verbose: u8) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => demo::run(a).await,
        Command::Keygen(a) => keygen::run(a),
        Command::Publish(a) => publish::run(a, verbose).await,
        Command::Release(a) => release::run(a).await,
        Command::Follow(a) => follow::run(a).await,
        Command::Channels(a) => channels::run(a).await,
        Command::CatNar(a) => cat_nar::run(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Mount(a) => mount::run(a).await,
        Command::Fetch(a) => fetch::run(a).await,
        Command::Feeds(a) => feeds::run(a).await,
        Command::Set(a) => set::run(a).await,
        Command::Group(a) => group::run(a),
        Command::Status(a) => status::run(a).await,
        Command::Synth(a) => synth::run(a).await,
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

#[cfg(test)]
mod tests {
    //! No two modules of the command line import each other, even through
    //! others (the three-floors issue): read from the sources.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `publish`, `control`, `control/client`; the root is `cli`.
    fn name_of(rel: &Path) -> String {
        let s = rel.with_extension("").to_string_lossy().into_owned();
        match s.strip_suffix("mod") {
            Some("") => "cli".to_owned(),
            Some(parent) => parent.trim_end_matches('/').to_owned(),
            None => s,
        }
    }

    /// The module `super::` names from `module` (`levels` times).
    fn up(module: &str, is_mod_rs: bool, levels: usize) -> String {
        let mut parts: Vec<&str> = if module == "cli" {
            vec![]
        } else {
            module.split('/').collect()
        };
        // In `x/mod.rs`, `super` is x's parent; in `x/y.rs`, it is x.
        let mut levels = levels;
        if is_mod_rs && levels > 0 {
            parts.pop();
            levels -= 1;
        }
        for _ in 0..levels {
            parts.pop();
        }
        if parts.is_empty() {
            "cli".to_owned()
        } else {
            parts.join("/")
        }
    }

    fn join(base: &str, item: &str) -> String {
        if base == "cli" {
            item.to_owned()
        } else {
            format!("{base}/{item}")
        }
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let names: BTreeSet<String> = files
            .iter()
            .map(|p| name_of(p.strip_prefix(&root).unwrap()))
            .collect();
        let mut graph = BTreeMap::new();
        for p in &files {
            let rel = p.strip_prefix(&root).unwrap();
            let me = name_of(rel);
            let is_mod_rs = rel.file_name().is_some_and(|f| f == "mod.rs");
            let text = std::fs::read_to_string(p).unwrap();
            let mut edges = BTreeSet::new();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(at) = rest.find("super::") {
                    let mut after = &rest[at..];
                    let mut levels = 0;
                    while let Some(r) = after.strip_prefix("super::") {
                        levels += 1;
                        after = r;
                    }
                    let base = up(&me, is_mod_rs, levels);
                    let items: Vec<String> = if let Some(group) = after.strip_prefix('{') {
                        let group = group.split('}').next().unwrap_or("");
                        group
                            .split(',')
                            .map(|i| i.trim().split("::").next().unwrap_or("").to_owned())
                            .collect()
                    } else {
                        let ident: String = after
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        vec![ident]
                    };
                    for item in items.iter().filter(|i| !i.is_empty() && *i != "*") {
                        let target = join(&base, item);
                        if names.contains(&target) {
                            edges.insert(target);
                        } else if base != me {
                            edges.insert(base.clone());
                        }
                    }
                    rest = after;
                }
                // `control::client::…` after `use super::control`.
                for n in names.iter().filter(|n| n.contains('/')) {
                    if code.contains(&n.replace('/', "::")) {
                        edges.insert(n.clone());
                    }
                }
            }
            edges.remove(&me);
            graph.insert(me, edges);
        }
        graph
    }

    #[test]
    fn the_command_line_has_no_import_circle() {
        let graph = graph();
        assert!(graph["publish"].contains("control/client"), "{graph:?}");
        assert!(graph["control/server"].contains("publish"), "{graph:?}");
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == m) {
                let mut c = path[at..].to_vec();
                c.push(m.to_owned());
                return Some(c);
            }
            if !done.insert(m.to_owned()) {
                return None;
            }
            path.push(m.to_owned());
            for n in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(n, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            if let Some(c) = visit(m, &graph, &mut Vec::new(), &mut done) {
                panic!("an import circle in the command line: {}", c.join(" -> "));
            }
        }
    }
}
