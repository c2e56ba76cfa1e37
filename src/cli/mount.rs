//! `hypernar mount`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Mount a read-only view of the binary cache (FUSE), decrypted on read.
///
/// The mount is laid out as a Nix binary cache: nix-cache-info,
/// <hash>.narinfo and nar/<…>.nar for every path of a trusted publisher
/// whose key this node holds. A NAR's blocks are read from this node, or
/// fetched from peers and web seeds as they are read; each is verified
/// against the publisher's signed tree and decrypted in memory (nothing
/// decrypted is written to disk). A read whose blocks cannot be had
/// within --peer-deadline fails with EIO rather than hang (Nix has no
/// timeout on file:// caches).
///
/// This is `hypernar serve --mount MOUNTPOINT --http none`: the node
/// replicates and seeds as `serve` does. Runs until interrupted, then
/// unmounts; a mount left by a crash is cleared at the next start.
///
/// Examples:
///   hypernar mount /mnt/hypernar --trust hypernar1:… --peer seed.example.org:7469
///   nix copy --from file:///mnt/hypernar /nix/store/…-hello-2.12
///   nix-store --realise --option substituters file:///mnt/hypernar /nix/store/…
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MountArgs {
    /// Where to mount (an empty directory)
    mountpoint: PathBuf,
    #[command(flatten)]
    serve: super::serve::Args,
}

pub async fn run(args: MountArgs) -> anyhow::Result<ExitCode> {
    let mut serve = args.serve;
    if serve.mount.is_some() {
        anyhow::bail!(
            "give the mount point once: `hypernar mount DIR` (or `hypernar serve --mount DIR`)"
        );
    }
    serve.mount = Some(args.mountpoint);
    if serve.http == super::serve::default_http() {
        serve.http = "none".into();
    }
    super::serve::run(serve).await
}
