//! A client that reads nothing for a while is closed.
//!
//! A response whose client stops reading fills the socket's buffers; hyper
//! then waits on the write for ever, holding one of the
//! [`HttpLimits::max_connections`](super::HttpLimits) slots, the reader's
//! hold on its path (no eviction) and, for a pulled-through NAR, a
//! blocking thread. [`IdleWrite`] fails a write that makes no progress for
//! its timeout, so hyper closes the connection and drops the response,
//! which cancels what feeds it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// `inner`, whose writes fail with `TimedOut` after `timeout` without
/// progress.
#[derive(Debug)]
pub struct IdleWrite<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write or flush is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> IdleWrite<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        IdleWrite {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write said `Pending`: fail once the timeout passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleWrite<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleWrite<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_cannot_progress_fails_after_the_timeout_and_one_that_can_does_not() {
        // A pipe with a 64-byte buffer nobody reads.
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = IdleWrite::new(a, Duration::from_secs(30));
        w.write_all(&[0; 64]).await.unwrap();
        let t = tokio::time::Instant::now();
        let err = w.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t.elapsed(), Duration::from_secs(30));
        // Reading makes room: slow progress is not a stall.
        let mut w = IdleWrite::new(w.inner, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut got = 0;
            while got < 64 + 256 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                got += tokio::io::AsyncReadExt::read(&mut b, &mut buf)
                    .await
                    .unwrap();
            }
        });
        w.write_all(&[1; 256]).await.unwrap();
        reader.await.unwrap();
    }
}
