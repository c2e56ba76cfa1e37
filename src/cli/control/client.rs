//! The client side of the control socket.

use std::process::ExitCode;

use anyhow::{bail, Context};
use hypernar_publisher::control::{self, Job, Reply, Request, VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::{read_frame, socket};

/// Sends a job to the serve holding its data directory; prints what it
/// answers.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn via_serve(job: Job) -> anyhow::Result<ExitCode> {
    let dir = job.data_dir().to_owned();
    let path = socket(&dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "{} is held by a running hypernar serve, and its control socket {} does not answer",
            dir.display(),
            path.display()
        )
    })?;
    let (mut read, mut write) = stream.into_split();
    let req = Request {
        version: VERSION,
        job,
    };
    write.write_all(&control::encode(&req)).await?;
    loop {
        let body = match read_frame(&mut read).await {
            Ok(b) => b,
            Err(control::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!("the serve process closed the control socket without an answer")
            }
            Err(e) => return Err(e.into()),
        };
        match control::decode::<Reply>(&body)? {
            Reply::Out(l) => println!("{l}"),
            Reply::Err(l) => eprintln!("{l}"),
            Reply::Exit(code) => return Ok(ExitCode::from(code)),
        }
    }
}
