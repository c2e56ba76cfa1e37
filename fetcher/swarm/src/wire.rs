//! The wire: TCP, framed as `u24le(len) || frame` (what the JavaScript
//! secret-stream uses), a Noise XX handshake and secret stream
//! (hypercore_handshake), and the Hypercore protocol on top
//! (hypercore-protocol).
//!
//! Framing uses tokio-util's length-delimited codec rather than the
//! `uint24le_framing` crate, which stalls on frames of about 64 KiB or more.
//! A frame over [`MAX_FRAME`] ([`MAX_HANDSHAKE_FRAME`] before the handshake
//! is done) is an error that closes that connection only.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::task::AtomicWaker;
use futures::{Sink, Stream};
use hypercore_handshake::state_machine::{hc_specific::Keypair, SecStream};
use hypercore_handshake::Cipher;
use hypercore_protocol::Protocol;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::SwarmError;

/// Largest frame accepted from a peer once the handshake is done: a block
/// of the largest segment size with its proof fits many times over.
pub const MAX_FRAME: usize = 8 << 20;
/// Largest frame accepted before the handshake is done. Noise XX messages
/// are a few hundred bytes; the codec reserves room for a frame as soon as
/// it reads its length, so a stranger sending noise must not make it
/// reserve megabytes.
pub const MAX_HANDSHAKE_FRAME: usize = 4 << 10;

/// A TCP stream framed with 24-bit little-endian lengths.
#[derive(Debug)]
pub struct FramedTcp {
    inner: Framed<TcpStream, LengthDelimitedCodec>,
    load: Arc<Load>,
    /// The frame limit now set on the codec.
    limit: usize,
    /// Frames still to read before the handshake is done: Noise XX's
    /// second message (initiator), or its first and third (responder).
    handshake_frames: u8,
}

/// What a connection has done, shared between its socket, its protocol
/// task and its channel pumps.
///
/// How far a connection's writer is behind: hypercore-protocol moves every
/// message it is given into an unbounded write queue, so a peer that asks
/// for blocks and does not read them would grow it without end. The pumps
/// count what they hand to the protocol, the socket what it writes; a pump
/// waits while the difference is over [`MAX_UNSENT`], woken by
/// [`Load::progress`].
#[derive(Debug)]
pub struct Load {
    queued: AtomicU64,
    sent: AtomicU64,
    /// Notified whenever the socket takes a frame.
    progress: Notify,
    born: Instant,
    /// Milliseconds after `born` of the last frame either way.
    active_ms: AtomicU64,
    /// Messages (and their approximate bytes) taken off the connection's
    /// channels and not yet taken by a hub; past [`MAX_BACKLOG`] or
    /// [`MAX_BACKLOG_BYTES`] the socket is not read (see [`Load::take`]).
    backlog: AtomicU64,
    backlog_bytes: AtomicU64,
    /// The socket reader waiting for the backlog to shrink.
    reader: AtomicWaker,
    /// Set when the socket ended or failed; `ended` is notified.
    end: std::sync::Mutex<Option<String>>,
    ended: Notify,
}

/// Messages a connection may have read and not yet handed to its hubs.
pub const MAX_BACKLOG: u64 = 4096;
/// Bytes (block values and bitfields) likewise: room for a full window of
/// blocks ([`crate::hub::MAX_WINDOW`] × 256 KiB) twice over.
pub const MAX_BACKLOG_BYTES: u64 = 16 << 20;

impl Default for Load {
    fn default() -> Self {
        Load {
            queued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            progress: Notify::new(),
            born: Instant::now(),
            active_ms: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            backlog_bytes: AtomicU64::new(0),
            reader: AtomicWaker::new(),
            end: std::sync::Mutex::new(None),
            ended: Notify::new(),
        }
    }
}

/// Bytes a connection may have queued and not yet written.
pub const MAX_UNSENT: u64 = 8 << 20;

impl Load {
    pub fn queue(&self, bytes: u64) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes written so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes queued and not written yet (an underestimate: what is written
    /// includes framing and encryption).
    pub fn unsent(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.sent.load(Ordering::Relaxed))
    }

    /// Resolves once the socket has taken more bytes (or at once if it did
    /// since the last call started waiting): register before checking.
    pub fn progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }

    /// How long since a frame went either way.
    pub fn idle(&self) -> Duration {
        let now = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.active_ms.load(Ordering::Relaxed)))
    }

    /// A pump took a message of about `bytes` off a channel; it calls
    /// [`Load::handed`] when a hub takes it. This is the connection's read
    /// back-pressure: hypercore-protocol and the Noise layer queue what they
    /// read without bound, so the socket itself is not read while the
    /// backlog is full, and a sender faster than our hubs is slowed by TCP.
    pub fn take(&self, bytes: u64) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        self.backlog_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A hub took a message counted by [`Load::take`].
    pub fn handed(&self, bytes: u64) {
        self.backlog.fetch_sub(1, Ordering::Relaxed);
        self.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if !self.backlog_full() {
            self.reader.wake();
        }
    }

    fn backlog_full(&self) -> bool {
        self.backlog.load(Ordering::Relaxed) >= MAX_BACKLOG
            || self.backlog_bytes.load(Ordering::Relaxed) >= MAX_BACKLOG_BYTES
    }

    /// Why the socket ended, once it has.
    pub fn ended(&self) -> Option<String> {
        self.end.lock().expect("end lock").clone()
    }

    /// Resolves once the socket has ended or failed.
    pub async fn wait_ended(&self) {
        loop {
            let n = self.ended.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.ended().is_some() {
                return;
            }
            n.await;
        }
    }

    fn finish(&self, why: String) {
        let mut end = self.end.lock().expect("end lock");
        if end.is_none() {
            *end = Some(why);
            self.ended.notify_waiters();
        }
    }

    fn touch(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.active_ms.store(now, Ordering::Relaxed);
    }
}

/// The frame codec: `u24le(length) || bytes`, at most `max` bytes a frame.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(3)
        .little_endian()
        .max_frame_length(max)
        .new_codec()
}

impl FramedTcp {
    pub fn new(stream: TcpStream, load: Arc<Load>, initiator: bool) -> Self {
        let codec = codec(MAX_HANDSHAKE_FRAME);
        FramedTcp {
            inner: Framed::new(stream, codec),
            load,
            limit: MAX_HANDSHAKE_FRAME,
            handshake_frames: if initiator { 1 } else { 2 },
        }
    }
}

/// The socket ends a connection by ending this stream: the Noise layer
/// above (hypercore_handshake 0.6) panics on most I/O errors (a `todo!()`
/// in `poll_incoming_encrypted`), so an error is recorded in the [`Load`],
/// whose owner closes the connection, and never passed up.
impl Stream for FramedTcp {
    type Item = io::Result<Vec<u8>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.load.ended().is_some() {
            return Poll::Ready(None);
        }
        if self.limit < MAX_FRAME && self.handshake_frames == 0 {
            self.limit = MAX_FRAME;
            self.inner.codec_mut().set_max_frame_length(MAX_FRAME);
        }
        if self.load.backlog_full() {
            self.load.reader.register(cx.waker());
            // A hub may have taken the backlog down meanwhile.
            if self.load.backlog_full() {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.load.touch();
                self.handshake_frames = self.handshake_frames.saturating_sub(1);
                Poll::Ready(Some(Ok(frame.to_vec())))
            }
            Poll::Ready(Some(Err(e))) => {
                self.load.finish(format!("bad frame: {e}"));
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.load.finish("closed by the peer".into());
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl FramedTcp {
    /// Records a write error as the connection's end.
    fn note(&self, r: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
        if let Poll::Ready(Err(e)) = &r {
            self.load.finish(format!("write failed: {e}"));
        }
        r
    }
}

impl Sink<Vec<u8>> for FramedTcp {
    type Error = io::Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_ready(cx);
        self.note(r)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Vec<u8>) -> io::Result<()> {
        self.load
            .sent
            .fetch_add(item.len() as u64, Ordering::Relaxed);
        self.load.touch();
        self.load.progress.notify_waiters();
        Pin::new(&mut self.inner).start_send(Bytes::from(item))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

pub use hypercore_handshake::state_machine::hc_specific::Keypair as NoiseKeypair;

/// A fresh Noise static key (a node makes one per process).
pub fn noise_keypair() -> Result<Keypair, SwarmError> {
    Ok(hypercore_handshake::state_machine::hc_specific::generate_keypair()?)
}

/// The replication protocol over a connected TCP stream, and the
/// connection's [`Load`]. The dialling side is the Noise initiator; both
/// sides use the node's own static key (`keypair`, one per process), so
/// the remote's key after the handshake tells which node it is
/// (`swarm/dedup.rs`).
pub fn protocol(
    stream: TcpStream,
    initiator: bool,
    keypair: &Keypair,
) -> Result<(Protocol, Arc<Load>), SwarmError> {
    let _ = stream.set_nodelay(true);
    let load = Arc::new(Load::default());
    let framed = Box::new(FramedTcp::new(stream, load.clone(), initiator));
    let cipher = if initiator {
        let ss = SecStream::new_initiator_xx_with_keypair(keypair, &[])?;
        Cipher::new(Some(framed), ss.into())
    } else {
        let ss = SecStream::new_responder_xx(keypair, &[])?;
        Cipher::new(Some(framed), ss.into())
    };
    Ok((Protocol::new(Box::new(cipher)), load))
}
