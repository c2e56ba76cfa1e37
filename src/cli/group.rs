//! `hypernar group`: make a group secret, or say which group one names.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::group::GroupSecret;

/// Groups of machines that share what they pulled through.
///
/// Every machine started with `serve --group SECRET` (the same secret) is
/// a member: members find each other on the local network and the DHT
/// with no other setting, and fetch from each other the paths each pulled
/// through from the upstream. A member's path keys go to the group only,
/// so a non-member holds only noise; and a member serves Nix another
/// member's path only if a --trusted-public-key signed it, so the secret
/// grants reading, never trust. Anyone holding the secret is a member:
/// keep it like a password; to drop a member, make a new secret and give
/// it to the others (docs/sharing.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Make a new group secret and print it (or write it to --out, mode
    /// 0600, never overwriting).
    New {
        /// Write the secret to this file instead of printing it (pass the
        /// file to `serve --group`)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the public id of a group (what `status` shows), from its
    /// secret or a file holding it.
    Id {
        #[arg(value_name = "SECRET|FILE")]
        group: String,
    },
}

/// A group secret as `serve --group` takes it: the secret's text, or a
/// file holding it (so it stays out of `ps` and shell history).
pub fn parse_group(arg: &str) -> anyhow::Result<GroupSecret> {
    let arg = arg.trim();
    if arg.starts_with("hypernar-group1:") {
        return arg
            .parse()
            .with_context(|| "this group secret does not read (a typo, or cut short?)");
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!(
            "--group {arg:?}: neither a group secret (hypernar-group1:…) nor a file holding one"
        )
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("hypernar-group1:"))
        .with_context(|| format!("{arg} holds no hypernar-group1: line"))?;
    line.parse()
        .with_context(|| format!("the group secret in {arg} does not read (a typo, or cut short?)"))
}

// stdout holds the secret alone (for scripts); the hint goes to stderr.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Sub::New { out: None } => {
            let secret = GroupSecret::generate();
            println!("{}", secret.to_text());
            eprintln!(
                "group {}: pass the secret above to `hypernar serve --group` on every member, and keep it secret",
                secret.id()
            );
        }
        Sub::New { out: Some(path) } => {
            let secret = GroupSecret::generate();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| {
                    format!(
                        "creating {} (hypernar group new never overwrites a file)",
                        path.display()
                    )
                })?;
            let text = format!(
                "# hypernar group {}: whoever holds this is a member; keep it secret.\n{}\n",
                secret.id(),
                secret.to_text()
            );
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote group secret {}", path.display());
            println!("group {}", secret.id());
        }
        Sub::Id { group } => {
            println!("{}", parse_group(&group)?.id());
        }
    }
    Ok(ExitCode::SUCCESS)
}
