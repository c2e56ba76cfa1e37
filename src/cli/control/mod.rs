//! The control socket of `hypernar serve`: `DATA/control.sock`, a Unix
//! socket only its owner can use: it is created under the process's 077
//! umask (so it is never reachable by others, not even between bind and
//! chmod), set to 0600, in a 0700 directory, and a connecting process of
//! another uid (root aside) is closed without a word. It lets `hypernar
//! publish`, `set` and `status` act on a data directory a running serve
//! holds, through the serve's feed hubs, so new paths reach connected
//! peers at once.
//!
//! The messages are typed and versioned (`hypernar_publisher::control`):
//! the client sends one job, the server streams back lines for stdout and
//! stderr and then the exit code. Jobs run one at a time.
//!
//! - [`client`]: what `publish`, `set` and `status` call when the
//!   directory is held ([`client::via_serve`]);
//! - [`server`]: what `serve` runs ([`server::listen`]), and the jobs it
//!   runs (through `publish`, `set` and `status`, which never import it).

pub mod client;
pub mod server;

use std::path::{Path, PathBuf};

use hypernar_publisher::control;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Where a data directory's control socket lives.
pub fn socket(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// One frame of the control protocol, bounded by `control::frame_len`.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Vec<u8>, control::FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await?;
    let mut body = vec![0u8; control::frame_len(header)?];
    r.read_exact(&mut body).await?;
    Ok(body)
}
