//! `hypernar keygen`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hypernar_feed::format::identity::PublisherSecret;

/// Create a publisher key file (mode 0600; never overwrites) and print the
/// publisher identity, which users pass to `--trust`, on the last line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the key file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let secret = PublisherSecret::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| {
            format!(
                "creating {} (hypernar keygen never overwrites a key file)",
                args.out.display()
            )
        })?;
    file.write_all(secret.to_key_file().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote publisher key {}", args.out.display());
    println!("keep it secret and backed up; share the identity below.");
    println!("{}", secret.identity());
    Ok(ExitCode::SUCCESS)
}
