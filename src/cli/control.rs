//! The control socket of `hypernar serve`: `DATA/control.sock`, a Unix
//! socket only its owner can use (mode 0600). It lets `hypernar publish`
//! publish into a data directory a running serve holds, through the
//! serve's feed hubs, so new paths reach connected peers at once.
//!
//! Protocol: the client sends a `hypernar publish …` command line, one
//! argument per line, then shuts down its write side; the server answers
//! with the lines the command prints, then `exit <code>`. Requests are
//! served one at a time; a request is at most 64 KiB.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use hypernar_fetcher::node::Node;
use hypernar_publisher::{NoProgress, Publisher};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use super::{error_chain, publish, read_key, Cli, Command};

const MAX_REQUEST: u64 = 64 << 10;

/// Where a data directory's control socket lives.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Serves publish requests on the data directory's control socket.
pub fn listen(dir: &Path, node: Node) -> anyhow::Result<()> {
    let path = socket(dir);
    // We hold the directory's lock: a socket file here is a leftover.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let dir = dir.to_owned();
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (node, dir, lock) = (node.clone(), dir.clone(), one_at_a_time.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, node, &dir, lock).await {
                    warn!(%e, "control request failed");
                }
            });
        }
    });
    Ok(())
}

async fn serve_one(
    stream: UnixStream,
    node: Node,
    dir: &Path,
    lock: Arc<tokio::sync::Mutex<()>>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut request = String::new();
    read.take(MAX_REQUEST).read_to_string(&mut request).await?;
    let argv: Vec<&str> = request.lines().collect();
    let (lines, code) = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Publish(args),
            ..
        }) => {
            let _one = lock.lock().await;
            info!(?argv, "publishing for a control client");
            run_publish(node, dir, &args).await
        }
        Ok(_) => (
            vec!["error: the control socket takes only `publish`".into()],
            2,
        ),
        Err(e) => (vec![e.to_string()], 2),
    };
    for line in lines {
        write.write_all(line.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
    write.write_all(format!("exit {code}\n").as_bytes()).await?;
    Ok(())
}

async fn run_publish(node: Node, dir: &Path, args: &publish::Args) -> (Vec<String>, u8) {
    let opened = async {
        let secret = read_key(&args.key)?;
        let asked = std::fs::canonicalize(args.data.path()?)?;
        if asked != std::fs::canonicalize(dir)? {
            bail!(
                "this serve holds {}, not {}",
                dir.display(),
                asked.display()
            );
        }
        Ok(Publisher::open_with(node, dir, secret).await?)
    }
    .await;
    let publisher = match opened {
        Ok(p) => p,
        Err(e) => return (vec![format!("error: {}", error_chain(&e))], 1),
    };
    match publish::execute(publisher, args, Arc::new(NoProgress)).await {
        (Ok(lines), code) => (lines, code),
        (Err(e), code) => (vec![format!("error: {}", error_chain(&e))], code),
    }
}

/// Sends a publish to the serve holding `dir`; prints what it answers.
#[allow(clippy::print_stdout)]
pub async fn publish_via_serve(dir: &Path, argv: &[String]) -> anyhow::Result<ExitCode> {
    let path = socket(dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "{} is held by a running hypernar serve, and its control socket {} does not answer",
            dir.display(),
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(argv.join("\n").as_bytes()).await?;
    write.shutdown().await?;
    let mut lines = BufReader::new(read).lines();
    let mut code = None;
    while let Some(line) = lines.next_line().await? {
        match line.strip_prefix("exit ") {
            Some(c) => code = c.parse::<u8>().ok(),
            None => println!("{line}"),
        }
    }
    match code {
        Some(c) => Ok(ExitCode::from(c)),
        None => bail!("the serve process closed the control socket without an answer"),
    }
}
