//! The server side of the control socket: `serve` listens, and runs each
//! job through the command it belongs to (`publish`, `set`, `follow`,
//! `status`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hypernar_feed::format::storepath::StorePath;
use hypernar_fetcher::following::FollowStatus;
use hypernar_fetcher::node::Node;
use hypernar_fetcher::sources::Sources;
use hypernar_publisher::control::{
    self, FollowJob, Job, PublishJob, Reply, Request, SetJob, VERSION,
};
use hypernar_publisher::{Outcome, Progress, Publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::super::common::{error_chain, read_key};
use super::super::follow;
use super::super::publish::{self, Line};
use super::{read_frame, socket};

/// Binds the data directory's control socket (mode 0600; the directory
/// is 0700 and the umask 077, so it is never open to others).
pub fn bind(dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket(dir);
    // We hold the directory's lock: a socket file here is a leftover.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves jobs on `listener` until `shutdown`, one at a time; a client of
/// another uid (root aside) is closed without a word.
pub async fn run(
    listener: UnixListener,
    dir: std::path::PathBuf,
    sources: Sources,
    shutdown: hypernar_fetcher::node::Shutdown,
) {
    let me = hypernar_feed::private::euid();
    let one_at_a_time = Arc::new(Locks::default());
    let mut clients = tokio::task::JoinSet::new();
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        while clients.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => {
                failures = 0;
                match stream.peer_cred().map(|c| c.uid()) {
                    Ok(uid) if uid == me || uid == 0 => stream,
                    Ok(uid) => {
                        warn!(
                            uid,
                            "control socket: a process of another user connected; closed"
                        );
                        continue;
                    }
                    Err(e) => {
                        warn!(%e, "control socket: cannot tell who connected; closed");
                        continue;
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors, say: back off, log rarely.
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(%e, failures, "control socket: accepting fails");
                }
                tokio::time::sleep(Duration::from_millis(100) * failures.min(50)).await;
                continue;
            }
        };
        let (sources, dir, lock) = (sources.clone(), dir.clone(), one_at_a_time.clone());
        clients.spawn(async move {
            if let Err(e) = serve_one(stream, sources, &dir, lock).await {
                warn!(%e, "control request failed");
            }
        });
    }
}

async fn serve_one(
    stream: UnixStream,
    sources: Sources,
    dir: &Path,
    lock: Arc<Locks>,
) -> anyhow::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let request = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut read))
        .await
        .context("no request within 10 s")?;
    let (tx, mut rx) = mpsc::channel::<Reply>(64);
    // A client that closes its end is gone: a long job (a follow) ends.
    let gone = hypernar_fetcher::node::Shutdown::new();
    let eof = {
        let gone = gone.clone();
        async move {
            let mut byte = [0u8; 1];
            let _ = read.read(&mut byte).await;
            gone.cancel();
        }
    };
    let answer = async move {
        match request.and_then(|b| control::decode::<Request>(&b)) {
            Ok(req) => handle(sources, dir, req, tx, &lock, &gone).await,
            Err(e) => {
                let _ = tx.send(Reply::Err(format!("error: {e}"))).await;
                let _ = tx.send(Reply::Exit(2)).await;
            }
        }
    };
    // Owns the receiver: a client gone drops it, which a long job (a
    // follow) sees as its sender closing.
    let send = async move {
        while let Some(reply) = rx.recv().await {
            write.write_all(&control::encode(&reply)).await?;
        }
        anyhow::Ok(())
    };
    // The job ends (its Exit sent) before the client closes: the EOF
    // waits no longer than the answer.
    let ((), sent) = tokio::select! {
        r = async { tokio::join!(answer, send) } => r,
        _ = async {
            eof.await;
            std::future::pending::<()>().await
        } => unreachable!("pending never ends"),
    };
    sent
}

/// What jobs wait for: writers of the publisher's feeds (`publish`, and
/// each look of a `follow`) run one at a time, and so do set edits; a
/// status waits for neither.
#[derive(Default)]
pub struct Locks {
    pub publishing: tokio::sync::Mutex<()>,
    pub sets: tokio::sync::Mutex<()>,
}

/// Runs one control request and sends its replies, the exit code last.
/// Writers run one at a time ([`Locks`]); a follow takes its turn for
/// each look only, and ends when `gone` is cancelled (its client left).
pub async fn handle(
    sources: Sources,
    dir: &Path,
    req: Request,
    out: mpsc::Sender<Reply>,
    lock: &Locks,
    gone: &hypernar_fetcher::node::Shutdown,
) {
    let node = sources.node().clone();
    let code = if req.version != VERSION {
        let _ = out
            .send(Reply::Err(format!(
                "error: this hypernar serve speaks control version {VERSION}, the client {}: run the same hypernar for both",
                req.version
            )))
            .await;
        2
    } else {
        match &req.job {
            Job::Publish(job) => {
                info!(?job, "publishing for a control client");
                let _one = lock.publishing.lock().await;
                run_publish(node, dir, job, out.clone()).await
            }
            Job::Set(job) => {
                info!(?job, "editing a set for a control client");
                let _one = lock.sets.lock().await;
                run_set(node, dir, job, out.clone()).await
            }
            Job::Follow(job) => {
                info!(?job, "following channels for a control client");
                run_follow(node, dir, job, out.clone(), &lock.publishing, gone).await
            }
            Job::Status { json, .. } => {
                let s = super::super::status::report(&sources, *json).await;
                for line in s.lines() {
                    let _ = out.send(Reply::Out(line.to_owned())).await;
                }
                0
            }
        }
    };
    let _ = out.send(Reply::Exit(code)).await;
}

/// Streams per-path progress to the client as it happens (with `-v`);
/// failures come with the summary.
struct Remote {
    out: mpsc::Sender<Reply>,
    verbose: bool,
}

impl Progress for Remote {
    fn path_done(&self, path: &StorePath, outcome: &Outcome) {
        let line = match outcome {
            Outcome::Published { .. } if self.verbose => format!("published {path}"),
            _ => return,
        };
        // Progress is best effort: a slow client loses lines, not the job.
        let _ = self.out.try_send(Reply::Err(line));
    }
}

async fn run_publish(node: Node, dir: &Path, job: &PublishJob, out: mpsc::Sender<Reply>) -> u8 {
    let opened = async {
        let secret = read_key(&job.key_file)?;
        same_dir(&job.data_dir, dir)?;
        Ok(Publisher::open_with(node.swarm().clone(), dir, secret).await?)
    }
    .await;
    let publisher = match opened {
        Ok(p) => p,
        Err(e) => {
            let _ = out
                .send(Reply::Err(format!("error: {}", error_chain(&e))))
                .await;
            return 1;
        }
    };
    let progress = Arc::new(Remote {
        out: out.clone(),
        verbose: job.verbose > 0,
    });
    let (lines, code) = publish::execute(publisher, job, progress).await;
    match lines {
        Ok(lines) => {
            for line in lines {
                let reply = match line {
                    Line::Err(l) => Reply::Err(l),
                    Line::Out(l) => Reply::Out(l),
                };
                let _ = out.send(reply).await;
            }
        }
        Err(e) => {
            let _ = out
                .send(Reply::Err(format!("error: {}", error_chain(&e))))
                .await;
        }
    }
    code
}

/// A follow run inside this serve: its figures in the node (status page,
/// `hypernar status`, `/metrics`), its lines to the client, in order.
struct FollowReport {
    node: Node,
    lines: mpsc::Sender<Reply>,
}

impl follow::Report for FollowReport {
    fn out(&self, line: String) {
        let _ = self.lines.try_send(Reply::Out(line));
    }
    fn err(&self, line: String) {
        let _ = self.lines.try_send(Reply::Err(line));
    }
    fn update(&self, channel: &str, f: &mut dyn FnMut(&mut FollowStatus)) {
        self.node.following().update(channel, |s| f(s));
    }
    fn line_every(&self) -> Duration {
        Duration::from_secs(10)
    }
}

async fn run_follow(
    node: Node,
    dir: &Path,
    job: &FollowJob,
    out: mpsc::Sender<Reply>,
    lock: &tokio::sync::Mutex<()>,
    client_gone: &hypernar_fetcher::node::Shutdown,
) -> u8 {
    let checked = read_key(&job.key_file).and_then(|secret| {
        same_dir(&job.data_dir, dir)?;
        Ok(secret)
    });
    let secret = match checked {
        Ok(s) => s,
        Err(e) => {
            let _ = out
                .send(Reply::Err(format!("error: {}", error_chain(&e))))
                .await;
            return 1;
        }
    };
    // Opened afresh for each look: a publish job may write between two.
    let (swarm, dir_buf) = (node.swarm().clone(), dir.to_owned());
    let mut open = move || {
        let (swarm, dir, secret) = (swarm.clone(), dir_buf.clone(), secret.clone());
        Box::pin(async move { Ok(Publisher::open_with(swarm, &dir, secret).await?) })
            as follow::OpenFuture<'static, hypernar_fetcher::node::Swarm>
    };
    // Bounded: a client that stops reading loses progress lines, and the
    // follow goes on (`FollowReport` drops what does not fit).
    let (lines, mut rx) = mpsc::channel(1024);
    let forward = {
        let out = out.clone();
        async move {
            while let Some(r) = rx.recv().await {
                if out.send(r).await.is_err() {
                    return;
                }
            }
        }
    };
    let report = Arc::new(FollowReport {
        node: node.clone(),
        lines,
    });
    // Ends when the client goes away (or the node shuts down).
    let gone = {
        let out = out.clone();
        let shutdown = node.shutdown_token();
        let client_gone = client_gone.clone();
        async move {
            tokio::select! {
                _ = out.closed() => {}
                _ = client_gone.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        }
    };
    let run = async {
        let code = follow::execute(&mut open, false, job, report, gone, lock).await;
        code
    };
    let (code, ()) = tokio::join!(run, forward);
    code
}

/// Checks that the job is for the directory this serve holds.
fn same_dir(asked: &Path, dir: &Path) -> anyhow::Result<()> {
    let asked = std::fs::canonicalize(asked)?;
    if asked != std::fs::canonicalize(dir)? {
        bail!(
            "this serve holds {}, not {}",
            dir.display(),
            asked.display()
        );
    }
    Ok(())
}

async fn run_set(node: Node, dir: &Path, job: &SetJob, out: mpsc::Sender<Reply>) -> u8 {
    if let Err(e) = same_dir(&job.data_dir, dir) {
        let _ = out
            .send(Reply::Err(format!("error: {}", error_chain(&e))))
            .await;
        return 1;
    }
    let (lines, code) = super::super::set::execute(node.swarm(), job).await;
    for line in lines {
        let reply = match line {
            Line::Err(l) => Reply::Err(l),
            Line::Out(l) => Reply::Out(l),
        };
        let _ = out.send(reply).await;
    }
    // A set written here is offered to peers and met under on the DHT.
    if code == 0 && job.action != control::SetAction::List {
        if let Ok(id) = read_key(&job.key_file)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                hypernar_publisher::sets::set_id(&s, &job.name).map_err(|e| e.to_string())
            })
        {
            node.add_root(id.to_bytes());
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernar_fetcher::node::NodeConfig;
    use hypernar_fetcher::sources::upstream::Upstreams;
    use hypernar_publisher::sample::{self, NixSigningKey};

    async fn replies(node: Node, dir: &Path, req: Request) -> Vec<Reply> {
        let (tx, mut rx) = mpsc::channel::<Reply>(64);
        let sources = Sources::new(&node, Default::default(), Arc::new(Upstreams::none()));
        handle(
            sources,
            dir,
            req,
            tx,
            &Locks::default(),
            &hypernar_fetcher::node::Shutdown::new(),
        )
        .await;
        let mut got = Vec::new();
        while let Ok(r) = rx.try_recv() {
            got.push(r);
        }
        got
    }

    #[tokio::test]
    async fn a_job_runs_through_the_node_without_a_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let paths = sample::demo_paths();
        sample::write_cache(&cache, &paths, &NixSigningKey::from_seed("t-1", [3; 32])).unwrap();
        let key_file = tmp.path().join("pub.key");
        let secret = hypernar_feed::format::identity::PublisherSecret::generate();
        std::fs::write(&key_file, secret.to_key_file()).unwrap();
        let data = tmp.path().join("data");
        let node = Node::start(NodeConfig::new(data.clone())).await.unwrap();
        let job = PublishJob {
            key_file,
            data_dir: data.clone(),
            from: format!("file://{}", cache.display()),
            sign_key: None,
            paths: vec![],
            closure: false,
            all: true,
            release: true,
            jobs: Some(1),
            segment_size: 1 << 18,
            zstd_level: 3,
            verbose: 1,
            web_seed: None,
            web_seed_urls: vec![],
            run_tail: hypernar_publisher::runs::DEFAULT_RUN_TAIL,
            data_feed_blocks: hypernar_publisher::data::DEFAULT_DATA_FEED_BLOCKS,
        };
        // Another version is refused, saying why.
        let got = replies(
            node.clone(),
            &data,
            Request {
                version: VERSION + 1,
                job: Job::Publish(job.clone()),
            },
        )
        .await;
        assert!(matches!(&got[0], Reply::Err(e) if e.contains("control version")));
        assert_eq!(got.last(), Some(&Reply::Exit(2)));
        // The job: one line per path with -v, the summary, exit 0.
        let got = replies(
            node,
            &data,
            Request {
                version: VERSION,
                job: Job::Publish(job),
            },
        )
        .await;
        let published = got
            .iter()
            .filter(|r| matches!(r, Reply::Err(l) if l.starts_with("published ")))
            .count();
        assert_eq!(published, paths.len(), "{got:?}");
        assert!(got
            .iter()
            .any(|r| matches!(r, Reply::Out(l) if l.starts_with(&format!("published {} paths", paths.len())))));
        assert_eq!(got.last(), Some(&Reply::Exit(0)));
    }
}
