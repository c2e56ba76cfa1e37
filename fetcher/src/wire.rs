//! The wire: TCP, framed as `u24le(len) || frame` (what the JavaScript
//! secret-stream uses), a Noise XX handshake and secret stream
//! (hypercore_handshake), and the Hypercore protocol on top
//! (hypercore-protocol).
//!
//! Framing uses tokio-util's length-delimited codec rather than the
//! `uint24le_framing` crate, which stalls on frames of about 64 KiB or more.
//! A frame over [`MAX_FRAME`] is an error that closes that connection only.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Sink, Stream};
use hypercore_handshake::state_machine::{hc_specific::generate_keypair, SecStream};
use hypercore_handshake::Cipher;
use hypercore_protocol::Protocol;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame accepted from a peer: a block of the largest segment size
/// with its proof fits many times over.
pub const MAX_FRAME: usize = 8 << 20;

/// Errors setting up the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("noise handshake setup: {0}")]
    Handshake(#[from] hypercore_handshake::Error),
}

/// A TCP stream framed with 24-bit little-endian lengths.
#[derive(Debug)]
pub struct FramedTcp {
    inner: Framed<TcpStream, LengthDelimitedCodec>,
    /// Bytes handed to the socket so far (see [`Load`]).
    sent: Arc<AtomicU64>,
}

/// How far a connection's writer is behind: hypercore-protocol moves every
/// message it is given into an unbounded write queue, so a peer that asks
/// for blocks and does not read them would grow it without end. The pumps
/// count what they hand to the protocol, the socket what it writes; a pump
/// waits while the difference is over [`MAX_UNSENT`].
#[derive(Debug, Default)]
pub struct Load {
    queued: AtomicU64,
    sent: Arc<AtomicU64>,
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
}

impl FramedTcp {
    pub fn new(stream: TcpStream, sent: Arc<AtomicU64>) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(3)
            .little_endian()
            .max_frame_length(MAX_FRAME)
            .new_codec();
        FramedTcp {
            inner: Framed::new(stream, codec),
            sent,
        }
    }
}

impl Stream for FramedTcp {
    type Item = io::Result<Vec<u8>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(|b| b.to_vec())))
    }
}

impl Sink<Vec<u8>> for FramedTcp {
    type Error = io::Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Vec<u8>) -> io::Result<()> {
        self.sent.fetch_add(item.len() as u64, Ordering::Relaxed);
        Pin::new(&mut self.inner).start_send(Bytes::from(item))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Wraps a connected TCP stream in the Hypercore protocol. The dialling
/// side is the Noise initiator.
/// The replication protocol over `stream`, and the connection's [`Load`].
pub fn protocol(stream: TcpStream, initiator: bool) -> Result<(Protocol, Arc<Load>), WireError> {
    let _ = stream.set_nodelay(true);
    let load = Arc::new(Load::default());
    let framed = Box::new(FramedTcp::new(stream, load.sent.clone()));
    let cipher = if initiator {
        let ss = SecStream::new_initiator_xx(&[])?;
        Cipher::new(Some(framed), ss.into())
    } else {
        let keypair = generate_keypair()?;
        let ss = SecStream::new_responder_xx(&keypair, &[])?;
        Cipher::new(Some(framed), ss.into())
    };
    Ok((Protocol::new(Box::new(cipher)), load))
}
